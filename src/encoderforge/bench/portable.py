"""Results that can be committed: no absolute path of the machine they ran on.

`portable(result)` rewrites every string that is an absolute path: relative to the repository (or working
directory) when under it, ``<site-packages>/...`` for installed packages, ``<tmp>/...`` for temporary files,
``~/...`` under the home directory, else ``<abs>/<last two parts>``. Every writer of committed results
(results.json, the markdown beside it) passes through it; tests/test_committed_results.py scans what is
committed.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

# An absolute POSIX path inside a larger text: a slash after a quote, a space or the line start.
ABSOLUTE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s\"'(=:]))/(?:[\w.+@-]+/)+[\w.+@-]*", re.MULTILINE)


def _portable_path(text: str, root: Path) -> str:
    path = Path(text)
    parts = path.parts
    if "site-packages" in parts:
        return "<site-packages>/" + "/".join(parts[parts.index("site-packages") + 1:])
    for base, label in ((root.resolve(), ""), (Path(tempfile.gettempdir()).resolve(), "<tmp>/"),
                        (Path.home().resolve(), "~/")):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return label + (rel.as_posix() if str(rel) != "." else ".")
    return "<abs>/" + "/".join(parts[-2:])


def portable_text(text: str, root: Path | None = None) -> str:
    base = Path(root) if root is not None else Path(os.getcwd())
    return ABSOLUTE_PATH.sub(lambda m: _portable_path(m.group(0), base), text)


def portable(value: Any, root: Path | None = None) -> Any:
    """A copy of a JSON-like `value` with every absolute path in its strings made portable."""
    if isinstance(value, str):
        return portable_text(value, root)
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root) for v in value]
    return value
