"""TensorRT engines without TensorRT: profiles from length buckets, profile choice per request, the engine
cache's keys and its stale / foreign verdicts, the builder's TensorRT 10 / 11 branches (against fake modules),
validation feeds, the device choice and the CLI's errors. The `tensorrt` tests build and run a real engine
and skip, saying why, where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest

from encoderforge.artifact import Artifact, write_manifest
from encoderforge.cli import main
from encoderforge.engines import graph_precision
from encoderforge.engines.builder import BuildSettings, network_flags, preflight, weak_flags
from encoderforge.engines.cache import EngineKey, Machine, find_engine, make_key, mismatches, replace_entry
from encoderforge.engines.profiles import (
    AxisRange,
    default_buckets,
    make_profiles,
    parse_buckets,
    profiles_as_manifest,
)
from encoderforge.engines.validate import profile_feeds
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.manifest import EngineEntry, Manifest, Precision
from encoderforge.runtime import choose_backend
from encoderforge.runtime.backends import get_backend
from encoderforge.runtime.backends.profiles import max_batch_for, profiles_from_manifest, select_profile
from encoderforge.runtime.backends.tensorrt import TensorRTBackend, engine_profiles

TRT_REASON = get_backend("tensorrt").available()
needs_tensorrt = pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT unavailable: {TRT_REASON}")
H100 = Machine("NVIDIA H100 80GB HBM3", "9.0", "10.13.0.35")


# ---------------------------------------------------------------------------------------------------------
# Profiles


def test_parse_buckets_sorts_and_names_bad_entries() -> None:
    assert [str(b) for b in parse_buckets("32x384, 1x16,8X128")] == ["1x16", "8x128", "32x384"]
    for spec, message in [("1x16,8by128", "'8by128' is not BATCHxSEQUENCE"), ("0x16", "zero dimension"),
                          ("1x16,1x16", "repeat a bucket"), (" , ", "no profiles")]:
        with pytest.raises(InputError, match=message):
            parse_buckets(spec)


def test_profiles_tile_the_lengths_and_never_pin_min_to_max() -> None:
    profiles = make_profiles(parse_buckets("1x16,8x128,32x384"))
    assert [(p.sequence.min, p.sequence.opt, p.sequence.max) for p in profiles] == [
        (1, 16, 16), (17, 128, 128), (129, 384, 384)]
    assert [(p.batch.min, p.batch.opt, p.batch.max) for p in profiles] == [(1, 1, 1), (1, 8, 8), (1, 32, 32)]
    assert all(p.sequence.min < p.sequence.max and p.batch.min == 1 for p in profiles)
    assert profiles[1].shapes(["batch", "sequence"]) == ((1, 17), (8, 128), (8, 128))
    assert profiles[1].shapes(["batch", "num_choices", "sequence"]) == ((1, 1, 17), (8, 4, 128), (8, 8, 128))
    assert profiles[1].shapes(["batch", 7]) == ((1, 7), (8, 7), (8, 7))  # a fixed axis stays fixed
    # two buckets of one length: both start after the next shorter length
    same = make_profiles(parse_buckets("1x128,128x128"))
    assert [(p.sequence.min, p.batch.max) for p in same] == [(1, 1), (1, 128)]
    with pytest.raises(InputError, match="longer than the model's max length 512"):
        make_profiles(parse_buckets("1x1024"), max_length=512)
    with pytest.raises(UnsupportedError, match="min <= opt <= max"):
        AxisRange(4, 2, 8)
    assert profiles_from_manifest(profiles_as_manifest(profiles)) == profiles
    assert [str(b) for b in default_buckets(64)] == ["1x64", "8x64", "32x64"]  # a short model's default
    assert [str(b) for b in default_buckets(512)] == ["1x128", "8x128", "32x384"]


def test_select_profile_serves_short_requests_by_padding_up() -> None:
    profiles = make_profiles(parse_buckets("1x16,8x128,32x384"))
    choice = select_profile(profiles, 1, 10)
    assert (choice.index, choice.batch, choice.sequence) == (0, 1, 10)
    choice = select_profile(profiles, 8, 10)  # too many rows for 1x16: the 8x128 profile, padded to its minimum
    assert (choice.index, choice.batch, choice.sequence) == (1, 8, 17)
    assert select_profile(profiles, 1, 200).index == 2
    assert select_profile(profiles, 32, 384).index == 2
    with pytest.raises(UnsupportedError, match=r"33x384 .* fits no optimization profile \(1x16,8x128,32x384\); "
                                                r"rebuild .* --profiles 1x16,8x128,32x384,33x384"):
        select_profile(profiles, 33, 384)
    with pytest.raises(InputError, match="empty"):
        select_profile(profiles, 0, 5)
    assert max_batch_for(profiles, 100) == 32 and max_batch_for(profiles, 500) == 0
    # the least padded work wins, then the smaller profile
    both = make_profiles(parse_buckets("1x128,128x128"))
    assert select_profile(both, 1, 100).index == 0 and select_profile(both, 2, 100).index == 1


def test_engine_profiles_read_from_the_engine() -> None:
    engine = SimpleNamespace(num_optimization_profiles=2, get_tensor_profile_shape=lambda name, i: [
        [(1, 1), (1, 16), (1, 16)], [(1, 17), (8, 128), (8, 128)]][i])
    profiles = engine_profiles(engine, "input_ids")  # type: ignore[arg-type]
    assert [str(p.bucket) for p in profiles] == ["1x16", "8x128"]
    assert profiles[1].sequence == AxisRange(17, 128, 128)


# ---------------------------------------------------------------------------------------------------------
# The engine cache


def _artifact(tmp_path: Path, *, data: bool = False, engines: list[dict[str, Any]] | None = None) -> Artifact:
    root = tmp_path / "art"
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(b"graph-v1")
    if data:
        (root / "model.onnx.data").write_bytes(b"weights")
    manifest = {"schema_version": 2, "family": "roberta", "task": "question-answering", "inputs": [],
                "outputs": [], "feeds": {}, "tokenizer": {"file": "tokenizer.json", "max_length": 512},
                "model_file": "model.onnx", "precision": "fp16", "engines": engines or [], "files": {}}
    return Artifact(root, write_manifest(root, Manifest.from_json(manifest)))


def test_engine_key_names_everything_an_engine_depends_on(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    key = make_key(artifact, H100, profiles="1x16,8x128", typing="strong")
    assert key.file == f"engines/trt-{key.digest}.plan" and len(key.digest) == 16
    assert key.onnx_sha256 == artifact.manifest.files["model.onnx"].sha256 and key.onnx_data_sha256 is None
    variants = [make_key(artifact, Machine("NVIDIA A100-SXM4-80GB", "8.0", H100.tensorrt), profiles="1x16,8x128",
                         typing="strong"),
                make_key(artifact, Machine(H100.gpu, H100.compute_capability, "11.4.0.106"), profiles="1x16,8x128",
                         typing="strong"),
                make_key(artifact, H100, profiles="1x16", typing="strong"),
                make_key(artifact, H100, profiles="1x16,8x128", typing="weak")]
    assert len({key.digest, *(v.digest for v in variants)}) == 5
    assert make_key(artifact, H100, profiles="1x16,8x128", typing="strong") == key  # stable
    with_data = _artifact(tmp_path / "b", data=True)
    assert make_key(with_data, H100, profiles="1x16", typing="strong").onnx_data_sha256 is not None


def test_stale_and_foreign_engines_say_why(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    key = make_key(artifact, H100, profiles="1x16", typing="strong")
    assert mismatches(key, H100, artifact) == []
    a100 = Machine("NVIDIA A100-SXM4-80GB", "8.0", "10.3.0")
    reasons = mismatches(key, a100, artifact)
    assert reasons[0] == ("built for NVIDIA H100 80GB HBM3 (compute 9.0), this GPU is NVIDIA A100-SXM4-80GB "
                          "(compute 8.0)")
    assert reasons[1] == "built with TensorRT 10.13.0.35, this is TensorRT 10.3.0"
    (artifact.path / "model.onnx").write_bytes(b"graph-v2")  # the graph was re-optimized
    changed = Artifact(artifact.path, write_manifest(artifact.path, artifact.manifest))
    assert any("stale: the graph changed since" in r for r in mismatches(key, H100, changed))


def test_find_engine_picks_the_one_for_this_machine(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    a100 = Machine("NVIDIA A100-SXM4-80GB", "8.0", H100.tensorrt)
    entries = [{"file": k.file, "key": k.__dict__} for k in
               (make_key(artifact, a100, profiles="1x16", typing="strong"),
                make_key(artifact, H100, profiles="1x16", typing="strong"))]
    (artifact.path / "engines").mkdir()
    for entry in entries:
        (artifact.path / entry["file"]).write_bytes(b"plan")
    artifact = _artifact(tmp_path, engines=entries)
    lookup = find_engine(artifact, H100)
    assert lookup.entry is not None and lookup.entry.file == entries[1]["file"]
    assert "this GPU is NVIDIA H100" in lookup.explain()
    (artifact.path / entries[1]["file"]).unlink()
    lookup = find_engine(artifact, H100)
    assert lookup.entry is None and "the engine file is missing" in lookup.explain()
    assert find_engine(_artifact(tmp_path / "c"), H100).explain() == "the artifact has no TensorRT engine"


def test_replace_entry_drops_stale_keeps_foreign() -> None:
    def entry(file: str, sha: str) -> EngineEntry:
        return EngineEntry(file=file, key={"onnx_sha256": sha, "onnx_data_sha256": None})

    kept = replace_entry([entry("a", "old"), entry("b", "new"), entry("c", "new")], entry("c", "new"))
    assert [e.file for e in kept] == ["b", "c"]
    assert EngineKey.from_manifest({**make_key_dict(), "digest": "x"}).gpu == "g"


def make_key_dict() -> dict[str, Any]:
    return {"gpu": "g", "compute_capability": "9.0", "tensorrt": "10", "onnx_sha256": "s", "onnx_data_sha256": None,
            "profiles": "1x16", "typing": "strong"}


# ---------------------------------------------------------------------------------------------------------
# The builder's TensorRT 10 / 11 branches, against fake tensorrt modules


def _fake_trt(*, version: str, weak: bool) -> Any:
    flags = SimpleNamespace(STRONGLY_TYPED=1, EXPLICIT_BATCH=0)
    builder_flags = SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32") if weak else SimpleNamespace(TF32="TF32")
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags, BuilderFlag=builder_flags)


def test_network_is_strongly_typed_where_the_flag_exists() -> None:
    assert network_flags(_fake_trt(version="10.13", weak=True), "strong") == 1 << 1
    assert network_flags(_fake_trt(version="10.13", weak=True), "weak") == 0
    no_flag = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())
    assert network_flags(no_flag, "strong") == 0


def test_precision_flags_only_where_they_exist() -> None:
    trt10, trt11 = _fake_trt(version="10.13.0", weak=True), _fake_trt(version="11.4.0", weak=False)
    assert weak_flags(trt10, "fp16") == ["FP16"]
    assert weak_flags(trt10, "int8") == ["INT8", "FP16"]
    assert weak_flags(trt11, "fp32") == []
    with pytest.raises(UnsupportedError, match=r"TensorRT 11.4.0 has no BuilderFlag FP16 .*typing='strong'"):
        weak_flags(trt11, "fp16")
    with pytest.raises(UnsupportedError, match="unknown graph precision 'bf16'"):
        weak_flags(trt10, "bf16")
    with pytest.raises(UnsupportedError, match="outside 0..5"):
        BuildSettings(optimization_level=9)
    with pytest.raises(UnsupportedError, match="choose strong or weak"):
        BuildSettings(typing="loose")  # type: ignore[arg-type]


def test_preflight_refuses_what_tensorrt_cannot_parse(tmp_path: Path) -> None:
    def save(node: onnx.NodeProto) -> Path:
        graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                       [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        path = tmp_path / f"{node.op_type}.onnx"
        onnx.save(onnx.helper.make_model(graph), str(path))
        return path

    preflight(save(onnx.helper.make_node("Relu", ["x"], ["y"])))
    with pytest.raises(UnsupportedError, match=r"contrib ops \(SkipLayerNormalization\) .*--target tensorrt"):
        preflight(save(onnx.helper.make_node("SkipLayerNormalization", ["x"], ["y"], domain="com.microsoft")))
    with pytest.raises(UnsupportedError, match=r"dynamically quantized \(MatMulInteger\).*int8-static"):
        preflight(save(onnx.helper.make_node("MatMulInteger", ["x"], ["y"])))


def test_graph_precision_reads_the_manifest(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    assert graph_precision(artifact) == "fp16"
    assert graph_precision(Artifact(artifact.path, replace(artifact.manifest, precision=Precision.INT8_STATIC))) == "int8"
    assert graph_precision(Artifact(artifact.path, replace(artifact.manifest, precision=Precision.FP32))) == "fp32"


# ---------------------------------------------------------------------------------------------------------
# Validation feeds, device choice, CLI


@pytest.mark.parametrize("family,task", [("roberta", "question-answering"), ("bert", "multiple-choice")])
def test_validation_feeds_fall_inside_every_profile(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    model = artifact(family, task)
    for profile in make_profiles(parse_buckets("1x16,4x64"), max_length=model.max_length):
        feeds = profile_feeds(model, profile)
        assert [name.split("/")[1] for name, _ in feeds] == ["max", "short"]
        for _, feed in feeds:
            shape = next(iter(feed.values())).shape
            assert profile.batch.contains(shape[0]) and profile.sequence.contains(shape[-1]), (profile, shape)
            assert set(feed) == set(model.input_names)
        big = feeds[0][1]["attention_mask"]
        assert big.shape[0] == profile.batch.max and big.shape[-1] == profile.sequence.max
        assert big.reshape(-1, big.shape[-1]).sum(-1).min() < big.shape[-1] or big.shape[0] == 1  # padding exercised


def test_cuda_picks_a_matching_engine_else_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import encoderforge.runtime.backends.tensorrt as trt_backend

    plain = _artifact(tmp_path / "plain")
    assert choose_backend("cuda", None, plain) == "onnxruntime-cuda"
    artifact = _artifact(tmp_path)
    key = make_key(artifact, H100, profiles="1x16", typing="strong")
    (artifact.path / "engines").mkdir()
    (artifact.path / key.file).write_bytes(b"plan")
    with_engine = _artifact(tmp_path, engines=[{"file": key.file, "key": key.__dict__}])
    if TRT_REASON is not None:  # here: TensorRT missing, so ORT CUDA (whose load then fails, naming why)
        assert choose_backend("cuda", None, with_engine) == "onnxruntime-cuda"
    monkeypatch.setattr(TensorRTBackend, "available", lambda self: None)
    monkeypatch.setattr(trt_backend, "current_machine", lambda device_id=0: H100)
    assert choose_backend("cuda", None, with_engine) == "tensorrt"
    assert choose_backend("auto", None, with_engine) == "tensorrt"
    assert choose_backend("cpu", None, with_engine) == "onnxruntime-cpu"
    monkeypatch.setattr(trt_backend, "current_machine",
                        lambda device_id=0: Machine("NVIDIA L4", "8.9", H100.tensorrt))
    with caplog.at_level(logging.WARNING, logger="encoderforge.runtime"):
        assert choose_backend("cuda", None, with_engine) == "onnxruntime-cuda"
    assert "this GPU is NVIDIA L4" in caplog.text and "encoderforge build-engine" in caplog.text


def test_tensorrt_backend_refuses_clearly(tmp_path: Path) -> None:
    backend = get_backend("trt")
    assert backend.name == "tensorrt"
    with pytest.raises(UnsupportedError, match=r"unknown tensorrt option\(s\) \['threads'\]"):
        backend.load(_artifact(tmp_path / "a"), threads=2)
    if TRT_REASON is not None:
        with pytest.raises(UnsupportedError, match="backend 'tensorrt' is unavailable: .*"):
            backend.load(_artifact(tmp_path))


def test_build_engine_cli_errors_are_one_line(artifact: Callable[..., Artifact],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = str(artifact("roberta", "question-answering").path)
    assert main(["build-engine", path, "--profiles", "1x16,8by128"]) == 2
    assert "error: profile '8by128' is not BATCHxSEQUENCE" in capsys.readouterr().err
    assert main(["build-engine", path, "--profiles", "1x4096"]) == 2
    assert "longer than the model's max length" in capsys.readouterr().err
    if TRT_REASON is not None:
        assert main(["build-engine", path]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert "cuda" in err.lower() or "tensorrt" in err.lower()


# ---------------------------------------------------------------------------------------------------------
# With TensorRT and a GPU (marker tensorrt): pytest -m tensorrt


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
def test_build_run_and_cache_an_engine(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    from encoderforge import load
    from encoderforge.engines import EngineConfig, build_engine

    target = tmp_path / "rb-qa"
    shutil.copytree(artifact("roberta", "question-answering").path, target)
    cache = tmp_path / "tc"
    result = build_engine(EngineConfig(artifact=target, profiles="1x16,4x64", settings=BuildSettings(
        timing_cache=cache)))
    assert not result.cached and result.path.is_file() and cache.is_file()
    assert result.entry.validation is not None and result.entry.validation["passed"]
    assert [p["bucket"] for p in result.entry.profiles] == ["1x16", "4x64"]
    again = build_engine(EngineConfig(artifact=target, profiles="1x16,4x64"))
    assert again.cached and again.path == result.path
    manifest = json.loads((target / "manifest.json").read_text())
    assert result.entry.file in manifest["files"]  # the engine is part of the verified file table

    question, context = "Who wrote it?", "Herman Melville wrote Moby-Dick in 1851, after years at sea."
    with load(target, device="cpu") as cpu, load(target, device="cuda") as gpu:
        assert gpu.session.backend == "tensorrt"
        expected, got = cpu(question=question, context=context), gpu(question=question, context=context)
        assert got["answer"] == expected["answer"]
        rng = np.random.default_rng(0)
        for batch, length in [(1, 3), (3, 10), (4, 64), (9, 40)]:  # padded up, and split above 4 rows
            feed = {n: np.ones((batch, length), dtype=np.int64) for n in target_inputs(target)}
            feed["input_ids"] = rng.integers(5, 50, size=(batch, length))
            ref, out = cpu.session.run(feed), gpu.session.run(feed)
            for name in ref:
                np.testing.assert_allclose(out[name], ref[name], atol=2e-2, rtol=2e-2)
        with pytest.raises(UnsupportedError, match="fits no optimization profile"):
            gpu.session.run({n: np.ones((1, 65), dtype=np.int64) for n in target_inputs(target)})


def target_inputs(path: Path) -> list[str]:
    return [spec["name"] for spec in json.loads((path / "manifest.json").read_text())["inputs"]]


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
def test_stale_engine_is_refused_then_rebuilt(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    from encoderforge.engines import EngineConfig, build_engine
    from encoderforge.runtime.backends.tensorrt import current_machine

    target = tmp_path / "rb-qa"
    shutil.copytree(artifact("roberta", "question-answering").path, target)
    first = build_engine(EngineConfig(artifact=target, profiles="2x32", validate=False))
    model = onnx.load(str(target / "model.onnx"))
    model.doc_string = "re-optimized"
    onnx.save(model, str(target / "model.onnx"))
    manifest = json.loads((target / "manifest.json").read_text())
    write_manifest(target, Manifest.from_json(manifest))
    stale = Artifact.load(target)
    assert "stale" in find_engine(stale, current_machine()).explain()
    with pytest.raises(UnsupportedError, match="no TensorRT engine .* runs here .*stale"):
        get_backend("tensorrt").load(stale)
    second = build_engine(EngineConfig(artifact=target, profiles="2x32", validate=False))
    assert second.entry.file != first.entry.file and not os.path.exists(first.path)


def test_tensorrt_code_type_checks_against_tensorrt_stubs(tmp_path: Path) -> None:
    """mypy (strict) on the TensorRT code with tensorrt-stubs on MYPYPATH: API misuse fails here, without a GPU."""
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("tensorrt-stubs")
    except PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs (see scripts/typecheck.sh)")
    root = Path(__file__).resolve().parents[1]
    stubs = tmp_path / "trt-stubs"
    subprocess.run([sys.executable, str(root / "scripts" / "trt_stubs.py"), str(stubs)], check=True, cwd=root,
                   capture_output=True)
    targets = ["src/encoderforge/engines", "src/encoderforge/runtime/backends/tensorrt.py",
               "src/encoderforge/runtime/backends/onnxruntime_cuda.py"]
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), *targets], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(stubs)}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------------------
# TrtSession's request path against a fake TensorRT and a fake CUDA runtime (host memory standing in for
# device memory, onnxruntime CPU standing in for the engine): profile choice, padding, splitting, buffer
# reuse and trimming, exactly as they drive the real named-tensor API.


class _FakeCudart:
    cudaError_t = SimpleNamespace(cudaSuccess=0)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.mallocs = 0

    def cudaSetDevice(self, index: int) -> tuple[int]:
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 7

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaMalloc(self, size: int) -> tuple[int, int]:
        self.mallocs += 1
        ptr = self.mallocs << 32
        self.memory[ptr] = bytearray(size)
        return 0, ptr

    def cudaFree(self, ptr: int) -> tuple[int]:
        del self.memory[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: int) -> tuple[int]:
        import ctypes

        if kind == 1:
            self.memory[dst][:count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(self.memory[src][:count]), count)
        return (0,)


class _FakeContext:
    def __init__(self, engine: _FakeEngine) -> None:
        self.engine, self.profile, self.shapes, self.addresses = engine, 0, {}, {}  # type: ignore[var-annotated]

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.profiles[self.profile]
        assert all(lo <= n <= hi for lo, n, hi in zip(low, shape, high)), (shape, self.profile)
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return next(iter(self.shapes.values()))  # QA outputs are (batch, sequence)

    def execute_async_v3(self, stream: int) -> bool:
        cuda = self.engine.cuda
        feed = {}
        for name, shape in self.shapes.items():
            size = int(np.prod(shape)) * 8
            feed[name] = np.frombuffer(bytes(cuda.memory[self.addresses[name]][:size]), np.int64).reshape(shape)
        for name, value in zip(self.engine.outputs, self.engine.session.run(self.engine.outputs, feed)):
            data = np.ascontiguousarray(value, np.float32).tobytes()
            cuda.memory[self.addresses[name]][:len(data)] = data
        self.engine.runs.append(next(iter(self.shapes.values())))
        return True


class _FakeEngine:
    def __init__(self, model: Path, cuda: _FakeCudart, profiles: list[tuple[tuple[int, ...], ...]]) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.cuda, self.profiles, self.runs = cuda, profiles, []  # type: ignore[var-annotated]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self.num_optimization_profiles = len(profiles)

    def get_tensor_name(self, index: int) -> str:
        return (self.inputs + self.outputs)[index]

    def get_tensor_mode(self, name: str) -> str:
        return "in" if name in self.inputs else "out"

    def get_tensor_dtype(self, name: str) -> type:
        return np.int64 if name in self.inputs else np.float32

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1)

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        return self.profiles[index]

    def create_execution_context(self) -> _FakeContext:
        return _FakeContext(self)


def test_trt_session_request_path_with_fakes(artifact: Callable[..., Artifact], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import encoderforge.runtime.backends.cuda as cuda_module
    import encoderforge.runtime.backends.tensorrt as trt_backend

    model = artifact("roberta", "question-answering")
    cuda = _FakeCudart()
    profiles = [(p.shapes(["batch", "sequence"])) for p in make_profiles(parse_buckets("1x16,4x64"))]
    engine = _FakeEngine(model.model_path, cuda, profiles)
    fake_trt = SimpleNamespace(
        __version__="10.99", Builder=object, Logger=SimpleNamespace, TensorIOMode=SimpleNamespace(INPUT="in"),
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda plan: engine), nptype=lambda t: t)
    fake_trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setattr(cuda_module, "cudart", lambda: cuda)
    monkeypatch.setattr(trt_backend, "cudart", lambda: cuda)
    axes = model.manifest.output_axes()
    session = trt_backend.TrtSession(b"plan", output_axes=axes)
    assert [str(p.bucket) for p in session.profiles] == ["1x16", "4x64"]
    assert [i.name for i in session.inputs()] == engine.inputs and session.backend == "tensorrt"
    rng = np.random.default_rng(0)
    for batch, length, runs in [(1, 5, [(1, 5)]), (3, 10, [(3, 17)]), (4, 64, [(4, 64)]), (9, 40, [(4, 40)] * 2 + [(1, 40)])]:
        feed = {n: np.ones((batch, length), np.int64) for n in engine.inputs}
        feed["input_ids"] = rng.integers(5, 50, size=(batch, length))
        feed["attention_mask"][:, length - 1] = 0
        engine.runs.clear()
        got = session.run(feed)
        assert engine.runs == runs  # the smallest profile, padded up to its minimum, split above 4 rows
        expected = dict(zip(engine.outputs, engine.session.run(engine.outputs, feed)))
        for name, value in expected.items():
            assert got[name].shape == value.shape
            np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-4)
    allocated = cuda.mallocs
    session.run({n: np.ones((2, 30), np.int64) for n in engine.inputs})
    assert cuda.mallocs == allocated  # buffers are reused, not reallocated
    with pytest.raises(UnsupportedError, match="fits no optimization profile"):
        session.run({n: np.ones((1, 65), np.int64) for n in engine.inputs})
    with pytest.raises(InputError, match="missing"):
        session.run({"input_ids": np.ones((1, 4), np.int64)})
    session.close()
    assert not cuda.memory  # every device buffer freed
