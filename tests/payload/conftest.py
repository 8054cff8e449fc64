"""Shared by every test that runs inside the VM."""

from collections.abc import Iterator

import pytest

from payload import splat


@pytest.fixture(autouse=True)
def no_kernel_splat() -> Iterator[None]:
    """Fail a test whose run put a BUG/WARNING/KASAN/lockdep/... in the kernel log."""
    with splat.KmsgWatch() as watch:
        yield
    found = watch.splats()
    assert not found, "kernel log splat during the test:\n" + splat.describe(found)
