"""One GPU per job: the slot allocator under concurrent processes, with faked GPU identities (the level at
which `--device auto` reads the visible GPUs), and the message for a device index that does not exist."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from rohydr.core.errors import RohydrError
from rohydr.core.gpu_slots import slot_report
from rohydr.core.runtime import check_device_index

HOLDER = """
import sys
from rohydr.core.gpu_slots import take_gpu_slot
index = take_gpu_slot(sys.argv[1].split(","), poll_s=0.05, say=lambda line: print(line, flush=True))
print(f"slot {index}", flush=True)
sys.stdin.read()  # hold the slot until the test closes our stdin
"""


def holder(gpus: str, lock_dir) -> subprocess.Popen:
    """A process that takes a slot among `gpus` (comma-separated identities) and holds it."""
    env = {**os.environ, "ROHYDR_GPU_LOCK_DIR": str(lock_dir)}
    return subprocess.Popen([sys.executable, "-c", HOLDER, gpus], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


def slot_of(process: subprocess.Popen) -> int:
    for line in process.stdout:
        if line.startswith("slot "):
            return int(line.split()[1])
    raise AssertionError(f"process {process.pid} ended without a slot")


def release(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait(timeout=30)


def test_two_jobs_on_two_gpus_get_one_each_and_a_third_waits_for_a_free_one(tmp_path):
    first, second = holder("GPU-A,GPU-B", tmp_path), holder("GPU-A,GPU-B", tmp_path)
    first_slot, second_slot = slot_of(first), slot_of(second)
    assert {first_slot, second_slot} == {0, 1}
    third = holder("GPU-A,GPU-B", tmp_path)
    assert third.stdout.readline().startswith("waiting for a free GPU: all 2 visible GPU(s) are held")
    time.sleep(0.3)
    assert third.poll() is None  # still waiting
    release(second)
    assert slot_of(third) == second_slot
    release(first), release(third)


def test_a_killed_job_frees_its_gpu(tmp_path):
    killed = holder("GPU-A", tmp_path)
    assert slot_of(killed) == 0
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    successor = holder("GPU-A", tmp_path)
    assert slot_of(successor) == 0
    release(successor)


def test_jobs_that_each_see_their_own_gpu_as_cuda0_do_not_wait_for_each_other(tmp_path):
    """Under SLURM (or CUDA_VISIBLE_DEVICES) each job sees one GPU, index 0: slots are keyed by GPU, not index."""
    one, other = holder("GPU-A", tmp_path), holder("GPU-B", tmp_path)
    assert slot_of(one) == 0 and slot_of(other) == 0
    release(one), release(other)


def test_the_gpu_listing_names_the_gpu_the_next_job_takes_and_who_holds_the_others(tmp_path, monkeypatch):
    """`rohydr gpus` on a machine showing three GPUs, two held by running jobs."""
    monkeypatch.setenv("ROHYDR_GPU_LOCK_DIR", str(tmp_path))
    gpus, names = ["GPU-A", "GPU-B", "GPU-C"], ["card"] * 3
    first, second = holder(",".join(gpus), tmp_path), holder(",".join(gpus), tmp_path)
    by_slot = {slot_of(first): first, slot_of(second): second}
    report = slot_report(gpus, names).splitlines()
    assert report[1].startswith(f"  cuda:0  card  GPU-A  held by pid {by_slot[0].pid} ({sys.executable} -c import sys")
    assert report[2].startswith(f"  cuda:1  card  GPU-B  held by pid {by_slot[1].pid} (")
    assert report[3] == "  cuda:2  card  GPU-C  free" and report[4] == "a job on --device auto now takes cuda:2"
    third = holder(",".join(gpus), tmp_path)
    assert slot_of(third) == 2  # the listing took no slot
    assert slot_report(gpus, names).splitlines()[-1] == "every GPU is held: a job on --device auto waits for one"
    release(by_slot[1])
    assert slot_report(gpus, names).splitlines()[-1] == "a job on --device auto now takes cuda:1"
    release(first), release(third)


def test_a_device_index_the_machine_lacks_is_refused_with_what_it_has():
    check_device_index("cuda:1", 1, 2)
    check_device_index("cuda", None, 1)
    with pytest.raises(RohydrError, match=r"--device cuda:7: this machine shows 2 CUDA device\(s\) "
                                          r"\(cuda:0 \.\.\. cuda:1; CUDA_VISIBLE_DEVICES decides which\)"):
        check_device_index("cuda:7", 7, 2)
