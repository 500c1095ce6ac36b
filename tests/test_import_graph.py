"""The package import graph: no cycle between encoderforge's packages, and a runtime that loads no builder.

Nodes are encoderforge's first-level packages and modules (encoderforge.runtime, encoderforge.engines,
encoderforge.artifact, ...); an edge is any import of one from another, at module level or inside a function
(lazy imports still tie the packages together), except under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import encoderforge

ROOT = Path(encoderforge.__file__).parent
BUILDERS = ("encoderforge.engines", "encoderforge.exporters", "encoderforge.graph_passes", "encoderforge.calibration")


def _node(module: str) -> str:
    """encoderforge.runtime.backends.tensorrt -> encoderforge.runtime; `from encoderforge import x` -> x's node."""
    return ".".join(module.split(".")[:2])


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "encoderforge":
                found.extend(f"encoderforge.{a.name}" if _is_module(a.name) else "encoderforge" for a in node.names)
            else:
                found.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [name for name in found if name == "encoderforge" or name.startswith("encoderforge.")]


def _is_module(name: str) -> bool:
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        source = _node(".".join(p for p in parts if p != "__init__"))
        targets = {_node(name) for name in _imports(ast.parse(path.read_text(encoding="utf-8")))}
        graph.setdefault(source, set()).update(targets - {source})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = walk(start)
            if cycle:
                return cycle
    return None


def test_package_import_graph_has_no_cycle() -> None:
    graph = package_graph()
    assert "encoderforge.runtime" in graph and "encoderforge.engines" in graph  # the walk saw the packages
    cycle = find_cycle(graph)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_engines_import_the_runtime_one_way() -> None:
    graph = package_graph()
    assert "encoderforge.runtime" in graph["encoderforge.engines"]
    assert not graph["encoderforge.runtime"] & set(BUILDERS)


def test_importing_the_runtime_loads_no_builder_nor_torch() -> None:
    code = ("import json, sys; import encoderforge.runtime, encoderforge.runtime.backends.tensorrt; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "encoderforge.runtime.backends.tensorrt" in loaded
    builders = [m for m in loaded if m.startswith(BUILDERS)]
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "transformers")]
    assert builders == [] and heavy == [], (builders, heavy[:5])
