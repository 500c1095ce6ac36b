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
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from encoderforge.errors import ArtifactError
from encoderforge.manifest import SCHEMA_VERSION, FileEntry, Manifest

__all__ = ["MANIFEST", "SCHEMA_VERSION", "Artifact", "Manifest", "file_table", "staging", "write_manifest"]

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(directory: Path) -> dict[str, FileEntry]:
    """sha256 and size of every file in the artifact except the manifest itself."""
    table = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        table[path.relative_to(directory).as_posix()] = FileEntry(sha256_file(path), path.stat().st_size)
    return table


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Write `manifest` with the current schema version and the file table of `directory`; return what was written."""
    manifest = replace(manifest, schema_version=SCHEMA_VERSION, files=file_table(directory))
    (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return manifest


def _os_error(exc: OSError, where: Path) -> ArtifactError:
    if exc.errno == errno.ENOSPC:
        fix = "free disk space or choose another --output"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose an --output you can write to"
    else:
        fix = "check the --output path"
    return ArtifactError(f"cannot write artifact at {str(where)!r}: {exc.strerror or exc}; {fix}")


@contextmanager
def staging(output: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory next to `output`; on success rename it to `output`, on any error
    remove it, so a failed run leaves nothing behind. An existing `output` is refused unless `force`."""
    output = Path(output).expanduser().absolute()
    if output.exists() and not force:
        raise ArtifactError(f"output {str(output)!r} already exists; pass --force to replace it or choose another path")
    if output.exists() and not output.is_dir():
        raise ArtifactError(f"output {str(output)!r} is a file, not a directory; choose another path")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    except OSError as exc:
        raise _os_error(exc, output) from exc
    try:
        yield stage
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            os.replace(output, old / "artifact")
            os.replace(stage, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, output)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise _os_error(exc, output) from exc
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: Manifest

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
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); re-export the artifact") from exc
        artifact = cls(root, Manifest.from_json(data, source=str(manifest_path)))
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        for name, expected in self.manifest.files.items():
            file = self.path / name
            if not file.is_file():
                raise ArtifactError(f"artifact file {name!r} is missing from {self.path}; re-export the artifact")
            if file.stat().st_size != expected.bytes or sha256_file(file) != expected.sha256:
                raise ArtifactError(
                    f"artifact file {name!r} in {self.path} does not match its sha256 in the manifest "
                    "(corrupt or edited); re-export the artifact"
                )

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def family(self) -> str:
        return self.manifest.family

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest.tokenizer.file

    @property
    def max_length(self) -> int:
        return self.manifest.tokenizer.max_length

    @property
    def input_names(self) -> list[str]:
        return self.manifest.input_names

    @property
    def output_names(self) -> list[str]:
        return self.manifest.output_names

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        return data
