"""Wheels of the pinned requirements, fetched with ``pip download`` for the target platform.

One pip call fetches every wheel (binary only, no dependency resolution: the closure is already
pinned), plus pip's own wheel, so a target without pip can run ``python3 pip-*.whl/pip install``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cloche.errors import DownloadFailed, MissingDependency
from cloche.export.requirements import PLATFORM_MACHINES, Pin, canonical

# manylinux tags a glibc 2.28 system (RHEL 8, Debian 10 and newer) runs, legacy aliases included;
# a wheel qualifies if any one of its tags is listed.
GLIBC_MINORS = range(5, 29)
LEGACY_MANYLINUX = ("manylinux1", "manylinux2010", "manylinux2014")
# torch's CPU builds (versions like 2.13.0+cpu) are on PyTorch's own index, not on PyPI.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TIMEOUT_S = 1800


def platform_tags(platform: str) -> list[str]:
    """The --platform tags pip accepts for one of our platform names."""
    machine = PLATFORM_MACHINES[platform]
    legacy = [f"{tag}_{machine}" for tag in LEGACY_MANYLINUX]
    if machine != "x86_64":
        legacy = [f"manylinux2014_{machine}"]  # manylinux1 and 2010 were x86 only
    return legacy + [f"manylinux_2_{minor}_{machine}" for minor in GLIBC_MINORS]


def pip_command() -> list[str]:
    """How to run pip: this interpreter's own, else the ``python3`` on PATH (uv-made venvs
    have no pip; pip download for another platform needs no particular interpreter)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found and _has_pip(found):
            return [found, "-m", "pip"]
    raise MissingDependency(
        "--with-wheels downloads wheels with pip, and no pip was found",
        hint="install pip into this environment (python -m ensurepip), or export without "
        "--with-wheels",
    )


def _has_pip(python: str) -> bool:
    probe = subprocess.run(
        [python, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def pip_version(pip: list[str]) -> str:
    probe = subprocess.run([*pip, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"pip (\S+)", probe.stdout)
    if probe.returncode != 0 or match is None:
        raise MissingDependency(f"`{' '.join(pip)} --version` failed: {probe.stderr.strip()}")
    return match.group(1)


def download_wheels(
    pins: list[Pin], dest: Path, *, python_version: str, platform: str | None
) -> tuple[dict[str, Path], str]:
    """Fetch a wheel for every pin and for pip into ``dest``.

    Returns each pin's wheel by canonical name, and the pip wheel's file name.
    """
    pip = pip_command()
    pip_pin = Pin("pip", pip_version(pip))
    dest.mkdir(parents=True, exist_ok=True)
    command = [
        *pip,
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--dest",
        str(dest),
        "--python-version",
        python_version,
    ]
    for tag in platform_tags(platform) if platform else ():
        command += ["--platform", tag]
    if any("+cpu" in pin.version for pin in pins):
        command += ["--extra-index-url", TORCH_CPU_INDEX]
    command += [str(pin) for pin in [*pins, pip_pin]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DownloadFailed(
            f"pip download did not finish within {TIMEOUT_S} s",
            hint="check the network, or export without --with-wheels",
        ) from None
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        raise DownloadFailed(
            "could not download the bundle's wheels: " + " / ".join(tail),
            hint="check that this machine reaches the package index, that every pinned version "
            "has a wheel for the target (--platform, Python version), or export without "
            "--with-wheels",
        )
    wheels = {_wheel_project(p.name): p for p in dest.glob("*.whl")}
    missing = [str(pin) for pin in [*pins, pip_pin] if pin.key not in wheels]
    if missing:
        raise DownloadFailed(f"pip download gave no wheel for {', '.join(missing)}")
    return {pin.key: wheels[pin.key] for pin in pins}, wheels[pip_pin.key].name


def _wheel_project(filename: str) -> str:
    """A wheel file's canonical project name (``scikit_learn-1.5.0-...`` -> ``scikit-learn``)."""
    return canonical(filename.split("-", 1)[0])
