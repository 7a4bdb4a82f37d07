"""The libvirt lab: real libvirtd hosts and QEMU guests on loopback."""
