"""Where a batch job the server runs for someone may read and write.

A token that may run jobs must not make the server read any file it can (and copy it out through
a passthrough column), write anywhere, or fetch from any URL: local paths must resolve, links
followed, inside the folders an operator allows (``CLOCHE_BATCH__ALLOWED_DIRS``), and every
file a pattern or folder names must too (a link inside pointing out is refused); object-store
URLs must start with a prefix the operator lists (``CLOCHE_BATCH__ALLOWED_URLS``), and any other
protocol, a chained URL (``simplecache::s3://...``) or a cache wrapper is refused.

Local paths must be absolute (``check_absolute``, called with the spec's other checks in
cloche/batch/plan.py): a relative one would be taken against the server's working folder, not
the folder of the user who typed it (the SDK makes them absolute: cloche/client/_paths.py).

The job service checks a spec when it is submitted or scheduled, and the engine checks the files
it planned before reading them, since a pattern can match new files (or links) by the time the
job runs. Which callers are confined is the service's business: see cloche/batch/service.py.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloche.errors import DestinationRefused, InvalidInput

if TYPE_CHECKING:
    from cloche.batch.spec import JobSpec
    from cloche.config import Settings

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_GLOB = re.compile(r"[*?\[]")
DIRS_SETTING = "CLOCHE_BATCH__ALLOWED_DIRS"
URLS_SETTING = "CLOCHE_BATCH__ALLOWED_URLS"


def is_url(value: str) -> bool:
    """Whether ``value`` names an fsspec URL (or a chain of them) rather than a local path."""
    return bool(_SCHEME.match(value)) or "::" in value


def has_pattern(value: str) -> bool:
    return bool(_GLOB.search(value))


def check_absolute(spec: JobSpec) -> None:
    """Refuse a relative local input or output: the server cannot know whose folder it meant."""
    relative = [
        f"{what} {value!r}"
        for what, value in (("input", spec.input), ("output", spec.output))
        if value.strip() and not is_url(value) and not os.path.isabs(value)
    ]
    if relative:
        raise InvalidInput(
            f"batch paths must be absolute on the server; {' and '.join(relative)} "
            f"{'is' if len(relative) == 1 else 'are'} relative",
            hint="give absolute paths (the CLI and SDK make typed paths absolute for you), "
            "or an object-store URL such as s3://bucket/prefix",
        )


@dataclass(frozen=True)
class Places:
    """The allowed folders (resolved) and object-store URL prefixes."""

    dirs: tuple[Path, ...]
    urls: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Places:
        return cls(
            tuple(d.resolve() for d in settings.batch_allowed_dirs),
            tuple(settings.batch.allowed_urls),
        )

    def check_spec(self, spec: JobSpec) -> None:
        """The input (with every file it names now) and the output folder."""
        self.check_input(spec.input)
        self.check_output(spec.output)

    def check_input(self, value: str) -> None:
        if is_url(value):
            self.check_url(value, "input")
            return
        path = Path(os.path.expanduser(value))
        if _GLOB.search(str(path)):
            self._inside(_pattern_base(path), value, "input")
            found = glob.glob(str(path), recursive=True)
        elif path.is_dir():
            self._inside(path, value, "input")
            found = [str(p) for p in path.iterdir()]
        else:
            found = [str(path)]
        self.check_files(found, what="input")

    def check_output(self, value: str) -> None:
        if is_url(value):  # jobs write local folders only
            raise _refused(
                f"batch output {value!r} is not a local folder inside the folders this server "
                "may use",
                DIRS_SETTING,
            )
        self._inside(Path(os.path.expanduser(value)), value, "output")

    def check_files(self, paths: Iterable[str], *, what: str = "input") -> None:
        """Each file as the engine will open it: a local path (links resolved) or a URL."""
        for path in paths:
            if is_url(path):
                self.check_url(path, what)
            else:
                self._inside(Path(path), path, what)

    def check_url(self, value: str, what: str) -> None:
        if "::" in value:
            raise _refused(
                f"batch {what} {value!r} chains filesystems (::), which jobs sent to the server "
                "may not do",
                URLS_SETTING,
            )
        scheme, sep, rest = value.partition("://")
        segments = rest.split("/")[1:]
        if sep and ("." in segments or ".." in segments):
            raise _refused(f"batch {what} {value!r} holds a '.' or '..' segment", URLS_SETTING)
        normal = f"{scheme.lower()}{sep}{rest}"
        if not any(_under(normal, prefix) for prefix in self.urls):
            shown = ", ".join(self.urls) or "none"
            raise _refused(
                f"batch {what} {value!r} is not under an object-store prefix this server may "
                f"use (allowed: {shown})",
                URLS_SETTING,
            )

    def _inside(self, path: Path, given: str, what: str) -> None:
        # Links followed and '..' removed; paths arrive absolute (check_absolute), so the
        # server's working folder plays no part.
        resolved = path.resolve()
        if not any(resolved == root or root in resolved.parents for root in self.dirs):
            shown = ", ".join(str(r) for r in self.dirs)
            named = given if str(resolved) == given else f"{given} (that is {resolved})"
            raise _refused(
                f"batch {what} {named} is outside the folders this server may use: {shown}",
                DIRS_SETTING,
            )


def _pattern_base(path: Path) -> Path:
    """The folders of a pattern before its first wildcard: every match lies below them."""
    parts = []
    for part in path.parts:
        if _GLOB.search(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _under(url: str, prefix: str) -> bool:
    scheme, sep, rest = prefix.partition("://")
    prefix = f"{scheme.lower()}{sep}{rest}"
    if not url.startswith(prefix):
        return False
    # s3://bucket-a/data allows s3://bucket-a/data/x but not s3://bucket-a/data2 or s3://b@x.
    return len(url) == len(prefix) or prefix.endswith("/") or url[len(prefix)] == "/"


def _refused(message: str, setting: str) -> DestinationRefused:
    return DestinationRefused(
        message,
        hint=f"use a place the server allows, or have an operator list it in {setting}",
    )


# Protocols that reach local files, memory, arbitrary hosts or wrap another filesystem: never
# an object-store prefix an operator means to allow.
LOCAL_PROTOCOLS = frozenset(
    {"file", "local", "memory", "http", "https", "ftp", "sftp", "ssh", "smb", "data", "zip"}
    | {"tar", "libarchive", "reference", "dir", "simplecache", "filecache", "blockcache"}
    | {"cached", "github", "git", "jupyter", "webhdfs", "hdfs", "dbfs"}
)


def check_prefix(prefix: str) -> str:
    """An entry of CLOCHE_BATCH__ALLOWED_URLS: ``scheme://bucket[/prefix]`` of an object store."""
    scheme, sep, rest = prefix.partition("://")
    bucket = rest.split("/", 1)[0]
    local = scheme.lower() in LOCAL_PROTOCOLS
    if not sep or not bucket or "::" in prefix or local or not _SCHEME.match(prefix):
        raise ValueError(
            f"{prefix!r} is not an object-store prefix like s3://bucket/prefix or gs://bucket "
            "(local, in-memory, HTTP and chained or caching protocols are not allowed)"
        )
    return prefix
