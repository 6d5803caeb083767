"""Export round trip: ONNX and TorchScript reproduce the module's slates; the runtime checks input and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_fyp.config import REPO_ROOT, load_config
from rl_fyp.policy import ModulePolicy
from rl_fyp.serving import ModelIntegrityError, RequestError, Reranker


@pytest.fixture(scope="module", params=["pointwise", "sequential"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, make_export):
    out = tmp_path_factory.mktemp(f"export-{request.param}")
    cfg, module, manifest = make_export(out, request.param)
    return cfg, module, out, manifest


@pytest.mark.parametrize("n", [40, 75])
def test_onnx_and_torchscript_reproduce_the_module(exported, n: int, make_observations) -> None:
    cfg, module, out, _ = exported
    obs = make_observations(n)
    obs["mask"][:, ::3] = 0  # masked candidates must never be picked
    expected = ModulePolicy(module)(obs)
    order, scores = Reranker.load(out).rerank(obs["user"], obs["candidates"], obs["mask"])
    np.testing.assert_array_equal(order, expected)
    assert not (order % 3 == 0).any()
    ts = torch.jit.load(str(out / "model.pt"))
    ts_slate, ts_scores = ts(*(torch.from_numpy(obs[k]) for k in ("user", "candidates", "mask")))
    np.testing.assert_array_equal(ts_slate.numpy(), expected)
    valid = obs["mask"] != 0
    np.testing.assert_allclose(scores[valid], ts_scores.numpy()[valid], atol=1e-5, rtol=1e-6)


def test_manifest_describes_the_schema(exported) -> None:
    cfg, module, out, manifest = exported
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["slate_size"] == cfg.env.slate_size
    assert len(manifest["inputs"]["user"]["features"]) == module.observation_space["user"].shape[0]
    assert manifest["inputs"]["candidates"]["features"][-1] == "source"
    assert set(manifest["files"]) == {"model.onnx", "model.pt", "config.yaml"}
    assert [e["name"] for e in manifest["inputs"]["candidates"]["schema"]] == manifest["inputs"]["candidates"]["features"]
    assert manifest["parity"]["slates_identical"] and manifest["parity"]["max_score_diff_onnx"] <= 1e-5
    assert load_config(out / "config.yaml") == cfg


def test_single_request_and_k(exported, make_observations) -> None:
    cfg, _, out, _ = exported
    obs = make_observations(40, batch=1)
    r = Reranker.load(out)
    order, scores = r.rerank(obs["user"][0], obs["candidates"][0], k=2)
    batch_order, _ = r.rerank(obs["user"], obs["candidates"])
    assert order.shape == (2,) and scores.shape == (40,)
    np.testing.assert_array_equal(order, batch_order[0, :2])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda u, c, m: (u[:, :-1], c, m), "user features must have shape"),
        (lambda u, c, m: (u, c[..., :-1], m), "features per row"),
        (lambda u, c, m: (u, c[:, :3], None), "fewer than the slate size"),
        (lambda u, c, m: (u, np.where(np.arange(c.shape[2]) == 0, np.nan, c), m), "NaN or inf"),
        (lambda u, c, m: (u, c, m[:, :-1]), "mask must have shape"),
        (lambda u, c, m: (u, c, np.zeros_like(m)), "fewer than"),
        (lambda u, c, m: (u, np.where(np.arange(c.shape[2]) == c.shape[2] - 1, 99.0, c), m), "source feature"),
    ],
)
def test_bad_requests_raise_a_request_error(exported, mutate, message: str, make_observations) -> None:
    cfg, _, out, _ = exported
    obs = make_observations(40, batch=2)
    u, c, m = mutate(obs["user"], obs["candidates"], obs["mask"])
    with pytest.raises(RequestError, match=message):
        Reranker.load(out).rerank(u, c, m)
    with pytest.raises(RequestError, match="k must be"):
        Reranker.load(out).rerank(obs["user"], obs["candidates"], k=cfg.env.slate_size + 1)


def test_a_tampered_or_incomplete_model_is_refused(exported, tmp_path: Path) -> None:
    _, _, out, _ = exported
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        Reranker.load(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        Reranker.load(copy)
    with pytest.raises(ModelIntegrityError, match="manifest.json is missing"):
        Reranker.load(tmp_path)


def test_the_runtime_never_imports_ray(exported) -> None:
    _, _, out, _ = exported
    code = (
        "import sys; from rl_fyp.serving import Reranker; import numpy as np; "
        f"r = Reranker.load({str(out)!r}); "
        "u = np.zeros(len(r.user_features), np.float32); c = np.zeros((40, len(r.candidate_features)), np.float32); "
        "r.rerank(u, c); assert 'ray' not in sys.modules and 'torch' not in sys.modules, 'imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
