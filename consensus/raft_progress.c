/*
 * raft_progress.c — what a leader knows of each member's log, and the flow control that
 * bounds what it sends (thesis §3.5 and §10.2; the state names follow etcd's Progress).
 *
 *   PROBE      one append at a time until the follower's match point is found
 *   REPLICATE  pipelined appends, at most `cap` messages / `bytes_max` bytes in flight
 *   SNAPSHOT   waiting for a snapshot to be installed; nothing else is sent
 *
 *   PROBE --(append accepted)--> REPLICATE --(append rejected / unreachable)--> PROBE
 *   any --(needed entries compacted)--> SNAPSHOT --(caught up / report)--> PROBE
 */
#include "raft_int.h"

void raft__inflights_add(struct raft_inflights *in, raft_index last, uint64_t bytes)
{
    uint32_t at;

    LATCH_ASSERT(in->count < in->cap);
    LATCH_ASSERT(in->count == 0 || last > in->index[(in->start + in->count - 1) % in->cap]);
    at = (in->start + in->count) % in->cap;
    in->index[at] = last;
    in->bytes[at] = bytes;
    in->count++;
    in->bytes_total += bytes;
}

/* Frees every append whose last index is <= index (they were acknowledged). */
void raft__inflights_free_le(struct raft_inflights *in, raft_index index)
{
    while (in->count > 0 && in->index[in->start] <= index) {
        LATCH_ASSERT(in->bytes_total >= in->bytes[in->start]);
        in->bytes_total -= in->bytes[in->start];
        in->start = (in->start + 1) % in->cap;
        in->count--;
    }
    if (in->count == 0) {
        in->start = 0;
    }
}

/* A heartbeat response shows the follower is alive: let one more append through. */
void raft__inflights_free_first(struct raft_inflights *in)
{
    if (in->count > 0) {
        raft__inflights_free_le(in, in->index[in->start]);
    }
}

bool raft__inflights_full(const struct raft_inflights *in)
{
    return in->count == in->cap || (in->bytes_max > 0 && in->bytes_total >= in->bytes_max);
}

void raft__inflights_reset(struct raft_inflights *in)
{
    in->start = 0;
    in->count = 0;
    in->bytes_total = 0;
}

void raft__progress_reset(struct raft_progress *pr, raft_index last_index)
{
    pr->match = 0;
    pr->next = last_index + 1;
    pr->pending_snapshot = 0;
    pr->read_acked = 0;
    pr->state = RAFT_PROGRESS_PROBE;
    pr->recent_active = false;
    pr->probe_sent = false;
    pr->send_pending = false;
    pr->vote = -1;
    raft__inflights_reset(&pr->inflights);
}

static void progress_reset_state(struct raft_progress *pr, uint8_t state)
{
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->state = state;
    raft__inflights_reset(&pr->inflights);
}

void raft__progress_become_probe(struct raft_progress *pr)
{
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        /* The snapshot may have arrived: resume after it, or after match if further. */
        raft_index snap = pr->pending_snapshot;

        progress_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = (pr->match > snap ? pr->match : snap) + 1;
    } else {
        progress_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = pr->match + 1;
    }
    LATCH_ASSERT(pr->next > pr->match);
}

void raft__progress_become_replicate(struct raft_progress *pr)
{
    progress_reset_state(pr, RAFT_PROGRESS_REPLICATE);
    pr->next = pr->match + 1;
}

void raft__progress_become_snapshot(struct raft_progress *pr, raft_index snap_index)
{
    progress_reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
    pr->pending_snapshot = snap_index;
}

/* An acknowledgement up to n: returns true when match moved forward. */
bool raft__progress_maybe_update(struct raft_progress *pr, raft_index n)
{
    bool updated = false;

    if (pr->match < n) {
        pr->match = n;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < n + 1) {
        pr->next = n + 1;
    }
    LATCH_ASSERT(pr->next > pr->match);
    return updated;
}

/*
 * The follower rejected an append after index `rejected`; match_hint is the highest index
 * at which its log may still agree. Returns false for a stale rejection (an answer to an
 * append sent before the current probe), which must be ignored.
 */
bool raft__progress_maybe_decr_to(struct raft_progress *pr,
                                  raft_index rejected,
                                  raft_index match_hint)
{
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        if (rejected <= pr->match) {
            return false;
        }
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next == 0 || pr->next - 1 != rejected) {
        return false;
    }
    pr->next = rejected < match_hint + 1 ? rejected : match_hint + 1;
    if (pr->next < pr->match + 1) {
        pr->next = pr->match + 1;
    }
    pr->probe_sent = false;
    LATCH_ASSERT(pr->next >= 1);
    return true;
}

bool raft__progress_is_paused(const struct raft_progress *pr)
{
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
        return pr->probe_sent;
    case RAFT_PROGRESS_REPLICATE:
        return raft__inflights_full(&pr->inflights);
    case RAFT_PROGRESS_SNAPSHOT:
        return true;
    default:
        LATCH_UNREACHABLE();
    }
}

/* Records an append just sent (last = its last entry index, 0 entries: last = next - 1). */
void raft__progress_sent_entries(struct raft_progress *pr, raft_index last, uint64_t bytes)
{
    switch (pr->state) {
    case RAFT_PROGRESS_REPLICATE:
        if (last >= pr->next) {
            pr->next = last + 1;
            raft__inflights_add(&pr->inflights, last, bytes);
        }
        break;
    case RAFT_PROGRESS_PROBE:
        pr->probe_sent = true;
        break;
    default:
        LATCH_UNREACHABLE();
    }
}
