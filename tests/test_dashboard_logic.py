"""Dashboard logic without a browser: levers from the schema, simulations, the worker thread, the
comparison store, exports and uploads, figures, and the offline asset list."""

from __future__ import annotations

import io
import threading
import time
import tomllib
import zipfile
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from conftest import AUTONOMY_POLICY, small
from portfolio_sim.dashboard import assets, figures, levers
from portfolio_sim.dashboard.compare import ComparisonStore, paired_differences
from portfolio_sim.dashboard.exports import MAX_UPLOAD_BYTES, parse_upload, results_zip
from portfolio_sim.dashboard.simulation import (RunController, Simulation, SimulationLimit, check_limits)
from portfolio_sim.kernel import derive_seeds, single_run
from portfolio_sim.scenario import GROUPS, Scenario, describe_bounds, loads_scenario


def tiny(**groups) -> Scenario:
    s = small(**groups)
    s.district.students, s.district.schools, s.run.years, s.run.seeds = 2500, 12, 3, 2
    return s


# ------------------------------------------------------------------------------------------------
# Levers come from the schema
# ------------------------------------------------------------------------------------------------

def test_every_schema_field_is_a_control_in_schema_order():
    groups = levers.group_specs(include_run=True)
    assert [g.name for g in groups] == list(GROUPS)
    for g in groups:
        cls = GROUPS[g.name]
        assert g.question == cls.question
        assert [s.name for s in g.levers] == list(cls.model_fields)
        for s in g.levers:
            field = cls.model_fields[s.name]
            assert s.description == field.description
            assert s.allowed == describe_bounds(field).removeprefix("allowed: ")
            assert s.default == field.default


def test_control_kinds_follow_field_types():
    specs = levers.all_specs()
    assert specs["governance.category"].widget == "select"
    assert set(specs["governance.category"].choices) == set(get_args(GROUPS["governance"].model_fields["category"].annotation))
    assert specs["central_office.autonomy_office"].widget == "switch"
    assert specs["autonomy.staffing"].widget == "slider" and specs["autonomy.staffing"].step == 0.01
    assert (specs["autonomy.staffing"].lo, specs["autonomy.staffing"].hi) == (0.0, 1.0)
    assert specs["district.students"].widget == "number" and specs["district.students"].unit == "students"
    assert specs["choice.max_choices"].widget == "slider" and specs["choice.max_choices"].kind == "int"
    assert specs["district.schools_csv"].widget == "readonly"


def test_set_value_validates_with_the_schema():
    s = Scenario()
    new = levers.set_value(s, "autonomy.staffing", 0.7)
    assert new.autonomy.staffing == 0.7 and s.autonomy.staffing == 0.0       # a copy
    assert levers.set_value(s, "choice.max_choices", 5.0).choice.max_choices == 5
    assert levers.set_value(s, "district.per_pupil_funding", "12,500").district.per_pupil_funding == 12500.0
    with pytest.raises(levers.LeverError, match="allowed: a number from 0.0 to 1.0"):
        levers.set_value(s, "autonomy.staffing", 1.5)
    with pytest.raises(levers.LeverError, match="one of"):
        levers.set_value(s, "governance.category", "anarchy")
    with pytest.raises(levers.LeverError, match="whole number"):
        levers.set_value(s, "choice.max_choices", 2.5)
    with pytest.raises(levers.LeverError, match="not a number"):
        levers.set_value(s, "autonomy.staffing", "lots")
    with pytest.raises(levers.LeverError, match="CSV"):
        levers.set_value(s, "district.schools_csv", "/etc/passwd")
    assert levers.changed(levers.set_value(s, "autonomy.budget", 0.2), s) == ["autonomy.budget"]


def test_nice_steps():
    assert levers.nice_step(1.0) == 0.01
    assert levers.nice_step(0.5) == 0.005
    assert levers.nice_step(10.0) == 0.1
    assert levers.nice_step(99.0) == 1.0


# ------------------------------------------------------------------------------------------------
# Simulations
# ------------------------------------------------------------------------------------------------

def test_run_matches_the_kernel_and_the_cli_seeds():
    """The dashboard derives seeds like the CLI and its numbers are the kernel's: an exported scenario
    reproduces what the page showed."""
    s = tiny()
    sim = Simulation(s)
    assert sim.seeds == derive_seeds(s.run.seed, s.run.seeds)
    assert sim.run()
    snap = sim.snapshot()
    assert snap.complete and snap.seeds == tuple(sim.seeds)
    expected = single_run(s, sim.seeds[1]).yearly
    got = snap.yearly[snap.yearly["seed"] == sim.seeds[1]].drop(columns="seed").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert all(r.model is None for r in sim.runs)      # models released after the run


