/*
 * metrics.c — the registry, series updates and the text exposition format 0.0.4.
 *
 * Layout: a registry holds a singly linked list of families (append order is render
 * order). A family owns an array of series pointers (at most SRV_METRICS_LABEL_VALUES_MAX
 * for a labelled family, exactly one for an unlabelled one) and, when labelled, a series
 * for "other" allocated at registration so that srv_metric_series() never fails; "other" is
 * rendered only once something was counted under it. A histogram series keeps one count
 * per bucket (not cumulative); rendering sums them up.
 */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "latch_error.h"
#include "latch_log.h"

struct srv_series {
    struct srv_metric *metric;
    char *label_value; /* NULL for an unlabelled family */
    uint32_t hash;
    bool used; /* rendered; false only for an "other" series nothing was counted under */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;
    double sum;         /* histograms */
    uint64_t count;     /* histograms */
    uint64_t buckets[]; /* histograms: observations per bucket, bounds_count entries */
};

struct srv_metric {
    struct srv_metric *next;
    enum srv_metric_type type;
    char *name;
    char *help;
    char *label_name; /* NULL when unlabelled */
    double bounds[SRV_METRICS_BUCKETS_MAX];
    size_t bounds_count;
    struct srv_series **series;
    size_t series_count;
    size_t series_cap;
    struct srv_series *other; /* labelled families only */
};

struct srv_metrics_hook {
    srv_metrics_hook_fn fn;
    void *data;
};

struct srv_metrics {
    struct srv_metric *head;
    struct srv_metric *tail;
    struct srv_metrics_hook hooks[SRV_METRICS_HOOKS_MAX];
    size_t hooks_count;
};

/* ---- buffer --------------------------------------------------------------------------- */

void srv_buf_init(struct srv_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void srv_buf_close(struct srv_buf *b)
{
    free(b->data);
    srv_buf_init(b);
}

int srv_buf_reserve(struct srv_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return LATCH_ENOMEM;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int srv_buf_append(struct srv_buf *b, const void *p, size_t n)
{
    int rv = srv_buf_reserve(b, n);
    if (rv != 0) {
        return rv;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int srv_buf_printf(struct srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return LATCH_ENOMEM;
    }
    int rv = srv_buf_reserve(b, (size_t)n);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* ---- registration --------------------------------------------------------------------- */

static uint32_t label_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    return h;
}

static bool name_char_ok(char ch, bool first, bool colon)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
        return true;
    }
    if (colon && ch == ':') {
        return true;
    }
    return !first && ch >= '0' && ch <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*, no "__". */
static bool name_valid(const char *name, bool metric)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > SRV_METRICS_NAME_MAX) {
        return false;
    }
    if (!metric && name[0] == '_' && name[1] == '_') {
        return false;
    }
    for (size_t i = 0; name[i] != '\0'; i++) {
        if (!name_char_ok(name[i], i == 0, metric)) {
            return false;
        }
    }
    return true;
}

static struct srv_series *series_new(struct srv_metric *m, const char *label_value)
{
    size_t nb = m->type == SRV_METRIC_HISTOGRAM ? m->bounds_count : 0;
    struct srv_series *s = calloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));
    if (s == NULL) {
        return NULL;
    }
    s->metric = m;
    s->used = true;
    if (label_value != NULL) {
        s->label_value = strdup(label_value);
        if (s->label_value == NULL) {
            free(s);
            return NULL;
        }
        s->hash = label_hash(label_value);
    }
    return s;
}

static void series_free(struct srv_series *s)
{
    if (s != NULL) {
        free(s->label_value);
        free(s);
    }
}

static void metric_free(struct srv_metric *m)
{
    for (size_t i = 0; i < m->series_count; i++) {
        series_free(m->series[i]);
    }
    free(m->series);
    series_free(m->other);
    free(m->name);
    free(m->help);
    free(m->label_name);
    free(m);
}

int srv_metrics_new(struct srv_metrics **out)
{
    struct srv_metrics *reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
        return LATCH_ENOMEM;
    }
    *out = reg;
    return 0;
}

void srv_metrics_free(struct srv_metrics *reg)
{
    if (reg == NULL) {
        return;
    }
    struct srv_metric *m = reg->head;
    while (m != NULL) {
        struct srv_metric *next = m->next;
        metric_free(m);
        m = next;
    }
    free(reg);
}

