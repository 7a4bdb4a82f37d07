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

import contextlib
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
        self._all: list[Any] = []  # every client made, in any thread: closed at the end

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
        unreachable: list[str] = []
        untrusted: str = ""
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
                # Another node's certificate may be the one the CA signed (an ACME
                # certificate on the URL's name does not cover the nodes' addresses).
                untrusted = untrusted or f"{self._where(address)} ({_reason(error)})"
                continue
            except requests.exceptions.RequestException as error:
                self._forget(address)
                if method != "get" and not _never_sent(error):
                    # The node may have taken it (a migration started): sending it to
                    # another node would do it twice. The caller decides.
                    raise TransientDriverError(
                        f"could not {what}: {address} stopped answering ({_reason(error)})",
                        "CONNECTION_LOST",
                    ) from None
                unreachable.append(f"{address} ({_reason(error)})")
                continue
            self.connected = True
            self._prefer(address)
            return answer
        if untrusted and not unreachable:
            raise PoolUnreachable(
                f"Proxmox VE {untrusted}: its TLS certificate is not trusted: set"
                " rollup_ca_file to the CA that signed it (the cluster's"
                " /etc/pve/pve-root-ca.pem for the nodes' own certificates)"
            )
        message = f"could not {what}: no node of the cluster answers: {'; '.join(unreachable)}"
        if not self.connected:
            raise PoolUnreachable(message, transient=True)
        raise TransientDriverError(message, "NO_NODE_ANSWERS")

    def _prefer(self, address: str) -> None:
        """Ask the node that answered first next time: while the URL's node reboots,
        every call would otherwise wait for it to refuse first."""
        with self._lock:
            if self.addresses[0] != address:
                self.addresses.remove(address)
                self.addresses.insert(0, address)

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            session = getattr(client, "_store", {}).get("session")  # its requests.Session
            with contextlib.suppress(Exception):  # closing what may be broken already
                session.close()

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
            with self._lock:
                self._all.append(client)
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
    # 595 and 502-504: pveproxy could not reach the node it forwards to (rebooting,
    # busy); a 500 is the node's own answer and says what is wrong.
    if error.status_code == 595 or error.status_code >= 502:
        return TransientDriverError(f"could not {what}: {reason}", code, (reason,))
    return DriverError(f"could not {what}: {reason}", code, (reason,))


def _never_sent(error: Exception) -> bool:
    """Whether the request cannot have reached the node: it refused or never answered
    the connection."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    text = str(error)
    return "NewConnectionError" in text or "Connection refused" in text


def _reason(error: Exception) -> str:
    text = str(error)
    for marker in ("Connection refused", "timed out", "certificate verify failed", "No route"):
        if marker in text:
            return marker
    return text.splitlines()[0][:120] if text else type(error).__name__
