"""``python -m payload.fuzz [--seed S] [--cases N] [--seconds T]``: see the package doc.

The last lines printed are the rate (cases/s) and the coverage: the
distinct (operation, errno) pairs and access shapes the run saw.
"""

from __future__ import annotations

import argparse
import sys

from payload.fuzz import Mismatch, new_seed, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m payload.fuzz", description=__doc__)
    p.add_argument("--seed", type=int, help="replay this seed (default: a random one, printed first)")
    p.add_argument("--cases", type=int, help="stop after this many cases")
    p.add_argument("--seconds", type=float, help="stop after this long (default 20 s without --cases)")
    p.add_argument("--no-probes", action="store_true", help="only ioctls, no guest programs")
    p.add_argument(
        "--mainline",
        action="store_true",
        help="no KVM_IOFD calls: fuzz KVM_IOEVENTFD and probes on an unpatched kernel",
    )
    args = p.parse_args(argv)
    seed = new_seed() if args.seed is None else args.seed
    seconds = args.seconds if args.seconds is not None or args.cases is not None else 20.0
    try:
        run(
            seed,
            args.cases,
            seconds,
            probes=not args.no_probes,
            iofd=not args.mainline,
        )
    except Mismatch as exc:
        print(exc.report, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
