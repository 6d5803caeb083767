"""Tests for reward.typed_config: typed frozen-dataclass configs from YAML."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reward.typed_config import (
    ConfigError,
    check,
    config_hash,
    deep_merge,
    from_dict,
    load_yaml,
    param,
    parse_overrides,
    to_dict,
    validate,
)


@dataclasses.dataclass(frozen=True)
class Catalog:
    n_items: int = param(1000, ge=1, doc="Number of items.")
    zipf_a: float = param(1.1, gt=1.0, le=5.0)
    dist: Literal["zipf", "uniform"] = "zipf"
    weights: tuple[float, ...] = param((0.5, 0.5), ge=0.0, lt=1.0)
    tags: tuple[str, ...] = ("a", "b")
    sizes: tuple[int, ...] = param((1, 2, 3), gt=0)
    seed: int | None = None
    scale: float | None = param(None, ge=0.0)
    enabled: bool = True
    name: str = param("base", choices=("base", "big"))


@dataclasses.dataclass(frozen=True)
class Env:
    catalog: Catalog = dataclasses.field(default_factory=Catalog)
    slate_size: int = param(5, ge=1)
    min_slate: int = param(1, ge=1)
    discount: float = param(0.9, ge=0.0, lt=1.0)

    def __post_init__(self) -> None:
        check(self.min_slate <= self.slate_size, "min_slate", "must not exceed slate_size")
        check(
            self.slate_size <= self.catalog.n_items,
            "slate_size",
            "must not exceed catalog.n_items",
        )


@dataclasses.dataclass(frozen=True)
class PlainValueError:
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError("lo must be <= hi")


@dataclasses.dataclass(frozen=True)
class Root:
    env: Env = dataclasses.field(default_factory=Env)
    bounds: PlainValueError = dataclasses.field(default_factory=PlainValueError)
    # A nested default that differs from the nested class's own defaults.
    eval_env: Env = dataclasses.field(default_factory=lambda: Env(slate_size=3))
    extra: Catalog | None = None
    lr: float = param(1e-3, gt=0.0)


@dataclasses.dataclass(frozen=True)
class SelfValidating:
    x: int = param(1, ge=0)
    y: float = 0.5

    def __post_init__(self) -> None:
        validate(self)


@dataclasses.dataclass(frozen=True)
class BadDefault:
    x: int = param(-1, ge=0)


def _key(dotted: str) -> str:
    """Regex that the error message starts with the dotted key."""
    return "^" + re.escape(dotted) + ":"


# --------------------------------------------------------------------------
# Defaults and overrides.


def test_defaults_from_none_and_empty() -> None:
    assert from_dict(Root, None) == Root()
    assert from_dict(Root, {}) == Root()
    assert from_dict(Catalog, {}).weights == (0.5, 0.5)


def test_nested_override_keeps_other_defaults() -> None:
    cfg = from_dict(Root, {"env": {"catalog": {"n_items": 50}, "discount": 0.5}})
    assert cfg.env.catalog.n_items == 50
    assert cfg.env.catalog.zipf_a == 1.1
    assert cfg.env.discount == 0.5
    assert cfg.env.slate_size == 5
    assert cfg.bounds == PlainValueError()


def test_partial_nested_override_starts_from_field_default() -> None:
    cfg = from_dict(Root, {"eval_env": {"discount": 0.5}})
    assert cfg.eval_env.slate_size == 3  # from the field's default_factory
    assert cfg.eval_env.discount == 0.5


def test_optional_nested_and_optional_scalars() -> None:
    cfg = from_dict(Root, {"extra": {"n_items": 7}})
    assert cfg.extra == Catalog(n_items=7)
    assert from_dict(Root, {"extra": None}).extra is None
    cat = from_dict(Catalog, {"seed": 3, "scale": 2})
    assert cat.seed == 3
    assert cat.scale == 2.0 and type(cat.scale) is float
    assert from_dict(Catalog, {"seed": None}).seed is None


def test_conversions() -> None:
    cat = from_dict(Catalog, {"zipf_a": 2, "weights": [0, 0.25], "tags": ["x"], "sizes": [4]})
    assert type(cat.zipf_a) is float and cat.zipf_a == 2.0
    assert cat.weights == (0.0, 0.25) and all(type(w) is float for w in cat.weights)
    assert cat.tags == ("x",)
    assert cat.sizes == (4,)
    assert from_dict(Catalog, {"weights": []}).weights == ()


def test_prefix_is_used() -> None:
    with pytest.raises(ConfigError, match=_key("env.catalog.n_items")):
        from_dict(Env, {"catalog": {"n_items": 0}}, prefix="env")


# --------------------------------------------------------------------------
# Unknown keys and wrong types.


def test_unknown_key_names_full_key_and_valid_keys() -> None:
    with pytest.raises(ConfigError, match=_key("env.catalog.n_itemz")) as info:
        from_dict(Root, {"env": {"catalog": {"n_itemz": 5}}})
    msg = str(info.value)
    assert "unknown key" in msg
    assert "n_items" in msg and "zipf_a" in msg
    assert info.value.key == "env.catalog.n_itemz"


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=_key("bogus")):
        from_dict(Root, {"bogus": 1})


def test_non_string_key() -> None:
    with pytest.raises(ConfigError, match="must be strings"):
        from_dict(Catalog, {1: 2})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"env": {"slate_size": True}}, "env.slate_size"),  # bool for int
        ({"env": {"slate_size": 2.0}}, "env.slate_size"),  # float for int
        ({"env": {"slate_size": "3"}}, "env.slate_size"),  # str for int
        ({"env": {"discount": "0.5"}}, "env.discount"),  # str for float
        ({"env": {"discount": False}}, "env.discount"),  # bool for float
        ({"env": {"catalog": {"enabled": 1}}}, "env.catalog.enabled"),  # int for bool
        ({"env": {"catalog": {"enabled": "yes"}}}, "env.catalog.enabled"),  # str for bool
        ({"env": {"catalog": {"name": 3}}}, "env.catalog.name"),  # int for str
        ({"env": {"catalog": [1, 2]}}, "env.catalog"),  # list for nested
        ({"env": 3}, "env"),  # scalar for nested
        ({"env": {"catalog": {"weights": 0.5}}}, "env.catalog.weights"),  # scalar for tuple
        ({"env": {"catalog": {"weights": [0.5, "x"]}}}, "env.catalog.weights[1]"),
        ({"env": {"catalog": {"sizes": [1, 2.5]}}}, "env.catalog.sizes[1]"),
        ({"env": {"catalog": {"tags": ["a", 1]}}}, "env.catalog.tags[1]"),
        ({"env": {"catalog": {"seed": 1.5}}}, "env.catalog.seed"),  # optional int
        ({"extra": 5}, "extra"),  # optional nested
    ],
)
def test_wrong_types(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=_key(key)) as info:
        from_dict(Root, data)
    assert info.value.key == key


def test_wrong_type_message_names_types() -> None:
    with pytest.raises(ConfigError, match=r"expected int, got bool"):
        from_dict(Env, {"slate_size": True})
    with pytest.raises(ConfigError, match=r"expected a mapping, got list"):
        from_dict(Env, {"catalog": [1]})
    with pytest.raises(ConfigError, match=r"expected a mapping"):
        from_dict(Env, [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_rejected(bad: float) -> None:
    with pytest.raises(ConfigError, match=_key("env.discount") + ".*finite"):
        from_dict(Root, {"env": {"discount": bad}})
    with pytest.raises(ConfigError, match=_key("weights[0]") + ".*finite"):
        from_dict(Catalog, {"weights": [bad]})
    with pytest.raises(ConfigError, match=_key("scale") + ".*finite"):
        from_dict(Catalog, {"scale": bad})


def test_yaml_nan_and_inf_rejected() -> None:
    data = yaml.safe_load("env:\n  discount: .nan\n")
    with pytest.raises(ConfigError, match=_key("env.discount")):
        from_dict(Root, data)


# --------------------------------------------------------------------------
# Ranges and choices.


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        ({"n_items": 0}, "n_items", ">= 1"),  # ge
        ({"zipf_a": 1.0}, "zipf_a", "> 1.0"),  # gt
        ({"zipf_a": 5.5}, "zipf_a", "<= 5.0"),  # le
        ({"weights": [0.5, 1.0]}, "weights[1]", "< 1.0"),  # lt, per element
        ({"weights": [-0.1]}, "weights[0]", ">= 0.0"),  # ge, per element
        ({"sizes": [1, 0, 2]}, "sizes[1]", "> 0"),  # gt, int tuple
        ({"scale": -1.0}, "scale", ">= 0.0"),  # optional with range
        ({"name": "huge"}, "name", "one of"),  # choices
    ],
)
def test_ranges(data: dict, key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=_key(f"env.catalog.{key}")) as info:
        from_dict(Catalog, data, prefix="env.catalog")
    assert reason in info.value.reason


def test_range_boundaries_accepted() -> None:
    cat = from_dict(Catalog, {"n_items": 1, "zipf_a": 5.0, "weights": [0.0, 0.999]})
    assert cat.n_items == 1 and cat.zipf_a == 5.0
    assert from_dict(Catalog, {"scale": None}).scale is None


def test_literal_choices() -> None:
    assert from_dict(Catalog, {"dist": "uniform"}).dist == "uniform"
    with pytest.raises(ConfigError, match=_key("env.catalog.dist") + ".*one of"):
        from_dict(Root, {"env": {"catalog": {"dist": "normal"}}})


def test_bad_default_is_rejected_by_from_dict() -> None:
    with pytest.raises(ConfigError, match=_key("cfg.x") + ".*>= 0"):
        from_dict(BadDefault, {}, prefix="cfg")
    assert from_dict(BadDefault, {"x": 2}).x == 2


def test_validate_direct_construction() -> None:
    with pytest.raises(ConfigError, match=_key("x")):
        SelfValidating(x=-1)
    with pytest.raises(ConfigError, match=_key("y") + ".*expected float"):
        SelfValidating(y="1")  # type: ignore[arg-type]
    # Valid but non-canonical values are normalised.
    obj = SelfValidating(y=2)  # type: ignore[arg-type]
    assert type(obj.y) is float
    # validate on a plain config: range check with the given prefix.
    with pytest.raises(ConfigError, match=_key("top.n_items")):
        validate(Catalog(n_items=0), prefix="top")
    with pytest.raises(ConfigError, match=_key("env.catalog.weights[0]")):
        validate(Env(catalog=Catalog(weights=(2.0,))), prefix="env")
    validate(Root())


def test_validate_rejects_mapping_in_nested_field() -> None:
    env = Env.__new__(Env)
    object.__setattr__(env, "catalog", {"n_items": 3})
    for name in ("slate_size", "min_slate", "discount"):
        object.__setattr__(env, name, getattr(Env(), name))
    with pytest.raises(ConfigError, match=_key("catalog") + ".*Catalog instance"):
        validate(env)


def test_self_validating_from_dict_gets_prefix() -> None:
    with pytest.raises(ConfigError, match=_key("sv.x")):
        from_dict(SelfValidating, {"x": -5}, prefix="sv")


# --------------------------------------------------------------------------
# __post_init__ cross checks.


def test_post_init_cross_check_has_full_prefix() -> None:
    with pytest.raises(ConfigError, match=_key("env.min_slate") + ".*slate_size") as info:
        from_dict(Root, {"env": {"slate_size": 2, "min_slate": 3}})
    assert info.value.key == "env.min_slate"
    with pytest.raises(ConfigError, match=_key("eval_env.slate_size")):
        from_dict(Root, {"eval_env": {"catalog": {"n_items": 2}}})
    with pytest.raises(ConfigError, match=_key("run.env.slate_size")):
        from_dict(Root, {"env": {"slate_size": 2000}}, prefix="run")


def test_post_init_cross_check_at_top_level() -> None:
    with pytest.raises(ConfigError, match=_key("min_slate")):
        from_dict(Env, {"min_slate": 9})


def test_post_init_value_error_becomes_config_error() -> None:
    with pytest.raises(ConfigError, match=_key("bounds") + ".*lo must be <= hi") as info:
        from_dict(Root, {"bounds": {"lo": 2.0}})
    assert isinstance(info.value, ValueError)


def test_check_helper() -> None:
    check(True, "a", "never")
    with pytest.raises(ConfigError, match=_key("a.b") + " bad"):
        check(False, "a.b", "bad")


def test_config_error_str_and_pickle() -> None:
    err = ConfigError("a.b", "must be positive")
    assert str(err) == "a.b: must be positive"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.key, back.reason, str(back)) == (err.key, err.reason, str(err))
    assert str(err.with_prefix("root")) == "root.a.b: must be positive"
    assert ConfigError("w[0]", "x").with_prefix("c").key == "c.w[0]"


# --------------------------------------------------------------------------
# param.


def test_param_metadata() -> None:
    f = {f.name: f for f in dataclasses.fields(Catalog)}
    assert f["n_items"].metadata["doc"] == "Number of items."
    assert f["n_items"].metadata["ge"] == 1
    assert f["name"].metadata["choices"] == ("base", "big")


def test_param_rejects_mutable_default_and_bad_bound() -> None:
    with pytest.raises(TypeError):
        param([1, 2])
    with pytest.raises(TypeError):
        param({})
    with pytest.raises(TypeError):
        param(1, ge="0")


# --------------------------------------------------------------------------
# Overrides and merging.


def test_parse_overrides_strings_yaml_types() -> None:
    out = parse_overrides(
        [
            "env.catalog.n_items=3",
            "env.discount=0.5",
            "env.catalog.enabled=false",
            "env.catalog.weights=[0.1, 0.2]",
            "env.catalog.name=big",
            "env.catalog.seed=null",
            "lr=1e-4",
            "extra.tags=a=b",
        ]
    )
    assert out == {
        "env": {
            "catalog": {
                "n_items": 3,
                "enabled": False,
                "weights": [0.1, 0.2],
                "name": "big",
                "seed": None,
            },
            "discount": 0.5,
        },
        "lr": 1e-4,
        "extra": {"tags": "a=b"},
    }
    assert type(out["env"]["catalog"]["n_items"]) is int
    assert type(out["env"]["discount"]) is float
    assert type(out["lr"]) is float


def test_parse_overrides_mapping() -> None:
    out = parse_overrides({"catalog.n_items": 100_000, "catalog.dist": "uniform", "x": "3"})
    assert out == {"catalog": {"n_items": 100_000, "dist": "uniform"}, "x": "3"}


def test_parse_overrides_single_string_and_none() -> None:
    assert parse_overrides("a.b=1") == {"a": {"b": 1}}
    assert parse_overrides(None) == {}
    assert parse_overrides([]) == {}


def test_parse_overrides_later_wins() -> None:
    assert parse_overrides(["a.b=1", "a.b=2"]) == {"a": {"b": 2}}


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["env.catalog.n_items"], "env.catalog.n_items"),  # missing '='
        (["a..b=1"], "a..b"),
        (["=1"], ""),
        (["a.b=[1,"], "a.b"),  # invalid YAML
        (["a=1", "a.b=2"], "a.b"),  # leaf then parent
        (["a.b=2", "a=1"], "a"),  # parent then leaf
    ],
)
def test_parse_overrides_errors(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(overrides)
    assert info.value.key == key


def test_parse_overrides_missing_equals_message() -> None:
    with pytest.raises(ConfigError, match=_key("env.slate_size") + ".*'='"):
        parse_overrides(["env.slate_size"])


def test_overrides_end_to_end() -> None:
    base = {"env": {"catalog": {"n_items": 50}, "slate_size": 4}}
    merged = deep_merge(base, parse_overrides(["env.slate_size=6", "env.catalog.zipf_a=2"]))
    cfg = from_dict(Root, merged)
    assert cfg.env.catalog.n_items == 50
    assert cfg.env.catalog.zipf_a == 2.0
    assert cfg.env.slate_size == 6


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "s": 1}
    update = {"a": {"c": {"e": 3}, "b": 5}, "l": [3], "n": {"x": 1}}
    out = deep_merge(base, update)
    assert out == {"a": {"b": 5, "c": {"d": 2, "e": 3}}, "l": [3], "s": 1, "n": {"x": 1}}
    # Inputs untouched, no shared containers.
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "s": 1}
    assert update == {"a": {"c": {"e": 3}, "b": 5}, "l": [3], "n": {"x": 1}}
    out["a"]["c"]["d"] = 99
    out["n"]["x"] = 99
    assert base["a"]["c"]["d"] == 2 and update["n"]["x"] == 1


def test_deep_merge_replaces_non_dicts() -> None:
    assert deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


# --------------------------------------------------------------------------
# to_dict, round trip, hashing, YAML files.


def test_to_dict_plain_and_round_trip() -> None:
    cfg = from_dict(
        Root,
        {"env": {"catalog": {"weights": [0.1, 0.2], "seed": 4}}, "extra": {"tags": ["z"]}},
    )
    d = to_dict(cfg)
    assert d["env"]["catalog"]["weights"] == [0.1, 0.2]
    assert d["extra"]["tags"] == ["z"]
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert from_dict(Root, d) == cfg
    assert from_dict(Root, yaml.safe_load(yaml.safe_dump(d))) == cfg
    assert from_dict(Root, to_dict(Root())) == Root()


def test_config_hash() -> None:
    h = config_hash(Root())
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert config_hash(Root()) == h
    assert config_hash(from_dict(Root, to_dict(Root()))) == h
    assert config_hash(from_dict(Root, {"env": {"discount": 0.8}})) != h
    assert config_hash(from_dict(Root, {"env": {"catalog": {"tags": ["a", "c"]}}})) != h


def test_config_hash_canonical_float() -> None:
    a = from_dict(Catalog, {"zipf_a": 2})
    b = from_dict(Catalog, {"zipf_a": 2.0})
    assert config_hash(a) == config_hash(b)


def test_load_yaml(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("env:\n  catalog:\n    n_items: 20\n  discount: 5e-1\n", encoding="utf-8")
    data = load_yaml(good)
    assert data == {"env": {"catalog": {"n_items": 20}, "discount": 0.5}}
    assert from_dict(Root, data).env.discount == 0.5

    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_yaml(empty) == {}
    comment = tmp_path / "comment.yaml"
    comment.write_text("# nothing\n", encoding="utf-8")
    assert load_yaml(str(comment)) == {}

    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="list.yaml.*mapping"):
        load_yaml(listy)

    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_yaml(broken)

    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("a: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unsafe.yaml"):
        load_yaml(unsafe)


# --------------------------------------------------------------------------
# Property: any valid override round-trips.

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    n_items=st.integers(min_value=5, max_value=10**12),
    zipf_a=st.floats(min_value=1.0, max_value=5.0, exclude_min=True),
    weights=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), max_size=5),
    tags=st.lists(st.text(max_size=5), max_size=4),
    seed=st.none() | st.integers(),
    scale=st.none() | _finite.filter(lambda x: x >= 0),
    dist=st.sampled_from(["zipf", "uniform"]),
    enabled=st.booleans(),
)
def test_round_trip_property(
    n_items: int,
    zipf_a: float,
    weights: list[float],
    tags: list[str],
    seed: int | None,
    scale: float | None,
    dist: str,
    enabled: bool,
) -> None:
    data = {
        "env": {
            "catalog": {
                "n_items": n_items,
                "zipf_a": zipf_a,
                "weights": weights,
                "tags": tags,
                "seed": seed,
                "scale": scale,
                "dist": dist,
                "enabled": enabled,
            }
        }
    }
    cfg = from_dict(Root, data)
    assert cfg.env.catalog.weights == tuple(weights)
    assert from_dict(Root, to_dict(cfg)) == cfg
    assert config_hash(from_dict(Root, to_dict(cfg))) == config_hash(cfg)
    dumped = yaml.safe_load(yaml.safe_dump(to_dict(cfg)))
    assert from_dict(Root, dumped) == cfg


@dataclasses.dataclass(frozen=True)
class WithDerived:
    n: int = param(2, ge=1)
    derived: list[int] = dataclasses.field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", list(range(self.n)))


def test_init_false_fields_are_not_config() -> None:
    cfg = from_dict(WithDerived, {"n": 3})
    assert cfg.derived == [0, 1, 2]
    assert to_dict(cfg) == {"n": 3}
    validate(cfg)
    with pytest.raises(ConfigError, match=_key("derived") + ".*unknown key"):
        from_dict(WithDerived, {"derived": [1]})
