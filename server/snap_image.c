/*
 * snap_image.c — the Snapshot stream's bbolt image (see snap_image.h).
 */
#include "snap_image.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bbolt.h"
#include "latch_error.h"

/* Protobuf wire pieces, enough for mvccpb.KeyValue, leasepb.Lease and AlarmMember. */
struct pb_out {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void pb_reserve(struct pb_out *o, size_t n)
{
    if (o->oom || o->len + n <= o->cap) {
        return;
    }
    size_t cap = o->cap > 0 ? o->cap : 256;
    while (cap < o->len + n) {
        cap *= 2;
    }
    uint8_t *np = realloc(o->p, cap);
    if (np == NULL) {
        o->oom = true;
        return;
    }
    o->p = np;
    o->cap = cap;
}

static void pb_varint(struct pb_out *o, uint64_t v)
{
    pb_reserve(o, 10);
    if (o->oom) {
        return;
    }
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        o->p[o->len++] = v != 0 ? (uint8_t)(b | 0x80) : b;
    } while (v != 0);
}

/* A varint field; proto3 omits zeros. int64 fields encode as their two's complement. */
static void pb_int(struct pb_out *o, unsigned field, int64_t v)
{
    if (v != 0) {
        pb_varint(o, (uint64_t)field << 3);
        pb_varint(o, (uint64_t)v);
    }
}

static void pb_bytes(struct pb_out *o, unsigned field, const uint8_t *p, size_t n)
{
    if (n == 0) {
        return;
    }
    pb_varint(o, (uint64_t)field << 3 | 2);
    pb_varint(o, n);
    pb_reserve(o, n);
    if (!o->oom) {
        memcpy(o->p + o->len, p, n);
        o->len += n;
    }
}

/* etcd's revision key: main be64, '_', sub be64 (17 bytes). */
static void rev_key(uint8_t k[17], int64_t main_rev, int64_t sub)
{
    for (int i = 0; i < 8; i++) {
        k[i] = (uint8_t)((uint64_t)main_rev >> (56 - 8 * i));
        k[9 + i] = (uint8_t)((uint64_t)sub >> (56 - 8 * i));
    }
    k[8] = '_';
}

