"""The policymaker dashboard page (Solara). Serve it with `python dashboards/serve.py` (or `make dashboard`).

The page and its parts live in the package (src/portfolio_sim/dashboard/); this file only exposes
`Page` to Solara. Each browser session gets its own state (see portfolio_sim.dashboard.state).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import portfolio_sim  # noqa: F401
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from portfolio_sim.dashboard.components import Page  # noqa: E402

__all__ = ["Page"]
