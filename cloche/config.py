"""Settings: one typed object, read from ``CLOCHE_*`` environment variables.

Built once by an entry point (CLI, server, Client) and passed down; there is no import-time
instance. Nested sections use ``__``: ``CLOCHE_SERVER__PORT=9000``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cloche.alerts.settings import DeliverySettings
from cloche.batch.places import check_prefix
from cloche.egress import Egress, parse_allow
from cloche.hosts import is_loopback


class StoreSettings(BaseModel):
    artifacts_url: str | None = Field(
        default=None,
        description="where model files and baselines live, an fsspec URL (a folder, s3://..., "
        "gs://...); default $CLOCHE_HOME/artifacts",
    )
    max_upload_mb: int = Field(
        default=2048, gt=0, description="largest model or dataset upload, in MiB (413 beyond it)"
    )


class RegistrySettings(BaseModel):
    inspect_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="seconds a server waits for an upload to load in its inspecting child "
        "process (then 504 inspection_timeout)",
    )


class ServerSettings(BaseModel):
    host: str = Field(
        default="127.0.0.1",
        description="address `cloche up` listens on (`--host` overrides it); beyond loopback, "
        "every request needs a token",
    )
    port: int = Field(
        default=8080, ge=0, le=65535, description="port `cloche up` listens on (`--port`)"
    )
    max_json_kb: int = Field(
        default=1024,
        gt=0,
        description="largest JSON body of a control-plane request, in KiB (413 beyond it); "
        "uploads have their own cap (store.max_upload_mb)",
    )
    max_edge_chunk_mb: int = Field(
        default=8,
        gt=0,
        description="largest chunk of an edge log, in MiB, that the central server takes "
        "from `cloche edge sync`",
    )
    db_wait_seconds: float = Field(
        default=60,
        ge=0,
        description="how long `cloche up` waits for an unreachable metadata database (a "
        "PostgreSQL container still starting) before it gives up",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain: serve HTTPS (REST and predictions) and gRPC over "
        "TLS instead of plaintext; needs tls_key_file",
    )
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key of tls_cert_file (keep it 0600)"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "set both CLOCHE_SERVER__TLS_CERT_FILE and CLOCHE_SERVER__TLS_KEY_FILE, or neither"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class ServingSettings(BaseModel):
    workers: int = Field(
        default=0,
        ge=0,
        description="worker processes of `cloche up` (`--workers`); 0 means one per core; with "
        "1, the server runs in the `cloche up` process itself and no supervisor restarts it",
    )
    max_request_mb: int = Field(
        default=64, gt=0, description="largest prediction request body, in MiB (413 beyond it)"
    )
    poll_ms: int = Field(
        default=500,
        ge=50,
        description="milliseconds between each worker's checks of the store for endpoint changes",
    )
    drain_seconds: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, how many seconds requests already accepted may take to finish",
    )
    server_timing: bool = Field(
        default=False, description="send each request's stage timings in a Server-Timing header"
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry collector to send each request's stages to as spans, over "
        "OTLP/HTTP (`--otlp-endpoint`), e.g. http://127.0.0.1:4318 (spans go to "
        "URL/v1/traces); a private or loopback address must be listed in egress.allow; "
        "default: off",
    )
    threads_per_worker: int = Field(
        default=1,
        ge=0,
        description="BLAS/OpenMP threads per worker (workers already use every core); 0 = "
        "leave the libraries' defaults",
    )
    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="also serve OIP v2 over gRPC on this port (`--grpc-port`); default: off",
    )
    grpc_max_message_mb: int = Field(
        default=64, gt=0, description="largest gRPC message, either way, in MiB"
    )
    max_request_rows: int = Field(
        default=1_000_000,
        gt=0,
        description="rows one prediction request may have; larger ones get 413 (a request "
        "with more rows than max_batch_size is served in pieces of that size)",
    )
    max_connections: int = Field(
        default=1000,
        gt=0,
        description="open connections per worker (HTTP), calls in flight (gRPC); past it, "
        "requests get 503 (RESOURCE_EXHAUSTED) and the connection closes (idle and slow clients "
        "cannot exhaust a worker)",
    )
    traffic_sample_seconds: float = Field(
        default=10.0,
        gt=0,
        le=30,
        description="seconds between samples of each server's request counters, the points of "
        "the endpoint traffic charts (one-hour view; the one-day view keeps one a minute)",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a connection's request line and headers must arrive within this many "
        "seconds (from connecting, or from a request's first byte); else 408 and close; also "
        "gRPC's handshake deadline",
    )
    read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="longest pause, in seconds, while a request body arrives; else 408 and close",
    )
    log_retention_days: float = Field(
        default=35.0,
        ge=0,
        le=36_500,
        description="payload-log hours older than this many days are deleted at compaction (35: "
        "feedback finds the requests of the last 30 days); 0 keeps them forever",
    )
    log_max_mb: int = Field(
        default=10_240,
        ge=0,
        description="over this many MiB, the payload log's oldest hours are deleted first "
        "(never the current hour or an open segment); 0: no cap",
    )
    keep_alive_seconds: int = Field(
        default=5, gt=0, description="an idle keep-alive connection closes after this many seconds"
    )
    model_memory: int | None = Field(
        default=None,
        description="memory that loaded models may take, all workers of `cloche up` together "
        "(`--model-memory`; e.g. 4GiB, 600MiB); each worker keeps an equal share and evicts its "
        "least recently used idle models to stay under it; default: no limit (every worker "
        "loads every deployed model)",
    )

    load_wait_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="how long a worker waits for one model's load and warm-up before it serves "
        "without it (at start, or when a deploy reaches it); the load goes on, the model is not "
        'ready ("still loading") and its requests get 503 at their timeout until it is done',
    )

    @field_validator("model_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> int | None:
        from cloche.errors import InvalidInput
        from cloche.sizes import parse_size

        if value is None or value == "":
            return None
        try:
            return parse_size(value)
        except InvalidInput as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(f"{exc.message} ({exc.hint})") from None

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, value: str | None) -> str | None:
        return check_otlp_endpoint(value) if value and value.strip() else None


def check_otlp_endpoint(value: str) -> str:
    """An OTLP/HTTP collector URL without its trailing slash; ValueError says what is wrong."""
    url = value.strip().rstrip("/")
    example = "write it as http(s)://HOST:PORT, e.g. http://127.0.0.1:4318"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(
            f"the OTLP endpoint {value!r} must be an http:// or https:// URL (cloche sends "
            f"OTLP over HTTP, usually port 4318; OTLP/gRPC on 4317 is not supported); {example}"
        )
    try:
        port = parts.port
    except ValueError as exc:  # not a number, or beyond 65535
        raise ValueError(f"the OTLP endpoint {value!r} has a bad port ({exc}); {example}") from None
    if port == 0:
        raise ValueError(f"the OTLP endpoint {value!r} has port 0; {example}")
    if not parts.hostname:
        raise ValueError(f"the OTLP endpoint {value!r} names no host; {example}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"the OTLP endpoint {value!r} may not carry a query, fragment or user name; {example} "
            "(headers such as credentials go in OTEL_EXPORTER_OTLP_HEADERS)"
        )
    return url


class LogSettings(BaseModel):
    shared: str | None = Field(
        default=None,
        description="where replicas on one store write the payload log's compacted partitions "
        "and profiles, each under its own replica id, so every reader sees every replica's "
        "requests: an absolute folder all of them mount, or an object-store URL "
        "(s3://bucket/prefix); default: each server's own $CLOCHE_HOME/logs",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="the S3-compatible service of an s3:// shared log (MinIO, Ceph...), e.g. "
        "http://minio:9000 (checked like any outbound address: a private one must be in "
        "egress.allow); credentials come from the AWS_* environment variables",
    )
    replica: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="this server's name in the shared log; default: its host name and a hash "
        "of its home (stable across restarts)",
    )
    publish_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="with a shared log, how often each worker hands what it logged to "
        "compaction: other replicas read a request within about twice this",
    )

    @field_validator("shared")
    @classmethod
    def _place(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "://" in value or "::" in value:
            return check_prefix(value)  # the object-store prefixes batch jobs may use, alike
        if not Path(value).is_absolute():
            raise ValueError(
                f"{value!r} is neither an absolute folder nor an object-store URL such as "
                "s3://bucket/prefix"
            )
        return value

    @model_validator(mode="after")
    def _endpoint_with_s3(self) -> LogSettings:
        if self.endpoint_url is None:
            return self
        if not (self.shared or "").lower().startswith("s3://"):
            raise ValueError("endpoint_url is only for an s3:// shared log; set shared too")
        if not self.endpoint_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url {self.endpoint_url!r} must be an http(s) URL")
        return self


class AuthSettings(BaseModel):
    required: bool | None = Field(
        default=None,
        description="require a token on every data-plane request (health checks excepted); "
        "default: only when bound beyond loopback (the control plane always requires one)",
    )


class ConsoleSettings(BaseModel):
    idle_minutes: float = Field(
        default=480,
        gt=0,
        description="a console session unused for this many minutes ends (sign in again)",
    )
    lifetime_hours: float = Field(
        default=24, gt=0, description="a console session ends this many hours after sign-in"
    )
    sign_in_attempts: int = Field(
        default=10,
        gt=0,
        description="failed console sign-ins one address may make per minute, per worker "
        "(then 429 for the rest of the minute)",
    )


class BatchSettings(BaseModel):
    allowed_dirs: list[Path] = Field(
        default=[],
        description="folders (a JSON list) that batch jobs sent over the API, queued or scheduled "
        "may read and write; default: the server's home and working directory (a foreground CLI "
        "or in-process SDK job is not confined)",
    )
    allowed_urls: list[str] = Field(
        default=[],
        description='object-store URL prefixes (a JSON list, e.g. ["s3://bucket/prefix", '
        '"gs://bucket"]) that jobs sent over the API may read; default: none',
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster that `--engine ray` batch jobs and `--executor ray` pipeline "
        "runs run on (a server setting, never a request's); default: a local Ray",
    )
    max_concurrent_jobs: int = Field(
        default=1,
        ge=1,
        description="batch jobs `cloche up` runs at once (each in its own process, with its own "
        "workers)",
    )

    @field_validator("allowed_urls")
    @classmethod
    def _object_stores(cls, value: list[str]) -> list[str]:
        return [check_prefix(prefix) for prefix in value]


class EgressSettings(BaseModel):
    # NoDecode: the environment gives "127.0.0.1,10.0.0.0/8,hooks.internal", not JSON.
    allow: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="hosts and CIDR ranges the server may connect to for a user although they "
        "are loopback, private or link-local (webhooks, edge sync); comma-separated",
    )

    @field_validator("allow", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("["):
            return json.loads(value)  # a JSON list works too, as for the other list settings
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("allow")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        parse_allow(value)  # raises ValueError naming a bad entry
        return value

    def policy(self) -> Egress:
        return Egress.from_allow(self.allow)


class SchedulerSettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description="run the scheduler in `cloche up`: it queues scheduled runs and starts "
        "queued jobs (one at a time across workers and replicas, by a lease in the store)",
    )
    max_pipeline_runs: int = Field(
        default=2,
        ge=1,
        description="pipeline runs `cloche up` runs at once, each in its own process (a run "
        "queued beyond them waits)",
    )
    tick_seconds: float = Field(
        default=2.0, gt=0, description="seconds between the scheduler's looks"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLOCHE_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(
        default=Path(".cloche"),
        description="registry home: SQLite database, artifacts, caches, payload log",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/cloche (pip install "
        "'cloche[postgres]'), so several servers share one state; default: SQLite in home",
    )
    store: StoreSettings = StoreSettings()
    registry: RegistrySettings = RegistrySettings()
    server: ServerSettings = ServerSettings()
    serving: ServingSettings = ServingSettings()
    logs: LogSettings = LogSettings()
    auth: AuthSettings = AuthSettings()
    console: ConsoleSettings = ConsoleSettings()
    batch: BatchSettings = BatchSettings()
    # SMTP and retries for alert channels; the credentials stay in the environment.
    alerts: DeliverySettings = DeliverySettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    egress: EgressSettings = EgressSettings()

    @model_validator(mode="after")
    def _refuse_open_public_bind(self) -> Settings:
        if self.auth.required is False and not is_loopback(self.server.host):
            raise ValueError(
                f"refusing to serve on {self.server.host} without authentication: "
                "bind to 127.0.0.1 or leave CLOCHE_AUTH__REQUIRED unset"
            )
        return self

    @property
    def auth_required(self) -> bool:
        if self.auth.required is not None:
            return self.auth.required
        return not is_loopback(self.server.host)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'cloche.db').resolve()}"

    @property
    def artifacts_url(self) -> str:
        return self.store.artifacts_url or str((self.home / "artifacts").resolve())

    @property
    def batch_allowed_dirs(self) -> list[Path]:
        return self.batch.allowed_dirs or [self.home.resolve(), Path.cwd()]

    @property
    def max_upload_bytes(self) -> int:
        return self.store.max_upload_mb * 1024 * 1024

    @property
    def max_json_bytes(self) -> int:
        return self.server.max_json_kb * 1024
