"""`make test` sets up what its tests need where it can (.ci/system-deps) and says loudly what it skips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "system-deps"


def test_make_test_runs_the_system_setup_before_and_reports_after():
    target = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    lines = [ln.strip() for ln in target.splitlines()[1:]]
    assert lines[0] == "@bash .ci/system-deps"                         # installs chromium when root
    assert "pytest" in lines[1] and "system-deps --report" in lines[1] and "exit $$status" in lines[1]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_a_missing_chromium_is_reported_loudly_and_does_not_fail_the_build():
    env = {**os.environ, "PORTFOLIO_SIM_CHROMIUM": "/nonexistent/chromium"}
    proc = subprocess.run(["bash", str(SCRIPT), "--report"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0
    assert "BROWSER TESTS WILL BE SKIPPED" in proc.stderr and "apt-get install chromium" in proc.stderr


def test_nothing_is_said_when_everything_is_there(tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env = {**os.environ, "PORTFOLIO_SIM_CHROMIUM": str(fake)}
    proc = subprocess.run(["bash", str(SCRIPT), "--report"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0
    assert "chromium" not in proc.stderr
