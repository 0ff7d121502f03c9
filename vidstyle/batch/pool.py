"""Worker processes for `--jobs N`: each renders one job at a time with `render_job`.

Spawned, not forked: CUDA cannot be used in a forked child, and a clean interpreter does not
inherit the parent's threads (decoder, logging). Each worker talks to the parent over a pipe of
its own, and no lock or queue is shared between processes: a worker killed at any moment
(SIGKILL, the OOM killer) can leave a lock held or half a message written only on its own pipe,
which the parent then reads to its end and closes. (A queue shared by all workers, as
`multiprocessing.Queue` or `concurrent.futures.ProcessPoolExecutor` use, stays locked for every
other worker when one dies holding its lock; and `ProcessPoolExecutor` fails every pending job
when one worker dies, where here only the dead worker's job fails.)

The parent hands the next job to whichever worker is free, so long and short videos balance
themselves. A worker that dies fails only its current job and is replaced. Ctrl-C: the parent
asks every worker to stop (SIGTERM, which they turn into a clean interrupt that saves the
render's progress) and waits for them; a second Ctrl-C kills them.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from vidstyle.batch.jobs import Job, Report
from vidstyle.render.events import Event, Failed, Finished, RenderResult, portable
from vidstyle.render.threads import render_threads

log = logging.getLogger(__name__)


def worker_devices(devices: Sequence[str], workers: int) -> list[str]:
    """The device of each worker: the list taken in turn (`cuda:0,cuda:1` and 4 workers:
    cuda:0, cuda:1, cuda:0, cuda:1), so the renders spread evenly over the devices."""
    return [devices[slot % len(devices)] for slot in range(workers)]


# --------------------------------------------------------------------------------------------
# Messages. Parent to worker: a `Job` to render, or None to stop. Worker to parent: `_Ready`,
# the render's events (`vidstyle.render.events`, its `Finished` or `Failed` last) and `_Log`
# records.


@dataclass(frozen=True)
class _Ready:
    """The worker has started and takes jobs."""


@dataclass(frozen=True)
class _Log:
    record: logging.LogRecord  # prepared (message formatted): it pickles


# --------------------------------------------------------------------------------------------
# The parent


@dataclass
class _Worker:
    slot: int
    process: Any  # multiprocessing's SpawnProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False  # it started and took jobs (so it is replaced if it dies)
    job: Job | None = None  # the job it renders
    told_to_stop: bool = False


class ProcessPool:
    """Renders jobs in `workers` processes; worker i uses `devices[i % len(devices)]`."""

    def __init__(self, devices: Sequence[str], workers: int, threads: int | None = None) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.device_of = worker_devices(devices, workers)
        # Renders side by side on one device each get a share of its memory
        # (vidstyle.render.memory).
        self.sharing = {device: self.device_of.count(device) for device in devices}
        # `--threads` (None: a share of the cores each).
        self.threads = render_threads(threads, renders=workers)
        self.level = logging.getLogger("vidstyle").getEffectiveLevel()

    def render(self, jobs: Sequence[Job], report: Report) -> None:
        """Render `jobs`, reporting to `report`, until each is done or the batch stops; jobs not
        started are left to the caller to account for."""
        pending = deque(jobs)
        workers = {slot: self._spawn(slot) for slot in range(len(self.device_of))}
        handled = 0
        try:
            with _ctrl_c_counted() as presses:
                while workers:
                    try:
                        self._step(workers, pending, report)
                    except KeyboardInterrupt:  # raised by an event handler (the display)
                        presses[0] += 1
                    while handled < presses[0]:
                        handled += 1
                        report.interrupt()
                        pending.clear()
                        _signal_all(workers, signal.SIGTERM if handled == 1 else signal.SIGKILL)
        finally:
            # Workers still running here: the parent failed (an event handler raised).
            _signal_all(workers, signal.SIGTERM)
            for worker in workers.values():
                _stop(worker)

    def _spawn(self, slot: int) -> _Worker:
        device = self.device_of[slot]
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_worker_main,
            args=(child_end, device, self.sharing[device], self.level, self.threads),
            name=f"vidstyle-worker-{slot}",
            daemon=True,
        )
        process.start()
        # Only the worker holds its end now: when it dies, the parent reads the end of the pipe.
        child_end.close()
        return _Worker(slot, process, parent_end)

    def _step(self, workers: dict[int, _Worker], pending: deque[Job], report: Report) -> None:
        """Wait a moment for messages or exits; handle them; give free workers work."""
        waiting = [w.conn for w in workers.values()] + [
            w.process.sentinel for w in workers.values()
        ]
        ready = multiprocessing.connection.wait(waiting, timeout=0.25)
        for worker in list(workers.values()):
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            if not self._receive(worker, report) or not worker.process.is_alive():
                del workers[worker.slot]
                self._lost(worker, report)
                if worker.ready and pending and not report.stopping:
                    workers[worker.slot] = self._spawn(worker.slot)  # keep the parallelism
        for worker in workers.values():
            if not worker.ready or worker.job is not None or worker.told_to_stop:
                continue
            if pending and not report.stopping:
                worker.job = pending.popleft()
                _send(worker, worker.job)
            else:
                worker.told_to_stop = True
                _send(worker, None)

    def _receive(self, worker: _Worker, report: Report) -> bool:
        """Handle every whole message the worker has sent; False once its pipe has ended (the
        worker exited or died, possibly halfway through a message)."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if isinstance(message, _Log):
                    logging.getLogger(message.record.name).handle(message.record)
                elif isinstance(message, _Ready):
                    worker.ready = True
                else:  # an event of the render
                    if isinstance(message, Finished | Failed):
                        worker.job = None
                    report(message)
        except (EOFError, OSError):
            return False
        except Exception as err:  # a garbled message: this worker cannot be trusted any more
            log.debug("worker %d: unreadable message (%s)", worker.slot, err)
            _stop(worker, kill=True)
            return False
        return True

    def _lost(self, worker: _Worker, report: Report) -> None:
        """A worker's pipe has ended: it exited, or died (SIGKILL, out of memory, a crash in C
        code); its job, if it had one, failed."""
        _stop(worker)
        job = worker.job
        if job is None:
            return
        text = (
            f"{job.input}: the worker process rendering it died (exit code "
            f"{worker.process.exitcode}: killed, or out of memory?); run again to resume"
        )
        assert job.output is not None
        report(
            Failed(
                job.number, RenderResult(job.input, job.output, "failed", message=text, exit_code=1)
            )
        )


