"""Generated lab pools of either flavor served over real HTTP, for tests, closed afterwards.

pools = ServedPools(loopback.prefix(50), seed=3, speed=1000.0)
served = pools.make("xenserver", "8.4.0", up_to_date=True)   # .pool, .server.url
...
pools.close()
"""

from __future__ import annotations

from typing import Any

from rollup.lab.generator import generate
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer

PASSWORD = "pw"


class Served:
    """A 4-host, 12-VM pool of `flavor` at `version`, its XenAPI at `server.url`."""

    def __init__(
        self, prefix: str, seed: int, speed: float, flavor: str, version: str, **options: Any
    ) -> None:
        layout = generate(4, 12, seed, prefix, version=version, flavor=flavor)
        self.pool = LabPool(layout, speed=speed, **options)
        self.server = XapiServer(self.pool, port=0, user="root", password=PASSWORD)
        self.server.start()

    def close(self) -> None:
        self.server.stop()
        self.pool.close()


class ServedPools:
    """Pools made for one test, all closed with it."""

    def __init__(self, prefix: str, seed: int, speed: float) -> None:
        self.prefix, self.seed, self.speed = prefix, seed, speed
        self.made: list[Served] = []

    def make(self, flavor: str = "xcp-ng", version: str = "8.3.0", **options: Any) -> Served:
        self.made.append(Served(self.prefix, self.seed, self.speed, flavor, version, **options))
        return self.made[-1]

    def close(self) -> None:
        for served in self.made:
            served.close()
