"""The XenAPI calls the lab answers: names, arities, sessions and argument leniency.

`Api.call(method, params, via)` takes a decoded XML-RPC request that reached host `via`
and returns xapi's reply struct (`{"Status": "Success", "Value": ...}` or a Failure).
Like xapi, a pool member answers everything but `system.listMethods` with
`HOST_IS_SLAVE [master address]`; a bad session gets `SESSION_INVALID [handle]`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from rollup.lab.xapi import (
    lifecycle,
    migration,
    placement,
    plugins,
    power,
    records,
    tasks,
    updates,
    where,
    wire,
)
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimTask, ref_for
from rollup.lab.xapi.pool import LabPool

CLASSES = ("pool", "host", "host_metrics", "VM", "SR", "network", "task", "repository")
# classes with a name_label
NAMED = ("pool", "host", "VM", "SR", "network", "task", "repository")
MAX_EVENT_WAIT = 60.0  # real seconds one event.from may block

Handler = Callable[..., Any]


class Api:
    def __init__(self, pool: LabPool, user: str, password: str) -> None:
        self.pool = pool
        self.user = user
        self.password = password
        self.methods: dict[str, tuple[int, int, Handler]] = {}
        self.async_methods: set[str] = set()
        self._register()

    # ---- entry point -------------------------------------------------------------------

    def call(self, method: str, params: tuple[Any, ...], via: str) -> dict[str, Any]:
        try:
            return wire.success(self._call(method, params, via))
        except XapiFailure as failure:
            return wire.failure(failure.details)
        except Exception as exc:  # a lab bug still answers like xapi, never a traceback
            return wire.failure(["INTERNAL_ERROR", repr(exc)])

    def _call(self, method: str, params: tuple[Any, ...], via: str) -> Any:
        if method == "system.listMethods":
            return sorted(self.methods) + sorted(f"Async.{m}" for m in self.async_methods)
        if via != self.pool.master:
            raise XapiFailure("HOST_IS_SLAVE", self.pool.hosts[self.pool.master].address)
        if method.startswith("session.login"):
            return self._login(method, params)
        is_async = method.startswith("Async.")
        name = method.removeprefix("Async.")
        if name not in self.methods or (is_async and name not in self.async_methods):
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        if not params or params[0] not in self.pool.sessions:
            raise XapiFailure("SESSION_INVALID", params[0] if params else "")
        session, args = params[0], params[1:]
        low, high, handler = self.methods[name]
        if not low <= len(args) <= high:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, high, len(args))
        if name == "session.logout":
            self.pool.sessions.pop(session, None)
            return ""
        if is_async:
            return tasks.run_async(self.pool, method, lambda task: handler(*args, task=task))
        return handler(*args)

    def _login(self, method: str, params: tuple[Any, ...]) -> str:
        if method != "session.login_with_password":
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        if not 2 <= len(params) <= 4:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, 4, len(params))
        user, password = params[0], params[1]
        if (user, password) != (self.user, self.password):
            raise XapiFailure("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
        ref = f"OpaqueRef:{uuid.uuid4()}"
        self.pool.sessions[ref] = user
        return ref

    # ---- the method table --------------------------------------------------------------

    def _add(
        self, name: str, low: int, high: int, handler: Handler, is_async: bool = False
    ) -> None:
        self.methods[name] = (low, high, handler)
        if is_async:
            self.async_methods.add(name)

    def _register(self) -> None:
        pool = self.pool
        self._add("session.logout", 0, 0, lambda: "")
        self._add("session.get_this_host", 1, 1, self._this_host)
        for cls in CLASSES:
            self._register_getters(cls)
        host = pool.host
        self._add(
            "host.disable", 1, 2, lambda h, *_, task=None: lifecycle.disable(pool, h) or "", True
        )
        self._add("host.enable", 1, 1, lambda h, task=None: lifecycle.enable(pool, h) or "", True)
        self._add("host.reboot", 1, 1, lambda h, task=None: lifecycle.reboot(pool, h) or "", True)
        self._add(
            "host.restart_agent", 1, 1,
            lambda h, task=None: lifecycle.restart_agent(pool, h) or "", True,
        )  # fmt: skip
        self._add("host.evacuate", 1, 3, self._evacuate, True)
        self._add(
            "host.call_plugin", 4, 4,
            lambda h, plugin, fn, args, task=None: plugins.call_plugin(pool, h, plugin, fn, args),
            True,
        )  # fmt: skip
        self._add(
            "host.apply_updates", 2, 2,
            lambda h, hash_, task=None: updates.apply_updates(pool, h, str(hash_)), True,
        )  # fmt: skip
        self._add("host.add_to_other_config", 3, 3, self._host_add_to_other_config)
        self._add("host.remove_from_other_config", 2, 2, self._host_remove_from_other_config)
        self._add("host.assert_can_evacuate", 1, 1, self._assert_can_evacuate, True)
        self._add(
            "host.get_vms_which_prevent_evacuation", 1, 1, self._vms_preventing_evacuation, True
        )
        self._add("host.get_servertime", 1, 1, lambda h: host(h) and records.xapi_time(pool.now()))
        self._add("VM.pool_migrate", 3, 3, self._pool_migrate, True)
        self._add(
            "VM.assert_can_boot_here", 2, 2,
            lambda vm, h, task=None: power.assert_can_boot_here(pool, vm, h) or "", True,
        )  # fmt: skip
        self._add(
            "VM.clean_shutdown", 1, 1, lambda vm, task=None: power.shutdown(pool, vm) or "", True
        )
        self._add(
            "VM.hard_shutdown", 1, 1, lambda vm, task=None: power.shutdown(pool, vm) or "", True
        )
        for name in ("VM.clean_reboot", "VM.hard_reboot"):
            self._add(name, 1, 1, lambda vm, task=None: power.reboot(pool, vm) or "", True)
        self._add(
            "VM.start", 3, 3,
            lambda vm, paused, force, task=None: power.start(pool, vm, None, as_bool(paused)) or "",
            True,
        )  # fmt: skip
        self._add(
            "VM.start_on", 4, 4,
            lambda vm, h, paused, force, task=None: power.start(pool, vm, h, as_bool(paused)) or "",
            True,
        )  # fmt: skip
        self._add("task.cancel", 1, 1, lambda t: tasks.cancel(pool, t) or "")
        self._add("task.destroy", 1, 1, lambda t: tasks.destroy(pool, t) or "")
        self._add("event.from", 3, 3, self._event_from)
        self._add("event.inject", 2, 2, self._event_inject)
        self._add("pool.add_to_other_config", 3, 3, self._add_to_other_config)
        self._add("pool.remove_from_other_config", 2, 2, self._remove_from_other_config)
        self._add(
            "pool.enable_ha", 2, 2, lambda srs, config, task=None: pool.set_ha(True) or "", True
        )
        self._add("pool.disable_ha", 0, 0, lambda task=None: pool.set_ha(False) or "", True)
        # self, force, token, token_id (+ username, password since xapi 25.7.0)
        self._add("pool.sync_updates", 4, 6, self._sync_updates, True)
        self._add("pool.set_repositories", 2, 2, self._set_repositories)

    def _register_getters(self, cls: str) -> None:
        pool = self.pool
        self._add(f"{cls}.get_all", 0, 0, lambda: list(pool.refs(cls)))
        self._add(f"{cls}.get_all_records", 0, 0, lambda: pool.records_of(cls))
        self._add(f"{cls}.get_all_records_where", 1, 1, lambda e: self._records_where(cls, e))
        self._add(f"{cls}.get_record", 1, 1, lambda ref: pool.record(cls, ref))
        self._add(f"{cls}.get_by_uuid", 1, 1, lambda u: self._by_uuid(cls, u))
        if cls in NAMED:
            self._add(f"{cls}.get_by_name_label", 1, 1, lambda label: self._by_name(cls, label))
        for field in self._fields(cls):
            self._add(
                f"{cls}.get_{field}", 1, 1, lambda ref, field=field: pool.record(cls, ref)[field]
            )

    def _fields(self, cls: str) -> list[str]:
        if cls == "task":  # there may be no task yet: build the field set from a blank one
            return list(records.task_record(self.pool, SimTask("", "", "", "", 0.0)))
        return list(self.pool.record(cls, next(iter(self.pool.refs(cls)))))

    def _records_where(self, cls: str, expression: str) -> dict[str, dict[str, Any]]:
        keep = where.compile_where(str(expression))
        return {ref: rec for ref, rec in self.pool.records_of(cls).items() if keep(rec)}

    def _by_name(self, cls: str, label: str) -> list[str]:
        return [r for r, rec in self.pool.records_of(cls).items() if rec["name_label"] == label]

    def _by_uuid(self, cls: str, object_uuid: str) -> str:
        # Every lab ref derives from its uuid: one record read instead of the whole class
        # (a rollout looks up a VM by uuid for each migration, on pools of thousands).
        ref = ref_for(str(object_uuid))
        with self.pool.lock:
            if ref in self.pool.refs(cls) and self.pool.record(cls, ref)["uuid"] == object_uuid:
                return ref
        for ref, record in self.pool.records_of(cls).items():
            if record["uuid"] == object_uuid:
                return ref
        raise XapiFailure("UUID_INVALID", cls, object_uuid)

    # ---- calls with arguments to interpret ---------------------------------------------

    def _this_host(self, session: str) -> str:
        if session not in self.pool.sessions:
            raise XapiFailure("HANDLE_INVALID", "session", session)
        # Logins only succeed on the master (members answer HOST_IS_SLAVE): every session
        # lives there.
        return self.pool.master

    def _evacuate(self, host_ref: str, *rest: Any, task: SimTask | None = None) -> str:
        batch_size = as_int(rest[1]) if len(rest) > 1 else 10
        migration.evacuate(self.pool, host_ref, batch_size or 10, task)
        return ""

    def _pool_migrate(self, vm: str, host: str, options: Any, task: SimTask | None = None) -> str:
        network = (options or {}).get("network") if isinstance(options, dict) else None
        if network:
            with self.pool.lock:
                if network not in self.pool.networks:
                    raise XapiFailure("HANDLE_INVALID", "network", str(network))
        migration.pool_migrate(self.pool, vm, host, task)
        if network:
            with self.pool.lock:
                self.pool.networks[network].migrations += 1
        return ""

    def _evacuation_errors(self, host_ref: str) -> dict[str, XapiFailure]:
        with self.pool.lock:
            _, errors = placement.evacuation_plan(self.pool, self.pool.host(host_ref))
            return errors

    def _assert_can_evacuate(self, host_ref: str, task: SimTask | None = None) -> str:
        errors = self._evacuation_errors(host_ref)
        if errors:
            joined = "|".join(",".join(error.details) for error in errors.values())
            raise XapiFailure("CANNOT_EVACUATE_HOST", joined)
        return ""

    def _vms_preventing_evacuation(
        self, host_ref: str, task: SimTask | None = None
    ) -> dict[str, list[str]]:
        return {vm: error.details for vm, error in self._evacuation_errors(host_ref).items()}

    def _event_from(self, classes: Any, token: Any, timeout: Any) -> dict[str, Any]:
        pool = self.pool
        wanted = {str(c).lower() for c in (classes or [])}
        wanted_classes = None if "*" in wanted else wanted
        names = [c for c in CLASSES if wanted_classes is None or c.lower() in wanted_classes]
        if token in ("", None):
            # From the beginning: every object of the classes asked for, as "add".
            with pool.lock:
                current = pool.events.token
                now = f"{pool.now():.6f}"
                events = [
                    {
                        "id": current,
                        "timestamp": now,
                        "class": cls,
                        "operation": "add",
                        "ref": ref,
                        "snapshot": record,
                    }
                    for cls in names
                    for ref, record in pool.records_of(cls).items()
                ]
        else:
            wait = min(max(as_float(timeout), 0.0), MAX_EVENT_WAIT)
            found, current = pool.events.since(str(token), wanted_classes, wait)
            events = [event.record() for event in found]
        with pool.lock:
            counts = {cls: len(list(pool.refs(cls))) for cls in names}
        return {"events": events, "valid_ref_counts": counts, "token": current}

    def _event_inject(self, cls: str, ref: str) -> str:
        pool = self.pool
        with pool.lock:
            record = pool.record(cls, ref)
            return str(pool.events.emit(cls, "mod", ref, record, pool.now()))

    def _add_to_other_config(self, pool_ref: str, key: str, value: str) -> str:
        self.pool.record("pool", pool_ref)
        self.pool.add_to_other_config(key, value)
        return ""

    def _host_add_to_other_config(self, host_ref: str, key: str, value: str) -> str:
        with self.pool.lock:
            host = self.pool.host(host_ref)
            if key in host.other_config:
                raise XapiFailure("MAP_DUPLICATE_KEY", "host", "other_config", host.ref, key)
            host.other_config[str(key)] = str(value)
            self.pool.emit(host)
        return ""

    def _host_remove_from_other_config(self, host_ref: str, key: str) -> str:
        with self.pool.lock:
            host = self.pool.host(host_ref)
            if host.other_config.pop(str(key), None) is not None:
                self.pool.emit(host)
        return ""

    def _sync_updates(self, pool_ref: str, *_: Any, task: SimTask | None = None) -> str:
        self.pool.record("pool", pool_ref)  # HANDLE_INVALID for anything but the pool
        return updates.sync_updates(self.pool)

    def _set_repositories(self, pool_ref: str, value: Any) -> str:
        self.pool.record("pool", pool_ref)
        refs = [str(ref) for ref in value or ()]
        with self.pool.lock:
            for ref in refs:
                if ref != self.pool.repository_ref:
                    raise XapiFailure("HANDLE_INVALID", "repository", ref)
            self.pool.update_repositories = refs
            self.pool.emit_pool()
        return ""

    def _remove_from_other_config(self, pool_ref: str, key: str) -> str:
        self.pool.record("pool", pool_ref)
        self.pool.remove_from_other_config(key)
        return ""


def as_int(value: Any) -> int:
    """Whole numbers may arrive as strings (Xen Orchestra sends them so)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise XapiFailure("FIELD_TYPE_ERROR", str(value)) from None


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise XapiFailure("FIELD_TYPE_ERROR", str(value)) from None


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)