def test_stepping_then_running_gives_the_same_numbers():
    s = tiny()
    stepped = Simulation(s)
    assert stepped.step_year() and stepped.year == 1
    snap1 = stepped.snapshot()
    assert snap1.year == 1 and not snap1.complete and set(snap1.yearly["year"]) == {0, 1}
    assert stepped.run()                                # continues from year 1
    whole = Simulation(s)
    whole.run()
    pd.testing.assert_frame_equal(stepped.snapshot().yearly, whole.snapshot().yearly)


def test_run_stops_between_years_and_resumes():
    s = tiny()
    s.run.years = 4
    sim = Simulation(s)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2
    assert not sim.run(should_stop=stop)
    assert sim.progress() == (2, 8)
    assert sim.run()
    assert sim.done and sim.progress() == (8, 8)


def test_limits():
    s = tiny()
    s.district.students = 2_000_000
    with pytest.raises(SimulationLimit, match="portfolio-sim run"):
        check_limits(s)
    big = tiny()
    big.district.students, big.run.seeds = 600_000, 5
    ok, why = Simulation(big).can_step()
    assert not ok and "at most" in why


# ------------------------------------------------------------------------------------------------
# The worker thread
# ------------------------------------------------------------------------------------------------

def test_controller_runs_off_thread_and_cancels():
    statuses, results = [], []
    c = RunController(statuses.append, results.append)
    started = threading.Event()

    def job(h):
        started.set()
        for i in range(200):
            if h.stopped():
                return "stopped"
            h.progress(i, 200, f"year {i}")
            time.sleep(0.01)
        return "finished"
    assert c.start("run", job)
    assert started.wait(5)
    assert c.busy and threading.current_thread() is threading.main_thread()
    assert not c.start("run", job)                     # one job at a time
    assert c.cancel()
    assert c.join(5)
    assert c.status.state == "cancelled"
    assert [s.state for s in statuses][0] == "running"


def test_controller_reports_errors_without_raising():
    c = RunController(lambda s: None, lambda r: None)

    def boom(h):
        raise ValueError("bad things")
    c.start("run", boom)
    c.join(5)
    assert c.status.state == "error" and "bad things" in c.status.error


def test_controller_replaces_a_running_job():
    c = RunController(lambda s: None, lambda r: None)
    first_stopped = threading.Event()

    def slow(h):
        while not h.stopped():
            time.sleep(0.01)
        first_stopped.set()
        return "first"
    c.start("run", slow)
    assert c.start("run", lambda h: "second", replace_running=True)
    assert c.join(5) and first_stopped.is_set()
    assert c.status.state == "done" and c.status.message == "second"


def test_controller_is_free_while_the_page_re_renders_with_the_last_status():
    """The worker thread re-renders the page with a job's last status (seconds on a loaded machine): the
    page shows Step enabled then, so a Step clicked meanwhile must start, not be refused as busy (a browser
    test's Step clicks were lost this way under load)."""
    rendering, rendered = threading.Event(), threading.Event()

    def on_status(status):
        if status.state == "done" and status.message == "first":
            rendering.set()
            assert rendered.wait(5)             # the slow re-render

    c = RunController(on_status, lambda r: None)
    c.start("step", lambda h: "first")
    assert rendering.wait(5)
    assert not c.busy                           # done, as the page is about to show
    started = []
    clicker = threading.Thread(target=lambda: started.append(c.start("step", lambda h: "second")))
    clicker.start()                             # the page's thread: waits for the status, is not refused
    rendered.set()
    clicker.join(5)
    assert started == [True]
    assert c.join(5) and c.status.state == "done" and c.status.message == "second"


def test_controller_cancel_while_waiting_for_the_previous_job_ends_cancelled():
    release = threading.Event()
    c = RunController(lambda s: None, lambda r: None)
    c.start("run", lambda h: (release.wait(5), "first")[1])
    c.start("run", lambda h: "second", replace_running=True)     # waits for the first to return
    assert c.busy and c.cancel()
    release.set()
    assert c.join(5)
    assert c.status.state == "cancelled" and not c.busy          # not stuck at "cancelling"


# ------------------------------------------------------------------------------------------------
# The comparison store
# ------------------------------------------------------------------------------------------------

