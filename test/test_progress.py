"""Progress: a bar on a terminal, a few plain lines anywhere else (a log, CI, a launch file)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from ockd_ros.progress import LogProgress, progress_bar

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_bounded_number_of_plain_lines_for_any_number_of_steps():
    for steps in (7, 1000, 20_000):
        log = io.StringIO()
        with progress_bar(total=steps, desc="train", unit="step", stream=log) as bar:
            for _ in range(steps):
                bar.update(1)
        text = log.getvalue()
        assert "\r" not in text and "\x1b" not in text
        lines = text.splitlines()
        assert 1 <= len(lines) <= 11, lines  # at most one per tenth of the work
        assert lines[-1].startswith(f"train: {steps}/{steps} step (100%)")


def test_iterating_in_a_log_writes_each_tenth_once_and_the_end():
    log = io.StringIO()
    items = list(progress_bar(range(50), desc="frames", unit="frame", stream=log))
    assert items == list(range(50))
    lines = log.getvalue().splitlines()
    assert [line.split(" ")[1] for line in lines] == [f"{5 * k}/50" for k in range(1, 11)]


def test_a_slow_loop_without_a_total_still_reports_every_interval():
    log = io.StringIO()
    with progress_bar(desc="frames", unit="frame", stream=log, interval=0.0) as bar:
        for _ in range(3):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "frames: 1 frame",
        "frames: 2 frame",
        "frames: 3 frame",
    ]


def test_the_postfix_and_a_resumed_start_appear_in_the_lines():
    log = io.StringIO()
    with progress_bar(total=10, initial=8, desc="train", unit="step", stream=log) as bar:
        bar.set_postfix_str("loss=0.310")
        bar.update(2)
    (line,) = log.getvalue().splitlines()
    assert line.startswith("train: 10/10 step (100%)") and line.endswith("loss=0.310")


def test_a_terminal_gets_a_bar_and_disabled_progress_writes_nothing():
    terminal = Terminal()
    with progress_bar(total=100, desc="train", stream=terminal) as bar:
        bar.update(100)
    assert not isinstance(bar, LogProgress)
    assert "\r" in terminal.getvalue() and "100/100" in terminal.getvalue()
    for stream in (Terminal(), io.StringIO()):
        with progress_bar(total=100, stream=stream, enabled=False) as bar:
            bar.update(100)
        assert stream.getvalue() == ""


def test_the_generator_writes_no_progress_bar_into_a_log(tmp_path):
    """`ockd-gen ... 2> log`: stderr is a file, so plain lines, no carriage returns."""
    command = [
        *(sys.executable, "-m", "ockd_ros.training.scenes", "--meshes", "ketchup"),
        *("--size", "64x48", "--scenes", "2", "--frames-per-scene", "1"),
        *("--objects-per-scene", "1", "--no-i0", "--out", str(tmp_path / "scenes")),
    ]
    # Bytes: text mode would turn the carriage returns looked for into newlines.
    result = subprocess.run(command, cwd=REPO, capture_output=True, timeout=300)
    log = result.stderr.decode()
    assert result.returncode == 0, log
    assert "\r" not in log
    progress_lines = [line for line in log.split("\n") if line.startswith("frames: ")]
    assert progress_lines and progress_lines[-1].startswith("frames: 2/2 frame (100%)")
