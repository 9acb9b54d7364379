"""Which destinations the server connects to for a user, and that it connects to the address it
checked: the checker on every notation, and real TLS servers on loopback for the SNI path."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche.config import Settings
from cloche.egress import Egress, connection, parse_allow
from cloche.errors import DestinationRefused, Unavailable

REFUSED = {
    "127.0.0.1": "loopback",
    "2130706433": "loopback",  # decimal
    "0x7f000001": "loopback",  # hexadecimal
    "0177.0.0.1": "loopback",  # octal
    "127.1": "loopback",  # short form
    "[::1]": "loopback",
    "[::ffff:127.0.0.1]": "loopback",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]": "loopback",
    "[2002:7f00:1::]": "loopback",  # 6to4
    "[64:ff9b::7f00:1]": "loopback",  # NAT64
    "localhost": "loopback",  # a name that resolves there
    "169.254.169.254": "link-local",  # cloud metadata
    "[fe80::1]": "link-local",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "[fc00::1]": "private",
    "100.64.0.1": "shared",
    "224.0.0.1": "multicast",
    "[ff02::1]": "multicast",
    "0.0.0.0": "unspecified",
    "0": "unspecified",
    "[::]": "unspecified",
    "240.0.0.1": "reserved",
}


@pytest.mark.parametrize(("host", "kind"), REFUSED.items(), ids=list(REFUSED))
def test_non_public_destinations_are_refused_in_every_notation(host: str, kind: str) -> None:
    with pytest.raises(DestinationRefused, match=kind) as info:
        Egress().check(f"https://{host}:8443/hook")
    assert "CLOCHE_EGRESS__ALLOW" in info.value.message
    assert info.value.http_status == 403


@pytest.mark.parametrize("host", ["1.1.1.1", "[2606:4700:4700::1111]"])
def test_public_addresses_are_allowed_and_become_the_address_to_connect_to(host: str) -> None:
    destination = Egress().check(f"https://{host}/hook?x=1")
    assert destination.address == host.strip("[]")
    assert destination.target == "/hook?x=1"


def test_the_allow_list_takes_hosts_and_cidr_ranges() -> None:
    allow = Egress.from_allow("127.0.0.1, 10.0.0.0/8,Hooks.Internal.")
    assert allow.check("http://0x7f000001:9/").address == "127.0.0.1"
    assert allow.check("http://[::ffff:127.0.0.1]/").address == "::ffff:7f00:1"
    assert allow.check("http://10.20.30.40/").address == "10.20.30.40"
    with pytest.raises(DestinationRefused):
        allow.check("http://192.168.0.1/")
    with pytest.raises(ValueError, match="neither a host name"):
        parse_allow("http://hooks.internal/")


def test_every_address_a_name_resolves_to_must_be_allowed() -> None:
    # The resolver is the one seam: no test may ask a real DNS server for a public name.
    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    with pytest.raises(DestinationRefused, match=r"hooks.example \(10.0.0.7\)"):
        Egress(resolver=resolver).check("https://hooks.example/x")
    listed = Egress(frozenset({"hooks.example"}), resolver=resolver)
    assert listed.check("https://hooks.example/x").address == "93.184.215.14"


def test_a_name_that_does_not_resolve_is_unavailable_not_allowed() -> None:
    with pytest.raises(Unavailable, match="cannot resolve"):
        Egress().check("https://no-such-host.invalid/x")


def test_settings_take_the_allow_list_as_comma_separated_text_or_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1,10.0.0.0/8, hooks.internal")
    assert Settings().egress.allow == ["127.0.0.1", "10.0.0.0/8", "hooks.internal"]
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", '["127.0.0.1"]')
    assert Settings().egress.policy().check("http://127.0.0.1/").address == "127.0.0.1"
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "file:///etc")
    with pytest.raises(ValueError, match="CLOCHE_EGRESS__ALLOW"):
        Settings()


# --- connecting to the checked address, with the name as Host and SNI ---------------------


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name "localhost" (not for 127.0.0.1)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


class _Echo(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.path, self.headers.get("Host")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[tuple[str, str | None]]]]:
    cert, key = _certificate(tmp_path)
    seen: list[tuple[str, str | None]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Echo", (_Echo,), {"seen": seen}))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_httpx_reaches_the_checked_address_verifying_the_certificate_for_the_name(
    tls_server: tuple[int, Path, list[tuple[str, str | None]]],
) -> None:
    port, cert, seen = tls_server
    destination = Egress.from_allow("127.0.0.1").check(f"https://localhost:{port}/hook?a=1")
    request = destination.httpx_arguments()
    assert request["url"] == f"https://127.0.0.1:{port}/hook?a=1"
    verify = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=verify, trust_env=False) as client:
        answer = client.post(
            request["url"], headers=request["headers"], extensions=request["extensions"]
        )
        assert answer.status_code == 200
        assert seen == [("/hook?a=1", f"localhost:{port}")]
        # Without the SNI extension the certificate (for "localhost") does not match the IP:
        # the name really is what the installed httpx verifies against.
        with pytest.raises(httpx.ConnectError, match="certificate"):
            client.post(request["url"], headers=request["headers"])


def test_the_standard_library_connection_does_the_same_for_the_edge(
    tls_server: tuple[int, Path, list[tuple[str, str | None]]],
) -> None:
    port, cert, seen = tls_server
    destination = Egress.from_allow("127.0.0.1").check(f"https://localhost:{port}/x")
    context = ssl.create_default_context(cafile=str(cert))
    conn = connection(destination, timeout=5, context=context)
    try:
        conn.request("POST", destination.target, body=b"{}")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert seen == [("/x", f"localhost:{port}")]
