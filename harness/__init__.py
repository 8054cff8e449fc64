"""Build, boot and benchmark the KVM_IOFD patch series.

The package is split by job: ``kernel`` (source, series, config, build),
``vm`` (acceleration, boot, console session, splat checks), ``kvm`` (uAPI
bindings and a minimal VMM), ``guest`` (L2 guest programs), ``doorbell``
(the doorbell module's uAPI), ``bench`` and ``cli``.
"""
