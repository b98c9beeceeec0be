"""Scenario discovery (issue 12): PRIM recovers a known failure region; the CLI reads a real sweep store."""

import numpy as np
import pandas as pd
import pytest

from portfolio_sim.cli import main
from portfolio_sim.errors import ScenarioError
from portfolio_sim.uncertainty.discovery import discover


def test_prim_recovers_a_known_failure_region_and_delta_ranks_its_factors():
    rng = np.random.default_rng(0)
    n = 400
    x = pd.DataFrame({"a": rng.uniform(0, 1, n), "b": rng.uniform(0, 1, n), "noise": rng.uniform(0, 1, n),
                      "kind": rng.choice(["p", "q"], n)})
    y = pd.Series(np.where((x["a"] > 0.7) & (x["b"] < 0.4), 0.0, 1.0) + rng.normal(0, 0.05, n))
    d = discover(x, y, "out", below=0.5)
    lim = d.limits.set_index("factor")
    assert set(lim.index) == {"a", "b"}
    assert abs(lim.loc["a", "low"] - 0.7) < 0.05 and abs(lim.loc["b", "high"] - 0.4) < 0.05
    assert d.coverage >= 0.9 and d.density >= 0.9
    assert list(d.sensitivity["factor"][:2]) in (["a", "b"], ["b", "a"])


def test_threshold_that_nothing_crosses_is_a_clear_error():
    x = pd.DataFrame({"a": np.linspace(0, 1, 20)})
    with pytest.raises(ScenarioError, match="PRIM needs some runs on each side"):
        discover(x, pd.Series(np.ones(20)), "out", below=0.0)


SPEC = """
name = "disc_tiny"
base = "baseline"
years = 2
replicates = 1
seed = 3
[set]
"district.students" = 1200
"district.schools" = 6
[factors."assumptions.achievement.leader_effect"]
bounds = [0.03, 0.11]
[factors."choice.information_quality"]
bounds = [0.1, 0.9]
[design]
kind = "lhs"
samples = 24
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec_text = SPEC
    d = tmp_path_factory.mktemp("disc")
    spec = d / "spec.toml"
    spec.write_text(spec_text)
    db = d / "s.db"
    assert main(["sweep", str(spec), "--db", str(db)]) == 0
    return db


def test_cli_discover_on_a_sweep_store(store, tmp_path, capsys):
    from portfolio_sim.sweep import Results
    with Results(store) as r:
        y = r.final(["mean_achievement"])["mean_achievement"]
    capsys.readouterr()
    out = tmp_path / "o"
    rc = main(["discover", str(store), "--outcome", "mean_achievement", "--above", f"{y.median():.6f}",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "runs fail" in text and "coverage" in text and "SALib delta" in text
    for name in ("boxes.csv", "sensitivity.csv", "prim_tradeoff.html", "sensitivity.html"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "sensitivity.csv")) == 2


@pytest.mark.parametrize("argv,needle", [
    (["/nonexistent/x.db", "--outcome", "mean_achievement", "--below", "0"], "no such results store"),
    (["STORE", "--outcome", "no_such_metric", "--below", "0"], "no_such_metric"),
    (["STORE", "--outcome", "mean_achievement", "--below", "-99"], "PRIM needs some runs"),
    (["STORE", "--outcome", "mean_achievement", "--below", "0", "--year", "9"], "--year 9"),
    (["STORE", "--outcome", "mean_achievement"], "--below"),
])
def test_cli_discover_bad_input_exits_2(store, capsys, argv, needle):
    argv = [str(store) if a == "STORE" else a for a in argv]
    assert main(["discover", *argv]) == 2
    assert needle in capsys.readouterr().err
