"""Train a feed re-ranking policy: python train.py [--config NAME|PATH] [--set key=value ...].

Loads the config (configs/default.yaml unless --config names another), builds the job
and runs it: train the slate policy with RLlib, then A/B-test it against the baselines on
one seeded cohort with 95% CIs; see ``rl-fyp train --help``.
"""

import sys

from rl_fyp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
