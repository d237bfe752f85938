"""The code flows one way: sources → decode → features → models → evaluation/reports → serving → cli.

A module may import earmark modules of its own layer or lower ones, never higher ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "earmark"

# Lower number = lower layer.
LAYERS = {
    "earmark": 0, "earmark.errors": 0, "earmark.config": 0, "earmark._version": 0,
    "earmark.audio": 1,
    "earmark.sources": 2, "earmark.synth": 2,
    "earmark.features": 3,
    "earmark.models": 4, "earmark.training": 4,
    "earmark.evaluation": 5, "earmark.bundle": 5, "earmark.transfer": 5,
    "earmark.serving": 6,
    "earmark.cli": 7,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS and (n > 1 or module == "earmark"):
            return LAYERS[key]
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_package_has_a_layer() -> None:
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        assert _layer(name) is not None, f"{name} is in no layer: add it to LAYERS in tests/test_layers.py"


def test_imports_point_down() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        if name == "earmark":
            continue  # the package root re-exports lazily from every layer
        own = _layer(name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            for target in targets:
                if not target.startswith("earmark."):
                    continue  # third-party, or the root package (lazy: it loads nothing above audio)
                other = _layer(target)
                if other is not None and own is not None and other > own:
                    problems.append(f"{name} (layer {own}) imports {target} (layer {other})")
    assert not problems, "\n".join(problems)
