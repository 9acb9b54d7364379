"""API tokens: create, list and revoke them (admin).

The interface (`TokensAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

from typing import Protocol

from cloche.auth import tokens
from cloche.auth.tokens import NewToken, TokenInfo
from cloche.client._http import API, HttpTransport, path_segment
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.store.paging import Order


class TokensAPI(Protocol):
    def create(self, *, role: str, name: str = "") -> NewToken: ...

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TokenInfo]: ...

    def revoke(self, token_id: str) -> TokenInfo: ...


class LocalTokens:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def create(self, *, role: str, name: str = "") -> NewToken:
        return tokens.create_token(self._t.store, role=role, name=name, actor=self._t.actor)

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TokenInfo]:
        return collect(
            lambda page: tokens.page_tokens(self._t.store, page),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def revoke(self, token_id: str) -> TokenInfo:
        return tokens.revoke_token(self._t.store, token_id=token_id, actor=self._t.actor)


class HttpTokens:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def create(self, *, role: str, name: str = "") -> NewToken:
        response = self._t.request("POST", f"{API}/tokens", json={"role": role, "name": name})
        return NewToken.model_validate(response.json())

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TokenInfo]:
        return collect(
            lambda page: http_page(self._t, f"{API}/tokens", page, TokenInfo),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def revoke(self, token_id: str) -> TokenInfo:
        response = self._t.request("DELETE", f"{API}/tokens/{path_segment(token_id)}")
        return TokenInfo.model_validate(response.json())
