"""The re-ranker as an HTTP service: one Starlette app on uvicorn, one loaded :class:`Reranker`.

::

    rl-fyp serve runs/<run>/export --port 8080 [--rules configs/serving/rules.yaml]

    POST /rerank   the body is what Reranker.rerank_request takes (one request, raw records
                   or feature arrays, or {"requests": [...]}); the answer is its dict
    GET  /healthz  status, model version, K, feature counts, the rules in force, counters
    GET  /schema   the manifest's inputs, K and feature-builder layout (what a client sends)

A request that does not fit the model is a 400 ``{"error": "<what is wrong>"}`` (the
:class:`~rl_fyp.serving.RequestError` message, or the JSON parser's); a wrong method is
a 405, an unknown path a 404, a body over the size limit a 413; anything unexpected is
logged and answered 500, and the server keeps serving. JSON has no NaN or Infinity: such
literals (which Python's ``json`` would accept) are refused with a 400.

Answers carry ``Server-Timing: app;dur=<ms>``, the handler's own time. The model is
called on the event loop itself: it takes well under a millisecond, less
than a hop to a worker thread costs under load (``benchmarks/bench_serving.py``
measures both; ``offload=True`` / ``--offload`` selects the thread pool). Nothing here
imports ray.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rl_fyp.rules import BusinessRules
from rl_fyp.serving import Reranker, RequestError

try:  # orjson parses the ~300 KB request of N = 500 candidates in 0.7 ms, json in 5 ms
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the fallback is tested
    orjson = None  # type: ignore[assignment]

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyError", "create_app", "dumps", "loads", "serve"]

log = logging.getLogger("rl_fyp.service")

DEFAULT_MAX_BODY_BYTES = 8 << 20
"""Largest request body accepted (8 MiB): a raw-record request of 500 candidates is ~0.4 MB."""

JSON = "application/json"


class BodyError(ValueError):
    """A request body that is not a JSON document (the message says where it breaks)."""


def _no_constant(name: str) -> Any:
    raise BodyError(f"invalid JSON: {name} is not a JSON number")


_NON_NUMBERS = (b"NaN", b"Infinity", b"nan", b"inf", b"Inf")


def _non_number(body: bytes, pos: int) -> str | None:
    """The NaN / Infinity literal orjson stopped at, if that is why it failed."""
    for word in _NON_NUMBERS:
        if body.startswith(word, pos):
            return ("-" if pos > 0 and body[pos - 1 : pos] == b"-" else "") + word.decode()
    return None


def loads(body: bytes, *, use_orjson: bool | None = None) -> Any:
    """Parses a request body as strict JSON (RFC 8259: no NaN, Infinity or -Infinity).

    Args:
        body: The raw body.
        use_orjson: Force orjson (True) or the standard library (False); default: orjson
            when installed.

    Raises:
        BodyError: On malformed JSON, a NaN / Infinity literal, or a number that overflows
            a double (orjson; the standard library's ``inf`` is refused by the model's checks).
    """
    if use_orjson is None:
        use_orjson = orjson is not None
    if use_orjson:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            word = _non_number(body, e.pos)
            if word:
                raise BodyError(f"invalid JSON: {word} is not a JSON number (at char {e.pos})") from None
            raise BodyError(f"invalid JSON: {e}") from None
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BodyError(f"invalid JSON: {e}") from None


def dumps(obj: Any) -> bytes:
    """Serialises an answer (orjson when installed)."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _json(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) one whose Content-Length or actual length is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    reranker: Reranker,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    offload: bool = False,
    use_orjson: bool | None = None,
    backend: str = "onnx",
) -> Starlette:
    """The ASGI app around one loaded re-ranker.

    Args:
        reranker: The loaded model (with its business rules).
        max_body_bytes: Largest accepted request body; larger ones get a 413.
        offload: Run the model in Starlette's thread pool instead of on the event loop.
        use_orjson: Parse with orjson (True) or the standard library (False); default:
            orjson when installed. Both refuse NaN / Infinity literals.
        backend: The model runner's name, reported by ``/healthz``.

    Returns:
        The Starlette app; ``app.state.stats`` counts requests by outcome.
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if use_orjson and orjson is None:
        raise ImportError("use_orjson=True needs the orjson package")
    stats = {"requests": 0, "ok": 0, "bad_request": 0, "server_error": 0}
    started = time.time()
    rules: BusinessRules = reranker.rules

    async def rerank(request: Request) -> Response:
        t0 = time.perf_counter()
        stats["requests"] += 1
        body = await _read_body(request, max_body_bytes)
        try:
            payload = loads(body, use_orjson=use_orjson)
            if not isinstance(payload, dict):
                raise RequestError(f"the body must be a JSON object, got {_json_type(payload)}")
            if offload:
                answer = await run_in_threadpool(_in_worker, reranker.rerank_request, payload)
            else:
                answer = reranker.rerank_request(payload)
            response = _json(answer)
        except (BodyError, RequestError) as e:
            stats["bad_request"] += 1
            return _error(400, str(e))
        except Exception as e:  # the server stays up; the client learns what broke
            stats["server_error"] += 1
            log.exception("POST /rerank failed")
            return _error(500, f"internal error: {type(e).__name__}: {e}")
        stats["ok"] += 1
        # The handler's own time (body, parse, features, model, rules, answer), so a load
        # test can tell the server's share of a latency from the network's and the client's.
        response.headers["server-timing"] = f"app;dur={(time.perf_counter() - t0) * 1e3:.3f}"
        return response

    async def healthz(request: Request) -> Response:
        return _json(
            {
                "status": "ok",
                "model_version": reranker.model_version,
                "variant": reranker.manifest.get("variant"),
                "backend": backend,
                "slate_size": reranker.slate_size,
                "n_user_features": len(reranker.user_features),
                "n_candidate_features": len(reranker.candidate_features),
                "raw_records": reranker.builder is not None,
                "rules": {**asdict(rules), "active": rules.active},
                "max_body_bytes": max_body_bytes,
                "uptime_s": round(time.time() - started, 3),
                "stats": dict(stats),
            }
        )

    async def schema(request: Request) -> Response:
        m = reranker.manifest
        return _json(
            {
                "model_version": reranker.model_version,
                "slate_size": reranker.slate_size,
                "inputs": m["inputs"],
                "outputs": m.get("outputs"),
                "feature_builder": m.get("feature_builder"),
            }
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail
        if exc.status_code == 404:
            message = f"no such path {request.url.path}; the paths are /rerank, /healthz, /schema"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; use {exc.headers.get('Allow', '') if exc.headers else ''}"
        if exc.status_code == 413:
            stats["bad_request"] += 1
        return Response(dumps({"error": message}), status_code=exc.status_code, headers=exc.headers, media_type=JSON)

    app = Starlette(
        routes=[
            Route("/rerank", rerank, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/schema", schema, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.stats = stats
    app.state.reranker = reranker
    return app


def _json_type(x: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(x), "a number")


_worker = threading.local()


def _one_feature_thread() -> None:
    """Runs the feature builder's numba kernel on one thread in the calling thread.

    A request is one user: the kernel's parallel loop has one row, and waking numba's
    thread pool for it costs milliseconds on a busy machine (``bench_serving.py``).
    numba's thread count is per thread, so each worker thread sets it once.
    """
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(1)


def _in_worker(fn: Any, payload: Any) -> Any:
    if not getattr(_worker, "ready", False):
        _one_feature_thread()
        _worker.ready = True
    return fn(payload)


def _warm_up(reranker: Reranker) -> None:
    """A few calls at N = K (arrays, and raw records when the model has a feature builder),
    so the first client request pays neither the runner's set-up nor numba's cache load."""
    import numpy as np

    k = reranker.slate_size
    u = np.zeros(len(reranker.user_features), np.float32)
    c = np.zeros((k, len(reranker.candidate_features)), np.float32)
    for _ in range(3):
        reranker.rerank(u, c, creator=np.arange(k), topic=np.arange(k))
    if reranker.builder is not None:
        s = reranker.builder.spec
        user = {
            "local_hour": 12.0, "hours_since_first_visit": 1.0, "session_requests": 0, "session_watch_s": 0.0,
            "session_videos": 0, "sessions": 0, "last_gap_h": 0.0, "region": 0, "language": 0, "device": 0,
            "embedding": [0.0] * s.latent_dim, "topic_preference": [1.0 / s.n_topics] * s.n_topics,
        }
        video = {
            "embedding": [0.0] * s.latent_dim, "topic": 0, "source": 0, "impressions": 0.0, "completions": 0.0,
            "engagements": 0.0, "trend_level": 0.0, "age_h": 1.0, "creator_followers": 0.0, "duration_s": 15.0,
        }
        reranker.features(user, [{**video, "creator": j} for j in range(k)])


def serve(
    out_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    rules: BusinessRules | None = None,
    threads: int = 1,
    backend: str = "onnx",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    offload: bool = False,
    access_log: bool = False,
) -> None:
    """Loads an export and serves it until interrupted (one process, one uvicorn worker).

    The model loads (and is checked) before the socket is bound; ``port=0`` picks a free
    port, and the line ``serving <model_version> on http://HOST:PORT ...`` on stdout,
    printed once the socket is bound, says which.

    Raises:
        ModelIntegrityError: If the export is incomplete or tampered with (nothing is served).
        ConfigError: If the rules name sources the model does not know.
        OSError: If the address cannot be bound.
    """
    import uvicorn

    reranker = Reranker.load(out_dir, threads=threads, backend=backend, rules=rules)
    _one_feature_thread()
    _warm_up(reranker)
    # Everything alive now (modules, the model, the warm-up's caches) lives as long as the
    # server: keep it out of the collector's scans, or a full collection over these ~10^5
    # objects stalls one request by tens of milliseconds (bench_serving.py).
    gc.collect()
    gc.freeze()
    app = create_app(reranker, max_body_bytes=max_body_bytes, offload=offload, backend=backend)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        workers=1,
        log_level="warning",
        access_log=access_log,
        lifespan="off",
        loop=_pick("uvloop", "uvloop", "asyncio"),
        http=_pick("httptools", "httptools", "h11"),
        server_header=False,
    )
    print(f"serving {reranker.model_version} on http://{host}:{bound} ({backend}, {threads} thread(s))", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _pick(module: str, fast: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        print(f"note: {module} is not installed; uvicorn uses {fallback}", file=sys.stderr)
        return fallback
    return fast
