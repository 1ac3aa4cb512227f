"""`course-signup serve` at the edge, over raw sockets: request-head limits, graceful shutdown, trusted proxies."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn

from course_signup.adapters.tokens import TokenService
from course_signup.server import EdgeProtocol, GracefulServer, HeadLimits
from course_signup.settings import Settings
from tests.conftest import JWT_SECRET
from tests.integration.servers import Server, free_port, start_server

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 8.0


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _connect(server: Server, *, source: str | None = None) -> socket.socket:
    return socket.create_connection(_address(server), timeout=15, source_address=(source, 0) if source else None)


def _request(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: course-signup"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length body: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed the connection (EOF or reset) with nothing more to read."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _refuses_connections(server: Server) -> bool:
    try:
        socket.create_connection(_address(server), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """serve(**settings) starts a `serve` process on the embedded database; all are stopped afterwards."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = start_server(None, tmp_path / f"serve-{len(started)}", **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _token(student: str) -> str:
    return TokenService(Settings(jwt_secret=JWT_SECRET), secret=JWT_SECRET).issue(student)


def test_a_32_mb_header_is_refused_with_431_and_the_connection_closed(serve):
    server = serve(COURSE_SIGNUP_MAX_HEADER_BYTES="8192")
    with _connect(server) as sock:
        huge = _request("GET", "/health", headers={"X-Filler": "a" * (32 * 1024 * 1024)})
        sender = threading.Thread(target=_send_ignoring_resets, args=(sock, huge), daemon=True)
        sender.start()
        status, headers, body = _read_answer(sock)
        assert status == 431
        assert headers["connection"] == "close"
        assert json.loads(body) == {
            "code": 431,
            "message": "Request Header Fields Too Large",
            "data": "The request's headers are larger than 8192 bytes.",
        }
        assert _closed_by_server(sock)
        sender.join(timeout=15)
    assert server.process.poll() is None


def test_a_head_over_the_limit_that_arrives_in_one_read_is_refused_too(serve):
    """Measured as it is parsed, not only as bytes arrive: 20 KB in one write is one read here."""
    server = serve(COURSE_SIGNUP_MAX_HEADER_BYTES="8192")
    with _connect(server) as sock:
        sock.sendall(_request("GET", "/health", headers={"X-Filler": "a" * 20_000}))
        status, headers, body = _read_answer(sock)
        assert status == 431 and headers["connection"] == "close"
        assert json.loads(body)["data"] == "The request's headers are larger than 8192 bytes."
        assert _closed_by_server(sock)
    assert server.process.poll() is None


def test_headers_within_the_limit_are_served(serve):
    server = serve(COURSE_SIGNUP_MAX_HEADER_BYTES="8192")
    with _connect(server) as sock:
        sock.sendall(_request("GET", "/health", headers={"X-Filler": "a" * 7000}))
        status, _, body = _read_answer(sock)
    assert status == 200
    assert json.loads(body)["data"] == {"health": "Okay"}


