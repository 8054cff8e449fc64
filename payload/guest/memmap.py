"""The L2 guest's memory and port map, shared by the VMM and the programs.

Memory map (real mode, CS = DS = 0, so guest address == offset):

* ``[0, RAM_SIZE)``: the VM's one memory slot.  Programs load at
  :data:`LOAD_ADDR`; the result word lives at :data:`RESULT_ADDR`.
* ``[MMIO_BASE, 0x10000)``: no memory slot, so every access there is MMIO
  (it exits to userspace unless something in the kernel claims it).  It is
  the part of segment 0 the RAM slot does not cover, which keeps every
  program addressable with plain 16-bit ``[moffs16]`` operands.
"""

RAM_SIZE = 0x8000
LOAD_ADDR = 0x1000
RESULT_ADDR = 0x0800
IDT_DESC_ADDR = 0x0900
"""Scratch pseudo-descriptor used by :func:`triple_fault`."""
XMM_DATA_ADDR = 0x0C00
"""16 bytes of RAM the SSE programs stage XMM0's value in."""

MMIO_BASE = RAM_SIZE
MMIO_LIMIT = 0x10000
MMIO_ADDR = 0xC000
"""Default MMIO address: unbacked, well inside [MMIO_BASE, MMIO_LIMIT).  It is
also a page boundary, where KVM splits an access that crosses it in two."""

PIO_PORT = 0x0600
"""Default test port: not emulated by any in-kernel device (PIC/PIT/...)."""
DONE_PORT = 0x00F4
"""Completion port (QEMU's isa-debug-exit number); see the module doc."""
ELCR_PORT = 0x04D0
"""PIC edge/level control register: emulated in the kernel once
KVM_CREATE_IRQCHIP has run, so writes there never reach userspace."""

GDT_ADDR = 0x0A00
"""A three-entry GDT (null, 16-bit code, 16-bit data) that the protected-mode
entry of :mod:`payload.guest.hypercall` writes and loads."""
GDT_DESC_ADDR = 0x0A18
"""Its 6-byte limit:base pseudo-descriptor, right after it."""
STATUS_ADDR = 0x0808
"""Where the hypercall programs store the last hypercall's status (EAX)."""
