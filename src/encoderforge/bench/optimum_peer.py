"""The optimum peers, each measured in its own interpreter after the interleaved engines:

    optimum        optimum-onnx's ORTModel (+ ORTQuantizer dynamic for int8)          --optimum-python
    optimum-intel  optimum-intel's OVModel at OpenVINO's default precision, and       --optimum-intel-python
                   optimum-intel-nncf-int8: nncf.quantize (TRANSFORMER) of its IR

Both pin transformers below what encoderforge's export extra needs, so each lives in a separate virtual
environment. The worker (_optimum_worker.py) gets the same texts and feeds as every other engine (and, for
optimum-intel's int8, the int8-static pass's calibration feeds), returns its timings and its outputs on the
fidelity feeds, which the parent checks against the same fp32 reference as every other engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.engines import Engine, Group, Mode, Skip
from encoderforge.bench.fingerprint import cpu_info
from encoderforge.sample_inputs import PointInputs

WORKER = Path(__file__).with_name("_optimum_worker.py")
SUPPORTED = {"feature-extraction", "fill-mask", "text-classification", "token-classification",
             "question-answering", "multiple-choice"}


@dataclass(frozen=True)
class Flavor:
    peer: str  # the --compare name
    engine: str  # the worker's job["engine"]
    flag: str  # the option naming its interpreter
    package: str  # what to pip install there
    imports: str  # what must import there
    what: str
    venv: str  # the folder the skip hint suggests
    names: tuple[str, str]  # engine names: float, int8


FLAVORS = {
    "optimum": Flavor("optimum", "onnxruntime", "--optimum-python", "optimum-onnx[onnxruntime]",
                      "import optimum.onnxruntime", "optimum-onnx ORTModel", "opt", ("optimum-fp32", "optimum-int8")),
    "optimum-intel": Flavor("optimum-intel", "openvino", "--optimum-intel-python", "optimum-intel[openvino,nncf]",
                            "import optimum.intel, openvino, nncf", "optimum-intel OVModel", "ovopt",
                            ("optimum-intel-default", "optimum-intel-nncf-int8")),
}


class OptimumEngine(Engine):
    external = True

    def __init__(self, group: Group, *, python: str | None, int8: bool, flavor: str = "optimum") -> None:
        self.flavor = FLAVORS[flavor]
        super().__init__(self.flavor.names[int8], "peer", group, f"{self.flavor.what} (separate interpreter)", {"python": python})
        self.python = python
        self.int8 = int8
        self.fidelity_outputs: list[dict[str, np.ndarray]] | None = None

    def check(self) -> None:
        flavor, venv = self.flavor, self.flavor.venv
        if not self.python:
            raise Skip(f"{flavor.peer} needs its own environment (it pins an older transformers); create one with "
                       f"`python -m venv {venv} && {venv}/bin/pip install '{flavor.package}'` and pass "
                       f"{flavor.flag} {venv}/bin/python")
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise Skip(f"{flavor.flag} {self.python!r} is not an executable file")
        probe = subprocess.run([self.python, "-c", flavor.imports], capture_output=True, text=True,
                               timeout=300, check=False)
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            raise Skip(f"{self.python} cannot {flavor.imports} ({last}); "
                       f"pip install '{flavor.package}' into that environment")
        if self.group.task not in SUPPORTED:
            raise Skip(f"optimum has no ORTModel class for task {self.group.task!r}")
        if self.group.source is None:
            raise Skip("the artifact's manifest 'source' is not a checkpoint directory on this machine")

    def run_external(self, points: list[tuple[Mode, PointInputs]], *, threads: int, warmup: int, iters: int,
                     max_seconds: float | None, fidelity_feeds: list[dict[str, np.ndarray]] | None = None,
                     output_names: list[str] | None = None) -> dict[str, Any]:
        """Run every point in the worker; return its result dict (load_s, peak_rss_mb, points). With
        `fidelity_feeds`, the worker's outputs on them land in `fidelity_outputs` (one dict per feed)."""
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
                   "engine": self.flavor.engine, "workdir": str(work), "isa": cpu_info()["isa"], "points": specs,
                   "fidelity": _saved(work, "fidelity", fidelity_feeds or []), "output_names": output_names or []}
            if self.int8 and self.flavor.engine == "openvino":
                job["calibration"] = _saved(work, "calibration", self._calibration_feeds())
            (work / "job.json").write_text(json.dumps(job))
            command = [str(self.python), str(WORKER), str(work / "job.json"), str(work / "result.json")]
            done = subprocess.run(command, capture_output=True, text=True, check=False)  # export, untimed
            if done.returncode == 0:  # a fresh process loads and measures
                done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not (work / "result.json").is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise Skip(f"the optimum worker failed (exit {done.returncode}): {last}")
            result: dict[str, Any] = json.loads((work / "result.json").read_text())
            saved = work / "fidelity_outputs.npz"
            if fidelity_feeds and saved.is_file():
                with np.load(saved) as found:
                    self.fidelity_outputs = [{name: found[f"{i}/{name}"] for name in output_names or []
                                              if f"{i}/{name}" in found} for i in range(len(fidelity_feeds))]
        self.description = (f"{result.get('description', self.flavor.what)}, in its own interpreter after the "
                            "interleaved engines (not interleaved: its ratios also carry the machine's drift)")
        self.info.update(result.get("versions", {}))
        return result

    def _calibration_feeds(self) -> list[dict[str, np.ndarray]]:
        """The int8-static pass's built-in calibration text, as the openvino-nncf-int8 peer uses it."""
        from encoderforge.bench.openvino_peers import calibration_samples
        from encoderforge.calibration.sources import DEFAULT_SAMPLES, calibration_feeds

        artifact = self.group.artifacts[0]
        return calibration_feeds(artifact, None, samples=calibration_samples(self.group, DEFAULT_SAMPLES))


def _saved(work: Path, stem: str, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    """Write each feed as an npz for the worker; their paths."""
    paths = []
    for index, feed in enumerate(feeds):
        path = work / f"{stem}{index}.npz"
        np.savez(path, **feed)  # type: ignore[arg-type]
        paths.append(str(path))
    return paths
