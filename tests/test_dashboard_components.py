"""Dashboard components rendered with solara.render (no browser): controls generated from the schema,
the per-session state behind them, runs, uploads, the tabs and the comparison view."""

from __future__ import annotations

import json

import ipyvuetify as v
import pytest
import solara
from reacton.find import Finder

from conftest import AUTONOMY_POLICY, small
from portfolio_sim.dashboard import components as C
from portfolio_sim.dashboard.state import DashboardState


@pytest.fixture
def state():
    s = DashboardState(preset=None)
    sc = small(**AUTONOMY_POLICY)
    sc.district.students, sc.district.schools, sc.run.years, sc.run.seeds = 3000, 14, 3, 2
    s._set_scenario(sc, "test scenario", None, autorun=False)
    yield s
    s.shutdown()


def texts(rc) -> str:
    """All plain text on the rendered page."""
    return "\n".join(c for w in rc.find(v.Html).widgets for c in w.children if isinstance(c, str))


def by_class(rc, name: str) -> Finder:
    """Widgets carrying CSS class `name` (reacton's find matches attributes exactly)."""
    root = rc.find()
    return Finder(root._walk(lambda w: name in (getattr(w, "class_", None) or "").split()))


def by_testid(rc, testid: str) -> Finder:
    """Widgets with data-testid=`testid` (the same hooks the browser tests use)."""
    return Finder(rc.find()._walk(lambda w: (getattr(w, "attributes", None) or {}).get("data-testid") == testid))


def text_of(w) -> str:
    return getattr(w, "unsafe_innerHTML", None) or " ".join(c for c in w.children if isinstance(c, str))


def deep_text(w) -> str:
    """Every string inside widget `w`, depth first."""
    out = []
    for c in getattr(w, "children", None) or []:
        out.append(c if isinstance(c, str) else deep_text(c))
    return " ".join(out)


def charts(rc) -> list:
    """The visible charts (the page also holds a hidden one that preloads plotly.js)."""
    return [w for w in rc.find(C.PlotlyView).widgets if w.height > 0]


def button(rc, text: str) -> v.Btn:
    """The button whose label contains `text`."""
    found = [w for w in rc.find(v.Btn).widgets if any(isinstance(c, str) and text in c for c in w.children)]
    assert found, f"no button {text!r}"
    return found[0]


def run_and_wait(state: DashboardState, timeout: float = 60) -> None:
    assert state.run()
    assert state.controller.join(timeout)
    assert state.status.value.state == "done", state.status.value


def test_lever_panel_is_generated_from_the_schema_and_moves_the_scenario(state):
    box, rc = solara.render(C.LeverPanel(state), handle_error=False)
    # one section per schema group, in schema order, each with its design question
    heads = [c for w in by_class(rc, "pz-group-btn").widgets for c in w.children if isinstance(c, str)]
    assert heads == [g.title for g in C.levers.group_specs()]
    page = texts(rc)
    for g in C.levers.group_specs():
        assert g.question in page
    # open Governance and pick partner-run
    button(rc, "Governance").click()
    group = by_class(rc, "pz-lever-governance-category")
    group.assert_single()
    select = group.find(v.Select).widget
    assert {i["value"] for i in select.items} == {"district_run", "partner_led", "partner_run"}
    select.v_model = "partner_run"
    assert state.scenario.value.governance.category == "partner_run"
    assert state.changed() == ["governance.category"]
    by_class(rc, "pz-lever--changed").assert_not_empty()
    assert "1 changed" in texts(rc)
    # a slider lever
    button(rc, "Autonomy").click()
    slider = by_class(rc, "pz-lever-autonomy-budget").find(v.Slider).widget
    assert (slider.min, slider.max, slider.step) == (0.0, 1.0, 0.01)
    slider.v_model = 0.35
    assert state.scenario.value.autonomy.budget == 0.35
    # reset one lever
    reset = by_class(rc, "pz-lever-autonomy-budget").find(v.Btn).widget
    reset.click()
    assert state.scenario.value.autonomy.budget == state.base.value.autonomy.budget


def test_out_of_bounds_number_shows_the_allowed_range(state):
    box, rc = solara.render(C.LeverPanel(state), handle_error=False)
    button(rc, "District").click()
    by_class(rc, "pz-lever-district-students").find(v.TextField).assert_single()
    state.set_lever("district.students", 50)       # what the number box sends on Enter / blur
    assert state.scenario.value.district.students == 3000
    assert "allowed: an integer from 100 to 2000000" in state.lever_errors.value["district.students"]
    assert state.lever_errors.value["district.students"] in texts(rc)
    state.set_lever("district.students", 4000)
    assert not state.lever_errors.value and state.scenario.value.district.students == 4000


