"""The serving runtime: load an exported re-ranker and re-rank requests, without Ray.

::

    from rl_fyp.serving import Reranker

    reranker = Reranker.load("export_dir")        # verifies every file's SHA-256
    order, scores = reranker.rerank(user, candidates, mask=None, k=None)
    answer = reranker.rerank_request(json.loads(body))   # a JSON request, raw records or features

``user`` is (U,) or (B, U), ``candidates`` (N, F) or (B, N, F), in the order and meaning
that ``manifest.json`` lists (or named: ``{feature: value}``); any N >= K. Raw records
(a user's context and history, the candidate list with the ranker's scores) become
features through :class:`envs.features.RecordFeatures`, the code the simulator's
observations come from, so serving and training see the same features. Business rules
(:mod:`rl_fyp.rules`) run after the policy. The model runs on onnxruntime (one intra-op
thread by default; TorchScript optionally). Nothing here imports ray or unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from envs.features import FeatureSpec, RecordError, RecordFeatures
from reward.typed_config import ConfigError
from rl_fyp.rules import BusinessRules, apply_rules, preference_order

__all__ = [
    "BACKENDS",
    "EXPORT_CONFIG",
    "FORMAT_VERSION",
    "MANIFEST",
    "MODEL_ONNX",
    "MODEL_TS",
    "ModelIntegrityError",
    "RequestError",
    "RerankResult",
    "Reranker",
    "sha256",
]

MANIFEST = "manifest.json"
MODEL_ONNX = "model.onnx"
MODEL_TS = "model.pt"
EXPORT_CONFIG = "config.yaml"
"""The training config, in the export so the A/B test can rerun the exported model."""
FORMAT_VERSION = 1
"""Version of the manifest's layout; a loader refuses versions it does not know."""


class ModelIntegrityError(RuntimeError):
    """An exported model directory is incomplete, tampered with, or of an unknown format."""