static struct srv_metric *metric_find(struct srv_metrics *reg, const char *name)
{
    for (struct srv_metric *m = reg->head; m != NULL; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            return m;
        }
    }
    return NULL;
}

/* Allocates the family's strings and its first series (the unlabelled one, or "other"). */
static int metric_setup(struct srv_metric *m, const char *name, const char *help, const char *label)
{
    m->name = strdup(name);
    m->help = strdup(help != NULL ? help : "");
    if (m->name == NULL || m->help == NULL) {
        return LATCH_ENOMEM;
    }
    if (label != NULL) {
        m->label_name = strdup(label);
        m->other = m->label_name != NULL ? series_new(m, SRV_METRICS_LABEL_OTHER) : NULL;
        if (m->other == NULL) {
            return LATCH_ENOMEM;
        }
        m->other->used = false;
        return 0;
    }
    m->series = calloc(1, sizeof(*m->series));
    if (m->series == NULL) {
        return LATCH_ENOMEM;
    }
    m->series_cap = 1;
    m->series[0] = series_new(m, NULL);
    if (m->series[0] == NULL) {
        return LATCH_ENOMEM;
    }
    m->series_count = 1;
    return 0;
}

static int metric_add(struct srv_metrics *reg,
                      enum srv_metric_type type,
                      const char *name,
                      const char *help,
                      const char *label_name,
                      const double *bounds,
                      size_t bounds_count,
                      struct srv_metric **out)
{
    if (!name_valid(name, true) || (label_name != NULL && !name_valid(label_name, false))) {
        return LATCH_EINVAL;
    }
    if (metric_find(reg, name) != NULL) {
        return LATCH_EEXIST;
    }
    struct srv_metric *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return LATCH_ENOMEM;
    }
    m->type = type;
    m->bounds_count = bounds_count;
    if (bounds_count > 0) {
        memcpy(m->bounds, bounds, bounds_count * sizeof(bounds[0]));
    }
    int rv = metric_setup(m, name, help, label_name);
    if (rv != 0) {
        metric_free(m);
        return rv;
    }
    if (reg->tail != NULL) {
        reg->tail->next = m;
    } else {
        reg->head = m;
    }
    reg->tail = m;
    if (out != NULL) {
        *out = m;
    }
    return 0;
}

int srv_metrics_register(struct srv_metrics *reg,
                         enum srv_metric_type type,
                         const char *name,
                         const char *help,
                         const char *label_name,
                         struct srv_metric **out)
{
    if (type != SRV_METRIC_COUNTER && type != SRV_METRIC_COUNTER_FLOAT &&
        type != SRV_METRIC_GAUGE && type != SRV_METRIC_GAUGE_FLOAT) {
        return LATCH_EINVAL;
    }
    return metric_add(reg, type, name, help, label_name, NULL, 0, out);
}

int srv_metrics_register_histogram(struct srv_metrics *reg,
                                   const char *name,
                                   const char *help,
                                   const char *label_name,
                                   const double *bounds,
                                   size_t bounds_count,
                                   struct srv_metric **out)
{
    if (bounds == NULL || bounds_count == 0 || bounds_count > SRV_METRICS_BUCKETS_MAX) {
        return LATCH_EINVAL;
    }
    for (size_t i = 0; i < bounds_count; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            return LATCH_EINVAL;
        }
    }
    if (label_name != NULL && strcmp(label_name, "le") == 0) {
        return LATCH_EINVAL;
    }
    return metric_add(reg, SRV_METRIC_HISTOGRAM, name, help, label_name, bounds, bounds_count, out);
}

int srv_metrics_add_hook(struct srv_metrics *reg, srv_metrics_hook_fn hook, void *data)
{
    if (reg->hooks_count == SRV_METRICS_HOOKS_MAX) {
        return LATCH_ETOOBIG;
    }
    reg->hooks[reg->hooks_count].fn = hook;
    reg->hooks[reg->hooks_count].data = data;
    reg->hooks_count++;
    return 0;
}

/* ---- updates -------------------------------------------------------------------------- */

static struct srv_series *metric_other(struct srv_metric *m)
{
    m->other->used = true;
    return m->other;
}

