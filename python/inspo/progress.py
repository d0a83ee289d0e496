"""The one progress display of training: a tqdm bar in a terminal, plain lines in a log.

Outside a terminal (a log file, CI, a pipe) a bar's carriage-return updates pile up by the thousand
and the next output lands on its last line, so there the progress is one ordinary line every few
percent of the way instead.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any, Optional

from tqdm import tqdm

LINE_EVERY_PERCENT = 5


def progress_bar(
    total: int, *, initial: int = 0, desc: str = "", enabled: bool = True, stream: Optional[IO[str]] = None
) -> Any:
    """A progress display with tqdm's update(n), set_postfix(dict) and close(), on `stream` (stderr)."""
    stream = sys.stderr if stream is None else stream
    if enabled and not _is_terminal(stream):
        return LineProgress(total, initial=initial, desc=desc, stream=stream)
    return tqdm(
        total=total, initial=initial, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, file=stream
    )


class LineProgress:
    """`desc: done/total (pct%) seconds  postfix` each LINE_EVERY_PERCENT percent, and at the end."""

    def __init__(self, total: int, *, initial: int, desc: str, stream: IO[str]):
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.every = max(1, math.ceil(total * LINE_EVERY_PERCENT / 100))
        self.next_line = (initial // self.every + 1) * self.every
        self.postfix: dict[str, Any] = {}
        self.start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self.next_line or self.n == self.total:
            self.next_line = (self.n // self.every + 1) * self.every
            self.print_line()

    def set_postfix(self, values: dict[str, Any]) -> None:
        self.postfix = dict(values)

    def print_line(self) -> None:
        shown = "".join(f" {key}={value}" for key, value in self.postfix.items())
        percent = 100 * self.n / self.total if self.total else 100.0
        print(
            f"{self.desc}: {self.n}/{self.total} ({percent:.0f}%) {time.perf_counter() - self.start:.1f}s{shown}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        pass  # the line of the last update is the final one


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
