/*
 * latch_teeth.h — test-only fault switches ("teeth", issue 7 item 6).
 *
 * Each switch breaks one guarantee on purpose so that the Jepsen-style harness (jepsen/) can
 * show that the matching checker catches it. The code behind a switch is compiled only when
 * LATCH_TEETH is defined (CMake option LATCH_TEETH, on in Debug builds, never in release);
 * without it latch_teeth_on() is constant false and every guarded branch compiles away.
 *
 * latchd reads the environment variable LATCH_TEETH (comma-separated names, e.g.
 * "stale-read" or "watch-dup,watch-skip") once at start, before any thread or service exists,
 * and stores the bits with latch_teeth_set(); modules below server/ (store/) never read the
 * environment, they only test the flag. The flag is written once before threads start and
 * read afterwards, so it needs no synchronisation.
 */
#ifndef LATCH_TEETH_H
#define LATCH_TEETH_H

#include <stdbool.h>
#include <stddef.h>

enum latch_teeth_bug {
    LATCH_TEETH_STALE_READ = 1u << 0, /* linearizable Range served without ReadIndex */
    LATCH_TEETH_EARLY_ACK = 1u << 1,  /* Put answered at propose time, before commit */
    LATCH_TEETH_NO_FENCE = 1u << 2,   /* a FENCE compare always holds (store/) */
    LATCH_TEETH_WATCH_DUP = 1u << 3,  /* the watch hub sends one event twice now and then */
    LATCH_TEETH_WATCH_SKIP = 1u << 4, /* the watch hub drops one event now and then */
};

/*
 * Parses a comma-separated list of switch names into bits (*out). Returns 0, or
 * LATCH_EINVAL for an empty or unknown name (*out then unchanged). Available in every build,
 * so that a build without teeth can still name what it was asked for.
 */
int latch_teeth_parse(const char *spec, unsigned *out);

/* The name of one switch bit ("stale-read", ...), or "?". Static storage. */
const char *latch_teeth_name(unsigned bug);

/* The guarantee the switch breaks, for the loud start-up line. Static storage. */
const char *latch_teeth_breaks(unsigned bug);

/* Whether this build has the switches compiled in. */
bool latch_teeth_compiled(void);

#ifdef LATCH_TEETH
extern unsigned latch_teeth_bugs;

/* Sets the active switches; call once at start, before any thread. */
static inline void latch_teeth_set(unsigned bugs)
{
    latch_teeth_bugs = bugs;
}

static inline bool latch_teeth_on(unsigned bug)
{
    return (latch_teeth_bugs & bug) != 0;
}
#endif

#endif /* LATCH_TEETH_H */
