/*
 * identity.c — the member's identity file and joining an existing cluster (identity.h).
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "grpc_client.h"
#include "latch/raft/raft.pb-c.h"
#include "latch_error.h"

#define IDENTITY_BYTES_MAX 4096

static int fail(char *errmsg, size_t cap, int rv, const char *fmt, const char *a, const char *b)
{
    if (errmsg != NULL && cap > 0) {
        snprintf(errmsg, cap, fmt, a, b);
    }
    return rv;
}

static bool parse_hex(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || s[0] == '\0' || s[0] == '-') {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno != 0 || (*end != '\0' && *end != ' ' && *end != '\n')) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* One "key value" line into id. False: malformed. */
static bool parse_line(char *line, struct srv_identity *id, int *seen)
{
    char *sp = strchr(line, ' ');
    if (sp == NULL) {
        return false;
    }
    *sp = '\0';
    char *v = sp + 1;
    if (strcmp(line, "latch-identity") == 0) {
        *seen |= strcmp(v, "1") == 0 ? 1 : 0;
        return strcmp(v, "1") == 0;
    }
    if (strcmp(line, "cluster-id") == 0) {
        *seen |= 2;
        return parse_hex(v, &id->cluster_id) && id->cluster_id != 0;
    }
    if (strcmp(line, "member-id") == 0) {
        *seen |= 4;
        return parse_hex(v, &id->member_id) && id->member_id != 0;
    }
    if (strcmp(line, "name") == 0) {
        if (strlen(v) > SRV_MEMBER_NAME_MAX) {
            return false;
        }
        strcpy(id->name, v);
        return true;
    }
    if (strcmp(line, "bootstrap") == 0) {
        for (char *tok = strtok(v, " "); tok != NULL; tok = strtok(NULL, " ")) {
            if (id->bootstrap_count == RAFT_MEMBERS_MAX ||
                !parse_hex(tok, &id->bootstrap[id->bootstrap_count])) {
                return false;
            }
            id->bootstrap_count++;
        }
        return true;
    }
    return true; /* unknown keys of a later version are ignored */
}

int srv_identity_load(const char *dir, struct srv_identity *id, char *errmsg, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, SRV_IDENTITY_FILE);
    memset(id, 0, sizeof(*id));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return errno == ENOENT ? LATCH_ENOTFOUND
                               : fail(errmsg, cap, LATCH_EIO, "%s: %s", path, strerror(errno));
    }
    char buf[IDENTITY_BYTES_MAX + 1];
    size_t n = fread(buf, 1, IDENTITY_BYTES_MAX, f);
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        return fail(errmsg, cap, LATCH_EIO, "%s: %s", path, "read error");
    }
    buf[n] = '\0';
    int seen = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (!parse_line(line, id, &seen)) {
            return fail(errmsg, cap, LATCH_ECORRUPT, "%s: malformed line \"%s\"", path, line);
        }
    }
    if (seen != 7) {
        return fail(errmsg, cap, LATCH_ECORRUPT, "%s: %s", path,
                    "incomplete (needs latch-identity 1, cluster-id, member-id)");
    }
    return 0;
}

