"""The optimum-onnx peer: ORTModel (+ ORTQuantizer dynamic for int8) measured in its own interpreter.

optimum-onnx[onnxruntime] pins transformers < 4.58 while encoderforge's export extra needs transformers 5, so
it lives in a separate virtual environment; `--optimum-python PATH` names that environment's python. The
worker (_optimum_worker.py) gets the same texts and feeds as every other engine and returns its timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.engines import Engine, Group, Mode, Skip
from encoderforge.bench.fingerprint import cpu_info
from encoderforge.sample_inputs import PointInputs

WORKER = Path(__file__).with_name("_optimum_worker.py")
SUPPORTED = {"feature-extraction", "fill-mask", "text-classification", "token-classification",
             "question-answering", "multiple-choice"}


class OptimumEngine(Engine):
    external = True

    def __init__(self, group: Group, *, python: str | None, int8: bool) -> None:
        super().__init__(f"optimum-{'int8' if int8 else 'fp32'}", "peer", group,
                         "optimum-onnx ORTModel (separate interpreter)", {"python": python})
        self.python = python
        self.int8 = int8

    def check(self) -> None:
        if not self.python:
            raise Skip("optimum-onnx needs its own environment (it pins transformers < 4.58); create one with "
                       "`python -m venv opt && opt/bin/pip install 'optimum-onnx[onnxruntime]'` and pass "
                       "--optimum-python opt/bin/python")
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise Skip(f"--optimum-python {self.python!r} is not an executable file")
        probe = subprocess.run([self.python, "-c", "import optimum.onnxruntime"], capture_output=True, text=True,
                               timeout=300, check=False)
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            raise Skip(f"{self.python} cannot import optimum.onnxruntime ({last}); "
                       "pip install 'optimum-onnx[onnxruntime]' into that environment")
        if self.group.task not in SUPPORTED:
            raise Skip(f"optimum has no ORTModel class for task {self.group.task!r}")
        if self.group.source is None:
            raise Skip("the artifact's manifest 'source' is not a checkpoint directory on this machine")

    def run_external(self, points: list[tuple[Mode, PointInputs]], *, threads: int, warmup: int, iters: int,
                     max_seconds: float | None) -> dict[str, Any]:
        """Run every point in the worker; return its result dict (load_s, peak_rss_mb, points)."""
        self.check()
        with tempfile.TemporaryDirectory(prefix="encoderforge-optimum-") as tmp:
            work = Path(tmp)
            specs = []
            for index, (mode, inputs) in enumerate(points):
                spec: dict[str, Any] = {"mode": mode, "batch_size": inputs.batch_size, "seq_len": inputs.seq_len,
                                        "e2e_tokens": inputs.e2e_tokens}
                if mode == "model":
                    spec["feed"] = str(work / f"feed{index}.npz")
                    np.savez(spec["feed"], **inputs.feed)  # type: ignore[arg-type]
                else:
                    spec["texts"] = inputs.texts
                specs.append(spec)
            job = {"task": self.group.task, "source": str(self.group.source), "threads": threads,
                   "warmup": warmup, "iters": iters, "max_seconds": max_seconds, "int8": self.int8,
                   "workdir": str(work), "isa": cpu_info()["isa"], "points": specs}
            (work / "job.json").write_text(json.dumps(job))
            command = [str(self.python), str(WORKER), str(work / "job.json"), str(work / "result.json")]
            done = subprocess.run(command, capture_output=True, text=True, check=False)  # export, untimed
            if done.returncode == 0:  # a fresh process loads and measures
                done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not (work / "result.json").is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise Skip(f"the optimum worker failed (exit {done.returncode}): {last}")
            result: dict[str, Any] = json.loads((work / "result.json").read_text())
        self.description = (f"optimum-onnx {result.get('description', 'ORTModel')}, in its own interpreter after the "
                            "interleaved engines (not interleaved: its ratios also carry the machine's drift)")
        self.info.update(result.get("versions", {}))
        return result