def _send(worker: _Worker, message: Job | None) -> None:
    with contextlib.suppress(OSError):  # a dead worker: its pipe's end is seen next step
        worker.conn.send(message)


def _signal_all(workers: dict[int, _Worker], signum: int) -> None:
    for worker in workers.values():
        if worker.process.is_alive() and worker.process.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(worker.process.pid, signum)


def _stop(worker: _Worker, *, kill: bool = False) -> None:
    """Make sure the worker's process has ended (waiting up to 30 s for a render to save its
    progress, unless `kill`) and close its pipe."""
    if kill:
        worker.process.kill()
    worker.process.join(timeout=30)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


@contextlib.contextmanager
def _ctrl_c_counted() -> Iterator[list[int]]:
    """Count Ctrl-C presses (in the list's one item) instead of raising KeyboardInterrupt
    wherever the parent happens to be: halfway through reading a worker's message, that would
    lose the pipe's framing. (Only the main thread receives signals; elsewhere Ctrl-C is the
    caller's business.)"""
    presses = [0]
    if threading.current_thread() is not threading.main_thread():
        yield presses
        return

    def count(signum: int, frame: object) -> None:
        presses[0] += 1

    previous = signal.signal(signal.SIGINT, count)
    try:
        yield presses
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------
# The worker


class _Channel:
    """The worker's end of its pipe, shared by the render's thread and the threads that log.

    A message is written whole or not at all: sends are serialised by a lock, and SIGTERM
    (the parent's "stop") arriving while the main thread sends waits until the message is
    written. If the parent is gone, the render stops as for Ctrl-C, saving its progress.
    """

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.sending = False  # the main thread is writing a message
        self.stop_requested = False  # SIGTERM arrived meanwhile

    def send(self, message: object) -> None:
        main = threading.current_thread() is threading.main_thread()
        if main:
            self.sending = True
        try:
            with self.lock:
                self.conn.send(message)
        finally:
            if main:
                self.sending = False
                if self.stop_requested:
                    self.stop_requested = False
                    raise KeyboardInterrupt

    def emit(self, event: Event) -> None:
        """A render's event (`render_job`'s `emit`)."""
        try:
            self.send(portable(event))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise KeyboardInterrupt from None  # orphaned (the parent was killed): save and stop

    def on_sigterm(self, signum: int, frame: object) -> None:
        if self.sending:
            self.stop_requested = True
        else:
            raise KeyboardInterrupt


class _PipeHandler(logging.handlers.QueueHandler):
    """Log records to the parent, which shows them with its own handler."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__(queue=None)  # type: ignore[arg-type]
        self.channel = channel

    def enqueue(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError, EOFError):  # the parent is gone: nobody to tell
            self.channel.send(_Log(record))


def _worker_main(
    conn: multiprocessing.connection.Connection,
    device: str,
    sharing: int,
    level: int,
    threads: int,
) -> None:
    """A worker process: render the jobs the parent sends until it sends None or goes away."""
    channel = _Channel(conn)
    # The terminal's Ctrl-C reaches the whole process group; the parent decides what happens
    # and tells us with SIGTERM, so that a render is stopped exactly once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, channel.on_sigterm)
    logger = logging.getLogger("vidstyle")
    logger.handlers[:] = [_PipeHandler(channel)]
    logger.setLevel(level)
    logger.propagate = False
    try:
        from vidstyle.render.job import render_job

        channel.send(_Ready())
        while True:
            job = conn.recv()
            if job is None:
                return
            assert job.plan is not None
            result = render_job(
                job.plan,
                device,
                job=job.number,
                emit=channel.emit,
                sharing=sharing,
                threads=threads,
            )
            if result.status == "interrupted":
                return
    except (KeyboardInterrupt, EOFError, OSError):
        return  # stopped, or the parent is gone
