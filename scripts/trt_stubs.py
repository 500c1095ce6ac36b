"""Copy tensorrt-stubs' .pyi files into a directory mypy can use (MYPYPATH), patching what does not parse.

    python scripts/trt_stubs.py build/trt-stubs   ->  build/trt-stubs/{tensorrt,tensorrt_bindings}/*.pyi
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

# (pattern, replacement): a parameter named `in` (a keyword), and a required parameter after defaults.
FIXES = (
    (re.compile(r"\(self(: \w+)?, in: "), r"(self\1, in_: "),
    (re.compile(r"(power: Weights = None, channel_axis: int)\)"), r"\1 = ...)"),
)


def main(target: str) -> int:
    try:
        stub_files = [f for f in files("tensorrt-stubs") or [] if str(f).endswith(".pyi")]
    except PackageNotFoundError:
        print("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs", file=sys.stderr)
        return 1
    out = Path(target)
    shutil.rmtree(out, ignore_errors=True)
    for item in stub_files:
        text = Path(str(item.locate())).read_text(encoding="utf-8")
        for pattern, replacement in FIXES:
            text = pattern.sub(replacement, text)
        dest = out / str(item)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    print(f"{len(stub_files)} stub files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/trt-stubs"))
