"""Where a XenAPI pool keeps its run lock: `pool.other_config["rollup.lock"]`.

xapi has no compare-and-swap on other_config, but `add_to_other_config` refuses an
existing key (MAP_DUPLICATE_KEY), which is enough to create a lock atomically. Replacing
one reads it just before removing it: see rollup/drivers/run_lock.py for the window
that leaves.
"""

from __future__ import annotations

from rollup.drivers.xenapi.records import LOCK_KEY
from rollup.drivers.xenapi.session import Session
from rollup.errors import DriverError


class PoolConfigStore:
    """A LockStore in the pool's other_config, through the master's API."""

    def __init__(self, api: Session) -> None:
        self.api = api

    @property
    def pool(self) -> str:
        return str(self.api.call("read the pool's name", "pool.get_name_label", self._ref()))

    def read(self) -> str | None:
        return self._read(self._ref())

    def create(self, text: str) -> bool:
        return self._add(self._ref(), text)

    def replace(self, expected: str, text: str | None) -> bool:
        ref = self._ref()
        if self._read(ref) != expected:
            return False
        self.api.call("replace the run lock", "pool.remove_from_other_config", ref, LOCK_KEY)
        return text is None or self._add(ref, text)

    def _ref(self) -> str:
        # Looked up per operation, as the driver's other pool calls do: nothing to go stale.
        return str(self.api.call("find the pool", "pool.get_all")[0])

    def _read(self, ref: str) -> str | None:
        config = self.api.call("read the run lock", "pool.get_other_config", ref)
        return config.get(LOCK_KEY)

    def _add(self, ref: str, text: str) -> bool:
        try:
            self.api.call("take the run lock", "pool.add_to_other_config", ref, LOCK_KEY, text)
        except DriverError as exc:
            if exc.code == "MAP_DUPLICATE_KEY":
                return False
            raise
        return True
