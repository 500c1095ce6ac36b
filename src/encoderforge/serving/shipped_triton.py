"""What the tritonserver binary shipped in the nvidia-pytriton wheel needs to run a Python-backend repository
(`repo.launch_tritonserver`, used to check `triton-repo --variant python` without a Triton install). Nothing
here installs anything: the environments are found, or the error says how to make them.

- libpython: the Python backend stub links against libpython3.X.so and must load this interpreter's one.
- numpy: the stub is built against numpy 1.x; under numpy 2 it misreads BYTES tensors, so the stubs then need
  an environment with numpy<2: $ENCODERFORGE_TRITON_STUB_ENV, else ~/.cache/encoderforge/pytriton-stub-env-pyX.Y
  if it exists. It gets a .pth file that imports this environment's packages after its own.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

from encoderforge.serving.tasks import ServingError


def libpython_dir() -> Path:
    """The directory holding this interpreter's shared libpython3.X.so."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    names = (f"libpython{version}.so.1.0", f"libpython{version}.so")
    candidates = [sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")]
    for directory in candidates:
        if directory and any(os.path.isfile(os.path.join(directory, name)) for name in names):
            return Path(directory)
    raise ServingError(
        f"libpython{version}.so of this interpreter was not found; Triton's Python backend needs the shared "
        "library: rebuild Python with --enable-shared or use a distribution Python"
    )


def stub_environment() -> Path | None:
    """None when this interpreter's numpy is 1.x; else an existing environment with numpy<2 for the stubs."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    default = Path.home() / ".cache" / "encoderforge" / f"pytriton-stub-env-py{version}"
    root = Path(os.environ.get("ENCODERFORGE_TRITON_STUB_ENV") or default)
    packages = root / "lib" / f"python{version}" / "site-packages"
    if not (packages / "numpy").is_dir():
        raise ServingError(
            f"numpy {numpy.__version__} is installed and Triton's Python stub needs numpy<2: make an environment "
            f"with it (python{version} -m venv DIR && DIR/bin/pip install 'numpy<2') and set "
            "ENCODERFORGE_TRITON_STUB_ENV=DIR"
        )
    sites = [p for p in site.getsitepackages() if os.path.isdir(p)]
    (packages / "_encoderforge_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in sites), encoding="utf-8")
    return root
