"""Executors behind one `concurrent.futures` interface: serial, a local process pool, Dask distributed.

:func:`open_executor` returns a :class:`SweepExecutor` whose ``executor`` is a real
:class:`concurrent.futures.Executor` (``submit`` returns a :class:`concurrent.futures.Future`), so the
driver's loop is the same for all three:

- ``serial``   runs each task in the driver process when it is submitted (no parallelism, easiest to debug).
- ``process``  :class:`concurrent.futures.ProcessPoolExecutor` with the "spawn" start method (Mesa forces
  it); workers import :func:`portfolio_sim.sweep.task.run_task` by module path.
- ``dask``     a ``distributed.Client``'s executor (``Client.get_executor``): a ``LocalCluster`` of
  ``workers`` single-threaded worker processes when no scheduler address is given, or the cluster at
  ``scheduler`` (``tcp://host:8786``). Remote workers need portfolio_sim installed (the same version).

Workers only compute; results come back to the driver, which alone writes to the database.

Failure behaviour (docs/SWEEPS.md, "Running on a cluster"): process-pool workers exit when the driver dies
(``PR_SET_PDEATHSIG`` on Linux plus a watchdog thread polling the parent pid elsewhere) and ignore Ctrl-C
(the driver ends them); :meth:`SweepExecutor.kill` ends them at once. A process-pool run's clock
(``--run-timeout``) starts when a worker begins it: each worker writes the task it starts, and when, into its
slot of a shared array (:meth:`SweepExecutor.start_times`), so neither a task waiting in the pool's queue nor a
worker still starting up counts against the run. With Dask, :meth:`SweepExecutor.alive`
tells the driver when the scheduler connection is lost, :meth:`SweepExecutor.reconnect` waits a bounded
time for it to come back, and :attr:`SweepExecutor.window` follows the cluster as workers join and leave.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from portfolio_sim.errors import ScenarioError

EXECUTORS = ("serial", "process", "dask")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CONNECT_TIMEOUT = "20s"   # how long to try reaching a Dask scheduler


WATCHDOG_INTERVAL = 1.0   # seconds between a pool worker's checks that its driver is still alive
MIN_DASK_WINDOW = 4       # tasks queued on a cluster with no worker yet (they start when one joins)


class ExecutorError(ScenarioError):
    """An executor cannot be started as asked (e.g. an unreachable scheduler): bad input, exit 2."""


class SchedulerLost(RuntimeError):
    """The Dask scheduler connection is gone and did not come back in time: the sweep cannot continue."""


def _exit_with_parent(parent: int, deathsig: bool = True) -> None:
    """Pool worker initializer: end this worker when the driver (``parent``) dies, even by ``kill -9``.

    On Linux the kernel sends SIGKILL when the parent exits (prctl PR_SET_PDEATHSIG); everywhere a daemon
    thread polls the parent pid (a worker re-parented to init sees another ppid) and exits. Ctrl-C in a
    terminal reaches the whole process group: workers ignore it and the driver ends them.

    `deathsig=False` for pools started from short-lived threads (the dashboard's): the kernel's signal
    follows the thread that forked the worker, not the process, so only the watchdog applies there."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if deathsig and sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:                               # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="portfolio-sim-parent-watchdog", daemon=True).start()


# -- process-pool run clocks ---------------------------------------------------------------------------
# A process pool marks a future "running" when it moves the task into its call queue, before any worker takes
# it (and while a fresh worker may still be importing), so the driver cannot time a run from that. Each
# worker instead records in its own slot of a shared array the serial number of the task it starts and the
# time (CLOCK_MONOTONIC: one clock for every process on the machine). Slot k holds [serial, start time].
_start_board: Any = None
_start_slot = -1


def _init_pool_worker(parent: int, board: Any, counter: Any) -> None:
    """Process-pool worker initializer: exit with the driver, load the model (seconds on a busy machine,
    which is the worker starting up, not its first run), and take a slot on the start board."""
    global _start_board, _start_slot
    _exit_with_parent(parent)
    import portfolio_sim.kernel  # noqa: F401
    import portfolio_sim.scenario  # noqa: F401
    with counter.get_lock():
        _start_slot = counter.value % (len(board) // 2)
        counter.value += 1
    _start_board = board


def _announced(serial: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in a pool worker after recording that task ``serial`` starts now."""
    if _start_board is not None:
        _start_board[2 * _start_slot + 1] = time.monotonic()   # the time first: a reader that sees the
        _start_board[2 * _start_slot] = serial                 # new serial also sees its time
    return fn(*args)


class SerialExecutor(cf.Executor):
    """Runs each task at `submit` time in this process and returns an already-completed Future."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        if self._shutdown:
            raise RuntimeError("cannot submit after shutdown")
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class SweepExecutor:
    """A concurrent.futures executor plus what the driver needs to use it well.

    Attributes:
        executor: the `concurrent.futures.Executor`.
        window:   how many tasks to keep in flight (enough to keep every worker busy); for Dask it follows
                  the cluster's current thread count, so workers that join later are used.
        workers:  worker count (processes, or Dask worker threads in total) when started.
        description: e.g. "process (2 workers)" or "dask tcp://10.0.0.5:8786 (64 threads)".
    """

    def __init__(self, kind: str, workers: int = 1, scheduler: str | None = None, processes: bool = True):
        if kind not in EXECUTORS:
            raise ExecutorError(f"--executor {kind!r}: allowed: one of " + ", ".join(EXECUTORS))
        if workers < 1:
            raise ExecutorError(f"--workers {workers}: allowed: an integer >= 1")
        if scheduler and kind != "dask":
            raise ExecutorError("--scheduler needs --executor dask")
        self.kind, self.workers, self.scheduler, self.processes = kind, workers, scheduler, processes
        self._client: Any = None
        self._cluster: Any = None
        self._board: Any = None                      # process pools: the workers' start board
        self._serials: dict[cf.Future, int] = {}     # process pools: each future's task serial number
        self._next_serial = 1                        # 0 marks an empty slot
        self.executor: cf.Executor = self._start()

    def _start(self) -> cf.Executor:
        if self.kind == "serial":
            self.workers = 1
            self._window = 1
            self.description = "serial"
            return SerialExecutor()
        if self.kind == "process":
            # One BLAS/OpenMP thread per worker process (as Dask's nanny does): N single-threaded workers
            # on N cores, not N x cores threads fighting. Children inherit the environment at spawn.
            for var in THREAD_VARS:
                os.environ.setdefault(var, "1")
            self._window = 2 * self.workers
            self.description = f"process ({self.workers} worker{'s' if self.workers > 1 else ''})"
            context = multiprocessing.get_context("spawn")
            self._board = context.RawArray("d", 2 * self.workers)
            self._serials = {}
            return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                          initializer=_init_pool_worker,
                                          initargs=(os.getpid(), self._board, context.Value("i", 0)))
        return self._start_dask()

    def _start_dask(self) -> cf.Executor:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dask is part of the sweep extra
            raise ExecutorError(f"--executor dask needs dask[distributed] (pip install 'portfolio_sim[sweep]'): "
                                f"{exc}") from None
        for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # A lost scheduler is the driver's to report (one clear message and exit 3), not a log traceback.
        for name in ("distributed.client", "distributed.comm", "distributed.batched"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=CONNECT_TIMEOUT)
            except Exception as exc:
                raise ExecutorError(f"--scheduler {self.scheduler}: cannot connect ({type(exc).__name__}: "
                                    f"{exc})") from None
            threads = sum(self._client.nthreads().values()) or 1
            self.workers = threads
            self.description = f"dask {self.scheduler} ({threads} worker thread{'s' if threads > 1 else ''})"
        else:
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=self.processes,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            self._client = Client(self._cluster)
            mode = "processes" if self.processes else "threads"
            self.description = f"dask LocalCluster ({self.workers} worker {mode})"
        self._window = max(MIN_DASK_WINDOW, 2 * self.workers)
        return _DaskExecutor(self)

    # -- the cluster as it is now ---------------------------------------------------------------
    def current_threads(self) -> int:
        """Worker threads in the cluster now (the scheduler's periodic report to the client, no round
        trip); the fixed worker count for the local executors."""
        if self.kind != "dask" or self._client is None:
            return self.workers
        try:
            # The client refreshes this every couple of seconds by itself (cluster totals); a call to
            # scheduler_info() would block while the scheduler is unreachable.
            info = self._client._scheduler_identity or {}
            if "total_threads" in info:
                return int(info["total_threads"])
            return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        except Exception:
            return 0

    @property
    def window(self) -> int:
        if self.kind != "dask":
            return self._window
        return max(MIN_DASK_WINDOW, 2 * self.current_threads())

    def alive(self) -> bool:
        """False when the Dask scheduler connection is lost (the client is reconnecting, or gave up)."""
        if self.kind != "dask" or self._client is None:
            return True
        return self._client.status == "running"

    def reconnect(self, timeout: float, should_stop: Callable[[], bool] = lambda: False) -> float:
        """Wait up to ``timeout`` seconds for the scheduler to come back (the client reconnects to the same
        address by itself; a client that gave up is replaced). Returns the seconds it took; raises
        :class:`SchedulerLost` when it does not come back."""
        start = time.monotonic()
        address = self.scheduler or (self._cluster.scheduler_address if self._cluster is not None else None)
        while time.monotonic() - start < timeout:
            if should_stop():
                raise KeyboardInterrupt
            status = self._client.status if self._client is not None else "closed"
            if status == "running":
                return time.monotonic() - start
            if status in ("closed", "closing", "failed") and address:
                try:
                    from distributed import Client
                    if self._client is not None:
                        try:
                            self._client.close(timeout=1)
                        except Exception:
                            pass
                    left = max(1.0, min(5.0, timeout - (time.monotonic() - start)))
                    self._client = Client(address, timeout=f"{left}s")
                    continue
                except Exception:
                    self._client = None
            time.sleep(0.2)
        raise SchedulerLost(f"lost the Dask scheduler {address or ''} and it did not come back within "
                            f"{timeout:g}s")

    def on_workers(self, futures: list[cf.Future]) -> set[cf.Future]:
        """Which of these Dask futures a worker is processing now (queued ones are not running yet, so a
        --run-timeout does not count their wait); all of them for the local executors."""
        if self.kind != "dask" or not isinstance(self.executor, _DaskExecutor) or self._client is None:
            return set(futures)
        if not self.alive():
            return set()
        try:
            processing = self._client.sync(self._client.scheduler.processing, workers=None, callback_timeout=5)
        except Exception:
            return set()
        keys = {k for ks in processing.values() for k in ks}
        return {f for f in futures if (df := self.executor.dask_futures.get(f)) is not None and df.key in keys}

    def start_times(self, futures: list[cf.Future]) -> dict[cf.Future, float]:
        """When a process-pool worker began each of these futures' tasks (``time.monotonic``), for those a
        worker is running now; tasks still queued, or whose worker is starting up, are absent."""
        if self._board is None or not futures:
            return {}
        board = list(self._board)
        started = {int(board[2 * k]): board[2 * k + 1] for k in range(len(board) // 2) if board[2 * k]}
        return {f: started[s] for f in futures if (s := self._serials.get(f)) in started}

    def cancel_hung(self, future: cf.Future) -> None:
        """Stop a run that exceeded its time: Dask restarts the worker running it (its nanny starts a fresh
        process); a process pool cannot stop one task, so the driver kills and restarts the whole pool."""
        if self.kind == "dask" and isinstance(self.executor, _DaskExecutor):
            self.executor.restart_worker_of(future)

    def kill(self) -> None:
        """End the worker processes now (Ctrl-C, SIGTERM, a hung run in a process pool)."""
        if self.kind == "process" and isinstance(self.executor, cf.ProcessPoolExecutor):
            procs = list((getattr(self.executor, "_processes", None) or {}).values())
            for proc in procs:
                try:
                    proc.kill()
                except Exception:
                    pass
        self.close(wait=False)

    @property
    def recoverable_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions after which the executor itself is broken and must be restarted."""
        return (BrokenProcessPool,) if self.kind == "process" else ()

    def restart(self) -> None:
        """Replace a broken pool (a worker process died) with a fresh one."""
        self.close(wait=False)
        self.executor = self._start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> cf.Future:
        if self._board is None:
            return self.executor.submit(fn, *args)
        serial, self._next_serial = self._next_serial, self._next_serial + 1
        future = self.executor.submit(_announced, serial, fn, *args)
        self._serials[future] = serial
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: cf.Future) -> None:
        self._serials.pop(future, None)

    def close(self, wait: bool = True) -> None:
        if self._client is not None and not wait and self._client.status == "running":
            # Ending early (Ctrl-C, an abort): forget the queued tasks so the cluster does not run them.
            try:
                self._client.cancel(list(getattr(self.executor, "dask_futures", {}).values()), force=True)
            except Exception:
                pass
        try:
            self.executor.shutdown(wait=wait, cancel_futures=True)
        except TypeError:  # executors without cancel_futures
            self.executor.shutdown(wait=wait)
        except Exception:
            pass
        if self._client is not None:
            try:
                if self._client.status == "running":
                    self._client.close(timeout=2 if not wait else None)
                else:   # the scheduler is gone: do not wait for it to say goodbye
                    self._client.close(timeout=0.5)
            except Exception:
                pass
            self._client = None
        if self._cluster is not None:
            try:
                self._cluster.close()
            except Exception:
                pass
            self._cluster = None

    def __enter__(self) -> SweepExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(wait=exc[0] is None)


class _DaskExecutor(cf.Executor):
    """``Client.submit`` behind the concurrent.futures interface (as ``Client.get_executor`` does), keeping
    each task's Dask future so a hung run's worker can be restarted and queued tasks cancelled."""

    def __init__(self, owner: SweepExecutor):
        self.owner = owner
        self.dask_futures: dict[cf.Future, Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        client = self.owner._client
        dask_future = client.submit(fn, *args, pure=False, **kwargs)
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        self.dask_futures[future] = dask_future

        async def cascade() -> None:       # on the client's event loop, as Client.get_executor does
            try:
                result = await dask_future._result(raiseit=False)
                status = dask_future.status
            except BaseException as exc:  # noqa: BLE001 - handed to the driver through the future
                result, status = exc, "error"
            self.dask_futures.pop(future, None)
            if future.done():
                return
            if status == "finished":
                future.set_result(result)
            elif status == "cancelled":
                future.set_exception(cf.CancelledError("the Dask scheduler cancelled the task (connection lost?)"))
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                try:
                    _typ, exc, tb = result
                    future.set_exception(exc.with_traceback(tb))
                except BaseException as exc:  # noqa: BLE001
                    future.set_exception(exc)

        client.loop.add_callback(cascade)
        return future

    def restart_worker_of(self, future: cf.Future) -> None:
        dask_future = self.dask_futures.pop(future, None)
        client = self.owner._client
        if dask_future is None or client is None:
            return
        try:
            processing = client.sync(client.scheduler.processing, workers=None, callback_timeout=5)
            workers = [w for w, keys in processing.items() if dask_future.key in keys]
            dask_future.cancel(force=True)
            if workers:   # the nanny starts a fresh worker process; its other tasks are rescheduled
                client.restart_workers(workers, timeout=30, raise_for_error=False)
        except Exception:
            pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.dask_futures.clear()


def open_executor(kind: str = "serial", workers: int = 1, scheduler: str | None = None,
                  processes: bool = True) -> SweepExecutor:
    """Start an executor: ``serial``, ``process`` (``workers`` processes) or ``dask`` (a LocalCluster of
    ``workers`` processes — threads with ``processes=False`` — or the cluster at ``scheduler``)."""
    return SweepExecutor(kind, workers, scheduler, processes)


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))