def _send_ignoring_resets(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server closes the connection before all of it is sent
        sock.sendall(data)


def test_a_client_dribbling_its_headers_gets_408_and_is_disconnected_at_the_deadline(serve):
    server = serve(COURSE_SIGNUP_CLIENT_HEADER_TIMEOUT_SECONDS="1")
    head = _request("GET", "/health", headers={"X-Slow": "x" * 100})
    with _connect(server) as sock:
        # A byte every 0.1 s: the whole head would take the client over 10 s.
        dribbler = threading.Thread(target=_dribble, args=(sock, head), daemon=True)
        dribbler.start()
        status, headers, body = _read_answer(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert json.loads(body)["data"] == "The request's headers did not arrive within 1 seconds."
        assert _closed_by_server(sock)
        assert dribbler.is_alive()  # cut off while still sending
    dribbler.join(timeout=15)


def _dribble(sock: socket.socket, data: bytes) -> None:
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(0.1)


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(serve):
    server = serve(COURSE_SIGNUP_CLIENT_HEADER_TIMEOUT_SECONDS="1")
    with _connect(server) as sock:
        assert _closed_by_server(sock)  # within the socket's 15 s timeout, else socket.timeout fails the test


def test_headers_sent_in_pieces_within_the_deadline_are_served(serve):
    server = serve(COURSE_SIGNUP_CLIENT_HEADER_TIMEOUT_SECONDS="5")
    head = _request("GET", "/health")
    with _connect(server) as sock:
        for start in range(0, len(head), 8):
            sock.sendall(head[start : start + 8])
            time.sleep(0.02)
        status, _, _ = _read_answer(sock)
    assert status == 200


def test_sigterm_stops_accepting_answers_the_request_in_flight_and_exits_0(serve):
    server = serve(COURSE_SIGNUP_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    body = b'{"courseId": "CS101"}'
    request = _request(
        "POST",
        "/students/alice@example.com/courses",
        headers={"Authorization": f"Bearer {_token('alice@example.com')}", "Content-Type": "application/json"},
        body=body,
    )
    with _connect(server) as in_flight:
        # The request is in flight: its head and half its body are in; the app waits for the rest.
        in_flight.sendall(request[: -len(body) // 2])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        assert _wait_until(lambda: _refuses_connections(server)), "still accepting connections after SIGTERM"
        in_flight.sendall(request[-len(body) // 2 :])
        status, headers, answer = _read_answer(in_flight)
        assert status == 200, answer
        assert json.loads(answer)["data"]["courseId"] == "CS101"
        assert headers["connection"] == "close"
        assert _closed_by_server(in_flight)
    assert server.process.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0


def test_after_sigterm_an_idle_kept_alive_connection_gets_one_more_answer_then_closes(serve):
    # A proxy may be sending a request on its idle connection at the moment the server stops;
    # closing that connection at once would lose the request.
    server = serve(COURSE_SIGNUP_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    with _connect(server) as kept:
        kept.sendall(_request("GET", "/health"))
        assert _read_answer(kept)[0] == 200
        server.process.send_signal(signal.SIGTERM)
        assert _wait_until(lambda: _refuses_connections(server))
        kept.sendall(_request("GET", "/courses/CS101"))
        status, headers, _ = _read_answer(kept)
        assert status == 200
        assert headers["connection"] == "close"
        assert _closed_by_server(kept)
    assert server.process.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0


def test_a_request_still_unfinished_at_the_shutdown_timeout_does_not_keep_the_process(serve):
    server = serve(COURSE_SIGNUP_SHUTDOWN_TIMEOUT="2")
    with _connect(server) as stuck:
        stuck.sendall(_request("POST", "/students/alice@example.com/courses", body=b'{"courseId": ')[:-1])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=2 + 5) == 0


def test_sigterm_to_several_workers_stops_them_all_and_exits_0(serve):
    server = serve(COURSE_SIGNUP_WORKERS="2", COURSE_SIGNUP_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    with _connect(server) as kept:
        kept.sendall(_request("GET", "/health"))
        assert _read_answer(kept)[0] == 200
        server.process.send_signal(signal.SIGTERM)
        assert _wait_until(lambda: _refuses_connections(server))
    assert server.process.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0


def _anonymous_reads(server: Server, *, source: str, forwarded_for: list[str]) -> list[int]:
    statuses = []
    for address in forwarded_for:
        with _connect(server, source=source) as sock:
            sock.sendall(_request("GET", "/courses", headers={"X-Forwarded-For": address}))
            statuses.append(_read_answer(sock)[0])
    return statuses


def test_x_forwarded_for_is_believed_from_the_trusted_proxy_only(serve):
    # The anonymous rate limit counts per client address: 3 reads a minute. The trusted proxy
    # (127.0.0.1, the default FORWARDED_ALLOW_IPS) names a different client each time, so none is
    # limited; a client elsewhere (127.0.0.2) naming other addresses is still counted as itself.
    server = serve(COURSE_SIGNUP_RATE_LIMIT_ENABLED="true", COURSE_SIGNUP_RATE_LIMIT_ANONYMOUS="3/minute")
    through_proxy = _anonymous_reads(server, source="127.0.0.1", forwarded_for=[f"203.0.113.{n}" for n in range(6)])
    assert through_proxy == [200] * 6
    spoofing = _anonymous_reads(server, source="127.0.0.2", forwarded_for=[f"198.51.100.{n}" for n in range(6)])
    assert spoofing == [200, 200, 200, 429, 429, 429]


async def _hello(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_connections_still_queued_on_the_listening_socket_at_shutdown_are_answered():
    # Closing a listening socket resets the connections the kernel queued on it: their requests,
    # already sent, would be lost (nginx answers such a POST 502). The server takes them first.
    port = free_port()
    limits = HeadLimits(max_bytes=65536, timeout=10)
    protocol = functools.partial(EdgeProtocol, limits=limits)
    config = uvicorn.Config(_hello, host="127.0.0.1", port=port, lifespan="off", log_config=None, http=protocol)
    config.load()
    server = GracefulServer(config, shutdown_timeout=5)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    # No await between these connects and the shutdown: the event loop never gets to accept them.
    queued = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    for sock in queued:
        sock.sendall(_request("GET", "/"))
    await server.shutdown()
    for sock in queued:
        with sock:
            status, headers, body = _read_answer(sock)
            assert (status, headers["connection"], body) == (200, "close", b"hello")
