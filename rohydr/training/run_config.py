"""Run-configuration overrides as the command line gives them (`--override JSON`, repeatable)."""
from __future__ import annotations

import json

from rohydr.core.errors import RohydrError


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
