"""The floor for reads: a plain ASGI app that answers every request with a small envelope.

Run under the same server, options and worker count as the service, e.g.
`uvicorn --app-dir bench hello:app --workers 2`; no framework, no middleware, no database.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"code":0,"message":"ok","data":"hello"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
