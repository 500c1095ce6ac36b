"""The OpenVINO / nncf bench peers, the fidelity of every engine against the fp32 reference, and the speedup
over the fastest qualifying peer. Tiny artifacts, few iterations; no timing is asserted."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.bench import BenchConfig, console, markdown, run_bench
from encoderforge.bench import runner as bench_runner
from encoderforge.bench.engines import Engine, Feed, Group, OrtBaselineEngine
from encoderforge.bench.qualify import MIN_SQNR_DB, fastest_qualifying

ONE_POINT: dict[str, Any] = {"batch_sizes": (2,), "seq_lens": (32,), "warmup": 1, "iters": 2, "max_seconds": 2.0,
                             "progress": False, "fidelity_samples": 6}


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in result["engines"]}


def test_openvino_peers_time_and_check_fidelity(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'encoderforge[openvino]')")
    art = artifact("roberta", "qa")
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("openvino", "openvino-nncf-int8"),
                                   workdir=tmp_path, **ONE_POINT))
    engines = _by_name(result)
    timed = {(r["engine"], r["mode"]) for r in result["results"] if "timing" in r}
    for name in ("openvino-default", "openvino-f32"):
        assert engines[name]["skipped"] is None, engines[name]
        assert {(name, "model"), (name, "e2e")} <= timed
        assert engines[name]["info"]["inference_precision"] in ("bf16", "f32")
        fidelity = engines[name]["fidelity"]
        assert "plain fp32 export" in fidelity["reference"]  # no torch peer: the plain export on onnxruntime
        assert fidelity["feeds"] == 6 and fidelity["qualifies"] is True, fidelity
    assert engines["openvino-f32"]["info"]["inference_precision"] == "f32"
    assert engines["openvino-f32"]["fidelity"]["min_cosine"] > 0.9999
    ours = engines[art.path.name]["fidelity"]
    assert ours["median_sqnr_db"] is None and ours["qualifies"] is True  # the plain export is the reference
    nncf = engines["openvino-nncf-int8"]
    if importlib.util.find_spec("nncf") is None:
        assert "pip install 'encoderforge[openvino]'" in nncf["skipped"]
    else:  # embedding Gathers left float, the model compiles (with them quantized OpenVINO 2026.4 cannot)
        assert nncf["skipped"] is None, nncf["skipped"]
        assert ("openvino-nncf-int8", "model") in timed and "min_cosine" in nncf["fidelity"]
        assert nncf["info"]["calibration"]["ignored"].startswith("Gather")
    assert list(tmp_path.glob("*-nncf-int8-64-gather-float.xml")) or importlib.util.find_spec("nncf") is None
    assert "openvino-default" in console(result) and "## Fidelity" in markdown(result)


def test_openvino_not_installed_names_the_install_command(artifact: Callable[..., Artifact], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("openvino", "nncf") else real(name, *a))
    art = artifact("roberta", "cls")
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("openvino", "openvino-nncf-int8"),
                                   workdir=tmp_path, **ONE_POINT))
    skipped = {e["name"]: e["skipped"] for e in result["engines"] if e["role"] == "peer"}
    assert set(skipped) == {"openvino-default", "openvino-f32", "openvino-nncf-int8"}
    assert all("not installed (pip install 'encoderforge[openvino]')" in why for why in skipped.values())


class _Perturbed(OrtBaselineEngine):
    """The plain onnxruntime baseline with noise added to its outputs (SQNR ~ 14 dB): a peer that drifted."""

    def __init__(self, group: Group, workdir: Path) -> None:
        super().__init__(group, int8=False, workdir=workdir)
        self.name = "perturbed"
        self._rng = np.random.default_rng(0)

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        clean = super().outputs(feed)
        return {k: v + 0.2 * float(np.std(v)) * self._rng.standard_normal(v.shape) for k, v in clean.items()}


def test_perturbed_peer_does_not_qualify(artifact: Callable[..., Artifact], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    art = artifact("roberta", "cls")
    real = bench_runner.make_peers

    def with_perturbed(group: Group, compare: tuple[str, ...], **kwargs: Any) -> list[Engine]:
        return [*real(group, compare, **kwargs), _Perturbed(group, kwargs["workdir"])]

    monkeypatch.setattr(bench_runner, "make_peers", with_perturbed)
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("torch", "ort-baseline"), workdir=tmp_path,
                                   **{**ONE_POINT, "modes": ("model",)}))
    engines = _by_name(result)
    bad, good = engines["perturbed"]["fidelity"], engines["ort-baseline-fp32"]["fidelity"]
    assert bad["reference"].startswith("torch") and bad["qualifies"] is False
    assert bad["median_sqnr_db"] < MIN_SQNR_DB < good["median_sqnr_db"] and good["qualifies"] is True
    assert engines["torch"]["fidelity"]["qualifies"] is True and engines["torch"]["fidelity"]["median_sqnr_db"] is None
    picked = {r["peer"] for r in result["fastest_qualifying"]}
    assert picked and "perturbed" not in picked
    assert result["settings"]["fidelity"]["bound"] == {"min_cosine": 0.995, "median_sqnr_db": 25.0}
    text = markdown(result)
    assert "| group | engine | role | reference | min cosine | median SQNR dB |" in text
    assert "| perturbed | peer |" in text and "| NO |" in text


def _row(engine: str, p50: float, mode: str = "model", b: int = 1) -> dict[str, Any]:
    return {"engine": engine, "group": "g", "mode": mode, "batch_size": b, "seq_len": 128, "timing": {"p50_ms": p50}}


def _engine(name: str, role: str, qualifies: bool | None) -> dict[str, Any]:
    fidelity = None if qualifies is None else {"qualifies": qualifies}
    return {"name": name, "group": "g", "role": role, "fidelity": fidelity}


def test_fastest_qualifying_peer_ratio() -> None:
    engines = [_engine("ours", "ours", True), _engine("fast-but-drifted", "peer", False),
               _engine("ok-slow", "peer", True), _engine("ok-slower", "peer", True), _engine("unmeasured", "peer", None)]
    results = [_row("ours", 10.0), _row("fast-but-drifted", 2.0), _row("ok-slow", 15.0), _row("ok-slower", 40.0),
               _row("unmeasured", 1.0),
               # at b8 only the drifted and the unmeasured peers ran: no qualifying peer, no entry
               _row("ours", 50.0, b=8), _row("fast-but-drifted", 20.0, b=8), _row("unmeasured", 5.0, b=8),
               # end to end the slower qualifying peer is the fastest qualifying one that ran
               _row("ours", 30.0, mode="e2e"), _row("ok-slower", 24.0, mode="e2e"),
               {"engine": "ok-slow", "group": "g", "mode": "e2e", "batch_size": 1, "seq_len": 128, "skipped": "x"}]
    out = {(r["mode"], r["batch_size"]): r for r in fastest_qualifying(results, engines)}
    assert set(out) == {("model", 1), ("e2e", 1)}
    assert out[("model", 1)]["peer"] == "ok-slow" and out[("model", 1)]["speedup"] == 1.5
    assert out[("e2e", 1)]["peer"] == "ok-slower" and out[("e2e", 1)]["speedup"] == 0.8
    assert out[("model", 1)]["ours_qualifies"] is True


def test_optimum_intel_without_its_interpreter_is_skipped_with_the_fix(artifact: Callable[..., Artifact],
                                                                        tmp_path: Path) -> None:
    art = artifact("roberta", "cls")
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("optimum-intel",), workdir=tmp_path,
                                   **{**ONE_POINT, "fidelity_samples": 0}))
    engines = _by_name(result)
    for name in ("optimum-intel-default", "optimum-intel-nncf-int8"):
        assert "--optimum-intel-python" in engines[name]["skipped"]
        assert "optimum-intel[openvino,nncf]" in engines[name]["skipped"]
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("optimum-intel",), workdir=tmp_path,
                                   optimum_intel_python=str(tmp_path / "no-python"),
                                   **{**ONE_POINT, "fidelity_samples": 0}))
    assert "not an executable file" in _by_name(result)["optimum-intel-default"]["skipped"]


class _ExternalPeer(bench_runner.OptimumEngine):
    """An engine run 'in another interpreter' (here: onnxruntime in this one) that sends back its outputs on the
    fidelity feeds, exact or perturbed: the parent must score them like any other engine's."""

    def __init__(self, group: Group, name: str, noise: float) -> None:
        super().__init__(group, python=None, int8=False, flavor="optimum-intel")
        self.name, self.noise = name, noise

    def run_external(self, points: Any, *, fidelity_feeds: Any = None, output_names: Any = None,
                     **timing: Any) -> dict[str, Any]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.group.artifacts[0].model_path), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        outputs = []
        for feed in fidelity_feeds:
            values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
            outputs.append({k: v + self.noise * float(np.std(v)) * rng.standard_normal(v.shape)
                            for k, v in values.items() if k in output_names})
        self.fidelity_outputs = outputs
        started = time.perf_counter()
        for _, inputs in points:
            session.run(None, inputs.feed)
        ms = (time.perf_counter() - started) * 1e3 / len(points)
        timing = {"p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "first_call_ms": ms}
        return {"load_s": 0.1, "peak_rss_mb": 1.0,
                "points": [{"mode": mode, "batch_size": inputs.batch_size, "seq_len": inputs.seq_len,
                            "timing": timing} for mode, inputs in points]}


def test_a_peer_in_another_interpreter_is_scored_on_its_own_outputs(artifact: Callable[..., Artifact],
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    art = artifact("roberta", "cls")
    real = bench_runner.make_peers

    def with_external(group: Group, compare: tuple[str, ...], **kwargs: Any) -> list[Engine]:
        return [*real(group, compare, **kwargs), _ExternalPeer(group, "external-exact", 0.0),
                _ExternalPeer(group, "external-noisy", 0.2)]

    monkeypatch.setattr(bench_runner, "make_peers", with_external)
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("torch",), workdir=tmp_path,
                                   **{**ONE_POINT, "modes": ("model",)}))
    engines = _by_name(result)
    exact, noisy = engines["external-exact"]["fidelity"], engines["external-noisy"]["fidelity"]
    assert exact["reference"].startswith("torch") and exact["feeds"] == ONE_POINT["fidelity_samples"]
    assert exact["qualifies"] is True and exact["min_cosine"] > 0.9999
    assert noisy["qualifies"] is False and noisy["median_sqnr_db"] < MIN_SQNR_DB
    assert {r["engine"] for r in result["results"] if "timing" in r} >= {"external-exact", "external-noisy"}