class RequestError(ValueError):
    """A re-ranking request does not match the model's input schema."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RerankResult(NamedTuple):
    """What :meth:`Reranker.rerank_full` returns.

    Attributes:
        order: (k,) or (B, k) int64 candidate positions in feed order, after the rules.
        scores: (N,) or (B, N) float32 policy scores of every candidate.
        relaxed: Per request, the business rules that had to be relaxed (empty if all held).
    """

    order: np.ndarray
    scores: np.ndarray
    relaxed: list[list[str]]


def _names_error(what: str, got: Iterable[str], want: Sequence[str]) -> str | None:
    got_set, want_set = set(got), set(want)
    parts = []
    unknown = sorted(got_set - want_set)
    missing = [n for n in want if n not in got_set]
    if unknown:
        parts.append(f"unknown {what} feature(s) {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    if missing:
        parts.append(f"missing {what} feature(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    return "; ".join(parts) or None


def _assemble(x: Any, names: Sequence[str], what: str) -> Any:
    """Named features ``{name: value or array}`` -> an array with the last axis in manifest order."""
    if not isinstance(x, Mapping):
        return x
    err = _names_error(what, x.keys(), names)
    if err:
        raise RequestError(err)
    try:
        cols = [np.asarray(x[n], dtype=np.float32) for n in names]
        return np.stack(cols, axis=-1)
    except (TypeError, ValueError) as e:
        raise RequestError(f"{what} features must be numbers of one shape: {e}") from e


def _onnx_runner(root: Path, threads: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(root / MODEL_ONNX), sess_options=opts, providers=["CPUExecutionProvider"])

    def run(u: np.ndarray, c: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slate, scores = session.run(None, {"user": u, "candidates": c, "mask": m})
        return slate, scores

    return run


def _torchscript_runner(root: Path, threads: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import torch  # only this optional backend needs torch

    torch.set_num_threads(threads)
    module = torch.jit.load(str(root / MODEL_TS), map_location="cpu")

    def run(u: np.ndarray, c: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            slate, scores = module(torch.from_numpy(u), torch.from_numpy(c), torch.from_numpy(m))
        return slate.numpy(), scores.numpy()

    return run


BACKENDS = {"onnx": _onnx_runner, "torchscript": _torchscript_runner}
"""Model runners by name: onnxruntime (the default) or TorchScript (needs torch)."""

_REQUEST_KEYS_FEATURES = {"user_features", "candidate_features", "mask", "k", "candidate_ids", "creator_ids", "topics", "exploration"}
_REQUEST_KEYS_RECORDS = {"user", "candidates", "k"}


def _check_keys(keys: set[str], allowed: set[str], required: tuple[str, ...], known: str) -> None:
    extra = keys - allowed
    if extra:
        raise RequestError(f"unknown request field(s) {sorted(extra)}; {known} {sorted(allowed)}")
    for f in required:
        if f not in keys:
            raise RequestError(f"missing field '{f}'")


class Reranker:
    """An exported slate policy, ready to re-rank, with the business rules after it.

    Use :meth:`load`; the constructor takes an already verified manifest and a model runner.
    """

    def __init__(
        self,
        manifest: Mapping[str, Any],
        run: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
        rules: BusinessRules | None = None,
    ) -> None:
        self.manifest = dict(manifest)
        self._run = run
        self.rules = rules or BusinessRules()
        inputs = manifest["inputs"]
        self.user_features: list[str] = list(inputs["user"]["features"])
        self.candidate_features: list[str] = list(inputs["candidates"]["features"])
        self.slate_size = int(manifest["slate_size"])
        self.model_version = str(manifest.get("model_version", ""))
        self.n_sources = int(inputs["candidates"].get("categorical", {}).get("source", 0))
        builder = manifest.get("feature_builder")
        self.builder = RecordFeatures(FeatureSpec.from_dict(builder)) if builder else None
        sources = list(builder["source_names"]) if builder else []
        unknown = [s for s in self.rules.exploration_sources if sources and s not in sources]
        if unknown:
            raise ConfigError("exploration_sources", f"unknown source(s) {unknown}; the model's sources are {sources}")
        self._explore_ids = np.array([sources.index(s) for s in self.rules.exploration_sources if s in sources], np.float32)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        threads: int = 1,
        backend: str = "onnx",
        rules: BusinessRules | None = None,
    ) -> Reranker:
        """Loads an export directory, verifying the manifest and every file's checksum.

        Args:
            path: The directory ``rl-fyp export`` wrote.
            threads: Intra-op threads of the model runner.
            backend: ``onnx`` (onnxruntime, the default) or ``torchscript`` (needs torch).
            rules: Business rules applied after the policy (default: none).

        Raises:
            ModelIntegrityError: On a missing file, a checksum mismatch or an unknown format.
            ValueError: On an unknown backend.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
        root = Path(path)
        man_path = root / MANIFEST
        if not man_path.is_file():
            raise ModelIntegrityError(f"{man_path} is missing: not an exported rl-fyp model")
        try:
            manifest = json.loads(man_path.read_text())
        except json.JSONDecodeError as e:
            raise ModelIntegrityError(f"{man_path} is not valid JSON: {e}") from e
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ModelIntegrityError(
                f"{man_path}: format_version {manifest.get('format_version')!r}, this runtime reads {FORMAT_VERSION}"
            )
        files = manifest.get("files", {})
        if MODEL_ONNX not in files:
            raise ModelIntegrityError(f"{man_path} lists no {MODEL_ONNX}")
        for name, digest in files.items():
            f = root / name
            if not f.is_file():
                raise ModelIntegrityError(f"{f} is missing")
            actual = sha256(f)
            if actual != digest:
                raise ModelIntegrityError(f"{f}: checksum mismatch (manifest {digest[:12]}..., file {actual[:12]}...)")
        return cls(manifest, BACKENDS[backend](root, threads), rules)

    # ------------------------------------------------------------------ arrays
    def _check(self, user: Any, candidates: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        user = _assemble(user, self.user_features, "user")
        candidates = _assemble(candidates, self.candidate_features, "candidate")
        try:
            u = np.asarray(user, dtype=np.float32)
            c = np.asarray(candidates, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise RequestError(f"features must be numeric arrays: {e}") from e
        single = c.ndim == 2
        if single:
            u, c = u[None], c[None]
        if c.ndim != 3:
            raise RequestError(f"candidates must be (N, F) or (B, N, F), got shape {c.shape}")
        b, n, f = c.shape
        if f != len(self.candidate_features):
            raise RequestError(f"candidates have {f} features per row, the model expects {len(self.candidate_features)}")
        if u.shape != (b, len(self.user_features)):
            want = (len(self.user_features),) if single else (b, len(self.user_features))
            raise RequestError(f"user features must have shape {want}, got {u.shape[1:] if single else u.shape}")
        if n < self.slate_size:
            raise RequestError(f"{n} candidates is fewer than the slate size {self.slate_size}")
        for name, arr in (("user", u), ("candidates", c)):
            if not np.isfinite(arr).all():
                raise RequestError(f"{name} features contain NaN or inf")
        src = c[..., -1]
        if self.n_sources and ((src < 0) | (src >= self.n_sources) | (src != np.round(src))).any():
            raise RequestError(f"the source feature must be an integer in [0, {self.n_sources - 1}]")
        if mask is None:
            m = np.ones((b, n), np.int8)
        else:
            try:
                m = np.asarray(mask, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise RequestError(f"mask must be numeric: {e}") from e
            m = m[None] if single and m.ndim == 1 else m
            if m.shape != (b, n):
                raise RequestError(f"mask must have shape {(n,) if single else (b, n)}, got {m.shape}")
            m = (m != 0).astype(np.int8)
        short = np.flatnonzero(m.sum(axis=1) < self.slate_size)
        if len(short):
            raise RequestError(f"request {int(short[0])} has fewer than {self.slate_size} valid candidates")
        return np.ascontiguousarray(u), np.ascontiguousarray(c), m, single

    def _meta(self, x: Any, name: str, shape: tuple[int, int], single: bool) -> np.ndarray | None:
        if x is None:
            return None
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise RequestError(f"{name} must be an array: {e}") from e
        a = a[None] if single and a.ndim == 1 else a
        if a.shape != shape:
            raise RequestError(f"{name} must have shape {shape[1:] if single else shape}, got {a.shape[1:] if single else a.shape}")
        return a

    def rerank_full(
        self,
        user: Any,
        candidates: Any,
        mask: Any = None,
        k: int | None = None,
        *,
        creator: Any = None,
        topic: Any = None,
        exploration: Any = None,
    ) -> RerankResult:
        """Orders the candidates of one request or a batch, then applies the business rules.

        Args:
            user: (U,) or (B, U) user features, or ``{name: value}`` in any order.
            candidates: (N, F) or (B, N, F) candidate features, or ``{name: (N,) array}``; N >= K.
            mask: (N,) or (B, N), nonzero where a candidate may be shown (default: all).
            k: How many positions to return (<= K, default K).
            creator: (N,) or (B, N) creator ids, for ``no_adjacent_creator``.
            topic: (N,) or (B, N) topic ids, for ``max_topic_share``.
            exploration: (N,) or (B, N) bool, exploration candidates for pinned slots
                (default: candidates of the rules' ``exploration_sources``).

        Raises:
            RequestError: If the request does not match the schema (shapes, NaN / inf, too
                few candidates, bad source ids, unknown or missing feature names, k out of
                range, or metadata a configured rule needs is missing).
        """
        k = self.slate_size if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.slate_size:
            raise RequestError(f"k must be an integer in [1, {self.slate_size}], got {k!r}")
        k = int(k)
        u, c, m, single = self._check(user, candidates, mask)
        slate, scores = self._run(u, c, m)
        b, n = m.shape
        relaxed: list[list[str]] = [[] for _ in range(b)]
        if self.rules.active:
            rules = self.rules
            cre = self._meta(creator, "creator", (b, n), single)
            top = self._meta(topic, "topic", (b, n), single)
            exp = self._meta(exploration, "exploration", (b, n), single)
            if rules.needs_creator and cre is None:
                raise RequestError("the no_adjacent_creator rule needs the candidates' creator ids")
            if rules.needs_topic and top is None:
                raise RequestError("the max_topic_share rule needs the candidates' topics")
            if exp is None:
                exp = np.isin(c[..., -1], self._explore_ids)
            out = np.empty((b, k), np.int64)
            for i in range(b):
                pref = preference_order(slate[i], scores[i], m[i])
                out[i], relaxed[i] = apply_rules(
                    rules, pref, k,
                    None if cre is None else cre[i], None if top is None else top[i], exp[i],
                )
            slate = out
        else:
            slate = slate[:, :k]
        if single:
            return RerankResult(slate[0], scores[0], relaxed)
        return RerankResult(slate, scores, relaxed)

    def rerank(self, user: Any, candidates: Any, mask: Any = None, k: int | None = None, **meta: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(order, scores)`` of :meth:`rerank_full`: order (k,) or (B, k) int64 positions,
        best first; scores (N,) or (B, N) float32 policy scores (masked at -1e9)."""
        r = self.rerank_full(user, candidates, mask, k, **meta)
        return r.order, r.scores

    # ------------------------------------------------------------------ raw records
    def features(self, user: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Builds one request's features from raw records, with the simulator's own code.

        Args:
            user: The raw user record (``envs.features.USER_RECORD_FIELDS``).
            candidates: Raw candidate records (``envs.features.CANDIDATE_RECORD_FIELDS``).

        Returns:
            ``(user (U,), candidates (N, F), meta)``; meta holds (N,) ``creator``, ``topic``, ``source``.

        Raises:
            RequestError: On a malformed record (naming the field).
        """
        if self.builder is None:
            raise RequestError("this model's manifest has no feature builder: send user_features and candidate_features")
        try:
            u, c, meta = self.builder.build([user], [candidates])
        except RecordError as e:
            raise RequestError(str(e)) from e
        return u[0], c[0], {key: v[0] for key, v in meta.items()}

    # ------------------------------------------------------------------ JSON
    def rerank_request(self, payload: Any) -> dict[str, Any]:
        """Answers one JSON request (already parsed), or a batch ``{"requests": [...]}``.

        A request is either raw records, ``{"user": {...}, "candidates": [{...}, ...], "k"?}``
        (features built by :meth:`features`), or features,
        ``{"user_features": [U] | {name: value}, "candidate_features": [[F], ...] |
        {"names": [F], "values": [[F], ...]}, "mask"?, "k"?, "candidate_ids"?,
        "creator_ids"?, "topics"?, "exploration"?}``.

        Returns:
            ``{"model_version", "slate": [positions], "scores": [policy score per slate
            position], "ids"?: [candidate ids in slate order], "relaxed_rules": [...]}``,
            or ``{"model_version", "results": [...]}`` for a batch.

        Raises:
            RequestError: Naming what is wrong (``requests[i]: ...`` inside a batch).
        """
        if not isinstance(payload, Mapping):
            raise RequestError(f"a request must be a JSON object, got {type(payload).__name__}")
        if "requests" in payload:
            if set(payload) != {"requests"}:
                raise RequestError(f"a batch holds only 'requests', got also {sorted(set(payload) - {'requests'})}")
            reqs = payload["requests"]
            if not isinstance(reqs, list) or not reqs:
                raise RequestError("'requests' must be a non-empty list of requests")
            results = []
            for i, r in enumerate(reqs):
                try:
                    results.append(self._answer(r))
                except RequestError as e:
                    raise RequestError(f"requests[{i}]: {e}") from e
            return {"model_version": self.model_version, "results": results}
        return {"model_version": self.model_version, **self._answer(payload)}

    def _answer(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, Mapping):
            raise RequestError(f"a request must be a JSON object, got {type(req).__name__}")
        keys = set(req)
        ids = None
        if "user" in keys or "candidates" in keys:
            _check_keys(keys, _REQUEST_KEYS_RECORDS, ("user", "candidates"), "a raw-record request has")
            if not isinstance(req["candidates"], list):
                raise RequestError("'candidates' must be a list of candidate records")
            u, c, meta = self.features(req["user"], req["candidates"])
            ids = [rec.get("id") for rec in req["candidates"]] if all("id" in rec for rec in req["candidates"]) else None
            r = self.rerank_full(u, c, None, req.get("k"), creator=meta["creator"], topic=meta["topic"])
        else:
            _check_keys(keys, _REQUEST_KEYS_FEATURES, ("user_features", "candidate_features"), "expected some of")
            cand = req["candidate_features"]
            if isinstance(cand, Mapping):
                if set(cand) != {"names", "values"}:
                    raise RequestError("named candidate_features must be {'names': [...], 'values': [[...], ...]}")
                names, values = cand["names"], cand["values"]
                err = _names_error("candidate", names, self.candidate_features) if isinstance(names, list) else "candidate_features.names must be a list"
                if err or len(set(names)) != len(names):
                    raise RequestError(err or "candidate_features.names repeats a name")
                try:
                    arr = np.asarray(values, dtype=np.float32)
                except (TypeError, ValueError) as e:
                    raise RequestError(f"candidate_features.values must be a list of numeric rows: {e}") from e
                if arr.ndim != 2 or arr.shape[1] != len(names):
                    raise RequestError(f"candidate_features.values must be rows of {len(names)} numbers, got shape {arr.shape}")
                cand = arr[:, [names.index(n) for n in self.candidate_features]]
            ids = req.get("candidate_ids")
            r = self.rerank_full(
                req["user_features"], cand, req.get("mask"), req.get("k"),
                creator=req.get("creator_ids"), topic=req.get("topics"), exploration=req.get("exploration"),
            )
            if ids is not None and (not isinstance(ids, list) or len(ids) != len(r.scores)):
                raise RequestError(f"candidate_ids must list one id per candidate ({len(r.scores)})")
        order = r.order.tolist()
        out: dict[str, Any] = {"slate": order, "scores": [float(r.scores[j]) for j in order]}
        if ids is not None:
            out["ids"] = [ids[j] for j in order]
        out["relaxed_rules"] = r.relaxed[0]
        return out
