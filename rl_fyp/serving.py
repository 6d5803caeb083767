"""The serving runtime: load an exported re-ranker and re-rank requests, without Ray.

::

    from rl_fyp.serving import Reranker

    reranker = Reranker.load("export_dir")        # verifies every file's SHA-256
    order, scores = reranker.rerank(user, candidates, mask=None, k=None)

``user`` is (U,) or (B, U), ``candidates`` (N, F) or (B, N, F), in the order and meaning
that ``manifest.json`` lists; any N >= K. The model runs on onnxruntime (one intra-op
thread by default). Nothing here imports ray or unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "MANIFEST", "MODEL_ONNX", "ModelIntegrityError", "RequestError", "Reranker", "sha256"]

MANIFEST = "manifest.json"
MODEL_ONNX = "model.onnx"
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


class Reranker:
    """An exported slate policy, ready to re-rank.

    Use :meth:`load`; the constructor takes an already verified manifest and session.
    """

    def __init__(self, manifest: Mapping[str, Any], session: Any) -> None:
        self.manifest = dict(manifest)
        self.session = session
        inputs = manifest["inputs"]
        self.user_features: list[str] = list(inputs["user"]["features"])
        self.candidate_features: list[str] = list(inputs["candidates"]["features"])
        self.slate_size = int(manifest["slate_size"])
        self.n_sources = int(inputs["candidates"].get("categorical", {}).get("source", 0))

    @classmethod
    def load(cls, path: str | Path, *, threads: int = 1) -> Reranker:
        """Loads an export directory, verifying the manifest and every file's checksum.

        Args:
            path: The directory ``rl-fyp export`` wrote.
            threads: onnxruntime intra-op threads.

        Raises:
            ModelIntegrityError: On a missing file, a checksum mismatch or an unknown format.
        """
        import onnxruntime as ort

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
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(root / MODEL_ONNX), sess_options=opts, providers=["CPUExecutionProvider"])
        return cls(manifest, session)

    def _check(self, user: Any, candidates: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
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
            m = np.asarray(mask)
            m = m[None] if single and m.ndim == 1 else m
            if m.shape != (b, n):
                raise RequestError(f"mask must have shape {(n,) if single else (b, n)}, got {m.shape}")
            m = (m != 0).astype(np.int8)
        short = np.flatnonzero(m.sum(axis=1) < self.slate_size)
        if len(short):
            raise RequestError(f"request {int(short[0])} has fewer than {self.slate_size} valid candidates")
        return u, c, m, single

    def rerank(
        self, user: Any, candidates: Any, mask: Any = None, k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Orders the candidates of one request or a batch.

        Args:
            user: (U,) or (B, U) user features.
            candidates: (N, F) or (B, N, F) candidate features, N >= K.
            mask: (N,) or (B, N), nonzero where a candidate may be shown (default: all).
            k: How many positions to return (<= K, default K).

        Returns:
            ``(order, scores)``: order (k,) or (B, k) int64 candidate positions, best first;
            scores (N,) or (B, N) float32 policy scores.

        Raises:
            RequestError: If the request does not match the schema (shapes, NaN / inf, too
                few candidates, bad source ids, k out of range).
        """
        k = self.slate_size if k is None else int(k)
        if not 1 <= k <= self.slate_size:
            raise RequestError(f"k must be in [1, {self.slate_size}], got {k}")
        u, c, m, single = self._check(user, candidates, mask)
        slate, scores = self.session.run(None, {"user": u, "candidates": c, "mask": m})
        slate = slate[:, :k]
        return (slate[0], scores[0]) if single else (slate, scores)
