"""The host side: build, boot and benchmark the KVM_IOFD patch series.

``settings`` and ``flavours`` (what to build and how, resolved once),
``kernel`` (source, series, config, build, export, gates), ``vm``
(acceleration, boot, the console session), ``remote`` (SSH hosts),
``machine`` (what the VM and an SSH host have in common, and the jobs run
on either), ``kselftest`` (the upstream KVM selftests' verdict), ``bench``
(rendering and targets) and ``cli``.  What runs inside the VM or on a
remote host is the separate :mod:`payload` package.
"""
