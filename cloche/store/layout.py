"""Where things live under CLOCHE_HOME, for every layer that must find them (the payload log's
writer and reader, backups)."""

from __future__ import annotations

from pathlib import Path


def log_root(home: Path) -> Path:
    """The payload log's folder: hourly segments per endpoint, and its compaction lock."""
    return home / "logs"
