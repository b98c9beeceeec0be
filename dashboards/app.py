"""The policymaker dashboard page (Solara). Serve it with `python dashboards/serve.py` (or `make dashboard`).

The page and its parts live in the package (src/portfolio_sim/dashboard/); this file only exposes
`Page` and the `routes` to Solara: `/` is the dashboard (each browser session gets its own state, see
portfolio_sim.dashboard.state), `/room/...` the workshop room (portfolio_sim.dashboard.room_pages),
whose state lives in a process-wide SQLite store shared by every device in the room.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import portfolio_sim  # noqa: F401
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import solara  # noqa: E402

from portfolio_sim.dashboard.components import Page  # noqa: E402
from portfolio_sim.dashboard.room_pages import RoomRoute  # noqa: E402

@solara.component
def Layout(children=[]):  # noqa: B006 - Solara's signature
    """No app bar or route tabs: the dashboard and the room pages draw their own headers."""
    return solara.Column(children=children, gap="0px", style={"min-height": "100vh"})


routes = [
    solara.Route(path="/", component=Page, label="Dashboard", layout=Layout),
    solara.Route(path="room", component=RoomRoute, label="Workshop room"),
]

__all__ = ["Layout", "Page", "routes"]
