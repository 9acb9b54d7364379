"""How `--help` names values: `--port INTEGER`, `--overwrite`, `MODEL_REF`, as users expect.

Typer 0.29 labels every option with its Python type (`<str>`, `<int range>`), even a flag, which
takes no value (`--json <bool>`), and writes a required argument in braces (`{MODEL_REF}`), which
reads as a set or a template. And help text is Rich markup to Typer, so "Needs cloche[grpc]"
lost its "[grpc]"; no help text here means markup, so all of it is escaped. Rather than a
metavar on each of the ~90 options, the root group hands every command and parameter to the
subclasses below once, when the command tree is built.

The overrides take ``typer.Context``, what Typer passes, as cli/app.py's ``invoke`` does.
"""

from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Python type names as Click has always shown them.
_LABELS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "FLOAT",
    "float range": "FLOAT",
    "Path": "PATH",
    "datetime": "DATETIME",
}


class ClocheOption(TyperOption):
    def display_type_rich(self, ctx: typer.Context) -> str | None:  # type: ignore[override]
        if self.is_flag:
            return None  # a flag takes no value: nothing to name
        if self.metavar is not None:
            return self.metavar
        label = str(self.display_type(ctx)).removeprefix("<").removesuffix(">")
        many = label.startswith("list[")
        label = label.removeprefix("list[").removesuffix("]") if many else label
        label = _LABELS.get(label, label if "|" in label else label.upper())
        return label + ("..." if many or self.nargs != 1 else "")


class ClocheArgument(TyperArgument):
    def display_type_rich(self, ctx: typer.Context) -> str | None:  # type: ignore[override]
        return None  # the argument's name (its metavar) already says what to give

    def get_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        # Click's convention: NAME when required, [NAME] when optional.
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return [name + ("..." if self.nargs != 1 else "")]


class ClocheCommand(TyperCommand):
    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return tidy_params(super().get_params(ctx))


class ClocheSubGroup(TyperGroup):
    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return tidy_params(super().get_params(ctx))


def tidy_params(params: list[Any]) -> list[Any]:
    # The help option is made on first use, so parameters are retyped each time they are read.
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = ClocheOption
        elif type(param) is TyperArgument:
            param.__class__ = ClocheArgument
    return params


def tidy_tree(group: TyperGroup) -> None:
    """Escape the help text of ``group`` and of every command below it (once: escaping twice
    would show the backslashes) and give those below it the help labels above."""
    _escape_help(group)
    for command in group.commands.values():
        if type(command) is TyperCommand:
            command.__class__ = ClocheCommand
            _escape_help(command)
        elif type(command) is TyperGroup:
            command.__class__ = ClocheSubGroup
            tidy_tree(command)


def _escape_help(command: TyperCommand | TyperGroup) -> None:
    for owner in (command, *command.params):
        for attr in ("help", "short_help"):
            text = getattr(owner, attr, None)
            if text:
                setattr(owner, attr, escape(text))
