"""Slim wheels: a downloaded wheel rewritten without a file the bundle's runtime never loads.

onnxruntime's Python wheel holds its inference engine twice: linked statically into the
extension module ``onnxruntime_pybind11_state*.so``, which ``import onnxruntime`` loads, and as
``libonnxruntime.so.<version>``, the C API's library for C and C++ programs, which nothing in
the Python package loads. In 1.32 that second copy is 35 MB of the 76 MB the wheel installs.

The rewritten wheel is marked as not the index's: its version gets the local label ``+slim``
(``onnxruntime==1.32.0+slim``), the manifest records the original wheel's sha256 and what was
left out, and every kept file is byte for byte the original. Before leaving a library out, every
kept extension module and Python file is searched for its name: if anything could load it, the
wheel is kept whole.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.errors import DownloadFailed
from cloche.export.manifest import file_entry
from cloche.export.wheel import ZIP_TIME, record_hash

LOCAL_LABEL = "slim"


@dataclass(frozen=True)
class SlimRule:
    drop: re.Pattern[str]  # archive paths to leave out
    why: str


# By canonical project name.
RULES: dict[str, SlimRule] = {
    "onnxruntime": SlimRule(
        drop=re.compile(r"onnxruntime/capi/libonnxruntime\.so\.[0-9.]+"),
        why="the C API's shared library; the Python module has the engine linked in and never "
        "loads it",
    ),
}


@dataclass(frozen=True)
class SlimmedWheel:
    path: Path
    version: str  # with the local label, e.g. 1.32.0+slim
    original: str  # the downloaded wheel's file name
    original_sha256: str
    removed: dict[str, int] = field(default_factory=dict)  # archive path -> bytes
    why: str = ""

    def to_manifest(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "from": self.original,
            "from_sha256": self.original_sha256,
            "removed": self.removed,
            "why": self.why,
        }


def slim_wheel(wheel: Path, rule: SlimRule) -> SlimmedWheel | None:
    """Write the slim copy of ``wheel`` beside it and delete the original; None (the wheel
    untouched) when the rule matches nothing or a kept file names a dropped one."""
    name, version, tags = _split_name(wheel.name)
    with zipfile.ZipFile(wheel) as source:
        infos = source.infolist()
        removed = {i.filename: i.file_size for i in infos if rule.drop.fullmatch(i.filename)}
        if not removed:
            return None
        # A version with a local label already (torch's 2.13.0+cpu) gets another segment.
        slim_version = f"{version}{'.' if '+' in version else '+'}{LOCAL_LABEL}"
        target = wheel.with_name(f"{name}-{slim_version}-{tags}.whl")
        if not _rewrite(source, target, removed, _dist_info(infos), slim_version):
            target.unlink()
            return None
    slimmed = SlimmedWheel(
        path=target,
        version=slim_version,
        original=wheel.name,
        original_sha256=file_entry(wheel)["sha256"],
        removed=removed,
        why=rule.why,
    )
    wheel.unlink()
    return slimmed


def _split_name(filename: str) -> tuple[str, str, str]:
    """``onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl`` -> name, version, tags."""
    name, version, tags = filename.removesuffix(".whl").split("-", 2)
    return name, version, tags


def _dist_info(infos: list[zipfile.ZipInfo]) -> str:
    """The wheel's top-level ``<name>-<version>.dist-info`` folder."""
    for info in infos:
        folder, _, rest = info.filename.partition("/")
        if folder.endswith(".dist-info") and rest == "METADATA":
            return folder
    raise DownloadFailed("a downloaded wheel has no .dist-info/METADATA")


def _rewrite(
    source: zipfile.ZipFile,
    target: Path,
    removed: dict[str, int],
    dist_info: str,
    slim_version: str,
) -> bool:
    """Copy every entry but ``removed`` into ``target``, the .dist-info folder renamed to the
    new version, METADATA's Version changed, and RECORD written anew. False, ``target`` left
    unfinished, as soon as a kept extension module or Python file names a removed library."""
    # A loader names a shared library by its soname, the file name up to ".so".
    needles = {Path(path).name.split(".so", 1)[0].encode() + b".so" for path in removed}
    name = dist_info.removesuffix(".dist-info").rsplit("-", 1)[0]
    new_dist_info = f"{name}-{slim_version}.dist-info"
    record_lines = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            if info.filename in removed or info.filename == f"{dist_info}/RECORD":
                continue
            data = source.read(info)
            filename = info.filename
            if filename.endswith((".so", ".py")) and any(n in data for n in needles):
                return False
            if filename.startswith(f"{dist_info}/"):
                filename = new_dist_info + filename[len(dist_info) :]
                if filename == f"{new_dist_info}/METADATA":
                    data = _with_version(data, slim_version)
            _write(out, info, filename, data)
            if not info.is_dir():
                record_lines.append(f"{filename},{record_hash(data)},{len(data)}\n")
        record_lines.append(f"{new_dist_info}/RECORD,,\n")
        record = zipfile.ZipInfo(f"{new_dist_info}/RECORD", date_time=ZIP_TIME)
        _write(out, record, record.filename, "".join(record_lines).encode())
    return True


def _with_version(metadata: bytes, version: str) -> bytes:
    text, count = re.subn(
        r"^Version: .*$", f"Version: {version}", metadata.decode(), count=1, flags=re.M
    )
    if count != 1:
        raise DownloadFailed("a downloaded wheel's METADATA has no Version line")
    return text.encode()


def _write(out: zipfile.ZipFile, like: zipfile.ZipInfo, filename: str, data: bytes) -> None:
    info = zipfile.ZipInfo(filename, date_time=like.date_time)
    info.external_attr = like.external_attr or 0o644 << 16  # keeps a library's exec bits
    info.compress_type = zipfile.ZIP_DEFLATED
    out.writestr(info, data)
