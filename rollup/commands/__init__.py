"""What each command does, between the argument parser and the layers below.

Light on purpose: `rollup --help` imports this package and must not pay for drivers.
"""
