"""Files that appear whole or not at all: written under a temporary name beside the target,
flushed to disk, then renamed over it.

Every file vidstyle writes for a user (videos, images, models, training checkpoints) and every
file of a resumable render's work folder goes through here, so a crash, a full disk, Ctrl-C or a
power loss leaves either the earlier file or the new one under the final name, never half of
one. The temporary file is beside the target, on the same file system, so the rename is atomic;
it keeps the target's extension, because FFmpeg picks a muxer by it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vidstyle.errors import OutputError

log = logging.getLogger(__name__)


def temp_path_for(path: Path) -> Path:
    """The hidden temporary name beside `path`, keeping its extension."""
    path = Path(path)
    return path.with_name(f".{path.name}.vidstyle-part{path.suffix}")


class AtomicFile:
    """The temporary file of one atomic write, for writers that need a path (FFmpeg's muxer)
    and finish later: write to `temp`, then `commit()` or `discard()`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.temp = temp_path_for(self.path)

    def commit(self) -> None:
        """Flush the temporary file to disk and rename it over `path`. Raises `OSError`."""
        fd = os.open(self.temp, os.O_RDONLY)
        try:
            os.fsync(fd)
            # A leftover temporary file of a killed run is reused, with whatever mode it had;
            # the result gets the mode any new file of the user's would (0666 less the umask).
            os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Delete the temporary file (if any); `path` is never touched."""
        try:
            self.temp.unlink(missing_ok=True)
        except OSError as err:  # pragma: no cover - e.g. the folder vanished
            log.warning("could not remove temporary file %s: %s", self.temp, err)


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(file)` into a temporary file beside `path`, then commit it over `path`.

    Raises `OSError` (the caller names what failed, see `output_error`); the temporary file is
    gone whatever happens.
    """
    atomic = AtomicFile(path)
    try:
        with atomic.temp.open("wb") as file:
            write(file)
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise


def output_error(err: OSError, path: Path) -> OutputError:
    """The one-line error for a failed write of `path` (disk full, permission denied, ...)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            "disk full while writing; free some space or choose another folder", path
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("cannot write here (permission denied); choose another folder", path)
    reason = err.strerror or str(err)
    return OutputError(f"writing failed ({reason}); check the output folder", path)


def _umask() -> int:
    # Linux shows the umask in /proc; elsewhere the only way to read it is to set it, which
    # briefly changes it for every thread, so that is the fallback.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
