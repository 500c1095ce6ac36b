"""`encoderforge batch`: run an artifact over a corpus (Parquet or JSONL) and write the answers as shards.

    encoderforge batch out/minilm --input corpus.parquet --text-column body --output vectors.parquet --engine ray

The input's rows are cut into shards of --shard-rows rows, in order; shard k is written atomically to
<output>/part-<k>.parquet (or .jsonl), so a rerun skips the shards already there (resumable). Each output row
carries the kept columns (--keep) and the task's answer: `embedding` (list of float32) for feature-extraction,
`result` (the pipeline's answer as JSON) for the other tasks. A directory of parquet parts reads back as one table
(pyarrow.dataset, pandas.read_parquet, ray.data.read_parquet).

Engines: `ray` maps batches over Ray Data with an actor pool, each actor holding one onnxruntime session (a local
Ray cluster unless --ray-address names one; the same code runs on a multi-node cluster); `local` uses
--workers processes (or this process when 1), each loading the artifact once.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from encoderforge.errors import InputError
from encoderforge.serving.tasks import ServingError, TaskIO, run_rows, task_io

log = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
SHARD_COLUMN = "__shard__"


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    artifact: str
    input: str
    output: str
    text_column: str = "text"
    context_column: str = "context"  # question-answering: the text column holds the question
    keep: tuple[str, ...] = ()
    engine: Engine = "local"
    workers: int = 1
    shard_rows: int = 10_000
    batch_size: int = 64
    threads: int | None = None  # onnxruntime intra-op threads per worker
    output_format: Literal["parquet", "jsonl"] = "parquet"
    ray_address: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class BatchReport:
    rows: int
    shards: int
    skipped: int
    seconds: float
    output: Path


def _require_pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ServingError("batch jobs read and write with pyarrow: pip install 'encoderforge[ray]'") from exc
    return pyarrow


def read_corpus(path: Path, columns: list[str]) -> Any:
    """A pyarrow Table with `columns` from a .parquet file (or directory of them) or a .jsonl file."""
    pa = _require_pyarrow()
    if not path.exists():
        raise ServingError(f"input {str(path)!r} does not exist; pass a .parquet or .jsonl corpus")
    try:
        if path.suffix in (".jsonl", ".json", ".ndjson"):
            import pyarrow.json as paj

            table = paj.read_json(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path, memory_map=True)
    except pa.ArrowInvalid as exc:
        raise ServingError(f"cannot read {str(path)!r}: {exc}; pass Parquet or JSON Lines") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ServingError(f"input {str(path)!r} has no column(s) {missing}; its columns: {table.column_names} "
                           "(choose with --text-column / --keep)")
    return table.select(columns)


def _input_columns(config: BatchConfig, io: TaskIO) -> dict[str, str]:
    """Task input name -> corpus column."""
    if io.inputs == ("question", "context"):
        return {"question": config.text_column, "context": config.context_column}
    return {"text": config.text_column}


class ShardWorker:
    """Holds one pipeline (one session); turns a pyarrow batch of rows into answer columns."""

    def __init__(self, artifact: str, columns: dict[str, str], threads: int | None, batch_size: int) -> None:
        from encoderforge.artifact import Artifact
        from encoderforge.runtime import load

        options: dict[str, Any] = {} if threads is None else {"intra_op_threads": threads}
        self.io = task_io(Artifact.load(artifact, verify=False).task)
        self.pipeline = load(artifact, device="cpu", **options)
        self.columns = columns
        self.batch_size = batch_size

    def answer(self, texts: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = {name: ["" if t is None else str(t) for t in texts[column]] for name, column in self.columns.items()}
        out: dict[str, list[Any]] = {spec.name: [] for spec in self.io.outputs}
        out["error"] = []
        count = len(next(iter(rows.values())))
        for start in range(0, count, self.batch_size):
            part = {name: values[start:start + self.batch_size] for name, values in rows.items()}
            for answer in run_rows(self.io, self.pipeline, part):
                _append(out, self.io, answer)
        if not any(out["error"]):
            del out["error"]
        return out

    def __call__(self, batch: Any) -> Any:
        """Ray Data entry point: a pyarrow Table in, the same rows with answer columns out."""
        import pyarrow as pa

        answers = self.answer({c: batch.column(c).to_pylist() for c in set(self.columns.values())})
        table = batch
        for name, values in answers.items():
            table = table.append_column(name, pa.array(values))
        return table


def _append(out: dict[str, list[Any]], io: TaskIO, answer: dict[str, np.ndarray] | InputError) -> None:
    if isinstance(answer, InputError):
        for spec in io.outputs:
            out[spec.name].append(None)
        out["error"].append(str(answer))
        return
    out["error"].append(None)
    for spec in io.outputs:
        value = answer[spec.name]
        out[spec.name].append(value.astype(np.float32).tolist() if spec.dtype == "FP32"
                              else value.reshape(-1)[0].decode("utf-8"))


def shard_path(output: Path, index: int, fmt: str) -> Path:
    return output / f"part-{index:05d}.{fmt}"


def write_shard(table: Any, path: Path) -> None:
    """Atomically: a temp file renamed into place, so a killed job never leaves a partial shard."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist())
    os.replace(tmp, path)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.start = total, enabled, 0, time.perf_counter()

    def shard(self, index: int, rows: int) -> None:
        self.done += rows
        if self.enabled:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"shard {index}: {self.done:,}/{self.total:,} rows ({rate:,.0f} rows/s)", file=sys.stderr,
                  flush=True)


