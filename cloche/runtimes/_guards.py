"""Checks a file passes before a native loader sees it.

Some framework loaders do not raise on a damaged file: LightGBM aborts or segfaults the process
on a truncated text model, XGBoost reads past the end of a truncated UBJSON model and allocates
without bound, and onnxruntime follows external-data paths wherever they point. A serving worker
must survive a bad artifact, so these checks run first, in Python, and cost one pass over bytes
the loader reads anyway.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloche.errors import CorruptArtifact

# --- XGBoost UBJSON -----------------------------------------------------------------------------


def ubjson_damage(data: bytes) -> str | None:
    """What is wrong with this UBJSON document, or None when every length fits in the file."""
    try:
        _ubj_value(data, 0, None)
    except (IndexError, struct.error, _Truncated, RecursionError):
        return "it is truncated or its UBJSON is damaged"
    return None


class _Truncated(Exception):
    pass


_UBJ_INTS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}
_UBJ_SCALARS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8, ord("d"): 4}
_UBJ_SCALARS |= {ord("D"): 8, ord("C"): 1, ord("Z"): 0, ord("N"): 0, ord("T"): 0, ord("F"): 0}


def _ubj_length(data: bytes, pos: int) -> tuple[int, int]:
    fmt = _UBJ_INTS.get(data[pos])
    if fmt is None:
        raise _Truncated
    (n,) = struct.unpack_from(fmt, data, pos + 1)
    # Every element takes at least a byte, or XGBoost would allocate for nothing.
    if not 0 <= n <= len(data):
        raise _Truncated
    return n, pos + 1 + struct.calcsize(fmt)


def _ubj_end(data: bytes, end: int) -> int:
    if end > len(data):
        raise _Truncated
    return end


def _ubj_value(data: bytes, pos: int, marker: int | None) -> int:
    """The position just past the UBJSON value at ``pos``."""
    if marker is None:
        marker, pos = data[pos], pos + 1
    if marker in _UBJ_SCALARS:
        return _ubj_end(data, pos + _UBJ_SCALARS[marker])
    if marker in (ord("S"), ord("H")):
        n, pos = _ubj_length(data, pos)
        return _ubj_end(data, pos + n)
    if marker not in (ord("["), ord("{")):
        raise _Truncated
    is_object, typed, count = marker == ord("{"), None, None
    if data[pos] == ord("$"):
        typed, pos = data[pos + 1], pos + 2
    if data[pos] == ord("#"):
        count, pos = _ubj_length(data, pos + 1)
    if count is None:
        close = ord("}") if is_object else ord("]")
        while data[pos] != close:
            if is_object:
                n, pos = _ubj_length(data, pos)
                pos = _ubj_end(data, pos + n)
            pos = _ubj_value(data, pos, None)
        return pos + 1
    if typed in _UBJ_SCALARS and not is_object:
        return _ubj_end(data, pos + count * _UBJ_SCALARS[typed])
    for _ in range(count):
        if is_object:
            n, pos = _ubj_length(data, pos)
            pos = _ubj_end(data, pos + n)
        pos = _ubj_value(data, pos, typed)
    return pos


# --- LightGBM text models -----------------------------------------------------------------------

_TREE_SIZES = re.compile(rb"^tree_sizes=(.*)$", re.MULTILINE)


def lightgbm_text_damage(data: bytes) -> str | None:
    """What is wrong with this LightGBM text model, or None when LightGBM can parse it safely."""
    if not data.startswith(b"tree"):
        return "it does not start with the 'tree' header"
    end = data.find(b"\nend of trees")
    if end < 0:
        return "it is truncated: the 'end of trees' line is missing"
    if b"\nparameters:" in data and b"\nend of parameters" not in data:
        return "it is truncated: the 'end of parameters' line is missing"
    first = data.find(b"\nTree=") + 1 or end + 1
    sizes_line = _TREE_SIZES.search(data, 0, first)
    if sizes_line is None:
        return None
    try:
        sizes = [int(s) for s in sizes_line.group(1).split()]
    except ValueError:
        sizes = [0]
    if not sizes or min(sizes) <= 0:
        return "its tree_sizes line is not a list of sizes"
    # LightGBM jumps to each tree by these byte sizes, in parallel threads that cannot raise.
    offsets = itertools.accumulate([first, *sizes])
    if not all(data.startswith(b"Tree=", o) for o in itertools.islice(offsets, len(sizes))):
        return "its trees do not match its tree_sizes line"
    if not data.startswith(b"end of trees", first + sum(sizes)):
        return "its trees do not match its tree_sizes line"
    return None


# --- ONNX external data -------------------------------------------------------------------------


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else attr.graphs:
                yield from _tensors(sub)


def check_onnx_external_data(proto: Any, path: Path) -> None:
    """Refuse external-data locations that point outside the model's own folder."""
    root = path.parent.resolve()
    for tensor in _tensors(proto.graph):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not (root / location).resolve().is_relative_to(root):
            raise CorruptArtifact(
                f"{path.name} refers to external data outside its folder: {location!r}",
                hint="keep the model's external data files next to the .onnx file",
            )
