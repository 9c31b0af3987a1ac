"""``python -m fmriscaling.download``: see :mod:`fmriscaling.download.cli`."""

import sys

from .cli import main

sys.exit(main())
