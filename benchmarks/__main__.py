"""python -m benchmarks [--quick] [--only SCENARIOS] [--libs LIBS]"""

import sys

from .run import main

sys.exit(main())
