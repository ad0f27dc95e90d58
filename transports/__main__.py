"""``python -m transports``: see :mod:`transports.cli`."""

import sys

from .cli import main

sys.exit(main())