def test_lever_search_and_only_changed(state):
    box, rc = solara.render(C.LeverPanel(state), handle_error=False)
    search = rc.find(v.TextField, label="Find a lever").widget
    search.v_model = "bargaining"
    by_class(rc, "pz-lever-governance-collective_bargaining").assert_single()
    by_class(rc, "pz-lever-autonomy-staffing").assert_empty()
    search.v_model = ""
    state.set_lever("talent.incubator", True)
    only = rc.find(v.Switch).widgets[0]
    only.v_model = True
    by_class(rc, "pz-lever-talent-incubator").assert_single()
    assert len(by_class(rc, "pz-lever").widgets) == 1


def test_upload_errors_are_shown_not_raised(state):
    box, rc = solara.render(C.ScenarioCard(state), handle_error=False)
    res = state.apply_upload("broken.toml", b"[autonomy]\nstaffing = 7\n", autorun=False)
    assert not res.ok
    msg = text_of(by_testid(rc, "upload-message").widget)
    assert "autonomy.staffing" in msg and "allowed" in msg and "Traceback" not in msg
    state.apply_upload("huge.toml", None, size=10_000_000, autorun=False)
    assert "64 KB" in state.upload.value.message
    ok = state.apply_upload("good.toml", b'extends = "baseline"\nname = "from file"\n', autorun=False)
    assert ok.ok and state.scenario.value.name == "from file" and state.source.value == "uploaded good.toml"


def test_page_runs_the_baseline_on_open_and_switches_tabs(monkeypatch):
    import portfolio_sim.dashboard.state as state_module
    monkeypatch.setattr(state_module, "DEFAULT_SEEDS", 3)
    before = set(map(id, C.SESSIONS))
    box, rc = solara.render(C.Page(), handle_error=False)
    st = next(s for s in C.SESSIONS if id(s) not in before)
    assert st.controller.join(60)
    assert st.result.value is not None and st.result.value.complete
    assert st.result.value.scenario.name == "baseline" and len(st.result.value.seeds) == 3
    by_testid(rc, "kpis").assert_single()
    assert len(charts(rc)) == 4
    for tab, check in (("charts", lambda: len(charts(rc)) == len(C.figures.CHARTS)),
                       ("map", lambda: len(charts(rc)) == 1),
                       ("events", lambda: by_testid(rc, "event-count").widgets),
                       ("export", lambda: "scenario.toml" in str([w.children for w in rc.find(v.Btn).widgets]))):
        st.tab.value = tab
        assert check(), tab
    st.shutdown()


def test_map_click_opens_the_school_history(state):
    run_and_wait(state)
    state.tab.value = "map"
    box, rc = solara.render(C.Results(state), handle_error=False)
    assert state.selected_school.value is None
    view = rc.find(C.PlotlyView).widget
    fig = json.loads(view.figure)
    trace = next(i for i, t in enumerate(fig["data"]) if t.get("customdata"))
    custom = fig["data"][trace]["customdata"][0]
    view.vue_plotly_click({"curve": trace, "index": 0, "customdata": custom})
    assert state.selected_school.value == int(float(custom[0]))
    by_testid(rc, "school-panel").assert_single()
    assert len(charts(rc)) == 2         # the map and the school's history


def test_step_then_run_and_stale_marker(state):
    box, rc = solara.render(C.RunCard(state), handle_error=False)
    assert state.step() and state.controller.join(30)
    assert state.result.value.year == 1 and not state.result.value.complete
    assert state.step() and state.controller.join(30)
    assert state.result.value.year == 2
    run_and_wait(state)
    assert state.result.value.complete and state.result.value.year == 3
    by_testid(rc, "stale-warning").assert_empty()
    state.set_lever("autonomy.staffing", 0.2)
    assert state.results_stale
    by_testid(rc, "stale-warning").assert_not_empty()


def test_cancel_stops_a_long_run(state):
    state.set_lever("run.years", 60)
    state.set_lever("run.seeds", 10)
    box, rc = solara.render(C.Header(state), handle_error=False)     # the one progress indicator
    assert state.run()
    import time
    time.sleep(0.3)
    assert state.cancel()
    assert state.controller.join(30)
    assert state.status.value.state == "cancelled"
    progress = rc.find(C.ProgressView).widget
    assert "Cancelled" in progress.text
    assert not state.result.value or not state.result.value.complete


