"""Typed configuration trees: frozen dataclasses loaded from YAML.

A configuration is a tree of frozen dataclasses whose leaves are scalars
(``int``, ``float``, ``bool``, ``str``), ``typing.Literal`` choices,
homogeneous tuples (``tuple[float, ...]``) or optional versions of those.
Every field has a default, so an empty mapping gives the default config and
a YAML file (or a list of command-line overrides) only names what changes.

Example::

    from __future__ import annotations

    import dataclasses
    from typing import Literal

    from reward.typed_config import check, from_dict, param


    @dataclasses.dataclass(frozen=True)
    class Catalog:
        n_items: int = param(10_000, ge=1, doc="Number of items.")
        mode: Literal["zipf", "uniform"] = "zipf"

    @dataclasses.dataclass(frozen=True)
    class Env:
        catalog: Catalog = dataclasses.field(default_factory=Catalog)
        slate_size: int = param(5, ge=1)

        def __post_init__(self) -> None:
            check(self.slate_size <= self.catalog.n_items, "slate_size",
                  "must not exceed catalog.n_items")

    cfg = from_dict(Env, {"catalog": {"n_items": 100}}, prefix="env")

Errors are :class:`ConfigError` (a ``ValueError``) whose message always
starts with the full dotted key, e.g. ``env.catalog.n_items: must be >= 1,
got 0``.

Range metadata understood by :func:`validate` (set with :func:`param`, or
directly in ``dataclasses.field(metadata=...)``): ``ge``, ``gt``, ``le``,
``lt`` (numbers, and each element of numeric tuples) and ``choices`` (the
value, or each element of a tuple, must be one of them).

YAML is parsed in safe mode with one change from plain ``yaml.safe_load``:
scientific notation without a decimal point (``1e-3``, ``5E+6``) resolves to
a float instead of a string (PyYAML follows YAML 1.1, which needs ``1.0e-3``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "load_typed",
    "resolve_yaml",
    "ConfigError",
    "check",
    "config_hash",
    "deep_merge",
    "from_dict",
    "load_yaml",
    "param",
    "parse_overrides",
    "to_dict",
    "validate",
]

T = TypeVar("T")

_RANGE_KEYS = ("ge", "gt", "le", "lt")
_MUTABLE_DEFAULTS = (list, dict, set, bytearray)


class ConfigError(ValueError):
    """An invalid configuration value.

    The message is ``"<dotted key>: <reason>"``. The exception pickles
    cleanly (``args`` is ``(key, reason)``), so it survives being sent
    between Ray workers.

    Attributes:
        key: Full dotted key of the offending value, e.g.
            ``env.catalog.n_items`` (tuple elements as ``a.b[2]``), or a file
            name for errors about a whole file.
        reason: What is wrong with it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" if self.key else self.reason

    def with_prefix(self, prefix: str) -> ConfigError:
        """Returns a copy whose key is ``prefix`` joined with this key.

        Args:
            prefix: Dotted key of the enclosing config; empty for none.

        Returns:
            A new :class:`ConfigError` with the same reason.
        """
        return ConfigError(_join(prefix, self.key), self.reason)


def check(cond: bool, key: str, reason: str) -> None:
    """Raises :class:`ConfigError` unless ``cond`` holds.

    Meant for cross-field checks in a config dataclass's ``__post_init__``;
    ``key`` is relative to that dataclass and :func:`from_dict` prefixes it
    with the dataclass's own dotted key.

    Args:
        cond: The condition that must hold.
        key: Key (relative to the dataclass) that the error is about.
        reason: Explanation shown when ``cond`` is false.

    Raises:
        ConfigError: If ``cond`` is false.
    """
    if not cond:
        raise ConfigError(key, reason)


