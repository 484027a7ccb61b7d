"""lease.py — the name workloads list in CHECKERS: lease_checker.py's check()."""
from .lease_checker import check  # noqa: F401
