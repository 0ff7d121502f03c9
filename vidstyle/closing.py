"""A context-manager mixin for objects that finish with `close()` or give up with `abort()`."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_Self = TypeVar("_Self", bound="CloseOrAbort")


class CloseOrAbort:
    """`with obj:` closes it when the block ends normally and aborts it when the block raises
    (an error or Ctrl-C), so a half-done result is thrown away, never finished. A subclass may
    keep what was done before a Ctrl-C by overriding `interrupted()`."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.interrupted()
        else:
            self.abort()

    def interrupted(self) -> None:
        """The block was interrupted (Ctrl-C). By default that is like any other error."""
        self.abort()
