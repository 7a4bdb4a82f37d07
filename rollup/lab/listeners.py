"""One HTTP listener per lab host address, opened and closed as the host comes and goes.

A lab pool's API answers on every host's own address and one port, as a real pool's
hosts each answer on theirs (XenAPI: lab/xapi/server.py; Proxmox VE: lab/proxmox/
server.py). A host's listener is closed while the host is down (connection refused, open
connections cut), so a client sees what it would see of a real host that went away.
With a TLS context the listener speaks HTTPS; the handshake happens in the connection's
own thread, so one slow client never holds up the others.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

log = logging.getLogger(__name__)
HANDSHAKE_SECONDS = 10.0


class Listeners:
    """The listeners of a pool's hosts, kept in step with the pool by `sync`."""

    def __init__(
        self,
        pool: LabPool,
        port: int,
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = pool
        self.port = port
        self.handler = handler
        self.context = context
        self._listeners: dict[str, HostListener] = {}
        self._sync_lock = threading.Lock()
        self._stopped = True

    def up(self, host_ref: str) -> bool:
        """Whether the host's API answers now."""
        return self.pool.api_up(host_ref)

    def url_for(self, host_ref: str) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{self.pool.hosts[host_ref].address}:{self.port}"

    def start(self) -> None:
        if self.port == 0:
            self.port = free_port([h.address for h in self.pool.hosts.values()])
        self._stopped = False
        for ref, host in self.pool.hosts.items():
            self._listeners[ref] = HostListener(self, ref, host.address, self.port)
        self.pool.watch(self.sync)
        self.sync()

    def stop(self) -> None:
        with self._sync_lock:
            self._stopped = True
            for listener in self._listeners.values():
                listener.close()

    def sync(self) -> None:
        """Open or close each host's listener to match the pool (called on every change)."""
        with self._sync_lock:
            if self._stopped:
                return
            for ref, listener in self._listeners.items():
                if self.up(ref):
                    listener.open()
                else:
                    listener.close()


class LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    listener: HostListener

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        context = self.listener.listeners.context
        if context is not None:
            connection = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address


class HostListener:
    """One host's API socket, opened and closed as the host comes and goes."""

    def __init__(self, listeners: Listeners, host_ref: str, address: str, port: int) -> None:
        self.listeners = listeners
        self.host_ref = host_ref
        self.address = address
        self.port = port
        self._http: LabHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._http is not None

    def open(self) -> None:
        if self._http is not None:
            return
        http = LabHTTPServer((self.address, self.port), self.listeners.handler)
        http.listener = self
        self._http = http
        threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"lab-api-{self.address}",
        ).start()  # fmt: skip

    def close(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        with self._lock:
            # A host that goes down also cuts its open keep-alive connections.
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def track(self, connection: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def answering(self) -> bool:
        return self._http is not None and self.listeners.up(self.host_ref)


class LabHandler(BaseHTTPRequestHandler):
    """What every lab API handler does: keep-alive HTTP/1.1, one write per reply, its
    connection tracked so a host going down cuts it, TLS handshake in its own thread."""

    protocol_version = "HTTP/1.1"
    # One write per reply and no Nagle: otherwise delayed ACKs add ~40 ms to every call.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: LabHTTPServer

    def setup(self) -> None:
        self.shaken = True
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(HANDSHAKE_SECONDS)
                self.request.do_handshake()
                self.request.settimeout(None)
            except (OSError, ssl.SSLError) as error:
                # A client that does not trust the lab's CA hangs up here: its business.
                log.debug("TLS handshake with %s failed: %s", self.client_address, error)
                self.shaken = False
        super().setup()
        self.server.listener.track(self.connection, True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle(self) -> None:
        # A client that gives up mid-handshake or mid-request is its own business.
        if not self.shaken:
            return
        with contextlib.suppress(OSError, ssl.SSLError):
            super().handle()

    def finish(self) -> None:
        self.server.listener.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def reply(self, payload: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def free_port(addresses: list[str], attempts: int = 50) -> int:
    """A TCP port free on every address (each host listens on the same port)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        if all(_bindable(address, port) for address in addresses):
            return port
    raise OSError(f"no port free on all of {addresses[0]}..{addresses[-1]}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True
