"""Work on one background thread behind a bounded queue, in either direction.

- `BackgroundConsumer`: the caller submits items, a thread consumes them (encoding).
- `produce_in_background`: a thread produces items, the caller iterates them (decoding, flow).

The pipeline's consumer end (colour conversion, x264, muxing) takes real time per frame; run in
the loop that also drives the network, it would add to every frame's time. PyAV and swscale
release the GIL while they work, so on a thread it overlaps with the network instead, and the
bounded queue keeps memory at a few frames however fast either side is. Items are consumed in
order, by one thread, so the consumer needs no locking of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from vidstyle.closing import CloseOrAbort

T = TypeVar("T")

_DONE = object()
# How often a thread blocked on a queue checks whether the other side has gone away (so it
# never waits forever).
_POLL_S = 0.05


class BackgroundConsumer(CloseOrAbort, Generic[T]):
    """Calls `consume(item)` on a worker thread for every `submit(item)`, in order.

    An exception in `consume` stops the worker; it is re-raised in the producer's thread by the
    next `submit` or by `close`. As a context manager: a normal exit waits for every item to be
    consumed (`close`); an exit by exception (Ctrl-C included) stops at once (`abort`), and in
    both cases the worker has finished before the block is left, so whatever `consume` writes
    to can be closed safely right after.
    """

    def __init__(
        self, consume: Callable[[T], None], *, queue_size: int = 8, name: str = "vidstyle-worker"
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._consume = consume
        self._items: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._items.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            try:
                self._consume(item)  # type: ignore[arg-type]
            except BaseException as err:  # handed to the producer
                self._error = err
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, item: T) -> None:
        """Queue `item`, waiting while the queue is full; raises the worker's error, if any."""
        if self._closed:
            raise RuntimeError("BackgroundConsumer is closed")
        while True:
            self._raise_error()
            if not self._thread.is_alive():
                raise RuntimeError("background worker stopped unexpectedly")
            try:
                self._items.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until every queued item is consumed; raises the worker's error, if any."""
        if self._closed:
            return
        self._closed = True
        while self._thread.is_alive():
            try:
                self._items.put(_DONE, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._raise_error()

    def abort(self) -> None:
        """Stop without consuming what is still queued; never raises the worker's error."""
        self._closed = True
        self._stop.set()
        self._thread.join()
        self._error = None


class Output(Generic[T]):
    """What a producer running under `produce_in_background` hands its items to."""

    def __init__(self, items: queue.Queue[object], stop: threading.Event) -> None:
        self._items = items
        self._stop = stop

    @property
    def stopped(self) -> bool:
        """The consumer has stopped iterating: the producer should return soon."""
        return self._stop.is_set()

    def put(self, item: T) -> bool:
        """Hand over `item`, waiting for room; False (item dropped) once the consumer stopped."""
        return _put_until_stopped(self._items, item, self._stop)


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def produce_in_background(
    produce: Callable[[Output[T]], None], *, queue_size: int, name: str
) -> Iterator[T]:
    """Run `produce(output)` on a worker thread and yield what it puts, in order.

    At most `queue_size` items wait in between. An exception in `produce` is raised here, after
    the items put before it. However iteration ends (exhausted, an error, or the caller closing
    the iterator early), the worker is told to stop and has finished before this returns.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def work() -> None:
        try:
            produce(Output(items, stop))
        except BaseException as err:  # handed to the consumer, which re-raises it
            _put_until_stopped(items, _Failure(err), stop)
        finally:
            _put_until_stopped(items, _DONE, stop)

    # daemon: never keeps the interpreter alive; `stop` ends it in normal use.
    worker = threading.Thread(target=work, name=name, daemon=True)
    try:
        worker.start()
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        _drain(items)  # wake a worker blocked on a full queue
        if worker.ident is not None:  # it started
            worker.join()


def _put_until_stopped(items: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _drain(items: queue.Queue[object]) -> None:
    try:
        while True:
            items.get_nowait()
    except queue.Empty:
        pass
