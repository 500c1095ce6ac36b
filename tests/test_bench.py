"""`encoderforge bench` on tiny artifacts with few iterations: reports, the regression check, bad input and
skipped peers. Only the mechanics are asserted, never a timing."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from encoderforge.artifact import Artifact, write_manifest
from encoderforge.bench import BenchConfig, check_regression, console, markdown, run_bench, write_report
from encoderforge.bench.fingerprint import cpu_info, machine_slug
from encoderforge.bench.measure import PointTimer
from encoderforge.cli import main
from encoderforge.errors import ArtifactError, InputError
from encoderforge.manifest import PassRecord, Precision
from encoderforge.runtime.pipelines import PIPELINES

FAST: dict[str, Any] = {"batch_sizes": (1, 2), "seq_lens": (8, 16), "warmup": 1, "iters": 3, "max_seconds": 5.0,
                        "progress": False}


def int8_copy(artifact: Artifact, target: Path) -> Path:
    """An int8 artifact as `optimize --precision int8-dynamic` writes it: the graph quantized (7-bit weights where
    this CPU's int8 kernels saturate), manifest updated."""
    from onnxruntime.quantization import quantize_dynamic

    from encoderforge.cpu import current_cpu

    shutil.copytree(artifact.path, target)
    quantize_dynamic(artifact.model_path, target / "model.onnx", reduce_range=not current_cpu().int8_without_saturation)
    manifest = replace(artifact.manifest, precision=Precision.INT8_DYNAMIC, passes=(PassRecord(name="quantize-dynamic"),))
    write_manifest(target, manifest)
    return target


@pytest.fixture(scope="module")
def cls_result(artifact: Callable[..., Artifact], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    fp32 = artifact("roberta", "cls")
    int8 = int8_copy(fp32, tmp_path_factory.mktemp("int8") / "roberta-cls-int8")
    config = BenchConfig(artifacts=(fp32.path, int8), compare=("torch", "ort-baseline"),
                         workdir=tmp_path_factory.mktemp("bench-cache"), **FAST)  # type: ignore[arg-type]
    return run_bench(config)


def test_result_has_every_point_peers_and_fingerprint(cls_result: dict[str, Any]) -> None:
    names = {e["name"]: e for e in cls_result["engines"]}
    expected = {"ort-baseline-int8", "ort-baseline-fp32"} | ({"torch"} if importlib.util.find_spec("torch") else set())
    assert expected <= set(names)
    ours = [e for e in cls_result["engines"] if e["role"] == "ours"]
    assert len(ours) == 2 and {e["info"]["precision"] for e in ours} == {"fp32", "int8-dynamic"}
    timed = [r for r in cls_result["results"] if "timing" in r]
    # 2 modes x 2 batch sizes x 2 lengths for each of ours and each ort baseline (+ torch)
    engines = len(expected | {e["name"] for e in ours})
    if "text-classification" in PIPELINES:
        assert len(timed) == 8 * engines
    else:  # without the task's pipeline only model-only timing runs, and e2e says why
        assert len([r for r in timed if r["mode"] == "model"]) == 4 * engines
    for row in timed:
        t = row["timing"]
        assert t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] and t["iters"] >= 1
        assert t["tokens_per_s"] > t["seq_per_s"] > 0
    for engine in names.values():
        assert engine["skipped"] is None and engine["load_s"] > 0 and engine["peak_rss_mb"] >= 0
    assert {r["peer"] for r in cls_result["ratios"]} == expected
    fp = cls_result["fingerprint"]
    assert fp["threads"] >= 1 and fp["cpu"]["model"] and "onnxruntime" in fp["versions"]
    assert all(len(a["model_sha256"]) == 64 for a in fp["artifacts"].values())


def test_reports_json_markdown_png(cls_result: dict[str, Any], tmp_path: Path) -> None:
    written = write_report(cls_result, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["schema"] == "encoderforge-bench/1"
    text = (tmp_path / "results.md").read_text()
    assert "| group | engine | vs peer |" in text and "p50 ms" in text and "sha256" in text
    pngs = [p for p in written if p.suffix == ".png"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert {p.name.rsplit("-", 1)[1] for p in pngs} == {"latency.png", "throughput.png"}
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    table = console(cls_result)
    assert "p50 ms" in table and "speedup" in table and markdown(cls_result).startswith("# ")


def _scaled(result: dict[str, Any], factor: float, *, roles: set[str]) -> dict[str, Any]:
    out = copy.deepcopy(result)
    role = {e["name"]: e["role"] for e in out["engines"]}
    for row in out["results"]:
        if "timing" in row and role[row["engine"]] in roles:
            row["timing"]["p50_ms"] *= factor
    return out


def test_regression_check_flags_a_slowdown_relative_to_the_peer(cls_result: dict[str, Any]) -> None:
    same = check_regression(cls_result, cls_result, threshold=0.1)
    assert same["compared"] > 0 and not same["regressed"]
    slower = check_regression(_scaled(cls_result, 1.5, roles={"ours"}), cls_result, threshold=0.1)
    assert len(slower["regressed"]) == slower["compared"]
    assert all(c["basis"].startswith("ratio to ort-baseline") for c in slower["checks"])
    # the whole machine 50 % slower (ours and peers alike) is noise, not a regression
    noisy = check_regression(_scaled(cls_result, 1.5, roles={"ours", "peer"}), cls_result, threshold=0.1)
    assert not noisy["regressed"]


def test_cli_writes_report_and_exits_1_on_regression(artifact: Callable[..., Artifact], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    art = artifact("roberta", "cls").path
    args = ["bench", str(art), "--batch-sizes", "1", "--seq-lens", "8", "--warmup", "1", "--iters", "3",
            "--compare", "ort-baseline,optimum", "--no-progress"]
    assert main([*args, "--report", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert "p50 ms" in out.out and "wrote" in out.out
    assert "skipped optimum-fp32" in out.err and "--optimum-python" in out.err  # peer not installed: printed
    baseline = json.loads((tmp_path / "a" / "results.json").read_text())
    fast = _scaled(baseline, 0.2, roles={"ours"})  # a baseline where we were 5x faster
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    assert main([*args, "--baseline", str(tmp_path / "fast.json")]) == 1
    assert "REGRESSION" in capsys.readouterr().out


def test_bad_input(artifact: Callable[..., Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = artifact("roberta", "cls")
    with pytest.raises(ArtifactError, match="does not exist"):
        run_bench(BenchConfig(artifacts=(tmp_path / "missing",), **FAST))  # type: ignore[arg-type]
    corrupt = tmp_path / "corrupt"
    shutil.copytree(art.path, corrupt)
    with open(corrupt / "model.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match="sha256"):
        run_bench(BenchConfig(artifacts=(corrupt,), **FAST))  # type: ignore[arg-type]
    too_long = {**FAST, "seq_lens": (8, art.max_length + 1)}
    with pytest.raises(InputError, match=f"max length {art.max_length}"):
        run_bench(BenchConfig(artifacts=(art.path,), **too_long))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch size 0"):
        run_bench(BenchConfig(artifacts=(art.path,), **{**FAST, "batch_sizes": (0,)}))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown --compare peer 'tensorflow'"):
        run_bench(BenchConfig(artifacts=(art.path,), compare=("tensorflow",), **FAST))  # type: ignore[arg-type]
    assert main(["bench", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "error: artifact" in capsys.readouterr().err
    assert main(["bench", str(art.path), "--baseline", str(tmp_path / "nope.json"), "--no-progress"]) == 2
    assert "baseline" in capsys.readouterr().err


def test_peer_not_installed_is_skipped_with_reason(artifact: Callable[..., Artifact], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("torch", "sentence_transformers")
                        else real(name, *a))
    art = artifact("roberta", "cls")
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("torch", "sentence-transformers", "optimum"),
                                   optimum_python=str(tmp_path / "no-python"), **{**FAST, "batch_sizes": (1,)}))  # type: ignore[arg-type]
    skipped = {e["name"]: e["skipped"] for e in result["engines"] if e["role"] == "peer"}
    assert "torch is not installed" in skipped["torch"]
    assert "only applies to embedding models" in skipped["sentence-transformers"]
    assert "not an executable file" in skipped["optimum-fp32"]
    err = capsys.readouterr().err
    assert all(f"skipped {name}" in err for name in skipped)
    assert [r for r in result["results"] if "timing" in r]  # ours still measured


@pytest.mark.parametrize("task", ["feature-extraction", "fill-mask", "token-classification", "question-answering",
                                  "multiple-choice", "text-generation"])
def test_every_head_benches(artifact: Callable[..., Artifact], task: str) -> None:
    art = artifact("roberta", task)
    result = run_bench(BenchConfig(artifacts=(art.path,), batch_sizes=(2,), seq_lens=(32,), warmup=1, iters=2,
                                   progress=False))
    rows = {r["mode"]: r for r in result["results"]}
    assert "timing" in rows["model"], rows["model"]
    assert "timing" in rows["e2e"] or "no encoderforge pipeline" in rows["e2e"]["skipped"], rows["e2e"]


def test_cpu_fingerprint_reads_flags(tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni\n")
    info = cpu_info(fake)
    assert info["model"] == "Test CPU 9000" and info["isa"] == ["sse4_2", "avx2", "avx512f", "avx512_vnni"]


def test_machine_slug_tells_amd_generations_apart(tmp_path: Path) -> None:
    """Zen 4 and Zen 5 guests both say "AMD EPYC": the x86 family keeps their results in separate folders."""
    slugs = []
    for family in ("25", "26"):
        fake = tmp_path / f"cpuinfo-{family}"
        fake.write_text(f"processor\t: 0\ncpu family\t: {family}\nmodel name\t: AMD EPYC\n"
                        "flags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n")
        slugs.append(machine_slug(cpu_info(fake)))
    assert slugs[0] != slugs[1] and all(s.startswith("amd-epyc-family-") for s in slugs), slugs
    old_fingerprint = {"model": "Intel(R) Xeon(R) Processor", "kind": "amx"}  # recorded before the family was
    assert machine_slug(old_fingerprint) == "intel-xeon-processor-amx"


def test_sentence_transformers_peer_on_minilm(minilm_artifact: Artifact) -> None:
    pytest.importorskip("sentence_transformers")
    result = run_bench(BenchConfig(artifacts=(minilm_artifact.path,), batch_sizes=(2,), seq_lens=(16,), warmup=1,
                                   iters=2, compare=("sentence-transformers",), progress=False))
    rows = {(r["engine"], r["mode"]): r for r in result["results"]}
    assert "timing" in rows[("sentence-transformers", "e2e")]
    assert "end-to-end only" in rows[("sentence-transformers", "model")]["skipped"]
    if "feature-extraction" in PIPELINES:
        assert [r for r in result["ratios"] if r["peer"] == "sentence-transformers" and r["mode"] == "e2e"]


def test_point_timer_rounds_add_up() -> None:
    """Warm-up once, then rounds of timed calls; a round after another engine ran opens with one untimed call."""
    calls: list[int] = []
    timer = PointTimer(lambda: calls.append(1), warmup=2, max_seconds=None)
    assert len(calls) == 3 and timer.samples == []  # first call + 2 warm-up
    timer.sample(iters=4, max_seconds=None)
    timer.sample(iters=2, max_seconds=None, rewarm=True)
    assert len(calls) == 3 + 4 + 1 + 2 and len(timer.samples) == 6 and timer.rounds == 2
    timer.sample(iters=100, max_seconds=0.0, min_iters=2)  # budget spent at once: stops at min_iters
    timing = timer.timing(batch_size=1, tokens=8.0)
    assert timing.iters == 8 and timing.warmup == 2 and timing.min_ms <= timing.p50_ms


def test_engines_interleave_round_by_round(artifact: Callable[..., Artifact],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With rounds, each engine's timed calls at a point come in rounds, every engine once per round."""
    from encoderforge.bench import runner

    order: list[int] = []

    class Logged(runner.PointTimer):
        def sample(self, **kwargs: Any) -> None:
            order.append(id(self))
            super().sample(**kwargs)

    monkeypatch.setattr(runner, "PointTimer", Logged)
    art = artifact("roberta", "cls")
    result = run_bench(BenchConfig(artifacts=(art.path,), compare=("ort-baseline",), batch_sizes=(1,), seq_lens=(8,),
                                   modes=("model",), warmup=1, iters=7, rounds=3, max_seconds=None, progress=False))
    timed = [r for r in result["results"] if "timing" in r]
    assert len(timed) == 2 and result["settings"]["rounds"] == 3
    assert all(r["timing"]["iters"] == 7 for r in timed)  # 3 + 2 + 2 over the rounds
    assert len(order) == 6 and all(len(set(order[i:i + 2])) == 2 for i in range(0, 6, 2)), order
    with pytest.raises(InputError, match="--rounds 0"):
        run_bench(BenchConfig(artifacts=(art.path,), rounds=0, **FAST))  # type: ignore[arg-type]
