"""Slow or stalled clients cannot take every worker: the query API under gunicorn, as deployed.

gunicorn runs with the project's config (``runtime.gunicorn_conf``: workers x threads as
set, the ``runtime.web_worker`` worker) on a free port, over the session's MongoDB-protocol
server, with a short request deadline so the test is quick. It is stopped by its PID.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from auth.store import KeyStore
from runtime.settings import Settings
from runtime.web_worker import LINGER_SECONDS
from tests.conftest import Urls, free_port, unique

DEADLINE = 4.0  # LEDGER_WEB_REQUEST_TIMEOUT_SECONDS for this server
THREADS = Settings.from_env().web_workers * Settings.from_env().web_threads
CHECK_EVERY = 1.0  # the worker looks for expired requests at least this often


@dataclass(frozen=True)
class Server:
    port: int
    log: Path
    token: str  # a read key: every route but /healthz needs one

    @property
    def auth(self) -> bytes:
        """The Authorization header line, for requests written byte by byte."""
        return f"Authorization: Bearer {self.token}\r\n".encode()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def server(servers: Urls, keys: KeyStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    key, secret = keys.create("tests: slow clients", ["read"])
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = dict(
        os.environ,
        LEDGER_MONGO_URL=servers.mongo_url,
        LEDGER_DATABASE_URL=servers.reader_url,  # its keys
        LEDGER_MONGO_DB=unique("slow").replace("-", "_"),
        LEDGER_WEB_REQUEST_TIMEOUT_SECONDS=str(DEADLINE),
    )
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:runtime.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        process = subprocess.Popen([*argv, "queries.http:get_app()"], env=env, stdout=out, stderr=subprocess.STDOUT)
    workers: list[psutil.Process] = []
    try:
        started = time.monotonic()
        while not _answers(port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() - started < 60, "gunicorn did not start:\n" + log.read_text()
            time.sleep(0.2)
        workers = psutil.Process(process.pid).children()
        yield Server(port, log, f"{key.key_id}.{secret}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for worker in workers:  # a master killed outright leaves its workers to notice; do not wait on that
            try:
                worker.wait(timeout=5)
            except psutil.TimeoutExpired:
                worker.kill()
            except psutil.NoSuchProcess:
                pass


def _answers(port: int) -> bool:
    try:
        return _get(port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def _get(port: int, path: str, timeout: float, token: str | None = None) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


# Ways to hold a connection without ever finishing a request. Each sends what it sends and
# then stalls; what the server should do at the deadline follows (None: just close).
def _silent(server: Server) -> socket.socket:
    return server.connect()


def _one_byte(server: Server) -> socket.socket:
    sock = server.connect()
    sock.sendall(b"G")
    return sock


def _head_without_its_end(server: Server) -> socket.socket:
    sock = server.connect()
    sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    return sock


def _body_shorter_than_announced(server: Server) -> socket.socket:
    sock = server.connect()
    sock.sendall(
        b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return sock


def _kept_alive_then_one_byte(server: Server) -> socket.socket:
    sock = server.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b'{"status": "ok"}'):  # the whole answer, so nothing is left to read
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    sock.sendall(b"G")
    return sock


STALLERS: list[tuple[Callable[[Server], socket.socket], bytes | None]] = [
    (_silent, None),
    (_one_byte, b"HTTP/1.1 408"),
    (_head_without_its_end, b"HTTP/1.1 408"),
    (_body_shorter_than_announced, b"HTTP/1.1 408"),
    (_kept_alive_then_one_byte, b"HTTP/1.1 408"),
]


def _trickle(server: Server, stop: threading.Event, outcome: list[str]) -> None:
    """Send a request's head one byte every 0.2 s, for ever; note how the server ended it."""
    sock = server.connect()
    request = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 1000 + b"\r\n\r\n"
    try:
        for byte in request:
            if stop.is_set():
                outcome.append("stopped by the test")
                return
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
        outcome.append("the whole request was sent")
    except OSError:  # the server closed the connection: reset on a later send
        outcome.append("closed by the server")
    finally:
        sock.close()


