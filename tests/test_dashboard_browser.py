"""The dashboard in a real browser: Debian's chromium driven by Playwright (pytest-playwright), offline.

A module-scoped fixture starts `dashboards/serve.py` on a free port. Every page runs in its own browser
context with every request to anything but 127.0.0.1 aborted (and recorded: a test fails if the page
asked for anything off the machine). Screenshots and downloads go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from browser_helpers import (ROOT, axe, browser_type_launch_args, free_port, offline,  # noqa: F401 - a fixture
                             require_chromium, start_server, stop_server)

require_chromium("the dashboard's browser tests")
from playwright.sync_api import expect  # noqa: E402 - after the check that playwright is there

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"

# Solara's front end occasionally reports "widget model not found" or misses a render under load
# (seen in full runs of this file; each passes when rerun): a failing browser test gets more tries.
# Three, not two: in two fresh-clone runs of `make test` (session 5) the export test failed exactly twice
# (~60 s each: a 45 s wait) and then passed in 18 s, while alone, or with this file beside heavy model
# tests, it passes first time. Not understood yet: an open problem, not an accepted one.
pytestmark = pytest.mark.flaky(reruns=3, reruns_delay=2)


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_server(ARTIFACTS / "server.log", port)
    yield f"http://127.0.0.1:{port}/"
    stop_server(proc)
    text = (ARTIFACTS / "server.log").read_text()
    assert "Traceback" not in text, f"the server logged a traceback; see {ARTIFACTS / 'server.log'}"
    assert "Could not load URL" not in text, "the server tried to fetch front-end assets from the internet"


class Session:
    """One browser context (one person) on the dashboard, offline."""

    def __init__(self, browser, url: str, name: str, viewport: tuple[int, int] = (1500, 1300)):
        self.name = name
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           accept_downloads=True)
        offline(self.context, self.blocked, self.requests)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(45_000)
        self.t0 = time.perf_counter()
        self.page.goto(url)

    # -- helpers ---------------------------------------------------------------------------------
    def wait_up_to_date(self, timeout: float = 60_000) -> None:
        self.page.get_by_test_id("run-state").filter(has_text="Results up to date").wait_for(timeout=timeout)

    def charts_rendered(self) -> list[int]:
        return self.page.eval_on_selector_all(".pz-plotly-inner", "els => els.map(e => +e.dataset.rendered || 0)")

    def wait_charts(self, n: int) -> None:
        self.page.wait_for_function(
            "n => [...document.querySelectorAll('.pz-plotly-inner')].filter(e => +e.dataset.rendered > 0 "
            "&& e.querySelector('.main-svg')).length >= n", arg=n)

    def chart_data(self, index: int = 0) -> list:
        self.page.wait_for_function("i => { const gd = document.querySelectorAll('.pz-plotly-inner')[i]; "
                                    "return !!(gd && gd.data); }", arg=index)
        return self.page.evaluate(
            "i => { const gd = document.querySelectorAll('.pz-plotly-inner')[i]; "
            "return gd.data.map(t => Array.from(t.y || []).map(v => +v)); }", index)

    def tab(self, label: str) -> None:
        self.page.locator(".pz-tab", has_text=label).click()

    def kpi(self, label: str) -> str:
        return self.page.locator(".pz-kpi", has_text=label).locator(".pz-kpi-value").inner_text()

    def pick(self, select, option: str) -> None:
        """Choose `option` in a single Vuetify select (a locator, or CSS for the first match); returns once
        the select shows it. A select disabled while a job runs is waited out first (Playwright only knows
        native controls as disabled; a click on a disabled v-select opens nothing). Under load the page
        can still be laying out or redrawing while the menu is open (a panel opening above the select, a
        re-render streaming in), and the click on the item is lost: the select keeps its old value and the
        server never hears of it. So the choice is checked, and the menu opened again if it did not take."""
        select = (self.page.locator(select) if isinstance(select, str) else select).first
        shown = select.locator(".v-select__selection-text")
        for attempt in range(3):
            expect(select).not_to_have_class(re.compile(r"\bv-input--disabled\b"), timeout=45_000)
            select.click()
            items = self.page.get_by_role("option", name=option, exact=True)
            items.last.click()      # the menu opened last: a select re-rendered away can leave its menu behind
            try:
                # the select shows a choice at once, in the page itself (before the server answers)
                expect(shown).to_have_text(option, timeout=5_000)
                return
            except AssertionError:
                print(f"{self.name}: choosing {option!r} did not take (attempt {attempt + 1}, {items.count()} "
                      f"menu(s) offer it, select expanded: {select.locator('[aria-expanded]').first.get_attribute('aria-expanded')}); "
                      "opening the menu again")
                self.page.keyboard.press("Escape")
        expect(shown).to_have_text(option, timeout=5_000)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.blocked, f"{self.name}: the page asked for hosts other than 127.0.0.1: {self.blocked[:5]}"
        assert not self.errors, f"{self.name}: JavaScript errors: {self.errors[:3]}"


@pytest.fixture
def session(browser, server, request):
    s = Session(browser, server, request.node.name)
    yield s
    s.close()


@pytest.fixture(scope="module")
def desk(browser, server):
    """One page, at a 1280x800 projector's size, shared by the tests that look more than they change
    (each puts back what it changes): one page load and one baseline run for all of them."""
    s = Session(browser, server, "desk (1280x800)", viewport=(1280, 800))
    s.wait_up_to_date()
    s.wait_charts(4)
    yield s
    s.close()


# what each tab shows once it is drawn (waited for instead of a fixed pause)
TAB_READY = {"Overview": "[data-testid=kpis]", "Charts": ".pz-chart .pz-plotly-inner[data-rendered]",
             "District map": ".pz-map .pz-plotly-inner[data-rendered]", "Event log": "[data-testid=event-count]",
             "Compare scenarios": "text=Compare scenarios on the same seeds",
             "Export": "text=All results (zip)"}


def open_tab(s, label: str) -> None:
    s.tab(label)
    s.page.locator(".pz-tab--active", has_text=label).wait_for()
    s.page.locator(TAB_READY[label]).first.wait_for()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _record(name: str, value) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2))


# ------------------------------------------------------------------------------------------------

def test_opens_offline_with_the_baseline_results(session, tmp_path):
    s = session
    s.wait_up_to_date()
    s.wait_charts(4)
    _record("first_results_seconds", round(time.perf_counter() - s.t0, 2))
    # item 9: from a fresh page, Tab presses to Run and to the result tabs (the skip links)
    presses = keyboard_presses_to(s.page, "Skip to Run", ".pz-run")
    assert presses <= 3, f"{presses} Tab presses to reach Run"
    s.page.keyboard.press("Tab")
    assert s.page.evaluate("() => document.activeElement.closest('.pz-stepbtn') !== null")    # then Step
    presses_tabs = keyboard_presses_to(s.page, "Skip to the results", ".pz-tab", restart=True)
    assert presses_tabs <= 4, f"{presses_tabs} Tab presses to reach the result tabs"
    _record("tab_presses_to_run_and_tabs", [presses, presses_tabs])
    assert s.page.get_by_test_id("scenario-name").inner_text() == "baseline"
    kpis = s.page.get_by_test_id("kpis")
    assert "Mean achievement" in kpis.inner_text() and "Political support" in kpis.inner_text()
    assert "3 seed(s) x 10 years" in s.page.get_by_test_id("result-line").inner_text()
    # the front end came from Solara's local asset cache, and plotly.js from the server
    cdn = [u for u in s.requests if "/_solara/cdn/" in u]
    assert any("solara-vuetify" in u for u in cdn) and any("require" in u for u in cdn)
    assert any(u.endswith("/static/assets/plotly.min.js") for u in s.requests)
    # the lever panel: every schema group with its design question
    groups = s.page.locator(".pz-group-btn").all_inner_texts()
    assert [g.strip().lower() for g in groups] == ["district", "autonomy", "governance", "eligibility",
                                                  "central office", "accountability", "school choice", "talent",
                                                  "implementation", "politics"]
    s.shot("01-first-load")
    # item 3: chart lines in the Okabe-Ito palette, told apart by dash/marker as well as colour
    colors = s.page.evaluate("() => [...document.querySelectorAll('.pz-plotly-inner')].flatMap(gd => "
                             "gd._fullData.filter(t => t.mode && t.mode.includes('lines') && t.showlegend)"
                             ".map(t => [t.line.color.toLowerCase(), t.line.dash, t.marker.symbol]))")
    assert colors and not {c for c, _, _ in colors} & {"#d62728", "#2ca02c"}      # no red-green pair
    assert all(c in {"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442", "#000000",
                     "#333333"} for c, _, _ in colors), colors
    # a chart as PNG (drawn by plotly.js in the browser) and as self-contained HTML
    card = s.page.locator(".pz-chart").first
    with s.page.expect_download() as dl:
        card.get_by_role("button", name="PNG", exact=True).click()
    png = tmp_path / "chart.png"
    dl.value.save_as(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with s.page.expect_download() as dl:
        card.get_by_role("button", name="HTML", exact=True).click()
    html = tmp_path / "chart.html"
    dl.value.save_as(html)
    text = html.read_text()
    assert "Plotly.newPlot" in text
    assert not re.search(r"<script[^>]+src=[\"']https?://", text)    # plotly.js inline: opens offline


def keyboard_presses_to(page, link: str, target: str, restart: bool = False, limit: int = 12) -> int:
    """Tab presses (Enter on the skip link `link` counts as none) until the focus is in `target`. With
    `restart` the count starts over from the page's first element (the focus is put there: 1 press)."""
    presses = 0
    if restart:
        page.evaluate("() => document.querySelector('.pz-skip').focus()")
        presses = 1
    while presses < limit:
        focused = page.evaluate("t => { const a = document.activeElement; return [a ? a.innerText || '' : '', "
                                "!!(a && a.closest(t))]; }", target)
        if focused[1]:
            return presses
        if focused[0].strip() == link:
            page.keyboard.press("Enter")
            page.wait_for_function("l => (document.activeElement.innerText || '').trim() !== l", arg=link)
        page.keyboard.press("Tab")
        presses += 1
    return presses


