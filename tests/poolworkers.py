"""Worker process entry points for the pool tests (importable by a spawned child, which finds
this folder on the sys.path it inherits from the test process)."""

from __future__ import annotations

import os
import pickle
import signal
import struct
from pathlib import Path
from typing import Any

#: The file whose creation elects the one worker that dies (the first to create it).
DIE_MARKER = "VIDSTYLE_TEST_DIE_MARKER"


def dies_mid_message(conn: Any, *args: Any) -> None:
    """A real worker, except that the first to report progress within a frame dies (SIGKILL,
    as from the OOM killer) halfway through writing that message to the parent."""
    from vidstyle.batch import pool

    pool._worker_main(_DiesMidMessage(conn, Path(os.environ[DIE_MARKER])), *args)


class _DiesMidMessage:
    def __init__(self, conn: Any, marker: Path) -> None:
        self.conn, self.marker = conn, marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def send(self, message: object) -> None:
        from vidstyle.render.events import Iteration

        if isinstance(message, Iteration) and _first(self.marker):
            data = pickle.dumps(message)
            # The connection's framing: a 4-byte length, then the pickle; half of it is written.
            os.write(self.conn.fileno(), struct.pack("!i", len(data)) + data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        self.conn.send(message)


def _first(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
