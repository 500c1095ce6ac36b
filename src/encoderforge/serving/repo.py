"""`encoderforge triton-repo`: a Triton model repository for users' own Triton deployments.

    encoderforge triton-repo out/roberta-qa --output repo/ [--variant python] [--kind gpu --instances 2]

Four models per artifact, NAME being the artifact directory's name (or --name):

    NAME              ensemble   text (or question + context) ─► tokenize ─► model ─► postprocess ─► answer
    NAME_tokenize     python     texts -> the graph's int64 inputs, padded to a length bucket (16, 32, 64, ...)
                                 so that requests of similar length share a shape and batch together
    NAME_model        onnxruntime (or python, --variant python): the artifact's model.onnx, dynamic batching,
                                 instance groups, optimization settings
    NAME_postprocess  python     graph outputs -> the task's answer, through the same pipeline code as
                                 `encoderforge serve` (so both answer alike); `embedding` FP32 or `result` JSON

The Python-backend models import encoderforge (pip install encoderforge in Triton's Python environment) and
read the artifact files copied next to their model.py. With --variant python every model runs on the Python
backend alone, which the tritonserver shipped in nvidia-pytriton can load (see `launch_tritonserver`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError
from encoderforge.serving.tasks import ServingError, TaskIO, task_io
from encoderforge.staging import publish_modes

Variant = Literal["onnxruntime", "python"]
_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16",
          "BYTES": "TYPE_STRING", "FP32": "TYPE_FP32"}
_ARTIFACT_FILES = ("manifest.json", "config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "modules.json", "1_Pooling/config.json")
MODEL_PY = '''"""Triton Python-backend model written by `encoderforge triton-repo`; its role is in config.pbtxt.
Needs encoderforge in Triton's Python environment (pip install encoderforge)."""

from encoderforge.serving.ensemble import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True, kw_only=True)
class RepoConfig:
    artifact: str
    output: Path
    name: str | None = None
    variant: Variant = "onnxruntime"
    max_batch: int = 32
    max_queue_delay_ms: float = 2.0
    instances: int = 1
    kind: Literal["cpu", "gpu"] = "cpu"
    force: bool = False


def pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """Protobuf text format for a nested dict: lists repeat their field, strings are quoted, enum values are
    written bare when they are UPPER_CASE identifiers."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                lines.append(f"{pad}{key} {{\n{pbtxt(item, indent + 1)}{pad}}}")
            elif isinstance(item, bool):
                lines.append(f"{pad}{key}: {'true' if item else 'false'}")
            elif isinstance(item, str) and not (item.isupper() and item.replace("_", "").isalnum()):
                lines.append(f'{pad}{key}: "{item}"')
            elif isinstance(item, tuple):
                lines.append(f"{pad}{key}: [ {', '.join(str(v) for v in item)} ]")
            else:
                lines.append(f"{pad}{key}: {item}")
    return "".join(line + "\n" for line in lines)


def _dims(axes: Sequence[Any]) -> tuple[int, ...]:
    return tuple(a if isinstance(a, int) else -1 for a in axes[1:])


def _tensor(name: str, dtype: str, dims: tuple[int, ...]) -> dict[str, Any]:
    return {"name": name, "data_type": _TYPES[dtype], "dims": dims}


def _graph_tensors(artifact: Artifact) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    inputs = [_tensor(s.name, s.dtype, _dims(s.axes)) for s in artifact.manifest.inputs]
    outputs = [_tensor(s.name, s.dtype, _dims(s.axes)) for s in artifact.manifest.outputs]
    return inputs, outputs


def _batching(config: RepoConfig) -> dict[str, Any]:
    return {"max_queue_delay_microseconds": int(config.max_queue_delay_ms * 1000)}


def model_configs(artifact: Artifact, config: RepoConfig, name: str) -> dict[str, dict[str, Any]]:
    """The four config.pbtxt messages (as dicts) keyed by model name."""
    io: TaskIO = task_io(artifact.task)
    if "attention_mask" not in artifact.manifest.feeds:
        raise UnsupportedError(f"{artifact.path} has no attention_mask input; the ensemble needs it")
    graph_in, graph_out = _graph_tensors(artifact)
    text_in = [_tensor(n, "BYTES", (1,)) for n in io.inputs]
    answer_out = [_tensor(s.name, s.dtype, s.shape) for s in io.outputs]
    ids_mask = [t for t in graph_in if t["name"] in ("input_ids", "attention_mask")]
    common = {"max_batch_size": config.max_batch, "dynamic_batching": _batching(config)}
    cpu_group = {"count": 1, "kind": "KIND_CPU"}
    artifact_param = {"key": "artifact", "value": {"string_value": "artifact"}}

    def role(name: str) -> list[dict[str, Any]]:
        return [artifact_param, {"key": "role", "value": {"string_value": name}}]
    model: dict[str, Any] = {"name": f"{name}_model", **common, "input": graph_in, "output": graph_out,
                             "instance_group": [{"count": config.instances,
                                                 "kind": "KIND_GPU" if config.kind == "gpu" else "KIND_CPU"}]}
    if config.variant == "onnxruntime":
        model = {"name": model["name"], "backend": "onnxruntime", "default_model_filename": "model.onnx",
                 **{k: v for k, v in model.items() if k != "name"},
                 "optimization": {"graph": {"level": 1}, "input_pinned_memory": {"enable": config.kind == "gpu"},
                                  "output_pinned_memory": {"enable": config.kind == "gpu"}},
                 "parameters": [{"key": "intra_op_thread_count", "value": {"string_value": "0"}},
                                {"key": "enable_mem_arena", "value": {"string_value": "1"}}]}
    else:
        model = {"name": model["name"], "backend": "python", **{k: v for k, v in model.items() if k != "name"},
                 "parameters": role("model")}
    steps = [
        {"model_name": f"{name}_tokenize", "model_version": -1,
         "input_map": [{"key": n, "value": n} for n in io.inputs],
         "output_map": [{"key": t["name"], "value": t["name"]} for t in graph_in]},
        {"model_name": f"{name}_model", "model_version": -1,
         "input_map": [{"key": t["name"], "value": t["name"]} for t in graph_in],
         "output_map": [{"key": t["name"], "value": t["name"]} for t in graph_out]},
        {"model_name": f"{name}_postprocess", "model_version": -1,
         "input_map": [{"key": n, "value": n} for n in io.inputs]
                      + [{"key": t["name"], "value": t["name"]} for t in ids_mask + graph_out],
         "output_map": [{"key": s.name, "value": s.name} for s in io.outputs]},
    ]
    return {
        name: {"name": name, "platform": "ensemble", "max_batch_size": config.max_batch, "input": text_in,
               "output": answer_out, "ensemble_scheduling": {"step": steps}},
        f"{name}_tokenize": {"name": f"{name}_tokenize", "backend": "python", **common, "input": text_in,
                             "output": graph_in, "instance_group": [cpu_group], "parameters": role("tokenize")},
        f"{name}_model": model,
        f"{name}_postprocess": {"name": f"{name}_postprocess", "backend": "python", **common,
                                "input": text_in + ids_mask + graph_out, "output": answer_out,
                                "instance_group": [cpu_group], "parameters": role("postprocess")},
    }


def _copy_artifact(artifact: Artifact, target: Path, *, with_graph: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    names = list(_ARTIFACT_FILES)
    if with_graph:
        names += [n for n in artifact.manifest.files if n.startswith(artifact.manifest.model_file)]
    for name in names:
        if (artifact.path / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(artifact.path / name, target / name)


def write_repository(config: RepoConfig) -> list[Path]:
    """Write the ensemble and its three models into `config.output`; return the model directories."""
    artifact = Artifact.load(config.artifact)
    name = config.name or Path(config.artifact).resolve().name
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or ".." in name:
        raise ServingError(f"model name {name!r} is not a plain directory name (letters, digits, '_', '-', '.'; "
                           "no '/' or '..'); pass another --name")
    configs = model_configs(artifact, config, name)
    output = Path(config.output)
    existing = [n for n in configs if (output / n).exists()]
    if existing and not config.force:
        raise ServingError(f"{output} already has model(s) {existing}; pass --force to replace them or --name")
    written = []
    for model, message in configs.items():
        stage = Path(tempfile.mkdtemp(prefix=f".{model}.partial-", dir=_mkdir(output)))
        try:
            version = stage / "1"
            version.mkdir()
            (stage / "config.pbtxt").write_text(pbtxt(message), encoding="utf-8")
            role = model[len(name) + 1:] if model != name else "ensemble"
            if role == "model" and config.variant == "onnxruntime":
                model_file = artifact.manifest.model_file
                for file in artifact.manifest.files:
                    if file.startswith(model_file):
                        shutil.copy2(artifact.path / file, version / file.replace(model_file, "model.onnx", 1))
            elif role != "ensemble":
                (version / "model.py").write_text(MODEL_PY, encoding="utf-8")
                _copy_artifact(artifact, version / "artifact", with_graph=role == "model")
            publish_modes(stage)  # mkdtemp makes it 0700: Triton's account must read it
            if (output / model).exists():
                shutil.rmtree(output / model)
            os.replace(stage, output / model)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        written.append(output / model)
    return written


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def launch_tritonserver(repository: Path, *, http_port: int, grpc_port: int, metrics_port: int,
                        timeout_s: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run the tritonserver binary shipped in nvidia-pytriton on `repository` (Python backend only), on
    loopback; yields once /v2/health/ready answers, stops it (SIGTERM, then SIGKILL) on exit."""
    try:
        from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path
    except ImportError as exc:
        raise ServingError("the shipped tritonserver comes with nvidia-pytriton: pip install 'encoderforge[serve]'") \
            from exc
    from encoderforge.serving.shipped_triton import libpython_dir, stub_environment

    dist = get_root_module_path() / "tritonserver"
    with tempfile.TemporaryDirectory(prefix="encoderforge-triton-") as work:
        backends = Path(work) / "backends" / "python"
        shutil.copytree(dist / "backends" / "python", backends)
        shutil.copy(get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}"),
                    backends / "triton_python_backend_stub")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join([str(libpython_dir()), str(get_libs_path()),
                                           *[p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]])
        python_env = stub_environment() or Path(sys.prefix)
        env["PATH"] = f"{python_env / 'bin'}:{env.get('PATH', '')}"
        command = [str(dist / "bin" / "tritonserver"), f"--model-repository={repository}",
                   f"--backend-directory={Path(work) / 'backends'}", "--http-address=127.0.0.1",
                   f"--http-port={http_port}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
                   "--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}", "--exit-timeout-secs=5",
                   "--strict-readiness=true"]
        log_path = Path(work) / "tritonserver.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                _wait_ready(process, f"http://127.0.0.1:{http_port}/v2/health/ready", timeout_s, log_path)
                yield process
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise ServingError("tritonserver exited while loading the repository:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServingError(f"tritonserver was not ready within {timeout_s:.0f} s; see {log_path}")
