"""podman for the image tests: the runc runtime, the testbed's containers.conf, a cached base.

No image registry is reachable here, so the base image is Debian bookworm with python3 made by
debootstrap (cached in podman's store as BASE_IMAGE): it has neither pip nor venv, which the
Dockerfiles must cope with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche.export.downloads import pip_command

BASE_IMAGE = "localhost/cloche-test-base:bookworm"
CONF = Path(__file__).with_name("containers.conf")
MIRROR = "http://deb.debian.org/debian"


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `bash scripts/services.sh` (make test does)")
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    done = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian bookworm minbase with python3, made once and kept in podman's image store."""
    if (
        subprocess.run(
            ["podman", "image", "exists", BASE_IMAGE],
            env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        ).returncode
        == 0
    ):
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("rootfs")
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs), MIRROR],
        check=True,
        capture_output=True,
        timeout=900,
    )
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    # The with-block closes tar's pipe: an open one fails the session as a ResourceWarning.
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            env=env,
            timeout=300,
        )
    assert tar.returncode == 0
    return BASE_IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_offline(context: Path, *, base: str, tag: str, dockerfile: Path | None = None) -> None:
    """Build ``context`` with no network (no registry is reachable) on the ``base`` image."""
    file = ["-f", str(dockerfile)] if dockerfile is not None else []
    podman(
        "build",
        "-q",
        "--network",
        "none",
        "--build-arg",
        f"BASE={base}",
        *file,
        "-t",
        tag,
        str(context),
    )


REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "image.txt"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The lock's wheels (about 190 MB, downloaded once per lock) and a fresh cloche wheel."""
    key = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dest = cache / "cloche-test-wheels" / key
    # The venv may have no pip (uv makes it); the script needs a python that has one.
    python = pip_command()[0]
    subprocess.run(
        ["bash", str(REPO / "deploy" / "wheelhouse.sh"), str(dest)],
        check=True,
        capture_output=True,
        timeout=1200,
        env={**os.environ, "PYTHON": python},
    )
    return dest


@pytest.fixture(scope="session")
def up_image(
    base_image: str, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """deploy/Dockerfile built once per session: the `cloche up` image the image tests run."""
    # A context laid out like the repository, holding only what .dockerignore lets through;
    # hard links spare copying the wheels when the cache shares the file system.
    context = tmp_path_factory.mktemp("up-image") / "context"
    (context / "requirements").mkdir(parents=True)
    shutil.copy(LOCK, context / "requirements" / LOCK.name)
    shutil.copytree(REPO / "deploy", context / "deploy", ignore=shutil.ignore_patterns("wheels"))
    shutil.copy(REPO / ".dockerignore", context / ".dockerignore")
    try:
        shutil.copytree(wheelhouse, context / "deploy" / "wheels", copy_function=os.link)
    except OSError:
        shutil.rmtree(context / "deploy" / "wheels", ignore_errors=True)
        shutil.copytree(wheelhouse, context / "deploy" / "wheels")
    tag = f"localhost/cloche-up-test:{uuid.uuid4().hex[:12]}"
    try:
        build_offline(
            context, base=base_image, tag=tag, dockerfile=context / "deploy" / "Dockerfile"
        )
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


# Stand-ins for the public images deploy/compose names (no registry is reachable here), built
# from the debootstrap base with Debian's packages. Each honours the interface compose.yaml
# uses, and only that: the official postgres image's POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB and PGDATA, and haproxy on PATH as the `haproxy` user.
POSTGRES_STANDIN = """\
ARG BASE
FROM ${BASE}
RUN apt-get update -q && apt-get install -q -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15 \\
    && mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
"""
# What the official image's entrypoint does on a first start, for the variables compose sets.
POSTGRES_ENTRYPOINT = """\
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pw"
    # UTF8 as in the official image: minbase's POSIX locale would make it SQL_ASCII, where
    # psycopg hands text back as bytes.
    initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pw" -E UTF8 --locale=C.UTF-8 \\
        --auth-local=trust --auth-host=scram-sha-256 > /dev/null
    rm -f "$pw"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    db="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \\"$db\\"" | postgres --single -D "$PGDATA" postgres > /dev/null
    fi
fi
exec "$@"
"""
HAPROXY_STANDIN = """\
ARG BASE
FROM ${BASE}
RUN apt-get update -q && apt-get install -q -y --no-install-recommends haproxy \\
    && rm -rf /var/lib/apt/lists/*
USER haproxy
"""


FILE_MODE = 0o644  # part of an image's tag: images built before it had the builder's umask


def standin_image(base: str, name: str, files: dict[str, str]) -> str:
    """Build ``files`` (a Dockerfile and what it copies) on ``base`` once, keyed by content.

    The build fetches Debian packages from the mirror the base came from (the only network the
    image tests use); a second session finds the image in podman's store.
    """
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base).strip()
    digest = hashlib.sha256(base_id.encode())
    for path, text in sorted(files.items()):
        digest.update(f"{path}\0{text}\0{FILE_MODE:o}\0".encode())
    tag = f"localhost/cloche-test-{name}:{digest.hexdigest()[:12]}"
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    if subprocess.run(["podman", "image", "exists", tag], env=env).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in files.items():
            (Path(tmp) / path).write_text(text)
            # COPY keeps the mode: readable by the image's own user whatever the umask was.
            (Path(tmp) / path).chmod(FILE_MODE)
        podman("build", "-q", "--build-arg", f"BASE={base}", "-t", tag, tmp, timeout=900)
    return tag


@pytest.fixture(scope="session")
def postgres_image(base_image: str) -> str:
    """Stands in for docker.io/library/postgres in deploy/compose."""
    files = {"Dockerfile": POSTGRES_STANDIN, "entrypoint.sh": POSTGRES_ENTRYPOINT}
    return standin_image(base_image, "postgres", files)


@pytest.fixture(scope="session")
def haproxy_image(base_image: str) -> str:
    """Stands in for docker.io/library/haproxy in deploy/compose."""
    return standin_image(base_image, "haproxy", {"Dockerfile": HAPROXY_STANDIN})