def test_store_applies_shared_settings_and_labels():
    a, b = tiny(), tiny(**AUTONOMY_POLICY)
    store = ComparisonStore().with_settings(years=3, seeds=2, seed=7, override_flip=True, flip_year=2)
    store = store.add("design", a, "x").add("design", b, "y")
    assert [e.label for e in store.entries] == ["design", "design (2)"]
    assert store.entries[0].color != store.entries[1].color
    rs = store.run_scenario(store.entries[1])
    assert (rs.run.years, rs.run.seeds, rs.run.seed, rs.politics.scheduled_flip_year) == (3, 2, 7, 2)
    assert len(store.pending()) == 2 and not store.ready()
    store = store.rename(store.entries[1].key, "design")
    assert store.entries[1].label == "design (2)"
    store = store.remove(store.entries[0].key)
    assert [e.label for e in store.entries] == ["design (2)"]
    with pytest.raises(ValueError, match="At most"):
        s = ComparisonStore()
        for i in range(7):
            s = s.add(f"s{i}", a, "x")


def test_store_results_and_paired_differences():
    a = tiny()
    store = ComparisonStore().with_settings(years=3, seeds=2, seed=3)
    store = store.add("A", a, "x").add("A again", a, "x").add("B", tiny(**AUTONOMY_POLICY), "y")
    for e in store.entries:
        sim = Simulation(store.run_scenario(e))
        sim.run()
        store = store.with_result(e.key, sim.snapshot())
    assert len(store.ready()) == 3 and not store.pending()
    diffs = paired_differences(store, "mean_achievement")
    # same scenario, same seeds: exactly the same numbers (common random numbers)
    assert np.allclose(diffs["A again"][["p10", "median", "p90"]].to_numpy(), 0.0)
    assert not np.allclose(diffs["B"]["median"].to_numpy()[1:], 0.0)
    table = figures.comparison_table(store)
    assert list(table.columns) == ["metric", "A", "A again", "B"]
    assert "Δ" in table.loc[0, "B"]
    assert all("no difference" in c for c in table["A again"])            # identical design: exactly 0
    # clear differences lead the table, and every flagged one is a real paired interval excluding 0
    verdicts = ["clear of seed noise" in c and "within" not in c for c in table["B"]]
    assert verdicts == sorted(verdicts, reverse=True)
    for r in figures.comparison_rows(store):
        d = r["cells"]["B"][1]
        assert d is not None and d.n == 2
        assert d.clear == (d.low > 0 or d.high < 0)
    # changing the shared settings makes every result stale
    assert len(store.with_settings(years=4).pending()) == 3
    fig = figures.comparison_figure(store, "political_support")
    assert {t.name for t in fig.data if t.showlegend is not False} == {"A", "A again", "B"}
    assert figures.difference_figure(store, "cum_closures").data


# ------------------------------------------------------------------------------------------------
# Exports and uploads
# ------------------------------------------------------------------------------------------------

def test_upload_validation_messages():
    ok = parse_upload("mine.toml", b'extends = "baseline"\nname = "mine"\n[autonomy]\nstaffing = 0.5\n')
    assert ok.ok and ok.scenario.name == "mine" and ok.scenario.autonomy.staffing == 0.5
    cases = {
        b"[autonomy]\nstaffing = 5": "autonomy.staffing",
        b"[autonomy\nstaffing = 5": "not valid TOML",
        b"[nonsense]\nx = 1": "unknown field",
        b'extends = "../../etc/passwd"': "must name a preset",
        b'[district]\nschools_csv = "/etc/passwd"': "CSV",
        b"\xff\xfe\x00bad": "not UTF-8 text",
        b"name = 'x'\x00": "NUL bytes",
        b"": "empty",
        b'[district]\nstudents = 1900000': "portfolio-sim run",
    }
    for data, expected in cases.items():
        res = parse_upload("bad.toml", data)
        assert not res.ok and expected in res.message, (data, res.message)
        assert "Traceback" not in res.message
    big = parse_upload("big.toml", b"#" * (MAX_UPLOAD_BYTES + 1))
    assert not big.ok and "64 KB" in big.message
    assert not parse_upload("big.toml", None, size=10 * MAX_UPLOAD_BYTES).ok
    from portfolio_sim import inputs                        # one place for every input limit
    assert MAX_UPLOAD_BYTES is inputs.MAX_UPLOAD_BYTES


def test_results_zip_has_the_cli_files_and_a_runnable_scenario():
    sim = Simulation(tiny())
    sim.run()
    snap = sim.snapshot()
    z = zipfile.ZipFile(io.BytesIO(results_zip(snap)))
    assert set(z.namelist()) == {"yearly.csv", "summary.csv", "schools.csv", "events.csv", "scenario.toml",
                                 "report.html", "run_info.json"}     # the CLI's files, and what they are of
    again = loads_scenario(z.read("scenario.toml").decode())
    assert again == snap.scenario
    yearly = pd.read_csv(z.open("yearly.csv"))
    assert list(yearly.columns[:2]) == ["seed", "year"] and len(yearly) == 2 * 4
    assert tomllib.loads(z.read("scenario.toml").decode())["run"]["seeds"] == 2


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshot():
    sim = Simulation(tiny(**AUTONOMY_POLICY))
    sim.run()
    return sim.snapshot()


