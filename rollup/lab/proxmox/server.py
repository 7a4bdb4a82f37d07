"""The lab's PVE API over HTTPS: every node answers on its own address, one port.

    server = PveServer.for_lab(pool, directory, port=0, password="...")
    server.start()       # server.url → "https://127.0.10.1:<port>", server.ca → the CA
    proxmoxer.ProxmoxAPI("127.0.10.1", port=..., user="root@pam",
                         token_name="rollup", token_value=server.token, verify_ssl=server.ca)
    server.stop()

Paths are the real API's under /api2/json; replies are `{"data": ...}`; a failure is
the status and reason pveproxy answers, with `errors` for bad parameters. A node that
is down refuses connections (lab/listeners.py), and the others answer for it with 595.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from rollup.lab.listeners import LabHandler, Listeners
from rollup.lab.proxmox.api import Cluster
from rollup.lab.proxmox.auth import Auth
from rollup.lab.proxmox.failure import PveFailure
from rollup.lab.proxmox.tls import Certificates, make_certificates
from rollup.lab.xapi.pool import LabPool

log = logging.getLogger(__name__)
PREFIX = "/api2/json"
USER = "root@pam"
TOKEN_NAME = "rollup"  # the API token the lab makes for rollup: root@pam!rollup
PMXCFS = "pmxcfs"  # the lab dir's /etc/pve, which every node's root links to


class PveServer(Listeners):
    def __init__(
        self,
        pool: LabPool,
        pmxcfs: Path,
        certificates: Certificates,
        port: int = 0,
        password: str = "lab",
        token: str = "",
    ) -> None:
        super().__init__(pool, port, PveHandler, certificates.server_context())
        self.ca = certificates.ca
        self.user = USER
        self.password = password
        self.token = token or secrets.token_hex(16)
        tokens = {f"{USER}!{TOKEN_NAME}": self.token}
        self.cluster = Cluster(pool, pmxcfs, Auth(USER, password, tokens))

    @classmethod
    def for_lab(
        cls, pool: LabPool, directory: Path, port: int, password: str, fresh: bool
    ) -> PveServer:
        """The server of a lab in `directory`: its /etc/pve there (kept when the lab is
        restored, so nodes stay in maintenance) and a certificate for its nodes."""
        pmxcfs = directory / PMXCFS
        if fresh:
            shutil.rmtree(pmxcfs, ignore_errors=True)
        pmxcfs.mkdir(parents=True, exist_ok=True)
        addresses = [host.address for host in pool.hosts.values()]
        certificates = make_certificates(directory / "tls", pool.name, addresses)
        return cls(pool, pmxcfs, certificates, port, password)

    @property
    def url(self) -> str:
        """The first node's API (any node's would do: a cluster has no master)."""
        return self.url_for(next(iter(self.pool.hosts)))

    @property
    def token_id(self) -> str:
        return f"{USER}!{TOKEN_NAME}"

    def up(self, host_ref: str) -> bool:
        # pveproxy answers while the node runs: no master, no toolstack restarts here.
        return self.pool.hosts[host_ref].live and not self.pool.closed

    def start(self) -> None:
        super().start()
        self.cluster.crm.start()

    def stop(self) -> None:
        self.cluster.crm.stop()
        super().stop()

    def __enter__(self) -> PveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PveHandler(LabHandler):
    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        listener = self.server.listener
        if not listener.answering():
            return self.drop()
        server: PveServer = listener.listeners  # type: ignore[assignment]
        url = urlsplit(self.path)
        if not url.path.startswith(PREFIX + "/"):
            return self._answer(PveFailure(404, "Not Found"))
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        params.update(_body(body, self.headers.get("Content-Type", "")))
        try:
            path = unquote(url.path[len(PREFIX) :])
            data = server.cluster.call(method, path, params, self.headers, listener.host_ref)
        except PveFailure as failure:
            return self._answer(failure)
        except Exception as error:  # a lab bug answers 500, as pveproxy does, and is logged
            log.exception("lab PVE API: %s %s", method, url.path)
            return self._answer(PveFailure(500, f"lab internal error: {error!r}"))
        if not listener.answering():  # the node went down while the call ran
            return self.drop()
        return self.reply(json.dumps({"data": data}).encode(), "application/json;charset=UTF-8")

    def _answer(self, failure: PveFailure) -> None:
        found: dict[str, Any] = {"data": None}
        if failure.errors:
            found["errors"] = failure.errors
        payload = json.dumps(found).encode()
        self.send_response(failure.status, failure.message)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _body(body: bytes, content_type: str) -> dict[str, str]:
    if not body:
        return {}
    text = body.decode("utf-8", "replace")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return {str(k): _text(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
