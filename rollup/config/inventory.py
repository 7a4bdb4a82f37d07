"""Load an Ansible inventory into rollup's pools, hosts, credentials and policy.

Ansible reads the inventory (rollup/inventory_listing.py), so any source
`ansible-inventory --list` accepts works: YAML, INI, a directory with group_vars, vaulted
variables. This module turns that listing into pools; rollup/policy.py checks each value.

A pool is a group that itself sets `rollup_driver`, `rollup_api_url` or `rollup_lab` and
has no such group below it, so a parent group may carry settings shared by several
pools. Credentials: inventory values win; ROLLUP_API_USER / ROLLUP_API_PASSWORD from
the environment fill what the inventory leaves unset; the user defaults to root.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rollup.config import policy
from rollup.config.listing import (
    Decrypt,
    Listing,
    configured_vault_password_file,
    list_inventory,
    vault_decrypter,
)
from rollup.config.policy import Origin
from rollup.drivers import Connection
from rollup.errors import BadInput, VaultNeeded
from rollup.lab import LabSpec
from rollup.model import Host, Policy
from rollup.remote import RemoteHost
from rollup.text.quoting import quoted

__all__ = [
    "Inventory",
    "InventoryHost",
    "PoolConfig",
    "load",
    "match_hosts",
    "secrets_withheld_from_children",
    "select_pool",
]

# Read by rollup, never inherited by its children (ansible-inventory, ansible-playbook, ssh):
# any process of the same user can read a child's /proc/PID/environ.
SECRET_ENVIRONMENT = ("ROLLUP_API_PASSWORD",)
_withheld: dict[str, str] = {}
_POOL_MARKERS = ("rollup_driver", "rollup_api_url", "rollup_lab")
_SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh"}
_LOCAL_CONNECTIONS = {"local", "ansible.builtin.local"}


@dataclass(frozen=True)
class InventoryHost:
    name: str  # inventory hostname
    pool_host_name: str | None  # rollup_host_name: the host's name in the pool
    address: str | None  # ansible_host
    remote: RemoteHost
    libvirt_uri: str | None = None  # rollup_libvirt_uri (libvirt pools)
    libvirt_block_migration: bool = False  # rollup_libvirt_block_migration


@dataclass(frozen=True)
class PoolConfig:
    name: str  # inventory group name
    driver: str
    connection: Connection | None  # None only for a lab pool until the lab is started
    policy: Policy
    hosts: tuple[InventoryHost, ...]
    lab: LabSpec | None
    source: str  # inventory path


@dataclass(frozen=True)
class Inventory:
    path: str
    pools: tuple[PoolConfig, ...]


def load(
    path: str,
    *,
    vault_password_file: str | None = None,
    overrides: Mapping[str, object] | None = None,
    flag_names: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Inventory:
    """Read and check the inventory at `path`; BadInput (one line) for anything wrong.

    `overrides` holds flag values under their rollup_* names (None means "not given");
    they win over the inventory and errors name the flag from `flag_names`, else the
    flag derived from the name (rollup_max_parallel_hosts → --max-parallel-hosts).
    """
    source = str(path)
    if not Path(source).exists():
        raise BadInput(f"{source}: inventory not found; give an inventory file or directory")
    password_file = vault_password_file or configured_vault_password_file()
    if password_file and not Path(password_file).is_file():
        raise BadInput(f"{password_file}: vault password file not found; fix --vault-password-file")
    return build(
        source,
        list_inventory(source, password_file),
        decrypt=vault_decrypter(source, password_file),
        overrides=overrides,
        flag_names=flag_names,
        environ={**os.environ, **_withheld} if environ is None else environ,
        cwd=Path.cwd(),
    )


@contextlib.contextmanager
def secrets_withheld_from_children() -> Iterator[None]:
    """While it lasts, SECRET_ENVIRONMENT is out of os.environ, so no child process
    inherits it, and `load` still reads it."""
    taken = {name: os.environ.pop(name) for name in SECRET_ENVIRONMENT if name in os.environ}
    _withheld.update(taken)
    try:
        yield
    finally:
        for name in taken:
            _withheld.pop(name, None)
        os.environ.update(taken)


def select_pool(inventory: Inventory, name: str | None) -> PoolConfig:
    """The pool `--pool NAME` names; without a name, the inventory's only pool."""
    names = [pool.name for pool in inventory.pools]
    if name is None:
        if len(inventory.pools) == 1:
            return inventory.pools[0]
        raise BadInput(
            f"{inventory.path}: {len(names)} pools ({', '.join(names)}); "
            f"choose one with --pool {names[0]}"
        )
    for pool in inventory.pools:
        if pool.name == name:
            return pool
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"did you mean --pool {close[0]}?" if close else f"use --pool {names[0]}"
    raise BadInput(f"{inventory.path}: no pool {quoted(name)} (pools: {', '.join(names)}); {guess}")


def match_hosts(
    inventory_hosts: Iterable[InventoryHost],
    pool_hosts: tuple[Host, ...],
    *,
    source: str = "inventory",
) -> dict[str, str]:
    """Inventory host name → pool host id.

    An inventory host with `rollup_host_name` matches the pool host of that name and
    nothing else; otherwise its inventory name matches a pool host's name or address,
    or its ansible_host matches a pool host's address.
    """
    known = ", ".join(host.name for host in pool_hosts) or "none"
    matched: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for inventory_host in inventory_hosts:
        found = _candidates(inventory_host, pool_hosts)
        if len(found) != 1:
            if inventory_host.pool_host_name:
                problem = f"rollup_host_name {quoted(inventory_host.pool_host_name)} matches"
            else:
                problem = "matches"
            count = "no" if not found else f"{len(found)} hosts ({_names(found)}), not one"
            raise BadInput(
                f"{source}: host {inventory_host.name}: {problem} {count} pool host "
                f"(pool hosts: {known}); set rollup_host_name to the pool's name for it"
            )
        host = found[0]
        if host.id in claimed:
            raise BadInput(
                f"{source}: hosts {claimed[host.id]} and {inventory_host.name} both match "
                f"pool host {host.name}; set rollup_host_name on each to tell them apart"
            )
        claimed[host.id] = inventory_host.name
        matched[inventory_host.name] = host.id
    return matched