def test_every_chart_builds_with_bands(snapshot):
    for c in figures.CHARTS:
        fig = c.build(snapshot)
        assert fig.data, c.key
    ach = figures.build_chart("achievement", snapshot)
    assert any(t.fill == "tonexty" for t in ach.data)            # a p10-p90 band


def test_map_and_school_history(snapshot):
    seed, year = snapshot.seeds[0], snapshot.year
    fig = figures.map_figure(snapshot, seed, year, "type")
    schools = figures.map_frame(snapshot, seed, year)
    plotted = [int(c[0]) for t in fig.data if getattr(t, "customdata", None) is not None for c in t.customdata]
    assert sorted(plotted) == sorted(schools["school_id"].tolist())
    sizes = {int(c[0]): s for t in fig.data if getattr(t, "customdata", None) is not None
             for c, s in zip(t.customdata, t.marker.size, strict=True)}
    big, small_ = schools.nlargest(1, "enrollment")["school_id"].item(), schools.nsmallest(1, "enrollment")["school_id"].item()
    assert sizes[big] >= sizes[small_]
    rating = figures.map_figure(snapshot, seed, year, "rating")
    assert any(getattr(t.marker, "colorscale", None) for t in rating.data if t.type == "scatter")
    sid = int(schools["school_id"].iloc[0])
    hist = figures.school_history_figure(snapshot, seed, sid)
    assert len(hist.data[0].x) == len(figures.school_history(snapshot, seed, sid))
    facts = dict(figures.school_facts(snapshot, seed, sid))
    assert "Enrollment" in facts and "Rating" in facts


def test_map_background_is_each_seeds_own_district(snapshot):
    """Each seed draws its own district (neighbourhood incomes, school sites): the map of seed k shows
    seed k's neighbourhoods, not the first seed's."""
    from portfolio_sim.model import PortfolioModel
    shares = []
    for seed in snapshot.seeds:
        model = PortfolioModel(snapshot.scenario, seed)
        try:
            expected = np.asarray(model.nb_low_income, float)
        finally:
            model.release()
        background = next(t for t in figures.map_figure(snapshot, seed, snapshot.year).data
                          if t.name == "neighbourhoods")
        z = np.asarray(background.z if background.type == "heatmap" else background.marker.color, float)
        assert sorted(z[~np.isnan(z)].ravel().round(9)) == sorted(expected.round(9))
        shares.append(tuple(sorted(expected.round(9))))
    assert len(set(shares)) == len(shares)      # the seeds' districts do differ


def test_event_table_filters(snapshot):
    all_events = figures.event_table(snapshot)
    assert len(all_events) == len(snapshot.events)
    types = figures.event_types(snapshot)
    one = figures.event_table(snapshot, types=[types[0]])
    assert set(one["Event"]) == {types[0].replace("_", " ")}
    first_year = figures.event_table(snapshot, years=(1, 1))
    assert set(first_year["Year"]) <= {snapshot.start_year + 1}
    seed1 = figures.event_table(snapshot, seed=snapshot.all_seeds[0])
    assert set(seed1["Seed"]) <= {1}


def test_key_numbers(snapshot):
    rows = {r["metric"]: r for r in figures.key_numbers(snapshot)}
    assert rows["mean_achievement"]["n_seeds"] == 2
    last = snapshot.yearly[snapshot.yearly["year"] == snapshot.year]["political_support"]
    assert rows["political_support"]["median"] == pytest.approx(last.median())


# ------------------------------------------------------------------------------------------------
# Offline assets
# ------------------------------------------------------------------------------------------------

def test_asset_list_follows_the_installed_solara():
    import importlib.util
    from pathlib import Path
    pkgs = {p.name: p for p in assets.required_packages()}
    template = (Path(importlib.util.find_spec("solara").submodule_search_locations[0])
                / "server" / "templates" / "solara.html.j2").read_text()
    app = "@widgetti/solara-vuetify3-app" if "@widgetti/solara-vuetify3-app" in pkgs else "@widgetti/solara-vuetify-app"
    assert f"{app}@{pkgs[app].version}/dist/" in template
    assert "requirejs" in pkgs and "font-awesome" in pkgs
    assert any(f.endswith(".min.js") for f in pkgs[app].files)


def test_asset_cache_is_filled():
    """`make test` fills the cache (dashboards/setup_assets.py) before running the tests."""
    missing = assets.missing_packages()
    assert not missing, (f"front-end assets missing in {assets.cache_dir()}: {[p.spec for p in missing]}; "
                         "run `python dashboards/setup_assets.py`")