def test_styled_from_the_first_paint(server):
    """Item 11: the stylesheet is in the page's <head> (Solara's custom.css), so nothing shows unstyled
    while the widgets arrive."""
    html = urllib.request.urlopen(server, timeout=30).read().decode()
    head = html[:html.index("</head>")]
    m = re.search(r'href="([^"]*/static/assets/custom\.css[^"]*)"', head)
    css = (urllib.request.urlopen(server.rstrip("/") + m.group(1)[m.group(1).index("/static"):], timeout=30)
           .read().decode() if m else head)
    assert ".pz-app" in css and ".pz-header" in css and ".pz-side" in css


def test_projector_layout_changed_levers_next_to_run_and_summary(desk):
    """Item 6 at 1280 px: no overflow, the event log keeps its Download button and Why column; a changed
    lever shows next to Run (and resets from there); item 7: the plain summary against the baseline."""
    s = desk
    page = s.page
    wide = {}
    for label in ("Overview", "Event log", "Compare scenarios"):
        open_tab(s, label)
        w = page.evaluate("() => document.documentElement.scrollWidth")
        if w > 1281:
            wide[label] = w
        if label == "Event log":
            button = page.get_by_role("button", name=re.compile("Download these events")).bounding_box()
            why = page.locator(".pz-main th", has_text="Why").first.bounding_box()
            assert button and button["x"] + button["width"] <= 1280, button
            assert why and why["x"] + why["width"] <= 1280, why
            s.shot("17-projector-events")
    assert not wide, f"page wider than 1280 px: {wide}"
    open_tab(s, "Overview")
    assert "These are the levers of preset baseline" in page.get_by_test_id("plain-summary").inner_text()
    page.locator(".pz-group-btn", has_text="Politics").click()
    page.locator(".pz-lever-politics-initial_support .v-slider-thumb").focus()
    page.keyboard.press("Home")
    near = page.get_by_test_id("changed-levers")
    near.filter(has_text="1 lever(s) changed from preset baseline").wait_for()
    chip, run = near.locator(".pz-changed-chip").first, page.locator(".pz-run")
    assert "Initial support: 0.6 → 0" in chip.inner_text(), chip.inner_text()
    gap = run.bounding_box()["y"] - (chip.bounding_box()["y"] + chip.bounding_box()["height"])
    assert 0 <= gap < 80, f"the changed lever is {gap:.0f} px from Run"
    s.shot("18-projector-changed-next-to-run")
    run.click()
    s.page.get_by_test_id("plain-summary").filter(has_text="Against preset baseline").wait_for(timeout=60_000)
    text = page.get_by_test_id("plain-summary").inner_text()
    assert "on the same 3 seed(s)" in text and "Political support" in text, text
    assert "clear of seed noise" in text and "lower (worse)" in text, text    # support from 0.5 to 0: clearly lower
    chip.click()                                           # put it back, from next to Run
    near.filter(has_text="No lever changed").wait_for()
    run.click()
    s.wait_up_to_date()
    page.get_by_test_id("plain-summary").filter(has_text="These are the levers of").wait_for()


