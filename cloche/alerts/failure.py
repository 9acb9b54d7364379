"""One failed delivery attempt, as a sender reports it to the retry loop."""

from __future__ import annotations


class AttemptFailed(Exception):
    """One attempt failed. ``retry`` says whether another attempt could succeed; ``wait_s``
    is the server's Retry-After, if it gave one."""

    def __init__(self, reason: str, *, retry: bool, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.wait_s = wait_s
