"""The output registry (portfolio_sim.outputs) matches what a run produces and what its users show."""

from __future__ import annotations

import numpy as np
import pytest

from portfolio_sim import outputs
from portfolio_sim.cli import KEY_METRICS as CLI_KEYS
from portfolio_sim.dashboard import figures
from portfolio_sim.kernel import single_run
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.scenario import Scenario
from portfolio_sim.sweep.store import INT_METRICS


@pytest.fixture(scope="module")
def yearly():
    s = Scenario.model_validate({"district": {"students": 3000, "schools": 12},
                                 "eligibility": {"schools": "turnaround"}, "run": {"years": 3}})
    return single_run(s, 1).yearly


def test_the_registry_is_the_yearly_column_list(yearly):
    assert list(yearly.columns) == METRIC_COLUMNS == [m.name for m in outputs.METRICS]


def test_declared_dtypes_match_a_run(yearly):
    for m in outputs.METRICS:
        values = yearly[m.name].dropna().to_numpy(dtype=float)
        whole = bool(np.all(values == np.round(values)))
        assert whole or m.dtype == "float", f"{m.name}: declared int, values {values[:5]}"
        if m.dtype == "int":
            assert whole, m.name
    assert INT_METRICS == {m.name for m in outputs.METRICS if m.dtype == "int"} - {"year"}


def test_charts_and_key_numbers_use_registered_metrics():
    for chart in outputs.CHARTS:
        unknown = [name for name in chart.metrics if name not in outputs.BY_NAME]
        assert not unknown, (chart.key, unknown)
    assert [c.key for c in figures.CHARTS] == [c.key for c in outputs.CHARTS]
    keys = [m.name for m in outputs.KEY_METRICS]
    assert [k.metric for k in figures.KEY_METRICS] == keys == [row[0] for row in CLI_KEYS]


@pytest.mark.parametrize("value, fmt, signed, text", [
    (0.1234, "pct", False, "12.3%"), (0.02, "pct", True, "+2.0 pts"), (1234.0, "count", False, "1,234"),
    (2.5, "count", False, "2.5"), (-0.0456, "sd", False, "-0.046"), (0.456, "frac", False, "0.46"),
    (9876.4, "money", False, "$9,876"), (float("nan"), "frac", False, "n/a")])
def test_format_value(value, fmt, signed, text):
    assert outputs.format_value(value, fmt, signed) == text
