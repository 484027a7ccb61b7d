/*
 * sim_util.c — the simulator's PRNG, hashes, event ring and violation report.
 *
 * The PRNG is xoshiro256** seeded through splitmix64 (both public-domain algorithms by
 * Blackman and Vigna, written here from their published definitions). It is the only
 * source of randomness in the simulator; the cores get their election jitter seeds from it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void sim_rng_seed(struct sim_rng *rng, uint64_t seed)
{
    uint64_t x = seed;

    for (int i = 0; i < 4; i++) {
        rng->s[i] = splitmix64(&x);
    }
}

uint64_t sim_rng_next(struct sim_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sim_rng_below(struct sim_rng *rng, uint64_t n)
{
    if (n == 0) {
        return 0;
    }
    /* The modulo bias is below 2^-40 for the small n used here. */
    return sim_rng_next(rng) % n;
}

uint64_t sim_rng_range(struct sim_rng *rng, uint64_t lo, uint64_t hi)
{
    LATCH_ASSERT(lo <= hi);
    return lo + sim_rng_below(rng, hi - lo + 1);
}

bool sim_rng_chance(struct sim_rng *rng, uint32_t per_mille)
{
    return sim_rng_below(rng, 1000) < per_mille;
}

uint64_t sim_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

void sim_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

uint64_t sim_get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

uint64_t sim_hash_bytes(uint64_t h, const uint8_t *data, size_t len)
{
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        h = sim_mix64(h ^ sim_get64(data + i)) + 0x9e3779b97f4a7c15ull;
    }
    for (; i < len; i++) {
        h = (h ^ data[i]) * 0x100000001b3ull;
    }
    return sim_mix64(h ^ (uint64_t)len);
}

uint64_t sim_chain(uint64_t prev, const struct raft_entry *e)
{
    uint64_t h = sim_mix64(prev ^ 0x6a09e667f3bcc909ull);

    h = sim_mix64(h ^ e->index);
    h = sim_mix64(h ^ (e->term * 0x9e3779b97f4a7c15ull));
    h = sim_mix64(h ^ ((uint64_t)e->type << 32));
    return sim_hash_bytes(h, e->data, e->len);
}

void sim_event(
    struct sim *s, uint32_t kind, raft_id node, raft_term term, uint64_t a, uint64_t b, uint64_t c)
{
    struct sim_event *ev = &s->ring[s->ring_count % SIM_RING_SIZE];

    ev->step = s->step;
    ev->kind = kind;
    ev->node = node;
    ev->term = term;
    ev->a = a;
    ev->b = b;
    ev->c = c;
    s->ring_count++;
    if (s->opt->verbose) {
        sim_print_event(ev);
    }
}

