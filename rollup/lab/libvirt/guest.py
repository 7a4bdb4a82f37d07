"""The libvirt lab's guests: a 560-byte multiboot kernel that counts on its serial port.

A guest that keeps counting across live migrations is the proof that it kept running: its
serial port is a file on the host it runs on (the host's own /var/log/libvirt, see
lab/libvirt/hosts.py), so after a move the count goes on, one higher, in the
destination's file. Between ticks the kernel halts, so an idle guest costs next to no
CPU under TCG (two cores run a lab of three hosts and four guests easily).

The kernel is written here as bytes, not downloaded or built at run time. It is the
output of this source (`as --32 counter.S && objcopy -O binary`), kept for review:

        .set BASE, 0x100000              # loaded at 1 MiB (multiboot "a.out kludge")
        header: magic 0x1BADB002, flags 0x00010000, checksum,
                header_addr = load_addr = BASE, load_end = bss_end = 0, entry = start
        start:  cli; lgdt gdtr; ljmp $0x08, reload     # our own flat GDT
        reload: ds = es = ss = 0x10; esp = 0x90000
                IDT gate 0x20 (IRQ0) -> tick; lidt idtr
                remap the PICs to 0x20/0x28, mask every IRQ but 0
                PIT channel 0: mode 2, divisor 65536 (18.2 Hz)
                ebx = counter = 0; ecx = ticks = 0; sti
        idle:   hlt; if ecx < 9: goto idle            # about two lines a second
                ecx = 0; ebx += 1; print "count ", decimal(ebx), "\\n" to COM1
                goto idle
        putc:   wait for LSR bit 5 (transmitter empty) at 0x3fd; out al to 0x3f8
        tick:   ecx += 1; EOI to the master PIC; iret
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

_CODE = bytes.fromhex(
    "02b0ad1b00000100fe4f51e40000100000001000000000000000000020001000fa0f011518011000ea2f0010"
    "00080066b810008ed88ec08ed0bc00000900b8ec001000bf2802100066890766c74702080066c74704008ec1"
    "e810668947060f011d1e011000b011e620e6a0b020e621b028e6a1b004e621b002e6a1b001e621e6a1b0fee6"
    "21b0ffe6a1b034e64330c0e640e64031db31c9fbf483f90972fa31c943bef4001000ac84c07407e829000000"
    "ebf489d831ff31d2be0a000000f7f6524785c075f1580430e80c0000004f75f5b00ae802000000ebbf89c252"
    "66bafd03eca82074f75866baf803eec34150b020e62058cf636f756e7420008d742600900000000000000000"
    "ffff0000009acf00ffff00000092cf001700000110000701280110008d7426"
)
KERNEL = _CODE.ljust(560, b"\0")  # the tail is the zeroed IDT the kernel fills in
GUEST_MEMORY_MIB = 48
SERIAL_DIR = "/var/log/libvirt/qemu"  # inside a host's namespace: its own log directory
_COUNT = re.compile(rb"count (\d+)")


def write_kernel(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(KERNEL)
    return path


def serial_path(name: str) -> str:
    """Where a guest's serial output goes, as the host's daemon sees its filesystem."""
    return f"{SERIAL_DIR}/{name}.serial"


def domain_xml(name: str, kernel: Path, memory_mib: int = GUEST_MEMORY_MIB) -> str:
    """A TCG guest with no disk: the kernel is on a path every lab host sees (shared)."""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'>
      <source path={quoteattr(serial_path(name))} append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def last_count(serial_log: Path) -> int | None:
    """The last counter value a guest wrote to a serial log, None if it wrote none."""
    try:
        found = _COUNT.findall(serial_log.read_bytes())
    except FileNotFoundError:
        return None
    return int(found[-1]) if found else None
