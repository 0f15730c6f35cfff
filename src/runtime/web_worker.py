"""A gunicorn gthread worker that gives a connection to a thread only once its request is in.

Why. gunicorn's ``gthread`` worker (27.0.1, ``gunicorn/workers/gthread.py``) hands every
accepted connection to a pool thread, which reads the request from a blocking socket
with no timeout; the main loop keeps accepting meanwhile, so new requests queue behind
stuck threads. Measured on the query API with 2 workers x 4 threads:

- a client that sends one byte, or headers without their closing blank line, holds a
  thread for as long as it keeps the connection open (30 such connections: a normal
  request accepted by the same worker had no answer after 30 s; gunicorn's own
  ``timeout`` never fires, since the main loop still heartbeats);
- a body shorter than its Content-Length holds a thread for 5 s while gunicorn drains it
  (30 such connections delayed a normal request by 57 s), or for good where the app reads
  the body (the command API does);
- a client that sends nothing holds a thread for 5 s before gunicorn parks it (12 such
  connections delayed a normal request by 14 s);
- a kept-alive connection that sends one byte of its next request holds a thread for good.

What this worker does instead. The main loop reads each request without blocking (on the
selector gthread already has) until its head and its Content-Length body have arrived,
and only then gives the connection, with those bytes, to a thread. A thread therefore
never waits on a client, and stalled clients cost a socket and a bounded buffer each,
not a thread. Each request has a deadline (``LEDGER_WEB_REQUEST_TIMEOUT_SECONDS``) from
its connection's accept, or on a kept-alive connection from its first byte: past it, a
connection that sent part of a request is answered 408 and closed, one that sent nothing
is just closed. Other answers given here, without the app: a head over ``MAX_HEAD_BYTES``
is 431; ``Transfer-Encoding`` (a body of unknown length) is 411, since neither API takes
a body over 64 KiB. A Content-Length over ``MAX_BODY_BYTES`` is handed to the app as soon
as the head is in (the command API answers 413 from the header) and the connection is
closed after the answer instead of draining the body. ``Expect: 100-continue`` is answered
here when the head is in, so clients send their body (gunicorn sends its own 100 later,
which clients must accept: RFC 9110, section 15.2).

Closing, too, waits on no client. gthread closes a connection that is not kept alive by
half-closing it and reading what the client still sends until it closes too, for up to
2 s (so the client sees the whole answer, not a reset: RFC 9112, section 9.6) -- on the
main loop, so a client that never closes its side stalled the whole worker for 2 s per
request (30 such requests delayed a normal one by 29 s). Here that lingering is done by
the selector too (``LINGER_SECONDS``).

Out of scope: a client that reads its answer slowly still holds a thread while the
answer is written (our answers are small, so the socket buffer usually takes them
whole); and the number of connections per client, which is a reverse proxy's job
(gunicorn stops accepting at ``worker_connections`` per worker).
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from runtime.settings import Settings

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
MAX_BODY_BYTES = 64 * 1024  # the command API's limit (commands.request_bodies.MAX_BODY_BYTES)
LINGER_SECONDS = 2.0  # as gunicorn's own graceful close
_READ_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Arrival:
    """How far a buffered request has got: ``complete`` means a thread may read it
    without waiting; ``close_after`` that its body will not all be read, so the
    connection must not be reused; ``refuse`` is a status to answer here instead;
    ``needed``, once the head is in, how many bytes the whole request takes."""

    complete: bool = False
    close_after: bool = False
    expects_continue: bool = False
    refuse: int | None = None
    needed: int | None = None


def arrival(
    buffer: bytes | bytearray, scan_from: int = 0, max_head: int = MAX_HEAD_BYTES, max_body: int = MAX_BODY_BYTES
) -> Arrival:
    """Whether the first request in ``buffer`` has fully arrived (pure; easy to test).

    This reads only what it needs to know when to stop waiting; gunicorn's parser, in the
    thread, remains the judge of whether the request is valid. So a head this cannot make
    sense of (two Content-Lengths, a malformed one) is handed on as complete, for the
    parser to refuse without reading a body. ``scan_from``: where the head's end may
    start, as far as earlier calls know (a head sent a byte at a time is not rescanned)."""
    end = buffer.find(b"\r\n\r\n", scan_from)
    if end < 0:
        return Arrival(refuse=431) if len(buffer) > max_head else Arrival()
    if end > max_head:
        return Arrival(refuse=431)
    lengths: list[bytes] = []
    expects_continue = False
    for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return Arrival(refuse=411)
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"expect":
            expects_continue = value.strip().lower() == b"100-continue"
    if not lengths:
        return Arrival(complete=True)
    if len(lengths) > 1 or not (lengths[0].isdigit() and len(lengths[0]) <= 18):
        return Arrival(complete=True, close_after=True)
    length = int(lengths[0])
    if length > max_body:
        return Arrival(complete=True, close_after=True)
    if len(buffer) >= end + 4 + length:
        return Arrival(complete=True)
    return Arrival(expects_continue=expects_continue, needed=end + 4 + length)


_PROBLEMS = {  # status: (title, code, detail)
    400: ("Bad Request", "invalid_request", "the request line or a header is malformed"),
    403: ("Forbidden", "forbidden", "the request was refused"),
    408: ("Request Timeout", "request_timeout", "the request did not arrive in time"),
    411: (
        "Length Required",
        "length_required",
        "send the body with a Content-Length (at most 64 KiB), not a Transfer-Encoding",
    ),
    414: ("URI Too Long", "uri_too_long", "the request line is over gunicorn's limit (limit_request_line)"),
    417: ("Expectation Failed", "expectation_failed", "only 'Expect: 100-continue' is understood"),
    431: (
        "Request Header Fields Too Large",
        "headers_too_large",
        f"the request line and headers are over {MAX_HEAD_BYTES} bytes",
    ),
    500: ("Internal Server Error", "internal_error", "the server failed to read this request; it was logged"),
    501: ("Not Implemented", "not_implemented", "this transfer coding is not supported"),
}
# Errors of ours (a bad header the app set, a configuration problem): gunicorn answers 500.
_NOT_THE_CLIENTS = (
    http_errors.ConfigurationProblem,
    http_errors.InvalidResponseHeader,
    http_errors.InvalidResponseHeaderName,
)
# What gunicorn's parser refusals answer (as in its ``Worker.handle_error``); any other is 400.
_PARSER_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.ExpectationFailed, 417),
    (http_errors.ForbiddenProxyRequest, 403),
)


def problem_response(status: int, detail: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer in the APIs' problem+json format, closing the connection."""
    title, code, default = _PROBLEMS[status]
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "code": code, "detail": detail or default}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def parser_refusal(exc: BaseException) -> tuple[int, str] | None:
    """The status and detail for a request gunicorn's parser refused; None for any other error."""
    if not isinstance(exc, http_errors.ParseException) or isinstance(exc, _NOT_THE_CLIENTS):
        return None
    status = next((status for kind, status in _PARSER_STATUS if isinstance(exc, kind)), 400)
    shown = str(exc)
    return status, f"{_PROBLEMS[status][2]}: {shown[:200]}{'...' if len(shown) > 200 else ''}"


