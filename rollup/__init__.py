"""rollup: rolling upgrades of hypervisor pools with no VM downtime."""

__version__ = "0.1.0"
