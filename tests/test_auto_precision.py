"""`optimize --precision auto`: candidates built, measured on this machine, the fastest within the bound kept,
the table in the manifest; `load()` runs the recorded choice where it still applies, and says so where not."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from encoderforge.artifact import Artifact, write_manifest
from encoderforge.cli import main
from encoderforge.cpu import CpuFeatures
from encoderforge.errors import ArtifactError, ValidationError
from encoderforge.graph_passes import AutoOptions, OptimizeConfig, optimize
from encoderforge.graph_passes.auto import GRAPHS, Plan, _choose, _Progress, _Trial
from encoderforge.graph_passes.quantize_nncf import nncf_missing
from encoderforge.manifest import Manifest, Selection
from encoderforge.runtime import load
from encoderforge.runtime.backends import get_backend

FAST = AutoOptions(seconds=0.03, rounds=1, progress=False)
HAS_OPENVINO = get_backend("openvino").available() is None
BF16_CPU = CpuFeatures("fake bf16 Xeon", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), "x86_64")
SHAPES = ((1, 128), (8, 128))
PLAIN_CPU = CpuFeatures("fake AVX2 EPYC", frozenset({"avx2", "fma"}), "x86_64")


@pytest.fixture(scope="module")
def source(artifact: Callable[..., Artifact]) -> Artifact:
    return artifact("roberta", "question-answering")


@pytest.fixture(scope="module")
def auto(source: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return optimize(OptimizeConfig(artifact=source.path, output=tmp_path_factory.mktemp("auto") / "a", auto=FAST))


def test_auto_is_the_cpu_default_and_keeps_the_fastest_within_the_bound(auto: Artifact) -> None:
    selection = auto.manifest.selection
    assert selection is not None and selection.chosen is not None
    chosen = selection.chosen
    assert [c.rejected for c in selection.candidates].count(None) == 1
    measured = [c for c in selection.candidates if c.latency]
    checked = [c for c in selection.candidates if c.accuracy_drop is not None]
    assert {(c.backend, c.precision) for c in checked} >= {("onnxruntime-cpu", "fp32"),
                                                           ("onnxruntime-cpu", "int8-dynamic"),
                                                           ("onnxruntime-cpu", "int8-static")}
    for c in checked:  # timed exactly when within the bound (those outside are never timed)
        assert bool(c.latency) == (c.accuracy_drop <= selection.max_accuracy_drop and c.min_cosine is not None
                                   and c.min_cosine >= 1 - selection.max_accuracy_drop), c
    for c in measured:
        # batch 1 and 8 at sequence 128 and 48, capped at the tiny model's 64 tokens
        assert [(p.batch_size, p.sequence_length) for p in c.latency] == [(1, 64), (8, 64), (1, 48), (8, 48)]
        assert all(p.p50_ms > 0 for p in c.latency)
        assert c.accuracy_drop is not None and c.min_cosine is not None and c.score_ms is not None
        within = c.accuracy_drop <= selection.max_accuracy_drop
        if c is not chosen:
            assert c.rejected  # a reason, in words
            assert ("slower" in c.rejected) == within
            if within:
                assert chosen.score_ms is not None and c.score_ms >= chosen.score_ms
    assert chosen.accuracy_drop is not None and chosen.accuracy_drop <= selection.max_accuracy_drop == 5e-3
    # the artifact holds the chosen graph; the manifest's fidelity is the chosen candidate's
    assert auto.manifest.precision == GRAPHS[chosen.graph][0]
    assert auto.manifest.fidelity is not None
    assert auto.manifest.fidelity["accuracy_drop"] == pytest.approx(chosen.accuracy_drop)
    assert chosen.backend in auto.manifest.backends
    assert selection.backend == chosen.backend and selection.precision == chosen.precision
    # NNCF's int8 graph runs on OpenVINO as another int8-static candidate, dynamic and per length bucket
    by_nncf = [c for c in selection.candidates if c.graph == "int8-static-nncf"]
    assert [c.backend for c in by_nncf] == ["openvino", "openvino"]
    if HAS_OPENVINO and nncf_missing() is None:
        assert all(c.min_cosine is not None for c in by_nncf), by_nncf  # checked (and timed if within the bound)


def test_the_table_survives_the_manifest_round_trip(auto: Artifact) -> None:
    data = json.loads((auto.path / "manifest.json").read_text())
    assert Manifest.from_json(data).selection == auto.manifest.selection
    assert any(c.static_shapes and c.latency for c in auto.manifest.selection.candidates) == HAS_OPENVINO
    data["selection"]["candidates"][0]["latency"] = "fast"
    with pytest.raises(ArtifactError, match=r"field 'selection.candidates.*latency' must be a list"):
        Manifest.from_json(data)


def test_load_runs_the_recorded_backend(auto: Artifact) -> None:
    selection = auto.manifest.selection
    assert selection is not None
    pipe = load(auto.path, device="cpu")
    assert pipe.session.backend == selection.backend
    answer = pipe(question="Who rebuilt the mill?", context="The mill was rebuilt by Ada in 1900.")
    assert isinstance(answer, dict) and answer["answer"]
    # an explicit backend still wins
    assert load(auto.path, backend="onnxruntime-cpu").session.backend == "onnxruntime-cpu"


def _recorded_as(artifact: Artifact, target: Path, selection: Selection) -> Path:
    """A copy of the artifact whose manifest records another choice."""
    import shutil

    shutil.copytree(artifact.path, target)
    write_manifest(target, replace(artifact.manifest, selection=selection))
    return target


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'encoderforge[openvino]')")
def test_a_bf16_choice_runs_where_the_cpu_has_bf16_and_falls_back_with_a_reason_where_not(
        source: Artifact, auto: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    assert auto.manifest.selection is not None
    bf16 = replace(auto.manifest.selection, backend="openvino", precision="bf16", options=(("precision", "bf16"),),
                   cpu_features=("amx_bf16",))
    path = _recorded_as(source, tmp_path / "bf16", bf16)  # the plain export: a graph openvino reads
    import encoderforge.cpu

    monkeypatch.setattr(encoderforge.cpu, "current_cpu", lambda: BF16_CPU)
    pipe = load(path, device="cpu")
    assert pipe.session.backend == "openvino" and pipe.session.precision == "bf16"
    monkeypatch.setattr(encoderforge.cpu, "current_cpu", lambda: PLAIN_CPU)
    with caplog.at_level(logging.WARNING, logger="encoderforge.runtime"):
        fallback = load(path, device="cpu")
    assert fallback.session.backend == "onnxruntime-cpu"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "optimize chose openvino bf16" in warning and "amx_bf16" in warning and "onnxruntime-cpu instead" in warning


def test_a_choice_whose_backend_is_missing_falls_back_with_a_reason(
        source: Artifact, auto: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    assert auto.manifest.selection is not None
    path = _recorded_as(source, tmp_path / "ov", replace(auto.manifest.selection, backend="openvino", cpu_features=()))
    backend = get_backend("openvino")
    monkeypatch.setattr(type(backend), "available", lambda self: "openvino is not installed (pip install it)")
    with caplog.at_level(logging.WARNING, logger="encoderforge.runtime"):
        pipe = load(path, device="cpu")
    assert pipe.session.backend == "onnxruntime-cpu"
    assert "openvino is not installed" in caplog.text and "running on onnxruntime-cpu instead" in caplog.text


def test_engines_not_installed_are_listed_not_measured(source: Artifact, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    backend = get_backend("openvino")
    monkeypatch.setattr(type(backend), "available", lambda self: "openvino is not installed (pip install it)")
    result = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "a", precision="auto", auto=FAST))
    selection = result.manifest.selection
    assert selection is not None and selection.backend == "onnxruntime-cpu"
    vino = [c for c in selection.candidates if c.backend == "openvino"]
    assert vino and all(not c.latency and c.rejected for c in vino)
    assert any(c.rejected == "openvino is not installed (pip install it)" for c in vino)


def _trial(precision: str, drop: float, p50: tuple[float, float], cosine: float = 1.0) -> _Trial:
    class Report:
        accuracy_drop = drop
        min_cosine = cosine
        finite = True

    trial = _Trial(Plan("onnxruntime-cpu", precision, precision), ())
    trial.fidelity = Report()  # type: ignore[assignment]
    trial.samples = {(1, 128): [p50[0]], (8, 128): [p50[1]]}
    return trial


def test_choice_is_the_fastest_within_the_bound_by_geometric_mean() -> None:
    fast_but_wrong = _trial("int8-static", 0.02, (1.0, 8.0))
    balanced = _trial("int8-dynamic", 0.004, (4.0, 16.0))  # geomean 8
    skewed = _trial("fp32", 0.0, (2.0, 40.0))  # geomean ~8.9
    config = OptimizeConfig(artifact="a", output="b")
    assert _choose([fast_but_wrong, balanced, skewed], SHAPES, 0.005, config) is balanced
    assert fast_but_wrong.rejected == "accuracy drop 0.02 > bound 0.005"
    assert skewed.rejected == "slower: 1.12x the chosen one's time"
    # a small pooled drop does not hide one bad row: every row's cosine is held to 1 - bound as well
    bad_row = _trial("int8-static", 0.0007, (1.0, 8.0), cosine=0.934)
    assert _choose([bad_row, _trial("fp32", 0.0, (2.0, 40.0))], SHAPES, 0.005, config) is not bad_row
    assert bad_row.rejected == "min cosine 0.934 < 0.995 (1 - bound) on some output row"


def test_no_candidate_within_the_bound_is_one_error_naming_each() -> None:
    trials = [_trial("int8-static", 0.02, (1.0, 8.0)), _trial("fp32", 0.01, (2.0, 9.0))]
    with pytest.raises(ValidationError) as caught:
        _choose(trials, SHAPES, 0.005, OptimizeConfig(artifact="a", output="b"))
    message = str(caught.value)
    assert "\n" not in message and "int8-static: accuracy drop 0.02 > bound 0.005" in message
    assert "fp32: accuracy drop 0.01" in message and "--max-accuracy-drop" in message


def test_the_cli_prints_the_table(source: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(source.path), "--output", str(tmp_path / "a"), "--auto-seconds", "0.03"]) == 0
    out = capsys.readouterr().out
    assert "auto on " in out and "CHOSEN" in out and "b1 x 64" in out and "b8 x 48" in out
    assert out.count("CHOSEN") == 1


def test_the_demo_latency_table_times_torch_plain_ort_and_ours(source: Artifact, auto: Artifact) -> None:
    from encoderforge.demo import SHAPES as DEMO_SHAPES
    from encoderforge.demo import latency_table

    rows = latency_table(source, auto, seconds=0.05)
    assert auto.manifest.selection is not None
    ours = f"encoderforge ({auto.manifest.selection.backend} {auto.manifest.selection.precision}"
    assert [r.engine for r in rows][:2] == ["PyTorch eager (fp32)", "ONNX Runtime, plain export"]
    assert rows[2].engine.startswith(ours)
    assert all(len(r.p50_ms) == len(DEMO_SHAPES) and all(ms > 0 for ms in r.p50_ms) for r in rows)


def test_inspect_says_where_it_runs(auto: Artifact, capsys: pytest.CaptureFixture[str]) -> None:
    assert auto.manifest.selection is not None
    assert main(["inspect", str(auto.path)]) == 0
    out = capsys.readouterr().out
    assert f"runs on    {auto.manifest.selection.backend} {auto.manifest.selection.precision}" in out


@pytest.mark.skipif(nncf_missing() is not None, reason="nncf is not installed (pip install 'encoderforge[openvino]')")
def test_an_nncf_failure_rejects_its_candidates_and_auto_goes_on(source: Artifact, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import nncf

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("all input arrays must have the same shape")

    monkeypatch.setattr(nncf, "quantize", broken)
    result = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "a", auto=FAST))
    assert result.manifest.selection is not None and result.manifest.selection.chosen is not None
    rows = [c for c in result.manifest.selection.candidates if c.graph == "int8-static-nncf"]
    assert rows and all(not c.latency for c in rows)
    assert all(c.rejected is not None and "nncf" in c.rejected and "ValueError: all input arrays" in c.rejected
               and "\n" not in c.rejected for c in rows)


def test_padding_sensitive_models_get_no_static_shape_candidates(artifact: Callable[..., Artifact]) -> None:
    from encoderforge.errors import UnsupportedError
    from encoderforge.graph_passes.auto import plans

    assert any("static_sequences" in dict(p.options) for p, _ in plans(BF16_CPU, 128))
    assert not any("static_sequences" in dict(p.options) for p, _ in plans(BF16_CPU, 128, padding_sensitive=True))
    convbert = artifact("convbert", "token-classification")
    assert convbert.manifest.padding_sensitive
    if HAS_OPENVINO:
        with pytest.raises(UnsupportedError, match="padding changes convbert's outputs"):
            load(convbert.path, backend="openvino", static_sequences=(64,))


def test_after_the_first_round_far_slower_candidates_are_timed_no_further() -> None:
    from encoderforge.graph_passes.auto import PRUNE_RATIO, _prune

    fastest = _trial("int8-static", 0.001, (10.0, 80.0))
    close = _trial("int8-dynamic", 0.001, (14.0, 112.0))  # 1.4x: stays
    far = _trial("fp32", 0.0, (16.0, 128.0))  # 1.6x: pruned
    assert _prune([fastest, close, far], SHAPES) == {2}
    assert fastest.rejected is None and close.rejected is None
    assert far.rejected is not None and far.rejected.startswith("slower: 1.60x")
    assert f"> {PRUNE_RATIO:g}x: timed no further" in far.rejected
    # a pruned trial is never chosen, and keeps its first-round figures for the table
    assert _choose([fastest, close, far], SHAPES, 0.005, OptimizeConfig(artifact="a", output="b")) is fastest
    assert far.rejected.startswith("slower: 1.60x") and far.p50((1, 128)) == 16.0


def test_timing_stops_for_the_far_slower_after_round_one(source: Artifact) -> None:
    import time

    from encoderforge.graph_passes.auto import _time

    class Sleeper:  # a session whose every call takes `ms`
        def __init__(self, ms: float) -> None:
            self.ms, self.calls = ms, 0

        def inputs(self) -> list[object]:
            return []

        def run(self, feed: object) -> dict[str, object]:
            self.calls += 1
            time.sleep(self.ms / 1e3)
            return {}

    fast, slow = _trial("int8-static", 0.001, (0.0, 0.0)), _trial("fp32", 0.0, (0.0, 0.0))
    fast.session, slow.session = Sleeper(2.0), Sleeper(8.0)  # type: ignore[assignment]
    shapes = ((1, 32), (2, 32))
    _time(source, [fast, slow], shapes, AutoOptions(seconds=0.3, rounds=3, progress=False), _Progress(0, False))
    assert fast.rejected is None
    assert slow.rejected is not None and "timed no further" in slow.rejected and slow.rejected.startswith("slower: ")
    for shape in shapes:  # the slow one only ran its first round (0.1 s at 8 ms); the fast one all three
        assert len(slow.samples[shape]) <= 14 and len(fast.samples[shape]) >= 3 * len(slow.samples[shape])


def test_graphs_that_start_alike_share_those_passes(source: Artifact, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    from encoderforge import graph_passes as package
    from encoderforge.graph_passes.auto import _build_graphs, graph_passes

    ran: list[str] = []
    run_passes = package.run_passes

    def counting(src: Artifact, passes: list, *args: object, **kwargs: object) -> tuple[onnx.ModelProto, list]:
        ran.extend(p.name for p in passes)
        return run_passes(src, passes, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(package, "run_passes", counting)
    config = OptimizeConfig(artifact=source.path, output=tmp_path / "out")
    names = ["fused", "int8-dynamic", "standard"]
    (tmp_path / "work").mkdir()
    (tmp_path / "alone").mkdir()
    built = _build_graphs(source, names, [], config, tmp_path / "work", _Progress(0, False))
    # fused = fuse-attention + session-fusions; int8-dynamic = fuse-attention + int8-dynamic + session-fusions
    assert ran == ["fuse-attention", "session-fusions", "int8-dynamic", "session-fusions", "drop-sdpa-guards"]
    monkeypatch.setattr(package, "run_passes", run_passes)
    for name in names:  # the same graph (and pass results) as built on its own from the source
        model, results, artifact = built[name]
        alone, alone_results = run_passes(source, [package.resolve(p) for p in graph_passes(name)], config,
                                          tmp_path / "alone")
        assert [r.name for r in results] == list(graph_passes(name)) == [r.name for r in alone_results]
        assert model.graph.SerializeToString() == alone.graph.SerializeToString(), name
        assert artifact.model_path.exists()