_WORKER: ShardWorker | None = None


def _init_worker(artifact: str, columns: dict[str, str], threads: int | None, batch_size: int) -> None:
    global _WORKER
    _WORKER = ShardWorker(artifact, columns, threads, batch_size)


def _run_shard(texts: dict[str, list[Any]]) -> dict[str, list[Any]]:
    assert _WORKER is not None
    return _WORKER.answer(texts)


def _run_local(config: BatchConfig, columns: dict[str, str], shards: list[tuple[int, Any]],
               output: Path, progress: _Progress) -> None:
    import pyarrow as pa

    def texts(table: Any) -> dict[str, list[Any]]:
        return {c: table.column(c).to_pylist() for c in set(columns.values())}

    def write(index: int, table: Any, answers: dict[str, list[Any]]) -> None:
        for name, values in answers.items():
            table = table.append_column(name, pa.array(values))
        write_shard(table.drop_columns([c for c in set(columns.values()) if c not in config.keep]),
                    shard_path(output, index, config.output_format))
        progress.shard(index, table.num_rows)

    if config.workers == 1:
        worker = ShardWorker(config.artifact, columns, config.threads, config.batch_size)
        for index, table in shards:
            write(index, table, worker.answer(texts(table)))
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(config.workers, _init_worker,
                      (config.artifact, columns, config.threads, config.batch_size)) as pool:
        results = pool.imap(_run_shard, (texts(table) for _, table in shards))
        for (index, table), answers in zip(shards, results):
            write(index, table, answers)


def _run_ray(config: BatchConfig, columns: dict[str, str], shards: list[tuple[int, Any]],
             output: Path, progress: _Progress) -> None:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ServingError("--engine ray needs Ray Data: pip install 'encoderforge[ray]'") from exc
    import pyarrow as pa

    started = not ray.is_initialized()
    if started:
        ray.init(address=config.ray_address, num_cpus=None if config.ray_address else max(config.workers, 1),
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = config.progress
        tagged = [table.append_column(SHARD_COLUMN, pa.array([index] * table.num_rows, pa.int64()))
                  for index, table in shards]
        dataset = ray.data.from_arrow(tagged).map_batches(
            ShardWorker, fn_constructor_args=(config.artifact, columns, config.threads, config.batch_size),
            batch_size=config.batch_size * 4, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=max(config.workers, 1)), num_cpus=1,
        )
        drop = [c for c in set(columns.values()) if c not in config.keep] + [SHARD_COLUMN]
        pending: dict[int, list[Any]] = {}
        sizes = {index: table.num_rows for index, table in shards}
        batch: Any
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            for index in sorted(set(batch.column(SHARD_COLUMN).to_pylist())):
                mask = pa.compute.equal(batch.column(SHARD_COLUMN), index)
                pending.setdefault(index, []).append(batch.filter(mask))
                if sum(t.num_rows for t in pending[index]) == sizes[index]:
                    table = pa.concat_tables(pending.pop(index)).drop_columns(drop)
                    write_shard(table, shard_path(output, index, config.output_format))
                    progress.shard(index, table.num_rows)
        if pending:
            raise ServingError(f"Ray returned incomplete shards {sorted(pending)}; rerun to resume them")
    finally:
        if started:
            ray.shutdown()


def iter_shards(table: Any, shard_rows: int) -> Iterator[tuple[int, Any]]:
    for index, start in enumerate(range(0, table.num_rows, shard_rows)):
        yield index, table.slice(start, shard_rows)


def run_batch(config: BatchConfig) -> BatchReport:
    """Answer every row of the corpus; shards already written are kept and skipped."""
    from encoderforge.artifact import Artifact

    if config.shard_rows < 1 or config.workers < 1 or config.batch_size < 1:
        raise ServingError("--shard-rows, --workers and --batch-size must be >= 1")
    if config.engine not in ("local", "ray"):
        raise ServingError(f"unknown engine {config.engine!r}; choose local or ray")
    io = task_io(Artifact.load(config.artifact).task)
    columns = _input_columns(config, io)
    started = time.perf_counter()
    table = read_corpus(Path(config.input), list(dict.fromkeys([*columns.values(), *config.keep])))
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise ServingError(f"output {str(output)!r} is a file; batch writes a directory of shards there")
    output.mkdir(parents=True, exist_ok=True)
    shards = list(iter_shards(table, config.shard_rows))
    todo = [(i, t) for i, t in shards if not shard_path(output, i, config.output_format).is_file()]
    progress = _Progress(sum(t.num_rows for _, t in todo), config.progress)
    if todo:
        runner = _run_ray if config.engine == "ray" else _run_local
        runner(config, columns, todo, output, progress)
    return BatchReport(rows=table.num_rows, shards=len(shards), skipped=len(shards) - len(todo),
                       seconds=time.perf_counter() - started, output=output)


def read_output(output: str | Path) -> Any:
    """All shards of a batch output, in input order, as one pyarrow Table."""
    pa = _require_pyarrow()
    parts = sorted(Path(output).glob("part-*.*"))
    if not parts:
        raise ServingError(f"{str(output)!r} holds no part-*.parquet / part-*.jsonl shards")
    if parts[0].suffix == ".parquet":
        import pyarrow.parquet as pq

        return pa.concat_tables([pq.read_table(p) for p in parts])
    import pyarrow.json as paj

    return pa.concat_tables([paj.read_json(p) for p in parts])
