"""The lab: a simulated XenServer/XCP-ng pool that speaks the real XenAPI protocol."""
