"""Owner-only files: ``CLOCHE_HOME`` holds models, prediction logs, tokens and the database.

Only the owner may enter the home folder (0700) or read what it holds (0600). A folder made by
an older version with wider permissions is narrowed when it is ours; someone else's is left as
it is (we could not change it, and it is not ours to change).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

GROUP_OTHER = stat.S_IRWXG | stat.S_IRWXO


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700, or narrow it to 0700 if it is ours and wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _narrow(path)
    return path


def private_file(path: Path) -> None:
    """Take the group's and others' bits off an existing file of ours; absent files are skipped."""
    _narrow(path)


def _narrow(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and info.st_mode & GROUP_OTHER:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~GROUP_OTHER)
