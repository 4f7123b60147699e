"""`python -m tfprune`: the tfprune command line (see `tfprune_cli`).

Python imports the `tfprune` package, and with it TensorFlow, before this
module runs, so TensorFlow's start-up log lines come first and
`TF_CPP_MIN_LOG_LEVEL` is read from the environment as it is; the
`tfprune` command answers help without TensorFlow and hides them.
"""

import sys

from tfprune.cli import main

sys.exit(main())
