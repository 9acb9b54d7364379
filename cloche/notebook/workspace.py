"""What `cloche notebook` prepares before JupyterLab starts: the folder (seeded with the starter
notebooks when empty), the server's URL and credential for the kernels, and the command."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from cloche.auth.local_token import require_local_token
from cloche.config import Settings
from cloche.errors import InvalidInput, MissingDependency
from cloche.hosts import is_loopback

# Modules of the `notebook` extra that `cloche notebook` itself needs.
NEEDED = ("jupyterlab", "ipykernel")


def require_extra() -> None:
    """MissingDependency, saying what to install, unless JupyterLab and ipykernel import."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(
            f"`cloche notebook` needs {' and '.join(missing)}, which are not installed here",
            hint="pip install 'cloche[notebook]'",
        )


def starters() -> Path | None:
    """The starter notebooks: inside the installed package (the wheel carries them), or the
    checkout's examples/notebooks for an editable install."""
    packaged = Path(__file__).with_name("starters")
    checkout = Path(__file__).resolve().parents[2] / "examples" / "notebooks"
    for place in (packaged, checkout):
        if any(place.glob("*.ipynb")):
            return place
    return None


def prepare_dir(directory: Path) -> list[Path]:
    """Make ``directory``; when it is empty, copy the starter notebooks in. What was copied."""
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is a file, not a folder", hint="pass --dir FOLDER")
    directory.mkdir(parents=True, exist_ok=True)
    source = starters()
    if any(directory.iterdir()) or source is None:
        return []
    copied = []
    for notebook in sorted(source.glob("*.ipynb")):
        copied.append(Path(shutil.copy2(notebook, directory / notebook.name)))
    return copied


def server_url(settings: Settings) -> str:
    """Where `cloche up` on these settings answers, as this machine reaches it."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: loopback reaches it too
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.server.tls else "http"
    return f"{scheme}://{host}:{settings.server.port}"


def kernel_env(settings: Settings, url: str, token: str | None) -> dict[str, str]:
    """CLOCHE_URL, CLOCHE_TOKEN and CLOCHE_HOME for the kernels: ``cloche.Client()`` reaches the
    server, and pipelines run in a notebook are recorded in the server's store."""
    if token is None:
        host = urlsplit(url).hostname or ""
        if not is_loopback(host):
            raise InvalidInput(
                f"{url} is not this machine, so the local admin token cannot be used for it",
                hint="pass --token TOKEN (or set CLOCHE_TOKEN) with a token of that server",
            )
        token = require_local_token(settings.home)
    return {
        "CLOCHE_URL": url,
        "CLOCHE_TOKEN": token,
        "CLOCHE_HOME": str(settings.home.resolve()),
    }


def jupyter_command(directory: Path, *, port: int | None, browser: bool) -> list[str]:
    """JupyterLab in ``directory`` on loopback; a port given is taken or fails, not moved."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={directory.resolve()}"]
    command.append("--ServerApp.ip=127.0.0.1")
    if port is not None:
        command += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if not browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses root, which containers often are; it listens on loopback only.
        command.append("--allow-root")
    return command