def param(
    default: Any,
    *,
    doc: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable[Any] | None = None,
) -> Any:
    """Declares a config field with a default, a description and range checks.

    Use it as ``n_items: int = param(10_000, ge=1, doc="...")``. Tuples are
    fine as defaults; nested dataclasses use
    ``dataclasses.field(default_factory=Sub)`` instead.

    Args:
        default: Default value (immutable: scalars, tuples, ``None``).
        doc: Human-readable description, stored as ``metadata["doc"]``.
        ge: Inclusive lower bound.
        gt: Exclusive lower bound.
        le: Inclusive upper bound.
        lt: Exclusive upper bound.
        choices: Allowed values. For tuple fields, bounds and choices apply to
            each element.

    Returns:
        A ``dataclasses.field`` carrying the metadata read by :func:`validate`.

    Raises:
        TypeError: If ``default`` is mutable (list, dict, set) or a bound is
            not a real number.
    """
    if isinstance(default, _MUTABLE_DEFAULTS):
        raise TypeError(
            f"mutable default {default!r} for a config field: use a tuple, or "
            "dataclasses.field(default_factory=...)"
        )
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    for name, bound in bounds.items():
        if bound is not None and not _is_real(bound):
            raise TypeError(f"param bound {name}={bound!r} is not a real number")
    metadata: dict[str, Any] = {"doc": doc, **bounds}
    metadata["choices"] = None if choices is None else tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Builds a (nested) config dataclass from a plain mapping.

    Starts from the defaults and overrides only the keys present in ``data``
    (recursively for nested dataclasses). Every value, given or default, is
    type-checked, converted (``int`` to ``float``, list to tuple) and
    range-checked before the dataclass is built, so ``__post_init__`` sees
    well-typed values.

    Args:
        cls: A dataclass type, typically frozen.
        data: Mapping as produced by ``yaml.safe_load``; ``None`` means empty.
        prefix: Dotted key of this config within a larger tree, used in error
            messages (e.g. ``"env"``).

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: On an unknown key, a value of the wrong type, a
            non-finite float, a value out of range, or a failed
            ``__post_init__`` check (a ``ValueError`` there is re-raised as a
            ``ConfigError``); the message names the full dotted key.
        TypeError: If ``cls`` is not a dataclass or has an annotation this
            module does not support.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    return _build(cls, data, prefix, base=None)


