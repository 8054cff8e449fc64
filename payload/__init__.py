"""What runs where the patched KVM is: the test VM, or a remote host.

It needs only the standard library (and pytest, for ``tests/payload``), so
``harness.remote`` can ship exactly this package to a bare host.  Nothing
here imports :mod:`harness`; the host side imports from here.

``kvm`` (uAPI bindings and a minimal VMM), ``guest`` (the L2 guest: its
memory map, an emitter and its programs), ``native`` (the C KVM_RUN loop),
``doorbell`` and ``eventfd`` (the counting module's and eventfd's
interfaces), ``bench`` (modes, checks and the runner), ``fuzz``,
``hostinfo``, ``splat`` (kernel log checks) and ``cpu``.
"""
