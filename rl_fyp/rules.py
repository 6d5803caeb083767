"""Business rules a feed applies after the re-ranking policy, as a serving stage.

The policy proposes an order: its slate (best first), then every other valid candidate
by policy score. :func:`apply_rules` fills the K positions from that preference list,
skipping candidates a rule forbids:

- ``no_adjacent_creator``: no two videos of one creator back to back;
- ``max_topic_share``: at most ``max(1, floor(share * k))`` videos of one topic per slate;
- ``exploration_slots``: the listed positions (0-based) go to the best-preferred
  exploration candidate (a retrieval source in ``exploration_sources``, or a candidate
  the request flags), so a feed keeps a fixed share of exploration whatever the policy.

When no candidate satisfies every rule at a position (a request whose candidates all
share one creator, say), the rules are relaxed for that position in a fixed order (the
exploration pin first, then the topic cap, then the creator rule) and the response says
which were relaxed; a slate is always returned.

Rules load from YAML with the project's typed-config machinery
(``rl-fyp serve OUT_DIR --rules configs/serving/rules.yaml``); unknown keys and bad
values raise :class:`~reward.typed_config.ConfigError` naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reward.typed_config import check, load_typed, param

__all__ = ["RULE_NAMES", "BusinessRules", "apply_rules", "load_rules"]

RULE_NAMES = ("exploration_slots", "max_topic_share", "no_adjacent_creator")
"""Rule names in relaxation order (the first is given up first)."""

RULES_DIR = Path(__file__).resolve().parent.parent / "configs" / "serving"
"""Where named rule files live: ``load_rules("rules")`` reads ``configs/serving/rules.yaml``."""


@dataclass(frozen=True)
class BusinessRules:
    """Rules applied after the policy; the defaults apply none."""

    no_adjacent_creator: bool = param(False)
    """Never place two videos of one creator next to each other (needs candidate creator ids)."""
    max_topic_share: float = param(1.0, gt=0.0, le=1.0)
    """Largest share of a slate one topic may fill: at most ``max(1, floor(share * k))``
    videos per topic (1.0 = no cap; needs candidate topics)."""
    exploration_slots: tuple[int, ...] = param((), ge=0, le=1023)
    """Slate positions (0-based) pinned to exploration candidates; positions >= k are ignored."""
    exploration_sources: tuple[str, ...] = param(("explore", "fresh"))
    """Retrieval sources (``envs.retrieval.SOURCE_NAMES``) whose candidates count as exploration."""

    def __post_init__(self) -> None:
        check(
            len(set(self.exploration_slots)) == len(self.exploration_slots),
            "exploration_slots",
            f"must not repeat a position, got {list(self.exploration_slots)!r}",
        )

    @property
    def active(self) -> bool:
        """Whether any rule is switched on."""
        return self.no_adjacent_creator or self.max_topic_share < 1.0 or bool(self.exploration_slots)

    @property
    def needs_creator(self) -> bool:
        return self.no_adjacent_creator

    @property
    def needs_topic(self) -> bool:
        return self.max_topic_share < 1.0


def load_rules(path: str | os.PathLike[str], overrides: list[str] | None = None) -> BusinessRules:
    """Loads rules from a YAML file (or a name in ``configs/serving/``) plus dotted overrides."""
    from reward.typed_config import resolve_yaml

    return load_typed(BusinessRules, resolve_yaml(path, RULES_DIR, what="rules"), overrides)


def preference_order(slate: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The policy's preference over one request's valid candidates.

    Args:
        slate: (K,) the policy's slate, best first.
        scores: (N,) policy scores.
        mask: (N,) nonzero where a candidate is valid.

    Returns:
        (V,) valid candidate positions: the slate, then the rest by descending score.
    """
    rest = np.ones(len(scores), np.bool_)
    rest[slate] = False
    rest &= mask != 0
    others = np.flatnonzero(rest)
    others = others[np.argsort(-scores[others], kind="stable")]
    return np.concatenate([slate.astype(np.int64), others])


def apply_rules(
    rules: BusinessRules,
    preference: np.ndarray,
    k: int,
    creator: np.ndarray | None = None,
    topic: np.ndarray | None = None,
    exploration: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Fills k positions from a preference list under the rules (one request).

    Args:
        rules: The rules.
        preference: (V,) candidate positions, most preferred first, V >= k, no repeats.
        k: Slate length.
        creator: (N,) creator id per candidate (needed for ``no_adjacent_creator``).
        topic: (N,) topic id per candidate (needed for ``max_topic_share``).
        exploration: (N,) bool, exploration candidates (needed for ``exploration_slots``).

    Returns:
        ``(slate, relaxed)``: (k,) int64 positions in feed order, and the names of rules
        that had to be relaxed somewhere in this slate (empty if all held).
    """
    pref = np.asarray(preference, np.int64)
    if not rules.active:
        return pref[:k].copy(), []
    V = len(pref)
    used = np.zeros(V, np.bool_)
    cre = None if creator is None or not rules.no_adjacent_creator else np.asarray(creator)[pref]
    top = None
    if topic is not None and rules.max_topic_share < 1.0:
        _, top = np.unique(np.asarray(topic)[pref], return_inverse=True)  # dense topic ids
        counts = np.zeros(int(top.max()) + 1, np.int64)
    exp = None if exploration is None or not rules.exploration_slots else np.asarray(exploration, np.bool_)[pref]
    cap = max(1, int(np.floor(rules.max_topic_share * k + 1e-9)))
    pinned = set(p for p in rules.exploration_slots if p < k)
    out = np.empty(k, np.int64)
    relaxed: list[str] = []
    prev = -1
    for pos in range(k):
        free = ~used
        conds: list[tuple[str, np.ndarray]] = []
        if exp is not None and pos in pinned:
            conds.append(("exploration_slots", exp))
        if top is not None:
            conds.append(("max_topic_share", counts[top] < cap))
        if cre is not None and prev >= 0:
            conds.append(("no_adjacent_creator", cre != cre[prev]))
        # Drop conditions in relaxation order until some candidate remains.
        for start in range(len(conds) + 1):
            ok = free.copy()
            for _, c in conds[start:]:
                ok &= c
            if ok.any():
                relaxed.extend(name for name, _ in conds[:start] if name not in relaxed)
                break
        j = int(np.argmax(ok))  # the most preferred allowed candidate
        used[j] = True
        out[pos] = pref[j]
        if top is not None:
            counts[top[j]] += 1
        prev = j
    return out, sorted(relaxed, key=RULE_NAMES.index)
