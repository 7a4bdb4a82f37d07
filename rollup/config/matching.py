"""Which host of the pool each inventory host is: by rollup_host_name, name or address."""

from __future__ import annotations

from collections.abc import Iterable

from rollup.drivers import InventoryHost
from rollup.errors import BadInput
from rollup.model import Host
from rollup.text.quoting import quoted


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
