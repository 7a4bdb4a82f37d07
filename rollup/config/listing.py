"""An Ansible inventory as `ansible-inventory --list` shows it, read through ansible-runner.

Two views are asked for at once: with --export, each group's and host's own variables
(who set what: for finding pools and naming the place in an error); without it, each
host's variables merged by Ansible's own precedence (the values rollup uses). Inline
vaulted values come out still encrypted; `vault_decrypter` opens them with the same
password file ansible-inventory used for vaulted files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup.errors import BadInput


def list_inventory(source: str, vault_password_file: str | None) -> Listing:
    """Both views of the inventory at `source`; BadInput when Ansible cannot read it."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        merged = pool.submit(_list, source, vault_password_file, export=False)
        exported = pool.submit(_list, source, vault_password_file, export=True)
        return Listing(exported=exported.result(), merged=merged.result())


@dataclass(frozen=True)
class Listing:
    """`ansible-inventory --list` twice: with --export (who set what) and without (merged)."""

    exported: Mapping[str, Any]
    merged: Mapping[str, Any]

    def group_names(self) -> list[str]:
        return [name for name in self.exported if name != "_meta"]

    def group(self, name: str) -> Mapping[str, Any]:
        entry = self.exported.get(name)
        return entry if isinstance(entry, Mapping) else {}

    def group_vars(self, name: str) -> Mapping[str, Any]:
        return self.group(name).get("vars") or {}

    def children(self, name: str) -> list[str]:
        return list(self.group(name).get("children") or [])

    def own_host_vars(self, host: str) -> Mapping[str, Any]:
        return self.exported.get("_meta", {}).get("hostvars", {}).get(host) or {}

    def host_vars(self, host: str) -> Mapping[str, Any]:
        return self.merged.get("_meta", {}).get("hostvars", {}).get(host) or {}

    def all_hosts(self) -> list[str]:
        return self.members("all")

    def members(self, group: str) -> list[str]:
        """Hosts of `group` and the groups below it, in the order Ansible lists them."""
        ordered: dict[str, None] = {}
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for host in self.group(name).get("hosts") or []:
                ordered.setdefault(host, None)
            for child in self.children(name):
                visit(child)

        visit(group)
        return list(ordered)

    def descendants(self, group: str) -> set[str]:
        found: set[str] = set()
        stack = self.children(group)
        while stack:
            child = stack.pop()
            if child not in found:
                found.add(child)
                stack.extend(self.children(child))
        return found


def _list(source: str, vault_password_file: str | None, *, export: bool) -> dict[str, Any]:
    # The package, not ansible_runner.interface: importing the submodule does not wait for a
    # thread still running the package's __init__, whose `plugins` is a module until its end.
    import ansible_runner

    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        # Ansible only warns about a source it cannot parse and lists an empty inventory.
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    try:
        response, error = ansible_runner.get_inventory(
            action="list",
            inventories=[str(Path(source).absolute())],
            response_format="json",
            vault_password_file=vault_password_file,
            export=export or None,
            envvars=envvars,
            quiet=True,
        )
    except Exception as error:  # runner raises bare exceptions for a missing binary etc.
        raise BadInput(f"{source}: cannot run ansible-inventory ({error}); check Ansible") from None
    if not isinstance(response, dict) or not response:
        raise BadInput(_parse_failure(source, str(error or "")))
    return response


def _parse_failure(source: str, stderr: str) -> str:
    """One line out of Ansible's multi-line complaint about an inventory source."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    vault = [line for line in lines if "vault" in line.lower() and "[ERROR]" in line]
    if vault:
        return (
            f"{source}: cannot decrypt vaulted variables "
            f"({vault[0].removeprefix('[ERROR]:').strip()}); "
            "give the right vault password with --vault-password-file"
        )
    wanted = "'yaml' plugin" if source.endswith((".yml", ".yaml", ".json")) else "'ini' plugin"
    reason = next((line for line in lines if wanted in line and "[WARNING]" in line), "")
    if reason:
        reason = reason.split(f"{wanted}:", 1)[-1].strip()
    else:
        reason = next((line for line in lines if "[ERROR]" in line), "no inventory in it")
        reason = reason.removeprefix("[ERROR]:").strip()
    where = next((line for line in lines if line.startswith("Origin:") and ":" in line[8:]), "")
    if where:
        reason += f" (at {where.removeprefix('Origin:').strip()})"
    return (
        f"{source}: cannot read the inventory: {reason}; "
        f"fix it until `ansible-inventory -i {source} --list` accepts it"
    )


def configured_vault_password_file() -> str | None:
    # The same setting ansible-inventory reads (ansible.cfg or ANSIBLE_VAULT_PASSWORD_FILE),
    # so inline vaulted values decrypt with the password that decrypts vaulted files.
    from ansible import constants

    configured = constants.DEFAULT_VAULT_PASSWORD_FILE
    return str(configured) if configured else None


Decrypt = Callable[[str], str]


def vault_decrypter(source: str, password_file: str | None) -> Decrypt | None:
    if not password_file:
        return None

    def decrypt(vaulted: str) -> str:
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import AnsibleVaultError, VaultLib, get_file_vault_secret

        try:
            secret = get_file_vault_secret(
                filename=password_file, vault_id="default", loader=DataLoader()
            )
            secret.load()
            return VaultLib([("default", secret)]).decrypt(vaulted).decode()
        except (AnsibleVaultError, OSError, UnicodeDecodeError) as error:
            raise BadInput(
                f"{source}: cannot decrypt a vaulted variable ({type(error).__name__}); "
                f"check the vault password in {password_file}"
            ) from None

    return decrypt
