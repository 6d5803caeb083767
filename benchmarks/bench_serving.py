"""Serving latency: the model, the runtime, the feature builder and the HTTP service.

Prints one JSON line per measurement (never asserted in tests; the targets are model
p50 <= 0.5 ms and p99 <= 1 ms at N = 500 -> K = 10, batch 1, one CPU thread; HTTP
p99 <= 10 ms at 200 requests/s):

- ``model``: the model alone, one thread, batch 1: onnxruntime (the runner
  ``Reranker.load`` uses), TorchScript (``model.pt``) and the eager RLModule
  (``greedy_slates``, only when the module is at hand, i.e. without ``--model``);
- ``rerank``: ``Reranker.rerank`` end to end (validation + model), without and with the
  business rules of ``configs/serving/rules.yaml``;
- ``features``: raw records -> features (``Reranker.features``) at numba's default
  thread count and at one thread (what ``rl-fyp serve`` uses);
- ``handler``: what the server does per request short of HTTP: ``orjson.loads`` of the
  body, then ``Reranker.rerank_request``;
- ``http``: ``rl-fyp serve`` in a subprocess on a free loopback port, and
  ``rl_fyp.loadtest`` open-loop at ``--rate`` requests/s for ``--http-seconds``, for
  feature-array and raw-record requests (raw records also at half the rate), and the
  model on the event loop vs in a thread pool (``--offload``). ``server_p50_ms`` /
  ``server_p99_ms`` are the handler's own time (its ``Server-Timing`` header).

The model is an untrained but perturbed slate module (its cost does not depend on
training) of ``configs/default.yaml`` with ``env.slate_size=10`` and
``env.retrieval.n_candidates=500``, exported to a temporary directory; or ``--model DIR``,
a real export. Requests come from the simulator, sized to the model.

Usage::

    .venv/bin/python benchmarks/bench_serving.py [--model DIR] [--calls 2000] [--rate 200]
        [--http-seconds 15] [--no-http]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def timed(fn, args_list, calls: int, warmup: int = 200) -> dict:
    """p50 / p99 / mean in ms of ``fn(*args)`` over ``calls`` calls, cycling ``args_list``."""
    for i in range(warmup):
        fn(*args_list[i % len(args_list)])
    ts = np.empty(calls)
    for i in range(calls):
        a = args_list[i % len(args_list)]
        t = time.perf_counter()
        fn(*a)
        ts[i] = time.perf_counter() - t
    ms = ts * 1e3
    return {
        "calls": calls,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
    }


def build_model(out: Path, n: int, k: int):
    """Exports an untrained-but-perturbed module of the default world with N = n, K = k."""
    import torch

    from envs.feed_env import FeedVectorEnv
    from rl_fyp.config import load_config
    from rl_fyp.export import export_policy
    from rl_fyp.slate_module import SlateRLModule, module_config

    cfg = load_config(None, [f"env.slate_size={k}", f"env.retrieval.n_candidates={n}"])
    env = FeedVectorEnv(num_envs=1, config=cfg.env)
    torch.manual_seed(0)
    module = SlateRLModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config=module_config(cfg.model, cfg.env),
    )
    with torch.no_grad():  # as after training: the zero-initialised output layer has moved
        module.pi.cand_out.weight.normal_(0.0, 0.5)
    module.eval()
    export_policy(module, cfg, out)
    return module


def schema_of(manifest: dict) -> dict:
    return {"slate_size": manifest["slate_size"], "inputs": manifest["inputs"], "feature_builder": manifest["feature_builder"]}


def observations(schema: dict, n: int, count: int, seed: int = 1) -> list[dict]:
    """``count`` single requests (arrays and records) from the simulator, sized to the model."""
    from envs.feed_env import FeedVectorEnv
    from rl_fyp.loadtest import sim_config

    cfg = sim_config(schema, n)
    env = FeedVectorEnv(num_envs=count, config=cfg.env)
    obs, _ = env.reset(seed=seed)
    out = []
    for b in range(count):
        user, cands = env.sim.request_records(b)
        valid = obs["mask"][b] != 0
        out.append(
            {
                "user": obs["user"][b : b + 1].copy(),
                "candidates": np.ascontiguousarray(obs["candidates"][b : b + 1][:, valid]),
                "records": (user, cands),
                "creator": np.array([c["creator"] for c in cands]),
                "topic": np.array([c["topic"] for c in cands]),
            }
        )
    return out


def bench_in_process(model_dir: Path, module, calls: int, n: int) -> None:
    import numba
    import orjson

    from rl_fyp.rules import load_rules
    from rl_fyp.serving import BACKENDS, Reranker

    reranker = Reranker.load(model_dir, threads=1)
    schema = schema_of(reranker.manifest)
    reqs = observations(schema, n, 32)
    n_real, k = reqs[0]["candidates"].shape[1], reranker.slate_size
    base = {"n_candidates": n_real, "k": k, "batch": 1, "threads": 1}
    arrays = [(r["user"], r["candidates"], np.ones(r["candidates"].shape[:2], np.int8)) for r in reqs]

    # (a) the model alone
    runners = {"onnxruntime": BACKENDS["onnx"](model_dir, 1), "torchscript": BACKENDS["torchscript"](model_dir, 1)}
    for name, run in runners.items():
        emit(bench="model", runner=name, **base, **timed(run, arrays, calls))
    if module is not None:
        import torch

        from rl_fyp.slate_module import greedy_slates

        torch.set_num_threads(1)
        t_arrays = [({"user": torch.from_numpy(u), "candidates": torch.from_numpy(c), "mask": torch.from_numpy(m)},) for u, c, m in arrays]

        def eager(batch):
            with torch.inference_mode():
                return greedy_slates(module, batch)

        emit(bench="model", runner="eager_rlmodule", **base, **timed(eager, t_arrays, calls))

    # (b) the runtime end to end: validation + model (+ the business rules)
    singles = [(r["user"][0], r["candidates"][0]) for r in reqs]
    emit(bench="rerank", rules="none", **base, **timed(reranker.rerank, singles, calls))
    ruled = Reranker.load(model_dir, threads=1, rules=load_rules(ROOT / "configs" / "serving" / "rules.yaml"))

    def with_rules(u, c, cre, top):
        return ruled.rerank(u, c, creator=cre, topic=top)

    emit(bench="rerank", rules="configs/serving/rules.yaml", **base,
         **timed(with_rules, [(r["user"][0], r["candidates"][0], r["creator"], r["topic"]) for r in reqs], calls))

    # (c) raw records -> features
    records = [r["records"] for r in reqs]
    default_threads = numba.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        numba.set_num_threads(threads)
        emit(bench="features", numba_threads=threads, n_candidates=n_real, **timed(reranker.features, records, max(calls // 4, 200), warmup=50))

    # What the server does per request, short of HTTP (at one numba thread, as served).
    feat_bodies = [
        orjson.dumps({"user_features": r["user"][0], "candidate_features": r["candidates"][0],
                      "creator_ids": r["creator"], "topics": r["topic"]}, option=orjson.OPT_SERIALIZE_NUMPY)
        for r in reqs
    ]
    raw_bodies = [orjson.dumps({"user": u, "candidates": c}) for u, c in records]
    for kind, bodies in (("features", feat_bodies), ("raw", raw_bodies)):
        emit(bench="handler", step="orjson.loads", request=kind, body_kb=round(np.mean([len(b) for b in bodies]) / 1e3, 1),
             **timed(orjson.loads, [(b,) for b in bodies], max(calls // 4, 200), warmup=50))
        parsed = [(orjson.loads(b),) for b in bodies]
        emit(bench="handler", step="rerank_request", request=kind, **timed(reranker.rerank_request, parsed, max(calls // 4, 200), warmup=50))
    numba.set_num_threads(default_threads)


def bench_http(model_dir: Path, rate: float, seconds: float, n: int) -> None:
    from rl_fyp.loadtest import fetch_schema, load_test, request_bodies, start_service, stop_service

    # Raw records also at half the rate: their server time is several ms (the feature
    # builder), so 200/s loads one core most of the way and queueing sets the tail.
    runs = {(): [(False, rate), (True, rate), (True, rate / 2)], ("--offload",): [(False, rate)]}
    for extra, kinds in runs.items():
        proc, url = start_service(model_dir, *extra)
        try:
            schema = fetch_schema(url)
            for raw, r_rate in kinds:
                bodies = request_bodies(schema, 256, n_candidates=n, raw=raw, seed=2)
                r = load_test(url, rate=r_rate, requests=int(r_rate * seconds), raw=raw, n_candidates=n, bodies=bodies)
                emit(
                    bench="http", request="raw" if raw else "features", model_call="thread pool" if extra else "event loop",
                    target_rps=r_rate, requests=r.requests, throughput_rps=r.throughput_rps, p50_ms=r.p50_ms,
                    p90_ms=r.p90_ms, p99_ms=r.p99_ms, max_ms=r.max_ms, server_p50_ms=r.server_p50_ms,
                    server_p99_ms=r.server_p99_ms, non_200=r.non_200, failed=r.failed,
                    body_kb=round(r.body_bytes / 1e3, 1),
                )
        finally:
            stop_service(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="an export directory (default: export a fresh module)")
    parser.add_argument("--n-candidates", type=int, default=500, help="N per request (default 500)")
    parser.add_argument("--slate-size", type=int, default=10, help="K of the fresh module (default 10)")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per in-process measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second")
    parser.add_argument("--http-seconds", type=float, default=15.0, help="length of each HTTP load test")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        module = None
        model_dir = args.model
        if model_dir is None:
            model_dir = Path(tmp) / "export"
            module = build_model(model_dir, args.n_candidates, args.slate_size)
        bench_in_process(model_dir, module, args.calls, args.n_candidates)
        if not args.no_http:
            bench_http(model_dir, args.rate, args.http_seconds, args.n_candidates)


if __name__ == "__main__":
    main()
