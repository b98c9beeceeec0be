"""Where a run may write, and writing there safely.

`portfolio-sim run --out DIR` writes only inside DIR, and only:

* not the file-system root, a system folder (/etc, /usr, /proc, ...) or the package's own source tree —
  refused always;
* an empty or new folder, or an earlier run's folder (only files a run writes) — anything else needs
  ``--force``, so a typo cannot mix results into (or overwrite files in) an unrelated folder;
* each file written to a temporary file in DIR and renamed over its name: a reader never sees half a
  file, an interrupted run leaves the previous file whole, and a symlink planted at that name is
  replaced, never followed (its target outside DIR is untouched).

`portfolio-sim results DB --out FILE` (an export or a point's scenario) goes through
:func:`check_out_file` and :func:`atomic_write` the same way: never in a system folder, the root or the
package source, never through a symlink, never half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from portfolio_sim.errors import ScenarioError

# Files `portfolio-sim run` writes (a folder holding only these is an earlier run).
RUN_FILES = ("yearly.csv", "summary.csv", "schools.csv", "events.csv", "scenario.toml", "report.html",
             "decisions.toml",
             # run --worlds, robustness and discover (docs/UNCERTAINTY.md)
             "worlds.csv", "robustness.csv", "drivers.csv", "boxes.csv", "prim_trajectory.csv", "sensitivity.csv",
             "prim_tradeoff.html", "sensitivity.html")
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
               "/usr")                                   # never written into
TOP_ONLY = ("/var", "/opt", "/srv", "/run", "/home", "/tmp", "/mnt", "/media")   # the folder itself only
MAX_DEPTH = 64                # folders in an --out path
MAX_NAME = 255                # bytes in one folder or file name (the usual file-system limit)
MAX_PATH = 4000               # bytes in the whole path


class OutputError(ScenarioError):
    """An --out folder the run may not use (exit 2)."""


def _package_tree() -> Path:
    here = Path(__file__).resolve().parent          # src/portfolio_sim
    return here.parent.parent if here.parent.name == "src" else here   # the project root in a checkout


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:120] + f"...({len(text):,} characters)"


def _check_shape(path: Path, shown: str) -> None:
    """Path length, depth and name lengths within what the file system takes (a clear error, not OSError)."""
    if len(os.fsencode(str(path))) > MAX_PATH:
        raise OutputError(f"--out {shown}: the path is too long; at most {MAX_PATH} bytes")
    if len(path.parts) > MAX_DEPTH:
        raise OutputError(f"--out {shown}: {len(path.parts)} folders deep; at most {MAX_DEPTH}")
    long = [p for p in path.parts if len(os.fsencode(p)) > MAX_NAME]
    if long:
        raise OutputError(f"--out {shown}: the name {long[0][:40]!r}... is {len(os.fsencode(long[0]))} "
                          f"bytes long; at most {MAX_NAME}")


def _resolve(path: Path, shown: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:     # a symlink loop
        raise OutputError(f"--out {shown}: cannot resolve the path ({exc})") from None


def _check_not_system(real: Path, shown: str, project_root_ok: bool = False) -> None:
    """Not inside a system folder or the package's own source tree (`project_root_ok`: the checkout's
    root folder itself is allowed, for a single named file such as an export)."""
    for system in SYSTEM_DIRS:
        if real == Path(system) or Path(system) in real.parents:
            raise OutputError(f"--out {shown}: inside the system folder {system}; give a folder of your own")
    tree = _package_tree()
    package = Path(__file__).resolve().parent
    if project_root_ok and real == tree and tree != package:
        return
    # the package, anything in it, or a folder holding it within the checkout (the project root, src/)
    if real == package or package in real.parents or (real in package.parents and (real == tree or tree in real.parents)):
        raise OutputError(f"--out {shown}: the portfolio_sim source folder; give a folder of its own, "
                          "e.g. runs/NAME")


EXPORT_SUFFIXES = (".parquet", ".csv", ".gz", ".bz2", ".xz", ".db", ".sqlite")   # files made from a store


def check_out_file(path: Path, replace_in_project: bool = False) -> bool:
    """Refuse an output FILE (``results --out F.parquet``) a user should not write: a path too long or
    deep, a file directly in the file-system root, inside a system folder or the package source, or a
    name taken by a folder, device, pipe or socket. In the root folder of a checkout (where README's
    commands run) a new file, or an earlier export (.parquet, .csv, ...), is fine; an existing project
    file (pyproject.toml, README.md, ...) is refused unless `replace_in_project`. Returns whether a
    regular file (or a symlink, which the atomic write replaces without following) is there already: it
    is replaced, as a derived export can be made again from the database."""
    shown = _shown(path)
    _check_shape(path, shown)
    parent = _resolve(path.parent, shown)
    if parent == Path(parent.anchor):
        raise OutputError(f"--out {shown}: a file in the file-system root; give a path in a folder of your own")
    _check_not_system(parent, shown, project_root_ok=True)
    if (parent == _package_tree() and not replace_in_project and not path.is_symlink() and path.is_file()
            and not path.name.lower().endswith(EXPORT_SUFFIXES)):
        raise OutputError(f"--out {shown}: a file of the portfolio_sim project folder is there; give a new "
                          "name, or a folder of your own (e.g. results/NAME)")
    if path.is_symlink():
        return True
    if path.exists():
        if path.is_dir():
            raise OutputError(f"--out {shown}: is a folder; give a file name, e.g. {path / 'results.parquet'}")
        if not path.is_file():
            raise OutputError(f"--out {shown}: exists and is not a regular file (a device, pipe or socket); "
                              "give a file name of your own")
        return True
    return False


def check_out_dir(path: Path, force: bool = False) -> None:
    """Refuse an --out folder outside what a run may write (see the module docstring)."""
    shown = _shown(path)
    _check_shape(path, shown)
    real = _resolve(path, shown)
    if real == Path(real.anchor):
        raise OutputError(f"--out {shown}: the file-system root; give a folder of its own, e.g. runs/NAME")
    _check_not_system(real, shown)
    if str(real) in TOP_ONLY:
        raise OutputError(f"--out {shown}: the system folder {real} itself; give a folder of its own inside it")
    home = Path.home().resolve() if "HOME" in os.environ else None
    if home is not None and real == home:
        raise OutputError(f"--out {shown}: your home folder itself; give a folder of its own, e.g. runs/NAME")
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {shown}: exists and is not a folder")
    if path.is_dir() and not force:
        try:
            others = sorted(e.name for e in os.scandir(path) if e.name not in RUN_FILES)
        except OSError as exc:
            raise OutputError(f"--out {shown}: cannot list the folder ({exc.strerror or exc})") from None
        if others:
            listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise OutputError(f"--out {shown}: the folder holds files that are not an earlier run's ({listed}); "
                              "give an empty or new folder, or --force to write there anyway")


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a new temporary file next to `target`, then rename it over `target`.

    The rename replaces whatever entry has that name (a symlink is replaced, not followed); a folder of
    that name is refused. On any failure the temporary file is removed and `target` is untouched."""
    if target.is_dir() and not target.is_symlink():
        raise OutputError(f"cannot write {target}: a folder of that name is in the way")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
