"""The libvirt/KVM driver: a pool is an inventory group of libvirtd hosts."""
