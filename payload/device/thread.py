"""The device thread: wake on the eventfd, load the 64 tails, consume.

One thread per run, started before KVM_RUN and stopped after DONE.  It
blocks in read(2) on the device's eventfd (a blocking one); each read that
returns guest signals is a wakeup: it loads every tail with one 4-byte load
each (a ctypes ``c_uint32`` array: the width the guest wrote, so a tail is
never seen half written) and hands them to the :class:`Consumer`.

Stopping: the main thread adds :data:`STOP` to the eventfd's counter.
Guest signals add 1 each and a run makes far fewer than STOP, so a read of
``STOP + k`` means "stop" and ``k`` last signals.  The thread then loads the
tails once more (the drain) and exits.  That costs no extra syscall per
wakeup, which a second fd and poll(2) would.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

from payload.device.model import DeviceRecord
from payload.guest.queues import QUEUES

STOP = 1 << 40
"""Added to the eventfd to stop the thread (the counter's limit is 2**64 - 2)."""
JOIN_TIMEOUT_S = 30.0


class DeviceThread(threading.Thread):
    """Consumes the tails at ``tails_addr`` whenever ``efd`` is signalled."""

    def __init__(self, efd: int, tails_addr: int, record: DeviceRecord | None = None) -> None:
        super().__init__(name="doorbell-device", daemon=True)
        self.efd = efd
        self.tails = (ctypes.c_uint32 * QUEUES).from_address(tails_addr)
        self.record = record or DeviceRecord()
        self.error: BaseException | None = None

    def run(self) -> None:
        # The vCPU's time limit is a SIGALRM for the main thread's KVM_RUN;
        # delivered here it would only restart this read.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self._serve()
        except BaseException as e:  # reported by stop(), not lost in the thread
            self.error = e

    def _serve(self) -> None:
        record, consumer, tails = self.record, self.record.consumer, self.tails
        while True:
            count = os.eventfd_read(self.efd)
            stopping = count >= STOP
            signals = count - STOP if stopping else count
            if signals:
                record.wakeups += 1
                record.signals += signals
                loaded = tails[:]  # one 4-byte load per queue
                consumer.observe(loaded)
                record.snapshots.append((record.signals, loaded))
            if stopping:
                record.cpu_ns = time.thread_time_ns()
                break
        record.consumed_by_signals = list(consumer.consumed or [0] * len(tails))
        record.final = tails[:]
        consumer.observe(record.final)

    def stop(self) -> DeviceRecord:
        """Make the thread drain and exit; its record, or its exception raised."""
        os.eventfd_write(self.efd, STOP)
        self.join(JOIN_TIMEOUT_S)
        if self.is_alive():
            raise RuntimeError(f"the device thread did not stop within {JOIN_TIMEOUT_S:g} s")
        if self.error is not None:
            raise self.error
        return self.record
