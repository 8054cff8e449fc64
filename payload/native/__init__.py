"""The native (C) KVM_RUN loop used for benchmarking, built on demand."""

from payload.native.loop import NativeResult, run_native

__all__ = ["NativeResult", "run_native"]
