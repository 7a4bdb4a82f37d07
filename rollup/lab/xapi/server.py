"""A XenAPI-compatible XML-RPC server over a LabPool: one listener per host address.

    pool = LabPool.generate(hosts=3, vms=12, seed=1, address_prefix="127.0.10.")
    server = XapiServer(pool, port=0, user="root", password="lab")
    server.start()                  # server.url → "http://127.0.10.1:<port>" (the master)
    session = XenAPI.Session(server.url)
    ...
    server.stop(); pool.close()

Every host serves on its own `address` and the same port: the master's answers the pool,
the others `HOST_IS_SLAVE [master address]`. A host's listener is closed (connection
refused, open connections cut) while the host is down, and the master's during a
`master_api_drop` fault. Paths `/` and `/xmlrpc` serve XML-RPC; `/jsonrpc` answers 200
with `text/xml` so Xen Orchestra's client falls back to XML-RPC. Replies are compact,
Content-Type exactly `text/xml`. A XenServer 8 master also answers GET /updates (JSON,
lab/xapi/updates.py) to a client with a session (`?session_id=`) or Basic auth; every
host answers GET /metrics (Prometheus' text format) for monitoring to scrape.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollup.lab import releases
from rollup.lab.xapi import updates, wire
from rollup.lab.xapi.calls import Api
from rollup.lab.xapi.pool import LabPool

log = logging.getLogger(__name__)
XMLRPC_PATHS = ("/", "/xmlrpc", "/RPC2")


class XapiServer:
    def __init__(
        self, pool: LabPool, port: int = 0, user: str = "root", password: str = "lab"
    ) -> None:
        self.pool = pool
        self.api = Api(pool, user, password)
        self.port = port
        self._listeners: dict[str, HostListener] = {}
        self._sync_lock = threading.Lock()
        self._stopped = True

    @property
    def url(self) -> str:
        """The master's API URL (the one to give clients)."""
        return self.url_for(self.pool.master)

    def url_for(self, host_ref: str) -> str:
        return f"http://{self.pool.hosts[host_ref].address}:{self.port}"

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
                if self.pool.api_up(ref):
                    listener.open()
                else:
                    listener.close()

    def __enter__(self) -> XapiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    listener: HostListener


class HostListener:
    """One host's API socket, opened and closed as the host comes and goes."""

    def __init__(self, server: XapiServer, host_ref: str, address: str, port: int) -> None:
        self.server = server
        self.host_ref = host_ref
        self.address = address
        self.port = port
        self._http: _HTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._http is not None

    def open(self) -> None:
        if self._http is not None:
            return
        http = _HTTPServer((self.address, self.port), XapiHandler)
        http.listener = self
        self._http = http
        threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"xapi-{self.address}",
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
        return self._http is not None and self.server.pool.api_up(self.host_ref)


class XapiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per reply and no Nagle: otherwise delayed ACKs add ~40 ms to every call.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.listener.track(self.connection, True)

    def finish(self) -> None:
        self.server.listener.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        listener = self.server.listener
        path = self.path.split("?", 1)[0]
        if path == "/jsonrpc":
            # Xen Orchestra tries JSON-RPC first; a non-JSON 200 makes it use XML-RPC.
            return self._reply(wire.response(wire.failure(["MESSAGE_METHOD_UNKNOWN", "jsonrpc"])))
        if path not in XMLRPC_PATHS:
            self.send_error(404)
            return None
        if not listener.answering():
            return self._drop()
        try:
            params, method = xmlrpc.client.loads(body)
        except Exception:
            self.send_error(400, "not an XML-RPC request")
            return None
        result = listener.server.api.call(method or "", params, listener.host_ref)
        if not listener.answering():  # went down while the call waited (event.from)
            return self._drop()
        return self._reply(wire.response(result))

    def do_GET(self) -> None:
        """XenServer 8's GET /updates (the master only), with a session or Basic auth."""
        listener = self.server.listener
        url = urlsplit(self.path)
        if url.path not in ("/updates", "/metrics"):
            self.send_error(404)
            return None
        if not listener.answering():
            return self._drop()
        if url.path == "/metrics":
            text = metrics(listener.server.pool, listener.host_ref)
            return self._reply(text.encode(), "text/plain; version=0.0.4")
        pool = listener.server.pool
        if listener.host_ref != pool.master:
            self.send_error(503, "not the pool's master")
            return None
        if not self._authorised(parse_qs(url.query).get("session_id", [""])[0]):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="xapi"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not releases.has_update_api(pool.layout.flavor, pool.hosts[pool.master].version):
            self.send_error(404, "this pool has no update repository")
            return None
        payload = json.dumps(updates.updates_json(pool)).encode()
        return self._reply(payload, "application/json")

    def _authorised(self, session: str) -> bool:
        api = self.server.listener.server.api
        if session:
            return session in api.pool.sessions
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) == (api.user, api.password)

    def _reply(self, payload: bytes, content_type: str = "text/xml") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
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


def metrics(pool: LabPool, host_ref: str) -> str:
    """A host's GET /metrics, in Prometheus' text format (what node_exporter-like agents
    give a monitoring system to scrape and alert on)."""
    with pool.lock:
        host = pool.hosts[host_ref]
        running = len([vm for vm in pool.resident_vms(host_ref) if not vm.is_control_domain])
        alarm = pool.faults.for_host(host.name, host.uuid).alarm
        values = {
            "rollup_lab_host_up": int(host.live),
            "rollup_lab_host_enabled": int(host.enabled),
            "rollup_lab_vms_running": running,
            "rollup_lab_host_alarm": int(alarm),
        }
    lines = []
    for name, value in values.items():
        lines += [f"# TYPE {name} gauge", f'{name}{{host="{host.name}"}} {value}']
    return "\n".join(lines) + "\n"
