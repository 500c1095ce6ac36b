"""The artifact: one directory per exported model, the contract between exporters, passes and runtime.

    model.onnx (+ model.onnx.data)   the graph (external data above ~1.8 GB)
    tokenizer.json (+ configs)       what the runtime tokenizes with
    config.json                      the source model's config (labels, problem_type)
    manifest.json                    schema version, family, task, graph inputs/outputs, feeds, tokenizer
                                     settings, precision, passes, validation report, versions, sha256 of files

Written atomically (a staging directory renamed into place) and readable without torch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from encoderforge.errors import ArtifactError

try:
    import fcntl
except ImportError:  # not POSIX: an exclusively created lock file instead (a killed run's must be removed by hand)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_REQUIRED = ("schema_version", "family", "task", "inputs", "outputs", "feeds", "files", "tokenizer", "model_file")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in the artifact except the manifest itself."""
    table = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        table[path.relative_to(directory).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = {"schema_version": SCHEMA_VERSION, **manifest, "files": file_table(directory)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return manifest


def _os_error(exc: OSError, where: Path) -> ArtifactError:
    if exc.errno == errno.ENOSPC:
        fix = "free disk space or choose another --output"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose an --output you can write to"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        fix = "a part of the path is a file, not a directory; choose another --output"
    else:
        fix = "check the --output path"
    return ArtifactError(f"cannot write artifact at {str(where)!r}: {exc.strerror or exc}; {fix}")


def make_parent(output: Path) -> None:
    """Create `output`'s parent directory; an OSError becomes one ArtifactError naming the fix."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, output) from exc


class Terminated(SystemExit):
    """SIGTERM while an artifact is being written: unwinds like Ctrl-C so staging files are removed."""


@contextmanager
def terminating_cleanly() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` (exit status 143) while the block runs, so `finally` blocks and
    context managers clean up; only from the main thread and when no handler is installed already."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_HELD = threading.local()  # paths whose output lock this thread holds, with their depth


def _leftover(name: str, entry: str) -> bool:
    return re.fullmatch(rf"\.{re.escape(name)}\.(partial|old|fp32)-[A-Za-z0-9_]+", entry) is not None


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold `.<name>.lock` next to `output` (re-entrant in one thread): a second writer of the same output,
    in this process or another, is refused at once. On first acquisition, staging directories left by a
    killed earlier run (`.<name>.partial-*`, `.old-*`, `.fp32-*`) are removed: while the lock is free, no
    live writer owns them."""
    output = Path(output).expanduser().absolute()
    held: dict[Path, int] = _HELD.__dict__.setdefault("paths", {})
    if held.get(output, 0) > 0:
        held[output] += 1
        try:
            yield
        finally:
            held[output] -= 1
        return
    make_parent(output)
    lock = output.parent / f".{output.name}.lock"
    handle = _acquire(lock, output)
    held[output] = 1
    try:
        for entry in os.listdir(output.parent):
            if _leftover(output.name, entry):
                log.info("removing %s, left by an interrupted run", output.parent / entry)
                shutil.rmtree(output.parent / entry, ignore_errors=True)
        yield
    finally:
        held.pop(output, None)
        with suppress(OSError):
            lock.unlink()
        os.close(handle)


def _acquire(lock: Path, output: Path) -> int:
    busy = ArtifactError(
        f"another encoderforge process is writing {str(output)!r} (lock {lock.name} is held); wait for it to "
        "finish or choose another --output"
    )
    for _ in range(10):
        try:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0), 0o644)
        except FileExistsError:
            raise busy from None
        except OSError as exc:
            raise _os_error(exc, output) from exc
        if fcntl is None:
            return handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            raise busy from None
        try:  # the holder before us may have unlinked the file we opened: lock the one on disk
            if os.stat(lock).st_ino == os.fstat(handle).st_ino:
                os.write(handle, f"{os.getpid()}\n".encode())
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)
    raise busy


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_modes(directory: Path) -> None:
    """Give the tree the modes a plain `mkdir` / `open` would (0755 / 0644 under umask 022), not the
    owner-only 0700 / 0600 of temporary files, so the account that serves an artifact can read it."""
    mask = _umask()
    os.chmod(directory, 0o777 & ~mask)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextmanager
