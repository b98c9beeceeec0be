"""A model class for ``mesa.batch_run``: PortfolioModel with flat keyword parameters.

    import mesa
    from portfolio_sim.sweep.batch import BatchModel

    results = mesa.batch_run(
        BatchModel,
        parameters={"scenario": "baseline", "years": 5,
                    "closure_percentile": [0, 5, 10],              # a field name unique in the schema
                    "governance__category": ["district_run", "partner_run"],   # or group__field
                    "seed": range(3)},                             # replicates: give seeds explicitly
        iterations=1, data_collection_period=1, number_processes=1, display_progress=False)
    df = pandas.DataFrame(results)   # one row per run x year: the parameters, Step, and every metric

Parameters:

- ``scenario``: a preset name or scenario file (default ``baseline``), a ``Scenario``, or a dict.
- any lever as a keyword: its field name when that name is unique in the schema
  (``closure_percentile=10``), else ``group__field`` (``eligibility__schools="turnaround"``).
- ``overrides``: a mapping of dotted paths, ``{"accountability.closure_percentile": 10}`` (also declared
  assumptions, ``{"assumptions.politics.incumbency": 0.8}``).
- ``years``: simulated years (default: the scenario's ``run.years``). The model stops itself; keep
  batch_run's ``max_steps`` at least ``years`` (its default, 1000, is).
- ``seed`` (or Mesa's ``rng``: an int is used as the seed, a Generator draws one): the run's seed.
  Mesa 3.3's batch_run does not pass a seed per iteration, so without one every model draws a fresh
  seed, like ``mesa.Model``; the seed used is reported in the ``seed`` column. For reproducible
  replicates, pass ``"seed": range(n)`` (or a list of seeds) with ``iterations=1``.

Rows: the DataCollector records year 0 at set-up and every year after, and the model takes one final
no-op step to tell batch_run it has finished, so ``Step`` equals ``year`` and the last year is reported
(batch_run reports indices up to ``model.steps - 1``). The model calls ``release()`` when it finishes, so
thousands of runs in one process do not pile up in Mesa's agent registry.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mesa
import numpy as np
from pydantic import ValidationError

from portfolio_sim.errors import ScenarioError
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.model import PortfolioModel
from portfolio_sim.scenario import GROUPS, Scenario, format_validation_error, load_scenario

RESERVED = {"run.seed": "pass seed=... (or rng=...)", "run.seeds": "one model is one run; use batch_run's "
            "iterations or a list of seeds", "run.years": "pass years=..."}


def _field_index() -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for group, cls in GROUPS.items():
        for name in cls.model_fields:
            index.setdefault(name, []).append(group)
    return index


FIELD_GROUPS = _field_index()


def lever_path(name: str) -> str:
    """A keyword name (``closure_percentile`` or ``accountability__closure_percentile``) as a dotted path."""
    if "__" in name:
        group, _, field = name.partition("__")
        if group in GROUPS and field in GROUPS[group].model_fields:
            return f"{group}.{field}"
        raise ScenarioError(f"{name}: not a scenario field (group__field); groups: {', '.join(GROUPS)}")
    groups = FIELD_GROUPS.get(name)
    if not groups:
        close = difflib.get_close_matches(name, list(FIELD_GROUPS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ScenarioError(f"{name}: not a scenario field{hint} (any field is accepted as group__field)")
    if len(groups) > 1:
        raise ScenarioError(f"{name}: ambiguous, a field of " + ", ".join(groups) + "; use "
                            + " or ".join(f"{g}__{name}" for g in groups))
    return f"{groups[0]}.{name}"


def build_batch_scenario(scenario: str | Path | Scenario | Mapping[str, Any] = "baseline",
                         overrides: Mapping[str, Any] | None = None, levers: Mapping[str, Any] | None = None,
                         years: int | None = None) -> Scenario:
    """The scenario of one batch run: `scenario` with dotted `overrides`, keyword `levers` and `years`."""
    if isinstance(scenario, Scenario):
        base = scenario
    elif isinstance(scenario, Mapping):
        try:
            base = Scenario.model_validate(dict(scenario))
        except ValidationError as exc:
            raise ScenarioError(format_validation_error(exc, "scenario")) from None
    else:
        base = load_scenario(scenario)
    data = base.model_dump(mode="json")
    changes: dict[str, Any] = {}
    for path, value in (overrides or {}).items():
        changes[str(path)] = value
    for name, value in (levers or {}).items():
        changes[lever_path(name)] = value
    if years is not None:
        changes["run.years"] = int(years)
    for path, value in changes.items():
        parts = path.split(".")
        if parts[0] == "assumptions":     # assumptions.group.name (see `portfolio-sim assumptions`)
            if len(parts) != 3 or parts[1] not in data["assumptions"] or parts[2] not in data["assumptions"][parts[1]]:
                raise ScenarioError(f"{path}: not a declared assumption (assumptions.group.name)")
            data["assumptions"][parts[1]][parts[2]] = value
            continue
        if len(parts) != 2 or parts[0] not in GROUPS or parts[1] not in GROUPS[parts[0]].model_fields:
            raise ScenarioError(f"{path}: not a scenario field (group.field)")
        if path in RESERVED and not (path == "run.years" and years is not None and value == int(years)):
            raise ScenarioError(f"{path}: {RESERVED[path]}")
        data[parts[0]][parts[1]] = value
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, "batch parameters")) from None


def _seed_from(seed: Any, rng: Any) -> int:
    if seed is not None and rng is not None:
        raise ValueError("pass either seed or rng, not both")
    if seed is None and rng is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    value = seed if seed is not None else rng
    if isinstance(value, np.random.Generator):
        return int(value.integers(0, 2**32))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ScenarioError(f"seed: expected an integer from 0 to {2**32 - 1}, got {value!r}")
    if not 0 <= int(value) <= 2**32 - 1:
        raise ScenarioError(f"seed: expected an integer from 0 to {2**32 - 1}, got {value!r}")
    return int(value)


def _metric(name: str, model: PortfolioModel) -> Any:
    return model.metrics[name]


def _seed(model: PortfolioModel) -> int:
    return model.seed


class BatchModel(PortfolioModel):
    """PortfolioModel with flat keyword parameters, for ``mesa.batch_run`` (see the module docstring)."""

    def __init__(self, scenario: str | Path | Scenario | Mapping[str, Any] = "baseline",
                 overrides: Mapping[str, Any] | None = None, years: int | None = None, seed: Any = None,
                 rng: Any = None, **levers: Any):
        resolved = build_batch_scenario(scenario, overrides, levers, years)
        super().__init__(resolved, _seed_from(seed, rng))
        self.years = resolved.run.years
        self.finished = False
        # Same reporters as PortfolioModel, plus the seed (batch_run rows then say which seed ran).
        reporters: dict[str, Any] = {name: functools.partial(_metric, name) for name in METRIC_COLUMNS}
        reporters["seed"] = _seed
        self.datacollector = mesa.DataCollector(model_reporters=reporters)
        self.datacollector.collect(self)

    def step(self) -> None:
        if self.year < self.years:
            super().step()
            return
        # The no-op step after the last year: stop, and free Mesa's registry entry for this model.
        if not self.finished:
            self.finished = True
            self.running = False
            self.release()
