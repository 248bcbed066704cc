"""Progress: a tqdm bar on a terminal, plain lines anywhere else (the job logs' case is in test_workflow)."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from rohydr.core.progress import progress

SHOW = "from rohydr.core.progress import progress\nfor _ in progress(range(3), 'steps'): pass\n"


def test_plain_lines_every_interval_and_when_done(capsys):
    assert list(progress(range(4), "passes", every_s=0)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert lines[-1].startswith("passes: 4/4 (100%) ")

    list(progress(iter(range(5)), "batches", every_s=3600))  # no length: a count; one line at the end
    assert capsys.readouterr().err.splitlines() == ["batches: 5 0s"]
    list(progress(range(5), "inner", every_s=3600, leave=False))
    assert list(progress(range(2), "off", enabled=False)) == [0, 1]
    assert capsys.readouterr().err == ""


def test_postfix_and_time_left_in_the_line(capsys):
    bar = progress(range(2), "epochs", every_s=0)
    for _ in bar:
        bar.set_postfix({"val_l1": "0.5000"})
    first, last = capsys.readouterr().err.splitlines()
    assert first.startswith("epochs: 1/2 (50%) ") and ", ~" in first and "s left" in first
    assert last.endswith(" val_l1=0.5000") and "left" not in last


def test_a_terminal_gets_a_bar_and_a_pipe_plain_lines():
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm sizes its bar to it
    subprocess.run([sys.executable, "-c", SHOW], stderr=secondary, check=True, timeout=60)
    os.close(secondary)
    on_terminal = os.read(main, 65536).decode()
    os.close(main)
    assert "\r" in on_terminal and "3/3" in on_terminal
    piped = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, check=True, timeout=60)
    assert piped.stderr == piped.stderr.strip() + "\n" and piped.stderr.startswith("steps: 3/3 (100%) ")
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
