"""Workloads of the harness: one module each (the interface: latchjep/runner.py)."""
