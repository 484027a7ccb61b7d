/*
 * raft_conf.c — membership changes: the entry encoding and the one definition of what a
 * change does to a configuration (thesis §4.1: one server at a time).
 *
 * Encoding of a RAFT_ENTRY_CONF entry (little endian):
 *   [0]      format version (1)
 *   [1]      enum raft_conf_change_type
 *   [2..9]   node id
 *   [10..13] context length
 *   [14..]   context bytes
 */
#include <string.h>

#include "raft_int.h"

#define CC_VERSION      1u
#define CC_HEADER_BYTES 14u

size_t raft_conf_change_size(const struct raft_conf_change *cc)
{
    return CC_HEADER_BYTES + cc->context_len;
}

static bool cc_type_valid(uint32_t type)
{
    return type >= RAFT_CC_ADD_VOTER && type <= RAFT_CC_UPDATE;
}

int raft_conf_change_encode(const struct raft_conf_change *cc,
                            uint8_t *buf,
                            size_t buf_size,
                            size_t *len_out)
{
    size_t need;
    unsigned k;

    if (!cc_type_valid(cc->type) || cc->node == RAFT_NONE ||
        cc->context_len > RAFT_CONF_CONTEXT_BYTES_MAX ||
        (cc->context_len > 0 && cc->context == NULL)) {
        return LATCH_EINVAL;
    }
    need = raft_conf_change_size(cc);
    if (buf_size < need) {
        return LATCH_ETOOBIG;
    }
    buf[0] = (uint8_t)CC_VERSION;
    buf[1] = (uint8_t)cc->type;
    for (k = 0; k < 8; k++) {
        buf[2 + k] = (uint8_t)(cc->node >> (8 * k));
    }
    for (k = 0; k < 4; k++) {
        buf[10 + k] = (uint8_t)(cc->context_len >> (8 * k));
    }
    if (cc->context_len > 0) {
        memcpy(buf + CC_HEADER_BYTES, cc->context, cc->context_len);
    }
    *len_out = need;
    return 0;
}

int raft_conf_change_decode(const uint8_t *data, size_t len, struct raft_conf_change *cc)
{
    uint32_t ctx_len = 0;
    raft_id node = 0;
    unsigned k;

    if (data == NULL || len < CC_HEADER_BYTES || data[0] != CC_VERSION || !cc_type_valid(data[1])) {
        return LATCH_EINVAL;
    }
    for (k = 0; k < 8; k++) {
        node |= (raft_id)data[2 + k] << (8 * k);
    }
    for (k = 0; k < 4; k++) {
        ctx_len |= (uint32_t)data[10 + k] << (8 * k);
    }
    if (node == RAFT_NONE || ctx_len > RAFT_CONF_CONTEXT_BYTES_MAX ||
        (size_t)ctx_len != len - CC_HEADER_BYTES) {
        return LATCH_EINVAL;
    }
    cc->type = data[1];
    cc->node = node;
    cc->context_len = ctx_len;
    cc->context = ctx_len > 0 ? data + CC_HEADER_BYTES : NULL;
    return 0;
}

static int id_find(const raft_id *ids, uint32_t count, raft_id id)
{
    uint32_t i;

    for (i = 0; i < count; i++) {
        if (ids[i] == id) {
            return (int)i;
        }
    }
    return -1;
}

bool raft_conf_state_is_voter(const struct raft_conf_state *conf, raft_id id)
{
    return id_find(conf->voters, conf->voters_count, id) >= 0;
}

bool raft_conf_state_is_learner(const struct raft_conf_state *conf, raft_id id)
{
    return id_find(conf->learners, conf->learners_count, id) >= 0;
}

static void id_remove(raft_id *ids, uint32_t *count, int at)
{
    LATCH_ASSERT(at >= 0 && (uint32_t)at < *count);
    ids[at] = ids[*count - 1];
    (*count)--;
}

int raft_conf_state_apply(struct raft_conf_state *conf, const struct raft_conf_change *cc)
{
    int v = id_find(conf->voters, conf->voters_count, cc->node);
    int l = id_find(conf->learners, conf->learners_count, cc->node);

    LATCH_ASSERT(conf->voters_count <= RAFT_MEMBERS_MAX);
    LATCH_ASSERT(conf->learners_count <= RAFT_MEMBERS_MAX);
    if (cc->node == RAFT_NONE) {
        return LATCH_EINVAL;
    }
    switch (cc->type) {
    case RAFT_CC_ADD_VOTER:
    case RAFT_CC_ADD_LEARNER: {
        bool voter = cc->type == RAFT_CC_ADD_VOTER;
        uint32_t *count = voter ? &conf->voters_count : &conf->learners_count;

        if (v >= 0 || l >= 0 || *count == RAFT_MEMBERS_MAX) {
            return LATCH_EINVAL;
        }
        (voter ? conf->voters : conf->learners)[(*count)++] = cc->node;
        return 0;
    }
    case RAFT_CC_PROMOTE:
        if (l < 0 || conf->voters_count == RAFT_MEMBERS_MAX) {
            return LATCH_EINVAL;
        }
        id_remove(conf->learners, &conf->learners_count, l);
        conf->voters[conf->voters_count++] = cc->node;
        return 0;
    case RAFT_CC_REMOVE:
        if (v >= 0) {
            id_remove(conf->voters, &conf->voters_count, v);
        } else if (l >= 0) {
            id_remove(conf->learners, &conf->learners_count, l);
        } else {
            return LATCH_EINVAL;
        }
        return 0;
    case RAFT_CC_UPDATE:
        /* The configuration stays; the entry exists for its context (the server's member
         * attributes), ordered with the other changes. */
        return v >= 0 || l >= 0 ? 0 : LATCH_EINVAL;
    default:
        return LATCH_EINVAL;
    }
}
