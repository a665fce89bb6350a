"""Progress for people, quiet logs for machines.

On a terminal a loop gets a tqdm bar. Anywhere else (a launch file, CI, `make demo > log`) a bar
is hundreds of carriage-return updates in a file that people search for errors, so the loop
writes instead one plain line at each 10 % of the work, and one at least every `interval`
seconds while a slow loop goes on (or, without a known total, only those).

    for frame in progress_bar(frames, desc="frames", unit="frame"):
        ...
    with progress_bar(total=steps, desc="train", unit="step") as bar:
        bar.update(1)
        bar.set_postfix_str("loss=0.31")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds: the longest a slow loop stays silent in a log
LOG_STEPS = 10  # lines per loop of known length, at every 10 % of it


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
    stream: IO[str] | None = None,
    interval: float = LOG_INTERVAL,
) -> tqdm | LogProgress:
    """A tqdm bar when `stream` (default stderr) is a terminal, else a `LogProgress`.

    Both iterate over `iterable` and offer `update`, `set_postfix_str` and `close`, and both work
    as context managers. `enabled=False` shows nothing (e.g. on all but one distributed rank).
    """
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if enabled and is_terminal(stream):
        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream
        )
    return LogProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        stream=stream if enabled else None,
        interval=interval,
    )


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LogProgress:
    """Progress as plain lines: at each tenth of `total` and at least every `interval` seconds.

    A line reads `frames: 40/100 frame (40%), 12.3 s, 3.3 frame/s, about 18 s left`; the last
    one comes at `close()` (or the end of the iteration). `stream` None writes nothing.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        stream: IO[str] | None = None,
        interval: float = LOG_INTERVAL,
    ):
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.stream = stream
        self.interval = interval
        self.postfix = ""
        self._initial = initial
        self._start = self._last_line = time.monotonic()
        self._step_written = self._step(initial)
        self._n_written = initial
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LogProgress has no iterable to iterate over")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = self._step(self.n)
        if step > self._step_written or now - self._last_line >= self.interval:
            self._write(now)
            self._step_written = step

    def set_postfix_str(self, text: str) -> None:
        """Shown at the end of the next line, as tqdm shows it after the bar."""
        self.postfix = text

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n != self._n_written:  # the final count, unless the last line showed it
            self._write(time.monotonic())

    def _step(self, n: int) -> int:
        """Which tenth of the work `n` has reached (0 without a known total)."""
        return LOG_STEPS * n // self.total if self.total else 0

    def _write(self, now: float) -> None:
        self._last_line, self._n_written = now, self.n
        if self.stream is None:
            return
        self.stream.write(self._line(now - self._start) + "\n")
        self.stream.flush()

    def _line(self, elapsed: float) -> str:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n // self.total}%)"
        parts.append(f"{elapsed:.1f} s")
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.total and self.n < self.total:
                parts.append(f"about {(self.total - self.n) / rate:.0f} s left")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)