struct srv_series *srv_metric_series(struct srv_metric *m, const char *label_value)
{
    LATCH_ASSERTF((label_value == NULL) == (m->label_name == NULL), "metric %s label %s", m->name,
                  label_value != NULL ? label_value : "(none)");
    if (label_value == NULL) {
        return m->series[0];
    }
    if (strlen(label_value) > SRV_METRICS_LABEL_VALUE_MAX) {
        return metric_other(m);
    }
    uint32_t h = label_hash(label_value);
    for (size_t i = 0; i < m->series_count; i++) {
        if (m->series[i]->hash == h && strcmp(m->series[i]->label_value, label_value) == 0) {
            return m->series[i];
        }
    }
    if (strcmp(label_value, SRV_METRICS_LABEL_OTHER) == 0 ||
        m->series_count == SRV_METRICS_LABEL_VALUES_MAX) {
        return metric_other(m);
    }
    if (m->series_count == m->series_cap) {
        size_t cap = m->series_cap == 0 ? 8 : m->series_cap * 2;
        struct srv_series **p = realloc(m->series, cap * sizeof(*p));
        if (p == NULL) {
            return metric_other(m);
        }
        m->series = p;
        m->series_cap = cap;
    }
    struct srv_series *s = series_new(m, label_value);
    if (s == NULL) {
        return metric_other(m);
    }
    m->series[m->series_count++] = s;
    return s;
}

#define SERIES_IS(s, t)                                                                            \
    LATCH_ASSERTF((s)->metric->type == (t), "metric %s has type %d", (s)->metric->name,            \
                  (int)(s)->metric->type)

void srv_counter_inc(struct srv_series *s)
{
    SERIES_IS(s, SRV_METRIC_COUNTER);
    s->v.u++;
}

void srv_counter_add(struct srv_series *s, uint64_t n)
{
    SERIES_IS(s, SRV_METRIC_COUNTER);
    s->v.u += n;
}

uint64_t srv_counter_value(const struct srv_series *s)
{
    SERIES_IS(s, SRV_METRIC_COUNTER);
    return s->v.u;
}

void srv_counter_add_float(struct srv_series *s, double n)
{
    SERIES_IS(s, SRV_METRIC_COUNTER_FLOAT);
    if (n > 0) {
        s->v.f += n;
    }
}

void srv_counter_set_float(struct srv_series *s, double v)
{
    SERIES_IS(s, SRV_METRIC_COUNTER_FLOAT);
    s->v.f = v;
}

void srv_gauge_set(struct srv_series *s, int64_t v)
{
    SERIES_IS(s, SRV_METRIC_GAUGE);
    s->v.i = v;
}

void srv_gauge_add(struct srv_series *s, int64_t delta)
{
    SERIES_IS(s, SRV_METRIC_GAUGE);
    s->v.i += delta;
}

int64_t srv_gauge_value(const struct srv_series *s)
{
    SERIES_IS(s, SRV_METRIC_GAUGE);
    return s->v.i;
}

void srv_gauge_set_float(struct srv_series *s, double v)
{
    SERIES_IS(s, SRV_METRIC_GAUGE_FLOAT);
    s->v.f = v;
}

void srv_histogram_observe(struct srv_series *s, double v)
{
    SERIES_IS(s, SRV_METRIC_HISTOGRAM);
    const struct srv_metric *m = s->metric;
    for (size_t i = 0; i < m->bounds_count; i++) {
        if (v <= m->bounds[i]) {
            s->buckets[i]++;
            break;
        }
    }
    s->count++;
    s->sum += v;
}

uint64_t srv_histogram_count(const struct srv_series *s)
{
    SERIES_IS(s, SRV_METRIC_HISTOGRAM);
    return s->count;
}

/* ---- rendering ------------------------------------------------------------------------ */

/* A sticky-error writer: after the first failure every call is a no-op. */
struct writer {
    struct srv_buf *b;
    int err;
};

static void w_put(struct writer *w, const char *s, size_t n)
{
    if (w->err == 0) {
        w->err = srv_buf_append(w->b, s, n);
    }
}

static void w_str(struct writer *w, const char *s)
{
    w_put(w, s, strlen(s));
}

/* Escapes backslash and newline (HELP text), and double quotes too when quote is set
 * (label values), as the text format asks. */
static void w_escaped(struct writer *w, const char *s, bool quote)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (quote && *s == '"') {
            esc = "\\\"";
        }
        if (esc != NULL) {
            w_put(w, run, (size_t)(s - run));
            w_str(w, esc);
            run = s + 1;
        }
    }
    w_put(w, run, (size_t)(s - run));
}

/*
 * The shortest text that reads back as v, laid out as Go's strconv.FormatFloat(v, 'g', -1,
 * 64) does (what Prometheus' own clients print): exponent form only when the decimal
 * exponent is below -4 or at least 6, so 10 is "10", 1e6 is "1e+06", 0.0005 is "0.0005".
 */
