"""Wording shared by every layer: plurals and quoting of echoed values."""
