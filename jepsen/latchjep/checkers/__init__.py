"""latchjep.checkers — pure functions over a run's history (docs/decisions/jepsen.md).

Every module has check(history, **opts) -> dict with "valid" (True, False or "unknown"),
"anomalies" (list of dicts with "type"), "failing_ops" (history indexes to highlight),
"summary" (one line, when not valid) and figures of its own:

    linearizable      register: per-key Wing & Gong / Lowe search, minimal sub-history
    serializable      append: Elle-style list-append, G0/G1a/G1b/G1c/G-single/G2 (+realtime)
    set_checker       set: lost / unexpected / recovered adds
    lock_checker      lock, lock_unfenced (fenced=False): token order, fencing, exclusion
    watch_checker     watch: order, duplicates, gaps, agreement
    lease_checker     lease: no early expiry, bounded late expiry
    election_checker  election: one leader per token, agreeing Observe streams
    stats             counts per f and type (always valid)

lock, watch, lease and election are aliases of the *_checker modules, for workloads that
name them so.
"""