static void format_double(double v, char *out, size_t cap)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    int digits = 17;
    for (int d = 1; d <= 17; d++) {
        snprintf(out, cap, "%.*e", d - 1, v);
        if (strtod(out, NULL) == v) {
            digits = d;
            break;
        }
    }
    snprintf(out, cap, "%.*e", digits - 1, v);
    const char *e = strchr(out, 'e');
    int exp = e != NULL ? atoi(e + 1) : 0;
    if (exp < -4 || exp >= 6) {
        return;
    }
    int decimals = digits - 1 - exp;
    snprintf(out, cap, "%.*f", decimals > 0 ? decimals : 0, v);
}

static void w_double(struct writer *w, double v)
{
    char tmp[40];
    format_double(v, tmp, sizeof(tmp));
    w_str(w, tmp);
}

static void w_u64(struct writer *w, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    w_str(w, tmp);
}

/* name[suffix][{label="value"[,le="bound"]}] followed by a space. le may be NULL. */
static void
w_sample_name(struct writer *w, const struct srv_series *s, const char *suffix, const char *le)
{
    const struct srv_metric *m = s->metric;
    w_str(w, m->name);
    w_str(w, suffix);
    if (m->label_name != NULL || le != NULL) {
        w_str(w, "{");
        if (m->label_name != NULL) {
            w_str(w, m->label_name);
            w_str(w, "=\"");
            w_escaped(w, s->label_value, true);
            w_str(w, le != NULL ? "\"," : "\"");
        }
        if (le != NULL) {
            w_str(w, "le=\"");
            w_str(w, le);
            w_str(w, "\"");
        }
        w_str(w, "}");
    }
    w_str(w, " ");
}

static void w_histogram(struct writer *w, const struct srv_series *s)
{
    const struct srv_metric *m = s->metric;
    uint64_t cumulative = 0;
    char le[40];
    for (size_t i = 0; i < m->bounds_count; i++) {
        cumulative += s->buckets[i];
        format_double(m->bounds[i], le, sizeof(le));
        w_sample_name(w, s, "_bucket", le);
        w_u64(w, cumulative);
        w_str(w, "\n");
    }
    w_sample_name(w, s, "_bucket", "+Inf");
    w_u64(w, s->count);
    w_str(w, "\n");
    w_sample_name(w, s, "_sum", NULL);
    w_double(w, s->sum);
    w_str(w, "\n");
    w_sample_name(w, s, "_count", NULL);
    w_u64(w, s->count);
    w_str(w, "\n");
}

static void w_series(struct writer *w, const struct srv_series *s)
{
    if (!s->used) {
        return;
    }
    switch (s->metric->type) {
    case SRV_METRIC_COUNTER:
        w_sample_name(w, s, "", NULL);
        w_u64(w, s->v.u);
        break;
    case SRV_METRIC_GAUGE: {
        char tmp[24];
        snprintf(tmp, sizeof(tmp), "%" PRId64, s->v.i);
        w_sample_name(w, s, "", NULL);
        w_str(w, tmp);
        break;
    }
    case SRV_METRIC_COUNTER_FLOAT:
    case SRV_METRIC_GAUGE_FLOAT:
        w_sample_name(w, s, "", NULL);
        w_double(w, s->v.f);
        break;
    case SRV_METRIC_HISTOGRAM:
        w_histogram(w, s);
        return;
    }
    w_str(w, "\n");
}

