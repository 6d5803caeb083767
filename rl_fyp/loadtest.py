"""Open-loop load test of a running ``rl-fyp serve``: latency percentiles at a fixed rate.

::

    rl-fyp loadtest http://127.0.0.1:8080 --rate 200 --requests 2000 [--raw] [--json]

Requests leave on a fixed schedule (request i at ``t0 + i / rate``) whether or not the
earlier ones have returned, and each latency runs from the request's *scheduled* time to
the end of its answer, so a slow server cannot hide its queueing by slowing the client
down (coordinated omission). The test sends a bounded number of requests, each with a
timeout, and stops by itself.

Requests are realistic: built from the simulator (:class:`envs.feed_env.FeedVectorEnv`)
sized to the served model (its manifest, read from ``GET /schema``, gives K and the
feature layout; the request count N is ``n_candidates``), as feature arrays or, with
``raw``, as the raw records of :meth:`envs.core.FeedSimulator.request_records`. Bodies
are serialised before the timed phase, so the client measures the server, not its own
JSON encoding. The client is aiohttp (keep-alive connections, on uvloop when installed).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["LoadTestResult", "fetch_schema", "load_test", "request_bodies", "run_load", "sim_config"]

_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class LoadTestResult:
    """What one load test measured. Latencies are from scheduled send to full answer.

    Attributes:
        url: The service's base URL.
        target_rate: Requests per second scheduled.
        requests: Requests sent.
        ok: Answers with status 200.
        non_200: Answers with another status.
        failed: Requests with no answer (connection error or timeout).
        statuses: Count per status code (``"error"`` for no answer).
        duration_s: From the first scheduled send to the last answer.
        throughput_rps: Answers (any status) per second over ``duration_s``.
        p50_ms, p90_ms, p99_ms, max_ms, mean_ms: Latency of the answered requests.
        server_p50_ms, server_p99_ms: The server's own time per answer (its
            ``Server-Timing`` header; NaN if it sends none): the rest of a latency is
            the network, the client and waiting for the server.
        body_bytes: Mean request body size.
        raw: Whether the requests were raw records (else feature arrays).
        n_candidates: Candidates per request.
    """

    url: str
    target_rate: float
    requests: int
    ok: int
    non_200: int
    failed: int
    statuses: dict[str, int]
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_p50_ms: float
    server_p99_ms: float
    body_bytes: int
    raw: bool
    n_candidates: int
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few human-readable lines."""
        kind = "raw records" if self.raw else "feature arrays"
        lines = [
            f"{self.requests} requests ({kind}, N={self.n_candidates}, {self.body_bytes / 1e3:.0f} kB each) "
            f"at {self.target_rate:g}/s to {self.url}",
            f"throughput {self.throughput_rps:.1f} requests/s over {self.duration_s:.2f} s",
            f"latency ms: p50 {self.p50_ms:.2f}  p90 {self.p90_ms:.2f}  p99 {self.p99_ms:.2f}  "
            f"max {self.max_ms:.2f}  mean {self.mean_ms:.2f}  (server's own time p50 {self.server_p50_ms:.2f}  "
            f"p99 {self.server_p99_ms:.2f})",
            f"status: {self.ok} ok, {self.non_200} non-200, {self.failed} without an answer {self.statuses}",
        ]
        lines += [f"  e.g. {e}" for e in self.errors[:3]]
        return "\n".join(lines)


