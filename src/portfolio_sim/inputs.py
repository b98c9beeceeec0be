"""Reading user-supplied files safely, and quoting user input in messages.

Every file argument (scenario, `extends` parents, decisions, experiment specs, district CSVs) is read
through :func:`read_user_file`: only a regular file is opened (a FIFO, a device such as /dev/zero, a
directory or a socket is refused before anything is read, so nothing hangs or fills memory), and at most
a size limit is read; a file uploaded to the dashboard goes through :func:`read_upload` (its own,
smaller limit, :data:`MAX_UPLOAD_BYTES`, kept here with the others). TOML is parsed by :func:`parse_toml`, which accepts a UTF-8 byte-order mark (as the
CSV reader does) and refuses nesting deeper than :data:`MAX_TOML_DEPTH`. Limits are documented in
README.md ("Limits and safety").
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from portfolio_sim.errors import ScenarioError

MAX_TOML_BYTES = 1024 * 1024           # scenario, decisions and spec files: 1 MB (the largest preset is ~5 KB)
MAX_UPLOAD_BYTES = 64 * 1024           # a scenario uploaded to the dashboard (a shared server): 64 KB
MAX_TOML_DEPTH = 16                    # tables/arrays inside tables: a scenario needs 2, a spec 4
MAX_SHOWN = 80                         # characters of a user value quoted in a message


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """`repr(value)` for a message, cut to `limit` characters; NaN as "not a number"."""
    if isinstance(value, float) and math.isnan(value):
        return "nan (not a number)"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 20] + f"... ({len(text):,} characters)"
    return text


def short(text: str, limit: int = 40) -> str:
    """A key or name for a message as written when short and printable, else as :func:`shown`."""
    return text if len(text) <= limit and text.isprintable() else shown(text, limit)


def read_user_file(path: str | Path, what: str, limit: int = MAX_TOML_BYTES) -> bytes:
    """The bytes of a user-named regular file of at most `limit` bytes, or a ScenarioError saying why not.

    Opened non-blocking (a FIFO cannot hang the open), checked with fstat on the open descriptor (no
    race between the check and the read), read up to `limit` + 1 bytes (a /proc file that reports size 0
    is still bounded)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise ScenarioError(f"{p}: the {what} is not a file (it is a folder)") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot open the {what} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ScenarioError(f"{p}: the {what} is not a file (it is a folder)")
        if not stat.S_ISREG(info.st_mode):
            raise ScenarioError(f"{p}: the {what} is not a regular file (a device, pipe or socket); "
                                "allowed: a regular file")
        if info.st_size > limit:
            raise ScenarioError(f"{p}: the {what} is too large ({_size(info.st_size)}); at most {_size(limit)}")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ScenarioError(f"{p}: the {what} is too large (more than {_size(limit)}); at most {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def decode_text(data: bytes, source: str, what: str = "file") -> str:
    """UTF-8 text (a byte-order mark is dropped), or a ScenarioError naming the line of the first bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{source} line {line}: the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                            "save it as UTF-8") from None
    if "\x00" in text:
        raise ScenarioError(f"{source}: the {what} contains NUL bytes: not a text file")
    return text


def read_upload(name: str, data: bytes | None, size: int | None = None, what: str = "file",
                limit: int = MAX_UPLOAD_BYTES) -> str:
    """The text of an uploaded file (the dashboard's scenario upload): at most `limit` bytes (a declared
    `size` over it is refused before anything is read), not empty, UTF-8 without NUL bytes (a BOM is
    dropped), or a ScenarioError saying which."""
    if size is not None and size > limit:
        raise ScenarioError(f"{name}: the {what} is {_size(size)}; at most {_size(limit)}")
    if not data:
        raise ScenarioError(f"{name}: the {what} is empty")
    if len(data) > limit:
        raise ScenarioError(f"{name}: the {what} is larger than {_size(limit)}; at most {_size(limit)}")
    return decode_text(data, name, what)


def read_text(path: str | Path, what: str, limit: int = MAX_TOML_BYTES) -> str:
    return decode_text(read_user_file(path, what, limit), str(path), what)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text as a dict (a leading BOM is ignored), nesting at most MAX_TOML_DEPTH deep."""
    text = text.removeprefix("\ufeff")
    if len(text) > MAX_TOML_BYTES:
        raise ScenarioError(f"{source}: too long ({len(text):,} characters); at most {MAX_TOML_BYTES:,}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply; at most {MAX_TOML_DEPTH} levels of tables "
                            "and arrays") from None
    if _depth(data) > MAX_TOML_DEPTH:
        raise ScenarioError(f"{source}: nested too deeply; at most {MAX_TOML_DEPTH} levels of tables "
                            "and arrays")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of parsed TOML, without recursion (the data may be deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d + 1)
        if deepest > MAX_TOML_DEPTH:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def load_toml_file(path: str | Path, what: str) -> dict[str, Any]:
    return parse_toml(read_text(path, what), str(path))
