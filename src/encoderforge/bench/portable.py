"""Results that can be committed: no absolute path of the machine they ran on.

`portable(result)` rewrites every string that is an absolute path: under a folder the writer names (`labels`,
e.g. ``<workdir>/...`` for a benchmark's work folder), relative to the repository (or working directory) when
under it, ``<site-packages>/...`` for installed packages, ``<tmp>/...`` for temporary files,
``~/...`` under the home directory, else ``<abs>/<last two parts>``. Every writer of committed results
(results.json, the markdown beside it) passes through it; tests/test_committed_results.py scans what is
committed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# An absolute POSIX path inside a larger text: a slash after a quote, a space or the line start.
ABSOLUTE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s\"'(=:]))/(?:[\w.+@-]+/)+[\w.+@-]*", re.MULTILINE)


def _portable_path(text: str, root: Path, labels: Mapping[str, Path]) -> str:
    path = Path(text)
    parts = path.parts
    if "site-packages" in parts:
        return "<site-packages>/" + "/".join(parts[parts.index("site-packages") + 1:])
    named = [(Path(base).resolve(), f"{label}/") for label, base in labels.items()]
    for base, label in (*named, (root.resolve(), ""), (Path(tempfile.gettempdir()).resolve(), "<tmp>/"),
                        (Path.home().resolve(), "~/")):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return label + (rel.as_posix() if str(rel) != "." else ".")
    return "<abs>/" + "/".join(parts[-2:])


def portable_text(text: str, root: Path | None = None, labels: Mapping[str, Path] | None = None) -> str:
    base = Path(root) if root is not None else Path(os.getcwd())
    return ABSOLUTE_PATH.sub(lambda m: _portable_path(m.group(0), base, labels or {}), text)


def portable(value: Any, root: Path | None = None, labels: Mapping[str, Path] | None = None) -> Any:
    """A copy of a JSON-like `value` with every absolute path in its strings made portable; `labels` maps a
    placeholder such as "<workdir>" to the folder it stands for."""
    if isinstance(value, str):
        return portable_text(value, root, labels)
    if isinstance(value, dict):
        return {k: portable(v, root, labels) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root, labels) for v in value]
    return value
