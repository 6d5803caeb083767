"""The HTTP service: answers equal the runtime's, every bad input is a 400 naming the problem,
the real server starts, serves a bounded open-loop load test and refuses a tampered model."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from envs.feed_env import FeedVectorEnv
from rl_fyp.cli import main
from rl_fyp.config import REPO_ROOT
from rl_fyp.loadtest import load_test, run_load, start_service, stop_service
from rl_fyp.rules import BusinessRules
from rl_fyp.serving import Reranker

from rl_fyp.service import create_app

with warnings.catch_warnings():  # starlette.testclient prefers the httpx2 package to httpx
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def reranker(small_export) -> Reranker:
    return Reranker.load(small_export[2])


@pytest.fixture(scope="module")
def client(reranker: Reranker) -> TestClient:
    with TestClient(create_app(reranker)) as c:
        yield c


@pytest.fixture(scope="module")
def sim_requests(small_export) -> dict[str, list[dict]]:
    """Feature-array and raw-record requests of 3 users of the small world."""
    cfg = small_export[0]
    env = FeedVectorEnv(num_envs=3, config=cfg.env)
    obs, _ = env.reset(seed=11)
    feats, raws = [], []
    for b in range(3):
        user, cands = env.sim.request_records(b)
        valid = obs["mask"][b] != 0
        feats.append(
            {
                "user_features": obs["user"][b].tolist(),
                "candidate_features": obs["candidates"][b][valid].tolist(),
                "candidate_ids": [c["id"] for c in cands],
            }
        )
        raws.append({"user": user, "candidates": cands})
    return {"features": feats, "raw": raws}


def post(client: TestClient, body: bytes | str, **kw) -> httpx.Response:
    return client.post("/rerank", content=body, headers={"content-type": "application/json"}, **kw)


def via_json(payload: dict) -> dict:
    """The payload as the server sees it: through JSON."""
    return orjson.loads(orjson.dumps(payload))


@pytest.mark.parametrize("kind", ["features", "raw"])
def test_a_good_request_gets_the_runtimes_slate(client, reranker, sim_requests, kind: str) -> None:
    for payload in sim_requests[kind]:
        r = post(client, orjson.dumps(payload))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json() == reranker.rerank_request(via_json(payload))
        assert len(r.json()["slate"]) == reranker.slate_size and r.json()["ids"]
        assert float(r.headers["server-timing"].split("dur=")[1]) > 0


def test_a_batch_and_both_request_kinds_in_one_body(client, reranker, sim_requests) -> None:
    batch = {"requests": [sim_requests["features"][0], sim_requests["raw"][1]]}
    r = post(client, orjson.dumps(batch))
    assert r.status_code == 200, r.text
    assert r.json() == reranker.rerank_request(via_json(batch))
    # The feature arrays of a user's observation and its raw records give one slate.
    same = post(client, orjson.dumps({"requests": [sim_requests["features"][1], sim_requests["raw"][1]]})).json()
    assert same["results"][0]["slate"] == same["results"][1]["slate"]


@pytest.mark.parametrize("use_orjson, offload", [(False, False), (True, True)])
def test_the_stdlib_parser_and_the_thread_pool_give_the_same_answers(reranker, sim_requests, use_orjson, offload) -> None:
    with TestClient(create_app(reranker, use_orjson=use_orjson, offload=offload)) as c:
        for payload in sim_requests["features"][:2] + sim_requests["raw"][:1]:
            r = post(c, json.dumps(payload))
            assert r.status_code == 200, r.text
            assert r.json() == reranker.rerank_request(via_json(payload))
        bad = post(c, b'{"user_features": [NaN], "candidate_features": [[1.0]]}')
        assert bad.status_code == 400 and "NaN is not a JSON number" in bad.json()["error"]


def test_healthz_and_schema_describe_the_model(client, reranker, small_export) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok"
    assert body["model_version"] == reranker.model_version
    assert body["slate_size"] == small_export[0].env.slate_size
    assert body["n_user_features"] == len(reranker.user_features)
    assert body["n_candidate_features"] == len(reranker.candidate_features)
    assert body["rules"]["active"] is False and body["raw_records"] is True
    s = client.get("/schema").json()
    assert s["inputs"] == reranker.manifest["inputs"]
    assert s["feature_builder"] == reranker.manifest["feature_builder"]


def test_healthz_lists_the_rules_in_force(small_export) -> None:
    rules = BusinessRules(no_adjacent_creator=True, exploration_slots=(1,))
    with TestClient(create_app(Reranker.load(small_export[2], rules=rules))) as c:
        got = c.get("/healthz").json()["rules"]
    assert got["no_adjacent_creator"] is True and got["exploration_slots"] == [1] and got["active"] is True


def _features(sim_requests, **change) -> bytes:
    return orjson.dumps({**sim_requests["features"][0], **change})


BAD_REQUESTS = {
    "malformed JSON": (lambda s: b'{"user_features": [1, 2', "invalid JSON"),
    "an array body": (lambda s: b"[1, 2]", "must be a JSON object, got an array"),
    "a string body": (lambda s: b'"rerank"', "must be a JSON object, got a string"),
    "an empty body": (lambda s: b"", "invalid JSON"),
    "missing candidates": (
        lambda s: orjson.dumps({"user_features": s["features"][0]["user_features"]}),
        "missing field 'candidate_features'",
    ),
    "user features one short": (
        lambda s: _features(s, user_features=s["features"][0]["user_features"][:-1]),
        "user features must have shape",
    ),
    "candidate rows one short": (
        lambda s: _features(s, candidate_features=[row[:-1] for row in s["features"][0]["candidate_features"]]),
        "features per row",
    ),
    "a NaN literal": (
        lambda s: _features(s).replace(b'"user_features":[', b'"user_features":[NaN,', 1),
        "NaN is not a JSON number",
    ),
    "an Infinity literal": (
        lambda s: _features(s).replace(b'"user_features":[', b'"user_features":[-Infinity,', 1),
        "-Infinity is not a JSON number",
    ),
    "a number beyond double": (lambda s: _features(s).replace(b'"user_features":[', b'"user_features":[1e999,', 1), "infinity"),
    "fewer candidates than K": (
        lambda s: _features(s, candidate_features=s["features"][0]["candidate_features"][:2], candidate_ids=None),
        "fewer than the slate size",
    ),
    "an unknown feature name": (
        lambda s: _features(s, user_features={"bogus_feature": 1.0}),
        "unknown user feature(s) ['bogus_feature']",
    ),
    "an unknown request field": (lambda s: _features(s, colour="red"), "unknown request field(s) ['colour']"),
    "k out of range": (lambda s: _features(s, k=99), "k must be an integer"),
    "a raw record without a field": (
        lambda s: orjson.dumps(
            {**s["raw"][0], "candidates": [{k: v for k, v in c.items() if k != "duration_s"} for c in s["raw"][0]["candidates"]]}
        ),
        "duration_s",
    ),
    "a bad request in a batch": (
        lambda s: orjson.dumps({"requests": [s["features"][0], {"user_features": [1.0]}]}),
        "requests[1]: missing field 'candidate_features'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_a_400_naming_the_problem(client, sim_requests, case: str) -> None:
    make, message = BAD_REQUESTS[case]
    r = post(client, make(sim_requests))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    # ... and the server goes on answering.
    assert post(client, orjson.dumps(sim_requests["features"][0])).status_code == 200


def test_wrong_method_unknown_path_and_oversized_bodies(reranker, sim_requests) -> None:
    body = orjson.dumps(sim_requests["features"][0])
    with TestClient(create_app(reranker, max_body_bytes=len(body))) as c:
        r = c.get("/rerank")
        assert r.status_code == 405 and r.headers["allow"] == "POST" and "use POST" in r.json()["error"]
        assert c.post("/healthz").status_code == 405
        r = c.get("/nope")
        assert r.status_code == 404 and "/nope" in r.json()["error"]
        assert post(c, body).status_code == 200  # exactly at the limit
        r = post(c, body + b" ")
        assert r.status_code == 413 and "over the limit" in r.json()["error"]
        # A chunked body (no Content-Length) is counted as it arrives.
        r = c.post("/rerank", content=iter([body, b" "]), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert post(c, body).status_code == 200
        stats = c.get("/healthz").json()["stats"]
    assert stats["ok"] == 2 and stats["bad_request"] == 2


def test_an_unexpected_error_is_a_500_and_the_server_keeps_serving(small_export, sim_requests, caplog, monkeypatch) -> None:
    reranker = Reranker.load(small_export[2])
    real = reranker.rerank_request
    calls = []

    def flaky(payload):
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("boom")
        return real(payload)

    monkeypatch.setattr(reranker, "rerank_request", flaky)
    body = orjson.dumps(sim_requests["features"][0])
    with TestClient(create_app(reranker), raise_server_exceptions=True) as c, caplog.at_level("ERROR", "rl_fyp.service"):
        r = post(c, body)
        assert r.status_code == 500 and r.json()["error"] == "internal error: ZeroDivisionError: boom"
        assert "POST /rerank failed" in caplog.text and "ZeroDivisionError" in caplog.text
        assert post(c, body).status_code == 200
        assert c.get("/healthz").json()["stats"]["server_error"] == 1


# ---------------------------------------------------------------------- real processes
def test_rl_fyp_serve_answers_a_bounded_open_loop_load_test(small_export, capsys) -> None:
    cfg, _, out = small_export
    proc, url = start_service(out, "--max-body-bytes", "200000", stderr=subprocess.PIPE)
    try:
        t = time.perf_counter()
        r = load_test(url, rate=50, requests=40, n_candidates=cfg.env.retrieval.n_candidates, distinct=8)
        assert time.perf_counter() - t < 60
        assert (r.requests, r.ok, r.non_200, r.failed) == (40, 40, 0, 0), r.summary()
        # Open loop: the last request left on schedule, (40 - 1) / 50 s after the first.
        assert 39 / 50 <= r.duration_s < 39 / 50 + 10
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert 0 < r.server_p50_ms <= r.p50_ms
        raw = load_test(url, rate=50, requests=10, raw=True, n_candidates=cfg.env.retrieval.n_candidates, distinct=4)
        assert raw.ok == 10, raw.summary()
        # The command line prints one JSON line and exits 0 when every answer is a 200.
        assert main(["loadtest", url, "--rate", "50", "--requests", "10", "--n-candidates", "40", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert printed["ok"] == 10 and printed["requests"] == 10
        # The real server (httptools) answers bad input as the app does, and keeps serving.
        bad = httpx.post(url + "/rerank", content=b'{"user_features": [NaN]}', timeout=10)
        assert bad.status_code == 400 and "NaN" in bad.json()["error"]
        assert httpx.post(url + "/rerank", content=b"x" * 200_001, timeout=10).status_code == 413
        assert httpx.get(url + "/healthz", timeout=10).json()["stats"]["ok"] >= 70
    finally:
        stop_service(proc)
    assert proc.returncode is not None


def test_a_tampered_model_is_refused_at_start(small_export, tmp_path: Path) -> None:
    copy = tmp_path / "export"
    copy.mkdir()
    for f in small_export[2].iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    proc = subprocess.run(
        [sys.executable, "-m", "rl_fyp", "serve", str(copy), "--port", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "checksum mismatch" in proc.stderr and "refusing to serve" in proc.stderr
    assert "serving" not in proc.stdout


@pytest.mark.parametrize(
    "text, message",
    [
        ("no_adjacent_creator: true\ncolour: red\n", "colour"),
        ("max_topic_share: 1.5\n", "max_topic_share"),
        ("exploration_sources: [nowhere]\n", "nowhere"),
    ],
)
def test_serve_with_a_bad_rules_file_exits_2(small_export, tmp_path: Path, capsys, text: str, message: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    assert main(["serve", str(small_export[2]), "--port", "0", "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_the_example_rules_file_loads_and_applies(small_export, sim_requests) -> None:
    from rl_fyp.rules import load_rules

    rules = load_rules(REPO_ROOT / "configs" / "serving" / "rules.yaml")
    assert rules.active and rules.no_adjacent_creator
    reranker = Reranker.load(small_export[2], rules=rules)
    with TestClient(create_app(reranker)) as c:
        r = post(c, orjson.dumps(sim_requests["raw"][0]))
        assert r.status_code == 200, r.text
        creators = {rec["id"]: rec["creator"] for rec in sim_requests["raw"][0]["candidates"]}
        slate = [creators[i] for i in r.json()["ids"]]
        assert "no_adjacent_creator" in r.json()["relaxed_rules"] or all(a != b for a, b in zip(slate, slate[1:]))
        # Feature arrays carry no creators: the rule needs them.
        r = post(c, orjson.dumps(sim_requests["features"][0]))
        assert r.status_code == 400 and "creator ids" in r.json()["error"]


# ---------------------------------------------------------------------- the load generator
def _slow_server(delay_s: float) -> tuple[object, str, threading.Thread]:
    """A uvicorn server in a thread whose /rerank blocks its event loop ``delay_s`` per request."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def slow(request):
        await request.body()
        time.sleep(delay_s)  # blocks: requests are served one after another
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/rerank", slow, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}", thread


def test_the_load_test_is_open_loop_and_counts_waiting_in_the_latency() -> None:
    server, url, thread = _slow_server(0.05)
    try:
        # 10 requests at 100/s on a server that takes 50 ms each, one at a time: the i-th
        # answer ends ~(i + 1) * 50 ms after the start but was scheduled at i * 10 ms, so
        # the last one's latency is ~500 - 90 = 410 ms. A closed-loop client (send, wait,
        # send) would report ~50 ms for each and take 0.5 s to *send* them.
        lat, server_ms, status, duration, errors = asyncio.run(
            run_load(url, [b"{}"], rate=100, requests=10, concurrency=10, timeout_s=10, warmup=0)
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert status == [200] * 10 and not errors
    assert np.isnan(server_ms).all()  # this server sends no Server-Timing
    assert lat.max() > 0.3 and lat.min() < 0.15
    assert 0.45 < duration < 2.0


def test_loadtest_without_a_server_is_an_error(capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["loadtest", f"http://127.0.0.1:{port}", "--requests", "5"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_service_imports_neither_ray_nor_torch() -> None:
    code = "import sys, rl_fyp.service, rl_fyp.loadtest; assert not {'ray', 'torch'} & set(sys.modules), 'imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
