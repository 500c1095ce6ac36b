"""Fidelity in the bench, and the fastest qualifying peer of each point.

Every loaded engine's model-only outputs on one fixed set of feeds are compared with one fp32 reference per
group by `encoderforge.fidelity.compare_outputs`:

    feeds      `fidelity_feeds` of the group's first artifact: held-out corpus text (never the benchmark's
               timing inputs), `samples` batches of 2 texts of unequal length, so padding is exercised
    reference  the torch peer (PyTorch fp32 eager of the source checkpoint) when it is loaded, else the
               group's plain fp32 export on onnxruntime CPU

An engine qualifies with min cosine >= 0.995 and median SQNR >= 25 dB over the graph outputs (issue 12's bound
for peers). Speedups against "the fastest qualifying peer" take, per point, the fastest peer that qualifies,
so a fast peer whose outputs drifted is never the yardstick. An engine whose fidelity was not measured (run in
another interpreter, no model-only outputs) does not qualify; the optimum peers, run in their own interpreters,
send back their outputs on the same feeds, scored by `FidelityCheck.score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.engines import Engine, Feed, Group, Skip, plain_export

MIN_COSINE = 0.995
MIN_SQNR_DB = 25.0
FEED_BATCH = 2
Outputs = list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class Reference:
    name: str  # "torch" or the plain export on onnxruntime
    outputs: Outputs
    engine: Engine | None = None  # the engine that produced them, when it is one of the measured ones


def qualifies(min_cosine: float, median_sqnr_db: float) -> bool:
    return min_cosine >= MIN_COSINE and median_sqnr_db >= MIN_SQNR_DB


def _outputs(engine: Engine, feeds: Sequence[Feed], names: Sequence[str]) -> Outputs:
    out = []
    for feed in feeds:
        values = engine.outputs(feed)
        out.append({name: np.asarray(values[name]) for name in names if name in values})
    return out


def reference_for(group: Group, engines: Sequence[Engine], feeds: Sequence[Feed], *, workdir: Path) -> Reference:
    """The torch peer's outputs when it is loaded and gives every graph output, else the plain fp32 export's
    on onnxruntime; Skip naming what to pass when neither is available."""
    names = [spec.name for spec in group.artifacts[0].manifest.outputs]
    why = "the torch peer is not loaded"
    for engine in engines:
        if engine.name == "torch":
            try:
                return Reference("torch (PyTorch fp32 eager)", _outputs(engine, feeds, names), engine)
            except Skip as exc:
                why = f"torch: {exc}"
    plain = plain_export(group, workdir)
    if plain is None:
        raise Skip(f"no fp32 reference ({why}, and no plain export is at hand); pass --compare torch or "
                   "ort-baseline, or the plain fp32 export alongside")
    from encoderforge.fidelity import run_model

    return Reference(f"{plain.path.name} (plain fp32 export, onnxruntime)",
                     run_model(plain.model_path, feeds, output_names=names))


def measure(engine: Engine, reference: Reference, feeds: Sequence[Feed], *, pooling: str | None) -> dict[str, Any]:
    """The engine's fidelity record: metrics against the reference and whether it qualifies."""
    names = list(reference.outputs[0])
    candidate = reference.outputs if engine is reference.engine else _outputs(engine, feeds, names)
    return score(reference, candidate, feeds, pooling=pooling)


@dataclass(frozen=True)
class FidelityCheck:
    """A group's fidelity feeds and reference, kept for engines measured later (in other interpreters)."""

    reference: Reference
    feeds: list[Feed]
    pooling: str | None

    def score(self, candidate: Outputs) -> dict[str, Any]:
        return score(self.reference, candidate, self.feeds, pooling=self.pooling)


def score(reference: Reference, candidate: Outputs, feeds: Sequence[Feed], *, pooling: str | None) -> dict[str, Any]:
    """Outputs (one dict per feed) against the reference: the fidelity record."""
    from encoderforge.fidelity import compare_outputs

    report = compare_outputs(reference.outputs, candidate, feeds, pooling=pooling)
    sqnr = report.median_sqnr_db
    return {"reference": reference.name, "feeds": len(feeds), "min_cosine": round(report.min_cosine, 6),
            # JSON has no infinity: None is +inf (no noise at all), or -inf when `nonfinite` > 0
            "median_sqnr_db": round(sqnr, 2) if math.isfinite(sqnr) else None,
            "max_abs_diff": float(f"{report.max_abs_diff:.4g}") if math.isfinite(report.max_abs_diff) else None,
            "argmax_agreement": report.argmax_agreement,
            "nonfinite": sum(o.nonfinite for o in report.outputs.values()),
            "qualifies": report.finite and qualifies(report.min_cosine, sqnr)}


def measure_group(group: Group, engines: Sequence[Engine], records: dict[str, dict[str, Any]], *, samples: int,
                  workdir: Path) -> FidelityCheck | None:
    """Fill `fidelity` in the record of every engine of `group` (records keyed name@group key); the check, for
    engines measured later, or None without a reference."""
    from encoderforge.fidelity import fidelity_feeds, pooling_of

    feeds = fidelity_feeds(group.artifacts[0], count=samples, batch_size=FEED_BATCH)
    try:
        reference = reference_for(group, engines, feeds, workdir=workdir)
    except Skip as exc:
        for engine in engines:
            records[engine.record_key]["fidelity"] = {"skipped": str(exc), "qualifies": None}
        return None
    pooling = pooling_of(group.artifacts[0])
    for engine in engines:
        record = records[engine.record_key]
        try:
            record["fidelity"] = measure(engine, reference, feeds, pooling=pooling)
        except Skip as exc:
            record["fidelity"] = {"skipped": str(exc), "qualifies": None}
        except Exception as exc:  # noqa: BLE001 -- one engine's failure is its record, the others still count
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            record["fidelity"] = {"skipped": f"failed: {type(exc).__name__}: {first}", "qualifies": None}
    return FidelityCheck(reference, list(feeds), pooling)


def fastest_qualifying(results: list[dict[str, Any]], engines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point where one of ours ran: the fastest peer (lowest p50) whose fidelity qualifies, and the
    speedup over it (its p50 / ours, > 1: ours is faster). Points without a qualifying peer are left out."""
    meta = {(e["group"], e["name"]): e for e in engines}
    timed = [r for r in results if "timing" in r]
    out = []
    for ours in timed:
        record = meta.get((ours["group"], ours["engine"]), {})
        if record.get("role") != "ours":
            continue
        point = (ours["group"], ours["mode"], ours["batch_size"], ours["seq_len"])
        peers = [r for r in timed if (r["group"], r["mode"], r["batch_size"], r["seq_len"]) == point
                 and meta.get((r["group"], r["engine"]), {}).get("role") == "peer"
                 and (meta[(r["group"], r["engine"])].get("fidelity") or {}).get("qualifies") is True]
        if not peers:
            continue
        best = min(peers, key=lambda r: r["timing"]["p50_ms"])
        mine, theirs = ours["timing"]["p50_ms"], best["timing"]["p50_ms"]
        out.append({"engine": ours["engine"], "group": ours["group"], "mode": ours["mode"],
                    "batch_size": ours["batch_size"], "seq_len": ours["seq_len"], "peer": best["engine"],
                    "p50_ms": mine, "peer_p50_ms": theirs, "speedup": round(theirs / mine, 3),
                    "ours_qualifies": (record.get("fidelity") or {}).get("qualifies")})
    return out