static const char *type_name(enum srv_metric_type type)
{
    switch (type) {
    case SRV_METRIC_COUNTER:
    case SRV_METRIC_COUNTER_FLOAT:
        return "counter";
    case SRV_METRIC_GAUGE:
    case SRV_METRIC_GAUGE_FLOAT:
        return "gauge";
    case SRV_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

int srv_metrics_render(struct srv_metrics *reg, struct srv_buf *buf)
{
    for (size_t i = 0; i < reg->hooks_count; i++) {
        reg->hooks[i].fn(reg->hooks[i].data);
    }
    struct writer w = {.b = buf, .err = 0};
    for (const struct srv_metric *m = reg->head; m != NULL; m = m->next) {
        w_str(&w, "# HELP ");
        w_str(&w, m->name);
        w_str(&w, " ");
        w_escaped(&w, m->help, false);
        w_str(&w, "\n# TYPE ");
        w_str(&w, m->name);
        w_str(&w, " ");
        w_str(&w, type_name(m->type));
        w_str(&w, "\n");
        for (size_t i = 0; i < m->series_count; i++) {
            w_series(&w, m->series[i]);
        }
        if (m->other != NULL) {
            w_series(&w, m->other);
        }
    }
    return w.err;
}

/* ---- the standard set ----------------------------------------------------------------- */

/* Process start time in seconds since the epoch: boot time (/proc/stat btime) plus the
 * process's start in clock ticks after boot (/proc/self/stat field 22), as Prometheus'
 * own clients compute it. Falls back to now when /proc cannot be read. */
static double process_start_time(void)
{
    double fallback = (double)time(NULL);
    unsigned long long btime = 0;
    unsigned long long start_ticks = 0;
    char line[512];
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return fallback;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "btime %llu", &btime) == 1) {
            break;
        }
    }
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (f == NULL) {
        return fallback;
    }
    char *got = fgets(line, sizeof(line), f);
    fclose(f);
    char *p = got != NULL ? strrchr(line, ')') : NULL;
    /* After "(comm)" come fields 3 (state) .. 22 (starttime): skip 19 fields. */
    for (int field = 0; p != NULL && field < 20; field++) {
        p = strchr(p + 1, ' ');
    }
    long tck = sysconf(_SC_CLK_TCK);
    if (p == NULL || btime == 0 || tck <= 0 || sscanf(p, " %llu", &start_ticks) != 1) {
        return fallback;
    }
    return (double)btime + (double)start_ticks / (double)tck;
}

static void process_hook(void *data)
{
    struct srv_metrics_std *std = data;
    unsigned long long size_pages = 0;
    unsigned long long rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &size_pages, &rss_pages) == 2) {
            long page = sysconf(_SC_PAGESIZE);
            srv_gauge_set(std->process_resident_memory_bytes,
                          (int64_t)(rss_pages * (unsigned long long)(page > 0 ? page : 4096)));
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        srv_counter_set_float(std->process_cpu_seconds, cpu);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        int64_t n = 0;
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            if (e->d_name[0] != '.') {
                n++;
            }
        }
        closedir(d);
        srv_gauge_set(std->process_open_fds, n - 1); /* not the directory's own descriptor */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        srv_gauge_set(std->process_max_fds,
                      rl.rlim_cur == RLIM_INFINITY ? INT64_MAX : (int64_t)rl.rlim_cur);
    }
}

struct std_def {
    size_t offset; /* of the struct srv_series * (or srv_metric *) in srv_metrics_std */
    enum srv_metric_type type;
    const char *name;
    const char *help;
};

#define STD_FIELD(f) offsetof(struct srv_metrics_std, f)

static const struct std_def std_defs[] = {
    {STD_FIELD(raft_term), SRV_METRIC_GAUGE, "latch_raft_term", "Current Raft term."},
    {STD_FIELD(raft_index), SRV_METRIC_GAUGE, "latch_raft_index",
     "Index of the last entry in the local Raft log."},
    {STD_FIELD(raft_commit_index), SRV_METRIC_GAUGE, "latch_raft_commit_index",
     "Raft commit index (etcd sets etcd_server_proposals_committed_total from the same figure)."},
    {STD_FIELD(raft_applied_index), SRV_METRIC_GAUGE, "latch_raft_applied_index",
     "Index of the last entry applied to the lock table (etcd: "
     "etcd_server_proposals_applied_total)."},
    {STD_FIELD(raft_leader_changes), SRV_METRIC_COUNTER, "latch_raft_leader_changes_total",
     "Number of leader changes seen (etcd: etcd_server_leader_changes_seen_total)."},
    {STD_FIELD(raft_has_leader), SRV_METRIC_GAUGE, "latch_raft_has_leader",
     "1 if a leader is known, 0 otherwise (etcd: etcd_server_has_leader)."},
    {STD_FIELD(raft_proposals_committed), SRV_METRIC_COUNTER,
     "latch_raft_proposals_committed_total", "Number of proposals committed by this node."},
    {STD_FIELD(raft_proposals_failed), SRV_METRIC_COUNTER, "latch_raft_proposals_failed_total",
     "Number of failed proposals (etcd: etcd_server_proposals_failed_total)."},
    {STD_FIELD(watchers), SRV_METRIC_GAUGE, "latch_watchers",
     "Number of active watchers (etcd: etcd_debugging_mvcc_watcher_total)."},
    {STD_FIELD(leases), SRV_METRIC_GAUGE, "latch_leases", "Number of live leases."},
    {STD_FIELD(db_size_bytes), SRV_METRIC_GAUGE, "latch_db_size_bytes",
     "Size of the database file in bytes (etcd: etcd_mvcc_db_total_size_in_bytes)."},
    {STD_FIELD(process_resident_memory_bytes), SRV_METRIC_GAUGE, "process_resident_memory_bytes",
     "Resident memory size in bytes."},
    {STD_FIELD(process_cpu_seconds), SRV_METRIC_COUNTER_FLOAT, "process_cpu_seconds_total",
     "Total user and system CPU time spent in seconds."},
    {STD_FIELD(process_open_fds), SRV_METRIC_GAUGE, "process_open_fds",
     "Number of open file descriptors."},
    {STD_FIELD(process_max_fds), SRV_METRIC_GAUGE, "process_max_fds",
     "Maximum number of open file descriptors."},
    {STD_FIELD(process_start_time_seconds), SRV_METRIC_GAUGE_FLOAT, "process_start_time_seconds",
     "Start time of the process since unix epoch in seconds."},
};

