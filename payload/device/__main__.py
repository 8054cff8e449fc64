"""``python -m payload.device``: see :mod:`payload.device.runner`."""

import sys

from payload.device.runner import main

sys.exit(main())