def fetch_schema(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """``GET {url}/schema`` of a running service: model version, K, inputs, feature builder.

    Raises:
        ConnectionError: If no service answers there, or it answers with an error.
    """
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/schema", timeout=timeout_s)
        r.raise_for_status()
        return r.json()
    except (httpx.HTTPError, ValueError) as e:
        raise ConnectionError(f"cannot read {url.rstrip('/')}/schema ({type(e).__name__}: {e}); is rl-fyp serve running there?") from None


def sim_config(schema: dict[str, Any], n_candidates: int, config: str | None = None) -> Any:
    """A simulator config whose observations fit the served model.

    The world (catalog size, user model, ...) comes from ``config`` (default
    ``configs/default.yaml``); K, the request size N and the feature layout (embedding
    size, topics, regions, languages, devices, history lengths, horizon) from the
    model's schema.

    Raises:
        ValueError: If the model has no feature builder, or the config's features still
            differ from the model's (another layout than this simulator's).
    """
    from rl_fyp.config import load_config

    fb = schema.get("feature_builder")
    if not fb:
        raise ValueError("the served model's manifest has no feature_builder: cannot build matching requests")
    overrides = {
        "env.slate_size": int(schema["slate_size"]),
        "env.retrieval.n_candidates": int(n_candidates),
        "env.catalog.latent_dim": int(fb["latent_dim"]),
        "env.catalog.n_topics": int(fb["n_topics"]),
        "env.catalog.n_regions": int(fb["n_regions"]),
        "env.user.n_languages": int(fb["n_languages"]),
        "env.user.n_devices": int(fb["n_devices"]),
        "env.observation.history_len": int(fb["history_len"]),
        "env.retrieval.recent_engaged_len": int(fb["recent_engaged_len"]),
        "env.horizon_days": float(fb["horizon_days"]),
    }
    cfg = load_config(config, overrides)
    from envs.features import candidate_feature_names, user_feature_names

    inputs = schema["inputs"]
    if (list(user_feature_names(cfg.env)), list(candidate_feature_names(cfg.env))) != (
        list(inputs["user"]["features"]),
        list(inputs["candidates"]["features"]),
    ):
        raise ValueError("the simulator's features differ from the served model's; pass the model's training config")
    return cfg


def request_bodies(
    schema: dict[str, Any],
    count: int,
    *,
    n_candidates: int = 500,
    raw: bool = False,
    config: str | None = None,
    seed: int = 0,
    n_users: int = 32,
) -> list[bytes]:
    """``count`` distinct JSON request bodies from the simulator, serialised.

    Users of a seeded cohort are observed, shown a random slate, observed again, and so
    on, so requests differ in user state and candidates as in a live feed.

    Args:
        schema: The service's ``/schema``.
        count: Bodies to make.
        n_candidates: N per request.
        raw: Raw records ``{"user", "candidates"}`` instead of feature arrays
            ``{"user_features", "candidate_features", "candidate_ids", "creator_ids", "topics"}``.
        config: Simulator config (see :func:`sim_config`).
        seed: Cohort seed.
        n_users: Users observed per simulator step.

    Returns:
        ``count`` bodies (bytes).
    """
    import orjson

    from envs.feed_env import FeedVectorEnv

    cfg = sim_config(schema, n_candidates, config)
    n_users = max(1, min(n_users, count))
    env = FeedVectorEnv(num_envs=n_users, config=cfg.env)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    k = cfg.env.slate_size
    bodies: list[bytes] = []
    while len(bodies) < count:
        for b in range(n_users):
            if len(bodies) == count:
                break
            user, cands = env.sim.request_records(b)
            if raw:
                body = orjson.dumps({"user": user, "candidates": cands})
            else:
                valid = obs["mask"][b] != 0  # the records list the valid candidates, in order
                body = orjson.dumps(
                    {
                        "user_features": obs["user"][b],
                        "candidate_features": np.ascontiguousarray(obs["candidates"][b][valid]),
                        "candidate_ids": [c["id"] for c in cands],
                        "creator_ids": [c["creator"] for c in cands],
                        "topics": [c["topic"] for c in cands],
                    },
                    option=orjson.OPT_SERIALIZE_NUMPY,  # float32 as float32: what a client would send
                )
            bodies.append(body)
        actions = np.stack([rng.choice(np.flatnonzero(m), k, replace=False) for m in obs["mask"]])
        obs, *_ = env.step(actions)
    env.close()
    return bodies


async def run_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    requests: int,
    concurrency: int = 64,
    timeout_s: float = 10.0,
    warmup: int = 10,
) -> tuple[np.ndarray, np.ndarray, list[int | None], float, list[str]]:
    """Sends ``requests`` POST /rerank on an open-loop schedule at ``rate`` per second.

    Args:
        url: The service's base URL.
        bodies: Pre-serialised bodies, cycled.
        rate: Requests per second.
        requests: Requests to send (then stop).
        concurrency: Most connections open at once; a request finding all busy waits for
            one, and the wait counts in its latency.
        timeout_s: Per-request timeout (connection wait included).
        warmup: Requests sent one by one before the timed phase (not counted).

    Returns:
        ``(latency_s (requests,), server_ms (requests,) from Server-Timing (NaN if absent),
        status per request (None: no answer), duration_s, errors)``.
    """
    import aiohttp

    endpoint = url.rstrip("/") + "/rerank"
    lat = np.full(requests, np.nan)
    server_ms = np.full(requests, np.nan)
    status: list[int | None] = [None] * requests
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)) as session:

        async def one(i: int, body: bytes, scheduled: float) -> None:
            try:
                async with session.post(endpoint, data=body, headers=_JSON_HEADERS) as r:
                    await r.read()
                    status[i] = r.status
                    server_ms[i] = _server_time(r.headers.get("server-timing"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                if len(errors) < 10:
                    errors.append(f"{type(e).__name__}: {e}")
            lat[i] = time.perf_counter() - scheduled

        for i in range(min(warmup, requests)):
            async with session.post(endpoint, data=bodies[i % len(bodies)], headers=_JSON_HEADERS) as r:
                await r.read()
        tasks = []
        start = time.perf_counter() + 0.01
        for i in range(requests):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, bodies[i % len(bodies)], scheduled)))
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    return lat, server_ms, status, duration, errors


