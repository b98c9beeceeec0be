"""`mesa.batch_run` with the BatchModel adapter: flat keyword levers, seeds, Step == year, model-level
metrics in the results, the same values as the run kernel, and no leak in Mesa's agent registry."""

from __future__ import annotations

import inspect

import mesa
import pandas as pd
import pytest

from portfolio_sim.errors import ScenarioError
from portfolio_sim.kernel import single_run
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.scenario import Scenario
from portfolio_sim.sweep.batch import BatchModel, build_batch_scenario, lever_path

TINY = {"district": {"students": 2000, "schools": 12, "operators": 3}, "run": {"years": 3},
        "eligibility": {"schools": "turnaround", "conversions_per_year": 2}}


def test_batch_run_signature_is_what_the_adapter_expects() -> None:
    """Mesa 3.3's batch_run passes each parameter combination as keyword arguments (no seed of its own),
    steps while `model.running` and reads `model.datacollector`."""
    params = inspect.signature(mesa.batch_run).parameters
    assert list(params)[:2] == ["model_cls", "parameters"]
    assert {"iterations", "max_steps", "data_collection_period", "number_processes"} <= set(params)


def test_batch_run_rows_match_single_run() -> None:
    before = len(mesa.Agent._ids)
    results = mesa.batch_run(
        BatchModel,
        parameters={"scenario": [TINY], "closure_percentile": [0, 20], "governance__category": "partner_run",
                    "seed": [5, 6]},
        iterations=1, data_collection_period=1, number_processes=1, display_progress=False)
    df = pd.DataFrame(results)
    assert len(df) == 2 * 2 * 4                       # 4 runs x years 0..3
    assert (df["Step"] == df["year"]).all()
    assert set(METRIC_COLUMNS) <= set(df.columns) and "seed" in df.columns
    assert len(mesa.Agent._ids) == before             # every model released itself
    for (closure, seed), rows in df.groupby(["closure_percentile", "seed"]):
        scenario = Scenario.model_validate({**TINY, "accountability": {"closure_percentile": closure},
                                            "governance": {"category": "partner_run"}})
        direct = single_run(scenario, int(seed)).yearly
        got = rows.sort_values("year")[list(direct.columns)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, direct, check_exact=True, check_dtype=False)


def test_batch_run_last_step_only_and_fresh_seeds_without_a_seed() -> None:
    results = mesa.batch_run(BatchModel, parameters={"scenario": [TINY], "years": 2}, iterations=3,
                             number_processes=1, display_progress=False)
    df = pd.DataFrame(results)
    assert list(df["year"]) == [2, 2, 2] and list(df["Step"]) == [2, 2, 2]   # the final year is reported
    assert df["seed"].nunique() == 3                  # like mesa.Model: a fresh seed per model, reported


def test_batch_run_in_worker_processes() -> None:
    """number_processes > 1: Mesa's pool (spawn) imports BatchModel by module path."""
    results = mesa.batch_run(BatchModel, parameters={"scenario": "baseline", "students": 2000, "district__schools": 12,
                                                     "years": 1, "seed": [1, 2]},
                             iterations=1, number_processes=2, display_progress=False)
    df = pd.DataFrame(results).sort_values("seed")
    assert list(df["seed"]) == [1, 2] and set(df["year"]) == {1}
    direct = single_run(Scenario.model_validate({"district": {"students": 2000, "schools": 12},
                                                 "run": {"years": 1}}), 2).yearly
    assert df.iloc[1]["mean_achievement"] == direct.iloc[-1]["mean_achievement"]


def test_model_runs_itself_and_releases() -> None:
    before = len(mesa.Agent._ids)
    model = BatchModel(TINY, overrides={"accountability.closure_percentile": 10}, rng=3)
    assert model.seed == 3 and model.scenario.accountability.closure_percentile == 10
    model.run_model()
    assert model.year == 3 and not model.running
    assert len(mesa.Agent._ids) == before


def test_lever_names() -> None:
    assert lever_path("closure_percentile") == "accountability.closure_percentile"
    assert lever_path("eligibility__schools") == "eligibility.schools"
    with pytest.raises(ScenarioError, match="ambiguous.*district__schools or eligibility__schools"):
        lever_path("schools")
    with pytest.raises(ScenarioError, match="did you mean closure_percentile"):
        lever_path("closure_percentil")
    with pytest.raises(ScenarioError, match="pass seed"):
        build_batch_scenario(TINY, levers={"run__seed": 4})
    with pytest.raises(ScenarioError, match="closure_percentile.*from 0.0 to 50.0"):
        build_batch_scenario(TINY, levers={"closure_percentile": 90})
    with pytest.raises(ScenarioError, match="seed: expected an integer"):
        BatchModel(TINY, seed="x")