def _unanswered(sock: socket.socket) -> bool:
    """Open, and nothing from the server yet (neither an answer nor a close)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_stalled_and_slow_clients_do_not_take_the_threads(server: Server) -> None:
    opened = time.monotonic()
    stalled = [(make(server), ending) for _ in range(THREADS) for make, ending in STALLERS]
    stop, trickled = threading.Event(), [list[str]() for _ in range(THREADS)]
    tricklers = [threading.Thread(target=_trickle, args=(server, stop, out)) for out in trickled]
    for thread in tricklers:
        thread.start()
    try:
        time.sleep(0.5)  # every stalled connection has been accepted by now
        answers = [_get(server.port, "/v1/status", timeout=DEADLINE, token=server.token) for _ in range(2 * THREADS)]
        answered_within = time.monotonic() - opened
        assert [status for status, _ in answers] == [200] * len(answers)
        assert max(took for _, took in answers) < 2.0, answers
        assert answered_within < DEADLINE, "too slow to show anything: the stalled ones may have been closed"
        assert all(_unanswered(sock) for sock, _ in stalled), "the stalled ones still wait: they were not just dropped"

        for sock, ending in stalled:
            sock.settimeout(opened + DEADLINE + CHECK_EVERY + 3 - time.monotonic())
            received = b""
            while chunk := sock.recv(65536):  # a timeout here fails the test: the server kept it
                received += chunk
            if ending is None:
                assert received == b""
            else:
                assert received.startswith(ending), received
                assert b'"code": "request_timeout"' in received
        closed_within = time.monotonic() - opened
        assert closed_within < DEADLINE + CHECK_EVERY + 3
        for thread in tricklers:
            thread.join(timeout=DEADLINE + CHECK_EVERY + 3)
        assert trickled == [["closed by the server"]] * THREADS
    finally:
        stop.set()
        for sock, _ in stalled:
            sock.close()
        for thread in tricklers:
            thread.join()


def test_clients_that_never_close_their_side_do_not_stall_the_worker(server: Server) -> None:
    """gthread closes a connection by waiting up to 2 s for the client to close its side,
    on the main loop; here a client that never does costs no one else any time."""
    opened = time.monotonic()
    lingering = [server.connect() for _ in range(2 * THREADS)]
    try:
        for sock in lingering:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        answers = [_get(server.port, "/v1/status", timeout=10, token=server.token) for _ in range(THREADS)]
        assert [status for status, _ in answers] == [200] * THREADS
        assert max(took for _, took in answers) < 1.0, answers
        for sock in lingering:  # each was answered, and then closed by the server
            sock.settimeout(opened + LINGER_SECONDS + CHECK_EVERY + 3 - time.monotonic())
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b'{"status": "ok"}')
    finally:
        for sock in lingering:
            sock.close()


def _exchange(server: Server, data: bytes, *, then: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send ``data`` (and ``then`` once the server has answered something), read to EOF."""
    with server.connect() as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        received = sock.recv(65536)
        if then:
            sock.sendall(then)
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_answers_the_worker_gives_before_the_app(server: Server) -> None:
    chunked = _exchange(server, b"POST /v1/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 ") and b'"code": "length_required"' in chunked

    huge_head = _exchange(server, b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
    assert huge_head.startswith(b"HTTP/1.1 431 ") and b'"code": "headers_too_large"' in huge_head

    # What gunicorn's own parser refuses is a problem+json too, with gunicorn's status.
    long_line = _exchange(server, b"GET /v1/status?x=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.1 414 ") and b'"code": "uri_too_long"' in long_line
    bad_header = _exchange(server, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
    assert bad_header.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in bad_header

    # A body over the limit is not waited for: the app answers from the head (the query API
    # takes no POST), and the connection closes rather than read 10 MB.
    started = time.monotonic()
    too_big = _exchange(
        server, b"POST /v1/status HTTP/1.1\r\nHost: x\r\n" + server.auth + b"Content-Length: 10000000\r\n\r\n{"
    )
    assert too_big.startswith(b"HTTP/1.1 405 ") and time.monotonic() - started < 2
    assert b"\r\nConnection: close\r\n" in too_big.split(b"\r\n\r\n")[0] + b"\r\n"  # not reused by the client


def test_well_behaved_clients_are_served_as_before(server: Server) -> None:
    expecting = _exchange(
        server,
        b"POST /v1/status HTTP/1.1\r\nHost: x\r\n"
        + server.auth
        + b"Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        then=b"{}",
    )
    assert expecting.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and b"HTTP/1.1 405 " in expecting

    get = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + server.auth + b"\r\n"
    pipelined = _exchange(server, get + get + get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert pipelined.count(b"HTTP/1.1 200 OK") == 3, pipelined

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(3):  # one kept-alive connection, one request after another
            conn.request(
                "GET", "/v1/status", headers={"X-Request-Id": "kept-alive", "Authorization": f"Bearer {server.token}"}
            )
            response = conn.getresponse()
            assert (response.status, response.getheader("X-Request-Id")) == (200, "kept-alive")
            response.read()
    finally:
        conn.close()
