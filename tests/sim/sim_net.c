/*
 * sim_net.c — the simulated network.
 *
 * A sent message is deep-copied (entries, their data and snapshot bytes in one allocation)
 * and given a delivery step: a short random delay, sometimes a long one, so messages are
 * reordered; it may instead be dropped or duplicated. Not-yet-due messages wait in a
 * min-heap ordered by (due, send sequence); due ones move to a FIFO that the scheduler's
 * "deliver" steps drain one message at a time. Partitions are a connectivity matrix consulted
 * at delivery, so a partition also cuts messages already in flight (as a real one would).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_net_init(struct sim_net *net)
{
    memset(net, 0, sizeof(*net));
}

void sim_msg_free(struct sim_msg *msg)
{
    free(msg);
}

void sim_net_free(struct sim_net *net)
{
    for (size_t i = 0; i < net->heap_count; i++) {
        sim_msg_free(net->heap[i]);
    }
    for (size_t i = 0; i < net->due_count; i++) {
        sim_msg_free(net->due[(net->due_head + i) % net->due_cap]);
    }
    free(net->heap);
    free(net->due);
    memset(net, 0, sizeof(*net));
}

static size_t msg_copy_size(const struct raft_msg *m)
{
    size_t size = sizeof(struct sim_msg) + (size_t)m->entries_count * sizeof(struct raft_entry);

    for (uint32_t i = 0; i < m->entries_count; i++) {
        size += m->entries[i].len;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        size += m->snapshot.len;
    }
    return size;
}

/* One allocation: struct sim_msg, then the entry headers, then every data byte. */
static struct sim_msg *msg_copy(const struct raft_msg *m)
{
    struct sim_msg *msg = malloc(msg_copy_size(m));
    struct raft_entry *ents = (struct raft_entry *)(msg + 1);
    uint8_t *bytes = (uint8_t *)(ents + m->entries_count);

    LATCH_ASSERT(msg != NULL);
    memset(msg, 0, sizeof(*msg));
    msg->m = *m;
    msg->m.entries = m->entries_count > 0 ? ents : NULL;
    for (uint32_t i = 0; i < m->entries_count; i++) {
        ents[i] = m->entries[i];
        if (m->entries[i].len > 0) {
            memcpy(bytes, m->entries[i].data, m->entries[i].len);
        }
        ents[i].data = m->entries[i].len > 0 ? bytes : NULL;
        bytes += m->entries[i].len;
    }
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.len > 0) {
        memcpy(bytes, m->snapshot.data, m->snapshot.len);
        msg->m.snapshot.data = bytes;
    }
    return msg;
}

