"""Business rules after the policy: each rule holds, is relaxed only when it must be, and says so."""

from __future__ import annotations

import numpy as np
import pytest

from reward.typed_config import ConfigError
from rl_fyp.rules import BusinessRules, apply_rules, load_rules, preference_order

#              position: 0  1  2  3  4  5  6  7
CREATOR = np.array([7, 7, 8, 8, 9, 9, 5, 7])
TOPIC = np.array([0, 0, 0, 0, 1, 1, 2, 0])
EXPLORE = np.array([0, 0, 0, 0, 0, 0, 1, 1], bool)
PREF = np.arange(8)  # the policy prefers 0, 1, 2, ...


@pytest.mark.parametrize(
    "rules, k, expected, relaxed",
    [
        # No rule: the policy's order.
        (BusinessRules(), 4, [0, 1, 2, 3], []),
        # 0 and 1 share creator 7: 1 waits; 2 (creator 8) comes second, then 1, then 3.
        (BusinessRules(no_adjacent_creator=True), 4, [0, 2, 1, 3], []),
        # At most floor(0.5 * 4) = 2 of topic 0: then topics 1, 1.
        (BusinessRules(max_topic_share=0.5), 4, [0, 1, 4, 5], []),
        # Position 1 pinned to exploration: the best-preferred explorer (6) goes there.
        (BusinessRules(exploration_slots=(1,)), 4, [0, 6, 1, 2], []),
        # All together: 0; pinned -> 6; topic 0 has room for one more and creator != 5 -> 1;
        # topic 0 is full (2 of 4) -> 4.
        (BusinessRules(no_adjacent_creator=True, max_topic_share=0.5, exploration_slots=(1,)), 4, [0, 6, 1, 4], []),
        # A cap of 1 per topic over 5 positions with only 3 topics: topic 0 must repeat.
        (BusinessRules(max_topic_share=0.2), 5, [0, 4, 6, 1, 2], ["max_topic_share"]),
        # Pinned slots beyond k are ignored.
        (BusinessRules(exploration_slots=(9,)), 3, [0, 1, 2], []),
    ],
)
def test_rules_table(rules: BusinessRules, k: int, expected: list[int], relaxed: list[str]) -> None:
    slate, got = apply_rules(rules, PREF, k, CREATOR, TOPIC, EXPLORE)
    assert slate.tolist() == expected
    assert got == relaxed


def test_rules_relax_in_order_and_report_it() -> None:
    # One creator, one topic, no explorer: every rule must give way, and a slate still comes back.
    one = np.zeros(5, np.int64)
    rules = BusinessRules(no_adjacent_creator=True, max_topic_share=0.5, exploration_slots=(0,))
    slate, relaxed = apply_rules(rules, np.arange(5), 4, one, one, np.zeros(5, bool))
    assert slate.tolist() == [0, 1, 2, 3]
    assert relaxed == ["exploration_slots", "max_topic_share", "no_adjacent_creator"]


def test_rules_never_repeat_or_leave_the_preference() -> None:
    rng = np.random.default_rng(0)
    rules = BusinessRules(no_adjacent_creator=True, max_topic_share=0.3, exploration_slots=(2, 5))
    for _ in range(200):
        n = int(rng.integers(10, 40))
        pref = rng.permutation(n)[: int(rng.integers(10, n + 1))]
        creator, topic = rng.integers(0, 4, n), rng.integers(0, 3, n)
        slate, relaxed = apply_rules(rules, pref, 10, creator, topic, rng.random(n) < 0.2)
        assert len(set(slate.tolist())) == 10 and set(slate.tolist()) <= set(pref.tolist())
        if "no_adjacent_creator" not in relaxed:
            assert (creator[slate][1:] != creator[slate][:-1]).all()
        if "max_topic_share" not in relaxed:
            assert np.bincount(topic[slate]).max() <= 3


def test_preference_order_is_the_slate_then_scores() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3], np.float32)
    mask = np.array([1, 1, 1, 0, 1])
    assert preference_order(np.array([4, 0]), scores, mask).tolist() == [4, 0, 1, 2]


def test_rules_load_from_yaml_and_reject_bad_keys(tmp_path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("no_adjacent_creator: true\nmax_topic_share: 0.4\nexploration_slots: [3, 7]\n")
    rules = load_rules(f)
    assert rules == BusinessRules(no_adjacent_creator=True, max_topic_share=0.4, exploration_slots=(3, 7))
    f.write_text("max_topic_shares: 0.4\n")
    with pytest.raises(ConfigError, match="max_topic_shares: unknown key"):
        load_rules(f)
    f.write_text("max_topic_share: 0.0\n")
    with pytest.raises(ConfigError, match="max_topic_share: must be > 0"):
        load_rules(f)
    f.write_text("exploration_slots: [1, 1]\n")
    with pytest.raises(ConfigError, match="exploration_slots: must not repeat"):
        load_rules(f)
