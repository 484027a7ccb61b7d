/*
 * latch_teeth.c — test-only fault switches (see latch_teeth.h).
 */
#include "latch_teeth.h"

#include <string.h>

#include "latch_error.h"

#ifdef LATCH_TEETH
unsigned latch_teeth_bugs;
#endif

static const struct {
    unsigned bug;
    const char *name;
    const char *breaks;
} teeth_table[] = {
    {LATCH_TEETH_STALE_READ, "stale-read", "linearizable reads (no ReadIndex)"},
    {LATCH_TEETH_EARLY_ACK, "early-ack",
     "durability and linearizability of Put (ack before commit)"},
    {LATCH_TEETH_NO_FENCE, "no-fence", "fencing (every FENCE compare holds)"},
    {LATCH_TEETH_WATCH_DUP, "watch-dup", "watch delivery (an event sent twice)"},
    {LATCH_TEETH_WATCH_SKIP, "watch-skip", "watch delivery (an event skipped)"},
};

#define TEETH_COUNT (sizeof(teeth_table) / sizeof(teeth_table[0]))

int latch_teeth_parse(const char *spec, unsigned *out)
{
    unsigned bugs = 0;
    const char *p = spec;
    if (spec == NULL || spec[0] == '\0') {
        return LATCH_EINVAL;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        bool known = false;
        for (size_t i = 0; i < TEETH_COUNT; i++) {
            if (strlen(teeth_table[i].name) == len && memcmp(teeth_table[i].name, p, len) == 0) {
                bugs |= teeth_table[i].bug;
                known = true;
            }
        }
        if (!known) {
            return LATCH_EINVAL;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *out = bugs;
    return 0;
}

const char *latch_teeth_name(unsigned bug)
{
    for (size_t i = 0; i < TEETH_COUNT; i++) {
        if (teeth_table[i].bug == bug) {
            return teeth_table[i].name;
        }
    }
    return "?";
}

const char *latch_teeth_breaks(unsigned bug)
{
    for (size_t i = 0; i < TEETH_COUNT; i++) {
        if (teeth_table[i].bug == bug) {
            return teeth_table[i].breaks;
        }
    }
    return "?";
}

bool latch_teeth_compiled(void)
{
#ifdef LATCH_TEETH
    return true;
#else
    return false;
#endif
}
