"""When the worker's main loop may give a request to a thread (``runtime.web_worker.arrival``).

The worker itself is tested end to end under gunicorn (tests/e2e/test_slow_clients.py).
"""

from __future__ import annotations

import json

import pytest
from gunicorn.http import errors as http_errors

from commands import request_bodies
from runtime.web_worker import MAX_BODY_BYTES, MAX_HEAD_BYTES, Arrival, arrival, parser_refusal, problem_response

GET = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"


def post(body: bytes, length: int | None = None, *headers: bytes) -> bytes:
    size = len(body) if length is None else length
    head = b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: " + str(size).encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("buffer", "expected"),
    [
        (b"", Arrival()),
        (b"G", Arrival()),
        (GET[:-2], Arrival()),  # the head has not ended
        (GET, Arrival(complete=True)),
        (GET + GET[:5], Arrival(complete=True)),  # the first of two pipelined requests is in
        (post(b"{}"), Arrival(complete=True)),
        (post(b"{", 2), Arrival(needed=len(post(b"{}")))),
        (
            post(b"{", 2, b"Expect: 100-Continue"),
            Arrival(expects_continue=True, needed=len(post(b"{}", 2, b"Expect: 100-Continue"))),
        ),
        (post(b"{}").replace(b"Content-Length", b"content-LENGTH"), Arrival(complete=True)),
        (post(b"", MAX_BODY_BYTES), Arrival(needed=len(post(b"", MAX_BODY_BYTES)) + MAX_BODY_BYTES)),
        (post(b"", MAX_BODY_BYTES + 1), Arrival(complete=True, close_after=True)),  # the app answers 413
        (post(b"", 10**30), Arrival(complete=True, close_after=True)),
        (post(b"", 1, b"Content-Length: 1"), Arrival(complete=True, close_after=True)),  # the parser refuses it
        (post(b"").replace(b"Content-Length: 0", b"Content-Length: -1"), Arrival(complete=True, close_after=True)),
        (post(b"", 5, b"Transfer-Encoding: chunked"), Arrival(refuse=411)),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES, Arrival(refuse=431)),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", Arrival(refuse=431)),
    ],
)
def test_a_request_goes_to_a_thread_only_once_it_has_arrived(buffer: bytes, expected: Arrival) -> None:
    assert arrival(buffer) == expected


def test_a_head_is_looked_for_only_where_it_can_end() -> None:
    assert arrival(GET, scan_from=len(GET) - 4) == Arrival(complete=True)
    assert arrival(GET, scan_from=len(GET) - 3) == Arrival()  # told it cannot end before: it waits


def test_the_body_limit_is_the_command_apis() -> None:
    assert MAX_BODY_BYTES == request_bodies.MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("status", "code"),
    [(408, "request_timeout"), (411, "length_required"), (414, "uri_too_long"), (431, "headers_too_large")],
)
def test_answers_given_by_the_worker_are_problems_that_close(status: int, code: str) -> None:
    head, _, body = problem_response(status).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert "Connection: close" in lines and "Content-Type: application/problem+json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body)["code"] == code and json.loads(body)["status"] == status


def test_gunicorns_parser_refusals_keep_their_status_and_other_errors_are_left_to_gunicorn() -> None:
    assert parser_refusal(http_errors.LimitRequestLine(9000, 4094)) is not None
    assert parser_refusal(http_errors.LimitRequestLine(9000, 4094))[0] == 414  # type: ignore[index]
    assert parser_refusal(http_errors.InvalidHeaderName("Bad Header"))[0] == 400  # type: ignore[index]
    assert parser_refusal(http_errors.LimitRequestHeaders("too many"))[0] == 431  # type: ignore[index]
    assert parser_refusal(http_errors.InvalidRequestLine("x" * 1000))[1].endswith("...")  # type: ignore[index]
    assert parser_refusal(RuntimeError("app")) is None
    # a header the app set is the app's fault: gunicorn's 500, not a client's 400
    assert parser_refusal(http_errors.InvalidResponseHeader("bad\r\nvalue")) is None
    assert parser_refusal(http_errors.UnsupportedTransferCoding("gzip"))[0] == 501  # type: ignore[index]
