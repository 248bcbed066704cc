"""The package's layers import only downward: core -> kernels, data -> models -> training -> evaluation ->
reporting, with the command line and the benchmark on top. Every import counts, at module level or
inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "rohydr"
# layer of each subpackage (or top-level module); a module may import its own subpackage and lower layers
LAYERS = {"core": 0, "kernels": 1, "data": 1, "models": 2, "training": 3, "evaluation": 4, "reporting": 5,
          "bench": 6, "cli": 7, "__init__": 0}


def layer_of(module: str) -> str:
    """'rohydr.models.dit' -> 'models'; 'rohydr.cli' -> 'cli'; 'rohydr' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "rohydr" or name.startswith("rohydr.")}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = imported_modules(path)
    return graph


def test_every_module_belongs_to_a_layer():
    unknown = sorted({layer_of(module) for module in import_graph()} - set(LAYERS))
    assert not unknown, f"modules outside the layers {sorted(LAYERS)}: {unknown}"


def test_layers_import_only_downward():
    upward = []
    for module, imports in import_graph().items():
        mine = layer_of(module)
        for target in imports:
            theirs = layer_of(target)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "dit.py"
    module.write_text("def f():\n    from rohydr.training.train import StageRunner\n")
    assert imported_modules(module) == {"rohydr.training.train"}
    assert LAYERS[layer_of("rohydr.training.train")] > LAYERS[layer_of("rohydr.models.dit")]
