"""The simulator calibrated to real feed logs: KuaiRand-Pure.

Split by role:

- :mod:`envs.kuairand.data`: the loader (``pyarrow.csv`` under explicit schemas), the
  fit / held-out split, :class:`~envs.kuairand.data.FeedLog`;
- :mod:`envs.kuairand.stats`: the log statistics, one definition for real and simulated
  logs (sessions, return gaps, watch ratios, rates, KS, AUC);
- :mod:`envs.kuairand.world`: the data-driven catalog and population from the derived
  world file (checksum-checked, no pickle);
- :mod:`envs.kuairand.simulate`: simulated impression logs of the world;
- :mod:`envs.kuairand.fit`: the calibration (``rl-fyp calibrate``), fit days only;
- :mod:`envs.kuairand.fidelity`: the fidelity report against the held-out days
  (``rl-fyp fidelity``).

A config selects the data-driven world with ``env.world.source: kuairand``
(``configs/kuairand.yaml``); :class:`envs.core.FeedSimulator` then builds its catalog and
users from the world file.

Data: KuaiRand (Gao et al., CIKM 2022, https://kuairand.com), CC BY-SA 4.0; every derived
file credits it and keeps the license.
"""

from envs.kuairand.data import FIT_DATES, HELDOUT_DATES, DataError, FeedLog, KuaiRandData, load_kuairand

__all__ = ["DataError", "FIT_DATES", "FeedLog", "HELDOUT_DATES", "KuaiRandData", "load_kuairand"]