# ------------------------------------------------------------------------------------------------
# Workshop decisions
# ------------------------------------------------------------------------------------------------

def test_stepped_decisions_match_the_kernel_and_replay_from_the_exported_file(tmp_path):
    """Decisions taken with a step apply to that year in every seed, are replayed when the run goes on,
    and the exported decisions.toml with scenario.toml repeats the run through the CLI."""
    from portfolio_sim.decisions import Decisions, load_decisions
    s = tiny(**AUTONOMY_POLICY)
    s.politics.initial_support, s.run.years = 0.9, 4
    reverse = {3: Decisions(board="reverse")}
    sim = Simulation(s)
    assert sim.step_year() and sim.step_year() and sim.step_year(decisions=reverse[3])
    assert sim.run()
    snap = sim.snapshot()
    assert dict(snap.decisions) == reverse
    for seed in sim.seeds:
        expected = single_run(s, seed, decisions=reverse)
        got = snap.events[snap.events["seed"] == seed].drop(columns="seed").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected.events)
        assert (expected.events["event"] == "reversal").sum() >= 1
    z = zipfile.ZipFile(io.BytesIO(results_zip(snap)))
    assert "decisions.toml" in z.namelist()
    (tmp_path / "scenario.toml").write_bytes(z.read("scenario.toml"))
    (tmp_path / "decisions.toml").write_bytes(z.read("decisions.toml"))
    assert load_decisions(tmp_path / "decisions.toml", s.run.years) == reverse
    from portfolio_sim.cli import main
    assert main(["run", str(tmp_path / "scenario.toml"), "--decisions", str(tmp_path / "decisions.toml"),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    for report in ((tmp_path / "out" / "report.html").read_text(), z.read("report.html").decode()):
        assert "<h2>Workshop decisions</h2>" in report and "board reverses autonomy" in report
    assert "Workshop decisions" not in (tmp_path / "out" / "scenario.toml").read_text()
    cli_events = pd.read_csv(tmp_path / "out" / "events.csv", keep_default_na=False)
    assert (cli_events["cause"] == "workshop decision").sum() == len(sim.seeds)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "yearly.csv"),
                                  pd.read_csv(io.BytesIO(z.read("yearly.csv"))))


def test_workshop_agenda_reads_the_latest_year():
    from portfolio_sim.dashboard import workshop
    s = tiny(**AUTONOMY_POLICY)
    s.accountability.closure_percentile, s.accountability.consecutive_years = 30, 2
    s.politics.scheduled_flip_year = 2
    assert workshop.agenda(None)[0][0] == "Start"
    sim = Simulation(s)
    sim.step_year()
    items = dict(workshop.agenda(sim.snapshot()))
    assert items["Next"].startswith("year 2 ")
    assert "scheduled board flip" in items["Politics"]
    schools = sim.snapshot().schools
    at_risk = schools[(schools["year"] == 1) & (schools["sector"] != "charter") & (schools["years_below_bar"] >= 1)]
    counts = sorted(int((at_risk["seed"] == seed).sum()) for seed in sim.seeds)
    assert str(counts[0]) in items["Accountability"] and "30th percentile" in items["Accountability"]
    assert [p.name for p in workshop.DECISION_POINTS] == ["intervention", "renewal", "applications", "board"]
    assert [workshop.ordinal(x) for x in (1, 2, 3, 11, 12, 13, 21, 42.4, 111)] == \
        ["1st", "2nd", "3rd", "11th", "12th", "13th", "21st", "42nd", "111th"]
    # contracts that end next year: with one-year terms, every autonomous school's
    s.accountability.contract_term = 1
    sim = Simulation(s)
    sim.step_year()
    sim.step_year()
    snap = sim.snapshot()
    last = snap.yearly[snap.yearly["year"] == 2]
    items = dict(workshop.agenda(snap))
    assert last["autonomous_schools"].max() > 0
    assert "reviewed" in items["Contracts"] and str(int(last["autonomous_schools"].min())) in items["Contracts"]
    assert workshop.next_year(snap) == 3
    sim.run()                                   # finished: the next step starts again from year 1
    assert workshop.next_year(sim.snapshot()) == 1 and "starts again" in workshop.agenda(sim.snapshot())[0][1]