def test_compare_view_runs_scenarios_on_the_same_seeds(state):
    box, rc = solara.render(C.CompareView(state), handle_error=False)
    assert state.compare_add_current("current")
    assert state.compare_add_preset("baseline")
    store = state.compare.value
    assert [e.label for e in store.entries] == ["current", "baseline"]
    state.compare_settings(years=2, seeds=2)
    assert state.run_comparison() and state.controller.join(60)
    store = state.compare.value
    assert len(store.ready()) == 2
    assert {e.result.seeds for e in store.ready()} == {tuple(store.ready()[0].result.seeds)}   # same seeds
    table = text_of(by_testid(rc, "compare-table").widget)
    assert "current" in table and "baseline" in table
    assert len(charts(rc)) == len(state.compare_metrics.value) + 1     # + difference chart


def test_quick_example_is_mou_vs_contract_through_one_flip(state):
    state.compare_quick_example()
    store = state.compare.value
    a, b = (store.run_scenario(e) for e in store.entries)
    assert (a.governance.category, a.governance.legal_basis) == ("district_run", "mou")
    assert (b.governance.category, b.governance.legal_basis) == ("partner_run", "contract")
    assert a.politics.scheduled_flip_year == b.politics.scheduled_flip_year > 0
    assert a.district == b.district and a.run == b.run


def test_two_sessions_do_not_share_state():
    one, two = DashboardState(preset="baseline", autorun=False), DashboardState(preset="baseline", autorun=False)
    one.set_lever("autonomy.staffing", 0.9)
    one.compare_add_current("mine")
    assert two.scenario.value.autonomy.staffing == 0.0
    assert not two.compare.value.entries


def test_workshop_card_decisions_apply_to_the_next_step_then_reset(state):
    box, rc = solara.render(C.WorkshopCard(state), handle_error=False)
    page = texts(rc)
    for point in C.workshop.DECISION_POINTS:
        assert point.question in page
    assert state.step() and state.controller.join(30)
    board = by_class(rc, "pz-decision-board").find(v.Select).widget
    assert {i["value"] for i in board.items} == {"rule", "protect", "reverse"}
    board.v_model = "reverse"
    assert state.decisions.value.board == "reverse"
    assert "board reverses autonomy" in text_of(by_testid(rc, "decided-next").widget)
    assert state.step() and state.controller.join(30)
    assert state.status.value.state == "done" and "Decided: board reverses autonomy" in state.status.value.message
    assert state.decisions.value.by_rule                      # each year is decided afresh
    assert dict(state.result.value.decisions)[2].board == "reverse"
    assert "Year 2" in texts(rc)                              # listed under "Decided so far"


def test_with_one_seed_the_room_decides_school_by_school():
    st = DashboardState(preset=None)
    try:
        sc = small(AUTONOMY_POLICY, {"accountability": {"closure_percentile": 40, "consecutive_years": 2,
                                                        "intervention": "close"}})
        sc.district.students, sc.district.schools, sc.run.years, sc.run.seeds = 3000, 14, 5, 1
        st._set_scenario(sc, "test scenario", None, autorun=False)
        box, rc = solara.render(C.WorkshopCard(st), handle_error=False)
        assert st.step() and st.controller.join(30)
        risk = C.workshop.at_risk_schools(st.result.value)
        assert len(risk) > 0
        sid = int(risk["school_id"].iloc[0])
        row = by_class(rc, f"pz-school-intervention-{sid}")
        row.assert_single()
        select = row.find(v.Select).widget
        assert {i["value"] for i in select.items} == {"rule", "spare", "close", "restart", "replace_operator"}
        select.v_model = "spare"
        assert st.decisions.value.schools == ((sid, "intervention", "spare"),)
        assert str(risk["name"].iloc[0]) in text_of(by_testid(rc, "decided-next").widget)
        select.v_model = "rule"                                   # back to the choice for all
        assert st.decisions.value.by_rule
        # the same choice from the school's own panel (a click on the map opens it)
        r = st.result.value
        _, panel = solara.render(C.SchoolPanel(st, r, r.seeds[0], sid, r.year), handle_error=False)
        by_class(panel, f"pz-school-intervention-{sid}").find(v.Select).widget.v_model = "close"
        assert st.decisions.value.schools == ((sid, "intervention", "close"),)
        assert select.v_model == "close"                          # the card shows it too
        due = set(risk["school_id"]) | set(C.workshop.contracts_ending(r)["school_id"])
        quiet = int(r.schools.loc[~r.schools["school_id"].isin(due), "school_id"].iloc[0])
        _, other = solara.render(C.SchoolPanel(st, r, r.seeds[0], quiet, r.year), handle_error=False)
        by_class(other, "pz-school-decision").assert_empty()      # nothing to decide for that school
        select.v_model = "spare"
        assert st.step() and st.controller.join(30)
        assert dict(st.result.value.decisions)[2].choice("intervention", sid) == "spare"
        ev, panel = st.result.value.events, st.result.value.schools
        here = (ev["school_id"] == sid) & (ev["year"] == 2)
        reached = bool((panel[(panel["year"] == 2) & (panel["school_id"] == sid)]["years_below_bar"] >= 2).any())
        assert len(ev[here & (ev["event"] == "spared")]) == int(reached)     # spared if it reached the trigger
        assert ev[here & (ev["event"] == "closure")].empty
    finally:
        st.shutdown()


