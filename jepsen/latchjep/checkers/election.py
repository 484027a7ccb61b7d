"""election.py — the name workloads list in CHECKERS: election_checker.py's check()."""
from .election_checker import check  # noqa: F401
