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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from encoderforge.errors import ArtifactError

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
