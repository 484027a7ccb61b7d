/*
 * member.c — member tables and their record and context codecs (see member.h).
 */
#include "member.h"

#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "store.h"

#define RECORD_FIXED 9u

LATCH_STATIC_ASSERT(RECORD_FIXED + 16u * RAFT_MEMBERS_MAX <= STORE_CONF_BYTES_MAX,
                    "a version 1 record of the largest configuration fits the store");
LATCH_STATIC_ASSERT(SRV_MEMBERS_STRINGS_BYTES <= UINT16_MAX, "string offsets are u16");

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void srv_members_init(struct srv_members *ms)
{
    LATCH_ASSERT(ms != NULL);
    ms->count = 0;
    ms->strs[0] = '\0';
    ms->strs_used = 1; /* offset 0: the empty string */
}

const struct srv_member *srv_members_find(const struct srv_members *ms, raft_id id)
{
    for (uint32_t i = 0; i < ms->count; i++) {
        if (ms->m[i].id == id) {
            return &ms->m[i];
        }
    }
    return NULL;
}

const struct srv_member *
srv_members_find_url(const struct srv_members *ms, const char *url, raft_id skip)
{
    for (uint32_t i = 0; i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        for (size_t k = 0; m->id != skip && k < m->peer_urls_count; k++) {
            if (strcmp(srv_member_peer_url(ms, m, k), url) == 0) {
                return m;
            }
        }
    }
    return NULL;
}

/* Copies len bytes of s as a NUL-terminated string into the table; *off gets its offset.
 * Errors: LATCH_EINVAL (a NUL inside), LATCH_ETOOBIG (no room). */
static int strs_put(struct srv_members *ms, const char *s, size_t len, uint16_t *off)
{
    if (len == 0) {
        *off = 0;
        return 0;
    }
    if (memchr(s, '\0', len) != NULL) {
        return LATCH_EINVAL;
    }
    if (len + 1 > SRV_MEMBERS_STRINGS_BYTES - ms->strs_used) {
        return LATCH_ETOOBIG;
    }
    memcpy(ms->strs + ms->strs_used, s, len);
    ms->strs[ms->strs_used + len] = '\0';
    *off = (uint16_t)ms->strs_used;
    ms->strs_used += (uint32_t)len + 1;
    return 0;
}

static int attrs_check(const struct srv_member_attrs *a)
{
    if (a == NULL) {
        return 0;
    }
    if ((a->name != NULL && strlen(a->name) > SRV_MEMBER_NAME_MAX) ||
        a->peer_urls_count > SRV_MEMBER_URLS_MAX ||
        (a->peer_urls_count > 0 && a->peer_urls == NULL)) {
        return LATCH_EINVAL;
    }
    for (size_t i = 0; i < a->peer_urls_count; i++) {
        if (a->peer_urls[i] == NULL || strlen(a->peer_urls[i]) > SRV_MEMBER_URL_MAX) {
            return LATCH_EINVAL;
        }
    }
    return 0;
}

int srv_members_add(struct srv_members *ms,
                    raft_id id,
                    bool learner,
                    const struct srv_member_attrs *a)
{
    LATCH_ASSERT(ms != NULL);
    if (id == RAFT_NONE || srv_members_find(ms, id) != NULL || attrs_check(a) != 0) {
        return LATCH_EINVAL;
    }
    if (ms->count == SRV_MEMBERS_MAX) {
        return LATCH_ETOOBIG;
    }
    struct srv_member m = {.id = id, .learner = learner};
    int rv = 0;
    if (a != NULL && a->name != NULL) {
        rv = strs_put(ms, a->name, strlen(a->name), &m.name_off);
    }
    for (size_t i = 0; rv == 0 && a != NULL && i < a->peer_urls_count; i++) {
        rv = strs_put(ms, a->peer_urls[i], strlen(a->peer_urls[i]), &m.url_off[i]);
        m.peer_urls_count = (uint8_t)(i + 1);
    }
    if (rv != 0) {
        return rv; /* the strings copied so far are unreachable; harmless */
    }
    ms->m[ms->count++] = m;
    return 0;
}

void srv_members_conf(const struct srv_members *ms, struct raft_conf_state *conf)
{
    memset(conf, 0, sizeof(*conf));
    for (uint32_t i = 0; i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        if (m->learner && conf->learners_count < RAFT_MEMBERS_MAX) {
            conf->learners[conf->learners_count++] = m->id;
        } else if (!m->learner && conf->voters_count < RAFT_MEMBERS_MAX) {
            conf->voters[conf->voters_count++] = m->id;
        }
    }
}

