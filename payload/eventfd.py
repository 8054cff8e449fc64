"""A non-blocking eventfd, as the VMM, the doorbell and the tests use it."""

from __future__ import annotations

import os


class EventFd:
    """A non-blocking, close-on-exec eventfd with an idempotent close.

    Idempotent because tests close it mid-test (to provoke EPOLLHUP in the
    doorbell, or to race a vCPU), and closing a number twice could close an
    unrelated fd that reused it.
    """

    def __init__(self, initval: int = 0) -> None:
        self.fd = os.eventfd(initval, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def write(self, value: int = 1) -> None:
        os.eventfd_write(self.fd, value)

    def drain(self) -> int:
        """Read and reset the counter: what no one else consumed; 0 if nothing."""
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> EventFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
