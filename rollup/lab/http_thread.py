"""An HTTP server of the lab's on a thread of its own: the installer, the package mirror."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HttpThread:
    """`handler` served on address:port (0: any free port) once started, until stopped."""

    def __init__(
        self, handler: Callable[..., BaseHTTPRequestHandler], address: str, port: int, name: str
    ) -> None:
        self._http = ThreadingHTTPServer((address, port), handler)
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        kwargs: dict[str, Any] = {"poll_interval": 0.1}
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs=kwargs, name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._http.server_close()
