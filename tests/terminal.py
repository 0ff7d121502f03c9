"""Run `vidstyle` in a real pseudo-terminal, as a user at a prompt would (stdout and stderr both
on it), and read the screen back: what was left on it, and every state the display went
through."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


@dataclass
class TerminalRun:
    code: int
    output: str  # everything written to the terminal, escape sequences included

    @property
    def screen(self) -> list[str]:
        """The lines left on the screen at the end."""
        return replay(self.output)

    @property
    def plain(self) -> str:
        """The output without escape sequences (every state a redrawn line went through)."""
        return _CSI.sub("", self.output)


def run_in_terminal(
    args: Sequence[object], cwd: Path, columns: int = 120, timeout: float = 300
) -> TerminalRun:
    """`python -m vidstyle ARGS...` with a pseudo-terminal of `columns` as stdout and stderr."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [sys.executable, "-m", "vidstyle", *map(str, args)],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=cwd,
        env=env,
    )
    os.close(child)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=timeout)
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
    return TerminalRun(code, b"".join(chunks).decode("utf-8", "replace"))


def replay(output: str) -> list[str]:
    """The screen a terminal shows after `output`: carriage returns, newlines, cursor-up and
    line erasing, which is all rich's live display uses; colours are dropped."""
    lines = [""]
    row = col = 0
    i = 0
    while i < len(output):
        match = _CSI.match(output, i)
        if match:
            arg, command = match.groups()
            if command == "A":
                row = max(0, row - int(arg or 1))
            elif command == "K":
                lines[row] = "" if arg == "2" else lines[row][:col]
            i = match.end()
            continue
        char = output[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            lines.extend("" for _ in range(row + 1 - len(lines)))
        elif char >= " ":
            line = lines[row].ljust(col)
            lines[row] = line[:col] + char + line[col + 1 :]
            col += 1
    return [line.rstrip() for line in lines if line.strip()]
