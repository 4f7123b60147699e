"""`python -m tfprune`: the tfprune command line (see `tfprune.cli`)."""

import sys

from tfprune.cli import main

sys.exit(main())
