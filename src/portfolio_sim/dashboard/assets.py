"""Offline front-end assets for the dashboard: Solara's CDN cache, filled from the npm registry.

Solara's page loads its JavaScript/CSS (the Vuetify app, requirejs, font-awesome, and for some
components katex, mermaid, ...) from a CDN (jsdelivr) unless its *asset proxy cache* already holds
them: the server then answers ``/_solara/cdn/<package>@<version>/<path>`` from
``SOLARA_ASSETS_PROXY_CACHE_DIR/<package>@<version>/<path>``. jsdelivr serves npm packages with
exactly that layout, so unpacking each package's npm tarball into ``<cache>/<package>@<version>/``
gives Solara the same files without the CDN.

Which packages and versions: read from the *installed* Solara (its page template and component
sources), so an upgrade of Solara that moves to new versions is picked up automatically. Nothing
is hard-coded except a fallback list, used only if the sources cannot be read.

This module is standard library only and does not import Solara, so ``setup_assets.py`` can check
the cache in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import base64
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "SOLARA_ASSETS_PROXY_CACHE_DIR"
MARKER = ".portfolio-sim-complete"

# Exact npm versions only (1.2.3 or 1.2.3-alpha.2): ranges such as vega@5 are resolved by the CDN
# at fetch time and belong to components the dashboard does not use.
_VERSION = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?"
_PKG = r"(?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*"
_TEMPLATE_RE = re.compile(r"\{\{\s*cdn\s*\}\}/(" + _PKG + r")@(" + _VERSION + r")(/[^\"'\s]*)?")
_COMPONENT_RE = re.compile(r"getCdn\(\)\}/(" + _PKG + r")@(" + _VERSION + r")(/[^\"'`\s]*)?")

FALLBACK = [("@widgetti/solara-vuetify3-app", "5.2.0"), ("@widgetti/solara-vuetify-app", "10.1.1"),
            ("requirejs", "2.3.6"), ("font-awesome", "4.5.0"), ("katex", "0.16.9"), ("mermaid", "10.8.0")]


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[str, ...] = ()     # paths inside the package the page is known to request

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


def cache_dir() -> Path:
    """The asset cache: $SOLARA_ASSETS_PROXY_CACHE_DIR, else <venv>/share/portfolio_sim/solara-cdn."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(sys.prefix) / "share" / "portfolio_sim" / "solara-cdn"


