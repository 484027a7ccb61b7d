"""latchjep — latch's Jepsen-style harness (issue 7): jepsen/run is the command line,
docs/jepsen.md the user's guide, docs/decisions/jepsen.md the formats and decisions."""
