"""lock.py — the name workloads list in CHECKERS: lock_checker.py's check()."""
from .lock_checker import check  # noqa: F401
