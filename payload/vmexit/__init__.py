"""The vmexit benchmark, the part of ``make bench`` that runs where the patched KVM is.

Like kvm-unit-tests' vmexit, it times one guest access per mode (a doorbell
write caught by KVM_IOFD, by KVM_IOEVENTFD, by userspace; the floors); the
host's part, which judges and renders what it wrote, is :mod:`harness.bench`.

* :mod:`.modes`    what each mode is and which counts it must produce (pure data,
                   shared with the host's report)
* :mod:`.checks`   the exact counts every trial must show, and ``verify``, the run's one
                   verdict (made on the host)
* :mod:`.rig`      one L2 VM per mode, wired for that mode
* :mod:`.runner`   ``python -m payload.vmexit.runner``: interleaved trials, written as raw JSON
"""
