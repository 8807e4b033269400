"""``python -m robustbench_norm.cli``: the console script without installing it."""

import sys

from robustbench_norm.cli import main

sys.exit(main())
