"""From Ansible's listing of an inventory to checked pools: where each value was written,
vaulted values opened, pool variables the same on every host, host variables per host."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rollup.config import policy
from rollup.config.listing import (
    Decrypt,
    Listing,
)
from rollup.config.policy import Origin
from rollup.config.pools import PoolConfig
from rollup.drivers import Connection, DriverInfo, InventoryHost, registry
from rollup.errors import BadInput, VaultNeeded
from rollup.lab import LabSpec
from rollup.remote import RemoteHost
from rollup.text.quoting import quoted

_POOL_MARKERS = ("rollup_driver", "rollup_api_url", "rollup_lab")
_SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh"}
_LOCAL_CONNECTIONS = {"local", "ansible.builtin.local"}


@dataclass
class PoolBuilder:
    source: str
    listing: Listing
    decrypt: Decrypt | None
    environ: Mapping[str, str]
    base_dir: Path

    def refuse_unknown_variables(self) -> None:
        places: list[tuple[str, Mapping[str, Any]]] = [
            (f"group {name}", self.listing.group_vars(name)) for name in self.listing.group_names()
        ]
        places += [
            (f"host {host}", self.listing.own_host_vars(host)) for host in self.listing.all_hosts()
        ]
        known = policy.variables()
        for place, variables in places:
            for name in variables:
                if str(name).startswith("rollup_") and name not in known:
                    raise policy.unknown(str(name), Origin(self.source, place))

    def pool_groups(self) -> list[str]:
        marked = [
            name
            for name in self.listing.group_names()
            if any(key in self.listing.group_vars(name) for key in _POOL_MARKERS)
        ]
        # A marked group with a marked group below it only carries shared settings.
        pools = [name for name in marked if not self.listing.descendants(name) & set(marked)]
        if not pools:
            raise BadInput(
                f"{self.source}: no pool in the inventory; set rollup_driver:"
                f" {registry.names()[0]} and rollup_api_url on the group that holds the"
                " pool's hosts"
            )
        return pools

    def origin(self, name: str, group: str, hosts: Iterable[str]) -> Origin:
        """The most specific place that sets variable `name` for these hosts."""
        hosts = list(hosts)
        for host in hosts:
            if name in self.listing.own_host_vars(host):
                return Origin(self.source, f"host {host}")
        if name in self.listing.group_vars(group):
            return Origin(self.source, f"group {group}")
        members = set(hosts)
        for other in self.listing.group_names():
            if name in self.listing.group_vars(other) and members & set(
                self.listing.members(other)
            ):
                return Origin(self.source, f"group {other}")
        return Origin(self.source, f"group {group}")

    def value(self, raw: object) -> tuple[object, bool]:
        """The clear value and whether it came out of a vault."""
        if isinstance(raw, Mapping) and set(raw) == {"__ansible_vault"}:
            if self.decrypt is None:
                raise VaultNeeded()
            return self.decrypt(str(raw["__ansible_vault"])), True
        if isinstance(raw, Mapping):
            items = {key: self.value(item) for key, item in raw.items()}
            return {key: item for key, (item, _) in items.items()}, any(
                hidden for _, hidden in items.values()
            )
        if isinstance(raw, list):
            items = [self.value(item) for item in raw]
            return [item for item, _ in items], any(hidden for _, hidden in items)
        return raw, False

    def clear(self, raw: object, place: str, name: str) -> tuple[object, bool]:
        try:
            return self.value(raw)
        except VaultNeeded:
            raise BadInput(
                f"{self.source}: {place}: {name} is vaulted; "
                "give the vault password with --vault-password-file"
            ) from None

    def pool(self, group: str, flags: Mapping[str, object]) -> PoolConfig:
        hosts = self.listing.members(group)
        if not hosts:
            raise BadInput(
                f"{self.source}: group {group}: the pool has no hosts; "
                f"list the pool's hosts under group {group}"
            )
        # A flag replaces the inventory's value unseen, so a flag can mend a bad value.
        checked = self.pool_settings(group, hosts, skip=flags.keys())
        checked.update(flags)
        origin = Origin(self.source, f"group {group}")
        driver = checked.get("rollup_driver")
        if driver is None:
            raise origin.fail(
                "rollup_driver", "is not set", f"set rollup_driver: {registry.names()[0]}"
            )
        info = registry.find(str(driver))
        assert info is not None  # the check accepts registered names only
        lab = checked.get("rollup_lab")
        if lab is not None and "rollup_api_url" in checked:
            raise origin.fail(
                "rollup_api_url",
                "is set together with rollup_lab",
                "remove one: the lab serves its own API",
            )
        if not info.pool_api and "rollup_api_url" in checked:
            raise origin.fail(
                "rollup_api_url",
                f"is set for a {driver} pool, which has no pool API",
                f"remove it: {info.terms.hosts_reached or 'each host is reached by itself'}",
            )
        method = checked.get("rollup_update")
        if method is not None and method not in info.update_methods:
            raise origin.fail(
                "rollup_update",
                f"is {method}, which a {driver} pool cannot do",
                f"use rollup_update: {' or '.join(info.update_methods)}",
            )
        if "rollup_installer_url" in checked and "rollup_target_version" not in checked:
            raise origin.fail(
                "rollup_installer_url",
                "is set without rollup_target_version",
                'set rollup_target_version to the release it installs, e.g. "8.3.0"',
            )
        needs_api = lab is None and info.pool_api
        connection = self.connection(group, checked, info) if needs_api else None
        members = tuple(self.inventory_host(group, host) for host in hosts)
        zones = tuple(
            (member.pool_host_name or member.name, str(zone))
            for member in members
            if (zone := self.host_value(group, member.name, "rollup_zone")) is not None
        )
        return PoolConfig(
            name=group,
            driver=str(driver),
            connection=connection,
            policy=policy.build_policy(
                checked, tuple(hosts), info.update_methods, zones, info.playbook
            ),
            settings={
                v.name: checked[v.name]
                for v in info.variables
                if v.level == "pool" and v.name in checked
            },
            hosts=members,
            lab=lab if isinstance(lab, LabSpec) else None,
            source=self.source,
            notify=tuple(checked.get("rollup_notify", ())),  # type: ignore[arg-type]
        )

    def host_value(self, group: str, host: str, name: str) -> object:
        """One of rollup's host variables, checked; None when the host does not set it."""
        present, raw = self.setting(host, name)
        if not present:
            return None
        value, vaulted = self.clear(raw, f"host {host}", name)
        origin = self.origin(name, group, [host])
        return policy.check(name, value, origin, self.base_dir, hidden=vaulted)

    def setting(self, host: str, name: str) -> tuple[bool, object]:
        """Whether `host` has variable `name`, and its value: unset and null differ."""
        variables = self.listing.host_vars(host)
        return name in variables, variables.get(name)

    def pool_settings(self, group: str, hosts: list[str], skip: Iterable[str]) -> dict[str, object]:
        """Pool variables as Ansible merged them, the same on every host of the pool."""
        first = self.listing.host_vars(hosts[0])
        checked: dict[str, object] = {}
        skipped = set(skip)
        for name in (name for name in policy.pool_variables() if name not in skipped):
            present = [host for host in hosts if name in self.listing.host_vars(host)]
            if not present:
                continue
            origin = self.origin(name, group, hosts)
            reference = self.setting(hosts[0], name)
            differs = next((h for h in hosts if self.setting(h, name) != reference), None)
            if differs is not None:
                raise origin.fail(
                    name,
                    f"differs between hosts {hosts[0]} and {differs} of pool {group}",
                    f"set pool variables once, on group {group}",
                )
            value, vaulted = self.clear(first[name], origin.place, name)
            checked[name] = policy.check(name, value, origin, self.base_dir, hidden=vaulted)
        return checked

    def connection(self, group: str, checked: Mapping[str, object], info: DriverInfo) -> Connection:
        origin = Origin(self.source, f"group {group}")
        url = checked.get("rollup_api_url")
        if url is None:
            raise origin.fail(
                "rollup_api_url",
                "is not set",
                "set rollup_api_url: https://<pool master> (or rollup_lab for the lab)",
            )
        user = (
            checked.get("rollup_api_user")
            or self.environ.get("ROLLUP_API_USER")
            or info.default_user
        )
        password = checked.get("rollup_api_password") or self.environ.get("ROLLUP_API_PASSWORD")
        if not password:
            raise origin.fail(
                "rollup_api_password",
                "is not set",
                "set it (vault it: ansible-vault encrypt_string) or export ROLLUP_API_PASSWORD",
            )
        ca_file = checked.get("rollup_ca_file")
        return Connection(
            url=str(url),
            user=str(user),
            password=str(password),
            verify_tls=bool(checked.get("rollup_verify_tls", True)),
            ca_file=str(ca_file) if ca_file else None,
        )

    def inventory_host(self, group: str, host: str) -> InventoryHost:
        merged = self.listing.host_vars(host)
        variables: dict[str, Any] = {}
        hidden: dict[str, bool] = {}
        for name, raw in merged.items():
            variables[name], hidden[name] = self.clear(raw, f"host {host}", name)
        known = policy.variables()  # rollup's and the drivers': read once per host
        checked: dict[str, object] = {}
        for name in (name for name, v in known.items() if v.level == "host"):
            if name in variables:
                origin = self.origin(name, group, [host])
                checked[name] = policy.check(
                    name, variables[name], origin, self.base_dir, hidden=hidden[name]
                )
        address = _optional_text(variables, "ansible_host", host, self.source)
        remote = RemoteHost(
            name=host,
            address=address or host,
            port=_port(variables, host, self.source),
            user=_optional_text(variables, "ansible_user", host, self.source)
            or _optional_text(variables, "ansible_ssh_user", host, self.source)
            or "root",
            key_file=_key_file(variables, host, self.source),
            check_host_keys=bool(checked.get("rollup_check_host_keys", True)),
            connection=_connection(variables, host, self.source),
            environment=dict(checked.get("rollup_lab_env") or {}),  # type: ignore[call-overload]
            # rollup's secrets stay out: the playbook has no use for them, and
            # ansible-runner writes its inventory to disk in clear.
            ansible_vars={
                name: value
                for name, value in variables.items()
                if not (name in known and known[name].secret)
            },
        )
        pool_host_name = checked.get("rollup_host_name")
        own = policy.OWN_VARIABLES
        return InventoryHost(
            name=host,
            pool_host_name=str(pool_host_name) if pool_host_name else None,
            address=address,
            remote=remote,
            variables={name: value for name, value in checked.items() if name not in own},
        )

    def refuse_shared_hosts(self, pools: tuple[PoolConfig, ...]) -> None:
        owner: dict[str, str] = {}
        for pool in pools:
            for host in pool.hosts:
                if host.name in owner:
                    raise BadInput(
                        f"{self.source}: host {host.name} is in pools {owner[host.name]} "
                        f"and {pool.name}; a host belongs to one pool: remove it from one"
                    )
                owner[host.name] = pool.name


