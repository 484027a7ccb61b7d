#include "latch_log.h"

#include <stdarg.h>
#include <stdio.h>

static latch_log_sink log_sink;
static void *log_sink_data;
static enum latch_log_level log_level = LATCH_LOG_INFO;

void latch_log_set_sink(latch_log_sink sink, void *data)
{
    log_sink = sink;
    log_sink_data = data;
}

void latch_log_set_level(enum latch_log_level level)
{
    LATCH_ASSERTF(level >= LATCH_LOG_DEBUG && level <= LATCH_LOG_OFF, "level %d", (int)level);
    log_level = level;
}

enum latch_log_level latch_log_get_level(void)
{
    return log_level;
}

bool latch_log_limit_hit(struct latch_log_limit *l,
                         uint64_t now_ms,
                         uint64_t interval_ms,
                         size_t *count)
{
    l->count++;
    if (l->last_ms != 0 && now_ms - l->last_ms < interval_ms) {
        return false;
    }
    *count = l->count;
    l->last_ms = now_ms == 0 ? 1 : now_ms; /* 0 means never */
    l->count = 0;
    return true;
}

const char *latch_log_level_name(enum latch_log_level level)
{
    switch (level) {
    case LATCH_LOG_DEBUG:
        return "DEBUG";
    case LATCH_LOG_INFO:
        return "INFO";
    case LATCH_LOG_WARN:
        return "WARN";
    case LATCH_LOG_ERROR:
        return "ERROR";
    case LATCH_LOG_OFF:
        return "OFF";
    }
    return "?";
}

void latch__log(enum latch_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log_sink != NULL) {
        log_sink(log_sink_data, level, line);
        return;
    }
    fprintf(stderr, "%s %s\n", latch_log_level_name(level), line);
}
