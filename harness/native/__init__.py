"""The native (C) KVM_RUN loop used for benchmarking, built on demand."""

from harness.native.loop import NativeResult, run_native

__all__ = ["NativeResult", "run_native"]
