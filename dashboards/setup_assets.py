"""Fill Solara's front-end asset cache from the npm registry, so the dashboard renders offline.

    python dashboards/setup_assets.py            # fill what is missing (idempotent, quick when filled)
    python dashboards/setup_assets.py --check    # exit 1 if anything is missing, download nothing
    python dashboards/setup_assets.py --list     # the packages and the cache directory

The cache is $SOLARA_ASSETS_PROXY_CACHE_DIR, or <venv>/share/portfolio_sim/solara-cdn by default;
`dashboards/serve.py` points Solara at the same directory. The packages and versions are read from
the installed Solara (see src/portfolio_sim/dashboard/assets.py); each is fetched with `npm pack`
(or, without npm, straight from the registry with the registry's integrity hash checked) and unpacked
as <package>@<version>/, the layout Solara's CDN proxy reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from portfolio_sim.dashboard import assets
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from portfolio_sim.dashboard import assets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if assets are missing")
    parser.add_argument("--list", action="store_true", help="list the packages and the cache directory")
    args = parser.parse_args(argv)

    cache = assets.cache_dir()
    packages = assets.required_packages()
    missing = assets.missing_packages(cache, packages)
    if args.list:
        print(f"cache: {cache}")
        for p in packages:
            print(f"  {p.spec:45s} {'ok' if p not in missing else 'MISSING'}")
        return 0
    if not missing:
        print(f"dashboard assets: all {len(packages)} packages present in {cache}")
        return 0
    if args.check:
        print(f"dashboard assets missing in {cache}: {', '.join(p.spec for p in missing)}", file=sys.stderr)
        return 1
    print(f"dashboard assets: fetching {len(missing)} package(s) from the npm registry into {cache}")
    t0 = time.perf_counter()
    try:
        assets.fill(cache, packages)
    except Exception as exc:  # noqa: BLE001 - report any failure plainly
        print(f"error: could not fill the dashboard asset cache: {exc}", file=sys.stderr)
        print("The dashboard still works online (Solara then loads these files from its CDN).", file=sys.stderr)
        return 1
    print(f"dashboard assets: done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
