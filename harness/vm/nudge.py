"""Interrupts from the host that keep a TCG test VM going while it runs an L2 guest.

Under Debian 12's QEMU (7.2) with TCG and nested SVM, the test VM
sometimes stops for good while nested KVM runs an L2 guest: its vCPU is
idle and no timer fires again, so even a ``timeout`` inside the VM never
expires.  It happened at one L2 boot in two or three, with or without
tracepoints and with ``idle=poll``.  While the host connected to the VM's
sshd every few seconds (an interrupt from its network card each time), 16
L2 boots in a row finished, in two runs.  That points at an interrupt
QEMU's TCG loses while the VM is in guest mode, which the next interrupt
recovers; it is QEMU's bug, not KVM's, and not one a KVM host has.

:class:`Nudger` is that workaround: a thread that opens a TCP connection
to the VM's forwarded sshd port every *interval* seconds, for as long as
the ``with`` block runs.  Boot the VM with ``BootOptions.ssh_port`` set.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nudger:
    """Connect to 127.0.0.1:*port* every *interval* seconds in a thread;
    :attr:`count` says how many connections were answered."""

    def __init__(self, port: int, interval: float = 2.0) -> None:
        self.port = port
        self.interval = interval
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nudger", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(2)
                    if s.recv(4):
                        self.count += 1
            except OSError:
                continue  # sshd not up yet, or slow: the next one will do

    def __enter__(self) -> Nudger:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