int srv_identity_save(const char *dir, const struct srv_identity *id, char *errmsg, size_t cap)
{
    char path[4096];
    char tmp[4096];
    char text[IDENTITY_BYTES_MAX];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return fail(errmsg, cap, LATCH_EIO, "%s: %s", dir, strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/%s", dir, SRV_IDENTITY_FILE);
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, SRV_IDENTITY_FILE);
    int len = snprintf(text, sizeof(text),
                       "latch-identity 1\ncluster-id %016" PRIx64 "\nmember-id %016" PRIx64
                       "\nname %s\nbootstrap",
                       id->cluster_id, id->member_id, id->name);
    for (size_t i = 0; i < id->bootstrap_count && len > 0 && (size_t)len < sizeof(text); i++) {
        len += snprintf(text + len, sizeof(text) - (size_t)len, " %016" PRIx64, id->bootstrap[i]);
    }
    if (len <= 0 || (size_t)len + 2 > sizeof(text)) {
        return fail(errmsg, cap, LATCH_EIO, "%s: %s", path, "identity too long");
    }
    text[len++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return fail(errmsg, cap, LATCH_EIO, "%s: %s", tmp, strerror(errno));
    }
    bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        return fail(errmsg, cap, LATCH_EIO, "%s: %s", path, strerror(errno));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Takes the answer of one member into id and members. */
static int join_take(const Latch__Raft__V1__MembersResponse *r,
                     const char *const *own_urls,
                     size_t own_urls_count,
                     struct srv_identity *id,
                     struct srv_members *members)
{
    srv_members_init(members);
    id->cluster_id = r->cluster_id;
    id->member_id = 0;
    id->bootstrap_count = 0;
    for (size_t i = 0; i < r->n_bootstrap_voters && i < RAFT_MEMBERS_MAX; i++) {
        id->bootstrap[id->bootstrap_count++] = r->bootstrap_voters[i];
    }
    for (size_t i = 0; i < r->n_members; i++) {
        const Latch__Raft__V1__Member *m = r->members[i];
        struct srv_member_attrs a = {.name = m->name,
                                     .peer_urls = (const char *const *)m->peer_urls,
                                     .peer_urls_count = m->n_peer_urls};
        if (srv_members_add(members, m->id, m->is_learner, &a) != 0) {
            return LATCH_EPROTO;
        }
        for (size_t k = 0; k < m->n_peer_urls; k++) {
            for (size_t j = 0; j < own_urls_count; j++) {
                if (strcmp(m->peer_urls[k], own_urls[j]) == 0) {
                    id->member_id = m->id;
                }
            }
        }
    }
    return r->cluster_id != 0 && id->bootstrap_count > 0 ? 0 : LATCH_EPROTO;
}

int srv_identity_join(const char *const *peer_urls,
                      size_t peer_urls_count,
                      struct api_tls_ctx *tls,
                      const char *const *own_urls,
                      size_t own_urls_count,
                      uint64_t timeout_ms,
                      struct srv_identity *id,
                      struct srv_members *members,
                      char *errmsg,
                      size_t cap)
{
    int rv = LATCH_EUNAVAILABLE;
    fail(errmsg, cap, rv, "%s%s", "no member of --initial-cluster answered", "");
    for (size_t i = 0; i < peer_urls_count; i++) {
        struct api_channel_config cc = {
            .endpoints = &peer_urls[i], .endpoints_count = 1, .tls = tls};
        struct api_blocking *b = NULL;
        char why[256] = "";
        if (api_blocking_connect(&cc, timeout_ms, &b, why, sizeof(why)) != 0) {
            fail(errmsg, cap, rv, "cannot reach %s: %s", peer_urls[i], why);
            continue;
        }
        struct api_call_opts opts = {.timeout_ms = timeout_ms};
        int status = -1;
        char *message = NULL;
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        Latch__Raft__V1__MembersRequest req = LATCH__RAFT__V1__MEMBERS_REQUEST__INIT;
        uint8_t buf[8];
        size_t len = protobuf_c_message_pack(&req.base, buf);
        int rc = api_blocking_unary(b, "/latch.raft.v1.Raft/Members", buf, len, &opts, &status,
                                    &message, &resp, &resp_len);
        api_blocking_free(b);
        Latch__Raft__V1__MembersResponse *r =
            rc == 0 && status == 0 ? latch__raft__v1__members_response__unpack(NULL, resp_len, resp)
                                   : NULL;
        if (r == NULL) {
            fail(errmsg, cap, rv, "%s: Members failed: %s", peer_urls[i],
                 message != NULL ? message : "no answer");
        } else {
            rc = join_take(r, own_urls, own_urls_count, id, members);
            latch__raft__v1__members_response__free_unpacked(r, NULL);
        }
        free(message);
        free(resp);
        if (r == NULL) {
            continue;
        }
        if (rc != 0) {
            fail(errmsg, cap, rc, "%s: %s", peer_urls[i], "malformed member list");
            continue;
        }
        if (id->member_id == 0) {
            return fail(errmsg, cap, LATCH_ENOTMEMBER,
                        "this member's peer URLs (%s%s) are not in the cluster's member list: "
                        "add it first (etcdctl member add)",
                        own_urls_count > 0 ? own_urls[0] : "", own_urls_count > 1 ? ", ..." : "");
        }
        return 0;
    }
    return rv;
}
