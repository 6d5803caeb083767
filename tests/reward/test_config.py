"""RewardConfig: bad values fail with the full dotted key; presets load and differ."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reward import terms as T
from reward.config import (
    DEFAULT_PRESET,
    PRESETS,
    REWARD_CONFIG_DIR,
    EngagementWeights,
    RewardConfig,
    ShapingConfig,
    load_reward_config,
)
from reward.typed_config import ConfigError, from_dict, load_yaml, to_dict

BAD_VALUES = [
    # (data, full dotted key, part of the reason)
    ({"engagement": {"like": math.nan}}, "reward.engagement.like", "finite"),
    ({"shaping": {"gamma": math.inf}}, "reward.shaping.gamma", "finite"),
    ({"retention": {"return_gap_tau_h": -24.0}}, "reward.retention.return_gap_tau_h", "> 0"),
    ({"retention": {"return_gap_tau_h": 0.0}}, "reward.retention.return_gap_tau_h", "> 0"),
    ({"shaping": {"gamma": "high"}}, "reward.shaping.gamma", "expected float"),
    ({"shaping": {"enabled": 1}}, "reward.shaping.enabled", "expected bool"),
    ({"session": {"leave": [1.0]}}, "reward.session.leave", "expected float"),
    ({"engagement": 2.0}, "reward.engagement", "expected a mapping"),
    ({"disabled_terms": "like"}, "reward.disabled_terms", "expected list of str"),
    # Unknown term names: in the term list, and as a weight key.
    ({"disabled_terms": ["like", "lik"]}, "reward.disabled_terms[1]", "must be one of"),
    ({"engagement": {"lik": 2.0}}, "reward.engagement.lik", "did you mean 'like'"),
    ({"retention": {"churn_penalty": -1.0}}, "reward.retention.churn_penalty", "unknown key"),
    ({"disabled_terms": ["churn", "churn"]}, "reward.disabled_terms", "repeat"),
    # Signs: bonuses >= 0, penalties <= 0.
    ({"retention": {"churn": 5.0}}, "reward.retention.churn", "<= 0"),
    ({"engagement": {"not_interested": 4.0}}, "reward.engagement.not_interested", "<= 0"),
    ({"engagement": {"like": -2.0}}, "reward.engagement.like", ">= 0"),
    # Shaping ranges.
    ({"shaping": {"gamma": 0.0}}, "reward.shaping.gamma", "> 0"),
    ({"shaping": {"gamma": 1.01}}, "reward.shaping.gamma", "<= 1"),
    ({"shaping": {"satisfaction_rate": 0.0}}, "reward.shaping.satisfaction_rate", "> 0"),
    ({"optional": {"new_creator_max_followers": -1.0}}, "reward.optional.new_creator_max_followers", "> 0"),
]


@pytest.mark.parametrize(("data", "key", "reason"), BAD_VALUES, ids=[b[1] + ":" + b[2] for b in BAD_VALUES])
def test_bad_values_name_the_full_dotted_key(data, key, reason):
    with pytest.raises(ConfigError) as err:
        from_dict(RewardConfig, data, prefix="reward")
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert reason in err.value.reason


def test_bad_overrides_of_a_preset_name_the_key():
    with pytest.raises(ConfigError, match=r"^reward\.retention\.return_gap_tau_h: must be > 0"):
        load_reward_config("retention", ["retention.return_gap_tau_h=-3"])
    with pytest.raises(ConfigError, match=r"^reward\.engagement\.like: must be a finite number"):
        load_reward_config("retention", ["engagement.like=.nan"])
    with pytest.raises(ConfigError, match=r"^reward\.disabled_terms\[0\]: must be one of"):
        load_reward_config("retention", ["disabled_terms=[retention]"])


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match=r"^like: must be a finite number"):
        EngagementWeights(like=math.nan)
    with pytest.raises(ConfigError, match=r"^disabled_terms\[0\]: must be one of"):
        RewardConfig(disabled_terms=("nope",))
    with pytest.raises(ConfigError, match=r"^gamma: must be > 0"):
        ShapingConfig(gamma=-0.5)


def test_a_bad_value_in_a_preset_file_names_the_key_and_the_file(tmp_path: Path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("retention:\n  return_gap_tau_h: -1\n")
    with pytest.raises(ConfigError) as err:
        load_reward_config(bad)
    assert err.value.key == "reward.retention.return_gap_tau_h"
    assert str(bad) in err.value.reason


def test_a_missing_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="reward presets: engagement, retention"):
        load_reward_config("nope")


def test_presets_load_and_differ():
    engagement, retention = load_reward_config("engagement"), load_reward_config("retention")
    assert set(PRESETS) == {"engagement", "retention"}
    assert engagement != retention
    # Myopic: engagement terms only.
    assert engagement.active_terms == T.ENGAGEMENT_TERMS
    assert not engagement.shaping.enabled
    # Retention: the default, with session, retention and shaping terms on.
    assert retention == RewardConfig() == load_reward_config() == load_reward_config(DEFAULT_PRESET)
    for name in T.SESSION_TERMS + T.RETENTION_TERMS + T.SHAPING_TERMS:
        assert name in retention.active_terms
    # Both rate engagement the same: only what they add to it differs.
    assert engagement.engagement == retention.engagement


def test_the_retention_preset_lists_every_default():
    # The file restates RewardConfig(): every key present with the default's value.
    assert load_yaml(REWARD_CONFIG_DIR / "retention.yaml") == to_dict(RewardConfig())


def test_presets_load_by_path_and_with_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = REWARD_CONFIG_DIR / "engagement.yaml"
    assert load_reward_config(path) == load_reward_config("engagement")
    monkeypatch.chdir(tmp_path)  # "engagement.yaml" resolves in configs/reward from anywhere
    assert load_reward_config("engagement.yaml") == load_reward_config("engagement")
    cfg = load_reward_config("engagement", {"retention.churn": -10.0, "shaping.enabled": True})
    assert cfg.retention.churn == -10.0 and cfg.shaping.enabled
    assert T.TERM_CHURN in cfg.active_terms and T.TERM_SHAPING in cfg.active_terms


def test_round_trip_through_plain_data():
    cfg = load_reward_config("engagement", ["disabled_terms=[like, churn]", "shaping.gamma=0.9"])
    again = from_dict(RewardConfig, to_dict(cfg))
    assert again == cfg and again.disabled_terms == ("like", "churn")


def test_weights_name_every_term():
    cfg = RewardConfig()
    assert tuple(cfg.weights) == T.TERM_NAMES
    assert cfg.weights[T.TERM_SHAPING] == cfg.shaping.weight
    assert RewardConfig(shaping=ShapingConfig(enabled=False)).weights[T.TERM_SHAPING] == 0.0
    assert len(set(T.TERM_NAMES)) == len(T.TERM_NAMES)
