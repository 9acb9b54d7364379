"""``@component``: a typed Python function becomes a pipeline step.

Parameters are str, int, float, bool, dict or list (with or without a default); artifacts are
``Input[Dataset]``, ``Output[Model]`` and the like; the return is nothing, one value (the step's
``output``) or a NamedTuple of named values. Anything else is refused when the function is
decorated, naming the function and the parameter.
"""

from __future__ import annotations

import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, get_args, get_origin

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.artifacts import Artifact, InputMarker, OutputMarker
from cloche.pipelines.graph import PARAM_TYPES, ComponentSpec, ParamSpec, source_hash

if TYPE_CHECKING:
    from cloche.pipelines.dsl import Task

SINGLE_OUTPUT = "output"
_PLAIN = {str: "str", int: "int", float: "float", bool: "bool", dict: "dict", list: "list"}


class Component:
    """A step's function and its interface; calling it inside a ``@pipeline`` adds a step."""

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.python_func = func
        self.spec = component_spec(func, name or func.__name__)
        self.__doc__ = func.__doc__
        self.__name__ = self.spec.name
        self.__wrapped__ = func

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        from cloche.pipelines.dsl import add_task

        if args:
            raise PipelineDefinitionError(
                f"component {self.name!r} takes its inputs by name",
                hint=f"write {self.name}({', '.join(f'{p}=...' for p in self.input_names())})",
            )
        return add_task(self, kwargs)

    def input_names(self) -> list[str]:
        return [*self.spec.params, *self.spec.inputs]

    def __repr__(self) -> str:
        return f"<component {self.name}>"


@typing.overload
def component(func: Callable[..., Any]) -> Component: ...


@typing.overload
def component(*, name: str | None = None) -> Callable[[Callable[..., Any]], Component]: ...


def component(
    func: Callable[..., Any] | None = None, *, name: str | None = None
) -> Component | Callable[[Callable[..., Any]], Component]:
    """Turn a typed function into a pipeline step (``@component`` or ``@component(name=...)``)."""
    if func is None:
        return lambda f: Component(f, name)
    return Component(func, name)


def component_spec(func: Callable[..., Any], name: str) -> ComponentSpec:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise PipelineDefinitionError(
            f"component {name!r}: a type hint does not resolve: {exc}"
        ) from None
    params: dict[str, ParamSpec] = {}
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for pname, parameter in inspect.signature(func).parameters.items():
        where = f"component {name!r}, parameter {pname!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise PipelineDefinitionError(f"{where}: *args and **kwargs cannot be wired")
        if pname not in hints:
            raise PipelineDefinitionError(
                f"{where} has no type hint",
                hint="annotate it: str, int, float, bool, dict, "
                "list, Input[Dataset], Output[Model], ...",
            )
        artifact = _artifact(hints[pname], where)
        if artifact is not None:
            direction, type_name = artifact
            (inputs if direction == "input" else outputs)[pname] = type_name
            continue
        has_default = parameter.default is not inspect.Parameter.empty
        params[pname] = ParamSpec(
            type=param_type(hints[pname], where),
            default=parameter.default if has_default else None,
            optional=has_default,
        )
    returns = _returns(hints.get("return", type(None)), name)
    clash = sorted(set(returns) & set(outputs))
    if clash:
        raise PipelineDefinitionError(
            f"component {name!r}: {clash[0]!r} is both a returned value and an output artifact",
            hint="give one of them another name",
        )
    return ComponentSpec(
        name=name,
        params=params,
        inputs=inputs,
        outputs=outputs,
        returns=returns,
        source_hash=source_hash(function_source(func)),
    )


def _artifact(hint: Any, where: str) -> tuple[str, str] | None:
    if get_origin(hint) is typing.Annotated:
        cls, *marks = get_args(hint)
        if InputMarker in marks or OutputMarker in marks:
            if not (isinstance(cls, type) and issubclass(cls, Artifact)):
                raise PipelineDefinitionError(f"{where}: Input[...]/Output[...] take an artifact")
            return ("input" if InputMarker in marks else "output"), cls.type_name
        hint = cls
    if isinstance(hint, type) and issubclass(hint, Artifact):
        raise PipelineDefinitionError(
            f"{where}: say whether the step reads or writes it",
            hint=f"Input[{hint.__name__}] or Output[{hint.__name__}]",
        )
    return None


def param_type(hint: Any, where: str) -> str:
    """The parameter type tag of a hint: list[int] is "list", ``int | None`` is "int"."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return param_type(members[0], where)
    found = _PLAIN.get(origin or hint)
    if found is None:
        raise PipelineDefinitionError(
            f"{where}: {hint!r} is not a parameter type",
            hint=f"use one of {', '.join(PARAM_TYPES)}, or Input[...]/Output[...] for artifacts",
        )
    return found


def _returns(hint: Any, name: str) -> dict[str, str]:
    if hint is None or hint is type(None):
        return {}
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        fields = typing.get_type_hints(hint)  # resolves string annotations
        return {
            field: param_type(ftype, f"component {name!r}, returned field {field!r}")
            for field, ftype in fields.items()
        }
    return {SINGLE_OUTPUT: param_type(hint, f"component {name!r}, return value")}


def function_source(func: Callable[..., Any]) -> str:
    """The function's source (dedented), else its code object's bytes (defined in a REPL)."""
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        code = func.__code__
        return f"{code.co_code.hex()}|{code.co_consts!r}|{code.co_names!r}"
