"""A progress line with rate and ETA on stderr (a redrawn line on a terminal, a log line every
``every_s`` seconds otherwise), for evaluation and training loops."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}:{m:02d}:{s:02d}"


class Progress:
  """``update(n)`` after each unit of work; ``close()`` at the end.

  Attributes:
    total: units expected (None: unknown, no ETA). unit: their name (e.g. "boxes").
  """

  def __init__(self, total: int | None, desc: str, unit: str = "it", every_s: float = 10.0,
               stream=None, enabled: bool = True):
    self.total, self.desc, self.unit = total, desc, unit
    self.every_s = every_s
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.done = 0
    self.start = self.last = time.perf_counter()
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

  def line(self) -> str:
    elapsed = time.perf_counter() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
    text = f"{self.desc}: {self.done}"
    if self.total:
      text += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
      eta = (self.total - self.done) / rate if rate > 0 else float("nan")
      text += f", {rate:.1f} {self.unit}/s, ETA {format_duration(eta) if rate > 0 else '?'}"
    else:
      text += f" {self.unit}, {rate:.1f} {self.unit}/s"
    return text + f", elapsed {format_duration(elapsed)}"

  def update(self, n: int = 1) -> None:
    self.done += n
    now = time.perf_counter()
    if self.enabled and (self.tty or now - self.last >= self.every_s):
      self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
      self.stream.flush()
      self.last = now

  def close(self) -> None:
    if self.enabled:
      self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
      self.stream.flush()
