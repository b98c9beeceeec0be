"""How long one simulated year takes as the dashboard steps it (model step + page update).

    python dashboards/measure_step.py                          # Denver-size, in-process, 1 and 5 seeds
    python dashboards/measure_step.py --browser                # also end to end in headless chromium
    python dashboards/measure_step.py --preset baseline --seeds 3 --steps 4

In-process: the dashboard page is rendered with `solara.render` (no browser); each "Step 1 year" is
timed from the click until the page has re-rendered with the new year: the model step of every seed,
the snapshot (metrics, bands across seeds) and the Overview tab's figures and key numbers.

--browser: starts `dashboards/serve.py` on a free port and drives the real page in headless chromium
(offline: every non-local request is blocked); a step is timed from the click until the browser has
redrawn every chart of the Overview tab with the new year.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import portfolio_sim  # noqa: F401
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(HERE.parent / "src"))


def in_process(preset: str, seeds: int, steps: int) -> dict:
    import solara

    from portfolio_sim.dashboard.components import Page
    from portfolio_sim.dashboard.state import DashboardState

    solara.render(Page(), handle_error=False)
    state = next(o for o in gc.get_objects() if isinstance(o, DashboardState))
    state.controller.join(120)
    state.load_preset(preset, autorun=False)
    state.set_lever("run.seeds", seeds)
    students = state.scenario.value.district.students
    times, model = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        assert state.step(), state.status.value
        state.controller.join(300)
        times.append(time.perf_counter() - t0)
        model.append(state._sim.last_step_seconds if state._sim and state._sim.last_step_seconds else float("nan"))
        assert state.status.value.state == "done", state.status.value
    state.shutdown()
    return {"mode": "in-process", "preset": preset, "students": students, "seeds": seeds, "steps": steps,
            "step_total_s": times, "model_step_s": model,
            "median_total_s": statistics.median(times[1:] or times),
            "median_model_s": statistics.median(model[1:] or model)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_browser(preset: str, seeds: int, steps: int, chromium: str = "/usr/bin/chromium") -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "serve.py"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.25)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1"))
                       else r.abort())
            page.goto(url)
            page.get_by_test_id("run-state").filter(has_text="up to date").wait_for(timeout=60_000)
            page.locator(".pz-preset").click()
            page.get_by_role("option", name=preset.replace("_", " "), exact=True).click()
            page.get_by_test_id("scenario-name").filter(has_text=preset).wait_for(timeout=30_000)
            page.wait_for_function("() => !document.querySelector('.pz-stepbtn').disabled", timeout=300_000)
            page.locator(".pz-lever-run-seeds input").fill(str(seeds))
            page.locator(".pz-lever-run-seeds input").press("Enter")
            page.wait_for_timeout(500)
            times = []
            for i in range(1, steps + 1):
                counts = page.eval_on_selector_all(".pz-plotly-inner", "els => els.map(e => +e.dataset.rendered || 0)")
                t0 = time.perf_counter()
                page.locator(".pz-stepbtn").click()
                page.get_by_test_id("result-line").filter(has_text=f"year {i} of").wait_for(timeout=120_000)
                page.wait_for_function(
                    "old => { const now = [...document.querySelectorAll('.pz-plotly-inner')]"
                    ".map(e => +e.dataset.rendered || 0); return now.length >= old.length && "
                    "now.slice(0, old.length).every((n, j) => n > old[j]); }", arg=counts, timeout=120_000)
                times.append(time.perf_counter() - t0)
            browser.close()
        return {"mode": "browser", "preset": preset, "seeds": seeds, "steps": steps, "step_total_s": times,
                "median_total_s": statistics.median(times[1:] or times)}
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="denver_innovation")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--browser", action="store_true", help="also measure end to end in headless chromium")
    parser.add_argument("--json", metavar="FILE", help="write the measurements as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "False")
    results = []
    for k in args.seeds:
        r = in_process(args.preset, k, args.steps)
        results.append(r)
        print(f"{args.preset} ({r['students']:,} students), {k} seed(s), in-process: one year = "
              f"{r['median_total_s']:.2f} s (model step {r['median_model_s']:.2f} s)", flush=True)
        if args.browser:
            b = in_browser(args.preset, k, args.steps)
            results.append(b)
            print(f"{args.preset}, {k} seed(s), browser end to end: one year = {b['median_total_s']:.2f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