class BufferedConn(TConn):  # type: ignore[misc]
    """A gthread connection with the bytes read for its next request, and its deadline."""

    def __init__(self, worker: BufferingThreadWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker
        self.early = bytearray()  # what has arrived of the next request
        self.scanned = 0  # the head's end is not before this
        self.needed: int | None = None  # the whole request's size, once its head is in
        self.deadline: float | None = None
        self.close_after = False

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread``, except that requests are read in the main loop (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = Settings.from_env().web_request_timeout_seconds
        self.arriving: set[BufferedConn] = set()
        self.lingering: dict[BufferedConn, float] = {}  # connection -> when to close it anyway
        self._notified_at = 0.0

    def notify(self) -> None:
        """Tell the arbiter we are alive at most once a second: gthread does it on every
        turn of its loop (a syscall per event, measurable under load), and the arbiter
        only acts after ``timeout`` seconds (30) without one."""
        now = time.monotonic()
        if now - self._notified_at >= 1.0:
            self._notified_at = now
            super().notify()

    def init_process(self) -> None:
        if self.cfg.is_ssl or self.cfg.http2_cleartext not in (None, "", "off"):
            raise RuntimeError(
                "BufferingThreadWorker serves plain HTTP/1.1 only; terminate TLS and HTTP/2 in front of it"
            )
        super().init_process()

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.enqueue_req(BufferedConn(self, self.cfg, client_sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn: BufferedConn) -> None:
        """Every path to a thread (a new connection, a kept-alive one that became
        readable, bytes read ahead behind the last request) comes through here, on the
        main thread: the request goes to a thread only once it has arrived."""
        if conn.parser is not None:  # what the last request's parsing read ahead
            conn.early += conn.parser.unreader.take_buffered()
        if conn.deadline is None:
            conn.deadline = time.monotonic() + self.request_timeout
        self._examine(conn)

    def _examine(self, conn: BufferedConn) -> None:
        if conn.needed is not None:  # the head was read: only the body's length matters
            if len(conn.early) >= conn.needed:
                self._hand_over(conn, close_after=False)
            return
        state = arrival(conn.early, conn.scanned)
        if state.refuse is not None:
            self._refuse(conn, state.refuse)
        elif state.complete:
            self._hand_over(conn, close_after=state.close_after)
        else:
            conn.scanned = max(len(conn.early) - 3, 0)
            conn.needed = state.needed
            if state.expects_continue:
                _send_nowait(conn, _CONTINUE)
            if conn not in self.arriving:
                conn.sock.setblocking(False)
                self.arriving.add(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: BufferedConn, client: Any) -> None:
        try:
            data = conn.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(conn)
            return
        conn.early += data
        self._examine(conn)

    def _hand_over(self, conn: BufferedConn, *, close_after: bool) -> None:
        if conn in self.arriving:
            self.arriving.discard(conn)
            self.poller.unregister(conn.sock)
        conn.init()  # plain HTTP/1.1 (see init_process): makes the parser, no I/O
        conn.parser.unreader.unread(bytes(conn.early))
        conn.early.clear()
        conn.scanned, conn.needed, conn.deadline = 0, None, None
        conn.close_after = close_after
        super().enqueue_req(conn)

    def _refuse(self, conn: BufferedConn, status: int) -> None:
        _send_nowait(conn, problem_response(status))
        self._drop(conn, graceful=True)

    def _drop(self, conn: BufferedConn, *, graceful: bool = False) -> None:
        if conn in self.arriving:
            self.arriving.discard(conn)
            self._unregister(conn)
        self.nr_conns -= 1
        conn.close(graceful=graceful)

    def linger(self, conn: BufferedConn) -> None:
        """Half-close, then read and discard until the client closes or LINGER_SECONDS pass."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))
        except (OSError, ValueError, KeyError):
            TConn.close(conn)
            return
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS

    def _on_lingering_readable(self, conn: BufferedConn, client: Any) -> None:
        try:
            if conn.sock.recv(_READ_SIZE):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_lingering(conn)

    def _end_lingering(self, conn: BufferedConn) -> None:
        del self.lingering[conn]
        self._unregister(conn)
        TConn.close(conn)

    def _unregister(self, conn: BufferedConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def murder_pending(self) -> None:
        """gthread calls this after every turn of its loop (at least once a second):
        expire requests past their deadline; when stopping, close idle connections."""
        super().murder_pending()
        now = time.monotonic()
        for conn, until in list(self.lingering.items()):
            if now >= until or not self.alive:
                self._end_lingering(conn)
        for conn in list(self.arriving):
            if not conn.early and not self.alive:
                self._drop(conn)
            elif conn.deadline is not None and now >= conn.deadline:  # every arriving connection has one
                if conn.early:
                    self._refuse(conn, 408)
                else:
                    self._drop(conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn answers a request its parser refuses (a request line over its limit, a
        malformed header) with an HTML page; here it is a problem+json, as every other
        refusal, with gunicorn's own status. Any other error is gunicorn's to handle."""
        refusal = parser_refusal(exc)
        if refusal is None:
            super().handle_error(req, client, addr, exc)
            return
        status, detail = refusal
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], str(exc)[:200])
        try:
            client.sendall(problem_response(status, detail))
        except OSError:
            pass

    def handle_request(self, req: Any, conn: BufferedConn) -> bool:
        """An answer on a connection that closes after it says so (``Connection: close``):
        a client that took it for kept alive sent its next request into a closed socket
        (``ledger payouts run`` starting a run after uploading a file over 64 KiB)."""
        if conn.close_after:
            req.must_close = True
        return bool(super().handle_request(req, conn))

    def _keepalive_after(self, conn: BufferedConn, keepalive: bool) -> bool:
        """A body left unread (over the limit) is not drained: the connection closes."""
        if conn.close_after:
            return False
        return bool(super()._keepalive_after(conn, keepalive))


def _send_nowait(conn: TConn, data: bytes) -> None:
    """Best effort, never blocking: these answers are far smaller than a socket buffer."""
    try:
        conn.sock.setblocking(False)
        conn.sock.send(data)
    except OSError:
        pass