def test_absent_categories_greyed_in_the_legend(desk):
    """Item 5: the baseline has no autonomous schools: their enrollment lines are legend-only, named so."""
    s = desk
    open_tab(s, "Charts")
    s.wait_charts(8)
    greyed = s.page.evaluate("() => [...document.querySelectorAll('.pz-plotly-inner')].flatMap(gd => "
                             "gd._fullData.filter(t => t.visible === 'legendonly').map(t => t.name))")
    assert any(n.startswith("District-run") and n.endswith("(none in this run)") for n in greyed), greyed
    legend = s.page.locator(".pz-plotly-inner .legendtext").all_text_contents()
    assert any("(none in this run)" in x for x in legend)
    assert s.page.get_by_text(re.compile("None in this run: .*District-run")).count() >= 1
    open_tab(s, "Overview")


def test_exports_carry_their_context(desk, tmp_path):
    """Item 8: CSVs, run_info.json, the zip, report.html and a chart's PNG say what they are of."""
    s = desk
    page = s.page
    with page.expect_download() as dl:
        page.locator(".pz-chart").first.get_by_role("button", name="PNG", exact=True).click()
    data = Path(dl.value.path()).read_bytes()
    width, height = png_size(data)
    expected = int(page.locator(".pz-chart .pz-plotly-inner").first.get_attribute("data-png-height"))
    assert width == 2000 and height == 2 * expected            # 1000 px at scale 2, legend band included
    (ARTIFACTS / "chart-export.png").write_bytes(data)
    open_tab(s, "Export")
    with page.expect_download() as dl:
        page.get_by_role("button", name="yearly.csv").click()
    text = Path(dl.value.path()).read_text()
    assert text.startswith("# yearly metrics") and "# scenario: baseline" in text and "# seeds: " in text
    assert "# model version: " in text and " UTC" in text and "# years: 2025-2035" in text
    with page.expect_download() as dl:
        page.get_by_role("button", name="run_info.json").click()
    info = json.loads(Path(dl.value.path()).read_text())
    assert info["scenario"] == "baseline" and len(info["seeds"]) == 3 and info["years"] == 10
    assert info["model_version"] and info["exported"].endswith("UTC")
    with page.expect_download() as dl:
        page.get_by_role("button", name="All results (zip)").click()
    z = zipfile.ZipFile(dl.value.path())
    assert {"yearly.csv", "summary.csv", "schools.csv", "events.csv", "scenario.toml", "report.html",
            "run_info.json"} <= set(z.namelist())                    # the CLI's files, and what they are of
    assert json.loads(z.read("run_info.json"))["seeds"] == info["seeds"]
    s.shot("06-export")
    assert b"Exported from the portfolio_sim dashboard: model version" in z.read("report.html")
    open_tab(s, "Overview")


