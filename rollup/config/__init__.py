"""Inventory and policy: what the user asked for, checked, as plain data."""