def test_paired_difference_flags_only_what_is_clear_of_seed_noise():
    from portfolio_sim.dashboard.compare import paired_difference
    seeds = pd.Index([1, 2, 3, 4, 5])
    ref = pd.Series([0.10, 0.30, -0.20, 0.05, 0.15], index=seeds)
    noisy = ref + pd.Series([0.02, -0.03, 0.01, -0.01, 0.012], index=seeds)     # +0.003 mean, inside noise
    clear = ref + pd.Series([0.11, 0.09, 0.12, 0.10, 0.08], index=seeds)
    n = paired_difference(noisy, ref)
    c = paired_difference(clear, ref)
    assert not n.clear and n.low < 0 < n.high and n.verdict == "within seed noise"
    assert c.clear and c.low > 0 and c.verdict == "clear of seed noise"
    assert abs(c.mean - 0.10) < 1e-9
    # paired by seed, not by position
    assert paired_difference(clear.iloc[::-1], ref).mean == pytest.approx(c.mean)
    assert paired_difference(clear.iloc[:1], ref.iloc[:1]).verdict == "one seed: cannot tell"


def test_charts_are_colour_blind_safe_with_dash_and_marker_cues(snapshot):
    from portfolio_sim.dashboard.palette import OKABE_ITO
    from portfolio_sim.report import PALETTE
    for spec in figures.CHARTS:
        fig = spec.build(snapshot)
        lines = [t for t in fig.data if t.showlegend is not False and t.mode and "lines" in t.mode]
        colors = {t.line.color for t in fig.data if getattr(t, "line", None) is not None and t.line.color}
        assert not colors & {c for c in PALETTE if c not in OKABE_ITO}, spec.key     # no red/green pair
        if len(lines) > 1:
            cues = {(t.line.dash, t.marker.symbol) for t in lines}
            assert len(cues) == len(lines), f"{spec.key}: lines told apart by colour only"
        # bands are drawn before (under) every line
        kinds = ["band" if (getattr(t, "fill", None) or (t.line.width == 0 and t.showlegend is False)) else "line"
                 for t in fig.data if t.type == "scatter"]
        assert kinds == sorted(kinds), spec.key
        assert len(fig.layout.title.text) <= 48, f"{spec.key}: title too long to fit: {fig.layout.title.text}"
    m = figures.map_figure(snapshot, snapshot.seeds[0], snapshot.year, "rating")
    scale = next(t.marker.colorscale for t in m.data if t.type == "scatter" and t.marker.cmax == 100)
    assert [list(s) for s in scale] == figures.CIVIDIS


def test_absent_categories_keep_their_legend_entry_greyed_and_their_style(snapshot):
    """Item 5: a category the run does not have (no partner-run schools, no restarts) draws no flat
    line but keeps its legend entry, greyed ("none in this run"), with the same colour, dash and marker
    as in a run that has it: legends read the same across scenarios."""
    plain = Simulation(tiny())                    # no autonomy policy: no autonomous enrollment, conversions
    plain.run()
    bare = plain.snapshot()

    def legend(fig):
        return {t.legendgroup: (t.name, t.visible, t.line.color, t.line.dash, t.marker.symbol)
                for t in fig.data if t.showlegend is not False}

    for key in ("enrollment", "schools"):
        full, empty = legend(figures.build_chart(key, snapshot)), legend(figures.build_chart(key, bare))
        assert full.keys() == empty.keys(), key                          # the same entries
        for group, (name, visible, *style) in empty.items():
            assert tuple(style) == full[group][2:], (key, group)         # the same look
            zero = (bare.yearly[group] == 0).all() and group != "schools_open"
            assert (visible == "legendonly") == zero, (key, group, visible)
            assert name.endswith(figures.NONE_IN_RUN) == zero
        assert "conversions" in {g for g, v in empty.items() if v[1] == "legendonly"} or key != "schools"
        bands = [t for t in figures.build_chart(key, bare).data if t.showlegend is False
                 and t.legendgroup in {g for g, v in empty.items() if v[1] == "legendonly"}]
        assert bands and all(t.visible is False for t in bands)      # no band of an absent category
    assert "Conversions" in " ".join(figures.absent_labels("schools", bare))
    sch = figures.build_chart("schools", snapshot)
    assert sch.layout.yaxis2.rangemode == "tozero" and sch.layout.yaxis.rangemode == "tozero"


# ------------------------------------------------------------------------------------------------
# Assumptions: controls from the declarations, editable like levers, through export and upload
# ------------------------------------------------------------------------------------------------

