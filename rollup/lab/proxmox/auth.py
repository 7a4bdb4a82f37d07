"""Who may call the lab's PVE API: tickets with CSRF tokens, and API tokens.

As on a real node: POST /access/ticket with a user (`root@pam`, or `root` and realm
`pam`) and its password answers a ticket, sent back in the `PVEAuthCookie` cookie, and a
CSRF token that every call other than GET must carry in `CSRFPreventionToken`; a ticket
lasts two hours and renews by logging in with the ticket as the password. An API token
(`Authorization: PVEAPIToken=root@pam!rollup=<secret>`) needs neither.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from rollup.lab.proxmox.failure import PveFailure

TICKET_SECONDS = 7200.0


@dataclass(frozen=True)
class Ticket:
    user: str
    csrf: str
    expires: float


class Auth:
    def __init__(self, user: str, password: str, tokens: Mapping[str, str]) -> None:
        self.user = user  # "root@pam"
        self._password = password
        self._tokens = dict(tokens)  # "root@pam!rollup" → its secret
        self._tickets: dict[str, Ticket] = {}
        self._lock = threading.Lock()

    def login(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST /access/ticket."""
        username = params.get("username", "")
        if "@" not in username and params.get("realm"):
            username = f"{username}@{params['realm']}"
        password = params.get("password", "")
        renewed = self._valid_ticket(password)
        if username != self.user or not (
            hmac.compare_digest(password, self._password)
            or (renewed is not None and renewed.user == username)
        ):
            raise PveFailure(401, "authentication failure")
        stamp = f"{int(time.time()):08X}"
        ticket = f"PVE:{username}:{stamp}::{secrets.token_urlsafe(32)}"
        csrf = f"{stamp}:{secrets.token_urlsafe(24)}"
        with self._lock:
            now = time.time()
            for old in [t for t, v in self._tickets.items() if v.expires < now]:
                del self._tickets[old]
            self._tickets[ticket] = Ticket(username, csrf, now + TICKET_SECONDS)
        return {
            "username": username,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "cap": {"nodes": {"Sys.PowerMgmt": 1, "Sys.Modify": 1}, "vms": {"VM.Migrate": 1}},
        }

    def check(self, method: str, headers: Mapping[str, str]) -> str:
        """The caller's user id, or PveFailure 401 as PVE answers it."""
        authorization = headers.get("Authorization", "")
        if authorization.startswith("PVEAPIToken="):
            token_id, _, secret = authorization.removeprefix("PVEAPIToken=").partition("=")
            known = self._tokens.get(token_id)
            if known is None or not hmac.compare_digest(secret, known):
                raise PveFailure(401, "invalid token value!")
            return token_id
        ticket = self._valid_ticket(_cookie(headers.get("Cookie", "")))
        if ticket is None:
            raise PveFailure(401, "No ticket")
        if method != "GET" and not hmac.compare_digest(
            headers.get("CSRFPreventionToken", ""), ticket.csrf
        ):
            raise PveFailure(401, "Permission denied - invalid csrf token")
        return ticket.user

    def _valid_ticket(self, text: str) -> Ticket | None:
        with self._lock:
            ticket = self._tickets.get(text)
        return ticket if ticket is not None and ticket.expires > time.time() else None


def _cookie(header: str) -> str:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:
        return ""
    morsel = cookie.get("PVEAuthCookie")
    return morsel.value if morsel is not None else ""
