"""``make bench``, the host's part: measure on a machine, render here.

* :mod:`.host`     boot the VM, run the payload's runner in it, render on the host
* :mod:`.measure`  run the runner on any :class:`~harness.machine.Machine`, fetch its raw data
* :mod:`.summary`  raw trials -> judged (:func:`payload.vmexit.checks.verify`, the run's one
                   verdict), then per-mode statistics (bench.json)
* :mod:`.targets`  every performance target, the modes' and the doorbell-bank scenario's
* :mod:`.report`   bench.md, the terminal table and the files
* :mod:`.chart`    bench.png

What runs where the patched KVM is (the modes, the rig, the runner) is
:mod:`payload.vmexit` and :mod:`payload.device`; the checks the host makes on
what they wrote are theirs too (:mod:`payload.vmexit.checks`,
:mod:`payload.device.checks`: pure, and importing no runner).
"""