def test_preset_lever_run_changes_the_charts(session):
    s = session
    s.wait_up_to_date()
    s.pick(".pz-preset", "camden renaissance")
    s.page.get_by_test_id("scenario-name").filter(has_text="camden_renaissance").wait_for()
    s.wait_up_to_date()
    s.wait_charts(4)
    before_kpi = s.kpi("Political support")
    before = s.chart_data(1)                              # political support chart
    # Politics: force a skeptical board in year 3
    s.page.locator(".pz-group-btn", has_text="Politics").click()
    lever = s.page.locator(".pz-lever-politics-scheduled_flip_year")
    lever.locator(".v-slider-thumb").focus()
    for _ in range(3):
        s.page.keyboard.press("ArrowRight")
    lever.locator(".pz-lever-value", has_text="3").wait_for()
    s.page.get_by_test_id("run-state").filter(has_text="out of date").wait_for()
    s.page.get_by_test_id("stale-warning").wait_for()
    s.shot("02-lever-changed")
    s.page.locator(".pz-run").click()
    s.wait_up_to_date()
    s.page.wait_for_function("old => { const gd = document.querySelectorAll('.pz-plotly-inner')[1]; "
                             "return !!(gd && gd.data) && JSON.stringify(gd.data.map(t => Array.from(t.y || [])"
                             ".map(v => +v))) !== old; }", arg=json.dumps(before))
    assert s.chart_data(1) != before
    assert s.page.locator(".pz-lever--changed").count() == 1
    s.shot("03-after-run")
    _record("politics_kpi_before_after", [before_kpi, s.kpi("Political support")])


