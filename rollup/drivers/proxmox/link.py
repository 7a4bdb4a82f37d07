"""The cluster's API through proxmoxer: any node answers, so a node that goes away is
not the end of the conversation.

A Proxmox cluster has no master: every node serves the whole API. rollup talks to the
node of `rollup_api_url`; once it knows the cluster's nodes (/cluster/status) a call
that cannot reach one node goes to the next, as a node reboots in its turn. One
proxmoxer client per thread and node (requests' sessions are not shared across threads).

Credentials: `rollup_api_user` with `!` is an API token (`root@pam!rollup`, its secret
the password), as Proxmox admins give automation; else a user and password (a ticket,
renewed by proxmoxer). TLS: `rollup_ca_file` (the cluster's /etc/pve/pve-root-ca.pem)
verifies every node; `rollup_verify_tls: false` trusts any certificate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import proxmoxer
import requests
from proxmoxer.core import AuthenticationError, ResourceException

from rollup.drivers import Connection
from rollup.errors import BadInput, DriverError, PoolUnreachable, TransientDriverError

log = logging.getLogger("rollup.drivers.proxmox")
PORT = 8006
TIMEOUT = 30.0  # seconds for one call: a busy node's pveproxy can be slow


class ApiLink:
    def __init__(self, connection: Connection, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(connection.url if "//" in connection.url else f"//{connection.url}")
        if parts.scheme not in ("", "https") or not parts.hostname:
            raise BadInput(
                f"rollup_api_url {connection.url!r}: a Proxmox VE API is"
                " https://NODE:8006 (any node of the cluster)"
            )
        self.connection = connection
        self.port = parts.port or PORT
        self.addresses: list[str] = [parts.hostname]
        self.timeout = timeout
        self.verify: bool | str = connection.ca_file or connection.verify_tls
        self._local = threading.local()
        self._lock = threading.Lock()
        self.connected = False  # once a call got an answer: later failures are transient

    def learn(self, addresses: Sequence[str]) -> None:
        """Other nodes to ask when ours does not answer."""
        with self._lock:
            for address in addresses:
                if address and address not in self.addresses:
                    self.addresses.append(address)

    def get(self, what: str, path: str, **params: Any) -> Any:
        return self.call(what, "get", path, params)

    def post(self, what: str, path: str, **params: Any) -> Any:
        return self.call(what, "post", path, params)

    def put(self, what: str, path: str, **params: Any) -> Any:
        return self.call(what, "put", path, params)

    def call(self, what: str, method: str, path: str, params: dict[str, Any]) -> Any:
        with self._lock:
            addresses = list(self.addresses)
        unreachable = []
        for address in addresses:
            try:
                api = self._client(address)
                answer = getattr(api(path), method)(**params)
            except ResourceException as error:
                if error.status_code == 401:  # a wrong token, or a ticket that expired
                    raise self._refused(address) from None
                raise _failure(what, error) from None
            except AuthenticationError:
                raise self._refused(address) from None
            except requests.exceptions.SSLError as error:
                raise PoolUnreachable(
                    f"Proxmox VE {self._where(address)}: its TLS certificate is not trusted"
                    f" ({_reason(error)}): set rollup_ca_file to the cluster's CA"
                    " (/etc/pve/pve-root-ca.pem on any node)"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
                self._forget(address)
                unreachable.append(f"{address} ({_reason(error)})")
                continue
            self.connected = True
            return answer
        message = f"could not {what}: no node of the cluster answers: {'; '.join(unreachable)}"
        if not self.connected:
            raise PoolUnreachable(message, transient=True)
        raise TransientDriverError(message, "NO_NODE_ANSWERS")

    def _client(self, address: str) -> Any:
        clients: dict[str, Any] = self._local.__dict__.setdefault("clients", {})
        client = clients.get(address)
        if client is None:
            user, _, token = self.connection.user.partition("!")
            secret = {"token_name": token, "token_value": self.connection.password}
            client = proxmoxer.ProxmoxAPI(
                address,
                port=self.port,
                user=user,
                **(secret if token else {"password": self.connection.password}),
                verify_ssl=self.verify,
                timeout=self.timeout,
            )
            clients[address] = client
        return client

    def _forget(self, address: str) -> None:
        # A node that went away logs in afresh when it is back (its tickets are fine, but
        # its connection pool holds dead sockets).
        self._local.__dict__.setdefault("clients", {}).pop(address, None)

    def _refused(self, address: str) -> PoolUnreachable:
        return PoolUnreachable(
            f"Proxmox VE {self._where(address)} refused the credentials of"
            f" {self.connection.user}: check rollup_api_user / rollup_api_password"
            " (an API token: user@realm!tokenid and its secret)"
        )

    def _where(self, address: str) -> str:
        return f"https://{address}:{self.port}"


def _failure(what: str, error: ResourceException) -> DriverError:
    reason = str(error.content or error.status_message).strip()
    if error.errors:
        reason += f" ({'; '.join(f'{k}: {v}' for k, v in dict(error.errors).items())})"
    code = f"HTTP_{error.status_code}"
    if error.status_code == 595 or error.status_code >= 502:
        return TransientDriverError(f"could not {what}: {reason}", code, (reason,))
    return DriverError(f"could not {what}: {reason}", code, (reason,))


def _reason(error: Exception) -> str:
    text = str(error)
    for marker in ("Connection refused", "timed out", "certificate verify failed", "No route"):
        if marker in text:
            return marker
    return text.splitlines()[0][:120] if text else type(error).__name__
