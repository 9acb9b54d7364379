"""Reading a request's body off ASGI: whole, capped in size, and decoded from gzip or deflate.

The cap holds before and after decompression, so neither a large body nor a small compressed
one that inflates (a zip bomb) is ever held in memory past it.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from cloche.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding

Receive = Callable[[], Awaitable[dict[str, Any]]]
# Content-Encoding -> zlib wbits (0: already plain); deflate per RFC 9110 is zlib-wrapped.
DECODERS = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
    b"identity": 0,
}


class BodyReader:
    """Request bodies up to ``max_bytes``, plain or decompressed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def check_length(self, headers: dict[bytes, bytes]) -> None:
        """Refuse a declared Content-Length over the cap before reading anything."""
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            raise self.too_large() if length.isdigit() else BadRequest("bad Content-Length")

    def capped(self, body: bytes) -> bytes:
        if len(body) > self.max_bytes:
            raise self.too_large()
        return body

    async def read(
        self,
        headers: dict[bytes, bytes],
        receive: Receive,
        first: dict[str, Any] | None = None,
    ) -> bytes:
        """The whole request body (``first``: its first message, already received)."""
        self.check_length(headers)
        chunks, size = [], 0
        while True:
            message = first if first is not None else await receive()
            first = None
            if message["type"] == "http.disconnect":
                raise BadRequest("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise self.too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                encoding = headers.get(b"content-encoding")
                return body if encoding is None else self.decompress(body, encoding)

    def decompress(self, body: bytes, encoding: bytes) -> bytes:
        """A gzip or deflate body, capped by its decompressed size (a small bomb stays small)."""
        wbits = DECODERS.get(encoding.strip().lower())
        if wbits is None:
            raise UnsupportedEncoding(
                f"unsupported Content-Encoding {encoding.decode('latin-1')!r}",
                hint="send the body plain, gzip or deflate",
            )
        if wbits == 0:
            return body
        decoder = zlib.decompressobj(wbits)
        try:
            plain = decoder.decompress(body, self.max_bytes + 1)
        except zlib.error as exc:
            raise BadRequest(f"the {encoding.decode()} body is corrupt: {exc}") from None
        if len(plain) > self.max_bytes or decoder.unconsumed_tail:
            raise self.too_large()
        return plain

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is over {self.max_bytes // 2**20} MiB",
            hint="send fewer rows per request, or raise CLOCHE_SERVING__MAX_REQUEST_MB",
        )