def test_assumptions_are_controls_set_like_levers_and_round_trip_through_export():
    from portfolio_sim import assumptions
    from portfolio_sim.dashboard.exports import scenario_toml

    groups = levers.assumption_group_specs()
    assert [g.name for g in groups] == [f"assumptions.{g}" for g in assumptions.GROUP_DOCS]
    specs = {s.path: s for g in groups for s in g.levers}
    assert set(specs) == {a.path for a in assumptions.DECLARED}
    inc = specs["assumptions.politics.incumbency"]
    assert (inc.lo, inc.hi, inc.default, inc.widget) == (0.0, 1.5, 0.75, "slider")
    assert specs["assumptions.finance.viability_years"].kind == "int"
    s = small()
    t = levers.set_value(s, "assumptions.politics.incumbency", 1.0)
    assert t.assumptions.politics.incumbency == 1.0 and s.assumptions.politics.incumbency == 0.75
    assert levers.changed(t, s) == ["assumptions.politics.incumbency"]
    with pytest.raises(levers.LeverError, match="from 0.0 to 1.5"):
        levers.set_value(s, "assumptions.politics.incumbency", 2.0)
    up = parse_upload("mine.toml", scenario_toml(t).encode())
    assert up.ok and up.scenario == t
    up = parse_upload("mine.toml", b'extends = "baseline"\n[assumptions.achievement]\nrho = 0.8\n')
    assert up.ok and up.scenario.assumptions.achievement.rho == 0.8
    bad = parse_upload("bad.toml", b'[assumptions.achievement]\nrho = 2\n')
    assert not bad.ok and "assumptions.achievement.rho" in bad.message


# ------------------------------------------------------------------------------------------------
# Worker processes (issue 13 item 10)
# ------------------------------------------------------------------------------------------------

def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_runs_in_worker_processes_give_the_in_process_results_and_queue_positions():
    import os as _os

    from conftest import result_digest
    from portfolio_sim.dashboard.simulation import WorkerPool, run_in_workers
    sc = tiny(**AUTONOMY_POLICY)
    sc.run.seeds, sc.run.years = 3, 4
    local = Simulation(sc)
    local.run()
    pool = WorkerPool(1)
    try:
        remote = Simulation(sc)
        queue: list[int] = []
        other = Simulation(sc)
        # a second job submitted first: ours waits behind it
        import threading as _th
        t = _th.Thread(target=run_in_workers, args=(other, pool))
        t.start()
        time.sleep(0.2)
        assert run_in_workers(remote, pool, on_queue=queue.append)
        t.join(60)
        assert queue[0] == 1 and queue[-1] == 0               # "1 run ahead of yours", then running
        a, b = local.snapshot(), remote.snapshot()
        assert result_digest(a) == result_digest(b)           # identical to the in-process run
        assert a.neighbourhoods.equals(b.neighbourhoods)
        pids = {p for p in pool._executor._processes}
        assert pids and _os.getpid() not in pids               # the seeds ran in other processes
    finally:
        pool.shutdown()


def test_steps_in_worker_processes_give_the_in_process_steps():
    """Step in the worker pool (the server's way): each year's snapshot and the decisions taken with a
    step are the in-process stepping's, the server holds no model, and Run continues from the steps."""
    from conftest import result_digest
    from portfolio_sim.decisions import Decisions
    from portfolio_sim.dashboard.simulation import WorkerPool, run_in_workers, step_in_workers
    s = tiny(**AUTONOMY_POLICY)
    s.politics.initial_support, s.run.years, s.run.seeds = 0.9, 4, 2
    reverse = Decisions(board="reverse")
    local, remote = Simulation(s), Simulation(s)
    pool = WorkerPool(1)
    try:
        for year, decided in ((1, Decisions()), (2, reverse)):
            assert local.step_year(decisions=decided)
            assert step_in_workers(remote, pool, decisions=decided)
            assert remote.year == year and all(r.model is None for r in remote.runs)
            assert result_digest(local.snapshot()) == result_digest(remote.snapshot())
        assert dict(remote.decisions) == {2: reverse}
        assert local.run() and run_in_workers(remote, pool)
        assert result_digest(local.snapshot()) == result_digest(remote.snapshot())
        assert remote.done and remote.snapshot().year == 4
    finally:
        pool.shutdown()


def test_load_several_sessions_echo_and_memory_release():
    """A bounded load test: 4 sessions run at once through the worker pool while a 5th moves a lever;
    the lever change is processed while the runs go on (UI thread free), and after three rounds of
    sessions opened and shut the server's memory is back near where it started."""
    import gc
    import os as _os

    from portfolio_sim.dashboard.state import DashboardState
    sc = small(**AUTONOMY_POLICY)
    sc.district.students, sc.run.years, sc.run.seeds = 20_000, 6, 2
    rss0 = None
    echoes = []
    for _ in range(3):
        sessions = [DashboardState(preset=None) for _ in range(4)]
        for s in sessions:
            s._set_scenario(sc.model_copy(deep=True), "load", None, autorun=False)
            assert s.run()
        probe = DashboardState(preset=None)
        busy_during = 0
        for i in range(5):
            t0 = time.perf_counter()
            assert probe.set_lever("autonomy.staffing", 0.1 * (i + 1))
            echoes.append(time.perf_counter() - t0)
            busy_during += sum(s.controller.busy for s in sessions)
            time.sleep(0.05)
        assert busy_during > 0                       # the lever moved while runs were going
        for s in sessions:
            assert s.controller.join(120) and s.result.value.complete
            s.shutdown()
        del sessions, probe
        gc.collect()
        if rss0 is None:
            rss0 = _rss_mb(_os.getpid())
    growth = _rss_mb(_os.getpid()) - rss0
    assert growth < 100, f"server memory grew {growth:.0f} MB over rounds 2-3"


