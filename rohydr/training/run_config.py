"""`rohydr config`: a preset plus overrides, resolved and checked, as the JSON the other commands read."""
from __future__ import annotations

import json

from rohydr.core.config import build_run_config
from rohydr.core.errors import RohydrError
from rohydr.core.io import write_text_atomic


def parse_overrides(texts: list[str]) -> list[dict]:
    overrides = []
    for text in texts:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise RohydrError(f"--override {text!r} is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise RohydrError(f"--override {text!r}: expected a JSON object")
        overrides.append(value)
    return overrides


def cli_config(args) -> int:
    try:
        resolved = build_run_config(args.preset, *parse_overrides(args.override))
    except ValueError as error:
        raise RohydrError(str(error)) from None
    write_text_atomic(args.out, json.dumps(resolved.to_dict(), indent=2, sort_keys=True) + "\n")
    return 0
