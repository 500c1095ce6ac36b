"""The artifact: one directory per exported model, the contract between exporters, passes and runtime.

    model.onnx (+ model.onnx.data)   the graph (external data above ~1.8 GB)
    tokenizer.json (+ configs)       what the runtime tokenizes with
    config.json                      the source model's config (labels, problem_type)
    manifest.json                    schema version, family, task, graph inputs/outputs, feeds, tokenizer
                                     settings, precision, passes, validation report, versions, sha256 of files

Written atomically (`encoderforge.staging`: a staging directory renamed into place) and readable without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from encoderforge.errors import ArtifactError
from encoderforge.manifest import SCHEMA_VERSION, FileEntry, Manifest

__all__ = ["MANIFEST", "SCHEMA_VERSION", "Artifact", "Manifest", "file_table", "write_manifest"]

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


def read_files(manifest: Manifest) -> list[tuple[str, str]]:
    """(field, name) of every file the manifest points at: the graph(s), tokenizer, engines."""
    named = [("model_file", manifest.model_file), ("tokenizer.file", manifest.tokenizer.file)]
    if manifest.with_past is not None:
        named.append(("with_past.model_file", manifest.with_past.model_file))
    named += [(f"engines[{index}].file", entry.file) for index, entry in enumerate(manifest.engines)]
    return named


def check_paths(root: Path, manifest: Manifest) -> None:
    """Every path the manifest names resolves inside `root`, and every file the runtime reads is in the
    sha256 table (so none is read unchecked)."""
    table = manifest.files
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
        required = name in ("config.json", manifest.model_file, manifest.tokenizer.file)
        if name not in table and (required or os.path.lexists(root / name)):
            raise ArtifactError(f"{root}: {name!r} ({field}) is not in the manifest's sha256 table, so it cannot be "
                                "checked; re-export the artifact")


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
        manifest = Manifest.from_json(data, source=str(manifest_path))
        check_paths(root, manifest)
        artifact = cls(root, manifest)
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        check_paths(self.path, self.manifest)
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
        path = self.path / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}; re-export the artifact") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{path} holds {type(data).__name__}, not a JSON object; re-export the artifact")
        return data