static const char *trace_name(uint64_t kind)
{
    static const char *const names[] = {
        "?",
        "follower",
        "pre-candidate",
        "candidate",
        "leader",
        "vote-granted",
        "vote-rejected",
        "no-quorum",
        "snap-restored",
        "snap-sent",
        "conf-applied",
        "transfer-start",
        "transfer-abort",
        "log-truncated",
        "prop-dropped",
    };

    return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

/* How each event kind prints: its name and the labels of a, b, c (NULL: not printed). */
struct ev_format {
    const char *name;
    const char *a;
    const char *b;
    const char *c;
};

static const struct ev_format ev_formats[SIM_EV_KIND_COUNT] = {
    [SIM_EV_TICK] = {"tick", NULL, NULL, NULL},
    [SIM_EV_PROPOSE] = {"propose", "id", "rc", "bytes"},
    [SIM_EV_READ] = {"read", "ctx", "rc", NULL},
    [SIM_EV_TRANSFER] = {"transfer", "target", "rc", NULL},
    [SIM_EV_CONF] = {"conf", "type", "node", "rc"},
    [SIM_EV_CONF_APPLIED] = {"conf-applied", "type", "node", "index"},
    [SIM_EV_SNAPSHOT] = {"snapshot", "index", "compacted", NULL},
    [SIM_EV_CRASH] = {"crash", "persisting", "applied", NULL},
    [SIM_EV_RESTART] = {"restart", "applied", "commit", "life"},
    [SIM_EV_PARTITION] = {"partition", "shape", "nodes", NULL},
    [SIM_EV_HEAL] = {"heal", NULL, NULL, NULL},
    [SIM_EV_PERSIST] = {"persist", "entries", "first", "last"},
    [SIM_EV_HARD_STATE] = {"hard-state", "term", "vote", "commit"},
    [SIM_EV_APPLY] = {"apply", "index", "term", "type"},
    [SIM_EV_INSTALL] = {"install", "index", "term", NULL},
    [SIM_EV_READ_STATE] = {"read-state", "ctx", "index", NULL},
    [SIM_EV_LEADER] = {"leader", "commit", NULL, NULL},
    [SIM_EV_TRACE] = {"trace", NULL, "a", "b"},
    [SIM_EV_STOP] = {"stop", NULL, NULL, NULL},
    [SIM_EV_START] = {"start", "bootstrapped", NULL, NULL},
    [SIM_EV_PHASE] = {"phase", "phase", NULL, NULL},
};

uint64_t sim_ev_msg(const struct raft_msg *m)
{
    return (uint64_t)m->type | (m->reject ? 0x100u : 0u) | ((uint64_t)m->entries_count << 16) |
           ((uint64_t)m->log_term << 40);
}

static const char *const ev_msg_names[] = {"", "", "send", "deliver", "drop"};

/* Message events pack type, reject, entry count and log term into a (sim_ev_msg). */
static void print_msg_event(const struct sim_event *ev)
{
    static const char *const peer[] = {"", "", "to", "from", "to"};

    printf("  step %6llu node %2llu term %3llu %-12s %-16s %s=%llu index=%llu log_term=%llu "
           "entries=%llu%s\n",
           (unsigned long long)ev->step, (unsigned long long)ev->node, (unsigned long long)ev->term,
           ev_msg_names[ev->kind], raft_msg_type_name((uint32_t)(ev->a & 0xff)), peer[ev->kind],
           (unsigned long long)ev->b, (unsigned long long)ev->c, (unsigned long long)(ev->a >> 40),
           (unsigned long long)((ev->a >> 16) & 0xffffff), (ev->a & 0x100) != 0 ? " reject" : "");
}

static void print_field(const char *label, uint64_t v)
{
    if (label != NULL) {
        printf(" %s=%llu", label, (unsigned long long)v);
    }
}

void sim_print_event(const struct sim_event *ev)
{
    const struct ev_format *f;

    if (ev->kind == SIM_EV_SEND || ev->kind == SIM_EV_DELIVER || ev->kind == SIM_EV_DROP) {
        print_msg_event(ev);
        return;
    }
    if (ev->kind >= SIM_EV_KIND_COUNT || ev_formats[ev->kind].name == NULL) {
        printf("  step %6llu event %u\n", (unsigned long long)ev->step, ev->kind);
        return;
    }
    f = &ev_formats[ev->kind];
    printf("  step %6llu node %2llu term %3llu %-12s %-16s", (unsigned long long)ev->step,
           (unsigned long long)ev->node, (unsigned long long)ev->term, f->name,
           ev->kind == SIM_EV_TRACE ? trace_name(ev->a) : "");
    print_field(f->a, ev->a);
    print_field(f->b, ev->b);
    print_field(f->c, ev->c);
    printf("\n");
}

void sim_print_ring(const struct sim *s)
{
    uint64_t n = s->ring_count < SIM_RING_SIZE ? s->ring_count : SIM_RING_SIZE;

    printf("last %llu events:\n", (unsigned long long)n);
    for (uint64_t i = s->ring_count - n; i < s->ring_count; i++) {
        sim_print_event(&s->ring[i % SIM_RING_SIZE]);
    }
}

void sim_violation(struct sim *s, const char *which, const char *fmt, ...)
{
    va_list ap;

    if (s->violated) {
        return;
    }
    s->violated = true;
    s->violation_step = s->step;
    snprintf(s->violation_which, sizeof(s->violation_which), "%s", which);
    va_start(ap, fmt);
    vsnprintf(s->violation_detail, sizeof(s->violation_detail), fmt, ap);
    va_end(ap);
}

const char *sim_bug_name(uint32_t bug)
{
    switch (bug) {
    case RAFT_BUG_VOTE_IGNORES_LOG:
        return "vote-ignores-log";
    case RAFT_BUG_COMMIT_OLD_TERM:
        return "commit-old-term";
    case RAFT_BUG_VOTE_BEFORE_PERSIST:
        return "vote-before-persist";
    case RAFT_BUG_NO_TRUNCATE_CONFLICT:
        return "no-truncate-conflict";
    default:
        return NULL;
    }
}
