"""The machine's CPU, as its benchmark records name it."""

from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``model name`` in /proc/cpuinfo ("unknown" if none)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """"amd" or "intel": which hypercall instruction KVM intercepts here
    (vmmcall or vmcall); "unknown" for anything else."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                name = line.split(":", 1)[1].strip()
                return {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(name, "unknown")
    except OSError:
        pass
    return "unknown"
