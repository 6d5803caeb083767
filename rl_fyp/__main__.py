"""``python -m rl_fyp``: the ``rl-fyp`` command line."""

import sys

from rl_fyp.cli import main

sys.exit(main())