def test_cancel_stops_a_seed_running_in_a_worker():
    from portfolio_sim.dashboard.simulation import WorkerPool, run_in_workers, run_seed
    sc = tiny()
    sc.run.seeds, sc.run.years = 1, 60
    pool = WorkerPool(1)
    try:
        fut = pool.submit(7, run_seed, sc.model_dump(), 1, {}, 7)
        assert 7 in pool._running.values()
        pool.cancel(7)                                  # while it runs in the worker
        assert fut.result(60) is None                   # it stopped between years, returned nothing
        done = pool.submit(8, run_seed, sc.model_dump(), 1, {}, 8).result(60)
        assert done is not None and len(done[0][0]) == 61      # another job's seed runs to the end
        quick = tiny()
        quick.run.seeds, quick.run.years = 1, 1
        assert run_in_workers(Simulation(quick), pool)
    finally:
        pool.shutdown()


# ------------------------------------------------------------------------------------------------
# Plain-language summary (item 7) and exports that say what they are of (item 8)
# ------------------------------------------------------------------------------------------------

def test_plain_summary_against_the_levers_as_loaded():
    base_s = tiny(**AUTONOMY_POLICY)
    base_s.run.years, base_s.run.seeds = 5, 4
    changed_s = base_s.model_copy(deep=True)
    changed_s.politics.initial_support = 0.2          # a board far less supportive: support drops clearly
    runs = {}
    for key, s in (("base", base_s), ("changed", changed_s)):
        sim = Simulation(s)
        sim.run()
        runs[key] = sim.snapshot()
    text = figures.plain_summary(runs["changed"], runs["base"], ["Initial political support"], "preset baseline")
    assert text.startswith("Against preset baseline, on the same 4 seed(s) and years")
    assert "(Initial political support)" in text
    assert "Political support" in text and "lower (worse)" in text, text     # measured, clear of noise
    from portfolio_sim.dashboard.compare import final_by_seed, paired_difference
    d = paired_difference(final_by_seed(runs["changed"], "political_support"),
                          final_by_seed(runs["base"], "political_support"))
    assert d.clear and d.median < 0
    # without a comparable baseline (other seeds): what happened over the run, and how to compare
    other = figures.plain_summary(runs["changed"], None, ["Initial political support"], "preset baseline")
    assert other.startswith("From ") and "went from" in other and "Compare scenarios" in other
    same = figures.plain_summary(runs["base"], runs["base"], [], "preset baseline")
    assert "These are the levers of preset baseline" in same


def test_exports_carry_scenario_seeds_years_version_and_date(snapshot):
    import json as _json

    from portfolio_sim.dashboard import exports
    info = _json.loads(exports.run_info_json(snapshot))
    assert info["scenario"] == snapshot.scenario.name and info["seeds"] == list(snapshot.seeds)
    assert info["years"] == snapshot.years and info["model_version"] == exports.model_version()
    assert "UTC" in info["exported"]
    z = zipfile.ZipFile(io.BytesIO(results_zip(snapshot)))
    assert _json.loads(z.read("run_info.json"))["seeds"] == list(snapshot.seeds)
    assert not z.read("yearly.csv").startswith(b"#")                  # the zip's CSVs: the CLI's
    headed = exports.yearly_csv(snapshot, headed=True)
    assert headed.startswith("# yearly metrics") and f"# scenario: {snapshot.scenario.name}" in headed
    assert f"# seeds: {' '.join(map(str, snapshot.seeds))}" in headed and "model version" in headed
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(headed), comment="#"),
                                  pd.read_csv(io.StringIO(exports.yearly_csv(snapshot))))
    report = exports.report_html(snapshot)
    assert "Exported from the portfolio_sim dashboard: model version" in report
    cap = exports.caption(snapshot)
    assert snapshot.scenario.name in cap and f"{len(snapshot.seeds)} seed(s)" in cap
    html_chart = exports.figure_html(figures.build_chart("achievement", snapshot), "Achievement", cap)
    assert cap.split(" · ")[0] in html_chart and "exported 20" in html_chart
