"""Request and response bodies that exist only at the API edge (the rest are service entities)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from cloche.auth.roles import ROLES
from cloche.errors import InvalidInput
from cloche.registry.refs import parse_ref


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. model_not_found")
    message: str = Field(description="what went wrong")
    hint: str | None = Field(default=None, description="what to do about it")
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """The one error shape of the API."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "a mistake in the request, said in words"},
    "5XX": {"model": ErrorBody, "description": "a server-side failure"},
}


class Health(BaseModel):
    status: str = "ok"
    version: str


class AliasTarget(BaseModel):
    """The version an alias should point at: a number, or a reference such as churn@staging."""

    version: int | None = Field(default=None, ge=1, description="a version number of the model")
    ref: str | None = Field(default=None, description="instead of version: churn, churn:3, ...")

    @model_validator(mode="after")
    def _exactly_one(self) -> AliasTarget:
        if (self.version is None) == (self.ref is None):
            raise ValueError('give exactly one of "version" and "ref"')
        return self

    def ref_for(self, name: str) -> str:
        """The reference to resolve, which must name the model in the path."""
        if self.version is not None:
            return f"{name}:{self.version}"
        assert self.ref is not None
        if parse_ref(self.ref).name != name:
            raise InvalidInput(
                f"ref {self.ref!r} names another model than {name!r}",
                hint="an alias can only point at a version of its own model",
            )
        return self.ref


class TokenRequest(BaseModel):
    role: str = Field(description=f"one of: {', '.join(ROLES)} (see SECURITY.md)")
    name: str = Field(default="", max_length=128, description="what the token is for")
