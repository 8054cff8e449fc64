"""QEMU for ``make nvme``: Debian's QEMU source plus ``qemu-patch/``, built into the cache.

:mod:`source` makes the git tree (Debian's ``qemu`` source package, or
``QEMU_SRC``) with the series applied on a branch of its own; :mod:`build`
configures and builds only ``qemu-system-x86_64`` from it.
"""
