"""Checks of the workflow's configuration that its JSON schema cannot make: keys that YAML read as
something other than a name, keys a file names twice, and one namespace for datasets and runs."""
from __future__ import annotations

import json
from pathlib import Path

from rohydr.core import layout


def refuse_duplicate_keys(path: str | Path) -> None:
    """A config file that names a key twice in one mapping: YAML and JSON readers keep the last silently."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        json.loads(text, object_pairs_hook=lambda pairs: _unique(pairs, path))
        return
    except json.JSONDecodeError:
        pass
    try:
        yaml.load(text, Loader=_unique_key_loader(path))
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path}: {error}") from None


def _unique(pairs, path) -> dict:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"config file {path}: key(s) {twice} named twice in one object (the last would be kept)")
    return dict(pairs)


def _unique_key_loader(path):
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise ValueError(f"config file {path}, line {line}: key {key!r} is named twice in one mapping "
                                     "(the last would be kept silently)")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def check_keys_are_strings(value, where: str = "config") -> None:
    """Every mapping key a string: YAML 1.1 reads `off:`, `no:` or `1:` as a boolean or number."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is a {type(key).__name__}, not a string (YAML reads "
                                 "unquoted yes/no/on/off/true/false as booleans and digits as numbers): quote it")
            check_keys_are_strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_keys_are_strings(item, f"{where}[{index}]")


def check_namespace(datasets: list, sweep_datasets: dict[str, str], runs: dict[str, str],
                    fed_zeros: list, made_runs: dict[str, str] | None = None) -> None:
    """One namespace per kind: a name is valid, and no configured name is one the workflow makes itself.

    `sweep_datasets`: the sweeps' dataset names -> what makes them ("redundancy_sweep ...");
    `runs`: each configured run -> where it is configured ("variants", "baselines"); `fed_zeros`: the runs
    also scored fed zeros; `made_runs`: other runs the workflow makes -> what makes them."""
    for kind, names in (("dataset", datasets), ("run", runs)):
        for name in names:
            reason = layout.bad_name(name)
            if reason:
                raise ValueError(f"{kind} {reason}")
    for name, origin in sweep_datasets.items():
        if name in datasets:
            raise ValueError(f"dataset {name!r} is also the name {origin} gives its copy at that redundancy: "
                             "rename one")
    made = {run: "a built-in run" for run in layout.BUILT_IN_RUNS}
    made.update({folder: "a folder of every dataset's results" for folder in layout.DATASET_FOLDERS})
    made.update({layout.fed_zeros_run(run): f"the run fed_zeros makes from {run!r}" for run in fed_zeros})
    made.update(made_runs or {})
    for run, origin in runs.items():
        if run in made:
            raise ValueError(f"{origin} {run!r} is also {made[run]}: rename it")
