"""What the browser tests share: Debian's chromium for pytest-playwright, offline pages, the server
process (dashboards/serve.py on a free port) and the axe-core audit.

    from browser_helpers import browser_type_launch_args, require_chromium   # noqa: F401 (a fixture)
    require_chromium("the dashboard's browser tests")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PORTFOLIO_SIM_CHROMIUM", "/usr/bin/chromium")
# as root (the CI container) chromium needs --no-sandbox; no network: nothing in the background either
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")


def require_chromium(what: str) -> None:
    """Skip the calling test module, loudly, when chromium or playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"SKIPPED: no chromium at {CHROMIUM} - {what} did NOT run (apt-get install chromium; "
                    ".ci/run does this)", allow_module_level=True)
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the system chromium (playwright cannot
    download browsers here)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline(context, blocked: list[str], requests: list[str] | None = None) -> None:
    """Let `context` reach 127.0.0.1 only; anything else is aborted and recorded in `blocked`."""
    def route(r) -> None:
        url = r.request.url
        if requests is not None:
            requests.append(url)
        if url.startswith(LOCAL):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()
    context.route("**/*", route)


def start_server(log_path: Path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """dashboards/serve.py on 127.0.0.1:`port`, answering / (or a failed test naming the log)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 - the process owns it
    # 3 seeds instead of 5 for the runs a page starts by itself: the same code, a faster suite
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PORTFOLIO_SIM_DASHBOARD_SEEDS": "3", **(env or {})}
    proc = subprocess.Popen([sys.executable, str(ROOT / "dashboards" / "serve.py"), "--host", "127.0.0.1",
                             "--port", str(port), "--no-setup", *extra], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT)
    log.close()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_server(proc)
            pytest.fail(f"the dashboard server did not start; see {log_path}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def axe(page) -> list[dict]:
    """Serious and critical violations of an axe-core audit of `page` (axe-core from the npm registry,
    fetched at set-up by dashboards/setup_assets.py)."""
    from portfolio_sim.dashboard import assets
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(assets.axe_script()))
    return page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help, n: v.nodes.length,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
