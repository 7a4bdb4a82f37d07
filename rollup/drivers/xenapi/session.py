"""A logged-in XenAPI session to a pool's master that survives the master going away.

Responsibilities, all in one place so the driver only says what to call:
- building `XenAPI.Session` with a socket timeout and the TLS policy of the Connection;
- logging in, and following `HOST_IS_SLAVE [master]` to the master on the same scheme/port;
- retrying transient failures (connection lost, session invalid, pool busy or booting)
  with exponential backoff up to a bounded time, then raising TransientDriverError;
- translating every other `XenAPI.Failure` into DriverError(message, code, params).

XML-RPC connections are not thread-safe and the rollout calls the driver from several
worker threads (parallel migrations), so each thread gets its own session.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from rollup.drivers import Connection
from rollup.drivers.xenapi.failures import TRANSIENT_CODES, describe, split
from rollup.errors import BadInput, DriverError, PoolUnreachable, TransientDriverError

log = logging.getLogger("rollup.drivers.xenapi")

API_VERSION = "2.20"
ORIGINATOR = "rollup"
MAX_REDIRECTS = 3  # HOST_IS_SLAVE hops before we call the pool confused

# What a dropped or refused connection looks like from xmlrpc.client.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
)


@dataclass(frozen=True)
class Timing:
    """Every wait the driver makes, so tests against a fast lab can shorten them."""

    call_timeout: float = 60.0  # socket timeout of one call (event.from adds its own wait)
    retry_seconds: float = 120.0  # how long a call keeps retrying transient failures
    backoff_start: float = 0.5
    backoff_cap: float = 5.0
    event_timeout: float = 30.0  # how long one event.from call waits for changes
    poll_interval: float = 2.0  # task polling when event.from is not available
    shutdown_timeout: float = 120.0  # clean shutdown before a hard one
    enable_retry_seconds: float = 300.0  # HOST_STILL_BOOTING after a reboot can last
    parallel_reads: int = 8  # hosts asked at once for the VMs preventing their evacuation
    # How long reading pending updates waits out a busy updater plugin: an install holds
    # its lock for minutes (installs themselves wait within rollup_install_timeout).
    busy_seconds: float = 1800.0
    busy_delay: float = 2.0  # between those retries (Xen Orchestra waits 2 s)
    # How long the pool may stay in rolling-upgrade mode once its versions agree (xapi's
    # db_gc looks every 30 s).
    rolling_upgrade_settle_seconds: float = 90.0

    def backoff(self) -> Iterator[float]:
        delay = self.backoff_start
        while True:
            yield delay
            delay = min(delay * 2, self.backoff_cap)


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


def tls_context(connection: Connection) -> ssl.SSLContext:
    if not connection.verify_tls:
        # The inventory opted out (rollup_verify_tls: false), typically self-signed certs.
        return ssl._create_unverified_context()
    try:
        return ssl.create_default_context(cafile=connection.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(
            f"rollup_ca_file {connection.ca_file} cannot be used ({exc.strerror or exc}): "
            "point it at the pool's CA certificate in PEM"
        ) from None


def with_address(url: str, address: str) -> str:
    """`url` pointed at another host, keeping scheme, port and path (HOST_IS_SLAVE)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, parts.fragment))


