"""payload.eventfd on the host: eventfds need no KVM."""

import os

from payload.eventfd import EventFd


def test_counter_adds_up_and_drain_resets_it() -> None:
    with EventFd(initval=2) as e:
        e.write()
        e.write(4)
        assert e.drain() == 7
        assert e.drain() == 0


def test_close_is_idempotent_and_never_closes_a_reused_number() -> None:
    e = EventFd()
    e.close()
    other = os.eventfd(0)  # may reuse e's old number
    try:
        e.close()
        os.eventfd_write(other, 1)  # still open
    finally:
        os.close(other)
    assert e.fd == -1
