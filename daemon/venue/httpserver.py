"""A small HTTP/1.1 server on an anyio TCP listener with the h11 state machine.

Why h11 and not a framework: the venue must misbehave on purpose at the socket level — close a
connection with a TCP RST, or accept a request and then say nothing — and a framework hides
the socket. h11 is a pure-Python HTTP/1.1 parser/serialiser (already installed with httpx), so
we own the socket and the timing. Keep-alive is supported, so pooled clients (httpx) work.

A handler returns a Reply: `Response` (status, body, headers), `Reset` (close with RST, no
answer) or `Stall` (no answer for some seconds, then close).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream

from daemon.logs import get_logger


def log() -> Any:
    return get_logger("venue.http")  # bound at call time: configure_logging may come later
MAX_BODY = 1 << 20


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Reset:
    """Close the connection with a TCP RST and no answer."""


@dataclass
class Stall:
    """Answer nothing for `seconds`, then close the connection."""

    seconds: float


Reply = Response | Reset | Stall
Handler = Callable[[Request], Awaitable[Reply]]


async def _send(conn: h11.Connection, stream: SocketStream, resp: Response) -> None:
    headers = [("content-type", resp.content_type), ("content-length", str(len(resp.body))),
               ("server", "anchord-paper-venue"), *resp.headers]
    data = conn.send(h11.Response(status_code=resp.status, headers=headers))
    data += conn.send(h11.Data(data=resp.body)) if resp.body else b""
    data += conn.send(h11.EndOfMessage())
    await stream.send(data)


async def reset(stream: SocketStream) -> None:
    """Abort the connection: SO_LINGER 0 makes close() send RST instead of FIN."""
    try:
        sock = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, anyio.TypedAttributeLookupError):
        pass
    await stream.aclose()


async def _read_request(conn: h11.Connection, stream: SocketStream) -> Request | None:
    """The next complete request on the connection, or None when the peer closed it."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            conn.receive_data(data)
            if not data and head is None and conn.their_state in (h11.IDLE, h11.DONE):
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise h11.RemoteProtocolError("body too large", 413)
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
            return Request(head.method.decode(), head.target.decode("latin-1"), headers,
                           bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def serve_connection(stream: SocketStream, handler: Handler) -> None:
    """Serve requests on one connection until either side closes it."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            try:
                req = await _read_request(conn, stream)
            except h11.RemoteProtocolError as err:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, Response(err.error_status_hint, b""))
                return
            if req is None:
                return
            reply = await handler(req)
            if isinstance(reply, Reset):
                await reset(stream)
                return
            if isinstance(reply, Stall):
                await anyio.sleep(reply.seconds)
                return
            await _send(conn, stream, reply)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        return
    except Exception as err:  # one bad connection must never take the venue down
        log().error("venue_connection_error", error=repr(err))
    finally:
        await stream.aclose()


async def open_listener(host: str, port: int) -> tuple[anyio.abc.Listener, int]:
    """A TCP listener on host:port (0 = a free port) and the port it got."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    return listener, listener.extra(SocketAttribute.local_port)
