"""Issue 13: nothing lost at --output, nothing read outside the artifact, safe under threads, no useless
exports, no leftovers after SIGTERM, a runtime input cap, one-line errors, honest messages, readable modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from encoderforge.artifact import MANIFEST, Artifact, sha256_file
from encoderforge.errors import ArtifactError, InputError
from encoderforge.exporters import ExportConfig, export
from encoderforge.staging import staging


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture()
def copy_of(artifact: Callable[..., Artifact], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(artifact("roberta", "cls").path, target)
    return target


def _edit(directory: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    change(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def _in_thread(body: Callable[[], None]) -> BaseException | None:
    """Run `body` in another thread; return what it raised (None when it returned)."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            raised.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return raised[0] if raised else None


# ---- 1. data loss at --output ----

def test_output_created_during_the_run_is_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with pytest.raises(ArtifactError, match="created or replaced by someone else"), staging(out) as stage:
        (stage / "model.onnx").write_bytes(b"graph")
        out.mkdir()  # another program (or user) puts a directory there meanwhile
        (out / "user.txt").write_text("mine")
    assert (out / "user.txt").read_text() == "mine" and not (out / "model.onnx").exists()
    assert _leftovers(tmp_path) == []


def test_forced_run_replaces_only_what_was_there_at_the_start(tmp_path: Path) -> None:
    out = tmp_path / "art"
    out.mkdir()
    with pytest.raises(ArtifactError, match="created or replaced by someone else"), \
            staging(out, force=True) as stage:
        (stage / "model.onnx").write_bytes(b"graph")
        out.rename(tmp_path / "moved")
        out.mkdir()
        (out / "user.txt").write_text("mine")
    assert (out / "user.txt").read_text() == "mine"


