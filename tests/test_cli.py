"""The command line: outputs of `run`, exit codes and messages for bad input, the other subcommands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from portfolio_sim import kernel
from portfolio_sim.cli import OUTPUT_FILES, main
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.scenario import presets_dir

SRC = Path(__file__).resolve().parents[1] / "src"

TINY = """\
name = "tiny"
description = "A tiny district for CLI tests"

[district]
students = 2000
schools = 12

[run]
years = 3
seeds = 2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scn") / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", str(tiny), "--out", str(out), "--quiet"]) == 0
    return out


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point in a subprocess (`python -m portfolio_sim.cli`)."""
    full_env = {k: v for k, v in os.environ.items() if k != "PORTFOLIO_SIM_DEBUG"}
    full_env.update({"PYTHONPATH": str(SRC), **(env or {})})
    return subprocess.run([sys.executable, "-m", "portfolio_sim.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


# -- run: outputs -----------------------------------------------------------------------------------

def test_run_writes_all_files(tiny_run: Path) -> None:
    for name in OUTPUT_FILES:
        assert (tiny_run / name).is_file(), name
        assert (tiny_run / name).stat().st_size > 0, name


def test_yearly_csv_one_row_per_seed_and_year(tiny_run: Path) -> None:
    yearly = pd.read_csv(tiny_run / "yearly.csv")
    assert len(yearly) == 2 * 4
    assert yearly.columns[0] == "seed"
    assert yearly["seed"].nunique() == 2
    assert sorted(yearly["year"].unique()) == [0, 1, 2, 3]
    missing = [c for c in METRIC_COLUMNS if c not in yearly.columns]
    assert not missing
    assert yearly["calendar_year"].min() == 2025


def test_summary_csv_has_bands(tiny_run: Path) -> None:
    summary = pd.read_csv(tiny_run / "summary.csv")
    assert {"metric", "year", "p10", "median", "p90"} <= set(summary.columns)
    ach = summary[summary["metric"] == "mean_achievement"]
    assert len(ach) == 4
    assert (ach["p10"] <= ach["median"]).all() and (ach["median"] <= ach["p90"]).all()


def test_schools_and_events_have_seed_first(tiny_run: Path) -> None:
    yearly_seeds = set(pd.read_csv(tiny_run / "yearly.csv")["seed"])
    schools = pd.read_csv(tiny_run / "schools.csv")
    assert schools.columns[0] == "seed"
    assert set(schools["seed"]) == yearly_seeds
    events = pd.read_csv(tiny_run / "events.csv")
    assert events.columns[0] == "seed"
    assert {"year", "event"} <= set(events.columns)


def test_report_is_self_contained(tiny_run: Path) -> None:
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    assert "plotly" in html.lower()
    assert "tiny" in html and "A tiny district for CLI tests" in html
    # plotly.js inline, not loaded from a CDN
    assert not re.search(r"""<script[^>]+src=["']?https?://cdn\.plot\.ly""", html)
    assert not re.search(r"""src=["']https?://""", html)
    assert html.count("Plotly.newPlot") >= 10
    assert "<details>" in html  # the collapsible lever table
    assert "Workshop decisions" not in html  # only when a run took some


def test_resolved_scenario_round_trips(tiny_run: Path, tmp_path: Path) -> None:
    resolved = tomllib.loads((tiny_run / "scenario.toml").read_text(encoding="utf-8"))
    assert resolved["run"]["years"] == 3 and resolved["run"]["seeds"] == 2
    assert "choice" in resolved and "politics" in resolved  # fully resolved, not just the overrides
    out = tmp_path / "again"
    assert main(["run", str(tiny_run / "scenario.toml"), "--out", str(out), "--quiet"]) == 0
    assert (out / "yearly.csv").read_bytes() == (tiny_run / "yearly.csv").read_bytes()
    assert (out / "scenario.toml").read_text() == (tiny_run / "scenario.toml").read_text()


def test_run_prints_summary_table_and_paths(tiny: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["run", str(tiny), "--out", str(out), "--years", "2", "--seeds", "3", "--seed", "7"]) == 0
    stdout = capsys.readouterr().out
    for label in ("Mean achievement", "Achievement gap", "below the bar", "Closures", "Political support",
                  "Reversals", "Segregation", "2025 (year 0)", "2027 (year 2)", "report.html"):
        assert label in stdout, label
    assert str(out) in stdout
    resolved = tomllib.loads((out / "scenario.toml").read_text())
    assert (resolved["run"]["years"], resolved["run"]["seeds"], resolved["run"]["seed"]) == (2, 3, 7)
    assert len(pd.read_csv(out / "yearly.csv")) == 3 * 3


