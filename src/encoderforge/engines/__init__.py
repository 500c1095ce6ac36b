"""TensorRT engines for an artifact: build, cache, validate, record in the manifest.

    build_engine(EngineConfig(artifact=Path("out/rb-qa-int8"), profiles="1x16,8x128,32x384",
                              timing_cache=Path("~/.cache/encoderforge/tc")))

1. the key: this GPU's name and compute capability, TensorRT's version, the graph's sha256, the build
   settings (cache.py); an engine with the same key already in the artifact is reused unless `force`
2. the build: strongly typed network from the graph, one profile per length bucket (profiles.py, builder.py)
3. validation against the graph on real text in every profile (validate.py)
4. the engine goes to `engines/trt-<digest>.plan`, its entry (key, profiles, validation) into the manifest's
   `engines` list; entries built from an older graph (stale) are dropped with their files, engines for other
   GPUs or TensorRT versions (foreign) stay for the machines they belong to.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from encoderforge.artifact import Artifact, write_manifest
from encoderforge.engines.builder import BuildSettings, build_serialized, write_atomic
from encoderforge.engines.cache import engine_entries, make_key, replace_entry
from encoderforge.engines.profiles import default_buckets, make_profiles, parse_buckets, profiles_as_manifest
from encoderforge.manifest import EngineEntry

log = logging.getLogger(__name__)

__all__ = ["BuildSettings", "EngineConfig", "EngineResult", "build_engine"]


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    artifact: Path
    profiles: str | None = None  # BATCHxSEQUENCE buckets, comma-separated; None: DEFAULT_PROFILES capped at
    # the model's max length
    settings: BuildSettings = field(default_factory=BuildSettings)
    force: bool = False  # rebuild even when an engine with the same key exists
    validate: bool = True
    min_cosine: float | None = None  # None: the floor for the graph's precision (validate.MIN_COSINE)
    device_id: int = 0


@dataclass(frozen=True)
class EngineResult:
    artifact: Artifact
    entry: EngineEntry
    cached: bool  # True: an engine with the same key was already there

    @property
    def path(self) -> Path:
        return self.artifact.path / self.entry.file


def graph_precision(artifact: Artifact) -> str:
    """fp32 | fp16 | int8, from the manifest's precision (int8-dynamic and int8-static are int8)."""
    return artifact.manifest.precision.numeric


def build_engine(config: EngineConfig) -> EngineResult:
    from encoderforge.runtime.backends.tensorrt import TrtSession, current_machine

    artifact = Artifact.load(config.artifact)
    buckets = default_buckets(artifact.max_length) if config.profiles is None else parse_buckets(config.profiles)
    profiles = make_profiles(buckets, max_length=artifact.max_length)
    spec = ",".join(str(p.bucket) for p in profiles)
    machine = current_machine(config.device_id)
    key = make_key(artifact, machine, profiles=spec, typing=config.settings.typing)
    existing = next((e for e in engine_entries(artifact) if e.file == key.file), None)
    if existing is not None and (artifact.path / key.file).is_file() and not config.force:
        log.info("engine %s is up to date for %s", key.file, machine.gpu)
        return EngineResult(artifact, existing, cached=True)

    precision = graph_precision(artifact)
    started = time.perf_counter()
    axes = artifact.manifest.input_axes()
    plan = build_serialized(artifact.model_path, axes, profiles, precision=precision, settings=config.settings)
    entry = EngineEntry(
        file=key.file, key={**asdict(key), "digest": key.digest}, profiles=tuple(profiles_as_manifest(profiles)),
        precision=precision, build_seconds=round(time.perf_counter() - started, 2), bytes=len(plan),
        timing_cache=None if config.settings.timing_cache is None else str(config.settings.timing_cache),
    )
    if config.validate:
        from encoderforge.engines.validate import validate_engine

        output_axes = artifact.manifest.output_axes()
        with TrtSession(plan, device_id=config.device_id, output_axes=output_axes, source=key.file) as session:
            entry = replace(entry, validation=validate_engine(artifact, session, profiles, precision=precision,
                                                              min_cosine=config.min_cosine))
    write_atomic(artifact.path / key.file, plan)
    return EngineResult(_record(artifact, entry), entry, cached=False)


def _record(artifact: Artifact, entry: EngineEntry) -> Artifact:
    """Add the entry to the manifest (dropping stale ones and their files) and rewrite the file table."""
    entries = replace_entry(engine_entries(artifact), entry)
    kept = {e.file for e in entries}
    for old in engine_entries(artifact):
        if old.file not in kept:
            log.info("removing stale engine %s", old.file)
            (artifact.path / old.file).unlink(missing_ok=True)
    write_manifest(artifact.path, replace(artifact.manifest, engines=tuple(entries)))
    return Artifact.load(artifact.path, verify=False)

