"""The mechanisms of the yearly loop, and the contract each one declares.

One module per mechanism. Each module's docstring says what it models and which seed passage it rests
on; each declares, next to its functions, a module-level `MECHANISM = Mechanism(...)`: its place in the
year, the function the model calls, the state it reads and writes, and its random stream. The model
runs the declared mechanisms in `order` (`year()`), and derives its random streams from them
(`stream_names()`); nothing else lists the mechanisms. Adding one: docs/ODD.md, "How to add a
mechanism".

State is named as `<table>.<column>` (`students.grade`, `schools.rating_pct`, `operators.capacity`;
the tables and owners: `portfolio_sim.state`), `model.<attribute>` (`portfolio_sim.state.MODEL_STATE`)
or `stream.<name>` (a random stream's state: drawing from it is a write). `reads` also names scenario
groups (`scenario.politics`). A mechanism's effective writes are its own `writes` plus the writes of
the `Action`s it `calls` (shared helpers: the life-cycle functions, `talent.new_leaders`, ...).
`tests/test_contracts.py` hashes all state before and after every mechanism over a busy run and fails
if a mechanism changed anything it did not declare, or declares a write the state table does not give
it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from portfolio_sim.state import Column

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Streams drawn while the model is built (district, starting state, operators), before any mechanism.
SETUP_STREAMS = ("district", "init", "operators")


@dataclass(frozen=True)
class Action:
    """A shared state change that several mechanisms call (e.g. `lifecycle.close_school`)."""

    name: str                      # "module.function"
    writes: tuple[str, ...]
    streams: tuple[str, ...] = ()  # random streams it draws from
    calls: tuple[str, ...] = ()    # other actions it calls, by name

    @property
    def module(self) -> str:
        return self.name.split(".")[0]

    @property
    def all_writes(self) -> frozenset[str]:
        out = set(self.writes) | {f"stream.{s}" for s in self.streams}
        for name in self.calls:
            out |= action(name).all_writes
        return frozenset(out)


def action(name: str) -> Action:
    """The declared `Action` called `name` ("lifecycle.close_school", "talent.new_leaders")."""
    module_name, _ = name.split(".")
    module = importlib.import_module("portfolio_sim.lifecycle" if module_name == "lifecycle"
                                     else f"{__name__}.{module_name}")
    for a in getattr(module, "ACTIONS", ()):
        if a.name == name:
            return a
    raise KeyError(f"no action {name!r} declared in {module.__name__}.ACTIONS")


@dataclass(frozen=True)
class Mechanism:
    """What one mechanism is, when it runs and what it may touch."""

    name: str                             # the module's name, e.g. "politics"
    order: float                          # place in the year (smaller first); see docs/ODD.md
    step: Callable[[PortfolioModel], None]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    stream: str | None = None             # its own random stream (`model.streams[stream]`)
    stream_index: int | None = None       # that stream's fixed spawn index (never reuse or renumber)
    calls: tuple[str, ...] = ()           # shared actions it calls, by name ("lifecycle.close_school")
    phase: str = ""                       # the ODD's name for its part of the year, e.g. "schooling"
    assumptions: str | None = None        # its group of declared assumptions, if any
    state: tuple[Column, ...] = ()        # model-level state of its own (`model.<name>`, set to `fill` at start)

    @property
    def all_writes(self) -> frozenset[str]:
        """Its own writes and those of the actions it calls (drawing from a stream counts as a write)."""
        out = set(self.writes) | ({f"stream.{self.stream}"} if self.stream else set())
        out |= {f"model.{c.name}" for c in self.state}
        for name in self.calls:
            out |= action(name).all_writes
        return frozenset(out)


@cache
def year() -> tuple[Mechanism, ...]:
    """Every declared mechanism of this package, in the order of the year."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        mechanism = getattr(module, "MECHANISM", None)
        if isinstance(mechanism, Mechanism):
            found.append(mechanism)
    return tuple(sorted(found, key=lambda m: m.order))


@cache
def stream_indexes() -> dict[str, int]:
    """Random stream name -> its spawn index from the run's seed: the set-up streams first, then each
    mechanism's own (an explicit index, so adding a mechanism never changes another one's draws)."""
    out = {name: i for i, name in enumerate(SETUP_STREAMS)}
    for m in year():
        if m.stream is None:
            continue
        if m.stream_index is None or m.stream_index in out.values() or m.stream in out:
            raise ValueError(f"mechanism {m.name!r}: stream {m.stream!r} needs its own unused stream_index")
        out[m.stream] = m.stream_index
    return out
