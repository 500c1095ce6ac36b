"""The `selection` section: what `optimize --precision auto` measured on the machine it ran on, and its choice.

    selection.backend / precision / options   what load() runs the graph with (e.g. openvino, bf16)
    selection.cpu_features                    the flags the choice relies on (any one suffices at load time)
    selection.candidates                      every (engine, precision) tried: p50 per shape, fidelity, why not

A candidate's `rejected` is None for the choice and a one-line reason for every other one (too slow, over the
accuracy bound, engine not installed, CPU lacking the instructions, failed to build or compile).
"""

from __future__ import annotations

from dataclasses import dataclass

from encoderforge.manifest.reader import Reader
from encoderforge.manifest.sections import Section

OptionValue = str | int | float | bool | tuple[int, ...]  # a backend option auto recorded (static_sequences: lengths)
Options = tuple[tuple[str, OptionValue], ...]  # sorted by name


def _options(r: Reader) -> Options:
    raw = r.obj("options")
    out: list[tuple[str, OptionValue]] = []
    for name, value in raw.items():
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = tuple(value)
        elif not isinstance(value, (str, int, float, bool)):
            r.fail("options", "an object of backend options (scalars or lists of ints)", raw)
        out.append((str(name), value))
    return tuple(sorted(out))


def _options_json(options: Options) -> dict[str, object]:
    return {name: list(value) if isinstance(value, tuple) else value for name, value in options}


@dataclass(frozen=True)
class LatencyPoint(Section):
    batch_size: int
    sequence_length: int
    p50_ms: float

    @classmethod
    def read(cls, r: Reader) -> LatencyPoint:
        p50 = r.opt_float("p50_ms")
        if p50 is None:
            r.fail("p50_ms", "a number", None)
        return cls(r.integer("batch_size"), r.integer("sequence_length"), p50)

    def to_json(self) -> dict[str, object]:
        return {"batch_size": self.batch_size, "sequence_length": self.sequence_length, "p50_ms": self.p50_ms}


@dataclass(frozen=True, kw_only=True)
class Candidate(Section):
    """One (engine, precision) that auto built and measured (or could not)."""

    backend: str  # onnxruntime-cpu | openvino
    precision: str  # what it computes in: fp32 | bf16 | int8-dynamic | int8-static
    graph: str  # the graph it ran: fused | standard | int8-dynamic | int8-static | int8-static-nncf
    options: Options = ()  # backend options it ran with (openvino: precision, static_sequences)
    latency: tuple[LatencyPoint, ...] = ()
    score_ms: float | None = None  # geometric mean of the p50s: what the choice minimises
    accuracy_drop: float | None = None  # 1 - task agreement vs the fp32 source (fidelity.py)
    min_cosine: float | None = None
    median_sqnr_db: float | None = None
    rejected: str | None = None  # None: the choice

    @classmethod
    def read(cls, r: Reader) -> Candidate:
        return cls(backend=r.string("backend"), precision=r.string("precision"), graph=r.string("graph"),
                   options=_options(r), latency=r.records("latency", LatencyPoint.read, "a list of {batch_size, sequence_length, p50_ms}"),
                   score_ms=r.opt_float("score_ms"), accuracy_drop=r.opt_float("accuracy_drop"),
                   min_cosine=r.opt_float("min_cosine"), median_sqnr_db=r.opt_float("median_sqnr_db"),
                   rejected=r.opt_string("rejected"))

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "precision": self.precision, "graph": self.graph,
                "options": _options_json(self.options), "latency": [p.to_json() for p in self.latency], "score_ms": self.score_ms,
                "accuracy_drop": self.accuracy_drop, "min_cosine": self.min_cosine,
                "median_sqnr_db": self.median_sqnr_db, "rejected": self.rejected}

    @property
    def static_shapes(self) -> bool:
        """Compiled per sequence-length bucket (requests padded up to the next bucket)."""
        return bool(dict(self.options).get("static_sequences"))

    @property
    def variants(self) -> tuple[str, ...]:
        """What sets it apart from the plain (backend, precision): NNCF's graph, static shapes."""
        return (*(("nncf",) if self.graph.endswith("-nncf") else ()), *(("static shapes",) if self.static_shapes else ()))

    @property
    def label(self) -> str:
        """e.g. "openvino int8-static, nncf": how reports name it."""
        return ", ".join((f"{self.backend} {self.precision}", *self.variants))

    def p50(self, batch_size: int, sequence_length: int | None = None) -> float | None:
        """The p50 at this batch size (and sequence length; None: the first measured)."""
        return next((p.p50_ms for p in self.latency if p.batch_size == batch_size
                     and sequence_length in (None, p.sequence_length)), None)


@dataclass(frozen=True, kw_only=True)
class Selection(Section):
    backend: str
    precision: str
    options: Options  # backend options load() passes
    cpu_model: str
    cpu_kind: str
    cpu_features: tuple[str, ...]  # flags the choice needs, any one of them (empty: none)
    max_accuracy_drop: float
    candidates: tuple[Candidate, ...]

    @classmethod
    def read(cls, r: Reader) -> Selection:
        bound = r.opt_float("max_accuracy_drop")
        if bound is None:
            r.fail("max_accuracy_drop", "a number", None)
        return cls(backend=r.string("backend"), precision=r.string("precision"),
                   options=_options(r),
                   cpu_model=r.string("cpu_model"), cpu_kind=r.string("cpu_kind"),
                   cpu_features=r.strs("cpu_features"), max_accuracy_drop=bound,
                   candidates=r.records("candidates", Candidate.read, "a list of candidates", required=True))

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "precision": self.precision, "options": _options_json(self.options),
                "cpu_model": self.cpu_model, "cpu_kind": self.cpu_kind, "cpu_features": list(self.cpu_features),
                "max_accuracy_drop": self.max_accuracy_drop, "candidates": [c.to_json() for c in self.candidates]}

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.rejected is None), None)