def test_with_several_seeds_school_by_school_is_offered_only_with_one(state):
    box, rc = solara.render(C.WorkshopCard(state), handle_error=False)
    assert state.step() and state.controller.join(30)
    assert "With one seed" in texts(rc)
    by_class(rc, "pz-school-decisions").assert_empty()


def test_another_scenarios_results_never_show_under_this_name(state):
    """Issue 13 item 1: after loading a scenario that does not run by itself, the old numbers are hidden;
    the page says what a run takes and offers a quick look; Step says why it cannot step."""
    run_and_wait(state)
    assert state.result.value is not None
    box, rc = solara.render(C.Dashboard(state), handle_error=False)
    assert by_testid(rc, "kpis").widgets
    assert state.load_preset("la_pilot_schools")           # 600,000 students: too large to run by itself
    assert not state.controller.busy
    assert state.results_of_other_scenario
    assert not by_testid(rc, "kpis").widgets                  # no numbers of the previous scenario
    note = deep_text(by_testid(rc, "not-run").widget)
    assert "la_pilot_schools: not run yet" in note and "About " in note and "10 years × 5 seeds" in note
    assert "Quick look: 5 years × 2 seed(s)" in note
    assert text_of(by_testid(rc, "run-state").widget) == "Not run yet"
    assert "at most 2 seed(s)" in text_of(by_testid(rc, "step-limit").widget)
    assert state.estimate() > 10
    years, seeds = state.quick_look()
    assert years <= 5 and seeds <= 2


def test_rerun_dims_and_labels_the_previous_results(state):
    run_and_wait(state)
    box, rc = solara.render(C.Results(state), handle_error=False)
    assert not by_testid(rc, "results-label").widgets
    state.set_lever("autonomy.staffing", 0.9)
    assert "Out of date" in text_of(by_testid(rc, "results-label").widget)
    assert by_class(rc, "pz-results--stale").widgets


def test_progress_line_has_counts_and_time_left():
    from portfolio_sim.dashboard.simulation import RunStatus
    st = RunStatus(state="running", kind="run", done=45, total=50, message="seed 5 of 5", started=1.0)
    import time as _t
    st = RunStatus(**{**st.__dict__, "started": _t.time() - 9.0})
    text = C.progress_text(st)
    assert "45/50 seed-years" in text and "so far" in text and "about 1 s left" in text
    queued = RunStatus(state="running", kind="run", total=50, started=_t.time(), queued=3)
    assert "3 run(s) ahead" in C.progress_text(queued)
    assert C.progress_props(st)["value"] == pytest.approx(90.0)

def test_assumptions_section_is_collapsed_and_editable(state):
    box, rc = solara.render(C.LeverPanel(state), handle_error=False)
    panel = by_class(rc, "pz-assumptions")
    panel.assert_single()
    assert not by_class(rc, "pz-lever-assumptions-politics-incumbency").widgets   # collapsed: not built
    panel.widget.v_model = ["assumptions"]                                           # open it
    button(rc, "Politics coefficients").click()
    slider = by_class(rc, "pz-lever-assumptions-politics-incumbency").find(v.Slider).widget
    assert (slider.min, slider.max) == (0.0, 1.5)
    slider.v_model = 1.0
    assert state.scenario.value.assumptions.politics.incumbency == 1.0
    assert state.changed() == ["assumptions.politics.incumbency"]
    assert "1 changed" in texts(rc)