def _server_time(header: str | None) -> float:
    """``app;dur=1.234`` -> 1.234 (ms); NaN without one."""
    if header:
        for part in header.split(";"):
            if part.strip().startswith("dur="):
                try:
                    return float(part.strip()[4:])
                except ValueError:
                    break
    return float("nan")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def load_test(
    url: str,
    *,
    rate: float = 200.0,
    requests: int = 2000,
    n_candidates: int = 500,
    raw: bool = False,
    concurrency: int = 64,
    config: str | None = None,
    seed: int = 0,
    timeout_s: float = 10.0,
    bodies: Sequence[bytes] | None = None,
    distinct: int = 256,
) -> LoadTestResult:
    """Builds requests from the simulator, then runs an open-loop load test against ``url``.

    Args:
        url: The service's base URL, e.g. ``http://127.0.0.1:8080``.
        rate: Requests per second (> 0).
        requests: Requests to send (>= 1).
        n_candidates: Candidates per request.
        raw: Send raw records instead of feature arrays.
        concurrency: Most connections open at once.
        config: Simulator config of the requests (default: ``configs/default.yaml``
            sized to the model).
        seed: Simulator seed.
        timeout_s: Per-request timeout.
        bodies: Ready bodies to send instead of simulator-built ones.
        distinct: How many distinct bodies to build (cycled).

    Returns:
        The :class:`LoadTestResult`.
    """
    if rate <= 0 or requests < 1 or concurrency < 1:
        raise ValueError(f"need rate > 0, requests >= 1, concurrency >= 1; got {rate}, {requests}, {concurrency}")
    if bodies is None:
        bodies = request_bodies(
            fetch_schema(url, timeout_s), min(requests, distinct), n_candidates=n_candidates, raw=raw, config=config, seed=seed
        )
    loop = _new_loop()
    # The simulator and the bodies outlive the run: keep them out of the collector's
    # scans, so a full collection does not stall the client and inflate a latency.
    gc.collect()
    gc.freeze()
    try:
        lat, server_ms, status, duration, errors = loop.run_until_complete(
            run_load(url, bodies, rate=rate, requests=requests, concurrency=concurrency, timeout_s=timeout_s)
        )
    finally:
        loop.close()
        gc.unfreeze()
    answered = np.array([s is not None for s in status])
    ms = lat[answered] * 1e3
    counts: dict[str, int] = {}
    for s in status:
        key = "error" if s is None else str(s)
        counts[key] = counts.get(key, 0) + 1
    pct = np.percentile(ms, [50, 90, 99]) if len(ms) else np.full(3, np.nan)
    srv = server_ms[np.isfinite(server_ms)]
    srv_pct = np.percentile(srv, [50, 99]) if len(srv) else np.full(2, np.nan)
    ok = sum(s == 200 for s in status)
    return LoadTestResult(
        url=url,
        target_rate=float(rate),
        requests=requests,
        ok=ok,
        non_200=int(answered.sum()) - ok,
        failed=int((~answered).sum()),
        statuses=dict(sorted(counts.items())),
        duration_s=round(duration, 4),
        throughput_rps=round(float(answered.sum()) / duration, 2),
        p50_ms=round(float(pct[0]), 3),
        p90_ms=round(float(pct[1]), 3),
        p99_ms=round(float(pct[2]), 3),
        max_ms=round(float(ms.max()) if len(ms) else float("nan"), 3),
        mean_ms=round(float(ms.mean()) if len(ms) else float("nan"), 3),
        server_p50_ms=round(float(srv_pct[0]), 3),
        server_p99_ms=round(float(srv_pct[1]), 3),
        body_bytes=int(np.mean([len(b) for b in bodies])),
        raw=raw,
        n_candidates=n_candidates,
        errors=errors,
    )


def start_service(model_dir: str | os.PathLike[str], *args: str, stderr: Any = None, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Starts ``python -m rl_fyp serve MODEL_DIR ARGS --port 0`` and waits until /healthz answers.

    Args:
        model_dir: The export directory to serve.
        args: More ``rl-fyp serve`` options (``--rules FILE``, ``--offload``, ...).
        stderr: The server's stderr (``subprocess.PIPE`` to read it on failure; default: inherited).
        timeout_s: How long /healthz may take to answer.

    Returns:
        ``(process, base URL)``; stop it with :func:`stop_service`.

    Raises:
        RuntimeError: If the server exits or does not answer in time (with its stderr, if piped).
    """
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl_fyp", "serve", str(model_dir), *args, "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    line = proc.stdout.readline()  # "serving ... on http://HOST:PORT", once the socket is bound
    if not line.startswith("serving "):
        proc.kill()
        err = proc.stderr.read()[-2000:] if proc.stderr else ""
        raise RuntimeError(f"rl-fyp serve did not start: {line!r} {err}")
    url = line.split(" on ", 1)[1].split()[0]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"rl-fyp serve did not answer /healthz within {timeout_s:g} s")


def stop_service(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stops a server of :func:`start_service` (SIGTERM, then SIGKILL after ``timeout_s``)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