static bool msg_before(const struct sim_msg *a, const struct sim_msg *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_push(struct sim_net *net, struct sim_msg *msg)
{
    size_t i;

    if (net->heap_count == net->heap_cap) {
        net->heap_cap = net->heap_cap == 0 ? 256 : net->heap_cap * 2;
        net->heap = realloc(net->heap, net->heap_cap * sizeof(*net->heap));
        LATCH_ASSERT(net->heap != NULL);
    }
    i = net->heap_count++;
    net->heap[i] = msg;
    while (i > 0 && msg_before(net->heap[i], net->heap[(i - 1) / 2])) {
        struct sim_msg *t = net->heap[i];

        net->heap[i] = net->heap[(i - 1) / 2];
        net->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static struct sim_msg *heap_pop(struct sim_net *net)
{
    struct sim_msg *top = net->heap[0];
    size_t i = 0;

    net->heap[0] = net->heap[--net->heap_count];
    for (;;) {
        size_t l = 2 * i + 1;
        size_t best = i;

        if (l < net->heap_count && msg_before(net->heap[l], net->heap[best])) {
            best = l;
        }
        if (l + 1 < net->heap_count && msg_before(net->heap[l + 1], net->heap[best])) {
            best = l + 1;
        }
        if (best == i) {
            break;
        }
        struct sim_msg *t = net->heap[i];
        net->heap[i] = net->heap[best];
        net->heap[best] = t;
        i = best;
    }
    return top;
}

static void due_push(struct sim_net *net, struct sim_msg *msg)
{
    if (net->due_count == net->due_cap) {
        size_t cap = net->due_cap == 0 ? 256 : net->due_cap * 2;
        struct sim_msg **due = malloc(cap * sizeof(*due));

        LATCH_ASSERT(due != NULL);
        for (size_t i = 0; i < net->due_count; i++) {
            due[i] = net->due[(net->due_head + i) % net->due_cap];
        }
        free(net->due);
        net->due = due;
        net->due_cap = cap;
        net->due_head = 0;
    }
    net->due[(net->due_head + net->due_count) % net->due_cap] = msg;
    net->due_count++;
}

static struct sim_msg *due_pop(struct sim_net *net)
{
    struct sim_msg *msg = net->due[net->due_head];

    net->due_head = (net->due_head + 1) % net->due_cap;
    net->due_count--;
    return msg;
}

/* Random delays reorder messages. Once faults stop, every link is FIFO, as a TCP stream
 * is: heavy reordering of a deep append pipeline is adversarial enough to stall it. */
static uint64_t net_delay(struct sim *s)
{
    if (s->phase != SIM_PHASE_FAULTS) {
        return 2;
    }
    if (sim_rng_chance(&s->rng, s->p.slow_pm)) {
        return sim_rng_range(&s->rng, 1, s->p.slow_max);
    }
    return sim_rng_range(&s->rng, 1, s->p.delay_max);
}

/* A message that will never arrive: tell the sender's transport layer, as a real one
 * would notice (a failed snapshot stream always, an unreachable peer sometimes). */
static void net_dropped(struct sim *s, const struct raft_msg *m, uint32_t from_life)
{
    struct sim_node *src = sim_node_get(s, m->from);

    s->stats.msgs_dropped++;
    sim_event(s, SIM_EV_DROP, m->from, m->term, sim_ev_msg(m), m->to, m->index);
    if (!sim_node_is_live(src) || src->life != from_life) {
        return;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        sim_node_report_snapshot(src, m->to, false);
    } else if (sim_rng_chance(&s->rng, s->p.unreachable_pm)) {
        sim_node_report_unreachable(src, m->to);
    }
}

static bool net_faulty(const struct sim *s)
{
    return s->phase == SIM_PHASE_FAULTS && s->opt->faults;
}

void sim_net_send(struct sim *s, struct sim_node *from, const struct raft_msg *m)
{
    struct sim_net *net = &s->net;
    struct sim_msg *msg;

    s->stats.msgs_sent++;
    sim_event(s, SIM_EV_SEND, from->id, m->term, sim_ev_msg(m), m->to, m->index);
    sim_check_sent(s, from, m);
    if (net_faulty(s)) {
        sim_nemesis_sent(s, from, m);
    }
    if (net_faulty(s) && sim_rng_chance(&s->rng, s->p.drop_pm)) {
        net_dropped(s, m, from->life);
        return;
    }
    if (net->heap_count + net->due_count >= SIM_NET_MAX) {
        net_dropped(s, m, from->life);
        return;
    }
    msg = msg_copy(m);
    msg->from_life = from->life;
    msg->due = s->step + net_delay(s);
    msg->seq = net->seq++;
    heap_push(net, msg);
    if (net_faulty(s) && sim_rng_chance(&s->rng, s->p.dup_pm)) {
        struct sim_msg *dup = msg_copy(m);

        s->stats.msgs_duplicated++;
        dup->from_life = from->life;
        dup->due = s->step + net_delay(s);
        dup->seq = net->seq++;
        heap_push(net, dup);
    }
}

void sim_net_advance(struct sim *s)
{
    struct sim_net *net = &s->net;

    while (net->heap_count > 0 && net->heap[0]->due <= s->step) {
        due_push(net, heap_pop(net));
    }
}

void sim_net_crash_outbox(struct sim *s, raft_id id, uint32_t life)
{
    struct sim_net *net = &s->net;

    if (s->phase != SIM_PHASE_FAULTS) {
        return;
    }
    for (size_t i = 0; i < net->heap_count; i++) {
        struct sim_msg *msg = net->heap[i];

        if (msg->m.from == id && msg->from_life == life &&
            sim_rng_chance(&s->rng, s->p.outbox_pm)) {
            msg->lost = true;
        }
    }
}

size_t sim_net_due_count(const struct sim *s)
{
    return s->net.due_count;
}

bool sim_net_reachable(const struct sim *s, raft_id from, raft_id to)
{
    if (from >= SIM_IDS_MAX || to >= SIM_IDS_MAX) {
        return false;
    }
    return s->net.blocked[from][to] == 0;
}

bool sim_net_deliver(struct sim *s)
{
    struct sim_msg *msg;
    struct sim_node *dst;
    raft_id from;
    raft_id to;
    uint32_t type;

    if (s->net.due_count == 0) {
        return false;
    }
    msg = due_pop(&s->net);
    from = msg->m.from;
    to = msg->m.to;
    type = msg->m.type;
    dst = sim_node_get(s, to);
    if (msg->lost || !sim_net_reachable(s, from, to)) {
        net_dropped(s, &msg->m, msg->from_life);
        sim_msg_free(msg);
        return true;
    }
    if (!sim_node_is_live(dst)) {
        net_dropped(s, &msg->m, msg->from_life);
        sim_msg_free(msg);
        return true;
    }
    s->stats.msgs_delivered++;
    sim_event(s, SIM_EV_DELIVER, to, msg->m.term, sim_ev_msg(&msg->m), from, msg->m.index);
    if (type == RAFT_MSG_SNAPSHOT) {
        struct sim_node *src = sim_node_get(s, from);

        if (sim_node_is_live(src) && src->life == msg->from_life) {
            sim_node_report_snapshot(src, to, true);
        }
    }
    sim_node_receive(dst, msg);
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Partitions                                                                           */
/* ------------------------------------------------------------------------------------ */

enum net_shape {
    SHAPE_ISOLATE_ONE = 1,
    SHAPE_ISOLATE_LEADER,
    SHAPE_SPLIT,
    SHAPE_BRIDGE,
    SHAPE_RING,
    SHAPE_LEADER_MINORITY, /* the leader and a few followers cut off from the majority */
    SHAPE_COUNT,
};

static void block_both(struct sim_net *net, raft_id a, raft_id b)
{
    net->blocked[a][b] = 1;
    net->blocked[b][a] = 1;
}

/* Blocks every pair across the groups [0, k) and [k, n) of ids. */
static void block_across(struct sim_net *net, const raft_id *ids, size_t k, size_t n)
{
    for (size_t i = 0; i < k; i++) {
        for (size_t j = k; j < n; j++) {
            block_both(net, ids[i], ids[j]);
        }
    }
}

static raft_id current_leader(const struct sim *s)
{
    raft_id best = RAFT_NONE;
    raft_term best_term = 0;

    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = sim_node_get(s, id);

        if (sim_node_is_live(n) && n->seen_leader && n->seen_term >= best_term) {
            best = id;
            best_term = n->seen_term;
        }
    }
    return best;
}

/* Each node sees only its two neighbours in the order of ids. */
static void shape_ring(struct sim_net *net, const raft_id *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            size_t d = i > j ? i - j : j - i;

            if (d > 1 && d != n - 1) {
                block_both(net, ids[i], ids[j]);
            }
        }
    }
}

static void apply_shape(struct sim *s, uint32_t shape, raft_id *ids, size_t n)
{
    struct sim_net *net = &s->net;

    switch (shape) {
    case SHAPE_ISOLATE_LEADER:
    case SHAPE_ISOLATE_ONE:
        block_across(net, ids, 1, n);
        break;
    case SHAPE_SPLIT:
    case SHAPE_LEADER_MINORITY:
        block_across(net, ids, (size_t)sim_rng_range(&s->rng, 1, (n - 1) / 2), n);
        break;
    case SHAPE_BRIDGE: {
        /* ids[0] is the bridge; [1, 1 + h) and [1 + h, n) cannot see each other. */
        size_t h = (size_t)sim_rng_range(&s->rng, 1, (n - 1) / 2);

        block_across(net, ids + 1, h, n - 1);
        break;
    }
    case SHAPE_RING:
        shape_ring(net, ids, n);
        break;
    default:
        LATCH_UNREACHABLE();
    }
}

void sim_net_partition(struct sim *s)
{
    raft_id ids[SIM_IDS_MAX];
    size_t n = 0;
    uint32_t shape = (uint32_t)sim_rng_range(&s->rng, SHAPE_ISOLATE_ONE, SHAPE_COUNT - 1);
    raft_id leader = current_leader(s);

    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *node = sim_node_get(s, id);

        if (node != NULL && (node->state == SIM_NODE_LIVE || node->state == SIM_NODE_CRASHED)) {
            ids[n++] = id;
        }
    }
    if (n < 3) {
        return;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)sim_rng_below(&s->rng, i + 1);
        raft_id t = ids[i];

        ids[i] = ids[j];
        ids[j] = t;
    }
    if ((shape == SHAPE_ISOLATE_LEADER || shape == SHAPE_LEADER_MINORITY) && leader != RAFT_NONE) {
        for (size_t i = 0; i < n; i++) {
            if (ids[i] == leader) {
                ids[i] = ids[0];
                ids[0] = leader;
            }
        }
    }
    sim_net_heal(s);
    apply_shape(s, shape, ids, n);
    s->net.partitioned = true;
    s->stats.partitions++;
    sim_event(s, SIM_EV_PARTITION, ids[0], 0, shape, n, 0);
}

void sim_net_isolate(struct sim *s, raft_id id)
{
    sim_net_heal(s);
    for (raft_id other = 1; other < SIM_IDS_MAX; other++) {
        if (other != id) {
            block_both(&s->net, id, other);
        }
    }
    s->net.partitioned = true;
    s->stats.partitions++;
    sim_event(s, SIM_EV_PARTITION, id, 0, SHAPE_ISOLATE_LEADER, 1, 0);
}

void sim_net_heal(struct sim *s)
{
    if (s->net.partitioned) {
        sim_event(s, SIM_EV_HEAL, 0, 0, 0, 0, 0);
    }
    memset(s->net.blocked, 0, sizeof(s->net.blocked));
    s->net.partitioned = false;
}
