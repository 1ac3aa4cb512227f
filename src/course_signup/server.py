"""The HTTP server of `course-signup serve`: uvicorn with limits on request heads and a graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from course_signup.api.envelope import envelope_bytes
from course_signup.settings import Settings

log = logging.getLogger("course_signup")

# A kept-alive connection idle this long is closed. A proxy that reuses connections must drop an
# idle one sooner (nginx: `keepalive_timeout` in its upstream block), or it can send a request on a
# connection this side is closing at that moment, and answer that request 502.
KEEP_ALIVE_SECONDS = 5
# Of the shutdown timeout, the part left for the lifespan (closing the pools) after the answers.
POOL_CLOSE_SECONDS = 1.0


class HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a request that was refused for its head's size."""


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    timeout: float


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline on each request head, and a drain.

    httptools buffers a header of any size and uvicorn waits for a head as long as the client
    likes, so one 32 MB header or a client dribbling its headers byte by byte held memory or a
    connection indefinitely. Bytes are counted as they arrive, before the parser buffers them.
    """

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.in_head = True  # the bytes that arrive next belong to a request head
        self.head_bytes = 0
        self.head_deadline: asyncio.TimerHandle | None = None
        self.draining = False
        self.head_size = 0  # the request line's target and the headers, as parsed
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_bytes > self.limits.max_bytes:
            self._refuse(431, f"The request's headers are larger than {self.limits.max_bytes} bytes.")
        elif self.head_bytes and self.head_deadline is None:
            self._arm_head_deadline()

    def on_message_begin(self) -> None:
        self.head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head, self.head_bytes = False, 0
        self._disarm_head_deadline()
        # A head that arrived in one read is only measured here, once parsed: refuse it before the
        # app sees it, and stop the parser (its error answer is not sent: this one was).
        if self.head_size > self.limits.max_bytes:
            self.refused = True
            self._refuse(431, f"The request's headers are larger than {self.limits.max_bytes} bytes.")
            raise HeadTooLargeError()
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def send_400_response(self, msg: str) -> None:
        if not self.refused:
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        self.in_head = True
        super().on_message_complete()

    def shutdown(self) -> None:
        """Close after the answer in flight, or after the next one; an idle connection is left open.

        uvicorn closes an idle connection at once, but the client may be sending a request on it at
        that moment: nginx then answers a POST 502 rather than send it twice. So an idle connection
        stays until the client closes it, a request arrives (answered with `Connection: close`), or
        its keep-alive timeout or head deadline runs out.
        """
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def _arm_head_deadline(self) -> None:
        self.head_deadline = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        if self.head_bytes == 0 and self.cycle is None:
            self.transport.close()  # opened and never used
        else:
            self._refuse(408, f"The request's headers did not arrive within {self.limits.timeout:g} seconds.")

    def _refuse(self, status: int, sentence: str) -> None:
        """Answer `status` in the envelope and close; after the answer in flight if there is one."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.flow.pause_reading()
            self.cycle.keep_alive = False
            return
        body = envelope_bytes(status, sentence)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, ending a SIGTERM with exit status 0 within the shutdown timeout.

    On SIGTERM it first serves the connections the kernel has already accepted and then closes
    the listening socket (new connections are refused, so a proxy tries another server), answers
    the requests in flight, and closes the pools.
    """

    def __init__(self, config: uvicorn.Config, shutdown_timeout: float) -> None:
        super().__init__(config)
        self.shutdown_timeout = shutdown_timeout
        self.deadline: float | None = None
        self.clean = True

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.shutdown_timeout
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's raises the signal again once shut down, so the process would end killed by it
        # (status 143) even after a complete graceful shutdown.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = self.deadline or time.monotonic() + self.shutdown_timeout
        await self._serve_accepted()
        try:
            await asyncio.wait_for(super().shutdown(sockets), timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            self.clean = False
            log.error("shutdown did not finish within %g s; exiting anyway", self.shutdown_timeout)

    async def _serve_accepted(self) -> None:
        """Take every connection waiting in the listening socket's queue, then close the socket.

        Closing a listening socket resets the connections the kernel completed but nobody accepted
        yet; their client may already have sent a request, which nginx does not retry if it is a POST.
        Between the last accept and the close there is no await, so nothing else runs in between.
        """
        loop = asyncio.get_running_loop()
        waiting: list[socket.socket] = []
        for server in self.servers:
            listeners = [socket.socket(fileno=os.dup(listener.fileno())) for listener in server.sockets]
            for listener in listeners:
                listener.setblocking(False)
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    while True:
                        waiting.append(listener.accept()[0])
            server.close()
            for listener in listeners:
                listener.close()

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )
            if isinstance(made, EdgeProtocol):
                made.draining = True  # its answer closes the connection, as on every connection from now on
            return made

        for connection in waiting:
            with contextlib.suppress(OSError):
                await loop.connect_accepted_socket(protocol, connection)


class Workers(Multiprocess):
    """uvicorn's supervisor of several worker processes, closing its copy of the listening socket first.

    The parent holds the listening socket as well as the workers; while it stays open the kernel
    keeps accepting connections that no worker will read, and resets them when the parent exits.
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run(settings: Settings) -> None:
    """Serve the app until SIGTERM or SIGINT; then shut down gracefully and return (exit status 0)."""
    limits = HeadLimits(settings.max_header_bytes, settings.client_header_timeout_seconds)
    # Answers in flight get the shutdown timeout but the time left for closing the pools.
    answers_timeout = max(settings.shutdown_timeout - POOL_CLOSE_SECONDS, settings.shutdown_timeout / 2)
    config = uvicorn.Config(
        "course_signup.app:factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=functools.partial(EdgeProtocol, limits=limits),  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=answers_timeout,  # type: ignore[arg-type]
    )
    if settings.workers > 1:
        Workers(config, sockets=[config.bind_socket()]).run()
        return
    server = GracefulServer(config, settings.shutdown_timeout)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    if not server.clean:
        sys.exit(1)
