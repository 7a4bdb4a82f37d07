"""The lab's package mirror: its RPM repositories served over HTTP at a distant mirror's pace.

The directory lab/rpm_builds.py lays out (one yum repository per release and kind),
served on the loopback to every lab host's dnf. Metadata comes at once; a package takes
the time its build's size (packages.MIRROR_BANDWIDTH, a lab's packages are tens of MB)
needs at the lab's speed, since the RPM files themselves are empty. So a host's real
`yum update` lasts as long as the stand-in's, and `--downloadonly` is worth its time:
what dnf's cache holds is not fetched again.

    mirror = YumMirror(lab_dir / "repo", speed=lambda: pool.speed)
    mirror.start()            # mirror.url: http://127.0.0.1:PORT/
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.lab.http_thread import HttpThread
from rollup.lab.packages import MIRROR_BANDWIDTH, REPOSITORY_FILE, Repository
from rollup.lab.rpm_builds import MIRROR_DIR, file_name, real_packages, refresh

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

log = logging.getLogger(__name__)


class YumMirror:
    def __init__(
        self, repo_dir: Path, speed: Callable[[], float], address: str = "127.0.0.1"
    ) -> None:
        self.directory = repo_dir / MIRROR_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.speed = speed
        self._repository = repo_dir / REPOSITORY_FILE
        self._sizes: dict[str, int] = {}
        self.served: list[str] = []  # the packages it sent, in order
        self._read_at = 0.0
        self._lock = threading.Lock()
        handler = functools.partial(_Handler, self, directory=str(self.directory))
        self._http = HttpThread(handler, address, 0, "lab-yum-mirror")
        self.url = f"http://{address}:{self._http.port}/"

    @classmethod
    def started(
        cls, lab_dir: Path, pool: Callable[[], LabPool | None], speed: float
    ) -> YumMirror | None:
        """The mirror of a lab starting in `lab_dir`, serving; None where this machine
        lacks the real tools (lab/rpm_builds.py `real_packages`). Its pace is the pool's
        speed once the pool exists."""
        if not real_packages():
            return None

        def pace() -> float:
            made = pool()
            return made.speed if made is not None else speed

        mirror = cls(lab_dir / "repo", speed=pace)
        mirror.start()
        return mirror

    def delay(self, name: str) -> float:
        """Real seconds to serve file `name`: its build's size at the mirror's bandwidth."""
        size = self._sizes.get(name, 0) if name.endswith(".rpm") else 0
        return size / MIRROR_BANDWIDTH / max(self.speed(), 1e-6) if size else 0.0

    def follow(self) -> None:
        """Take in what was published since the last look (`rollup lab publish`, or a
        test's publish in the lab's own process): a mirror syncs from upstream, and a
        host's dnf asks for repomd.xml first every time (metadata_expire=0)."""
        with self._lock:
            try:
                changed = self._repository.stat().st_mtime
            except FileNotFoundError:
                return
            if changed == self._read_at:
                return
            repository = Repository.load(self._repository)
            refresh(repository)
            self._sizes = {file_name(b): b.size for b in repository.builds}
            self._read_at = changed

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        self._http.stop()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, mirror: YumMirror, *args: Any, **kwargs: Any) -> None:
        self.mirror = mirror
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        name = Path(self.path.split("?", 1)[0]).name
        if name == "repomd.xml":
            self.mirror.follow()
        wait = self.mirror.delay(name)
        if wait:
            time.sleep(wait)
        super().do_GET()
        if name.endswith(".rpm"):
            self.mirror.served.append(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("yum mirror: %s", format % args)