def test_second_writer_of_one_output_is_refused(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "art"
    entered, release = threading.Event(), threading.Event()

    def first() -> None:
        with staging(out) as stage:
            (stage / "model.onnx").write_bytes(b"first")
            entered.set()
            release.wait(60)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(60)
        with pytest.raises(ArtifactError, match="another encoderforge process is writing"):
            export(ExportConfig(model=str(checkpoint("bert", "cls")), task="cls", output=out))
    finally:
        release.set()
        thread.join()
    assert (out / "model.onnx").read_bytes() == b"first"  # the first writer finished, untouched
    assert _leftovers(tmp_path) == []


def test_run_refuses_to_overwrite_its_input(artifact: Callable[..., Artifact], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from encoderforge.cli import main

    requests = tmp_path / "in.jsonl"
    requests.write_text('{"text": "a good film"}\n')
    assert main(["run", str(artifact("roberta", "cls").path), "--input", str(requests),
                 "--output", str(tmp_path / "." / "in.jsonl"), "--no-progress"]) == 2
    assert "is the --input file" in capsys.readouterr().err
    assert requests.read_text() == '{"text": "a good film"}\n'


# ---- 5. SIGTERM (and SIGKILL) during an export leave no staging directories ----

_WRITER = """
import sys, time
from pathlib import Path
from encoderforge.staging import staging
with staging(Path(sys.argv[1])) as stage:
    (stage / "model.onnx.data").write_bytes(bytes(1 << 20))
    print("ready", flush=True)
    time.sleep(120)
"""


def _writer(out: Path) -> subprocess.Popen[str]:
    import encoderforge  # the child imports the same encoderforge as this test

    env = {**os.environ, "PYTHONPATH": str(Path(encoderforge.__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_sigterm_during_export_removes_its_staging_directory(tmp_path: Path) -> None:
    out = tmp_path / "art"
    child = _writer(out)
    try:
        assert any(name.startswith(".art.partial-") for name in _leftovers(tmp_path))
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == 128 + signal.SIGTERM
    finally:
        child.kill()
    assert _leftovers(tmp_path) == [] and not out.exists()


def test_staging_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "art"
    child = _writer(out)
    with pytest.raises(ArtifactError, match="another encoderforge process is writing"), staging(out):
        pass  # the lock works across processes too
    child.kill()  # SIGKILL: nothing can clean up
    child.wait(60)
    assert any(name.startswith(".art.partial-") for name in _leftovers(tmp_path))
    (tmp_path / ".art-other.partial-keep").mkdir()  # another output's: not ours to remove
    with staging(out) as stage:
        (stage / "model.onnx").write_bytes(b"graph")
    assert _leftovers(tmp_path) == [".art-other.partial-keep"] and (out / "model.onnx").is_file()


# ---- 2. reads outside the artifact ----

def test_table_names_outside_the_artifact_are_refused(copy_of: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    entry = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
    for name in ("../secret.txt", str(secret)):
        original = json.loads((copy_of / MANIFEST).read_text())
        _edit(copy_of, lambda m: m["files"].update({name: entry}))  # noqa: B023 - used at once
        for verify in (True, False):
            with pytest.raises(ArtifactError, match="not a file inside the artifact"):
                Artifact.load(copy_of, verify=verify)
        (copy_of / MANIFEST).write_text(json.dumps(original))
    Artifact.load(copy_of)


def test_model_and_tokenizer_paths_stay_inside(copy_of: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(copy_of / "model.onnx", outside / "model.onnx")
    _edit(copy_of, lambda m: m.update(model_file="../elsewhere/model.onnx"))
    with pytest.raises(ArtifactError, match="'model_file' names '../elsewhere/model.onnx'"):
        Artifact.load(copy_of, verify=False)
    _edit(copy_of, lambda m: m.update(model_file="model.onnx"))
    _edit(copy_of, lambda m: m["tokenizer"].update(file=str(outside / "model.onnx")))
    with pytest.raises(ArtifactError, match="'tokenizer.file' names"):
        Artifact.load(copy_of, verify=False)


def test_symlink_leading_out_is_refused(copy_of: Path, tmp_path: Path) -> None:
    swapped = tmp_path / "tokenizer.json"
    shutil.copy(copy_of / "tokenizer.json", swapped)
    (copy_of / "tokenizer.json").unlink()
    (copy_of / "tokenizer.json").symlink_to(swapped)  # same bytes, so the sha256 still matches
    with pytest.raises(ArtifactError, match="links leading out"):
        Artifact.load(copy_of)


def test_every_file_the_runtime_reads_is_in_the_table(copy_of: Path) -> None:
    _edit(copy_of, lambda m: m["files"].pop("tokenizer.json"))
    with pytest.raises(ArtifactError, match="'tokenizer.json' .* not in the manifest's sha256 table"):
        Artifact.load(copy_of)
    _edit(copy_of, lambda m: m["files"].update(
        {"tokenizer.json": {"sha256": sha256_file(copy_of / "tokenizer.json"),
                            "bytes": (copy_of / "tokenizer.json").stat().st_size}}))
    _edit(copy_of, lambda m: m["files"].pop("tokenizer_config.json"))  # on disk, read by the runtime
    with pytest.raises(ArtifactError, match="'tokenizer_config.json' .* not in the manifest's sha256 table"):
        Artifact.load(copy_of, verify=False)


# ---- 7. one-line errors for malformed manifests and bad arguments ----

@pytest.mark.parametrize(("change", "field"), [
    (None, "must be an object, got null"),
    (lambda m: m.update(files=list(m["files"])), "'files'"),
    (lambda m: m["files"]["model.onnx"].pop("bytes"), "'files.model.onnx.bytes'"),
    (lambda m: m["tokenizer"].pop("max_length"), "'tokenizer.max_length'"),
    (lambda m: m.update(outputs={"logits": 1}), "'outputs'"),
])
def test_malformed_manifest_is_one_artifact_error(copy_of: Path, change: Callable[[dict[str, Any]], Any] | None,
                                                  field: str) -> None:
    if change is None:
        (copy_of / MANIFEST).write_text("null")
    else:
        _edit(copy_of, change)
    for verify in (True, False):
        with pytest.raises(ArtifactError, match=field):
            Artifact.load(copy_of, verify=verify)


# ---- 3. pipelines and encode() from many threads ----

_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "paris", "sleeps", "under", "a", "grey", "sky"]


def _text(words: int, shift: int) -> str:
    return " ".join(_WORDS[(i + shift) % len(_WORDS)] for i in range(words))


def _hammer(call: Callable[[int], Any], calls: int = 32, threads: int = 8) -> None:
    """Run call(i) for i < calls single-threaded, then from `threads` threads at once; the results match."""
    from concurrent.futures import ThreadPoolExecutor

    expected = [call(i) for i in range(calls)]
    with ThreadPoolExecutor(threads) as pool:
        got = list(pool.map(call, [i for _ in range(3) for i in range(calls)]))
    for index, result in enumerate(got):
        assert json.dumps(result, default=lambda a: a.tolist()) == \
            json.dumps(expected[index % calls], default=lambda a: a.tolist()), f"call {index % calls} differs"


def test_pipelines_are_thread_safe_with_long_and_short_texts(artifact: Callable[..., Artifact]) -> None:
    from encoderforge import load

    qa = load(artifact("roberta", "qa").path, device="cpu")
    cls = load(artifact("roberta", "cls").path, device="cpu")
    emb = load(artifact("bert", "embed").path, device="cpu")
    words = [3, 40, 300, 5, 150, 12]  # short texts and ones that need truncation / several QA windows
    _hammer(lambda i: qa(question=_text(4, i), context=_text(words[i % len(words)], i), top_k=2))
    _hammer(lambda i: cls([_text(words[i % len(words)], i), _text(2, i)], top_k=None))
    _hammer(lambda i: emb.encode([_text(words[i % len(words)], i), "short"]).round(5))


def _retable(directory: Path) -> None:
    """Rewrite the sha256 table after an edit, as a careless tool (or an attacker) would."""
    from encoderforge.artifact import Manifest, write_manifest

    write_manifest(directory, Manifest.from_json(json.loads((directory / MANIFEST).read_text())))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("config.json", "{broken", "cannot read .*config.json"),
    ("tokenizer.json", "{broken", "cannot read the tokenizer"),
])
def test_corrupt_file_with_rewritten_sha_is_one_error(copy_of: Path, name: str, content: str, message: str) -> None:
    from encoderforge import load

    (copy_of / name).write_text(content)
    _retable(copy_of)
    with pytest.raises(ArtifactError, match=message):
        load(copy_of, device="cpu")


def test_manifest_task_that_the_graph_lacks_fails_at_load(copy_of: Path) -> None:
    from encoderforge import load

    _edit(copy_of, lambda m: m.update(task="question-answering"))
    with pytest.raises(ArtifactError, match="needs graph output.*start_logits"):
        load(copy_of, device="cpu")


def test_tokenizer_larger_than_the_graph_vocabulary_fails_at_load(copy_of: Path) -> None:
    from encoderforge import load

    config = json.loads((copy_of / "config.json").read_text())
    config["vocab_size"] = 10
    (copy_of / "config.json").write_text(json.dumps(config))
    _retable(copy_of)
    with pytest.raises(ArtifactError, match="tokenizer has .* tokens but the model's vocabulary .* is 10"):
        load(copy_of, device="cpu")


def test_bad_arguments_are_one_line_errors(artifact: Callable[..., Artifact], checkpoint: Callable[..., Path],
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from encoderforge import load
    from encoderforge.cli import main

    art = artifact("roberta", "cls").path
    with pytest.raises(InputError, match="batch_size must be a positive int, got 0"):
        load(art, device="cpu")("a text", batch_size=0)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (["run", str(art), "--text", "hi", "--output", str(blocker / "out.json")], "cannot write --output"),
        (["run", str(art), "--text", "hi", "--batch-size", "0"], "--batch-size must be a positive int"),
        (["export", "--model", str(checkpoint("roberta", "cls")), "--task", "cls", "--precision", "int8-dynamic",
          "--output", str(blocker / "art")], "cannot write artifact at"),
        (["triton-repo", str(art), "--output", str(tmp_path / "repo"), "--name", "../victim", "--force"],
         "not a plain directory name"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "victim").exists()


# ---- 4. exports that pass but are useless ----

def test_checkpoint_without_tokenizer_files_is_refused(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from encoderforge.errors import ModelSourceError

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint("roberta", "cls") / name, bare / name)
    with pytest.raises(ModelSourceError, match="no tokenizer files"):
        export(ExportConfig(model=str(bare), task="cls", output=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_validation_text_must_be_more_than_special_tokens(checkpoint: Callable[..., Path]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from encoderforge.errors import ModelSourceError
    from encoderforge.exporters.samples import validation_cases
    from encoderforge.tasks import task_head

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *(f"w{i}" for i in range(20))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", 2), ("[SEP]", 3)])
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)  # type: ignore[no-untyped-call]
    with pytest.raises(ModelSourceError, match="special tokens only"):  # every word of the text is [UNK]
        validation_cases(tokenizer, task_head("cls"), ("input_ids", "attention_mask"), 64)


def test_head_the_checkpoint_lacks_is_refused_or_recorded(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from encoderforge.errors import ModelSourceError

    mlm = str(checkpoint("roberta", "mlm"))
    with pytest.raises(ModelSourceError, match="no trained weights for the question-answering head.*qa_outputs"):
        export(ExportConfig(model=mlm, task="qa", output=tmp_path / "o"))
    art = export(ExportConfig(model=mlm, task="qa", output=tmp_path / "o", allow_untrained_head=True))
    assert set(art.manifest.untrained_weights) == {"qa_outputs.weight", "qa_outputs.bias"}
    plain = export(ExportConfig(model=mlm, task="embed", output=tmp_path / "embed"))  # pooler unused: fine
    assert plain.manifest.untrained_weights == ()


# ---- 6. runtime input cap, before tokenization ----

class _NoTokenizing:
    """Stands in for the tokenizers.Tokenizer: any use of it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the text was tokenized (tokenizer.{name}) before the size cap was checked")


def test_texts_past_the_cap_are_refused_before_tokenization(artifact: Callable[..., Artifact]) -> None:
    from encoderforge import load
    from encoderforge.tokenization import MAX_TEXT_CHARS

    assert MAX_TEXT_CHARS == 1_000_000
    huge = "word " * (MAX_TEXT_CHARS // 5) + "x"
    cls = load(artifact("roberta", "cls").path, device="cpu")
    qa = load(artifact("roberta", "qa").path, device="cpu")
    emb = load(artifact("bert", "embed").path, device="cpu")
    for pipe in (cls, qa, emb):
        pipe.tokenizer.tokenizer = _NoTokenizing()
    calls: list[Callable[[], Any]] = [lambda: cls(huge), lambda: cls({"text": "fine", "text_pair": huge}),
                                      lambda: qa(question="Who?", context=huge), lambda: emb.encode(["ok", huge])]
    for call in calls:
        with pytest.raises(InputError, match="has 1,000,001 characters, more than the limit of 1,000,000 per text"):
            call()
    small = load(artifact("roberta", "cls").path, device="cpu", max_chars=100)
    assert small("a" * 100)
    with pytest.raises(InputError, match="input 0 has 101 characters, more than the limit of 100"):
        small("a" * 101)
    with pytest.raises(InputError, match="max_chars must be a positive int"):
        load(artifact("roberta", "cls").path, device="cpu", max_chars=0)


# ---- 9. modes: the account that serves an artifact can read it ----

def test_artifact_modes_follow_the_umask(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    import stat

    previous = os.umask(0o022)
    try:
        art = export(ExportConfig(model=str(checkpoint("roberta", "cls")), task="cls", output=tmp_path / "art",
                                  external_data_threshold=0))
    finally:
        os.umask(previous)
    assert (art.path / "model.onnx.data").is_file()
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [art.path, *art.path.rglob("*")]}
    assert modes["art"] == 0o755
    assert {name: mode for name, mode in modes.items() if name != "art" and mode != (
        0o755 if (tmp_path / name).is_dir() else 0o644)} == {}


# ---- 8. messages that say what is wrong ----

def test_messages_name_the_real_problem(checkpoint: Callable[..., Path], artifact: Callable[..., Artifact],
                                        tmp_path: Path) -> None:
    from encoderforge.calibration.sources import read_items
    from encoderforge.errors import ModelSourceError
    from encoderforge.graph_passes import OptimizeConfig, optimize

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint("bert", "cls"), broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelSourceError, match="config.json' is not valid JSON") as caught:
        export(ExportConfig(model=str(broken), task="cls", output=tmp_path / "o"))
    assert "HF_HUB_OFFLINE" not in str(caught.value)

    lines = tmp_path / "calib.jsonl"
    lines.write_text('{"body": "a text"}\n')
    with pytest.raises(InputError, match="no 'text' field") as jsonl_error:
        read_items(lines)
    assert "--calibration-text-field" not in str(jsonl_error.value)

    source = artifact("bert", "cls").path
    with pytest.raises(InputError, match="is a directory; pass a text or JSONL file"):
        optimize(OptimizeConfig(artifact=source, output=tmp_path / "q", precision="int8-static",
                                calibration_data=tmp_path))
    for samples in (0, -3):
        with pytest.raises(InputError, match=f"calibration samples {samples} must be an int >= 1"):
            optimize(OptimizeConfig(artifact=source, output=tmp_path / "q", precision="int8-static",
                                    calibration_samples=samples))
    assert not (tmp_path / "q").exists()
