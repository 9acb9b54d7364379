"""The local admin credential: a real admin token whose secret lives in an owner-only file.

`cloche up` makes sure ``$CLOCHE_HOME/local-token`` holds a token that still authenticates; the
CLI and the HTTP SDK read it by themselves when they talk to a loopback server. Whoever can read
the file can already read the store it guards, so it grants nothing new; everyone else is kept
out by the file's mode (0600, set when the file is created, never widened).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cloche.errors import LocalTokenNotFound, Unauthorized
from cloche.store.private import private_file

if TYPE_CHECKING:  # the SDK reads the file without opening a store
    from cloche.store.store import Store

FILE_NAME = "local-token"
TOKEN_NAME = "local admin"


def token_path(home: Path) -> Path:
    return home / FILE_NAME


def read_local_token(home: Path) -> str | None:
    """The local admin token under ``home``, or None when there is none (or it is unreadable)."""
    try:
        token = token_path(home).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def require_local_token(home: Path) -> str:
    """The local admin token under ``home``; LocalTokenNotFound with what to do otherwise."""
    token = read_local_token(home)
    if token is None:
        raise LocalTokenNotFound(
            f"there is no local admin token in {token_path(home.resolve())}",
            hint="start `cloche up` first (with the same CLOCHE_HOME): it writes the token there",
        )
    return token


def ensure_local_token(store: Store) -> Path:
    """Keep ``local-token`` holding a live admin token: reuse it, or replace a revoked one."""
    from cloche.auth import tokens  # the store layer loads only where a store is used

    path = token_path(store.home)
    existing = read_local_token(store.home)
    if existing is not None:
        try:
            tokens.authenticate(store, existing)
        except Unauthorized:
            pass  # revoked, or from another database: make a new one below
        else:
            private_file(path)  # a mode widened since (chmod, a copy) is narrowed again
            return path
    new = tokens.create_token(store, role="admin", name=TOKEN_NAME, actor="system")
    _write_private(path, new.token)
    return path


def _write_private(path: Path, secret: str) -> None:
    """Write ``secret`` to a new file that is 0600 from its first moment (O_EXCL: no symlink)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    # A rename replaces an old file at once: a reader sees the old token or the new one.
    os.replace(tmp, path)
