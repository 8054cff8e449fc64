"""The native (C) KVM_RUN loops, built on demand: the benchmark's
(:mod:`.loop`, vmexit_loop.c) and the doorbell-bank scenario's (:mod:`.bank`,
bank_loop.c), on the common loop of kvm_loop.h, compiled by :mod:`.build`
into the cache :mod:`.cache` names."""

from payload.native.loop import NativeResult, run_native

__all__ = ["NativeResult", "run_native"]
