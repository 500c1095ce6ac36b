"""`encoderforge batch`: corpora in Parquet / JSONL, shards written atomically and resumed, the local
multi-process path, and Ray Data embedding a 10,000-sentence Parquet corpus row for row like encode()."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="batch jobs need pyarrow: pip install 'encoderforge[ray]'")
import pyarrow.parquet as pq

from encoderforge.cli import main
from encoderforge.serving.batch import BatchConfig, read_output, run_batch
from encoderforge.serving.tasks import ServingError

WORDS = ["cats", "dogs", "birds", "rivers", "mountains", "bread", "coffee", "trains", "music", "winter"]


def sentences(count: int) -> list[str]:
    return [f"sentence {i} is about {WORDS[i % 10]} and {WORDS[(i * 7) % 10]}. " * (1 + i % 4) for i in range(count)]


def corpus(path: Path, count: int) -> list[str]:
    texts = sentences(count)
    pq.write_table(pa.table({"id": list(range(count)), "body": texts}), path)
    return texts


@pytest.fixture(scope="module")
def embed_path(artifact: Callable[..., Any]) -> Path:
    return Path(artifact("bert", "feature-extraction").path)


def _vectors(table: Any) -> np.ndarray:
    return np.array(table.column("embedding").to_pylist(), dtype=np.float32)


def test_local_batch_matches_encode_and_resumes_by_shard(tmp_path: Path, embed_path: Path) -> None:
    import encoderforge

    texts = corpus(tmp_path / "corpus.parquet", 250)
    output = tmp_path / "vectors.parquet"
    config = BatchConfig(artifact=str(embed_path), input=str(tmp_path / "corpus.parquet"), output=str(output),
                         text_column="body", keep=("id",), shard_rows=100, threads=1, progress=False)
    report = run_batch(config)
    assert (report.rows, report.shards, report.skipped) == (250, 3, 0)
    table = read_output(output)
    assert table.column_names == ["id", "embedding"] and table.column("id").to_pylist() == list(range(250))
    np.testing.assert_allclose(_vectors(table), encoderforge.load(embed_path, device="cpu").encode(texts), atol=1e-5)
    (output / "part-00001.parquet").unlink()  # as if the job died in shard 1
    assert run_batch(config).skipped == 2
    np.testing.assert_allclose(_vectors(read_output(output)), _vectors(table), atol=1e-6)  # recomputed shard
    assert not list(output.glob(".*tmp*"))


def test_local_processes_and_jsonl_through_the_cli(tmp_path: Path, artifact: Callable[..., Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import encoderforge

    path = artifact("bert", "text-classification").path
    texts = sentences(40)
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    code = main(["batch", str(path), "--input", str(source), "--output", str(tmp_path / "out"), "--keep", "n",
                 "--workers", "2", "--shard-rows", "15", "--threads", "1", "--format", "jsonl", "--quiet"])
    assert code == 0 and "40 rows in 3 shard(s)" in capsys.readouterr().out
    rows = [json.loads(line) for p in sorted((tmp_path / "out").glob("part-*.jsonl")) for line in p.open()]
    assert [r["n"] for r in rows] == list(range(40))
    expected = encoderforge.load(path, device="cpu")(texts)
    for row, want in zip(rows, expected):
        got = json.loads(row["result"])
        assert got["label"] == want["label"] and abs(got["score"] - want["score"]) < 1e-4


def test_bad_corpus_settings_say_what_to_do(tmp_path: Path, embed_path: Path) -> None:
    corpus(tmp_path / "c.parquet", 3)
    with pytest.raises(ServingError, match="no column.*'text'.*--text-column"):
        run_batch(BatchConfig(artifact=str(embed_path), input=str(tmp_path / "c.parquet"), output=str(tmp_path / "o")))
    with pytest.raises(ServingError, match="does not exist"):
        run_batch(BatchConfig(artifact=str(embed_path), input=str(tmp_path / "none.parquet"),
                              output=str(tmp_path / "o")))


def test_ray_data_embeds_10000_sentences_row_for_row(tmp_path: Path, embed_path: Path) -> None:
    pytest.importorskip("ray.data", reason="needs Ray Data: pip install 'encoderforge[ray]'")
    import encoderforge

    texts = corpus(tmp_path / "corpus.parquet", 10_000)
    report = run_batch(BatchConfig(artifact=str(embed_path), input=str(tmp_path / "corpus.parquet"),
                                   output=str(tmp_path / "vectors.parquet"), text_column="body", keep=("id",),
                                   engine="ray", workers=1, shard_rows=2_500, batch_size=128, threads=1,
                                   progress=False))
    assert (report.rows, report.shards) == (10_000, 4)
    table = read_output(tmp_path / "vectors.parquet")
    assert table.column("id").to_pylist() == list(range(10_000))
    expected = encoderforge.load(embed_path, device="cpu", intra_op_threads=1).encode(texts, batch_size=128)
    np.testing.assert_allclose(_vectors(table), expected, atol=1e-5)
