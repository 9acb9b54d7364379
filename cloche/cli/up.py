"""``cloche up``: serve the REST API on this machine until Ctrl-C or SIGTERM."""

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from cloche.cli._common import load_settings
from cloche.cli._output import err, out
from cloche.config import Settings
from cloche.errors import InvalidInput, Unavailable
from cloche.sizes import format_size, parse_size

if TYPE_CHECKING:  # the server stack loads when `up` runs, not for every other command
    from pathlib import Path

    import uvicorn

    from cloche.store.store import Store

HostOpt = Annotated[
    str | None,
    typer.Option(
        metavar="HOST",
        help="Interface to bind (default: CLOCHE_SERVER__HOST or 127.0.0.1). Any "
        "non-loopback address requires API tokens.",
        show_default=False,
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=65535,
        metavar="PORT",
        help="Port (default: CLOCHE_SERVER__PORT or 8080); 0 picks a free one.",
        show_default=False,
    ),
]


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        metavar="N",
        help="Worker processes serving predictions (default: CLOCHE_SERVING__WORKERS, "
        "or one per core).",
        show_default=False,
    ),
]
GrpcPortOpt = Annotated[
    int | None,
    typer.Option(
        "--grpc-port",
        min=0,
        max=65535,
        metavar="PORT",
        help="Also serve the Open Inference Protocol over gRPC on this port, from every "
        "worker (default: CLOCHE_SERVING__GRPC_PORT; off when unset). Needs cloche[grpc].",
        show_default=False,
    ),
]
OtlpOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp-endpoint",
        metavar="URL",
        help="Send each prediction's stages as OpenTelemetry spans to this collector, over "
        "OTLP/HTTP (e.g. http://127.0.0.1:4318; spans go to URL/v1/traces). A loopback or "
        "private address must be listed in CLOCHE_EGRESS__ALLOW (default: "
        "CLOCHE_SERVING__OTLP_ENDPOINT; off when unset). Needs cloche[otlp].",
        show_default=False,
    ),
]
ModelMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--model-memory",
        metavar="SIZE",
        help="Memory loaded models may take, all workers together, e.g. 4GiB or 600MiB; each "
        "worker keeps an equal share and evicts its least recently used idle models "
        "(default: CLOCHE_SERVING__MODEL_MEMORY, or no limit).",
        show_default=False,
    ),
]


def up(
    host: HostOpt = None,
    port: PortOpt = None,
    workers: WorkersOpt = None,
    grpc_port: GrpcPortOpt = None,
    otlp_endpoint: OtlpOpt = None,
    model_memory: ModelMemoryOpt = None,
) -> None:
    """Start cloche (API, docs at /api/docs, console at /console, endpoints) until Ctrl-C."""
    server = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    serving: dict[str, Any] = {
        k: v
        for k, v in {"grpc_port": grpc_port, "otlp_endpoint": otlp_endpoint}.items()
        if v is not None
    }
    if model_memory is not None:
        serving["model_memory"] = parse_size(model_memory)  # InvalidInput names the forms
    # Dicts (not section objects) so unset fields still come from CLOCHE_SERVER__* etc.
    sections = {"server": server, "serving": serving}
    settings = load_settings(**{k: v for k, v in sections.items() if v})
    settings = _check_tls(settings)
    _check_otlp(settings)
    count = workers if workers is not None else settings.serving.workers
    count = count or os.cpu_count() or 1
    # Each worker takes budget / workers: it must know how many there are.
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"workers": count})}
    )
    # Workers of this server share a metrics folder named after it.
    os.environ["CLOCHE_SERVER_ID"] = str(os.getpid())
    # Everything the server and its workers (which inherit this) write is the owner's only.
    os.umask(0o077)

    from cloche.auth.local_token import ensure_local_token

    with contextlib.ExitStack() as cleanup:
        sock = cleanup.enter_context(_bind(settings.server.host, settings.server.port))
        if settings.serving.grpc_port is not None:
            settings = _reserve_grpc(settings, settings.serving.grpc_port, cleanup)
        store = _open_store(settings)
        cleanup.callback(store.close)
        if settings.serving.model_memory is not None:
            from cloche.endpoints.budget import check_deployed_fit

            # A share smaller than a deployed model would load it again for each request.
            check_deployed_fit(store, budget_bytes=settings.serving.model_memory, workers=count)
        from cloche.logs.shared import check_shared_log

        check_shared_log(settings)  # a shared payload log this server cannot write stops it
        local_token = ensure_local_token(store)
        port = sock.getsockname()[1]
        _banner(settings, port, local_token, count)
        if count == 1:
            _serve_in_process(settings, store, sock)
        else:
            _serve_workers(settings, sock, count)
    err.print("cloche stopped.")


