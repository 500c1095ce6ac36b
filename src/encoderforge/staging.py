"""Writing an output directory safely: a staging directory renamed into place, never over what this run did
not find there, with one writer at a time and nothing left behind.

    with staging(Path("out/model"), force=False) as stage:
        ...write files into stage...
    # now out/model holds them (modes from the umask), or the run failed and left nothing

`.<name>.lock` next to the output keeps a second writer (thread or process) out; staging directories that a
killed run left (`.<name>.partial-*`, `.old-*`, `.fp32-*`) are removed by the next writer; SIGTERM unwinds
like Ctrl-C so the staging directory is removed.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from encoderforge.errors import ArtifactError

try:
    import fcntl
except ImportError:  # not POSIX: an exclusively created lock file instead (a killed run's must be removed by hand)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


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
