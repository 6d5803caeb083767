"""Train a feed re-ranking policy: python train.py [--config NAME|PATH] [--set key=value ...].

Loads the config (configs/default.yaml unless --config names another), builds the job
and runs it; see ``rl-fyp train --help``. Until policy training lands, the job is the
simulate job: the greedy and MMR baselines on one seeded cohort, with 95% CIs.
"""

import sys

from rl_fyp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
