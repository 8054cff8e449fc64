"""Run the benchmark and the guest tests on other machines over SSH.

For real numbers the TCG VM is not enough: a bare-metal box or a cloud VM
with nested virtualization that already runs the patched kernel is.  The
harness reaches it with paramiko (``--host ssh://user@host[:port]``),
copies the guest-side payload there, runs it and brings the results back.
"""
