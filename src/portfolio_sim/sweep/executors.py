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
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from portfolio_sim.errors import ScenarioError

EXECUTORS = ("serial", "process", "dask")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CONNECT_TIMEOUT = "20s"   # how long to try reaching a Dask scheduler


class ExecutorError(ScenarioError):
    """An executor cannot be started as asked (e.g. an unreachable scheduler): bad input, exit 2."""


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
        window:   how many tasks to keep in flight (enough to keep every worker busy).
        workers:  worker count (processes, or Dask worker threads in total).
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
        self.executor: cf.Executor = self._start()

    def _start(self) -> cf.Executor:
        if self.kind == "serial":
            self.workers = 1
            self.window = 1
            self.description = "serial"
            return SerialExecutor()
        if self.kind == "process":
            # One BLAS/OpenMP thread per worker process (as Dask's nanny does): N single-threaded workers
            # on N cores, not N x cores threads fighting. Children inherit the environment at spawn.
            for var in THREAD_VARS:
                os.environ.setdefault(var, "1")
            self.window = 4 * self.workers
            self.description = f"process ({self.workers} worker{'s' if self.workers > 1 else ''})"
            return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
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
        self.window = max(8, 4 * self.workers)
        return self._client.get_executor(pure=False)

    @property
    def recoverable_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions after which the executor itself is broken and must be restarted."""
        return (BrokenProcessPool,) if self.kind == "process" else ()

    def restart(self) -> None:
        """Replace a broken pool (a worker process died) with a fresh one."""
        self.close(wait=False)
        self.executor = self._start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> cf.Future:
        return self.executor.submit(fn, *args)

    def close(self, wait: bool = True) -> None:
        try:
            self.executor.shutdown(wait=wait, cancel_futures=True)
        except TypeError:  # executors without cancel_futures
            self.executor.shutdown(wait=wait)
        except Exception:
            pass
        if self._client is not None:
            try:
                self._client.close()
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


def open_executor(kind: str = "serial", workers: int = 1, scheduler: str | None = None,
                  processes: bool = True) -> SweepExecutor:
    """Start an executor: ``serial``, ``process`` (``workers`` processes) or ``dask`` (a LocalCluster of
    ``workers`` processes — threads with ``processes=False`` — or the cluster at ``scheduler``)."""
    return SweepExecutor(kind, workers, scheduler, processes)


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))