def _solara_dir() -> Path | None:
    spec = importlib.util.find_spec("solara")      # does not import solara
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _major(dist: str, default: int) -> int:
    try:
        return int(importlib.metadata.version(dist).split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return default


# Not for the page: the accessibility engine the browser tests inject (tests/test_dashboard_browser.py),
# fetched at set-up with the rest so the tests need no network.
AXE_CORE = Package("axe-core", "4.10.2", ("axe.min.js",))


def axe_script(cache: Path | None = None) -> Path:
    return package_dir(cache or cache_dir(), AXE_CORE) / "axe.min.js"


def required_packages() -> list[Package]:
    """The npm packages (exact versions) the installed Solara asks its CDN proxy for, and axe-core."""
    return _solara_packages() + [AXE_CORE]


def _solara_packages() -> list[Package]:
    root = _solara_dir()
    found: dict[tuple[str, str], set[str]] = {}
    vue3 = _major("ipyvue", 1) >= 3
    widgets_major = _major("ipywidgets", 8)

    def add(name: str, version: str, path: str | None) -> None:
        files = found.setdefault((name, version), set())
        if path and "{" not in path and "$" not in path:
            files.add(path.lstrip("/").split("?")[0])

    if root is not None:
        template = root / "server" / "templates" / "solara.html.j2"
        if template.is_file():
            text = template.read_text(encoding="utf-8")
            for name, version, path in _TEMPLATE_RE.findall(text):
                # The template loads the Vuetify 3 app with ipyvue 3 and the Vuetify 2 app otherwise.
                if name.startswith("@widgetti/solara-vuetify") and (name.endswith("vuetify3-app") != vue3):
                    continue
                path = (path or "").replace("{{ipywidget_major_version}}", str(widgets_major))
                add(name, version, path)
            fa = re.search(r"fontawesome_path:\s*str\s*=\s*\"/(" + _PKG + r")@(" + _VERSION + r")(/[^\"]*)\"",
                           (root / "server" / "settings.py").read_text(encoding="utf-8"))
            if fa:
                add(fa.group(1), fa.group(2), fa.group(3))
        for sub in ("components", "widgets", "lab"):
            base = root / sub
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if path.suffix not in (".py", ".vue", ".js") or not path.is_file():
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                for name, version, file in _COMPONENT_RE.findall(text):
                    add(name, version, file)
    if not found:
        for name, version in FALLBACK:
            if name.startswith("@widgetti/solara-vuetify") and name.endswith("vuetify3-app") != vue3:
                continue
            add(name, version, None)
    return [Package(n, v, tuple(sorted(f))) for (n, v), f in sorted(found.items())]


def package_dir(cache: Path, pkg: Package) -> Path:
    return cache / pkg.spec


def is_complete(cache: Path, pkg: Package) -> bool:
    d = package_dir(cache, pkg)
    return (d / MARKER).is_file() and all((d / f).is_file() for f in pkg.files)


def missing_packages(cache: Path | None = None, packages: list[Package] | None = None) -> list[Package]:
    cache = cache or cache_dir()
    return [p for p in (packages if packages is not None else required_packages()) if not is_complete(cache, p)]


# ------------------------------------------------------------------------------------------------
# Filling the cache from the npm registry
# ------------------------------------------------------------------------------------------------

def _npm_pack(pkg: Package, dest: Path) -> Path:
    """`npm pack name@version` into dest; npm checks the tarball against the registry's integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    out = subprocess.run([npm, "pack", pkg.spec, "--json", "--silent", "--pack-destination", str(dest)],
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"npm pack {pkg.spec} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    try:
        filename = json.loads(out.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        tgz = sorted(dest.glob("*.tgz"))
        if not tgz:
            raise RuntimeError(f"npm pack {pkg.spec}: no tarball produced") from None
        return tgz[-1]
    # npm names scoped tarballs "scope-name-1.0.0.tgz"
    return dest / filename.lstrip("@").replace("/", "-")


def _registry() -> str:
    return (os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY")
            or "https://registry.npmjs.org/").rstrip("/") + "/"


def _registry_download(pkg: Package, dest: Path) -> Path:
    """Without npm: the tarball URL and sha512 integrity from the registry's package metadata."""
    name = pkg.name.replace("/", "%2F")
    with urllib.request.urlopen(f"{_registry()}{name}/{pkg.version}", timeout=60) as resp:   # noqa: S310
        meta = json.load(resp)
    dist = meta["dist"]
    with urllib.request.urlopen(dist["tarball"], timeout=300) as resp:                        # noqa: S310
        data = resp.read()
    integrity = dist.get("integrity", "")
    if integrity.startswith("sha512-"):
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity.removeprefix("sha512-"):
            raise RuntimeError(f"{pkg.spec}: tarball does not match the registry's integrity hash")
    elif dist.get("shasum") and hashlib.sha1(data).hexdigest() != dist["shasum"]:  # noqa: S324
        raise RuntimeError(f"{pkg.spec}: tarball does not match the registry's shasum")
    path = dest / f"{pkg.name.lstrip('@').replace('/', '-')}-{pkg.version}.tgz"
    path.write_bytes(data)
    return path


def _extract(tarball: Path, target: Path) -> None:
    """Unpack an npm tarball's `package/` directory into target (no links, nothing outside it)."""
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 2 or not (member.isfile() or member.isdir()):
                continue
            rel = Path(*parts[1:])   # strip the top-level folder ("package/")
            if rel.is_absolute() or ".." in rel.parts:
                continue
            out = target / rel
            if member.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            if src is None:
                continue
            with src, open(out, "wb") as f:
                shutil.copyfileobj(src, f)


def _add_minified_aliases(root: Path, files: tuple[str, ...]) -> None:
    """jsdelivr minifies on the fly: `x.min.js` is served even when a package ships only `x.js`
    (Solara's Markdown asks for requirejs@2.3.6/require.min.js). Mirror that with a copy."""
    for f in files:
        for ext in (".min.js", ".min.css"):
            if f.endswith(ext) and not (root / f).is_file():
                plain = root / (f[: -len(ext)] + ext.replace(".min", ""))
                if plain.is_file():
                    shutil.copyfile(plain, root / f)


def fill(cache: Path | None = None, packages: list[Package] | None = None, log=print) -> list[Package]:
    """Download and unpack every missing package; returns the packages that were added."""
    cache = cache or cache_dir()
    todo = missing_packages(cache, packages)
    if not todo:
        return []
    cache.mkdir(parents=True, exist_ok=True)
    added = []
    for pkg in todo:
        with tempfile.TemporaryDirectory(prefix="pz-assets-", dir=cache) as tmp:
            tmpdir = Path(tmp)
            log(f"  {pkg.spec}: fetching from the npm registry")
            try:
                tarball = _npm_pack(pkg, tmpdir)
            except FileNotFoundError:
                tarball = _registry_download(pkg, tmpdir)
            staging = tmpdir / "unpacked"
            staging.mkdir()
            _extract(tarball, staging)
            _add_minified_aliases(staging, pkg.files)
            absent = [f for f in pkg.files if not (staging / f).is_file()]
            if absent:
                raise RuntimeError(f"{pkg.spec}: the npm package lacks {', '.join(absent)}")
            (staging / MARKER).write_text(json.dumps({"package": pkg.name, "version": pkg.version}) + "\n")
            target = package_dir(cache, pkg)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)   # complete or absent, never half-written
        added.append(pkg)
    return added
