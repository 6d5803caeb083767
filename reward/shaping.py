"""Potential-based shaping: ``F = gamma * phi(s') - phi(s)``, which leaves the optimal policy unchanged.

Retention is paid when a session ends, several requests after the slates that earned
it. Shaping moves credit earlier by rewarding the rise of a potential ``phi`` built from
observable proxies of what brings users back, and Ng, Harada & Russell (1999) show that a
potential difference of this form changes no optimal policy (when ``gamma`` is the
learner's discount).

The potential (all from the feedback the platform observes)::

    phi(s) = weight * (satisfaction_coef * sat(s) + engagement_coef * eng(s)),  phi(terminal) = 0

- ``sat``: running estimate of the session's satisfaction. At each step with seen
  videos, ``q = mean over seen videos of (min(watch_ratio, 1) - not_interested)`` (in
  [-1, 1]) and ``sat <- (1 - satisfaction_rate) * sat + satisfaction_rate * q``. It
  restarts at ``satisfaction_init`` when a session starts: the state after a step that
  ends a session is the first request of the next session.
- ``eng``: the user's recent engagement. At each step with seen videos,
  ``e = share of seen videos liked, shared, commented or followed`` and
  ``eng <- (1 - engagement_rate) * eng + engagement_rate * e``, carried across sessions.

``phi`` reads the shaping's own memory, a function of the observed history; it is a
potential on the simulator's state augmented with that memory, where the invariance holds.

Episode conventions, per user slot:

- ``reset(slots)`` (a fresh user) puts the slot in the initial state ``s_0``
  (``sat = satisfaction_init``, ``eng = engagement_init``). A slot never reset is reset
  by its first call.
- Churn is terminal: ``phi(s') = 0`` at the churn step, and the slot then stays in the
  absorbing terminal state (every later call gives ``F = 0``) until it is reset.
- Truncation (the horizon) is not terminal and the reward does not see it: ``phi(s_T)``
  keeps its value, which is consistent with the learner bootstrapping ``V(s_T)`` there.

So over the T steps of any episode (from a reset to the next reset),
``sum_t gamma^t F_t = gamma^T phi(s_T) - phi(s_0)``, with ``phi(s_T) = 0`` if it churned.
"""

from __future__ import annotations

import numpy as np

from reward.config import ShapingConfig
from reward.feedback import Feedback

__all__ = ["PotentialShaping", "engagement_signal", "satisfaction_signal"]


def satisfaction_signal(fb: Feedback) -> tuple[np.ndarray, np.ndarray]:
    """Per-step satisfaction proxy of each user.

    Returns:
        ``(q, has)``: (B,) float64 mean over the seen videos of
        ``min(watch_ratio, 1) - not_interested``, and (B,) bool, at least one video seen
        (``q`` is 0 where none was).
    """
    n = fb.seen.sum(axis=1).astype(np.float64)
    x = np.minimum(fb.watch_ratio.astype(np.float64), 1.0) - fb.not_interested
    total = np.where(fb.seen, x, 0.0).sum(axis=1)
    has = n > 0
    return np.divide(total, n, out=np.zeros_like(total), where=has), has


def engagement_signal(fb: Feedback) -> np.ndarray:
    """(B,) float64 share of the seen videos liked, shared, commented on or followed (0 if none seen)."""
    n = fb.seen.sum(axis=1).astype(np.float64)
    engaged = (fb.like | fb.share | fb.comment | fb.follow) & fb.seen
    total = engaged.sum(axis=1).astype(np.float64)
    return np.divide(total, n, out=np.zeros_like(total), where=n > 0)


