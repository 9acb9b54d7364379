"""Native TLS in `cloche up`: clients that trust the CA predict over HTTPS from every worker;
plain HTTP and clients that do not trust it fail cleanly; a bad key is a clear error."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import cloche
from cloche.config import Settings
from tests.e2e._cli import cloche as run_cli
from tests.e2e._servers import START_SECONDS, UpProcess, cloche_up

pytestmark = pytest.mark.slow

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
HTTPS_LINE = re.compile(r"cloche is running at (https://\S+)")
GRPC_LINE = re.compile(r"gRPC:\s+127\.0\.0\.1:(\d+)\s+\(OIP v2, TLS\)")


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for 127.0.0.1: (ca, cert, key) files."""
    now = datetime.now(UTC)

    def build(
        subject: str, issuer: str, public: object, signer: object, *, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("test CA", "test CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("127.0.0.1", "test CA", key.public_key(), ca_key, ca=False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


def wait_https(up: UpProcess, ca: ssl.SSLContext) -> str:
    """The https URL from the banner, once GET /v2/health/ready answers 200 over TLS."""
    deadline = time.monotonic() + START_SECONDS
    while not (found := HTTPS_LINE.search(up.log())):
        up._check_alive(deadline, "printed no https URL")
        time.sleep(0.05)
    url = found.group(1)
    with httpx.Client(base_url=url, verify=ca, timeout=2.0) as http:
        while True:
            try:
                if http.get("/v2/health/ready").status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            up._check_alive(deadline, "was not ready over https")
            time.sleep(0.05)


def check_grpc_over_tls(port: int, ca: Path) -> None:
    """gRPC answers a channel that trusts the CA, and never a plaintext one."""
    import grpc

    from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2 as pb
    from cloche.serving.protocols.grpc_gen.grpc_predict_v2_pb2_grpc import (
        GRPCInferenceServiceStub,
    )

    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        ready = stub.ModelReady(pb.ModelReadyRequest(name="churn"), timeout=10)
        assert ready.ready
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cloche_up_serves_https_and_grpc_to_clients_trusting_its_ca_and_refuses_plaintext(
    settings: Settings, sklearn_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_certificates(tmp_path)
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
    trust = ssl.create_default_context(cafile=str(ca))
    env = {
        "CLOCHE_SERVER__TLS_CERT_FILE": str(cert),
        "CLOCHE_SERVER__TLS_KEY_FILE": str(key),
        "CLOCHE_SERVING__GRPC_PORT": "0",
    }
    with cloche_up(settings.home, workers=2, env=env, wait=False) as up:
        url = wait_https(up, trust)
        grpc_port = int(GRPC_LINE.search(up.log()).group(1))  # type: ignore[union-attr]
        # A new connection each time: the kernel spreads them over both workers' TLS contexts.
        for _ in range(6):
            with httpx.Client(base_url=url, verify=trust, timeout=10) as http:
                answer = http.post("/v1/models/churn:predict", json=ROW)
                assert answer.status_code == 200 and answer.json()["version"] == 1
        # The SDK (and so the CLI) over HTTPS: httpx reads the CA from SSL_CERT_FILE.
        with monkeypatch.context() as env_patch:
            env_patch.setenv("SSL_CERT_FILE", str(ca))
            with cloche.Client(url, home=settings.home) as sdk:
                assert [m.name for m in sdk.models.list()] == ["churn"]
        plain = url.replace("https://", "http://")
        started = time.monotonic()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{plain}/v2/health/ready", timeout=5)
        assert time.monotonic() - started < 5  # closed at once, not left hanging
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/v2/health/ready", timeout=5)  # the system CAs do not know ours
        check_grpc_over_tls(grpc_port, ca)
        # And the server is no worse for them.
        with httpx.Client(base_url=url, verify=trust, timeout=10) as http:
            assert http.post("/v1/models/churn:predict", json=ROW).status_code == 200


def test_a_key_that_does_not_fit_is_a_clear_error_before_serving(tmp_path: Path) -> None:
    _, cert, _ = make_certificates(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, _, wrong_key = make_certificates(other)
    env = {"CLOCHE_SERVER__TLS_CERT_FILE": str(cert), "CLOCHE_SERVER__TLS_KEY_FILE": str(wrong_key)}
    result = run_cli("up", "--port", "0", env=env)
    assert result.exit_code == 2, result.output
    assert "cannot use the TLS certificate" in result.output
    half = run_cli("up", "--port", "0", env={"CLOCHE_SERVER__TLS_CERT_FILE": str(cert)})
    assert half.exit_code == 2 and "TLS_KEY_FILE" in half.output


HAPROXY_BLOCK = re.compile(r'```text title="/etc/haproxy/haproxy.cfg"\n(.*?)```', re.S)
TLS_PAGE = Path(__file__).parents[2] / "docs" / "operations" / "tls.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def haproxy(config: str, folder: Path, port: int, trust: ssl.SSLContext) -> Iterator[str]:
    """HAProxy in the foreground on ``config``; its https URL once it accepts TLS."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if binary is None:
        pytest.fail("haproxy is not installed; `make services` (scripts/services.sh) installs it")
    path = folder / "haproxy.cfg"
    path.write_text(config)
    log = (folder / "haproxy.log").open("wb")
    proc = subprocess.Popen([binary, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    trust.wrap_socket(raw, server_hostname="127.0.0.1").close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"haproxy did not start: {(folder / 'haproxy.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_the_documented_haproxy_config_relays_https_and_cloche_refuses_tokenless_relays(
    settings: Settings, sklearn_model_file: Path, tmp_path: Path
) -> None:
    ca, cert, key = make_certificates(tmp_path)
    pem = tmp_path / "cloche.pem"  # HAProxy takes the chain and the key in one file
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    pem.chmod(0o600)
    trust = ssl.create_default_context(cafile=str(ca))
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
        predictor = sdk.tokens.create(role="predictor", name="behind the proxy").token
    found = HAPROXY_BLOCK.search(TLS_PAGE.read_text())
    assert found, "docs/operations/tls.md lost its HAProxy configuration"
    front = free_port()
    # Left open to loopback on purpose (no CLOCHE_AUTH__REQUIRED): the misconfiguration that
    # X-Forwarded-For, set by the proxy, must still keep from serving the network token-less.
    with cloche_up(settings.home, workers=1) as up:
        back = up.url.rsplit(":", 1)[1]
        config = (
            found.group(1)
            .replace("127.0.0.1:8443", f"127.0.0.1:{front}")
            .replace("/etc/haproxy/cloche.pem", str(pem))
            .replace("127.0.0.1:8080", f"127.0.0.1:{back}")
        )
        with (
            haproxy(config, tmp_path, front, trust) as url,
            httpx.Client(base_url=url, verify=trust, timeout=10) as http,
        ):
            # As a client that reached the proxy by its public name would send it.
            public = {"Host": "cloche.example.com", "Authorization": f"Bearer {predictor}"}
            served = http.post("/v1/models/churn:predict", json=ROW, headers=public)
            assert served.status_code == 200, served.text
            assert served.json()["version"] == 1
            relayed = http.post("/v1/models/churn:predict", json=ROW)
            assert relayed.status_code == 403
            assert "through a proxy" in relayed.json()["error"]["message"]
            assert http.get("/api/v1/models").status_code == 401
        # The same token-less request straight to cloche, from this machine, is served.
        assert httpx.post(f"{up.url}/v1/models/churn:predict", json=ROW).status_code == 200
