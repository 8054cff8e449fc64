"""``make bench``, the host's part: measure on a machine, render here.

* :mod:`.host`     boot the VM, run the payload's runner in it, render on the host
* :mod:`.measure`  run the runner on any :class:`~harness.machine.Machine`, fetch its raw data
* :mod:`.summary`  raw trials -> validated per-mode statistics (bench.json)
* :mod:`.targets`  the project's performance targets, read from bench.json
* :mod:`.report`   bench.md, the terminal table and the files
* :mod:`.chart`    bench.png

What runs where the patched KVM is (the modes, the rig, the runner, the
count checks) is :mod:`payload.bench`.
"""
