"""watch.py — the name workloads list in CHECKERS: watch_checker.py's check()."""
from .watch_checker import check  # noqa: F401
