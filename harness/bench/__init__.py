"""``make bench``: the 2009 posting's results table, measured on the patched kernel.

* :mod:`.modes`    what each mode is and which counts it must produce (pure data)
* :mod:`.rig`      one L2 VM per mode, wired for that mode (runs in the VM)
* :mod:`.runner`   interleaved trials and per-trial checks (runs in the VM)
* :mod:`.checks`   the exact counts every trial must show (runner and host)
* :mod:`.summary`  raw trials -> validated per-mode statistics (bench.json)
* :mod:`.targets`  the project's performance targets, read from bench.json
* :mod:`.report`   bench.md, the terminal table and the files
* :mod:`.chart`    bench.png
* :mod:`.host`     boot the VM, run the runner in it, render on the host
"""