def _candidates(inventory_host: InventoryHost, pool_hosts: tuple[Host, ...]) -> list[Host]:
    if inventory_host.pool_host_name:
        return [h for h in pool_hosts if h.name == inventory_host.pool_host_name]
    by_name = [h for h in pool_hosts if h.name == inventory_host.name]
    if by_name:
        return by_name
    addresses = {inventory_host.name, inventory_host.address} - {None}
    return [h for h in pool_hosts if h.address in addresses]


def _names(hosts: Iterable[Host]) -> str:
    return ", ".join(host.name for host in hosts)


# --- building pools from the two listings (pure: no Ansible, no environment) ---------------


def build(
    source: str,
    listing: Listing,
    *,
    decrypt: Decrypt | None = None,
    overrides: Mapping[str, object] | None = None,
    flag_names: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Inventory:
    """The Inventory the two listings describe; see `load`."""
    builder = _Builder(
        source=source,
        listing=listing,
        decrypt=decrypt,
        environ=environ or {},
        base_dir=_base_dir(source),
    )
    builder.refuse_unknown_variables()
    flags = _checked_flags(overrides or {}, flag_names, cwd or Path.cwd())
    pools = tuple(builder.pool(name, flags) for name in builder.pool_groups())
    builder.refuse_shared_hosts(pools)
    return Inventory(path=source, pools=pools)


def _base_dir(source: str) -> Path:
    # Paths in an inventory start where the inventory is: its directory, or the directory
    # that holds the file, whatever the current directory is.
    path = Path(source).absolute()
    return path if path.is_dir() else path.parent


def _checked_flags(
    overrides: Mapping[str, object], flag_names: Mapping[str, str] | None, cwd: Path
) -> dict[str, object]:
    checked: dict[str, object] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        flag = policy.flag_for(name, flag_names)
        if name not in policy.POOL_VARIABLES:
            raise BadInput(f"{flag} is not a pool setting rollup can take from a flag")
        checked[name] = policy.check(name, value, Origin(source="", flag=flag), cwd)
    return checked


@dataclass
class _Builder:
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
        for place, variables in places:
            for name in variables:
                if str(name).startswith("rollup_") and name not in policy.VARIABLES:
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
                f"{self.source}: no pool in the inventory; set rollup_driver: xenapi and "
                "rollup_api_url on the group that holds the pool's hosts"
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
            raise origin.fail("rollup_driver", "is not set", "set rollup_driver: xenapi")
        lab = checked.get("rollup_lab")
        if lab is not None and "rollup_api_url" in checked:
            raise origin.fail(
                "rollup_api_url",
                "is set together with rollup_lab",
                "remove one: the lab serves its own API",
            )
        if driver not in policy.API_DRIVERS and "rollup_api_url" in checked:
            raise origin.fail(
                "rollup_api_url",
                f"is set for a {driver} pool, which has no pool API",
                "remove it: each host is reached by its rollup_libvirt_uri",
            )
        needs_api = lab is None and driver in policy.API_DRIVERS
        connection = self.connection(group, checked) if needs_api else None
        return PoolConfig(
            name=group,
            driver=str(driver),
            connection=connection,
            policy=policy.build_policy(checked, tuple(hosts)),
            hosts=tuple(self.inventory_host(group, host) for host in hosts),
            lab=lab if isinstance(lab, LabSpec) else None,
            source=self.source,
        )

    def setting(self, host: str, name: str) -> tuple[bool, object]:
        """Whether `host` has variable `name`, and its value: unset and null differ."""
        variables = self.listing.host_vars(host)
        return name in variables, variables.get(name)

    def pool_settings(self, group: str, hosts: list[str], skip: Iterable[str]) -> dict[str, object]:
        """Pool variables as Ansible merged them, the same on every host of the pool."""
        first = self.listing.host_vars(hosts[0])
        checked: dict[str, object] = {}
        skipped = set(skip)
        for name in (name for name in policy.POOL_VARIABLES if name not in skipped):
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

    def connection(self, group: str, checked: Mapping[str, object]) -> Connection:
        origin = Origin(self.source, f"group {group}")
        url = checked.get("rollup_api_url")
        if url is None:
            raise origin.fail(
                "rollup_api_url",
                "is not set",
                "set rollup_api_url: https://<pool master> (or rollup_lab for the lab)",
            )
        user = checked.get("rollup_api_user") or self.environ.get("ROLLUP_API_USER") or "root"
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
        checked: dict[str, object] = {}
        for name in policy.HOST_VARIABLES:
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
                if not policy.is_secret_variable(name)
            },
        )
        pool_host_name = checked.get("rollup_host_name")
        libvirt_uri = checked.get("rollup_libvirt_uri")
        return InventoryHost(
            name=host,
            pool_host_name=str(pool_host_name) if pool_host_name else None,
            address=address,
            remote=remote,
            libvirt_uri=str(libvirt_uri) if libvirt_uri else None,
            libvirt_block_migration=bool(checked.get("rollup_libvirt_block_migration", False)),
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