class Session:
    """The driver's way to call the pool: `call("what for messages", "class.method", ...)`."""

    def __init__(self, connection: Connection, timing: Timing) -> None:
        self.connection = connection
        self.timing = timing
        self.url = connection.url  # the master's, once HOST_IS_SLAVE has been followed
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[XenAPI.Session] = []
        # Bumped whenever a session is dropped or renewed (connection lost, master changed,
        # xapi restarted): what was read through the old one, an event token included, may
        # belong to a xapi that went.
        self.resets = 0

    def connect(self) -> None:
        """First login: fail fast with PoolUnreachable, the fix named, nothing retried."""
        if self.url.startswith("https:") and not self.connection.verify_tls:
            log.warning(
                "TLS verification is off for %s (rollup_verify_tls: false): anyone on the way"
                " can pose as the pool and take its password; set rollup_ca_file instead",
                self.url,
            )
        try:
            self._session()
        except (*CONNECTION_ERRORS, xmlrpc.client.Fault) as exc:
            raise self._unreachable(exc) from None
        except DriverError as exc:
            raise PoolUnreachable(f"pool {self.url} answered the login with {exc}") from None

    def call(
        self,
        what: str,
        method: str,
        *args: Any,
        retry_seconds: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Call `method` with `args`, retrying transient failures for `retry_seconds`.

        `what` says what the call does to what ("disable host h2"), for messages. A call
        that is not `idempotent` (reboot, migrate) is resent only when the connection was
        refused, never when it broke after the request may have reached the pool.
        """
        budget = self.timing.retry_seconds if retry_seconds is None else retry_seconds
        deadline = time.monotonic() + budget
        delays = self.timing.backoff()
        redirects = 0
        while True:
            try:
                return self.call_once(method, *args)
            except XenAPI.Failure as failure:
                code, params = split(failure.details)
                if code == "HOST_IS_SLAVE" and params and redirects < MAX_REDIRECTS:
                    redirects += 1
                    self._follow(params[0])
                    continue
                if code not in TRANSIENT_CODES:
                    raise DriverError(
                        f"could not {what}: {describe(code, params)}", code, params
                    ) from None
                error = TransientDriverError(
                    f"could not {what}: {describe(code, params)}", code, params
                )
            except xmlrpc.client.Fault as fault:
                # The client's "Tried 3 times to get a valid session" and friends.
                self._drop()
                error = TransientDriverError(f"could not {what}: {fault.faultString}")
            except ssl.SSLCertVerificationError as exc:
                raise self._unreachable(exc) from None
            except CONNECTION_ERRORS as exc:
                self._drop()
                error = TransientDriverError(
                    f"could not {what}: lost the connection to the pool at {self.url}: {exc}"
                )
                if not idempotent and not isinstance(exc, ConnectionRefusedError):
                    raise error from None
            delay = next(delays)
            if time.monotonic() + delay > deadline:
                raise error
            log.debug("%s: %s; retrying in %.1fs", what, error, delay)
            time.sleep(delay)

    def get_json(
        self,
        what: str,
        path: str,
        retry_seconds: float | None = None,
        socket_timeout: float | None = None,
    ) -> Any:
        """GET `path` from the master over HTTP(S) with the pool's credentials (Basic auth,
        as Xen Orchestra does), retrying a lost connection like a call; `socket_timeout`
        for an answer the pool may hold back for minutes."""
        budget = self.timing.retry_seconds if retry_seconds is None else retry_seconds
        deadline = time.monotonic() + budget
        delays = self.timing.backoff()
        while True:
            url = self.url.rstrip("/") + path
            request = urllib.request.Request(url, headers={"Authorization": self._basic()})
            context = tls_context(self.connection) if url.startswith("https:") else None
            try:
                with urllib.request.urlopen(
                    request, timeout=socket_timeout or self.timing.call_timeout, context=context
                ) as reply:
                    return json.loads(reply.read())
            except urllib.error.HTTPError as exc:
                raise DriverError(
                    f"could not {what}: {url.split('?')[0]} answered {exc.code} {exc.reason}",
                    f"HTTP_{exc.code}",
                ) from None
            except ValueError as exc:
                raise DriverError(f"could not {what}: {url} sent no JSON ({exc})") from None
            except (*CONNECTION_ERRORS, urllib.error.URLError) as exc:
                error = TransientDriverError(
                    f"could not {what}: lost the connection to the pool at {self.url}: {exc}"
                )
            delay = next(delays)
            if time.monotonic() + delay > deadline:
                raise error
            time.sleep(delay)

    def _basic(self) -> str:
        pair = f"{self.connection.user}:{self.connection.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def call_once(self, method: str, *args: Any) -> Any:
        """One attempt: raises XenAPI.Failure or a connection error untranslated."""
        session = self._session()
        before = getattr(session, "_session", None)
        try:
            return getattr(session.xenapi, method)(*args)
        finally:
            # The client logs in again by itself on SESSION_INVALID (xapi restarted).
            if getattr(session, "_session", None) != before:
                with self._lock:
                    self.resets += 1

    def close(self) -> None:
        with self._lock:
            sessions, self._open = self._open, []
        for session in sessions:
            try:
                session.xenapi.session.logout()
            except Exception as exc:  # closing must never fail a run that already ended
                log.debug("logout from %s failed quietly: %s", self.url, exc)

    def _session(self) -> XenAPI.Session:
        session: XenAPI.Session | None = getattr(self._local, "session", None)
        if session is not None:
            return session
        for _ in range(MAX_REDIRECTS + 1):
            session = self._new(self.url)
            try:
                session.login_with_password(
                    self.connection.user, self.connection.password, API_VERSION, ORIGINATOR
                )
            except XenAPI.Failure as failure:
                code, params = split(failure.details)
                if code == "HOST_IS_SLAVE" and params:
                    self._follow(params[0])
                    continue
                if code == "SESSION_AUTHENTICATION_FAILED":
                    raise PoolUnreachable(
                        f"pool {self.url} refused the credentials for user "
                        f"{self.connection.user}: check rollup_api_user / rollup_api_password "
                        "(or ROLLUP_API_USER / ROLLUP_API_PASSWORD)"
                    ) from None
                # Login params include the password: never echo them, only the code.
                raise DriverError(f"login failed: {describe(code, params)}", code, params) from None
            self._local.session = session
            with self._lock:
                self._open.append(session)
            log.debug("logged in to %s as %s", self.url, self.connection.user)
            return session
        raise PoolUnreachable(f"pool {self.connection.url}: too many HOST_IS_SLAVE redirects")

    def _new(self, url: str) -> XenAPI.Session:
        # event.from blocks for event_timeout on the server, so the socket waits longer.
        timeout = self.timing.call_timeout + self.timing.event_timeout
        if url.startswith("https:"):
            transport: xmlrpc.client.Transport = _SafeTransport(
                timeout, tls_context(self.connection)
            )
        else:
            transport = _Transport(timeout)
        return XenAPI.Session(url, transport=transport)

    def _follow(self, master: str) -> None:
        new = with_address(self.url, master)
        log.debug("%s is a pool member; following HOST_IS_SLAVE to the master %s", self.url, new)
        self.url = new
        with self._lock:
            self.resets += 1
        self._drop()

    def _drop(self) -> None:
        """Forget this thread's session; the next call logs in again (to self.url)."""
        session = getattr(self._local, "session", None)
        self._local.session = None
        if session is not None:
            with self._lock:
                self.resets += 1
                if session in self._open:
                    self._open.remove(session)

    def _unreachable(self, exc: BaseException) -> PoolUnreachable:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PoolUnreachable(
                f"pool {self.url}: TLS certificate not trusted ({exc.verify_message}): "
                "set rollup_ca_file to the pool's CA, or rollup_verify_tls: false"
            )
        if isinstance(exc, xmlrpc.client.Fault):
            reason = exc.faultString
        elif isinstance(exc, TimeoutError):
            reason = "timed out"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = str(exc) or type(exc).__name__
        return PoolUnreachable(
            f"pool {self.url} is unreachable ({reason}): check the pool master's address "
            "(rollup_api_url) and that the XenAPI port is open from here",
            transient=isinstance(exc, ConnectionRefusedError | TimeoutError),
        )
