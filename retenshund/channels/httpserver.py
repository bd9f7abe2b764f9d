"""The HTTP/1.1 protocol uvicorn runs (``uvicorn.Config(http=...)``): uvicorn's
httptools one, except that a connection upgraded to a WebSocket lets go of its
HTTP half at once.

uvicorn drops the request parser only in ``connection_lost``, which an upgraded
connection never calls on its HTTP protocol (the transport has moved on to the
WebSocket protocol). The parser holds the protocol's callbacks, so protocol and
parser keep each other alive: about 23 objects per upgrade left to the cyclic
garbage collector. While thousands of inbox sockets (re)connect, as after a
deploy, that was a collection every 200 ms of about 10,500 such objects taking
10-16 ms, stalling every request and message behind it. Without the cycle,
reference counting frees them at once; the collections that remain while 5,000
sockets connect find nothing to free and take 6-8 ms (they walk the new
connections' own objects).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]