def test_set_is_applied(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    rc = main(["run", str(tiny), "--out", str(out), "--quiet", "--years", "1", "--seeds", "1",
               "--set", "accountability.closure_percentile=10", "--set", "choice.policy=unified"])
    assert rc == 0
    resolved = tomllib.loads((out / "scenario.toml").read_text())
    assert resolved["accountability"]["closure_percentile"] == 10
    assert resolved["choice"]["policy"] == "unified"


def test_default_out_dir_is_runs_name(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "--quiet", "--years", "1", "--seeds", "1"]) == 0
    assert (tmp_path / "runs" / "tiny" / "yearly.csv").is_file()


# -- run: bad input -> exit 2, a clear message, no traceback -------------------------------------------

def test_bad_choice_value_subprocess(tiny: Path, tmp_path: Path) -> None:
    res = run_cli("run", str(tiny), "--out", str(tmp_path / "o"), "--set", "choice.policy=lottery")
    assert res.returncode == 2
    assert res.stderr.startswith("error: ")
    assert "choice.policy" in res.stderr
    for allowed in ("zones", "zone_plus_open", "unified"):
        assert allowed in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "o").exists()  # validation happens before anything is written


@pytest.mark.parametrize("args, needles", [
    (["--set", "choice.bogus_lever=1"], ["choice.bogus_lever", "unknown field"]),
    (["--set", "nodots"], ["nodots", "PATH=VALUE"]),
    (["--years", "0"], ["run.years"]),
    (["--seeds", "0"], ["run.seeds"]),
    (["--set", "district.students=many"], ["district.students"]),
])
def test_bad_overrides_exit_2(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              args: list[str], needles: list[str]) -> None:
    rc = main(["run", str(tiny), "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err


def test_malformed_toml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken_scenario.toml"
    bad.write_text('name = "unterminated\n[district\n', encoding="utf-8")
    assert main(["run", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "broken_scenario.toml" in err and "TOML" in err
    assert "Traceback" not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "no_such_scenario.toml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario" in err and err.startswith("error: ")


def test_out_is_a_regular_file(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["run", str(tiny), "--out", str(target), "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_argparse_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x.toml", "--years", "abc"]) == 2
    assert main([]) == 2
    assert main(["frobnicate"]) == 2


def test_unknown_field_subprocess_no_traceback(tiny: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\n[district]\nstudents = 2000\nschoolz = 12\n', encoding="utf-8")
    res = run_cli("validate", str(bad))
    assert res.returncode == 2
    assert "district.schoolz" in res.stderr
    assert "Traceback" not in res.stderr


# -- unexpected failures -------------------------------------------------------------------------------

def test_internal_error_exit_1(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(kernel, "single_run", boom)
    monkeypatch.delenv("PORTFOLIO_SIM_DEBUG", raising=False)
    assert main(["run", str(tiny), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaboom" in err
    assert "PORTFOLIO_SIM_DEBUG=1" in err and "Traceback" not in err

    monkeypatch.setenv("PORTFOLIO_SIM_DEBUG", "1")
    assert main(["run", str(tiny), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_exit_130(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(kernel, "single_run", interrupt)
    assert main(["run", str(tiny), "--out", str(tmp_path / "o"), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err


# -- validate, scenarios, schema -------------------------------------------------------------------------

def test_validate_ok(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: tiny (")
    assert "tiny.toml" in out and "2,000 students" in out


def test_validate_applies_set(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tiny), "--set", "choice.policy=lottery"]) == 2
    assert "choice.policy" in capsys.readouterr().err


def _has_preset(name: str) -> bool:
    try:
        return (presets_dir() / f"{name}.toml").is_file()
    except Exception:
        return False


@pytest.mark.skipif(not _has_preset("baseline"), reason="preset scenarios/baseline.toml not written yet")
def test_scenarios_lists_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    assert "baseline" in capsys.readouterr().out


@pytest.mark.skipif(not _has_preset("baseline"), reason="preset scenarios/baseline.toml not written yet")
def test_validate_preset_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "baseline"]) == 0
    assert capsys.readouterr().out.startswith("OK: ")


def test_schema_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Scenario reference")
    assert "`[accountability]`" in out and "closure_percentile" in out  # not eaten as rich markup
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == out
