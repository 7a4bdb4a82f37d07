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
import json
import xmlrpc.client
from urllib.parse import parse_qs, urlsplit

from rollup.lab import releases
from rollup.lab.listeners import LabHandler, Listeners
from rollup.lab.xapi import updates, wire
from rollup.lab.xapi.calls import Api
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.pool import LabPool

XMLRPC_PATHS = ("/", "/xmlrpc", "/RPC2")


class XapiServer(Listeners):
    def __init__(
        self, pool: LabPool, port: int = 0, user: str = "root", password: str = "lab"
    ) -> None:
        super().__init__(pool, port, XapiHandler)
        self.api = Api(pool, user, password)

    @property
    def url(self) -> str:
        """The master's API URL (the one to give clients)."""
        return self.url_for(self.pool.master)

    def __enter__(self) -> XapiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class XapiHandler(LabHandler):
    def _api(self) -> Api:
        server: XapiServer = self.server.listener.listeners  # type: ignore[assignment]
        return server.api

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
            return self.drop()
        try:
            params, method = xmlrpc.client.loads(body)
        except Exception:
            self.send_error(400, "not an XML-RPC request")
            return None
        result = self._api().call(method or "", params, listener.host_ref)
        if not listener.answering():  # went down while the call waited (event.from)
            return self.drop()
        return self._reply(wire.response(result))

    def do_GET(self) -> None:
        """XenServer 8's GET /updates (the master only), with a session or Basic auth."""
        listener = self.server.listener
        url = urlsplit(self.path)
        if url.path not in ("/updates", "/metrics"):
            self.send_error(404)
            return None
        if not listener.answering():
            return self.drop()
        if url.path == "/metrics":
            text = metrics(self._api().pool, listener.host_ref)
            return self._reply(text.encode(), "text/plain; version=0.0.4")
        pool = self._api().pool
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
        query = parse_qs(url.query)
        host_refs = None
        if "host_refs" in query:
            # xapi_pool.ml get_updates_handler: refs split on ';', any bad one is a 400.
            host_refs = [ref for ref in query["host_refs"][0].split(";")]
            if not host_refs or any(ref not in pool.hosts for ref in host_refs):
                self.send_error(400, "Invalid 'host_refs' in query")
                return None
        try:
            payload = json.dumps(updates.updates_json(pool, host_refs)).encode()
        except XapiFailure as failure:
            if failure.code != "NO_REPOSITORY_ENABLED":
                raise
            self.send_error(404, "NO_REPOSITORY_ENABLED")
            return None
        return self._reply(payload, "application/json")

    def _authorised(self, session: str) -> bool:
        api = self._api()
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
        self.reply(payload, content_type)


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
