"""The training log: every line goes to stdout and to OUT/train_log.txt."""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

_file: TextIO | None = None


def open_log(path: Path) -> None:
    global _file
    _file = open(path, "w")


def close_log() -> None:
    global _file
    if _file is not None:
        _file.close()
    _file = None


def log(msg: str = "") -> None:
    print(msg, flush=True)
    if _file is not None:
        _file.write(msg + "\n")
        _file.flush()


def fmt_s(s: float) -> str:
    """A duration for the log: 3m07s."""
    s = max(0, int(round(s)))
    return f"{s // 60}m{s % 60:02d}s"
