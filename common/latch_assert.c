#include "latch_assert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static latch_assert_handler assert_handler;

void latch_assert_set_handler(latch_assert_handler handler)
{
    assert_handler = handler;
}

static LATCH_NORETURN void
assert_fail_detail(const char *file, int line, const char *expr, const char *detail)
{
    if (assert_handler != NULL) {
        assert_handler(file, line, expr, detail);
    }
    fprintf(stderr, "%s:%d: assertion failed: %s%s%s\n", file, line, expr,
            detail[0] != '\0' ? ": " : "", detail);
    fflush(stderr);
    abort();
}

void latch__assert_fail(const char *file, int line, const char *expr)
{
    assert_fail_detail(file, line, expr, "");
}

void latch__assert_failf(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    assert_fail_detail(file, line, expr, detail);
}
