"""One libvirt host as the driver reaches it: its libvirtd connection and its SSH side.

libvirt has no pool: every host is its own daemon, named in the inventory by
`rollup_libvirt_uri` (default `qemu+ssh://<user>@<ansible_host>/system`, with the
inventory's port and key). A link keeps one connection open and reopens it after the
daemon went away (a reboot); long calls (a migration) get a connection of their own.

libvirt errors never leave this module as `libvirtError`: `translate` turns them into
rollup's exceptions, keeping libvirt's error code name (e.g. VIR_ERR_OPERATION_INVALID)
and message. Errors of the transport (daemon gone, connection refused or closed) are
transient: worth waiting for while a host reboots.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from rollup.drivers import InventoryHost
from rollup.errors import BadInput, DriverError, TransientDriverError
from rollup.remote import RemoteHost

log = logging.getLogger("rollup.drivers.libvirt")

T = TypeVar("T")
KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes on an idle connection
KEEPALIVE_COUNT = 3  # unanswered probes before libvirt declares the peer dead

_event_loop_lock = threading.Lock()
_event_loop_started = False


def binding() -> Any:
    """The libvirt module, or BadInput naming how to install it."""
    try:
        import libvirt
    except ImportError:
        raise BadInput(
            "a libvirt pool needs libvirt-python: apt-get install -y libvirt-dev &&"
            " pip install libvirt-python==$(pkg-config --modversion libvirt)"
        ) from None
    _start_event_loop(libvirt)
    return libvirt


def _start_event_loop(libvirt: Any) -> None:
    """libvirt's keepalive (which notices a host that vanished) needs an event loop."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(lambda _context, _error: None, None)  # ours are raised
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="rollup-libvirt-events", daemon=True).start()
        _event_loop_started = True


def default_uri(remote: RemoteHost) -> str:
    """qemu+ssh to the host the way Ansible reaches it: same user, port and key."""
    port = f":{remote.port}" if remote.port != 22 else ""
    query = []
    if remote.key_file:
        query.append(f"keyfile={quote(remote.key_file, safe='/')}")
    if not remote.check_host_keys:
        query.append("no_verify=1")
    suffix = "?" + "&".join(query) if query else ""
    return f"qemu+ssh://{remote.user}@{remote.address}{port}/system{suffix}"


def code_name(libvirt: Any, code: int) -> str:
    for name in dir(libvirt):
        if name.startswith("VIR_ERR_") and getattr(libvirt, name) == code:
            return name
    return f"VIR_ERR_{code}"


def translate(error: Exception, what: str) -> DriverError:
    """A libvirtError as rollup's exception: "could not <what>: <libvirt's message>"."""
    libvirt = binding()
    code = error.get_error_code() if isinstance(error, libvirt.libvirtError) else None
    if code is None:
        return DriverError(f"could not {what}: {error}")
    message = error.get_error_message() or str(error)
    name = code_name(libvirt, code)
    transport = error.get_error_domain() in (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE)
    lost = code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_OPERATION_TIMEOUT)
    kind = TransientDriverError if transport or lost else DriverError
    return kind(f"could not {what}: {message}", name, (message,))


class HostLink:
    """How the driver reaches one inventory host: libvirt URI, SSH, its settings."""

    def __init__(self, host: InventoryHost) -> None:
        self.name = host.pool_host_name or host.name
        self.address = host.address or host.remote.address
        self.remote = host.remote
        uri = host.variables.get("rollup_libvirt_uri")
        self.uri = str(uri) if uri else default_uri(host.remote)
        self.block_migration = bool(host.variables.get("rollup_libvirt_block_migration"))
        self._conn: Any = None
        self._lock = threading.Lock()

    def open(self) -> Any:
        """A new connection of its own (the caller closes it)."""
        libvirt = binding()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as error:
            raise translate(error, f"connect to host {self.name} ({self.uri})") from None
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            log.debug("host %s: no keepalive on %s", self.name, self.uri)
        return conn

    def conn(self) -> Any:
        """The shared connection, reopened if the daemon went away since."""
        with self._lock:
            if self._conn is not None and not self._alive(self._conn):
                self._drop()
            if self._conn is None:
                self._conn = self.open()
            return self._conn

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """`fn(connection)` with libvirt's errors translated.

        A connection the daemon dropped (it restarted: the host rebooted) is replaced
        and the call made once more on the new one; a second failure is the answer.
        """
        libvirt = binding()
        for attempt in (1, 2):
            conn = self.conn()
            try:
                return fn(conn)
            except libvirt.libvirtError as error:
                translated = translate(error, what)
                if not isinstance(translated, TransientDriverError):
                    raise translated from None
                with self._lock:
                    if self._conn is conn:
                        self._drop()
                if attempt == 2:
                    raise translated from None
                log.debug("host %s: connection lost (%s); reconnecting", self.name, error)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _alive(self, conn: Any) -> bool:
        try:
            return bool(conn.isAlive())
        except Exception:
            return False

    def _drop(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.close()
        except Exception as error:  # a connection that already broke may refuse to close
            log.debug("host %s: closing a broken connection: %s", self.name, error)
        self._conn = None