def staging(output: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory next to `output`; on success rename it to `output`, on any error
    (SIGTERM included) remove it, so a failed run leaves nothing behind. An existing `output` is refused
    unless `force`; while staging, `.<name>.lock` keeps other writers out, and an `output` that appeared
    (or was replaced) meanwhile is never replaced: the run fails and leaves it untouched."""
    output = Path(output).expanduser().absolute()
    if output.exists() and not force:
        raise ArtifactError(f"output {str(output)!r} already exists; pass --force to replace it or choose another path")
    if output.exists() and not output.is_dir():
        raise ArtifactError(f"output {str(output)!r} is a file, not a directory; choose another path")
    with terminating_cleanly(), output_lock(output):
        before = _identity(output)
        if before is not None and not force:
            raise ArtifactError(f"output {str(output)!r} already exists; pass --force to replace it or choose "
                                "another path")
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
        except OSError as exc:
            raise _os_error(exc, output) from exc
        try:
            yield stage
            publish_modes(stage)
            now = _identity(output)
            if now is not None and now != before:
                raise ArtifactError(
                    f"output {str(output)!r} was created or replaced by someone else while this run wrote it; "
                    "it is left untouched and nothing was written: remove it or choose another --output, then rerun"
                )
            if now is not None:
                old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
                os.replace(output, old / "artifact")
                os.replace(stage, output)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(stage, output)
        except OSError as exc:
            shutil.rmtree(stage, ignore_errors=True)
            raise _os_error(exc, output) from exc
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


def _bad(manifest_path: Path, field: str, what: str) -> ArtifactError:
    return ArtifactError(f"{manifest_path}: field {field!r} {what}; re-export the artifact")


def _check_manifest(manifest_path: Path, manifest: Any) -> None:
    """The fields every reader relies on, with their types: one ArtifactError naming the first bad field.
    (The smallest check that turns malformed manifests into one-line errors; a typed Manifest replaces it.)"""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} holds {type(manifest).__name__}, not a JSON object; re-export the "
                            "artifact")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_path} lacks {', '.join(missing)}; re-export the artifact")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(
            f"{manifest_path} has schema version {manifest['schema_version']!r}, this encoderforge reads "
            f"{SCHEMA_VERSION}; re-export the artifact or install the matching encoderforge"
        )
    for key in ("family", "task", "model_file"):
        if not isinstance(manifest[key], str):
            raise _bad(manifest_path, key, f"is {manifest[key]!r}, not a string")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise _bad(manifest_path, "files", f"is a {type(files).__name__}, not an object of name -> sha256 and bytes")
    for name, entry in files.items():
        if not isinstance(entry, dict):
            raise _bad(manifest_path, f"files.{name}", f"is {entry!r:.40}, not an object with sha256 and bytes")
        for key, kind in (("sha256", str), ("bytes", int)):
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise _bad(manifest_path, f"files.{name}.{key}", f"is {entry.get(key)!r:.40}, not a {kind.__name__}")
    tokenizer = manifest["tokenizer"]
    if not isinstance(tokenizer, dict):
        raise _bad(manifest_path, "tokenizer", f"is {tokenizer!r:.40}, not an object")
    if not isinstance(tokenizer.get("file"), str):
        raise _bad(manifest_path, "tokenizer.file", f"is {tokenizer.get('file')!r:.40}, not a file name")
    length = tokenizer.get("max_length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise _bad(manifest_path, "tokenizer.max_length", f"is {length!r:.40}, not a positive int")
    for key in ("inputs", "outputs"):
        specs = manifest[key]
        if not isinstance(specs, list) or not all(
                isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("axes"), list) for v in specs):
            raise _bad(manifest_path, key, f"is {specs!r:.60}, not a list of {{name, dtype, axes}}")
    feeds = manifest["feeds"]
    if not isinstance(feeds, dict) or not all(isinstance(v, str) for v in feeds.values()):
        raise _bad(manifest_path, "feeds", f"is {feeds!r:.60}, not an object of graph input -> encoding field")


def _inside(root: Path, name: Any, field: str) -> Path:
    """`root / name` when `name` is a relative path that stays inside `root` (symlinks resolved); else an
    ArtifactError that says nothing about what lies outside."""
    bad = ArtifactError(f"{root / MANIFEST}: field {field!r} names {name!r:.80}, which is not a file inside the "
                        "artifact (absolute paths, '..' and links leading out are refused); re-export the artifact")
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise bad
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or ".." in parts:
        raise bad
    base = root.resolve()
    target = (base / name).resolve()
    if target == base or base not in target.parents:
        raise bad
    return target


def read_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, name) of every file the manifest points at: the graph(s), tokenizer, engines."""
    named = [("model_file", manifest["model_file"]), ("tokenizer.file", manifest["tokenizer"]["file"])]
    past = manifest.get("with_past")
    if isinstance(past, dict) and "model_file" in past:
        named.append(("with_past.model_file", past["model_file"]))
    engines = manifest.get("engines") or []
    for index, entry in enumerate(engines if isinstance(engines, list) else []):
        if isinstance(entry, dict) and "file" in entry:
            named.append((f"engines[{index}].file", entry["file"]))
    return named


def check_paths(root: Path, manifest: dict[str, Any]) -> None:
    """Every path the manifest names resolves inside `root`, and every file the runtime reads is in the
    sha256 table (so none is read unchecked)."""
    table = manifest["files"]
    for name in table:
        _inside(root, name, f"files.{name}")
    needed = [("config.json", "config.json")]
    for field, name in read_files(manifest):
        _inside(root, name, field)
        needed.append((field, name))
        if field.endswith("model_file"):
            needed.append((field + " external data", f"{name}.data"))
    for optional in ("tokenizer_config.json", "1_Pooling/config.json"):
        needed.append((optional, optional))
    for field, name in needed:
        required = name in ("config.json", manifest["model_file"], manifest["tokenizer"]["file"])
        if name not in table and (required or os.path.lexists(root / name)):
            raise ArtifactError(f"{root}: {name!r} ({field}) is not in the manifest's sha256 table, so it cannot be "
                                "checked; re-export the artifact")


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> Artifact:
        """Read and check the manifest; with `verify`, also the sha256 of every file."""
        root = Path(path).expanduser()
        manifest_path = root / MANIFEST
        if not root.is_dir():
            raise ArtifactError(f"artifact {str(path)!r} does not exist; pass a directory written by `encoderforge export`")
        if not manifest_path.is_file():
            raise ArtifactError(f"{str(path)!r} has no {MANIFEST}; it is not an encoderforge artifact (re-export it)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); re-export the artifact") from exc
        _check_manifest(manifest_path, manifest)
        check_paths(root, manifest)
        artifact = cls(root, manifest)
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        check_paths(self.path, self.manifest)
        for name, expected in self.manifest["files"].items():
            file = self.path / name
            if not file.is_file():
                raise ArtifactError(f"artifact file {name!r} is missing from {self.path}; re-export the artifact")
            if file.stat().st_size != expected["bytes"] or sha256_file(file) != expected["sha256"]:
                raise ArtifactError(
                    f"artifact file {name!r} in {self.path} does not match its sha256 in the manifest "
                    "(corrupt or edited); re-export the artifact"
                )

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    @property
    def model_path(self) -> Path:
        return self.path / str(self.manifest["model_file"])

    @property
    def tokenizer_path(self) -> Path:
        return self.path / str(self.manifest["tokenizer"]["file"])

    @property
    def max_length(self) -> int:
        return int(self.manifest["tokenizer"]["max_length"])

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [spec["name"] for spec in self.manifest["outputs"]]

    def config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}; re-export the artifact") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{path} holds {type(data).__name__}, not a JSON object; re-export the artifact")
        return data