def _open_store(settings: Settings) -> "Store":
    """The store, waiting up to ``server.db_wait_seconds`` for a database still starting.

    Replicas started beside their database (compose, a pod) reach it before it accepts
    connections; waiting here beats exiting and hoping a restart policy tries again.
    """
    from cloche.store.store import Store

    # SQLite is a local file: when it cannot be opened, waiting will not change that.
    wait = 0.0 if settings.database_url.startswith("sqlite") else settings.server.db_wait_seconds
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            return Store.open(settings)
        except Unavailable as exc:
            if time.monotonic() >= deadline:
                raise
            if not said:
                err.print(f"waiting for the metadata database: {exc}")
                said = True
            time.sleep(1)


def _reserve_grpc(settings: Settings, port: int, cleanup: contextlib.ExitStack) -> Settings:
    """Hold the gRPC port for the workers (a busy port fails now; 0 becomes a real port)."""
    from cloche.serving.grpc_server import reserve_grpc_port  # MissingDependency without grpc

    held = cleanup.enter_context(reserve_grpc_port(settings.server.host, port))
    serving = settings.serving.model_copy(update={"grpc_port": held.getsockname()[1]})
    return settings.model_copy(update={"serving": serving})


def _check_otlp(settings: Settings) -> None:
    """A collector the egress rules refuse, or a missing extra, is an error now, not in workers."""
    if settings.serving.otlp_endpoint:
        from cloche.serving.tracing import check_endpoint  # imports no OpenTelemetry module

        check_endpoint(settings.serving.otlp_endpoint, settings.egress.policy())


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    from cloche.serving.connections import uvicorn_options  # the server stack, loaded late

    return {
        "host": settings.server.host,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,  # X-Forwarded-* are trusted only behind a configured proxy
        "server_header": False,  # no "server: uvicorn": one header less per answer, and no banner
        "loop": "uvloop",
        "timeout_graceful_shutdown": int(settings.serving.drain_seconds),
        **uvicorn_options(settings.serving),  # httptools with read deadlines; connection cap
        **_tls_options(settings),
    }


def _tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's ssl options; each worker loads the files into its own context."""
    cert, key = settings.server.tls_cert_file, settings.server.tls_key_file
    if cert is None or key is None:
        return {}
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _check_tls(settings: Settings) -> Settings:
    """Load the certificate and key now: a bad file is a clear error before anything binds."""
    cert, key = settings.server.tls_cert_file, settings.server.tls_key_file
    if cert is None or key is None:
        return settings
    import ssl

    cert, key = cert.resolve(), key.resolve()  # workers may start in another folder
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(
            f"cannot use the TLS certificate {cert} with key {key}: {exc}",
            hint="CLOCHE_SERVER__TLS_CERT_FILE must be a PEM certificate (chain) and "
            "CLOCHE_SERVER__TLS_KEY_FILE its unencrypted PEM key, both readable",
        ) from None
    server = settings.server.model_copy(update={"tls_cert_file": cert, "tls_key_file": key})
    return settings.model_copy(update={"server": server})


def _serve_in_process(settings: Settings, store: "Store", sock: socket.socket) -> None:
    # Imported here: every other command starts faster without the server stack.
    import uvicorn

    from cloche.server import build_app

    config = uvicorn.Config(build_app(settings, store), **_uvicorn_options(settings))
    server = _make_server(config)
    server.run(sockets=[sock])
    if not server.started and not server.stop_requested:
        raise Unavailable("the server failed to start; see the log above")


