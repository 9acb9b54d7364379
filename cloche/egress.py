"""Outbound connections the server makes for a user: which destinations may be reached, and
connecting to exactly the address that was checked.

A webhook URL or an edge sync target is chosen by whoever may save it, and the server then
connects from inside its network. Unchecked, that reaches what only the server can: a cloud
metadata service (169.254.169.254), an admin port on loopback, a database on the private
network. So a destination is refused, unless ``CLOCHE_EGRESS__ALLOW`` lists it, when any address
its name resolves to is loopback, link-local, private, shared (CGNAT), multicast, reserved or
unspecified, in whatever notation it was written: getaddrinfo turns ``2130706433``,
``0x7f000001``, ``0177.0.0.1`` and ``127.1`` into 127.0.0.1, and an IPv6 address that carries an
IPv4 one (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo) is judged by that one too.

The check resolves the name once and the connection goes to the address it checked (the
original name travels as the Host header and as TLS SNI), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot redirect it. Callers follow no redirects.

Standard library only (httpx is imported by its callers): the edge runtime imports this module.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cloche.errors import DestinationRefused, InvalidInput, Unavailable

ALLOW_ENV = "CLOCHE_EGRESS__ALLOW"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Not covered by the ipaddress properties below in every Python version.
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def why_refused(address: IPAddress) -> str | None:
    """What kind of address this is when the server must not reach it unasked; else None."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = why_refused(embedded)
        return f"{reason} (inside an IPv6 address)" if reason else None
    for name in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    if address.version == 4 and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if not address.is_global:
        return "non-global"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_allow(value: str | Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """``CLOCHE_EGRESS__ALLOW``'s host names and networks: comma-separated text or a list."""
    entries = value.split(",") if isinstance(value, str) else list(value)
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or ":" in entry or not all(c.isalnum() or c in "-._" for c in entry):
            raise ValueError(
                f"{raw.strip()!r} in {ALLOW_ENV} is neither a host name nor an address or CIDR "
                "range; write e.g. 127.0.0.1,10.0.0.0/8,hooks.internal"
            )
        hosts.add(entry.rstrip("."))
    return frozenset(hosts), tuple(networks)


@dataclass(frozen=True)
class Destination:
    """A checked URL: connect to ``address``; ``host`` is the name for Host and SNI."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower case, no brackets
    port: int
    address: str  # the checked IP address to connect to
    is_ip: bool  # the URL named an address, not a host name (then no SNI is sent)

    @property
    def host_header(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc.rpartition("@")[2]

    @property
    def target(self) -> str:
        """The request target: path and query, as the URL gives them."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host (for httpx)."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.target}"

    def httpx_arguments(self) -> dict[str, Any]:
        """``url``, ``headers`` and ``extensions`` of an httpx request to the checked address:
        the original Host header, and for https the host name as SNI, so the certificate is
        verified against the name (httpcore passes ``sni_hostname`` as ``server_hostname``)."""
        extensions = (
            {"sni_hostname": self.host} if self.scheme == "https" and not self.is_ip else {}
        )
        return {
            "url": self.pinned_url(),
            "headers": {"Host": self.host_header},
            "extensions": extensions,
        }


@dataclass(frozen=True)
class Egress:
    """Which destinations the server may connect to for a user: public addresses, plus the
    hosts and networks an operator lists in ``CLOCHE_EGRESS__ALLOW``."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    resolver: Any = field(default=socket.getaddrinfo, compare=False, repr=False)

    @classmethod
    def from_allow(cls, value: str | Iterable[str]) -> Egress:
        hosts, networks = parse_allow(value)
        return cls(hosts, networks)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Egress:
        """For processes without Settings (the edge runtime)."""
        try:
            return cls.from_allow(environ.get(ALLOW_ENV, ""))
        except ValueError as exc:
            raise InvalidInput(str(exc), hint=f"fix {ALLOW_ENV}") from None

    def check(self, url: str, *, what: str = "destination") -> Destination:
        """Resolve ``url``'s host once and check every address; raise DestinationRefused (403)
        or, when the name does not resolve, Unavailable (503)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        if scheme not in ("http", "https") or not host:
            raise InvalidInput(f"the {what} must be an http(s) URL with a host")
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = self._resolve(host, port, what)
        listed = host in self.hosts
        for address in addresses:
            reason = None if listed or self._allowed(address) else why_refused(address)
            if reason is not None:
                shown = host if host == str(address) else f"{host} ({address})"
                raise DestinationRefused(
                    f"the {what} {shown} is not a public address ({reason}); the server "
                    f"connects there only when {ALLOW_ENV} lists it",
                    hint=f"use a public destination, or have an operator add it to {ALLOW_ENV} "
                    "(comma-separated hosts and CIDR ranges, e.g. 10.0.0.0/8,hooks.internal)",
                )
        return Destination(url, scheme, host, port, str(addresses[0]), _is_ip(host))

    def _allowed(self, address: IPAddress) -> bool:
        embedded = _embedded_ipv4(address)
        candidates = [a for a in (address, embedded) if a is not None]
        return any(a in network for a in candidates for network in self.networks)

    def _resolve(self, host: str, port: int, what: str) -> list[IPAddress]:
        try:
            found = self.resolver(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise Unavailable(
                f"cannot resolve the {what}'s host {host}: {exc}",
                hint="check the host name, or try again when DNS answers",
            ) from None
        addresses = []
        for family, *_, sockaddr in found:
            if family in (socket.AF_INET, socket.AF_INET6):
                addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        if not addresses:
            raise Unavailable(f"the {what}'s host {host} has no IP address")
        return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connection(
    destination: Destination, *, timeout: float, context: ssl.SSLContext | None = None
) -> http.client.HTTPConnection:
    """A standard-library connection to the checked address (http.client follows no redirect);
    for https the certificate is verified against the URL's host name."""
    if destination.scheme == "https":
        return _PinnedHTTPS(destination, timeout, context or ssl.create_default_context())
    return _PinnedHTTP(destination, timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, destination: Destination, timeout: float) -> None:
        super().__init__(destination.host, destination.port, timeout=timeout)
        self._address = destination.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, destination: Destination, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(destination.host, destination.port, timeout=timeout, context=context)
        self._address = destination.address
        self._tls = context
        self._sni = None if destination.is_ip else destination.host

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        server_hostname = self._sni or self.host  # an IP URL: verified against the IP
        self.sock = self._tls.wrap_socket(sock, server_hostname=server_hostname)