def validate(obj: Any, prefix: str = "") -> None:
    """Checks types and range metadata of every field of a config, recursively.

    Only constructor fields (``init=True``) are checked: ``init=False``
    fields are derived values, not configuration, and may have any type.
    Config dataclasses may call ``validate(self)`` in ``__post_init__`` so that
    direct construction is checked as strictly as :func:`from_dict`. Values
    that are valid but not canonical are normalised in place (``int`` to
    ``float`` in float fields, list to tuple in tuple fields, numpy scalars to
    Python ones), so that :func:`to_dict` and :func:`config_hash` are stable.

    Args:
        obj: A dataclass instance.
        prefix: Dotted key of ``obj`` within a larger tree, for messages.

    Raises:
        ConfigError: If a field has the wrong type, a non-finite float or a
            value out of range.
        TypeError: If ``obj`` is not a dataclass instance or has an
            unsupported annotation.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"validate needs a dataclass instance, got {obj!r}")
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        key = _join(prefix, f.name)
        value = getattr(obj, f.name)
        new = _coerce(value, hints[f.name], key, raw=False)
        _check_range(new, f.metadata, key)
        if new is not value:
            object.__setattr__(obj, f.name, new)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Converts a config dataclass to plain, YAML-serialisable data.

    Nested dataclasses become dicts and tuples become lists. Only fields
    accepted by the constructor (``init=True``) are included, so
    ``from_dict(type(cfg), to_dict(cfg)) == cfg``.

    Args:
        cfg: A dataclass instance.

    Returns:
        A new nested dict.

    Raises:
        TypeError: If ``cfg`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {cfg!r}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def config_hash(cfg: Any) -> str:
    """Short stable fingerprint of a config.

    Args:
        cfg: A dataclass instance.

    Returns:
        The first 16 hex characters of the SHA-256 of the canonical JSON of
        :func:`to_dict` (sorted keys, no whitespace).
    """
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Turns dotted-key overrides into a nested dict.

    Args:
        overrides: Either a mapping of dotted keys to values
            (``{"catalog.n_items": 100_000}``; values are used as they are),
            or strings ``"key.sub=value"`` whose value is parsed as YAML
            (``3`` int, ``0.5`` and ``1e-3`` float, ``true`` bool, ``[1, 2]``
            list, ``null`` None, ``foo`` str). A single string counts as one
            override; ``None`` as none.

    Returns:
        A new nested dict, ready for :func:`deep_merge` with a loaded file.

    Raises:
        ConfigError: If a string has no ``=``, a key is empty or has an empty
            part, a value is not valid YAML, or one key is set both as a
            value and as a parent of another key (``a=1`` and ``a.b=2``).
    """
    result: dict[str, Any] = {}
    if overrides is None:
        return result
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        if isinstance(overrides, str):
            overrides = [overrides]
        items = []
        for text in overrides:
            if not isinstance(text, str):
                raise ConfigError(repr(text), "override must be a 'key=value' string")
            key, sep, raw = text.partition("=")
            if not sep:
                raise ConfigError(text.strip(), "override must have the form 'key=value' (no '=' found)")
            key = key.strip()
            try:
                value = yaml.load(raw, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
            except yaml.YAMLError as e:
                raise ConfigError(key, f"value {raw!r} is not valid YAML: {e}") from None
            items.append((key, value))
    for key, value in items:
        if not isinstance(key, str):
            raise ConfigError(repr(key), "override keys must be strings")
        parts = key.split(".")
        if not key or any(not p.strip() for p in parts):
            raise ConfigError(key, "override key is empty or has an empty part")
        _set_path(result, [p.strip() for p in parts], value)
    return result


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merges ``update`` into ``base`` without modifying either.

    Where both sides hold a mapping the two are merged recursively; anything
    else in ``update`` (scalars, lists, ``None``) replaces the value in
    ``base``.

    Args:
        base: Base mapping, e.g. a loaded YAML file.
        update: Mapping whose values win, e.g. from :func:`parse_overrides`.

    Returns:
        A new dict sharing no containers with the inputs.
    """
    result: dict[str, Any] = {k: copy.deepcopy(v) for k, v in base.items()}
    for k, v in update.items():
        old = result.get(k)
        if isinstance(old, Mapping) and isinstance(v, Mapping):
            result[k] = deep_merge(old, v)
        elif isinstance(v, Mapping):
            result[k] = deep_merge({}, v)
        else:
            result[k] = copy.deepcopy(v)
    return result


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a YAML config file in safe mode.

    Args:
        path: File to read (UTF-8).

    Returns:
        The top-level mapping; ``{}`` for an empty file.

    Raises:
        ConfigError: If the file is not valid YAML or its top level is not a
            mapping; the key is the file name.
        OSError: If the file cannot be read.
    """
    name = os.fspath(path)
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.load(fh, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            raise ConfigError(name, f"invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(name, f"top level must be a mapping, got {type(data).__name__}")
    return dict(data)


# --------------------------------------------------------------------------
# Internals.


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    if key.startswith("["):
        return prefix + key
    return f"{prefix}.{key}"


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as e:  # NameError for unresolved names, TypeError, ...
        raise TypeError(
            f"cannot resolve the annotations of {cls.__qualname__}: {e} "
            "(config dataclasses must be defined at module level)"
        ) from e


@functools.lru_cache(maxsize=None)
def _loader() -> type[yaml.SafeLoader]:
    """SafeLoader that also reads ``1e-3`` (no decimal point) as a float."""

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return _Loader


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "list of " + str(len(args)) + " (" + ", ".join(_type_name(a) for a in args) + ")"
    return repr(hint)


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"got {type(value).__name__} {text}"


def _build(cls: type[T], data: Mapping[str, Any] | None, prefix: str, base: Any) -> T:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or cls.__name__, f"expected a mapping, {_got(data)}")
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    for k in data:
        if not isinstance(k, str):
            raise ConfigError(_join(prefix, repr(k)), "config keys must be strings")
        if k not in names:
            valid = ", ".join(sorted(names)) or "(none)"
            close = difflib.get_close_matches(k, sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(_join(prefix, k), f"unknown key{hint}; valid keys: {valid}")

    kwargs: dict[str, Any] = {}
    for f in fields:
        key = _join(prefix, f.name)
        if base is not None:
            default = getattr(base, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if f.name in data:
            value = _coerce(data[f.name], hints[f.name], key, raw=True, base=default)
        elif default is dataclasses.MISSING:
            raise ConfigError(key, "required key is missing")
        else:
            value = _coerce(default, hints[f.name], key, raw=False)
        _check_range(value, f.metadata, key)
        kwargs[f.name] = value

    try:
        obj = cls(**kwargs)
    except ConfigError as e:
        if not prefix:
            raise
        raise e.with_prefix(prefix).with_traceback(e.__traceback__) from None
    except ValueError as e:
        raise ConfigError(prefix or cls.__name__, str(e) or repr(e)).with_traceback(
            e.__traceback__
        ) from None
    # __post_init__ may have replaced fields: check those without descending
    # again into nested configs, which are already validated.
    for f in fields:
        value = getattr(obj, f.name)
        if value is kwargs[f.name]:
            continue
        key = _join(prefix, f.name)
        new = _coerce(value, hints[f.name], key, raw=False)
        _check_range(new, f.metadata, key)
        if new is not value:
            object.__setattr__(obj, f.name, new)
    return obj


def _coerce(value: Any, hint: Any, key: str, *, raw: bool, base: Any = None) -> Any:
    """Type-checks ``value`` against ``hint``; returns the canonical value.

    Returns ``value`` itself when it is already canonical. With ``raw`` true
    (data from YAML), nested dataclasses are built from mappings; otherwise
    they must already be instances, and are validated in place.
    """
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            validate(value, key)
            return value
        if raw and isinstance(value, Mapping):
            return _build(hint, value, key, base if isinstance(base, hint) else None)
        expected = "a mapping" if raw else f"a {hint.__name__} instance"
        raise ConfigError(key, f"expected {expected}, {_got(value)}")

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(value, options[0], key, raw=raw, base=base)
        for option in options:
            try:
                return _coerce(value, option, key, raw=raw, base=base)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(hint)}, {_got(value)}")

    if origin is Literal:
        for a in args:
            if type(value) is type(a) and value == a:
                return value
        raise ConfigError(key, f"must be one of {list(args)!r}, {_got(value)}")

    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected bool (true/false), {_got(value)}")

    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return value if type(value) is int else int(value)
        raise ConfigError(key, f"expected int, {_got(value)}")

    if hint is float:
        if not _is_real(value):
            raise ConfigError(key, f"expected float, {_got(value)}")
        if type(value) is float:
            out = value
        else:
            try:
                out = float(value)
            except OverflowError:
                raise ConfigError(key, f"number too large for a float: {value!r}") from None
        if not math.isfinite(out):
            raise ConfigError(key, f"must be a finite number, got {out!r}")
        return out

    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected str, {_got(value)}")

    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(key, f"expected None, {_got(value)}")

    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected {_type_name(hint)}, {_got(value)}")
        if hint is tuple or not args:
            return value if type(value) is tuple else tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            elem_hints = [args[0]] * len(value)
        elif args == ((),):  # tuple[()]
            elem_hints = []
        else:
            elem_hints = list(args)
        if len(elem_hints) != len(value):
            raise ConfigError(key, f"expected {len(elem_hints)} elements, got {len(value)}")
        out = tuple(
            _coerce(v, h, f"{key}[{i}]", raw=raw) for i, (v, h) in enumerate(zip(value, elem_hints))
        )
        if type(value) is tuple and all(a is b for a, b in zip(out, value)):
            return value
        return out

    raise TypeError(f"{key}: unsupported config annotation {hint!r}")


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    """Applies ge/gt/le/lt/choices metadata to a value or each tuple element."""
    bounds = {k: meta.get(k) for k in _RANGE_KEYS if meta.get(k) is not None}
    choices = meta.get("choices")
    if not bounds and choices is None:
        return
    if value is None:
        return
    if isinstance(value, tuple):
        for i, v in enumerate(value):
            _check_range(v, meta, f"{key}[{i}]")
        return
    if choices is not None and value not in tuple(choices):
        raise ConfigError(key, f"must be one of {list(choices)!r}, {_got(value)}")
    if not bounds:
        return
    if not _is_real(value):
        raise TypeError(f"{key}: range metadata {bounds} on a non-numeric value {value!r}")
    ops = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    for name, bound in bounds.items():
        ok, sym = ops[name]
        if not ok(value, bound):
            raise ConfigError(key, f"must be {sym} {bound}, got {value!r}")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _set_path(root: dict[str, Any], parts: list[str], value: Any) -> None:
    node = root
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            here = ".".join(parts[: depth + 1])
            raise ConfigError(".".join(parts), f"conflicts with the override of {here!r}")
        node = child
    leaf = parts[-1]
    old = node.get(leaf)
    if isinstance(old, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(".".join(parts), "conflicts with overrides of keys below it")
        node[leaf] = deep_merge(old, value)
    elif isinstance(value, Mapping):
        node[leaf] = deep_merge({}, value)
    else:
        node[leaf] = copy.deepcopy(value)


def resolve_yaml(name_or_path: str | os.PathLike[str], directory: Path, what: str = "config") -> Path:
    """Finds the YAML file a config name or path refers to.

    Args:
        name_or_path: a bare name without a directory or suffix (``"small"``) for
            ``directory/<name>.yaml``; otherwise a file path, relative to the working
            directory or, failing that, to `directory`.
        directory: where named configs live.
        what: how the error message calls these files.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: If the file does not exist; the key is the path.
    """
    text = os.fspath(name_or_path)
    candidate = Path(text)
    if candidate.parent == Path(".") and not candidate.suffix:
        candidate = directory / f"{text}.yaml"
    elif not candidate.is_absolute() and not candidate.is_file() and (directory / candidate).is_file():
        candidate = directory / candidate  # "small.yaml" from any working directory
    if not candidate.is_file():
        named = sorted(q.stem for q in directory.glob("*.yaml"))
        hint = f"; named {what}s: {', '.join(named)}" if named else ""
        raise ConfigError(str(candidate), f"{what} file not found{hint}")
    return candidate


def load_typed(
    cls: type[T],
    file: Path,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    prefix: str = "",
) -> T:
    """Builds `cls` from its defaults, the YAML `file`, then dotted `overrides`.

    Raises:
        ConfigError: An unreadable file (the key is the path); a bad key or value in the
            file (the message adds which file); a bad override.
    """
    try:
        data = load_yaml(file)
    except OSError as e:
        raise ConfigError(str(file), f"cannot read the config file: {e.strerror or e}") from None
    # Build the file alone first so that an error in it says which file it is in.
    try:
        from_dict(cls, data, prefix=prefix)
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.reason} (in {file})") from None
    return from_dict(cls, deep_merge(data, parse_overrides(overrides)), prefix=prefix)
