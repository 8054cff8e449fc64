"""Remote side: ``python3 -m payload.hostinfo`` prints what the
remote host is and whether it can run the payload, as one JSON object.

It runs from the payload on the remote host, so it imports nothing that
is not in the payload (no paramiko, no matplotlib).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

from payload.cpu import cpu_model
from payload.doorbell import DEFAULT_PATH as DOORBELL_PATH
from payload.kvm import uapi
from payload.kvm.vmm import Vm


def _caps() -> dict[str, Any]:
    if not os.path.exists("/dev/kvm"):
        return {"kvm": False, "cap_iofd": None, "cap_ioeventfd": None}
    try:
        with Vm() as vm:
            return {"kvm": True, "cap_iofd": vm.check_extension(uapi.KVM_CAP_IOFD),
                    "cap_ioeventfd": vm.kvm_check_extension(uapi.KVM_CAP_IOEVENTFD)}
    except OSError as e:
        return {"kvm": False, "cap_iofd": None, "cap_ioeventfd": None, "kvm_error": str(e)}


def collect() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "kernel": os.uname().release,
        "machine": os.uname().machine,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "root": os.geteuid() == 0,
        "doorbell": os.path.exists(DOORBELL_PATH),
        **_caps(),
    }


if __name__ == "__main__":
    json.dump(collect(), sys.stdout)
    print()
