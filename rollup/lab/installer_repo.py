"""The network installer repository a lab serves over HTTP, for its major upgrades.

A directory per release, laid out as an XCP-ng / XenServer installation medium is where
`prepare_host_upgrade.py` looks: `.treeinfo` (the release), `repodata/repomd.xml`,
`install.img` and the boot files (tiny stand-ins). Served by a plain HTTP server on the
lab's first host address, so a URL that is wrong, or a server that is down, fails the
way it does for a real pool.

    with InstallerRepo(directory, "127.0.10.1") as repo:
        url = repo.url("xcp-ng", "8.3.0")     # http://127.0.10.1:PORT/xcp-ng/8.3.0/
"""

from __future__ import annotations

import functools
import logging
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from rollup.lab.host_files import write_atomically
from rollup.lab.http_thread import HttpThread
from rollup.lab.releases import brand, platform_version

log = logging.getLogger(__name__)

FILES = ("repodata/repomd.xml", "install.img", "boot/vmlinuz", "boot/xen.gz",
         "boot/isolinux/isolinux.cfg")  # fmt: skip


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("installer repo: %s", format % args)


class InstallerRepo:
    def __init__(self, directory: Path, address: str, port: int = 0) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(directory))
        self._http = HttpThread(handler, address, port, "lab-installer")
        self.address = address
        self.port = self._http.port

    def add(self, flavor: str, version: str) -> str:
        """Lay out release `version` of `flavor`; its URL."""
        root = self.directory / flavor / version
        treeinfo = (
            "[system-v1]\n"
            f"platform_name = XCP\nplatform_version = {platform_version(version)}\n"
            f"product_brand = {brand(flavor, version)}\nproduct_version = {version}\n"
            "[branding]\n"
            f"name = {brand(flavor, version)}\nversion = {version}\n"
        )
        write_atomically(root / ".treeinfo", treeinfo)
        for name in FILES:
            write_atomically(root / name, f"rollup lab installer {flavor} {version}: {name}\n")
        return self.url(flavor, version)

    def url(self, flavor: str, version: str) -> str:
        return f"http://{self.address}:{self.port}/{flavor}/{version}/"

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> InstallerRepo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