static void be64(uint8_t k[8], uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        k[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

struct image {
    struct srv_bbolt *w;
    const struct srv_snap_image_config *cfg;
    struct srv_snap_image_info *info;
    struct pb_out pb;
    bool in_lease; /* the "key" bucket is done and "lease" is open */
};

static bool cancelled(const struct image *im)
{
    return im->cfg->cancel != NULL && atomic_load(im->cfg->cancel);
}

static int on_begin(void *data, const struct store_dump_info *info)
{
    struct image *im = data;
    im->info->revision = info->revision;
    im->info->compact_revision = info->compact_revision;
    return srv_bbolt_bucket_begin(im->w, "key", 3);
}

static int on_event(void *data, const struct store_dump_event *ev)
{
    struct image *im = data;
    if (cancelled(im)) {
        return LATCH_ESHUTDOWN;
    }
    uint8_t k[18];
    rev_key(k, ev->revision, ev->sub);
    size_t klen = 17;
    im->pb.len = 0;
    pb_bytes(&im->pb, 1, ev->kv.key, ev->kv.key_len);
    if (ev->type == STORE_EVENT_DELETE) {
        k[klen++] = 't'; /* etcd's tombstone mark; the value holds only the key */
    } else {
        pb_int(&im->pb, 2, ev->kv.create_revision);
        pb_int(&im->pb, 3, ev->kv.mod_revision);
        pb_int(&im->pb, 4, ev->kv.version);
        pb_bytes(&im->pb, 5, ev->kv.value, ev->kv.value_len);
        pb_int(&im->pb, 6, ev->kv.lease);
    }
    if (im->pb.oom) {
        return LATCH_ENOMEM;
    }
    im->info->kv_records++;
    return srv_bbolt_put(im->w, k, klen, im->pb.p, im->pb.len);
}

static int lease_open(struct image *im)
{
    if (im->in_lease) {
        return 0;
    }
    im->in_lease = true;
    int rc = srv_bbolt_bucket_end(im->w);
    return rc != 0 ? rc : srv_bbolt_bucket_begin(im->w, "lease", 5);
}

static int on_lease(void *data, const struct store_lease *l)
{
    struct image *im = data;
    int rc = lease_open(im);
    if (rc != 0) {
        return rc;
    }
    uint8_t k[8];
    be64(k, (uint64_t)l->id);
    im->pb.len = 0;
    pb_int(&im->pb, 1, l->id);
    pb_int(&im->pb, 2, l->ttl);
    pb_int(&im->pb, 3, l->remaining_ttl);
    if (im->pb.oom) {
        return LATCH_ENOMEM;
    }
    im->info->leases++;
    return srv_bbolt_put(im->w, k, sizeof(k), im->pb.p, im->pb.len);
}

static int empty_bucket(struct srv_bbolt *w, const char *name)
{
    int rc = srv_bbolt_bucket_begin(w, name, strlen(name));
    return rc != 0 ? rc : srv_bbolt_bucket_end(w);
}

/* Appends s as a JSON string (quotes, backslashes and control bytes escaped). */
static void json_str(struct pb_out *o, const char *s)
{
    char esc[8];
    pb_reserve(o, 1);
    if (!o->oom) {
        o->p[o->len++] = '"';
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        size_t n = 1;
        esc[0] = (char)c;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20) {
            n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        }
        pb_reserve(o, n);
        if (!o->oom) {
            memcpy(o->p + o->len, esc, n);
            o->len += n;
        }
    }
    pb_reserve(o, 1);
    if (!o->oom) {
        o->p[o->len++] = '"';
    }
}

static void json_raw(struct pb_out *o, const char *s)
{
    size_t n = strlen(s);
    pb_reserve(o, n);
    if (!o->oom) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

static void json_list(struct pb_out *o, const char *name, const char *const *v, size_t n)
{
    json_raw(o, name);
    json_raw(o, "[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            json_raw(o, ",");
        }
        json_str(o, v[i]);
    }
    json_raw(o, "]");
}

static int member_cmp(const void *a, const void *b)
{
    const char *x = a, *y = b;
    return strcmp(x, y);
}

/* "members": etcd's Member JSON under the member's id in hex, keys in byte order. */
static int members_bucket(struct image *im)
{
    const struct srv_snap_image_config *cfg = im->cfg;
    char(*keys)[24] = calloc(cfg->members_count + 1, sizeof(*keys));
    if (keys == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < cfg->members_count; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%" PRIx64, cfg->members[i].id);
    }
    qsort(keys, cfg->members_count, sizeof(*keys), member_cmp);
    int rc = srv_bbolt_bucket_begin(im->w, "members", 7);
    for (size_t i = 0; rc == 0 && i < cfg->members_count; i++) {
        const struct srv_maint_member *m = NULL;
        for (size_t j = 0; j < cfg->members_count; j++) {
            char hex[24];
            snprintf(hex, sizeof(hex), "%" PRIx64, cfg->members[j].id);
            m = strcmp(hex, keys[i]) == 0 ? &cfg->members[j] : m;
        }
        char id[32];
        snprintf(id, sizeof(id), "{\"id\":%" PRIu64 ",", m->id);
        im->pb.len = 0;
        json_raw(&im->pb, id);
        json_list(&im->pb, "\"peerURLs\":", m->peer_urls, m->peer_urls_count);
        if (m->name != NULL && m->name[0] != '\0') {
            json_raw(&im->pb, ",\"name\":");
            json_str(&im->pb, m->name);
        }
        if (m->client_urls_count > 0) {
            json_raw(&im->pb, ",");
            json_list(&im->pb, "\"clientURLs\":", m->client_urls, m->client_urls_count);
        }
        json_raw(&im->pb, "}");
        rc = im->pb.oom ? LATCH_ENOMEM
                        : srv_bbolt_put(im->w, keys[i], strlen(keys[i]), im->pb.p, im->pb.len);
    }
    free(keys);
    return rc != 0 ? rc : srv_bbolt_bucket_end(im->w);
}

/* The small buckets after "key" and "lease": alarm, auth*, cluster, members, meta. */
static int small_buckets(struct image *im, const struct store_dump_info *di)
{
    int rc = srv_bbolt_bucket_begin(im->w, "alarm", 5);
    if (rc == 0 && di->alarm_nospace) {
        im->pb.len = 0;
        pb_int(&im->pb, 1, (int64_t)im->cfg->member_id);
        pb_int(&im->pb, 2, 1); /* etcdserverpb.AlarmType NOSPACE */
        rc = im->pb.oom ? LATCH_ENOMEM : srv_bbolt_put(im->w, im->pb.p, im->pb.len, NULL, 0);
    }
    rc = rc != 0 ? rc : srv_bbolt_bucket_end(im->w);
    /* etcd's auth store writes authRevision = 1 (big-endian) when it is created. */
    uint8_t auth_rev[8];
    be64(auth_rev, 1);
    rc = rc != 0 ? rc : srv_bbolt_bucket_begin(im->w, "auth", 4);
    rc = rc != 0 ? rc : srv_bbolt_put(im->w, "authRevision", 12, auth_rev, sizeof(auth_rev));
    rc = rc != 0 ? rc : srv_bbolt_bucket_end(im->w);
    rc = rc != 0 ? rc : empty_bucket(im->w, "authRoles");
    rc = rc != 0 ? rc : empty_bucket(im->w, "authUsers");
    rc = rc != 0 ? rc : srv_bbolt_bucket_begin(im->w, "cluster", 7);
    rc = rc != 0 ? rc : srv_bbolt_put(im->w, "clusterVersion", 14, "3.4.0", 5);
    rc = rc != 0 ? rc : srv_bbolt_bucket_end(im->w);
    rc = rc != 0 ? rc : members_bucket(im);
    rc = rc != 0 ? rc : empty_bucket(im->w, "members_removed");
    rc = rc != 0 ? rc : srv_bbolt_bucket_begin(im->w, "meta", 4);
    uint8_t ci[8], cr[17];
    be64(ci, di->applied_index);
    rev_key(cr, di->compact_revision, 0);
    rc = rc != 0 ? rc : srv_bbolt_put(im->w, "consistent_index", 16, ci, sizeof(ci));
    if (di->compact_revision > 0) {
        rc = rc != 0 ? rc : srv_bbolt_put(im->w, "finishedCompactRev", 18, cr, sizeof(cr));
        rc = rc != 0 ? rc : srv_bbolt_put(im->w, "scheduledCompactRev", 19, cr, sizeof(cr));
    }
    return rc != 0 ? rc : srv_bbolt_bucket_end(im->w);
}

int srv_snap_image_write(struct store_reader *r,
                         int fd,
                         const struct srv_snap_image_config *cfg,
                         struct srv_snap_image_info *info)
{
    struct image im = {.cfg = cfg, .info = info};
    struct store_dump_info di;
    memset(info, 0, sizeof(*info));
    int rc = srv_bbolt_new(fd, &im.w);
    if (rc != 0) {
        return rc;
    }
    struct store_dump_ops ops = {.begin = on_begin, .event = on_event, .lease = on_lease};
    rc = store_dump(r, &ops, &im, &di);
    rc = rc != 0 ? rc : lease_open(&im);
    rc = rc != 0 ? rc : srv_bbolt_bucket_end(im.w);
    rc = rc != 0 ? rc : small_buckets(&im, &di);
    rc = rc != 0 ? rc : srv_bbolt_finish(im.w, &info->size_bytes);
    srv_bbolt_free(im.w);
    free(im.pb.p);
    return rc;
}
