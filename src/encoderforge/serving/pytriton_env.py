"""What PyTriton needs from this interpreter, set up for the user.

- libpython: PyTriton's Python backend stub links against libpython3.X.so and must load the one of this
  interpreter. A pyenv Python's lives in <sys.base_prefix>/lib, which the loader does not search, so the stub
  would pick up a system libpython of another patch release and fail to load the model ("'_thread.RLock' object
  has no attribute '_recursion_count'"). `prepare_environment()` puts the right directory first on
  LD_LIBRARY_PATH of the server process, or says clearly why it cannot.
- numpy: the stub is built against numpy 1.x (nvidia-pytriton requires numpy<2); under numpy 2 it misreads every
  BYTES tensor ("unpack_from requires a buffer of at least ..."). When this interpreter has numpy 2, the stubs run
  in a small side environment (`stub_environment()`): numpy<2 first, then this environment's packages.
- per-request errors: PyTriton fails a whole dynamic batch when its callable raises; `install_request_errors()`
  lets one request of a batch fail alone with 400 (INVALID_ARG) and its message.
"""

from __future__ import annotations

import logging
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from encoderforge.serving.tasks import ServingError

log = logging.getLogger(__name__)

ERROR_KEY = "__encoderforge_error__"


def require_pytriton() -> None:
    try:
        import pytriton  # noqa: F401
    except ImportError as exc:
        raise ServingError("serving needs PyTriton: pip install 'encoderforge[serve]'") from exc


def libpython_dir() -> Path:
    """The directory holding this interpreter's shared libpython3.X.so."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    names = (f"libpython{version}.so.1.0", f"libpython{version}.so")
    candidates = [sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")]
    for directory in candidates:
        if directory and any(os.path.isfile(os.path.join(directory, name)) for name in names):
            return Path(directory)
    raise ServingError(
        f"libpython{version}.so of {sys.executable} (prefix {sys.base_prefix}) was not found in "
        f"{[c for c in candidates if c]}; PyTriton's Python backend needs the shared library of this interpreter. "
        "Rebuild Python with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install "
        f"{sys.version.split()[0]}) or use a distribution Python"
    )


def prepare_environment() -> Path:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH, which the server and its stubs inherit."""
    directory = libpython_dir()
    parts = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if not parts or parts[0] != str(directory):
        os.environ["LD_LIBRARY_PATH"] = ":".join([str(directory), *[p for p in parts if p != str(directory)]])
    return directory


def stub_environment() -> Path | None:
    """None when this interpreter's numpy is 1.x; else a venv (cached under ~/.cache/encoderforge, or
    $ENCODERFORGE_STUB_ENV) holding numpy<2 and importing this environment's site-packages after it."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    default = Path.home() / ".cache" / "encoderforge" / f"pytriton-stub-env-py{version}"
    root = Path(os.environ.get("ENCODERFORGE_STUB_ENV") or default)
    packages = root / "lib" / f"python{version}" / "site-packages"
    ready = root / ".encoderforge-ready"
    sites = [p for p in site.getsitepackages() if os.path.isdir(p)]
    pth = "".join(f"import site; site.addsitedir({p!r})\n" for p in sites)
    if ready.is_file() and ready.read_text(encoding="utf-8") == pth:
        return root
    log.warning("numpy %s is installed; building a numpy<2 environment for PyTriton's stubs in %s",
                numpy.__version__, root)
    steps = [[sys.executable, "-m", "venv", "--without-pip", "--clear", str(root)],
             [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--target", str(packages), "numpy>=1.21,<2"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServingError(
                f"cannot build the numpy<2 environment for PyTriton's stubs ({' '.join(step[:4])}...: "
                f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}); install numpy<2 "
                "(pip install 'numpy<2') or set ENCODERFORGE_STUB_ENV to a venv that has it"
            )
    (packages / "_encoderforge_parent.pth").write_text(pth, encoding="utf-8")
    ready.write_text(pth, encoding="utf-8")
    return root


def use_stub_environment(root: Path | None) -> None:
    """PyTriton runs the stubs with the first `python3` on PATH of the server: point that at `root`."""
    from pytriton.server import triton_server

    if root is not None:
        triton_server.get_triton_python_backend_python_env = lambda: root


_WRAP = "def _wrap_response(response: Response, requested_outputs_names, model_outputs_dict):\n"
_WRAP_PATCHED = _WRAP + f"""    if response.data is not None and "{ERROR_KEY}" in response.data:
        _message = response.data["{ERROR_KEY}"].reshape(-1)[0]
        _message = _message.decode("utf-8", "replace") if isinstance(_message, bytes) else str(_message)
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(_message, pb_utils.TritonError.INVALID_ARG)
        )
"""


def install_request_errors() -> None:
    """Let one request of a batch fail alone: the proxy model that PyTriton ships to Triton answers a response
    carrying ERROR_KEY with an INVALID_ARG error (HTTP 400) instead of outputs."""
    from pytriton.models import model as pytriton_model

    original = pytriton_model.Model.get_proxy_model_files
    if getattr(original, "_encoderforge", False):
        return

    def get_proxy_model_files(self: Any) -> dict[str, bytes]:
        files: dict[str, bytes] = original(self)
        for key, content in files.items():
            if key.endswith("/model.py"):
                source = content.decode("utf-8")
                if _WRAP not in source:
                    raise ServingError("this nvidia-pytriton's proxy model has no _wrap_response to extend; "
                                       "install the tested release: pip install 'nvidia-pytriton>=0.7,<0.8'")
                files[key] = source.replace(_WRAP, _WRAP_PATCHED, 1).encode("utf-8")
        return files

    get_proxy_model_files._encoderforge = True  # type: ignore[attr-defined]
    pytriton_model.Model.get_proxy_model_files = get_proxy_model_files