def test_step_year_by_year_and_cancel(session):
    s = session
    s.wait_up_to_date()
    s.wait_charts(4)
    times = []
    for year in (1, 2, 3):
        counts = s.charts_rendered()
        t0 = time.perf_counter()
        s.page.locator(".pz-stepbtn").click()
        s.page.get_by_test_id("result-line").filter(has_text=f"year {year} of 10").wait_for()
        try:
            s.page.wait_for_function("old => [...document.querySelectorAll('.pz-plotly-inner')].slice(0, old.length)"
                                     ".every((e, i) => +e.dataset.rendered > old[i])", arg=counts)
        except Exception as exc:   # say which charts did not redraw (and what the page shows) when it fails
            raise AssertionError(f"year {year}: charts rendered before {counts}, now {s.charts_rendered()}; "
                                 f"run-state {s.page.get_by_test_id('run-state').inner_text()!r}") from exc
        times.append(round(time.perf_counter() - t0, 3))
    _record("baseline_step_seconds_3_seeds", times)
    assert s.page.get_by_test_id("run-state").inner_text() == "Year 3 of 10"
    s.shot("04-stepped")
    # a long run, cancelled
    seeds = s.page.locator(".pz-lever-run-seeds input")
    seeds.fill("20")
    seeds.press("Enter")
    s.page.locator(".pz-lever-run-years .v-slider-thumb").focus()
    s.page.keyboard.press("End")
    s.page.locator(".pz-run", has_text="Run 60 years").click()
    s.page.get_by_test_id("run-status").filter(has_text="seed").wait_for()
    s.page.locator(".pz-cancel").click()
    s.page.get_by_test_id("run-status").filter(has_text="Cancelled").wait_for(timeout=20_000)
    assert s.page.locator(".pz-run").is_enabled()


def test_compare_two_designs_through_the_same_board_flip(session):
    s = session
    s.wait_up_to_date()
    s.tab("Compare scenarios")
    s.page.locator(".pz-example").click()
    s.page.get_by_test_id("notice").filter(has_text="board flips in year 5").wait_for()
    s.page.locator(".pz-run-compare").click()
    table = s.page.get_by_test_id("compare-table").filter(has_text="partner-run under contract")
    table.wait_for(timeout=90_000)
    text = table.inner_text()
    assert "MOU-based district-run" in text and "partner-run under contract" in text and "Δ" in text
    # item 4: every difference says whether it is clear of seed noise; clear ones lead
    verdicts = re.findall(r"(clear of seed noise|within seed noise|no difference)", text)
    assert len(verdicts) >= 10
    rows = [r for r in text.splitlines() if "seed noise" in r or "no difference" in r]
    flags = ["✔" in r for r in rows]
    assert flags == sorted(flags, reverse=True)
    s.page.get_by_test_id("clear-differences").wait_for()
    s.wait_charts(7)                                       # 6 metrics + the paired difference chart
    legend = s.page.locator(".pz-plotly-inner").first.locator(".legendtext").all_text_contents()
    assert {"MOU-based district-run", "partner-run under contract"} <= set(legend)
    assert s.page.locator(".pz-plotly-inner").first.locator("text", has_text="board flips").count() >= 1
    s.shot("05-compare")


