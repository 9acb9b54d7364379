"""Slim wheels: the dead library left out, every kept file as it was, the version marked."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from cloche.export.manifest import file_entry
from cloche.export.slim import RULES, SlimRule, slim_wheel
from cloche.export.wheel import record_hash

RULE = SlimRule(drop=re.compile(r"eng/capi/libeng\.so\.[0-9.]+"), why="C API copy")
EXTENSION = b"\x7fELF engine linked in statically"


def make_wheel(folder: Path, extension: bytes = EXTENSION) -> Path:
    """A small stand-in for onnxruntime's wheel: an extension module, a C API library beside
    it, a Python file, and a dist-info with a RECORD."""
    files = {
        "eng/__init__.py": b"from eng.capi import _state\n",
        "eng/capi/_state.cpython-311-x86_64-linux-gnu.so": extension,
        "eng/capi/libeng.so.1.2.0": b"\x7fELF the C API library" * 100,
        "eng-1.2.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: eng\nVersion: 1.2.0\n",
        "eng-1.2.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n",
    }
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in files.items())
    files["eng-1.2.0.dist-info/RECORD"] = (record + "eng-1.2.0.dist-info/RECORD,,\n").encode()
    path = folder / "eng-1.2.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 13, 6, 39, 0))
            info.external_attr = (0o755 if ".so" in name else 0o644) << 16
            zf.writestr(info, data)
    return path


def test_the_slim_wheel_leaves_out_the_library_and_keeps_every_other_file_as_it_was(
    tmp_path: Path,
) -> None:
    wheel = make_wheel(tmp_path)
    original_sha = file_entry(wheel)["sha256"]
    with zipfile.ZipFile(wheel) as zf:
        before = {i.filename: (zf.read(i), i.external_attr) for i in zf.infolist()}

    slim = slim_wheel(wheel, RULE)

    assert slim is not None and not wheel.exists()
    assert slim.path.name == "eng-1.2.0+slim-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert slim.version == "1.2.0+slim"
    assert slim.removed == {"eng/capi/libeng.so.1.2.0": len(before["eng/capi/libeng.so.1.2.0"][0])}
    assert (slim.original, slim.original_sha256) == (wheel.name, original_sha)
    with zipfile.ZipFile(slim.path) as zf:
        after = {i.filename: (zf.read(i), i.external_attr) for i in zf.infolist()}
    assert "eng/capi/libeng.so.1.2.0" not in after
    for name in ("eng/__init__.py", "eng/capi/_state.cpython-311-x86_64-linux-gnu.so"):
        assert after[name] == before[name]  # bytes and permission bits
    assert b"Version: 1.2.0+slim\n" in after["eng-1.2.0+slim.dist-info/METADATA"][0]
    assert not [n for n in after if n.startswith("eng-1.2.0.dist-info/")]


def test_the_slim_wheels_record_lists_every_file_it_holds_with_its_hash(tmp_path: Path) -> None:
    slim = slim_wheel(make_wheel(tmp_path), RULE)
    assert slim is not None
    with zipfile.ZipFile(slim.path) as zf:
        record = zf.read("eng-1.2.0+slim.dist-info/RECORD").decode().splitlines()
        listed = dict(line.split(",", 1) for line in record)
        assert set(listed) == set(zf.namelist())
        for name in zf.namelist():
            if not name.endswith("RECORD"):
                data = zf.read(name)
                assert listed[name] == f"{record_hash(data)},{len(data)}", name


def test_a_wheel_whose_extension_names_the_library_is_kept_whole(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, extension=b"\x7fELF NEEDED libeng.so.1 ...")
    before = file_entry(wheel)
    assert slim_wheel(wheel, RULE) is None
    assert file_entry(wheel) == before
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]


def test_a_wheel_without_the_library_is_left_as_it_is(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    other = SlimRule(drop=re.compile(r"eng/capi/libother\.so"), why="")
    assert slim_wheel(wheel, other) is None
    assert wheel.exists()


def test_the_onnxruntime_rule_drops_the_c_api_library_only() -> None:
    drop = RULES["onnxruntime"].drop
    assert drop.fullmatch("onnxruntime/capi/libonnxruntime.so.1.32.0")
    assert not drop.fullmatch("onnxruntime/capi/libonnxruntime_providers_shared.so")
    assert not drop.fullmatch("onnxruntime/capi/onnxruntime_pybind11_state.cpython-311.so")


def test_a_version_with_a_local_label_gets_another_segment(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    labelled = wheel.rename(wheel.with_name(wheel.name.replace("-1.2.0-", "-1.2.0+cpu-")))
    slim = slim_wheel(labelled, RULE)
    assert slim is not None and slim.version == "1.2.0+cpu.slim"
    assert slim.path.name.startswith("eng-1.2.0+cpu.slim-")
