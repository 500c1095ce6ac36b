"""Latency benchmarking: our artifacts and their peers side by side in one run, on the same inputs.

    from encoderforge.bench import BenchConfig, run_bench, write_report
    result = run_bench(BenchConfig(artifacts=(Path("out/roberta-qa-int8"),), compare=("torch", "ort-baseline")))
    write_report(result, Path("bench/"))

Modules: measure (timing and memory), fingerprint (environment), inputs (texts and feeds of a given length),
engines / peers / optimum_peer / openvino_peers (what is timed), qualify (fidelity against the fp32 reference,
the fastest qualifying peer), runner (the sweep), report (table, JSON, markdown, PNG), regression (the
--baseline check). Imports neither torch nor transformers unless a torch peer is requested.
"""

from __future__ import annotations

from encoderforge.bench.regression import check_regression, load_result, regression_lines
from encoderforge.bench.report import console, markdown, write_report
from encoderforge.bench.runner import PEERS, BenchConfig, run_bench

__all__ = ["PEERS", "BenchConfig", "check_regression", "console", "load_result", "markdown", "regression_lines",
           "run_bench", "write_report"]
