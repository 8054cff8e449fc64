"""Shared by every test that runs inside the VM."""

from collections.abc import Iterator

import pytest

from payload import splat
from payload.eventfd import EventFd
from payload.kvm.vmm import Vm


@pytest.fixture(autouse=True)
def no_kernel_splat() -> Iterator[None]:
    """Fail a test whose run put a BUG/WARNING/KASAN/lockdep/... in the kernel log."""
    with splat.KmsgWatch() as watch:
        yield
    found = watch.splats()
    assert not found, "kernel log splat during the test:\n" + splat.describe(found)


@pytest.fixture
def vm() -> Iterator[Vm]:
    """A fresh VM (guest RAM, no vCPU yet), closed after the test."""
    with Vm() as machine:
        yield machine


@pytest.fixture
def efd() -> Iterator[EventFd]:
    """A non-blocking eventfd, closed after the test."""
    with EventFd() as fd:
        yield fd