def _serve_workers(settings: Settings, sock: socket.socket, count: int) -> None:
    """Worker processes share the bound socket; the supervisor restarts any that die."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # Workers rebuild Settings from the environment: pass the command line's choices down.
    os.environ["CLOCHE_HOME"] = str(settings.home.resolve())
    os.environ["CLOCHE_SERVER__HOST"] = settings.server.host
    os.environ["CLOCHE_SERVER__PORT"] = str(sock.getsockname()[1])
    if settings.serving.grpc_port is not None:
        os.environ["CLOCHE_SERVING__GRPC_PORT"] = str(settings.serving.grpc_port)
    if settings.serving.otlp_endpoint:
        os.environ["CLOCHE_SERVING__OTLP_ENDPOINT"] = settings.serving.otlp_endpoint
    os.environ["CLOCHE_SERVING__WORKERS"] = str(count)
    if settings.serving.model_memory is not None:
        os.environ["CLOCHE_SERVING__MODEL_MEMORY"] = str(settings.serving.model_memory)
    if settings.server.tls_cert_file is not None and settings.server.tls_key_file is not None:
        os.environ["CLOCHE_SERVER__TLS_CERT_FILE"] = str(settings.server.tls_cert_file)
        os.environ["CLOCHE_SERVER__TLS_KEY_FILE"] = str(settings.server.tls_key_file)
    config = uvicorn.Config(
        "cloche.server:app_factory",
        factory=True,
        workers=count,
        **_uvicorn_options(settings),
    )
    Multiprocess(config, sockets=[sock]).run()


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a busy port is a clear error and port 0 gets a real number."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise Unavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another port with --port (or stop what is using it)",
        ) from None
    return sock


def _banner(settings: Settings, port: int, local_token: "Path", workers: int) -> None:
    host = settings.server.host
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    scheme = "https" if settings.server.tls else "http"
    base = f"{scheme}://[{shown}]:{port}" if ":" in shown else f"{scheme}://{shown}:{port}"
    out.print(Text("cloche is running at ", style="bold green") + Text(base, style="bold"))
    out.print(f"  API:   {base}/api/v1", markup=False)
    out.print(f"  Docs:  {base}/api/docs", markup=False)
    out.print(f"  Console: {base}/console", markup=False)
    out.print(
        "           (a browser on this machine signs in with one click; elsewhere, paste a "
        "token from `cloche tokens create --role viewer`)",
        markup=False,
    )
    out.print(f"  Predict: {base}/v1/models/ENDPOINT:predict  ({workers} worker(s))", markup=False)
    if settings.serving.model_memory is not None:
        total = settings.serving.model_memory
        out.print(
            f"  Models: at most {format_size(total)} in memory ({format_size(total // workers)} "
            "per worker; least recently used idle models are evicted)",
            markup=False,
        )
    if settings.serving.grpc_port is not None:
        grpc_at = f"[{shown}]" if ":" in shown else shown
        tls = ", TLS" if settings.server.tls else ""
        out.print(f"  gRPC:  {grpc_at}:{settings.serving.grpc_port}  (OIP v2{tls})", markup=False)
    out.print(f"  Home:  {settings.home.resolve()}", markup=False)
    if host in ("0.0.0.0", "::"):
        out.print(f"  Listening on all interfaces ({host}).", markup=False)
    if settings.auth_required:
        out.print("  Auth:  every request needs a token (Authorization: Bearer ...)")
    else:
        out.print("  Auth:  the API needs a token; predictions are open to this machine (loopback)")
    # The secret stays in its owner-only file: logs and terminals are not the place for it.
    out.print(
        f"  Token: {local_token} (admin; the CLI and SDK read it on this machine,",
        markup=False,
        highlight=False,
    )
    out.print("         `cloche tokens local` prints it)", markup=False)
    out.print()
    out.print("Press Ctrl-C to stop.")
    sys.stdout.flush()  # a parent process reading our stdout needs the URL now


def _make_server(config: "uvicorn.Config") -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        stop_requested = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.stop_requested = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGINT/SIGTERM after shutdown, so the process dies of the
            # signal; a requested stop is a clean one here, and exits 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
