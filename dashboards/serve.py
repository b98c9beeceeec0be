"""Serve the policymaker dashboard: `python dashboards/serve.py [--host H] [--port P]`.

Runs Solara's server on dashboards/app.py in production mode, with everything that would reach the
internet switched off: no telemetry, no version check, no "solara check" iframe (production mode), and
front-end assets served from the local cache that `dashboards/setup_assets.py` fills from the npm
registry. If the cache is incomplete, this script tries to fill it first and otherwise warns (the page
then needs internet access to load Solara's front end from its CDN).

Environment: HOST/PORT are overridden by --host/--port. SOLARA_ASSETS_PROXY_CACHE_DIR picks another
asset cache. PORTFOLIO_SIM_DASHBOARD_MAX_STUDENTS / _MAX_SEEDS cap what one session may run.

Workshop rooms (/room/CODE) keep their state in SQLite: `--rooms-db FILE` (or PORTFOLIO_SIM_ROOMS_DB;
default: the user's data directory, ~/.local/share/portfolio_sim/rooms.sqlite). `--public-url` is the
address participants' devices use (shown with the room's QR code); by default this machine's address on
the local network when listening on 0.0.0.0. One server process serves a room (no worker pool).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from portfolio_sim.dashboard import assets
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(HERE.parent / "src"))
    from portfolio_sim.dashboard import assets


def offline_environment(cache: Path) -> dict[str, str]:
    """Environment settings for Solara: local assets, no telemetry, nothing phoning home."""
    return {
        "SOLARA_ASSETS_PROXY": "True",
        assets.CACHE_ENV: str(cache),
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
        "SOLARA_CHECK_HOOKS": "off",
        "SOLARA_THEME_SHOW_BANNER": "False",
        "SOLARA_THEME_TITLE": "Portfolio district simulator",
        "SOLARA_MODE": "production",
        # A closed tab's session (its runs) is dropped after this long without a reconnect.
        "SOLARA_KERNEL_CULL_TIMEOUT": os.environ.get("SOLARA_KERNEL_CULL_TIMEOUT", "30m"),
        # plotly must not try to fetch anything either
        "PLOTLY_RENDERER": os.environ.get("PLOTLY_RENDERER", "json"),
    }


def lan_address() -> str:
    """This machine's address on the local network (no packet is sent: a UDP socket only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def public_url(host: str, port: int, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    shown = lan_address() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the portfolio_sim policymaker dashboard.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a workshop room)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8765")),
                        help="port (default 8765)")
    parser.add_argument("--no-setup", action="store_true",
                        help="do not try to download missing front-end assets before starting")
    parser.add_argument("--rooms-db", metavar="FILE", default=os.environ.get("PORTFOLIO_SIM_ROOMS_DB"),
                        help="SQLite file of the workshop rooms (default: ~/.local/share/portfolio_sim/rooms.sqlite; "
                             "never inside the repository)")
    parser.add_argument("--public-url", metavar="URL", default=os.environ.get("PORTFOLIO_SIM_ROOM_URL"),
                        help="the address participants open (default: http://<this machine's LAN address>:PORT)")
    args = parser.parse_args(argv)
    if args.rooms_db:
        os.environ["PORTFOLIO_SIM_ROOMS_DB"] = str(Path(args.rooms_db).expanduser().resolve())
    os.environ["PORTFOLIO_SIM_ROOM_URL"] = public_url(args.host, args.port, args.public_url)

    cache = assets.cache_dir()
    missing = assets.missing_packages(cache)
    if missing and not args.no_setup:
        print(f"dashboard assets missing ({', '.join(p.spec for p in missing)}); fetching them from the npm "
              "registry", flush=True)
        try:
            assets.fill(cache)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: {exc}", file=sys.stderr)
        missing = assets.missing_packages(cache)
    if missing:
        print("warning: the page needs internet access to load "
              f"{', '.join(p.spec for p in missing)}; run `python dashboards/setup_assets.py`", file=sys.stderr)

    os.environ.update(offline_environment(cache))
    if os.environ.get("PORTFOLIO_SIM_DASHBOARD_DEBUG"):
        import logging
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("portfolio_sim.dashboard").setLevel(logging.DEBUG)
    # Settings are read when Solara is imported, so only import it now.
    from solara.__main__ import cli

    app = str(HERE / "app.py")
    print(f"portfolio_sim dashboard: http://{args.host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    cli.main(args=["run", app, "--host", args.host, "--port", str(args.port), "--production", "--no-open",
                   "--no-check-version", "--theme-loader", "plain", "--log-level", "warning"],
             prog_name="solara", standalone_mode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
