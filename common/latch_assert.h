/*
 * latch_assert.h — assertions that stay on in every build.
 *
 * LATCH_ASSERT guards safety invariants (terms rise, commit never regresses, one leader per
 * term, increasing fencing tokens): a crash costs liveness, a violated invariant costs
 * safety, so they are never compiled out. LATCH_DASSERT is for expensive whole-object checks
 * and is compiled only when LATCH_DEBUG_CHECKS is defined (debug and simulation builds).
 *
 * A failed assertion calls the handler installed with latch_assert_set_handler() (cmocka
 * tests install one that calls mock_assert(), so expect_assert_failure() works without
 * recompiling the library), then prints the location and aborts.
 */
#ifndef LATCH_ASSERT_H
#define LATCH_ASSERT_H

#if defined(__GNUC__)
#define LATCH_NORETURN     __attribute__((noreturn))
#define LATCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LATCH_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define LATCH_LIKELY(x)    __builtin_expect(!!(x), 1)
#else
#define LATCH_NORETURN
#define LATCH_PRINTF(f, a)
#define LATCH_UNLIKELY(x) (x)
#define LATCH_LIKELY(x)   (x)
#endif

#define LATCH_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/*
 * Called with the failing expression and a formatted detail ("" when none). A handler that
 * returns is followed by abort(); a test handler leaves with longjmp (cmocka).
 */
typedef void (*latch_assert_handler)(const char *file,
                                     int line,
                                     const char *expr,
                                     const char *detail);

/* Installs handler for the whole process; NULL restores the default (print, abort). */
void latch_assert_set_handler(latch_assert_handler handler);

LATCH_NORETURN void latch__assert_fail(const char *file, int line, const char *expr);
LATCH_NORETURN LATCH_PRINTF(4, 5) void latch__assert_failf(
    const char *file, int line, const char *expr, const char *fmt, ...);

#define LATCH_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (LATCH_UNLIKELY(!(cond))) {                                                             \
            latch__assert_fail(__FILE__, __LINE__, #cond);                                         \
        }                                                                                          \
    } while (0)

/* Like LATCH_ASSERT, and prints the values involved (printf format) when it fails. */
#define LATCH_ASSERTF(cond, ...)                                                                   \
    do {                                                                                           \
        if (LATCH_UNLIKELY(!(cond))) {                                                             \
            latch__assert_failf(__FILE__, __LINE__, #cond, __VA_ARGS__);                           \
        }                                                                                          \
    } while (0)

#ifdef LATCH_DEBUG_CHECKS
#define LATCH_DASSERT(cond) LATCH_ASSERT(cond)
#else
#define LATCH_DASSERT(cond) ((void)0)
#endif

/* Marks code that must never run (an impossible switch arm). */
#define LATCH_UNREACHABLE() latch__assert_fail(__FILE__, __LINE__, "unreachable")

#endif /* LATCH_ASSERT_H */