class PotentialShaping:
    """Per-slot memory of the potential and its proxies; each call returns the shaping term.

    Args:
        cfg: the shaping config (``gamma``, ``weight``, coefficients, EMA rates, initial values).
    """

    def __init__(self, cfg: ShapingConfig) -> None:
        self.cfg = cfg
        self._sat: np.ndarray | None = None
        self._eng: np.ndarray | None = None
        self._phi: np.ndarray | None = None
        self._done: np.ndarray | None = None

    # ------------------------------------------------------------------ state
    def phi(self, sat: np.ndarray, eng: np.ndarray) -> np.ndarray:
        """The potential of non-terminal states with proxies ``sat`` and ``eng`` (arrays of any shape)."""
        c = self.cfg
        sat, eng = np.asarray(sat, np.float64), np.asarray(eng, np.float64)
        return c.weight * (c.satisfaction_coef * sat + c.engagement_coef * eng)

    @property
    def potential(self) -> np.ndarray:
        """(B,) float64 potential of each slot's current state (0 for a terminal one); a copy."""
        if self._phi is None:
            raise RuntimeError("PotentialShaping has no slots yet: call reset(slots) or step it first")
        return self._phi.copy()

    @property
    def satisfaction(self) -> np.ndarray:
        """(B,) float64 session-satisfaction estimate of each slot; a copy."""
        if self._sat is None:
            raise RuntimeError("PotentialShaping has no slots yet: call reset(slots) or step it first")
        return self._sat.copy()

    @property
    def engagement(self) -> np.ndarray:
        """(B,) float64 recent-engagement estimate of each slot; a copy."""
        if self._eng is None:
            raise RuntimeError("PotentialShaping has no slots yet: call reset(slots) or step it first")
        return self._eng.copy()

    def _allocate(self, n: int) -> None:
        self._sat = np.full(n, self.cfg.satisfaction_init, np.float64)
        self._eng = np.full(n, self.cfg.engagement_init, np.float64)
        self._phi = self.phi(self._sat, self._eng)
        self._done = np.zeros(n, np.bool_)

    def reset(self, slots: np.ndarray) -> None:
        """Put the given slots ((B,) bool mask) in the initial state ``s_0`` of a fresh user."""
        slots = np.asarray(slots, dtype=np.bool_)
        if self._sat is None or self._sat.shape[0] != slots.shape[0]:
            if self._sat is not None and not slots.all():
                raise ValueError(f"reset mask has {slots.shape[0]} slots, the shaping holds {self._sat.shape[0]}")
            self._allocate(slots.shape[0])
            return
        c = self.cfg
        self._sat[slots] = c.satisfaction_init
        self._eng[slots] = c.engagement_init
        self._phi[slots] = self.phi(c.satisfaction_init, c.engagement_init)
        self._done[slots] = False

    # ------------------------------------------------------------------ step
    def __call__(self, fb: Feedback) -> np.ndarray:
        """The shaping term of one step: (B,) float32 ``gamma * phi(s') - phi(s)``; updates the memory."""
        B = fb.batch_size
        if self._sat is None:
            self._allocate(B)
        if self._sat.shape[0] != B:
            raise ValueError(f"feedback has {B} users, the shaping holds {self._sat.shape[0]} slots")
        c = self.cfg
        q, has = satisfaction_signal(fb)
        e = engagement_signal(fb)
        sat = np.where(has, (1.0 - c.satisfaction_rate) * self._sat + c.satisfaction_rate * q, self._sat)
        eng = np.where(has, (1.0 - c.engagement_rate) * self._eng + c.engagement_rate * e, self._eng)
        # After a session end the next state is the first request of a new session.
        sat = np.where(fb.session_ended, c.satisfaction_init, sat)
        # Churn is terminal (phi = 0); a terminal slot stays terminal until reset.
        done = self._done | fb.churned
        phi_next = np.where(done, 0.0, self.phi(sat, eng))
        shaping = c.gamma * phi_next - self._phi
        keep = self._done  # already terminal: the memory stays as it was
        self._sat = np.where(keep, self._sat, sat)
        self._eng = np.where(keep, self._eng, eng)
        self._phi = phi_next
        self._done = done
        return shaping.astype(np.float32)
