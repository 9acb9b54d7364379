"""Tracing's configuration and its cost when off: the endpoint's forms, the egress check at
start, `cloche up --otlp-endpoint`'s errors, and no OpenTelemetry import without an endpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloche.cli.app import app
from cloche.config import Settings
from cloche.egress import Egress
from cloche.errors import DestinationRefused
from cloche.serving.tracing import RequestTracer, check_endpoint, request_tracer, traces_url

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318"),
        ("http://collector:4318/", "http://collector:4318"),
        ("https://otel.example.com", "https://otel.example.com"),
        ("HTTP://[::1]:4318", "HTTP://[::1]:4318"),
        ("http://gateway:8080/otlp/", "http://gateway:8080/otlp"),
        ("  http://127.0.0.1:4318 ", "http://127.0.0.1:4318"),
    ],
)
def test_an_http_endpoint_is_kept_without_its_trailing_slash(given: str, stored: str) -> None:
    assert Settings(serving={"otlp_endpoint": given}).serving.otlp_endpoint == stored


@pytest.mark.parametrize("given", [None, "", "  "])
def test_no_endpoint_means_tracing_off(given: str | None) -> None:
    settings = Settings(serving={"otlp_endpoint": given})

    assert settings.serving.otlp_endpoint is None
    assert request_tracer(settings, server_id="1") is None


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("grpc://127.0.0.1:4317", "must be an http:// or https:// URL"),
        ("127.0.0.1:4318", "must be an http:// or https:// URL"),
        ("ftp://collector", "must be an http:// or https:// URL"),
        ("http://127.0.0.1:99999", "bad port"),
        ("http://127.0.0.1:port", "bad port"),
        ("http://127.0.0.1:0", "port 0"),
        ("http://:4318", "names no host"),
        ("http://collector:4318/?tenant=a", "may not carry a query"),
        ("http://user:secret@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"),
    ],
)
def test_a_bad_endpoint_is_refused_saying_how_to_write_one(given: str, says: str) -> None:
    with pytest.raises(ValueError, match="OTLP endpoint") as refused:
        Settings(serving={"otlp_endpoint": given})

    assert says in str(refused.value)
    assert "http://127.0.0.1:4318" in str(refused.value)  # the example to follow


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
        ("http://gateway/otlp", "http://gateway/otlp/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ],
)
def test_spans_go_to_the_endpoints_v1_traces(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_a_loopback_collector_is_refused_unless_egress_allows_it() -> None:
    with pytest.raises(DestinationRefused, match="CLOCHE_EGRESS__ALLOW") as refused:
        RequestTracer("http://127.0.0.1:4318", server_id="1", egress=Egress())

    assert "OTLP endpoint" in refused.value.message and "loopback" in refused.value.message
    assert refused.value.http_status == 403


def test_a_private_collector_is_refused_by_the_settings_egress_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOCHE_SERVING__OTLP_ENDPOINT", "http://10.1.2.3:4318")
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")

    with pytest.raises(DestinationRefused, match="private"):
        request_tracer(Settings(), server_id="1")


def test_an_allowed_collector_passes_the_check_without_importing_opentelemetry() -> None:
    url = check_endpoint("http://10.1.2.3:4318/", Egress.from_allow("10.0.0.0/8"))

    assert url == "http://10.1.2.3:4318/v1/traces"


def run_python(code: str, env: dict[str, str] | None = None) -> None:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_tracing_off_the_data_plane_imports_no_opentelemetry_module() -> None:
    # In a fresh interpreter: this test process has imported OpenTelemetry already.
    run_python(
        """
        import sys
        import cloche.serving.app, cloche.serving.router, cloche.serving.payload_log
        from cloche.config import Settings
        from cloche.serving.tracing import request_tracer

        assert request_tracer(Settings(), server_id="1") is None
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        assert not loaded, loaded
        """
    )


@pytest.mark.slow  # imports the whole server stack in a fresh interpreter (~3 s of CPU)
def test_tracing_off_a_whole_worker_loads_no_opentelemetry_sdk(tmp_path: Path) -> None:
    # FastAPI (the control-plane API beside the data plane) imports the OpenTelemetry API for
    # its own, optional telemetry; the SDK and the exporter, tracing's weight, stay out.
    run_python(
        """
        import sys
        from cloche.config import Settings
        from cloche.server import build_app
        from cloche.serving.tracing import request_tracer

        settings = Settings()
        app = build_app(settings)
        assert request_tracer(settings, server_id="1") is None
        heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
        loaded = sorted(m for m in sys.modules if m.startswith(heavy))
        assert not loaded, loaded
        """,
        env={"CLOCHE_HOME": str(tmp_path / "home")},
    )


def test_tracing_on_loads_opentelemetry_in_the_worker(tmp_path: Path) -> None:
    # The other half: the check above would pass vacuously if nothing could load it.
    run_python(
        """
        import sys
        from cloche.config import Settings
        from cloche.serving.tracing import request_tracer

        tracer = request_tracer(Settings(), server_id="1")
        assert tracer is not None and "opentelemetry.sdk.trace" in sys.modules
        tracer.shutdown()
        """,
        env={
            "CLOCHE_HOME": str(tmp_path / "home"),
            "CLOCHE_SERVING__OTLP_ENDPOINT": "http://127.0.0.1:9",
            "CLOCHE_EGRESS__ALLOW": "127.0.0.1",
        },
    )


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLOCHE_EGRESS__ALLOW", raising=False)
    monkeypatch.delenv("CLOCHE_SERVING__OTLP_ENDPOINT", raising=False)


@pytest.mark.usefixtures("cli_env")
def test_cloche_up_refuses_a_malformed_otlp_endpoint_before_serving() -> None:
    result = CliRunner().invoke(app, ["up", "--port", "0", "--otlp-endpoint", "grpc://x:4317"])

    assert result.exit_code == 2
    assert "CLOCHE_SERVING__OTLP_ENDPOINT" in result.output
    assert "must be an http:// or https:// URL" in result.output


@pytest.mark.usefixtures("cli_env")
def test_cloche_up_refuses_a_collector_the_egress_rules_forbid_before_serving() -> None:
    result = CliRunner().invoke(
        app, ["up", "--port", "0", "--otlp-endpoint", "http://127.0.0.1:4318"]
    )

    assert result.exit_code == 3
    assert "OTLP endpoint 127.0.0.1 is not a public address (loopback)" in result.output
    assert "CLOCHE_EGRESS__ALLOW" in result.output
    assert "cloche is running" not in result.output
