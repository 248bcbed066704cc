"""Conventions that keep the code base as the README describes it: the package's layers import only
downward (core -> kernels, data -> models -> training -> evaluation -> reporting, then the benchmark, the
commands and the command line; every import counts, at module level or inside a function); no block of six lines
is written twice; the workflow is formatted (snakefmt) and lints clean but for the accepted finding;
pyflakes finds nothing in the package."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from helpers import REPO, snakemake

PACKAGE = REPO / "rohydr"
# layer of each subpackage (or top-level module); a module may import its own subpackage and lower layers
LAYERS = {"core": 0, "kernels": 1, "data": 1, "models": 2, "training": 3, "evaluation": 4, "reporting": 5,
          "bench": 6, "commands": 7, "cli": 8, "__init__": 0}


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


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of imports between the package's modules (each found once, from its smallest module)."""
    cycles = []

    def walk(path: list[str]) -> None:
        for target in sorted(graph.get(path[-1], ())):
            if target == path[0]:
                cycles.append(path)
            elif target > path[0] and target not in path:
                walk([*path, target])

    for module in sorted(graph):
        walk([module])
    return cycles


def test_no_module_imports_itself_through_others():
    """Within a layer too (data/optimum.py and data/synthetic.py once imported each other)."""
    cycles = import_cycles({module: {t for t in imports if t != module} for module, imports in import_graph().items()})
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles)
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "dit.py"
    module.write_text("def f():\n    from rohydr.training.train import StageRunner\n")
    assert imported_modules(module) == {"rohydr.training.train"}
    assert LAYERS[layer_of("rohydr.training.train")] > LAYERS[layer_of("rohydr.models.dit")]


# ------------------------------------------------------------------------------------------------ duplicates
WINDOW = 6


def meaningful_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text with white space folded), without blank, comment, import and lone-punctuation lines."""
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = " ".join(line.split())
        if not text or text.startswith("#") or re.fullmatch(r"[\[\](){},:]*", text):
            continue
        if text.startswith(("import ", "from ")) and " import " in f"{text} ":
            continue
        kept.append((number, text))
    return kept


def repeated_blocks(paths: list[Path], root: Path = REPO) -> list[str]:
    places = defaultdict(list)
    for path in paths:
        lines = meaningful_lines(path)
        for start in range(len(lines) - WINDOW + 1):
            block = tuple(text for _, text in lines[start:start + WINDOW])
            places[block].append(f"{path.relative_to(root)}:{lines[start][0]}")
    return [" ~ ".join(where) for where in places.values() if len(where) > 1]


def source_files() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]


def test_no_block_of_six_lines_is_written_twice():
    repeated = repeated_blocks(source_files())
    assert not repeated, "blocks of six or more lines written twice:\n" + "\n".join(repeated)


def test_the_duplicate_check_finds_a_copied_block(tmp_path):
    body = "\n".join(f"value_{i} = compute({i})" for i in range(6))
    first, second = tmp_path / "a.py", tmp_path / "b.py"
    first.write_text(f"def f():\n{body}\n")
    second.write_text(f"import os\n\n{body}\n")
    assert repeated_blocks([first, second], tmp_path) == ["a.py:2 ~ b.py:3"]


# ------------------------------------------------------------------------------------------------ tools
def test_workflow_is_formatted_with_snakefmt():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_lint_has_only_the_accepted_finding(tmp_path):
    result = snakemake("--lint", "--configfile", REPO / "config" / "config.yaml", cwd=tmp_path, check=False)
    findings = set(re.findall(r"^ {4}\* (.+?):?$", result.stdout + result.stderr, re.M))
    assert findings == {"Specify a conda environment or container for each rule."}, result.stdout[-3000:]


def test_pyflakes_finds_nothing_in_the_package():
    result = subprocess.run([sys.executable, "-m", "pyflakes", "rohydr", "tests"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ one definition

def test_protocol_table_and_figure_names_are_spelled_only_in_the_layout_module():
    """The results layout's names live in rohydr/core/layout.py; everything else imports them (the package
    and the workflow), so renaming one is a change of one line."""
    from rohydr.core import layout

    names = [layout.ALL_PATTERNS, layout.PER_MR, layout.COMPLETE_DATA, layout.FLOOR, layout.FED_ZEROS_SUFFIX,
             *(name for name in (*layout.TABLES, *layout.FIGURES) if "_" in name)]  # not the plain words
    spelled = re.compile(r"""["'](%s)["']|f["']mr\{""" % "|".join(map(re.escape, names)))
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "workflow").rglob("*.smk"), REPO / "Snakefile"]
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in sources
             if path != PACKAGE / "core" / "layout.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if spelled.search(line)]
    assert not found, "layout names spelled outside rohydr/core/layout.py:\n" + "\n".join(found)
