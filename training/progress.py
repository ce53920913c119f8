"""Progress of a training run: a tqdm bar on a terminal, plain timestamped lines elsewhere (CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts named steps of a known total; `step(name)` announces the step about to run.

    On a TTY it draws a tqdm bar; otherwise (pipes, CI logs) it prints one line per step with the
    seconds elapsed since the start, so logs stay readable."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self.started = time.perf_counter()
        self._bar = None
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=self.stream, unit="step", leave=True)

    def step(self, name: str) -> None:
        """Mark the previous step done and announce `name`."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self.done:
                self._bar.update(1)
            self._bar.set_description_str(name)
        else:
            elapsed = time.perf_counter() - self.started
            print(
                f"[train {self.done + 1}/{self.total} {elapsed:6.1f}s] {name}",
                file=self.stream,
                flush=True,
            )
        self.done += 1

    def close(self) -> None:
        """Finish the bar (or print the total time)."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        if self._bar is not None:
            self._bar.update(self.total - self._bar.n)
            self._bar.close()
        else:
            print(f"[train done {elapsed:6.1f}s]", file=self.stream, flush=True)


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
