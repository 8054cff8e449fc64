"""The doorbell-bank device scenario of issue 16, against QEMU's NVMe emulation.

A small device model: 64 submission queues, each with a 4-byte tail
doorbell in one MMIO array (:mod:`payload.guest.queues`).  The guest writes
increasing tails in a pseudo-random queue order; a device thread wakes on
an eventfd, finds the queues whose tail moved and consumes them.  The same
guest work runs three ways in one run:

* (a) ``userspace``: every doorbell write exits (KVM_EXIT_MMIO); the VMM
  stores the tail and kicks the device;
* (b) ``shadow-ioeventfd``: QEMU NVMe's shadow doorbells, the guest storing
  each tail in RAM before ringing a doorbell with one KVM_IOEVENTFD per
  queue (64 registrations);
* (c) ``iofd-buffer``: one KVM_IOFD with KVM_IOFD_FLAG_BUFFER over the 64
  doorbells, no guest cooperation.

Modules: ``model`` (variants, the write pattern, the consumer; pure),
``checks`` (every check on a run and on the output; pure, and what the host
judges ``make bench``'s run with), ``thread`` (the device thread), ``rig``
(one VM per variant, its KVM_RUN loop :mod:`payload.native.bank`),
``runner`` (``python -m payload.device``: runs and writes JSON, no verdict;
its docstring has the JSON schema).  The targets are the host's
(:mod:`harness.bench.targets`, on :mod:`payload.stats`).
"""
