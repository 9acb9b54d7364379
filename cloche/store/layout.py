"""Where things live under CLOCHE_HOME, for every layer that must find them (the payload log's
writer and reader, backups), and where replicas on one store share their payload log."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path

SHARED_LOG_FOLDER = "payload-log"  # under the configured shared location
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def log_root(home: Path) -> Path:
    """The payload log's folder: hourly segments per endpoint, and its compaction lock."""
    return home / "logs"


@dataclass(frozen=True)
class SharedLog:
    """Where replicas on one store write their compacted payload log (``logs.shared``): a
    folder every replica mounts, or an object-store URL; ``endpoint_url`` names an
    S3-compatible service. Credentials never live here: s3fs reads the AWS_* environment."""

    url: str
    endpoint_url: str | None = None


def default_replica_id(home: Path) -> str:
    """A replica's name in the shared log when none is configured: its host and a hash of its
    home, the same across restarts, different for two servers on one host."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
    host = _NOT_NAME.sub("-", socket.gethostname()).strip("-.") or "host"
    return f"{host[:60]}-{digest}"
