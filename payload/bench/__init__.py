"""The benchmark's part that runs where the patched KVM is.

* :mod:`.modes`    what each mode is and which counts it must produce (pure data,
                   shared with the host's report)
* :mod:`.checks`   the exact counts every trial must show, and ``verify``, the run's one
                   verdict (made on the host)
* :mod:`.rig`      one L2 VM per mode, wired for that mode
* :mod:`.runner`   ``python -m payload.bench.runner``: interleaved trials, written as raw JSON
"""
