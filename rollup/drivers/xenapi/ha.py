"""HA and the pool's other automation, paused for a run and restored after it.

A part of XenApiDriver (rollup/drivers/xenapi/driver.py), kept apart so the driver's
module stays readable. What is paused: HA (pool.disable_ha, its heartbeat SRs and host
failures to tolerate kept to restore), and VMs' automatic start when their host boots
(pool.other_config auto_poweron, as Xen Orchestra does: xo-server PR #10104).
"""

from __future__ import annotations

import logging
import time

from rollup.drivers import HA_WAITS_FOR_VERSIONS, HaState
from rollup.drivers.xenapi.records import ROLLING_UPGRADE_KEY
from rollup.drivers.xenapi.session import Session, Timing
from rollup.errors import DriverError

log = logging.getLogger("rollup.drivers.xenapi")

AUTO_POWERON = "auto_poweron"  # pool.other_config: start VMs when their host boots


class HaControl:
    """Mixed into XenApiDriver, whose attributes these are."""

    api: Session
    timing: Timing

    def pause_ha(self) -> HaState:
        """HA off, and VMs' automatic start after a host boots (pool.other_config
        auto_poweron, as Xen Orchestra does: a VM started by a rebooting host breaks the
        evacuations after it); what they were is in the HaState."""
        pool = self.api.call("find the pool", "pool.get_all")[0]
        record = self.api.call("read the pool", "pool.get_record", pool)
        detail: list[tuple[str, str]] = []
        if record.get("other_config", {}).get(AUTO_POWERON) == "true":
            self._set_pool_config(pool, AUTO_POWERON, "false")
            detail.append((AUTO_POWERON, "true"))
            log.info("VMs' auto power-on is off for the run")
        if not record["ha_enabled"]:
            return HaState(enabled=False, detail=tuple(detail))
        srs = [
            self.api.call("read the HA statefile", "VDI.get_SR", vdi)
            for vdi in record.get("ha_statefiles", ())
        ]
        detail.append(("heartbeat_srs", ",".join(srs)))
        tolerate = str(record.get("ha_host_failures_to_tolerate", ""))
        detail.append(("host_failures_to_tolerate", tolerate))
        state = HaState(enabled=True, detail=tuple(detail))
        self.api.call("disable HA", "pool.disable_ha")
        log.info("HA disabled for the run (was on: %s)", dict(state.detail))
        return state

    def restore_ha(self, state: HaState) -> None:
        pool = self.api.call("find the pool", "pool.get_all")[0]
        detail = dict(state.detail)
        if detail.get(AUTO_POWERON) == "true":
            self._set_pool_config(pool, AUTO_POWERON, "true")
            log.info("VMs' auto power-on is on again")
        if not state.enabled or self.api.call("read the pool", "pool.get_ha_enabled", pool):
            return
        self._wait_out_rolling_upgrade(pool)
        srs = [sr for sr in detail.get("heartbeat_srs", "").split(",") if sr]
        self.api.call("enable HA again", "pool.enable_ha", srs, {})
        tolerate = detail.get("host_failures_to_tolerate", "")
        # 0 is where enable_ha leaves it; only a planned value needs setting back.
        if tolerate not in ("", "0"):
            self.api.call(
                "restore HA's host failures to tolerate",
                "pool.set_ha_host_failures_to_tolerate",
                pool,
                tolerate,
            )
        log.info("HA enabled again")

    def _wait_out_rolling_upgrade(self, pool: str) -> None:
        """xapi refuses pool.enable_ha in rolling-upgrade mode. Its db_gc leaves that mode
        up to 30 s after the hosts' platform and xapi versions agree again (xen-api
        db_gc.ml, helpers.ml Checks.RPU): then wait; while they differ, say which."""
        deadline = time.monotonic() + self.timing.rolling_upgrade_settle_seconds
        while True:
            config = self.api.call("read the pool", "pool.get_other_config", pool)
            if ROLLING_UPGRADE_KEY not in config:
                return
            hosts = self.api.call("read the hosts", "host.get_all_records")
            software = {rec["name_label"]: rec["software_version"] for rec in hosts.values()}
            compared = {
                (sw.get("platform_version", sw.get("product_version", "")), sw.get("xapi", ""))
                for sw in software.values()
            }
            if len(compared) > 1:
                running = ", ".join(
                    f"{name} {sw.get('product_version', '?')} (xapi {sw.get('xapi', '?')})"
                    for name, sw in sorted(software.items())
                )
                raise DriverError(
                    f"the pool's hosts run different versions ({running}), and xapi's"
                    " rolling-upgrade mode refuses HA",
                    HA_WAITS_FOR_VERSIONS,
                )
            if time.monotonic() >= deadline:
                raise DriverError(
                    "xapi's rolling-upgrade mode is still on although every host runs the same"
                    " versions: check the pool (xe pool-param-get param-name=other-config)",
                    "ROLLING_UPGRADE_STUCK",
                )
            time.sleep(self.timing.poll_interval)

    def _set_pool_config(self, pool: str, key: str, value: str) -> None:
        what = f"set the pool's {key} to {value}"
        self.api.call(what, "pool.remove_from_other_config", pool, key)
        self.api.call(what, "pool.add_to_other_config", pool, key, value)
