"""Load an Ansible inventory into rollup's pools, hosts, credentials and policy.

Ansible reads the inventory (rollup/config/listing.py), so any source
`ansible-inventory --list` accepts works: YAML, INI, a directory with group_vars, vaulted
variables. builder.py turns that listing into pools; policy.py checks each value.

A pool is a group that itself sets `rollup_driver`, `rollup_api_url` or `rollup_lab` and
has no such group below it, so a parent group may carry settings shared by several
pools. Credentials: inventory values win; ROLLUP_API_USER / ROLLUP_API_PASSWORD from
the environment fill what the inventory leaves unset; the user defaults to root.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from rollup.config import policy
from rollup.config.builder import PoolBuilder
from rollup.config.listing import (
    Decrypt,
    Listing,
    configured_vault_password_file,
    list_inventory,
    vault_decrypter,
)
from rollup.config.matching import match_hosts
from rollup.config.policy import Origin
from rollup.config.pools import Inventory, PoolConfig
from rollup.drivers import InventoryHost
from rollup.errors import BadInput
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


def select_pools(inventory: Inventory, wanted: str) -> list[PoolConfig]:
    """The pools `--pools a,b` or `--pools all` names, in inventory order."""
    names = [pool.name for pool in inventory.pools]
    if wanted.strip() == "all":
        return list(inventory.pools)
    asked = [name.strip() for name in wanted.split(",") if name.strip()]
    if not asked:
        raise BadInput(f"--pools is empty; name pools (--pools {','.join(names)}) or all")
    unknown = [name for name in asked if name not in names]
    if unknown:
        raise BadInput(
            f"{inventory.path}: no pool {quoted(unknown[0])} (pools: {', '.join(names)});"
            " name pools of the inventory, or --pools all"
        )
    return [pool for pool in inventory.pools if pool.name in asked]


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
    builder = PoolBuilder(
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
        if name not in policy.pool_variables():
            raise BadInput(f"{flag} is not a pool setting rollup can take from a flag")
        checked[name] = policy.check(name, value, Origin(source="", flag=flag), cwd)
    return checked
