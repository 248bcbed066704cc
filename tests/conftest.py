"""Running the tests in parallel (pytest-xdist, `-n auto --dist loadfile` in pyproject.toml): each worker
gets its share of the cores, and the slowest files start first so that no worker is left with one at the end."""
from __future__ import annotations

import os

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    # read by torch at import, in this worker and in the commands it starts: without it each of N workers
    # runs as many threads as there are cores, N times too many
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# The files that take longest (a full pipeline run and SLURM; training generators to a known answer;
# killed and resumed runs), in the order they should start.
SLOWEST_FIRST = ("test_workflow.py", "test_known_answer.py", "test_workflow_reliability.py", "test_training.py",
                 "test_emulated_cuda.py", "test_protocols.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
