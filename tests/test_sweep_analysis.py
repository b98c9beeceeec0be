"""The pandas analysis API (summaries, sensitivity indices via SALib) and the plotly helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from portfolio_sim.sweep import plots
from portfolio_sim.sweep.analysis import Results, load_yearly
from portfolio_sim.sweep.runner import run_sweep
from portfolio_sim.sweep.store import StoreError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.toml"

SAMPLED = """\
name = "{name}"
years = 2
replicates = {replicates}
seed = 5
[set]
"district.schools" = 12
[design]
kind = "{kind}"
samples = {samples}
[factors."district.students"]
bounds = [1500, 3000]
[factors."accountability.framework"]
levels = ["growth", "status"]
"""


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("grid") / "tiny.db"
    assert run_sweep(TINY, db=db).done == 8
    return db


@pytest.fixture(scope="module")
def sampled_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sampled")
    out = {}
    for kind, samples, reps in (("sobol", 4, 1), ("morris", 3, 1), ("lhs", 64, 1)):
        spec = tmp / f"{kind}.toml"
        spec.write_text(SAMPLED.format(name=f"s_{kind}", kind=kind, samples=samples, replicates=reps), encoding="utf-8")
        db = tmp / f"{kind}.db"
        report = run_sweep(spec, db=db)
        assert report.failed == 0 and report.remaining == 0
        out[kind] = db
    return out


def test_yearly_frame_shape_and_summary(grid_db: Path) -> None:
    res = Results(grid_db)
    df = res.yearly(metrics=["mean_achievement", "closures"])
    assert list(df.columns) == ["run_id", "point", "replicate", "seed", "accountability.closure_percentile",
                                "governance.category", "year", "mean_achievement", "closures"]
    assert len(df) == 32 and df["mean_achievement"].dtype == float
    final = res.final(["mean_achievement"])
    assert len(final) == 8 and set(final["year"]) == {3}
    summary = res.summary("mean_achievement")
    assert len(summary) == 4 and (summary["n"] == 2).all()
    assert {"mean", "sd", "median", "p10", "p90"} <= set(summary.columns)
    by_cat = res.summary("mean_achievement", by=["governance.category"], year=1)
    assert len(by_cat) == 2 and (by_cat["n"] == 4).all()
    assert len(load_yearly(grid_db, years=[0, 3])) == 16
    with pytest.raises(StoreError, match="unknown metric"):
        res.yearly(metrics=["no_such_metric"])
    with pytest.raises(StoreError, match="need a sampled design"):
        res.sensitivity("mean_achievement")
    res.close()


@pytest.mark.parametrize("kind,columns", [("sobol", ["S1", "S1_conf", "ST", "ST_conf"]),
                                          ("morris", ["mu", "mu_star", "sigma", "mu_star_conf"]),
                                          ("lhs", ["S1", "S1_conf"])])
def test_sensitivity_indices(sampled_dbs: dict[str, Path], kind: str, columns: list[str]) -> None:
    with Results(sampled_dbs[kind]) as res:
        idx = res.sensitivity("residents")
        assert list(idx.columns) == columns
        assert list(idx.index) == ["district.students", "accountability.framework"]
        assert np.isfinite(idx.to_numpy()).all()
        assert idx.attrs["metric"] == "residents" and idx.attrs["year"] == 2
        # the district's size drives how many residents it has; the rating framework hardly does
        main = "mu_star" if kind == "morris" else "S1"
        if kind == "lhs":   # RBD-FAST is noisy with few points (docs/SWEEPS.md: use a few hundred)
            assert idx.loc["district.students", "S1"] > 0.9
            assert abs(idx.loc["accountability.framework", "S1"]) < 0.5
        else:
            assert idx.loc["district.students", main] > 10 * abs(idx.loc["accountability.framework", main])
        fig = plots.sensitivity_plot(idx)
        assert isinstance(fig, go.Figure) and len(fig.data) >= 1


def test_sensitivity_needs_every_point(sampled_dbs: dict[str, Path], tmp_path: Path) -> None:
    spec = tmp_path / "partial.toml"
    spec.write_text(SAMPLED.format(name="partial", kind="sobol", samples=4, replicates=1), encoding="utf-8")
    run_sweep(spec, db=tmp_path / "partial.db", limit=5)
    with Results(tmp_path / "partial.db") as res, pytest.raises(StoreError, match="11 of 16 points"):
        res.sensitivity("mean_achievement")


def test_plots(grid_db: Path, tmp_path: Path) -> None:
    df = Results(grid_db).yearly()
    f1 = plots.outcome_vs_factor(df, "accountability.closure_percentile", "mean_achievement",
                                 color="governance.category")
    assert len(f1.data) == 4                       # a band and a line per category
    line = f1.data[1]
    assert list(line.x) == [0.0, 20.0] and len(line.y) == 2
    f2 = plots.outcome_vs_factor(df, "governance.category", "closures", year=2)
    assert f2.data[0].error_y.array is not None and "year 2" in f2.layout.title.text
    f3 = plots.heatmap(df, "accountability.closure_percentile", "governance.category", "mean_achievement")
    assert np.asarray(f3.data[0].z).shape == (2, 2)
    f4 = plots.metric_over_time(df, "mean_achievement", color="governance.category")
    assert len(f4.data) == 4 and list(f4.data[1].x) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not in the frame"):
        plots.heatmap(df, "nope", "governance.category", "mean_achievement")
    page = plots.write_html([f1, f3], tmp_path / "sweep.html")
    assert page.read_text(encoding="utf-8").count("plotly") > 2