def test_export_scenario_toml_runs_with_the_cli(session, tmp_path):
    s = session
    s.wait_up_to_date()
    name = s.page.locator(".pz-name input")
    name.fill("exported_from_browser")
    name.press("Enter")
    s.page.get_by_test_id("scenario-name").filter(has_text="exported_from_browser").wait_for()
    s.page.locator(".pz-group-btn", has_text="Eligibility").click()
    s.pick(".pz-lever-eligibility-schools .v-select", "Turnaround (low performers)")
    # an assumption, from the collapsed Assumptions section, is saved with the levers
    s.page.locator(".pz-assumptions .v-expansion-panel-title").click()
    s.page.locator(".pz-group-btn", has_text="Politics coefficients").click()
    lever = s.page.locator(".pz-lever-assumptions-politics-incumbency")
    shown = lever.locator(".pz-lever-value").inner_text()
    lever.locator(".v-slider-thumb").focus()
    s.page.keyboard.press("ArrowRight")       # one step up (the slider snaps to its 0.02 grid from 0)
    s.page.wait_for_function("t => document.querySelector('.pz-lever-assumptions-politics-incumbency "
                             ".pz-lever-value').innerText !== t", arg=shown)
    moved = lever.locator(".pz-lever-value").inner_text().split()[0]       # "0.78 log-odds"
    assert float(moved) > float(shown.split()[0])
    with s.page.expect_download() as dl:
        s.page.get_by_role("button", name="Save scenario (.toml)").click()
    path = tmp_path / "exported.toml"
    dl.value.save_as(path)
    (ARTIFACTS / "exported.toml").write_text(path.read_text())
    assert 'name = "exported_from_browser"' in path.read_text()
    assert 'schools = "turnaround"' in path.read_text()
    assert f"incumbency = {float(moved)}" in path.read_text()
    out = tmp_path / "cli_run"
    proc = subprocess.run([sys.executable, "-m", "portfolio_sim.cli", "run", str(path), "--years", "1", "--seeds", "1",
                           "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "yearly.csv").exists() and (out / "report.html").exists()
    # (the results zip from the Export tab: test_exports_carry_their_context)


def test_upload_broken_and_good_scenarios(session, tmp_path):
    s = session
    s.wait_up_to_date()
    upload = s.page.get_by_test_id("scenario-upload-input")
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\n[autonomy]\nstaffing = 7\n[choice]\npolicy = "lottery"\n')
    upload.set_input_files(str(broken))
    msg = s.page.get_by_test_id("upload-message")
    msg.filter(has_text="autonomy.staffing").wait_for()
    text = msg.inner_text()
    assert "broken.toml: invalid scenario" in text and "choice.policy" in text and "allowed" in text
    assert "Traceback" not in s.page.locator("body").inner_text()
    s.shot("07-upload-error")
    not_toml = tmp_path / "notes.toml"
    not_toml.write_text("this is [not toml\n")
    upload.set_input_files(str(not_toml))
    msg.filter(has_text="not valid TOML").wait_for()
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 10_000)
    upload.set_input_files(str(big))
    msg.filter(has_text="64 KB").wait_for()
    good = tmp_path / "good.toml"
    good.write_text('extends = "baseline"\nname = "uploaded_design"\n[governance]\ncategory = "partner_run"\n')
    upload.set_input_files(str(good))
    s.page.get_by_test_id("scenario-name").filter(has_text="uploaded_design").wait_for()
    s.wait_up_to_date()
    assert "Loaded good.toml" in msg.inner_text()


def test_two_browser_contexts_do_not_share_state(browser, server):
    a = Session(browser, server, "alice")
    b = Session(browser, server, "bob")
    try:
        a.wait_up_to_date()
        b.wait_up_to_date()
        name = a.page.locator(".pz-name input")
        name.fill("alice_design")
        name.press("Enter")
        a.page.locator(".pz-group-btn", has_text="Autonomy").click()
        a.page.locator(".pz-lever-autonomy-staffing .v-slider-thumb").focus()
        a.page.keyboard.press("End")
        a.page.get_by_test_id("scenario-name").filter(has_text="alice_design").wait_for()
        a.tab("Compare scenarios")
        a.page.locator(".pz-add-current").click()
        a.page.locator(".pz-entry").first.wait_for()
        # bob sees none of it
        assert b.page.get_by_test_id("scenario-name").inner_text() == "baseline"
        b.page.locator(".pz-group-btn", has_text="Autonomy").click()
        assert b.page.locator(".pz-lever-autonomy-staffing .pz-lever-value").inner_text() == "0"
        b.tab("Compare scenarios")
        assert b.page.locator(".pz-entry").count() == 0
        # and bob's change does not reach alice
        bname = b.page.locator(".pz-name input")
        bname.fill("bob_design")
        bname.press("Enter")
        b.page.get_by_test_id("scenario-name").filter(has_text="bob_design").wait_for()
        time.sleep(0.5)
        assert a.page.get_by_test_id("scenario-name").inner_text() == "alice_design"
        assert a.page.locator(".pz-entry").count() == 1
        a.shot("08-session-alice")
        b.shot("08-session-bob")
    finally:
        a.close()
        b.close()


def same_place(box: dict | None, before: dict) -> bool:
    """The same position and size (to the pixel)."""
    return box is not None and all(abs(box[k] - before[k]) <= 1 for k in ("x", "y", "width", "height"))


def test_map_click_find_a_school_and_event_filters(desk):
    s = desk
    open_tab(s, "District map")
    s.page.locator(".pz-map .pz-plotly-inner[data-rendered] .main-svg").first.wait_for()
    s.page.wait_for_function("() => { const gd = document.querySelector('.pz-map .pz-plotly-inner'); "
                             "return gd && gd._fullLayout && gd._fullLayout.xaxis._length > 0; }")
    assert s.page.evaluate("() => document.documentElement.scrollWidth") <= 1281    # fits the projector
    controls = s.page.get_by_test_id("map-controls").bounding_box()
    map_box = s.page.locator(".pz-map").bounding_box()
    xy = s.page.evaluate("""() => {
        const gd = document.querySelector('.pz-map .pz-plotly-inner');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const t = gd._fullData.find(d => d.type === 'scatter' && d.customdata && d.x.length);
        const r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(t.x[0]), r.top + ya._offset + ya.l2p(t.y[0])];
    }""")
    s.page.mouse.move(xy[0], xy[1])
    s.page.locator(".pz-map .hoverlayer .hovertext").first.wait_for()   # on a school
    s.page.mouse.click(xy[0], xy[1])
    panel = s.page.get_by_test_id("school-panel")
    panel.filter(has_text="Enrollment").wait_for()
    assert "Rating" in panel.inner_text() and "seats" in panel.inner_text()
    first = panel.locator("h2").inner_text()
    # item 11: the controls and the map did not move; Find a school searches, it never appends
    assert same_place(s.page.get_by_test_id("map-controls").bounding_box(), controls)
    assert same_place(s.page.locator(".pz-map").bounding_box(), map_box)
    find = s.page.locator(".pz-school-find input")
    find.fill("high")
    matches = s.page.get_by_test_id("school-matches")
    matches.locator(".pz-school-match").first.wait_for()
    names = matches.locator(".pz-school-match").all_inner_texts()
    assert names and all("high" in n.lower() for n in names), names
    target = next(n for n in names if not n.startswith(first)).split(" (")[0]
    matches.locator(".pz-school-match", has_text=target).first.click()
    panel.locator("h2", has_text=target).wait_for()
    s.page.wait_for_function("() => document.querySelector('.pz-school-find input').value === ''")  # ready again
    find.fill("zzz")
    matches.filter(has_text="No school's name contains 'zzz'").wait_for()
    find.fill("")
    assert same_place(s.page.get_by_test_id("map-controls").bounding_box(), controls)
    s.wait_charts(2)                                        # the map and the school's history
    s.page.locator(".pz-map-color button", has_text="rating").click()
    s.page.wait_for_function("() => document.querySelector('.pz-map .colorbar') !== null")
    s.shot("09-map-school")
    s.tab("Event log")
    count = s.page.get_by_test_id("event-count")
    total = count.inner_text()
    s.page.locator(".pz-event-types").click()
    s.page.get_by_role("option").filter(has_text=re.compile(r"^election")).first.click()
    s.page.keyboard.press("Escape")
    s.page.wait_for_function("t => document.querySelector('[data-testid=event-count]').innerText !== t", arg=total)
    shown = s.page.get_by_test_id("event-count").inner_text()
    assert int(shown.split()[0].replace(",", "")) < int(total.split()[0].replace(",", ""))
    s.shot("10-events")
    s.page.locator(".pz-event-types .v-chip__close, .pz-event-types [aria-label*=lose]").first.click()
    s.page.get_by_test_id("event-count").filter(has_text=total).wait_for()
    open_tab(s, "Overview")


def test_workshop_players_reverse_autonomy_while_stepping(session):
    """A workshop: step year by year, the room (playing the board) reverses autonomy in year 4; the step
    applies it in every seed, the choice resets, and the event log says it was a workshop decision."""
    # (camden_renaissance has autonomous schools in every seed by year 3, so each seed reverses)
    s = session
    s.wait_up_to_date()
    s.pick(".pz-preset", "camden renaissance")
    s.page.get_by_test_id("scenario-name").filter(has_text="camden_renaissance").wait_for()
    s.wait_up_to_date()
    for year in (1, 2, 3):
        s.page.locator(".pz-stepbtn").click()
        s.page.get_by_test_id("result-line").filter(has_text=f"year {year} of 10").wait_for()
    s.page.locator(".pz-workshop summary, .pz-workshop .v-expansion-panel-title").first.click()
    s.page.locator(".pz-agenda").filter(has_text="year 4").wait_for()
    s.pick(".pz-decision-board .v-select", "board reverses autonomy")
    s.page.get_by_test_id("decided-next").filter(has_text="year 4: board reverses autonomy").wait_for()
    s.shot("11-workshop-decision")
    s.page.locator(".pz-stepbtn").click()
    s.page.get_by_test_id("result-line").filter(has_text="year 4 of 10").wait_for()
    s.page.get_by_test_id("decided-next").wait_for(state="detached")       # next year is decided afresh
    s.tab("Event log")
    total = s.page.get_by_test_id("event-count").inner_text()
    s.page.locator(".pz-event-text input").fill("workshop decision")
    s.page.wait_for_function("t => document.querySelector('[data-testid=event-count]').innerText !== t", arg=total)
    shown = int(s.page.get_by_test_id("event-count").inner_text().split()[0].replace(",", ""))
    assert shown >= 3                      # a reversal in each of the 3 seeds (the server's default here)
    s.page.get_by_text("workshop decision", exact=True).first.wait_for()   # the reversals' cause
    s.shot("12-workshop-events")
    # with one seed, the room decides school by school
    seeds = s.page.locator(".pz-lever-run-seeds input")
    seeds.fill("1")
    seeds.press("Enter")
    # step until next year's agenda names a school to decide (at the trigger, or a contract ending): it
    # is drawn from the same result as the rows; counting the rows at once could run ahead of them
    for year in (1, 2, 3, 4):
        s.page.locator(".pz-stepbtn").click()
        s.page.get_by_test_id("result-line").filter(has_text=f"year {year} of 10").wait_for()
        agenda = s.page.locator(".pz-agenda").filter(has_text=f"year {year + 1} (").inner_text()
        if re.search(r"\b[1-9]\d* school\(s\) below|\bcontract\(s\) or MOU", agenda):
            break
    else:
        pytest.fail(f"no school to decide one by one in years 2-5 of one seed; the agenda said: {agenda}")
    row = s.page.locator(".pz-school-decision").first
    s.pick(row.locator(".v-select"), "another year")
    s.page.get_by_test_id("decided-next").filter(has_text="another year").wait_for()
    s.page.locator(".pz-workshop").screenshot(path=str(ARTIFACTS / "13-workshop-school-by-school.png"))


def _in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    vp = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= vp["height"] and box["width"] > 0


def test_large_preset_shows_no_stale_numbers_and_progress_stays_in_view(browser, server):
    """Item 1: a preset too large to run by itself shows "not run yet" (no numbers of the previous
    scenario), Step says why it cannot; item 2: one progress indicator in view, counts going up."""
    s = Session(browser, server, "large-preset", viewport=(1440, 900))
    try:
        s.wait_up_to_date()
        s.page.get_by_test_id("kpis").wait_for()
        s.pick(".pz-preset", "la pilot schools")
        s.page.get_by_test_id("scenario-name").filter(has_text="la_pilot_schools").wait_for()
        note = s.page.get_by_test_id("not-run")
        note.filter(has_text="not run yet").wait_for()
        assert s.page.get_by_test_id("kpis").count() == 0
        assert s.page.get_by_test_id("run-state").inner_text() == "Not run yet"
        assert re.search(r"About \d+ (s|min)", note.inner_text())
        assert "at most 2 seed(s)" in s.page.get_by_test_id("step-limit").inner_text()
        assert s.page.locator(".pz-stepbtn").is_disabled()
        s.shot("14-large-preset-not-run")
        s.page.locator(".pz-quick-look").click()
        status = s.page.get_by_test_id("run-status")
        status.filter(has_text="seed-years").wait_for()
        seen = []
        for _ in range(30):
            text = status.inner_text()
            m = re.search(r"(\d+)/(\d+) seed-years", text)
            if m:
                seen.append(int(m.group(1)))
                assert _in_viewport(s.page, status), "the progress line is not in view at 1440x900"
                assert _in_viewport(s.page, s.page.locator(".pz-progress .v-progress-linear"))
            if "left" in text and len(set(seen)) >= 2:
                break
            s.page.wait_for_timeout(500)
        assert seen == sorted(seen) and len(set(seen)) >= 2, seen      # counts go up, never back
        s.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        assert _in_viewport(s.page, status), "the progress line scrolled away"
        s.shot("15-progress-in-view")
        if s.page.locator(".pz-cancel").is_enabled():    # enough seen: stop it (or it has just finished)
            s.page.locator(".pz-cancel").click()
        status.filter(has_text=re.compile("Cancelled|Finished")).wait_for(timeout=60_000)
    finally:
        s.close()


def test_accessibility_axe_clean_on_every_tab(desk):
    s = desk
    problems = {}
    for label in ("Overview", "Charts", "District map", "Event log", "Compare scenarios", "Export"):
        open_tab(s, label)
        found = axe(s.page)
        if found:
            problems[label] = found
    (ARTIFACTS / "axe.json").write_text(json.dumps(problems, indent=2))
    assert not problems, json.dumps(problems, indent=1)[:3000]


@pytest.mark.parametrize("width,height", [(390, 844), (1024, 768)])
def test_no_horizontal_overflow(browser, server, width, height):
    """Item 6: at a phone's and a laptop's width the page is no wider than the screen, on every tab."""
    s = Session(browser, server, f"layout-{width}", viewport=(width, height))
    try:
        s.wait_up_to_date()
        wide = {}
        s.wait_charts(4)
        for label in ("Overview", "Event log", "Compare scenarios"):
            open_tab(s, label)
            w = s.page.evaluate("() => document.documentElement.scrollWidth")
            if w > width + 1:
                wide[label] = w
            s.page.screenshot(path=str(ARTIFACTS / f"16-layout-{width}-{label.split()[0].lower()}.png"))
        assert not wide, f"page wider than {width} px: {wide}"
    finally:
        s.close()
