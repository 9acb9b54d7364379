"""What a channel sends: any message with a subject (email), a text (chat and email) and a JSON
form (the webhook body's ``alert``). A monitor's digest is one; a pipeline's notice another."""

from __future__ import annotations

from typing import Any, Protocol


class Message(Protocol):
    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...
