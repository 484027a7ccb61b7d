/*
 * latch_log.h — the logging hook shared by every module that may log.
 *
 * consensus/ never logs (it emits trace events to an injected tracer); server/ and tools log
 * through latch_log(), which checks the level before evaluating its arguments (redis
 * serverLog). The sink is process-wide and defaults to one line per event on stderr.
 */
#ifndef LATCH_LOG_H
#define LATCH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch_assert.h"

enum latch_log_level {
    LATCH_LOG_DEBUG = 0,
    LATCH_LOG_INFO = 1,
    LATCH_LOG_WARN = 2,
    LATCH_LOG_ERROR = 3,
    LATCH_LOG_OFF = 4,
};

/* Receives one formatted line (no trailing newline); msg is borrowed for the call only. */
typedef void (*latch_log_sink)(void *data, enum latch_log_level level, const char *msg);

/* Installs sink (NULL restores the stderr sink); data is passed back to it unchanged. */
void latch_log_set_sink(latch_log_sink sink, void *data);

/* Messages below level are dropped without formatting. Default: LATCH_LOG_INFO. */
void latch_log_set_level(enum latch_log_level level);
enum latch_log_level latch_log_get_level(void);

/*
 * A rate limit for one repeated log line (refused connections, say): latch_log_limit_hit()
 * counts an event and returns true at most once per interval_ms of now_ms (the caller's
 * clock, e.g. uv_now), setting *count to the events since the last true (this one included)
 * for the line to report. Zero-initialise it.
 */
struct latch_log_limit {
    uint64_t last_ms; /* now_ms of the last true (0: never) */
    size_t count;     /* events counted since */
};

bool latch_log_limit_hit(struct latch_log_limit *l,
                         uint64_t now_ms,
                         uint64_t interval_ms,
                         size_t *count);

/* Short upper-case name of level ("INFO"); never NULL. */
const char *latch_log_level_name(enum latch_log_level level);

LATCH_PRINTF(2, 3) void latch__log(enum latch_log_level level, const char *fmt, ...);

#define latch_log(level, ...)                                                                      \
    do {                                                                                           \
        if ((level) >= latch_log_get_level()) {                                                    \
            latch__log((level), __VA_ARGS__);                                                      \
        }                                                                                          \
    } while (0)

#endif /* LATCH_LOG_H */
