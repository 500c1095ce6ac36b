"""The regression check: is one of our engines slower than in a baseline result, beyond a threshold?

Absolute times on shared machines drift by tens of percent, so a slowdown is judged by the ratio of our
time to a peer measured in the same run (ort-baseline first, then torch, then any other) against the same
ratio in the baseline. Only where no peer ran in both does it fall back to absolute p50, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encoderforge.errors import InputError

_PREFERRED = ("ort-baseline-int8", "ort-baseline-fp32", "torch", "optimum-int8", "optimum-fp32",
              "sentence-transformers")


def load_result(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"baseline {str(path)!r} does not exist; pass a results.json written by "
                         "`encoderforge bench --report DIR`") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"baseline {str(path)!r} is not valid JSON ({exc}); pass a results.json from "
                         "`encoderforge bench --report DIR`") from exc
    if not str(data.get("schema", "")).startswith("encoderforge-bench/"):
        raise InputError(f"baseline {str(path)!r} is not an encoderforge bench result (no 'schema' field); "
                         "pass a results.json from `encoderforge bench --report DIR`")
    return data


Key = tuple[str, str, str, int, int]  # group, engine, mode, batch size, sequence length


def _p50s(result: dict[str, Any]) -> dict[Key, float]:
    return {(r["group"], r["engine"], r["mode"], r["batch_size"], r["seq_len"]): float(r["timing"]["p50_ms"])
            for r in result["results"] if "timing" in r}


def _roles(result: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["role"] for e in result["engines"]}


def check_regression(current: dict[str, Any], baseline: dict[str, Any], *, threshold: float) -> dict[str, Any]:
    """Compare every (our engine, mode, batch, length) present in both runs; flag relative slowdowns above
    `threshold` (0.1 = 10 %)."""
    if threshold <= 0:
        raise InputError(f"--threshold {threshold} must be positive, e.g. 0.1 for 10 %")
    now, before = _p50s(current), _p50s(baseline)
    roles_now, roles_before = _roles(current), _roles(baseline)
    peers = [p for p in _PREFERRED if roles_now.get(p) == "peer" and roles_before.get(p) == "peer"]
    peers += sorted(p for p, r in roles_now.items() if r == "peer" and roles_before.get(p) == "peer" and p not in peers)
    checks = []
    for (group, engine, mode, b, s), ours in sorted(now.items()):
        if roles_now.get(engine) != "ours" or (group, engine, mode, b, s) not in before:
            continue
        old = before[(group, engine, mode, b, s)]
        peer = next((p for p in peers if (group, p, mode, b, s) in now and (group, p, mode, b, s) in before), None)
        if peer is not None:
            change = (ours / now[(group, peer, mode, b, s)]) / (old / before[(group, peer, mode, b, s)]) - 1
            basis = f"ratio to {peer}"
        else:
            change, basis = ours / old - 1, "absolute p50 (no common peer; noisy on shared machines)"
        checks.append({"group": group, "engine": engine, "mode": mode, "batch_size": b, "seq_len": s, "basis": basis,
                       "p50_ms": round(ours, 3), "baseline_p50_ms": round(old, 3), "change": round(change, 4),
                       "regressed": change > threshold})
    return {"threshold": threshold, "checks": checks, "regressed": [c for c in checks if c["regressed"]],
            "compared": len(checks)}


def regression_lines(report: dict[str, Any]) -> list[str]:
    if not report["compared"]:
        return ["regression check: no (engine, mode, batch, length) in common with the baseline"]
    lines = [(f"regression check against baseline (threshold {report['threshold']:.0%}): "
             f"{len(report['regressed'])} of {report['compared']} points slower")]
    for c in report["checks"]:
        mark = "REGRESSION" if c["regressed"] else "ok"
        lines.append(f"  {mark:10} {c['engine']} {c['mode']} b{c['batch_size']} s{c['seq_len']}: "
                     f"{c['change']:+.1%} ({c['basis']})")
    return lines
