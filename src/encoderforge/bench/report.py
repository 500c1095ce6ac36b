"""Report writers: the console table, results.json, results.md and PNG plots (matplotlib, optional extra).

results.json holds everything: settings, the environment fingerprint, every engine (load time, peak memory,
first call, skip reason, fidelity against the fp32 reference), every point's timing, the speedup of each of
our engines over each peer, and over the fastest peer whose fidelity qualifies (qualify.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from statistics import median
from typing import Any

from encoderforge.bench.portable import portable

NOISE = ("Shared machine: absolute times drift with other load; compare engines by the ratios, which were "
         "measured in the same run with the engines interleaved (point by point, and round by round within a point).")


def _engine_map(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["group"], e["name"]): e for e in result["engines"]}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


_HEADER = ("group", "engine", "mode", "batch", "seq", "p50 ms", "p90 ms", "p99 ms", "seq/s", "tok/s", "us/tok",
           "peak MB", "load s", "first ms")


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    engines = _engine_map(result)
    rows: list[tuple[str, ...]] = []
    for r in sorted((r for r in result["results"] if "timing" in r),
                    key=lambda r: (r["group"], r["mode"], r["batch_size"], r["seq_len"], r["engine"])):
        t, e = r["timing"], engines.get((r["group"], r["engine"]), {})
        rows.append((str(r["group"]), str(r["engine"]), str(r["mode"]), str(r["batch_size"]), str(r["seq_len"]), _fmt(t["p50_ms"]),
                     _fmt(t["p90_ms"]), _fmt(t["p99_ms"]), _fmt(t["seq_per_s"], 1), _fmt(t["tokens_per_s"], 0),
                     _fmt(t["per_token_us"], 1), _fmt(e.get("peak_rss_mb"), 0), _fmt(e.get("load_s")),
                     _fmt(t["first_call_ms"], 1)))
    return rows


def ratio_summary(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """(group, engine, peer, mode, median speedup, min, max, points) over the sweep."""
    buckets: dict[tuple[str, str, str, str], list[float]] = {}
    for r in result["ratios"]:
        buckets.setdefault((r["group"], r["engine"], r["peer"], r["mode"]), []).append(r["speedup"])
    return [(g, e, p, m, f"{median(v):.2f}x", f"{min(v):.2f}x", f"{max(v):.2f}x", str(len(v)))
            for (g, e, p, m), v in sorted(buckets.items())]


def _text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    body = ["  ".join(c.rjust(w) if i > 4 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join([line, "-" * len(line), *body])


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


_RATIO_HEADER = ("group", "engine", "vs peer", "mode", "median speedup", "min", "max", "points")
_FIDELITY_HEADER = ("group", "engine", "role", "reference", "min cosine", "median SQNR dB", "max abs diff",
                    "argmax agree", "qualifies")
_QUALIFYING_HEADER = ("group", "engine", "mode", "batch", "seq", "fastest qualifying peer", "peer p50 ms",
                      "ours p50 ms", "speedup", "ours qualifies")


def fidelity_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for e in result["engines"]:
        f = e.get("fidelity")
        if not f:
            continue
        if "skipped" in f:
            rows.append((str(e["group"]), str(e["name"]), str(e["role"]), f"not measured: {f['skipped']}",
                         "-", "-", "-", "-", "-"))
            continue
        none = "-inf" if f.get("nonfinite") else "inf"  # JSON has no infinity: None with or without non-finite outputs
        sqnr = none if f["median_sqnr_db"] is None else _fmt(float(f["median_sqnr_db"]), 1)
        rows.append((str(e["group"]), str(e["name"]), str(e["role"]), str(f["reference"]),
                     _fmt(float(f["min_cosine"]), 5), sqnr, _fmt(f["max_abs_diff"], 4),
                     _fmt(f.get("argmax_agreement"), 3), _yes_no(f["qualifies"])))
    return rows


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "NO"


def qualifying_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    ours = {(e["group"], e["name"]): (e.get("fidelity") or {}).get("qualifies") for e in result["engines"]}
    return [(str(r["group"]), str(r["engine"]), str(r["mode"]), str(r["batch_size"]), str(r["seq_len"]),
             str(r["peer"]), _fmt(r["peer_p50_ms"]), _fmt(r["p50_ms"]), f"{r['speedup']:.2f}x",
             _yes_no(ours.get((r["group"], r["engine"]))))
            for r in sorted(result.get("fastest_qualifying", []),
                            key=lambda r: (r["group"], r["engine"], r["mode"], r["batch_size"], r["seq_len"]))]


def _bound(result: dict[str, Any]) -> str:
    bound = result["settings"].get("fidelity", {}).get("bound", {})
    return (f"qualifying: min cosine >= {bound.get('min_cosine')} and median SQNR >= "
            f"{bound.get('median_sqnr_db')} dB against the fp32 reference")


def skipped_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{e['name']} ({e['group']}): {e['skipped']}" for e in result["engines"] if e.get("skipped")]
    seen = set()
    for r in result["results"]:
        if "skipped" in r and (r["engine"], r["mode"], r["skipped"]) not in seen:
            seen.add((r["engine"], r["mode"], r["skipped"]))
            lines.append(f"{r['engine']} {r['mode']} ({r['group']}): {r['skipped']}")
    return lines


def console(result: dict[str, Any]) -> str:
    parts = [_text_table(_HEADER, table_rows(result))]
    summary = ratio_summary(result)
    if summary:
        parts.append("speedup = peer p50 / ours p50 (>1: ours is faster)\n" + _text_table(_RATIO_HEADER, summary))
    fidelity = fidelity_rows(result)
    if fidelity:
        parts.append(f"fidelity ({_bound(result)})\n" + _text_table(_FIDELITY_HEADER, fidelity))
    qualifying = qualifying_rows(result)
    if qualifying:
        parts.append("speedup over the fastest qualifying peer\n" + _text_table(_QUALIFYING_HEADER, qualifying))
    skips = skipped_lines(result)
    if skips:
        parts.append("skipped:\n" + "\n".join(f"  {line}" for line in skips))
    return "\n\n".join(parts)


def _fingerprint_lines(result: dict[str, Any]) -> list[str]:
    fp = result["fingerprint"]
    cpu = fp["cpu"]
    versions = ", ".join(f"{k} {v}" for k, v in fp["versions"].items())
    lines = [(f"- CPU: {cpu['model']} ({cpu['usable_cores']} usable of {cpu['logical_cores']} logical cores; "
             f"{' '.join(cpu['isa'])})"), f"- GPU: {', '.join(fp['gpu']) or 'none'}",
             f"- threads: {fp['threads']}; memory {fp.get('memory_gb')} GB; {fp['os']}",
             f"- load average at the end: {fp.get('load_average')}", f"- versions: {versions}"]
    for name, ident in fp["artifacts"].items():
        lines.append(f"- artifact `{name}`: {ident['family']} {ident['task']} {ident['precision']}, "
                     f"model sha256 `{str(ident['model_sha256'])[:16]}…`")
    return lines


def _rounds(settings: dict[str, Any]) -> str:
    rounds = settings.get("rounds", 1)  # results from before rounds ran each engine's point in one block
    return f", in {rounds} rounds with the engines interleaved in each" if rounds > 1 else ""


def markdown(result: dict[str, Any], *, title: str = "encoderforge bench") -> str:
    s = result["settings"]
    engines: list[tuple[str, ...]] = [
        (str(e["group"]), str(e["name"]), str(e["role"]), str(e.get("description", "")), _fmt(e.get("load_s")),
         _fmt(e.get("peak_rss_mb"), 0), _fmt(e.get("first_call_ms"), 1), str(e.get("skipped") or ""))
        for e in result["engines"]]
    parts = [
        f"# {title}", "",
        (f"{result['created']}; batch sizes {s['batch_sizes']}, sequence lengths {s['seq_lens']}, modes "
        f"{s['modes']}; {s['warmup']} warm-up and up to {s['iters']} timed calls per point "
        f"(time budget {s['max_seconds']} s per point{_rounds(s)}); {s['threads']} threads."), "",
        f"> {NOISE}", "", "## Speedups", "", "speedup = peer p50 / ours p50 (> 1: encoderforge is faster).", "",
        _md_table(_RATIO_HEADER, ratio_summary(result)) if result["ratios"] else "(no peer measured)", "",
        "### Against the fastest qualifying peer", "",
        f"Per point, the fastest peer whose fidelity qualifies ({_bound(result)}).", "",
        _md_table(_QUALIFYING_HEADER, qualifying_rows(result)) if result.get("fastest_qualifying")
        else "(no qualifying peer measured)", "",
        "## Fidelity", "",
        (f"Model-only outputs on {s.get('fidelity', {}).get('samples')} batches of held-out text against the fp32 "
         "reference (encoderforge.fidelity.compare_outputs; min over the graph outputs)."), "",
        _md_table(_FIDELITY_HEADER, fidelity_rows(result)) if fidelity_rows(result) else "(not measured)", "",
        "## Engines", "",
        _md_table(("group", "engine", "role", "what", "load s", "peak MB", "first call ms", "skipped"), engines), "",
        "## Latency and throughput", "", _md_table(_HEADER, table_rows(result)), "",
        "## Environment", "", *_fingerprint_lines(result), "",
        "Peak MB: resident memory the engine kept after loading plus its largest transient peak during a call "
        "(process VmHWM, reset per engine" + ("" if s.get("memory_exact") else "; not resettable here, so an "
                                               "upper bound") + ").",
    ]
    return "\n".join(parts) + "\n"


def plots(result: dict[str, Any], directory: Path) -> list[Path]:
    """latency vs sequence length (per engine, one panel per mode, smallest batch size) and throughput vs
    batch size (per engine, one panel per mode, at the sequence length closest to 128), per group."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    timed = [r for r in result["results"] if "timing" in r]
    for group in sorted({r["group"] for r in timed}):
        rows = [r for r in timed if r["group"] == group]
        modes = [m for m in ("model", "e2e") if any(r["mode"] == m for r in rows)]
        batch = min(r["batch_size"] for r in rows)
        seq = min({r["seq_len"] for r in rows}, key=lambda v: (abs(v - 128), v))
        specs = [("latency", "seq_len", "sequence length (tokens)", "p50_ms", "p50 latency (ms)",
                  ("batch_size", batch), f"batch size {batch}"),
                 ("throughput", "batch_size", "batch size", "seq_per_s", "throughput (sequences/s)",
                  ("seq_len", seq), f"sequence length {seq}")]
        for kind, x_key, x_label, y_key, y_label, (fixed_key, fixed_value), fixed in specs:
            fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.4), squeeze=False)
            for ax, mode in zip(axes[0], modes):
                for engine in sorted({r["engine"] for r in rows}):
                    pts = sorted((r[x_key], r["timing"][y_key]) for r in rows
                                 if r["engine"] == engine and r["mode"] == mode and r[fixed_key] == fixed_value)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=engine)
                ax.set_title(f"{group}: {'model only' if mode == 'model' else 'end to end'}, {fixed}", fontsize=10)
                ax.set_xlabel(x_label)
                ax.set_ylabel(y_label)
                xs = sorted({r[x_key] for r in rows})
                if len(xs) > 1 and xs[-1] / max(xs[0], 1) >= 8:
                    ax.set_xscale("log", base=2)
                ax.set_xticks(xs)
                ax.set_xticklabels([str(x) for x in xs])
                if kind == "latency":
                    ax.set_yscale("log")
                ax.grid(True, which="both", alpha=0.3)
                ax.legend(fontsize=8)
            fig.suptitle(f"{kind} ({result['settings']['threads']} threads, {result['fingerprint']['cpu']['model']})",
                         fontsize=10)
            fig.tight_layout()
            path = directory / f"{group}-{kind}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def write_report(result: dict[str, Any], directory: Path, *, title: str = "encoderforge bench",
                 labels: Mapping[str, Path] | None = None) -> list[Path]:
    """results.json, results.md and plots; `labels` names folders for the paths in them (see portable.py)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    result = portable(result, labels=labels)  # committed results name no path of this machine
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(result, title=title), encoding="utf-8")
    return [json_path, md_path, *plots(result, directory)]
