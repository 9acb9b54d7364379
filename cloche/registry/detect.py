"""Tell which framework saved a model file or folder, from its content rather than its name.

Detection only reads bytes: it never unpickles, imports or runs anything, and it imports no
framework, so it is safe on any upload and cheap on a large one.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

from cloche.errors import (
    ArtifactNotFound,
    ClocheError,
    CorruptArtifact,
    NotAModel,
    UnknownFramework,
)
from cloche.runtimes import runtime_names

HEAD_BYTES = 4096
MAX_JSON_SNIFF = 16 * 1024 * 1024
PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle"})
TORCH_SUFFIXES = frozenset({".pt", ".pth", ".zip"})
CUSTOM_ENTRY = "model.py"

# XGBoost writes object keys sorted, so its JSON models open with the "learner" key and its
# UBJSON models with "{", a length marker and "learner".
_XGB_JSON = re.compile(rb'^\s*\{\s*"learner"\s*:')
_UBJ_LENGTH_MARKERS = b"iUIlL"
# Compressed joblib files start with their codec's magic number instead of a pickle opcode.
_JOBLIB_MAGIC = (b"ZF", b"\x78", b"\x1f\x8b", b"BZ", b"]\x00\x00", b"\xfd7zXZ", b"\x04\x22\x4d\x18")
# Top-level ModelProto fields and their protobuf wire types (0 varint, 2 length-delimited).
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_IR_VERSION, _ONNX_GRAPH = 1, 7


def detect_framework(path: Path) -> str:
    """The runtime name (see ``cloche.runtimes.RUNTIMES``) for a model file or folder."""
    if path.is_dir():
        return _detect_folder(path)
    if not path.is_file():
        raise ArtifactNotFound(f"{path} does not exist", hint="check the path of the model file")
    return _detect_file(path)


def _pass_framework() -> str:
    return f"pass --framework with one of: {', '.join(runtime_names())}"


def _detect_folder(folder: Path) -> str:
    if (folder / CUSTOM_ENTRY).is_file():
        return "custom"
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        try:
            found[rel.as_posix()] = _detect_file(path)
        except ClocheError:
            continue  # data files, READMEs and the like sit beside models
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise UnknownFramework(
            f"found no model file in the folder {folder.name}",
            hint=f"add {CUSTOM_ENTRY} for a custom model, or {_pass_framework()}",
        )
    listed = ", ".join(f"{name} ({fw})" for name, fw in found.items())
    raise UnknownFramework(
        f"the folder {folder.name} holds several model files: {listed}",
        hint="upload one model file, or a folder with one model file",
    )


def _detect_file(path: Path) -> str:
    name, suffix = path.name, path.suffix.lower()
    if name == CUSTOM_ENTRY:
        return "custom"
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise NotAModel(f"{name} is empty", hint="upload the file the framework saved the model to")
    if head.startswith(b"PK\x03\x04") or suffix in TORCH_SUFFIXES:
        return _detect_archive(path, head)
    if _is_xgboost(path, head):
        return "xgboost"
    if _is_lightgbm(head):
        return "lightgbm"
    if suffix in PICKLE_SUFFIXES:
        if head.startswith(b"\x80") or head.startswith(_JOBLIB_MAGIC):
            return "sklearn"
        raise NotAModel(
            f"{name} is not a joblib or pickle file", hint="save the model with joblib.dump"
        )
    problem = _onnx_problem(path)
    if problem is None:
        return "onnx"
    if suffix == ".onnx":
        raise CorruptArtifact(f"{name} is not a valid ONNX model: {problem}")
    if suffix in (".json", ".ubj"):
        raise NotAModel(
            f"{name} is not an XGBoost model: it has no top-level 'learner' key",
            hint="save the model with Booster.save_model or XGBModel.save_model",
        )
    if _is_text(head):
        raise NotAModel(
            f"{name} is a text file, not a saved model",
            hint="upload the file the framework saved the model to (LightGBM text models "
            "start with 'tree'), or a folder with model.py",
        )
    raise UnknownFramework(f"cannot tell which framework saved {name}", hint=_pass_framework())


def _detect_archive(path: Path, head: bytes) -> str:
    if not head.startswith(b"PK"):
        raise NotAModel(
            f"{path.name} is not a TorchScript model: TorchScript models are zip archives",
            hint="export the model with torch.jit.script(model).save(path)",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptArtifact(f"{path.name} is a damaged zip archive: {exc}") from exc
    # torch archives hold one top folder: data.pkl + version, and code/ for TorchScript.
    inner = {n.split("/", 1)[1] for n in names if "/" in n}
    if (
        ("data.pkl" in inner and ("version" in inner or ".data/version" in inner))
        or "constants.pkl" in inner
        or any(n.startswith("code/") for n in inner)
    ):
        return "torch"
    raise UnknownFramework(
        f"{path.name} is a zip archive but not a TorchScript model",
        hint=f"unzip it and upload the model file or folder, or {_pass_framework()}",
    )


def _is_xgboost(path: Path, head: bytes) -> bool:
    if _XGB_JSON.match(head):
        return True
    if head[:1] == b"{" and head[1:2] in _UBJ_LENGTH_MARKERS and b"learner" in head[:32]:
        return True
    # JSON rewritten by another tool may put "learner" after other keys: parse small ones.
    if head.lstrip()[:1] != b"{" or path.stat().st_size > MAX_JSON_SNIFF:
        return False
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not a model
        return False
    return isinstance(data, dict) and isinstance(data.get("learner"), dict)


def _is_lightgbm(head: bytes) -> bool:
    lines = head[:256].decode("utf-8", errors="replace").splitlines()
    return (
        len(lines) > 1
        and lines[0].strip() == "tree"
        and any(line.startswith("version=v") for line in lines[1:4])
    )


def _onnx_problem(path: Path) -> str | None:
    """None if the file's top level parses as an ONNX ModelProto, else what is wrong with it."""
    size = path.stat().st_size
    seen: set[int] = set()
    with path.open("rb") as fh:
        while fh.tell() < size:
            key = _varint(fh)
            field, wire = (key >> 3, key & 7) if key is not None else (0, -1)
            if _ONNX_FIELDS.get(field) != wire:
                return "its bytes are not an ONNX protobuf message"
            value = _varint(fh)
            if value is None:
                return "the file is truncated"
            if wire == 2:
                if fh.tell() + value > size:
                    return "the file is truncated"
                fh.seek(value, 1)
            elif field == _ONNX_IR_VERSION and not 1 <= value <= 100:
                return f"implausible IR version {value}"
            seen.add(field)
    if _ONNX_IR_VERSION not in seen or _ONNX_GRAPH not in seen:
        return "it has no IR version or no graph"
    return None


def _varint(fh: BinaryIO) -> int | None:
    result = shift = 0
    while shift < 64:
        byte = fh.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end of the head
    return True
