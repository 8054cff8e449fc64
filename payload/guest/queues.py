"""Guest programs for the doorbell-bank device (:mod:`payload.device`).

The device is NVMe-shaped: :data:`QUEUES` submission queues, each with a
4-byte tail doorbell, the doorbells packed into one array of MMIO registers
at :data:`DOORBELL_BASE` (queue ``q``'s at ``DOORBELL_BASE + 4 * q``).  The
guest "submits" by writing a queue's new tail into its doorbell, as
``writel(tail, q_db)`` does in Linux's NVMe driver.

Two shapes of the same work, built from one list of ``(queue, tail)``:

* :func:`doorbell_program` with ``shadow=False``: per write, ``mov ax, tail``
  then ``mov [doorbell], eax``.  Variants (a) and (c) of the scenario run
  it: the guest does nothing a real driver would not.
* with ``shadow=True``: the NVMe shadow-doorbell way (the Doorbell Buffer
  Config that QEMU's NVMe emulation uses with ioeventfd): the tail is first
  stored into a RAM shadow array at :data:`SHADOW_BASE` (same layout as the
  doorbells), and only then is the doorbell written.  An ioeventfd keeps no
  value, so the device reads tails from the shadow; the guest has to
  cooperate for that.  Variant (b) runs it.  Linux's driver rings the
  doorbell only when the shadow's event index says the device is asleep;
  this program always rings it, so every write costs one doorbell.

Why straight-line code rather than a loop: the emitter has no indexed
addressing and no ``add`` (every memory operand is an absolute
``[moffs16]``), so a loop cannot pick a queue or advance a tail.  Each write
is therefore emitted on its own, 7 bytes (11 with the shadow store), which
is why these programs get a larger RAM slot (:data:`QUEUE_RAM_SIZE`, all of
segment 0 below the doorbells) than :mod:`payload.guest.memmap`'s.

Every program starts with ``mov eax, 0`` (so ``mov ax, tail`` leaves EAX
equal to the tail) and ends with the usual epilogue of
:mod:`payload.guest.programs`: EAX = the number of doorbell writes, stored
at RESULT_ADDR and written to DONE_PORT, then ``hlt``.
"""

from __future__ import annotations

from collections.abc import Sequence

from payload.guest import memmap
from payload.guest.asm import Asm
from payload.guest.memmap import LOAD_ADDR, MMIO_ADDR, MMIO_LIMIT
from payload.guest.programs import Program, finish

QUEUES = 64
"""Submission queues, hence tail doorbells, of the device."""
DOORBELL_STRIDE = 4
"""Bytes per doorbell register (NVMe's with CAP.DSTRD = 0)."""
BANK_LEN = QUEUES * DOORBELL_STRIDE
"""Bytes of the doorbell array, and of the shadow array."""
DOORBELL_BASE = MMIO_ADDR
"""First doorbell: unbacked guest memory, page aligned, so the array lies in
one page and no 4-byte doorbell write is ever split by KVM."""
QUEUE_RAM_SIZE = DOORBELL_BASE
"""The RAM slot these programs need: [0, DOORBELL_BASE), so the doorbells
are the first unbacked bytes.  Pass it to ``Vm(mem_size=...)``."""
SHADOW_BASE = 0x0D00
"""The shadow doorbell array in guest RAM: below the program at LOAD_ADDR and
clear of every scratch area memmap names (see :func:`_check_layout`)."""
MAX_TAIL = 0xFFFF
"""Tails are written with ``mov ax, imm16`` (EAX's upper half is 0)."""

SCRATCH_SPAN = 0x20
"""Bytes assumed to belong to each ``*_ADDR`` scratch area of memmap below
LOAD_ADDR (the largest today, the GDT and its descriptor, takes 0x1E)."""


def scratch_areas() -> list[tuple[str, int]]:
    """memmap's ``*_ADDR`` names below LOAD_ADDR, with their addresses.

    Read from the module rather than imported one by one, so a scratch area
    added there later is checked against the shadow array too."""
    return sorted((name, value) for name, value in vars(memmap).items()
                  if name.endswith("_ADDR") and isinstance(value, int) and value < LOAD_ADDR)


def _overlaps(a: int, alen: int, b: int, blen: int) -> bool:
    return a < b + blen and b < a + alen


def _check_layout() -> None:
    """Fail at import if the constants above collide (cheap, and it keeps
    an edit to memmap from silently moving something onto the shadow)."""
    for name, start in scratch_areas():
        if _overlaps(SHADOW_BASE, BANK_LEN, start, SCRATCH_SPAN):
            raise AssertionError(f"shadow array overlaps memmap.{name} at {start:#x}")
    if SHADOW_BASE + BANK_LEN > LOAD_ADDR:
        raise AssertionError("shadow array runs into the program")
    if DOORBELL_BASE % 4096 or DOORBELL_BASE + BANK_LEN > MMIO_LIMIT:
        raise AssertionError("doorbell array must fill part of one unbacked page")


_check_layout()

# Bytes each piece emits (the listing test checks these against the code).
_PROLOGUE = 6  # 66 B8 id: mov eax, 0
_PER_WRITE = 3 + 4  # B8 iw: mov ax, tail;  66 A3 iw: mov [db], eax
_PER_SHADOW = 4  # 66 A3 iw: mov [shadow], eax
_EPILOGUE = 6 + 4 + 3 + 2 + 1 + 2  # mov eax, n; mov [RESULT], eax; mov dx; out; hlt; jmp


def doorbell(queue: int) -> int:
    """Guest physical address of ``queue``'s tail doorbell."""
    _check_queue(queue)
    return DOORBELL_BASE + DOORBELL_STRIDE * queue


def shadow(queue: int) -> int:
    """Guest address of ``queue``'s slot in the RAM shadow array."""
    _check_queue(queue)
    return SHADOW_BASE + DOORBELL_STRIDE * queue


def _check_queue(queue: int) -> None:
    if not 0 <= queue < QUEUES:
        raise ValueError(f"queue {queue} is not in 0..{QUEUES - 1}")


def max_writes(shadow_first: bool) -> int:
    """How many doorbell writes fit in :data:`QUEUE_RAM_SIZE` above LOAD_ADDR."""
    room = QUEUE_RAM_SIZE - LOAD_ADDR - _PROLOGUE - _EPILOGUE
    return room // (_PER_WRITE + (_PER_SHADOW if shadow_first else 0))


def doorbell_program(writes: Sequence[tuple[int, int]], shadow_first: bool) -> Program:
    """Write each ``(queue, tail)`` to its doorbell, in order, then DONE.

    With ``shadow_first`` each tail is stored to the queue's shadow slot
    before its doorbell is written (the shadow-doorbell protocol).  Raises
    ValueError for a queue or tail out of range, or more writes than fit.
    """
    if len(writes) > max_writes(shadow_first):
        raise ValueError(f"{len(writes)} writes do not fit in guest RAM "
                         f"(at most {max_writes(shadow_first)})")
    a = Asm(LOAD_ADDR)
    a.mov_imm("eax", 0)
    for queue, tail in writes:
        if not 0 <= tail <= MAX_TAIL:
            raise ValueError(f"tail {tail} of queue {queue} does not fit in 16 bits")
        a.mov_imm("ax", tail)
        if shadow_first:
            a.store(shadow(queue), "eax")
        a.store(doorbell(queue), "eax")
    a.mov_imm("eax", len(writes))
    name = "doorbells_shadowed" if shadow_first else "doorbells"
    return finish(a, name, len(writes), result="eax")
