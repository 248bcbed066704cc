"""Progress that suits where it runs: a tqdm bar when stderr is a terminal, plain lines in a log file.

Snakemake sends each job's stdout and stderr to a log file; a bar's carriage returns and cursor
escapes would turn it into one unreadable line. There, `progress` prints `desc: 3/7 (43%) 12s, ~16s left`
at most every `every_s` seconds (and when a kept bar finishes), with nothing but printable text.
"""
from __future__ import annotations

import os
import sys
import time

ENV_INTERVAL = "ROHYDR_PROGRESS_SECONDS"  # seconds between log lines (default 30)
DEFAULT_INTERVAL = 30.0


def log_interval() -> float:
    return float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL))


def progress(iterable, desc: str, enabled: bool = True, total: int | None = None, leave: bool = True,
             every_s: float | None = None):
    """`iterable`, reporting progress on stderr: a bar on a terminal, periodic lines elsewhere."""
    if not enabled:
        return iterable
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave)
    return LineProgress(iterable, desc, total, leave, log_interval() if every_s is None else every_s)


class LineProgress:
    """An iterable wrapper printing one plain line per `every_s` seconds; `set_postfix` as in tqdm."""

    def __init__(self, iterable, desc: str, total: int | None, leave: bool, every_s: float):
        self.iterable, self.desc, self.leave, self.every_s = iterable, desc, leave, every_s
        self.total = total if total is not None else _length(iterable)
        self.postfix = ""
        self.count = 0

    def __iter__(self):
        started = last = time.perf_counter()
        printed = None
        for item in self.iterable:
            yield item
            self.count += 1
            now = time.perf_counter()
            if now - last >= self.every_s:
                last, printed = now, self.count
                self._line(now - started)
        if self.leave and printed != self.count:
            self._line(time.perf_counter() - started)

    def set_postfix(self, values: dict) -> None:
        self.postfix = " ".join(f"{key}={value}" for key, value in values.items())

    def _line(self, elapsed: float) -> None:
        done = f"{self.count}/{self.total} ({100 * self.count // self.total}%)" if self.total else f"{self.count}"
        left = ""
        if self.total and 0 < self.count < self.total:
            left = f", ~{elapsed / self.count * (self.total - self.count):.0f}s left"
        extra = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {elapsed:.0f}s{left}{extra}", file=sys.stderr, flush=True)


def _length(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None