static struct srv_series **std_slot(struct srv_metrics_std *std, size_t offset)
{
    return (struct srv_series **)(void *)((char *)std + offset);
}

static int std_register_histograms(struct srv_metrics *reg, struct srv_metrics_std *std)
{
    double fsync[SRV_METRICS_FSYNC_BUCKETS_COUNT];
    for (size_t i = 0; i < SRV_METRICS_FSYNC_BUCKETS_COUNT; i++) {
        fsync[i] = 0.0005 * (double)(1u << i); /* 0.0005 .. 8.192 */
    }
    double apply[16];
    for (size_t i = 0; i < 16; i++) {
        apply[i] = 0.0001 * (double)(1u << i); /* 0.1 ms .. 3.2768 s */
    }
    /* Prometheus' default buckets, as go-grpc-prometheus uses for grpc_server_handling_seconds. */
    static const double grpc[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    struct srv_metric *m = NULL;
    int rv = srv_metrics_register_histogram(
        reg, "latch_disk_fsync_duration_seconds",
        "Latency of fsync of the log and database (etcd: etcd_disk_wal_fsync_duration_seconds).",
        NULL, fsync, SRV_METRICS_FSYNC_BUCKETS_COUNT, &m);
    if (rv != 0) {
        return rv;
    }
    std->disk_fsync_duration = srv_metric_series(m, NULL);
    rv = srv_metrics_register_histogram(reg, "latch_apply_duration_seconds",
                                        "Latency of applying a committed batch to the lock table.",
                                        NULL, apply, 16, &m);
    if (rv != 0) {
        return rv;
    }
    std->apply_duration = srv_metric_series(m, NULL);
    rv = srv_metrics_register_histogram(
        reg, "latch_grpc_request_duration_seconds",
        "Latency of gRPC requests by method (like grpc_server_handling_seconds).", "method", grpc,
        sizeof(grpc) / sizeof(grpc[0]), &std->grpc_request_duration);
    return rv;
}

int srv_metrics_std_register(struct srv_metrics *reg, struct srv_metrics_std *std)
{
    memset(std, 0, sizeof(*std));
    size_t ndefs = sizeof(std_defs) / sizeof(std_defs[0]);
    for (size_t i = 0; i < ndefs; i++) {
        const struct std_def *d = &std_defs[i];
        struct srv_metric *m = NULL;
        int rv = srv_metrics_register(reg, d->type, d->name, d->help, NULL, &m);
        if (rv != 0) {
            return rv;
        }
        *std_slot(std, d->offset) = srv_metric_series(m, NULL);
        if (d->offset == STD_FIELD(raft_proposals_failed)) {
            /* Keep the gRPC families next to the Raft ones in the output. */
            rv = srv_metrics_register(
                reg, SRV_METRIC_COUNTER, "latch_grpc_requests_total",
                "Number of gRPC requests handled, by method (like grpc_server_handled_total).",
                "method", &std->grpc_requests);
            if (rv == 0) {
                rv = std_register_histograms(reg, std);
            }
            if (rv != 0) {
                return rv;
            }
        }
    }
    srv_gauge_set_float(std->process_start_time_seconds, process_start_time());
    return srv_metrics_add_hook(reg, process_hook, std);
}