def _host_fail(source: str, host: str, name: str, problem: str, fix: str) -> BadInput:
    return BadInput(f"{source}: host {host}: {name} {problem}; {fix}")


def _optional_text(variables: Mapping[str, Any], name: str, host: str, source: str) -> str | None:
    value = variables.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _host_fail(source, host, name, "must be a non-empty string", f"e.g. {name}: example")


def _port(variables: Mapping[str, Any], host: str, source: str) -> int:
    name = "ansible_port" if "ansible_port" in variables else "ansible_ssh_port"
    value = variables.get(name, 22)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    shown = "(hidden)" if policy.is_secret(name) else quoted(value)
    raise _host_fail(source, host, name, f"must be a port 1-65535, got {shown}", f"e.g. {name}: 22")


def _key_file(variables: Mapping[str, Any], host: str, source: str) -> str | None:
    for name in ("ansible_ssh_private_key_file", "ansible_private_key_file"):
        value = _optional_text(variables, name, host, source)
        if value:
            return str(Path(value).expanduser())
    return None


def _connection(variables: Mapping[str, Any], host: str, source: str) -> Literal["ssh", "local"]:
    value = variables.get("ansible_connection", "ssh")
    if isinstance(value, str) and value in _SSH_CONNECTIONS:
        return "ssh"
    if isinstance(value, str) and value in _LOCAL_CONNECTIONS:
        return "local"
    raise _host_fail(
        source,
        host,
        "ansible_connection",
        f"is {quoted(value)}, which rollup cannot use to patch a hypervisor host",
        "use ssh (or local for the lab)",
    )
