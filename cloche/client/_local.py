"""In-process transport: the SDK calls the service layer directly on CLOCHE_HOME's store."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from cloche.auth.roles import Principal, local_actor
from cloche.config import Settings
from cloche.store.store import Store


def as_path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


class LocalTransport:
    """Holds the Store; opened on first use so building a Client costs nothing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.actor = local_actor()
        # Whoever can open CLOCHE_HOME owns it (it is owner-only): the local user is its admin.
        self.principal = Principal(actor=self.actor, role="admin")

    @cached_property
    def store(self) -> Store:
        return Store.open(self.settings)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
