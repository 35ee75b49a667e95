"""uvicorn's httptools protocol, handing request body chunks to the app uncopied.

Since 0.42, uvicorn gathers each connection's body chunks in a ``bytearray``
and copies it into ``bytes`` for every ASGI ``http.request`` message: two
copies of every uploaded byte on the event loop, which also receives
everyone else's uploads. When nothing is waiting to be read, this hands the
chunk httptools made over as it is (``bytes(b)`` of a ``bytes`` object is
that object); chunks that arrive while one waits are joined as before, and
reading still pauses above uvicorn's high-water mark.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class UncopiedBodyProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not cycle.body:
            # The chunk becomes the pending body; uvicorn's own handling (checks,
            # flow control, wake-up) then runs with nothing more to append.
            cycle.body = body  # type: ignore[assignment]
            body = b""
        super().on_body(body)