/* The attributes of member m of ms as borrowed strings (urls: room for the URLs). */
static struct srv_member_attrs
attrs_of(const struct srv_members *ms, const struct srv_member *m, const char **urls)
{
    struct srv_member_attrs a = {.name = NULL, .peer_urls = urls, .peer_urls_count = 0};
    if (m == NULL) {
        return a;
    }
    a.name = srv_member_name(ms, m);
    for (size_t i = 0; i < m->peer_urls_count; i++) {
        urls[i] = srv_member_peer_url(ms, m, i);
    }
    a.peer_urls_count = m->peer_urls_count;
    return a;
}

int srv_members_from_conf(const struct raft_conf_state *conf,
                          const struct srv_members *prev,
                          struct srv_members *out)
{
    LATCH_ASSERT(conf != NULL && out != NULL && out != prev);
    srv_members_init(out);
    uint32_t total = conf->voters_count + conf->learners_count;
    for (uint32_t i = 0; i < total; i++) {
        bool learner = i >= conf->voters_count;
        raft_id id = learner ? conf->learners[i - conf->voters_count] : conf->voters[i];
        const char *urls[SRV_MEMBER_URLS_MAX];
        const struct srv_member *pm = prev != NULL ? srv_members_find(prev, id) : NULL;
        struct srv_member_attrs a = attrs_of(prev, pm, urls);
        int rv = srv_members_add(out, id, learner, &a);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int srv_members_set_attrs(struct srv_members *ms, raft_id id, const struct srv_member_attrs *a)
{
    LATCH_ASSERT(ms != NULL);
    if (srv_members_find(ms, id) == NULL) {
        return LATCH_ENOTFOUND;
    }
    int rv = attrs_check(a);
    if (rv != 0) {
        return rv;
    }
    /* Rebuild (the old strings must not linger); a's strings may point into ms itself, so
     * copy ms first. */
    struct srv_members old = *ms;
    srv_members_init(ms);
    for (uint32_t i = 0; rv == 0 && i < old.count; i++) {
        const char *urls[SRV_MEMBER_URLS_MAX];
        struct srv_member_attrs cur = attrs_of(&old, &old.m[i], urls);
        rv = srv_members_add(ms, old.m[i].id, old.m[i].learner, old.m[i].id == id ? a : &cur);
    }
    if (rv != 0) {
        *ms = old;
    }
    return rv;
}

/* Bytes of one attribute block of member m. */
static size_t block_size(const struct srv_members *ms, const struct srv_member *m)
{
    size_t n = 2 + strlen(srv_member_name(ms, m));
    for (size_t i = 0; i < m->peer_urls_count; i++) {
        n += 1 + strlen(srv_member_peer_url(ms, m, i));
    }
    return n;
}

static uint8_t *block_put(uint8_t *p, const char *name, const char *const *urls, size_t n)
{
    size_t len = strlen(name);
    *p++ = (uint8_t)len;
    memcpy(p, name, len);
    p += len;
    *p++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        len = strlen(urls[i]);
        *p++ = (uint8_t)len;
        memcpy(p, urls[i], len);
        p += len;
    }
    return p;
}

int srv_members_encode(const struct srv_members *ms, uint8_t *buf, size_t cap, size_t *len_out)
{
    LATCH_ASSERT(ms != NULL && len_out != NULL);
    uint32_t voters = 0;
    uint32_t learners = 0;
    size_t len = RECORD_FIXED;
    for (uint32_t i = 0; i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        if (!m->learner && learners > 0) {
            return LATCH_EINVAL; /* voters first */
        }
        voters += !m->learner;
        learners += m->learner;
        len += 8 + block_size(ms, m);
    }
    if (voters > RAFT_MEMBERS_MAX || learners > RAFT_MEMBERS_MAX) {
        return LATCH_EINVAL;
    }
    if (buf == NULL || cap < len) {
        return LATCH_ETOOBIG;
    }
    buf[0] = (uint8_t)SRV_MEMBER_RECORD_V2;
    put_le32(buf + 1, voters);
    put_le32(buf + 5, learners);
    uint8_t *p = buf + RECORD_FIXED;
    for (uint32_t i = 0; i < ms->count; i++, p += 8) {
        put_le64(p, ms->m[i].id);
    }
    for (uint32_t i = 0; i < ms->count; i++) {
        const char *urls[SRV_MEMBER_URLS_MAX];
        struct srv_member_attrs a = attrs_of(ms, &ms->m[i], urls);
        p = block_put(p, a.name, urls, a.peer_urls_count);
    }
    LATCH_ASSERTF((size_t)(p - buf) == len, "record %zu bytes, expected %zu", (size_t)(p - buf),
                  len);
    *len_out = len;
    return 0;
}

/* Reads one string of an attribute block at *p (before end) into the table. */
static int block_str(const uint8_t **p, const uint8_t *end, struct srv_members *ms, uint16_t *off)
{
    if (*p >= end) {
        return LATCH_ECORRUPT;
    }
    size_t len = **p;
    if (len > (size_t)(end - *p - 1)) {
        return LATCH_ECORRUPT;
    }
    if (strs_put(ms, (const char *)*p + 1, len, off) != 0) {
        return LATCH_ECORRUPT;
    }
    *p += 1 + len;
    return 0;
}

/* Reads the attribute block at *p into member m of ms. */
static int
block_get(const uint8_t **p, const uint8_t *end, struct srv_members *ms, struct srv_member *m)
{
    int rv = block_str(p, end, ms, &m->name_off);
    if (rv != 0 || *p >= end) {
        return LATCH_ECORRUPT;
    }
    uint8_t n = *(*p)++;
    if (n > SRV_MEMBER_URLS_MAX) {
        return LATCH_ECORRUPT;
    }
    for (uint8_t i = 0; i < n; i++) {
        rv = block_str(p, end, ms, &m->url_off[i]);
        if (rv != 0) {
            return rv;
        }
    }
    m->peer_urls_count = n;
    return 0;
}

int srv_members_decode(const uint8_t *buf, size_t len, struct srv_members *out)
{
    LATCH_ASSERT(out != NULL);
    srv_members_init(out);
    if (buf == NULL || len < RECORD_FIXED ||
        (buf[0] != SRV_MEMBER_RECORD_V1 && buf[0] != SRV_MEMBER_RECORD_V2)) {
        return LATCH_ECORRUPT;
    }
    uint32_t v = get_le32(buf + 1);
    uint32_t l = get_le32(buf + 5);
    if (v > RAFT_MEMBERS_MAX || l > RAFT_MEMBERS_MAX || len < RECORD_FIXED + 8u * ((size_t)v + l)) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *p = buf + RECORD_FIXED;
    for (uint32_t i = 0; i < v + l; i++, p += 8) {
        raft_id id = get_le64(p);
        if (id == RAFT_NONE || srv_members_find(out, id) != NULL) {
            srv_members_init(out);
            return LATCH_ECORRUPT;
        }
        out->m[out->count++] = (struct srv_member){.id = id, .learner = i >= v};
    }
    const uint8_t *end = buf + len;
    int rv = 0;
    if (buf[0] == SRV_MEMBER_RECORD_V1) {
        rv = p == end ? 0 : LATCH_ECORRUPT;
    }
    for (uint32_t i = 0; rv == 0 && buf[0] == SRV_MEMBER_RECORD_V2 && i < out->count; i++) {
        rv = block_get(&p, end, out, &out->m[i]);
    }
    if (rv == 0 && p != end) {
        rv = LATCH_ECORRUPT;
    }
    if (rv != 0) {
        srv_members_init(out);
    }
    return rv;
}

int srv_member_context_encode(raft_id proposer,
                              uint64_t seq,
                              const struct srv_member_attrs *a,
                              uint8_t *buf,
                              size_t cap,
                              size_t *len_out)
{
    LATCH_ASSERT(len_out != NULL);
    if (attrs_check(a) != 0) {
        return LATCH_EINVAL;
    }
    const char *name = a != NULL && a->name != NULL ? a->name : "";
    size_t n = a != NULL ? a->peer_urls_count : 0;
    size_t len = SRV_MEMBER_CONTEXT_FIXED + 2 + strlen(name);
    for (size_t i = 0; i < n; i++) {
        len += 1 + strlen(a->peer_urls[i]);
    }
    if (buf == NULL || cap < len || len > RAFT_CONF_CONTEXT_BYTES_MAX) {
        return LATCH_ETOOBIG;
    }
    buf[0] = 1;
    put_le64(buf + 1, proposer);
    put_le64(buf + 9, seq);
    uint8_t *p = block_put(buf + SRV_MEMBER_CONTEXT_FIXED, name, n > 0 ? a->peer_urls : NULL, n);
    LATCH_ASSERT((size_t)(p - buf) == len);
    *len_out = len;
    return 0;
}

int srv_member_context_decode(const uint8_t *buf,
                              size_t len,
                              raft_id id,
                              raft_id *proposer,
                              uint64_t *seq,
                              struct srv_members *one)
{
    LATCH_ASSERT(proposer != NULL && seq != NULL && one != NULL);
    srv_members_init(one);
    if (buf == NULL || len < SRV_MEMBER_CONTEXT_FIXED || buf[0] != 1 || id == RAFT_NONE) {
        return LATCH_ECORRUPT;
    }
    struct srv_member m = {.id = id};
    const uint8_t *p = buf + SRV_MEMBER_CONTEXT_FIXED;
    int rv = block_get(&p, buf + len, one, &m);
    if (rv != 0 || p != buf + len) {
        srv_members_init(one);
        return LATCH_ECORRUPT;
    }
    *proposer = get_le64(buf + 1);
    *seq = get_le64(buf + 9);
    one->m[one->count++] = m;
    return 0;
}
