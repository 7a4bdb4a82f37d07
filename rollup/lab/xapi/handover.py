"""What a running lab hands its users: the Ansible inventory it writes, and its banner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rollup import bundled
from rollup.lab import rpm_builds

if TYPE_CHECKING:
    from rollup.lab.xapi.running import RunningLab


def inventory(lab: RunningLab) -> dict[str, Any]:
    """The lab as an Ansible inventory: a patch of what is pending, the hypervisor's
    way or by the lab's playbook; where the hosts run the flavor's older release, a
    major upgrade to the current one: by the lab's network installer (then the new
    release's patches), or by the playbook (a yum release upgrade). A Proxmox VE lab:
    its API with the lab's token and CA, apt over SSH (the driver's own playbook)."""
    driver, settings = "xenapi", dict[str, Any]()
    if lab.pool.layout.flavor == "proxmox":
        driver, settings["rollup_ca_file"] = "proxmox", lab.ca_file
    elif lab.update == "playbook":
        settings["rollup_update"] = "playbook"
        settings["rollup_playbook"] = bundled.playbook("lab-patch.yml")
    elif lab.upgrades and lab.installer_url:
        settings["rollup_installer_url"] = lab.installer_url
    if lab.upgrades:
        settings["rollup_target_version"] = lab.current_release
    group = {
        "vars": {
            "rollup_driver": driver,
            "rollup_api_url": lab.url,
            "rollup_api_user": lab.user,
            "rollup_api_password": lab.password,
            **settings,
            "rollup_reboot": "if-required",
            "rollup_unmovable": "shutdown-restart",
        },
        "hosts": {name: m.inventory_vars() for name, m in lab.machines.items()},
    }
    return {"all": {"children": {_group_name(lab.pool.name): group}}}


def write_inventory(lab: RunningLab, path: Path) -> None:
    text = (
        "# Written by `rollup lab up`: the lab pool as an Ansible inventory.\n"
        "# It holds the lab's API password or token: keep it to yourself.\n"
        + yaml.safe_dump(inventory(lab), sort_keys=False)
    )
    path.write_text(text)
    path.chmod(0o600)


def banner(lab: RunningLab) -> str:
    hosts = ", ".join(
        f"{name} {m.address or 'local'}" + (f":{m.port}" if m.address and m.port != 22 else "")
        for name, m in lab.machines.items()
    )
    path = lab.directory / "inventory.yml"
    installer = f"  installer {lab.installer_url}\n" if lab.installer_url else ""
    packages = ""
    if lab.mirror is not None:
        packages = f"  packages real dnf and rpm on every host, mirror {lab.mirror.url}\n"
    elif not lab.ca_file and (missing := rpm_builds.missing_tools()):
        packages = (
            f"  packages the lab's stand-in yum (for real dnf and rpm: {' '.join(missing)})\n"
        )
    if lab.ca_file:
        api = f"  PVE API  {lab.url}  token {lab.user}={lab.password}\n  CA       {lab.ca_file}\n"
    else:
        api = f"  XenAPI   {lab.url}  user {lab.user}  password {lab.password}\n"
    return (
        f"lab pool {lab.pool.name}: {len(lab.machines)} hosts, {len(lab.pool.vms)} VMs,"
        f" time x{lab.pool.speed:g}\n"
        f"{api}"
        f"  hosts    {hosts}\n"
        f"{installer}"
        f"{packages}"
        f"  inventory {path}\n"
        f"  try      rollup plan {path}\n"
        "Ctrl-C stops the lab."
    )


def _group_name(pool_name: str) -> str:
    return pool_name.replace("-", "_")
