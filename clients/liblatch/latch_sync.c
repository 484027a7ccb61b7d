/*
 * latch_sync.c — liblatch's blocking API (latch.h): a private loop on a background thread
 * runs the async client; each blocking call queues a job (the async call to make), wakes the
 * loop with a uv_async_t and waits on a condition variable for the job's result.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_int.h"

struct job;
typedef int (*job_start_fn)(struct latch_client *c, struct job *j);

/* One blocking call: its arguments (borrowed from the waiting caller) and its outcome. */
struct job {
    struct job *next;
    job_start_fn start;
    bool done;
    struct latch_result *r;
    const char *s1;
    const char *s2;
    const void *p;
    size_t n;
    int64_t i1;
    int64_t i2;
    uint64_t u1;
    unsigned flags;
    bool b;
    const struct latch_fence *fence;
    const struct latch_op *ops;
    latch_lost_cb lost;
    void *lost_data;
    struct latch_session *sess;
    struct sync_watch *sw;
    void (*on_message)(const uint8_t *msg, size_t len, void *data);
    void *udata;
    int err;
    char *message;
};

/* A watch started through the blocking API: wraps the user's callbacks so that
 * latch_sync_watch_cancel can wait for on_end. */
struct sync_watch {
    struct sync_watch *next;
    struct latch_sync *s;
    struct latch_watch *w;
    struct latch_watch_cbs user;
    void *udata;
    bool ended;
    bool cancelling;
};

struct latch_sync {
    uv_loop_t loop;
    uv_async_t wake;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    bool stopping;
    struct latch_client *c;
    struct sync_watch *watches;
};

/* ---- the loop thread ------------------------------------------------------------------ */

static void job_finish(struct latch_sync *s, struct job *j)
{
    pthread_mutex_lock(&s->mu);
    j->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void client_closed(void *data)
{
    (void)data;
}

static void wake_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_wake(uv_async_t *a)
{
    struct latch_sync *s = a->data;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct job *j = s->head;
        if (j != NULL) {
            s->head = j->next;
            if (s->head == NULL) {
                s->tail = NULL;
            }
        }
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (j == NULL) {
            if (stopping && !uv_is_closing((uv_handle_t *)&s->wake)) {
                latch_client_close(s->c, client_closed, NULL);
                uv_close((uv_handle_t *)&s->wake, wake_closed);
            }
            return;
        }
        int rc = j->start(s->c, j);
        if (rc != LATCH_OK) {
            j->err = rc;
            j->r = latch_result_new(rc, -1, latch_strerror(rc));
            job_finish(s, j);
        }
    }
}

static void *thread_main(void *arg)
{
    struct latch_sync *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Runs j on the loop and waits for it. */
static int run_job(struct latch_sync *s, struct job *j, struct latch_result **out)
{
    j->next = NULL;
    j->done = false;
    pthread_mutex_lock(&s->mu);
    if (s->tail != NULL) {
        s->tail->next = j;
    } else {
        s->head = j;
    }
    s->tail = j;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->wake);
    pthread_mutex_lock(&s->mu);
    while (!j->done) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    int err = j->r != NULL ? j->r->err : (j->err != LATCH_OK ? j->err : LATCH_ENOMEM);
    if (out != NULL) {
        *out = j->r;
    } else {
        latch_result_free(j->r);
    }
    return err;
}

/* The completion of every job's async call: hands r to the waiting caller. */
static struct latch_sync *sync_of_job(struct job *j);

static void job_cb(struct latch_result *r, void *data)
{
    struct job *j = data;
    j->r = r;
    job_finish(sync_of_job(j), j);
}

/* A job's latch_sync, found through the job wrapper below. */
struct job_box {
    struct job j;
    struct latch_sync *s;
};

static struct latch_sync *sync_of_job(struct job *j)
{
    return ((struct job_box *)(void *)j)->s;
}

#define JOB(name, fn)                                                                              \
    struct job_box name##_box;                                                                     \
    memset(&name##_box, 0, sizeof(name##_box));                                                    \
    name##_box.s = s;                                                                              \
    struct job *name = &name##_box.j;                                                              \
    name->start = (fn)

/* ---- life ------------------------------------------------------------------------------ */

int latch_sync_new(const struct latch_options *opts,
                   struct latch_sync **out,
                   char *err,
                   size_t err_cap)
{
    *out = NULL;
    struct latch_sync *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        return LATCH_ENOMEM;
    }
    int rc = latch_client_new(&s->loop, opts, &s->c, err, err_cap);
    if (rc != LATCH_OK) {
        uv_run(&s->loop, UV_RUN_DEFAULT); /* channels made before the failure close */
        uv_loop_close(&s->loop);
        free(s);
        return rc;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* The background thread blocks every signal: they go to the application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int created = pthread_create(&s->thread, NULL, thread_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (created != 0) {
        latch_client_close(s->c, client_closed, NULL);
        uv_close((uv_handle_t *)&s->wake, wake_closed);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return LATCH_ENOMEM;
    }
    *out = s;
    return LATCH_OK;
}

void latch_sync_free(struct latch_sync *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->wake);
    pthread_join(s->thread, NULL);
    uv_loop_close(&s->loop);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    while (s->watches != NULL) {
        struct sync_watch *sw = s->watches;
        s->watches = sw->next;
        free(sw);
    }
    free(s);
}

/* ---- sessions --------------------------------------------------------------------------- */

static int start_session_open(struct latch_client *c, struct job *j)
{
    return latch_session_open(c, j->i1, j->lost, j->lost_data, job_cb, j, &j->sess);
}

int latch_sync_session_open(struct latch_sync *s,
                            int64_t ttl_seconds,
                            latch_lost_cb lost,
                            void *lost_data,
                            struct latch_session **session,
                            struct latch_result **out)
{
    JOB(j, start_session_open);
    j->i1 = ttl_seconds;
    j->lost = lost;
    j->lost_data = lost_data;
    struct latch_result *r = NULL;
    int err = run_job(s, j, &r);
    *session = NULL;
    if (err == LATCH_OK) {
        *session = j->sess;
    } else if (j->sess != NULL) {
        /* Opened nothing: free the handle. */
        latch_sync_session_close(s, j->sess, NULL);
    }
    if (out != NULL) {
        *out = r;
    } else {
        latch_result_free(r);
    }
    return err;
}

static int start_session_close(struct latch_client *c, struct job *j)
{
    (void)c;
    return latch_session_close(j->sess, job_cb, j);
}

int latch_sync_session_close(struct latch_sync *s,
                             struct latch_session *session,
                             struct latch_result **out)
{
    JOB(j, start_session_close);
    j->sess = session;
    return run_job(s, j, out);
}

/* ---- the tree --------------------------------------------------------------------------- */

static int start_create(struct latch_client *c, struct job *j)
{
    return latch_create(c, j->s1, j->p, j->n, j->i1, j->flags, j->fence, job_cb, j);
}

int latch_sync_create(struct latch_sync *s,
                      const char *path,
                      const void *value,
                      size_t value_len,
                      int64_t session,
                      unsigned flags,
                      const struct latch_fence *fence,
                      struct latch_result **out)
{
    JOB(j, start_create);
    j->s1 = path;
    j->p = value;
    j->n = value_len;
    j->i1 = session;
    j->flags = flags;
    j->fence = fence;
    return run_job(s, j, out);
}

static int start_get(struct latch_client *c, struct job *j)
{
    return latch_get(c, j->s1, j->flags, job_cb, j);
}

int latch_sync_get(struct latch_sync *s,
                   const char *path,
                   unsigned flags,
                   struct latch_result **out)
{
    JOB(j, start_get);
    j->s1 = path;
    j->flags = flags;
    return run_job(s, j, out);
}

static int start_stat(struct latch_client *c, struct job *j)
{
    return latch_stat(c, j->s1, j->flags, job_cb, j);
}

int latch_sync_stat(struct latch_sync *s,
                    const char *path,
                    unsigned flags,
                    struct latch_result **out)
{
    JOB(j, start_stat);
    j->s1 = path;
    j->flags = flags;
    return run_job(s, j, out);
}

static int start_set(struct latch_client *c, struct job *j)
{
    return latch_set(c, j->s1, j->p, j->n, j->i1, j->fence, job_cb, j);
}

int latch_sync_set(struct latch_sync *s,
                   const char *path,
                   const void *value,
                   size_t value_len,
                   int64_t expected_version,
                   const struct latch_fence *fence,
                   struct latch_result **out)
{
    JOB(j, start_set);
    j->s1 = path;
    j->p = value;
    j->n = value_len;
    j->i1 = expected_version;
    j->fence = fence;
    return run_job(s, j, out);
}

static int start_delete(struct latch_client *c, struct job *j)
{
    return latch_delete(c, j->s1, j->i1, j->flags, j->fence, job_cb, j);
}

int latch_sync_delete(struct latch_sync *s,
                      const char *path,
                      int64_t expected_version,
                      unsigned flags,
                      const struct latch_fence *fence,
                      struct latch_result **out)
{
    JOB(j, start_delete);
    j->s1 = path;
    j->i1 = expected_version;
    j->flags = flags;
    j->fence = fence;
    return run_job(s, j, out);
}

static int start_children(struct latch_client *c, struct job *j)
{
    return latch_children(c, j->s1, j->s2, (uint32_t)j->u1, j->flags, job_cb, j);
}

int latch_sync_children(struct latch_sync *s,
                        const char *path,
                        const char *after,
                        uint32_t limit,
                        unsigned flags,
                        struct latch_result **out)
{
    JOB(j, start_children);
    j->s1 = path;
    j->s2 = after;
    j->u1 = limit;
    j->flags = flags;
    return run_job(s, j, out);
}

static int start_multi(struct latch_client *c, struct job *j)
{
    return latch_multi(c, j->ops, j->n, j->fence, job_cb, j);
}

int latch_sync_multi(struct latch_sync *s,
                     const struct latch_op *ops,
                     size_t n,
                     const struct latch_fence *fence,
                     struct latch_result **out)
{
    JOB(j, start_multi);
    j->ops = ops;
    j->n = n;
    j->fence = fence;
    return run_job(s, j, out);
}

/* ---- locks and elections ---------------------------------------------------------------- */

static int start_acquire(struct latch_client *c, struct job *j)
{
    return latch_lock_acquire(c, j->s1, j->i1, j->flags, j->i2, j->u1, job_cb, j);
}

int latch_sync_lock_acquire(struct latch_sync *s,
                            const char *lock,
                            int64_t session,
                            unsigned flags,
                            int64_t lock_delay_ms,
                            uint64_t timeout_ms,
                            struct latch_result **out)
{
    JOB(j, start_acquire);
    j->s1 = lock;
    j->i1 = session;
    j->flags = flags;
    j->i2 = lock_delay_ms;
    j->u1 = timeout_ms;
    return run_job(s, j, out);
}

static int start_release(struct latch_client *c, struct job *j)
{
    return latch_lock_release(c, j->s1, j->i1, job_cb, j);
}

int latch_sync_lock_release(struct latch_sync *s,
                            const char *lock,
                            int64_t token,
                            struct latch_result **out)
{
    JOB(j, start_release);
    j->s1 = lock;
    j->i1 = token;
    return run_job(s, j, out);
}

static int start_holder(struct latch_client *c, struct job *j)
{
    return latch_lock_holder(c, j->s1, j->flags, job_cb, j);
}

int latch_sync_lock_holder(struct latch_sync *s,
                           const char *lock,
                           unsigned flags,
                           struct latch_result **out)
{
    JOB(j, start_holder);
    j->s1 = lock;
    j->flags = flags;
    return run_job(s, j, out);
}

static int start_waiters(struct latch_client *c, struct job *j)
{
    return latch_lock_waiters(c, j->s1, j->flags, job_cb, j);
}

int latch_sync_lock_waiters(struct latch_sync *s,
                            const char *lock,
                            unsigned flags,
                            struct latch_result **out)
{
    JOB(j, start_waiters);
    j->s1 = lock;
    j->flags = flags;
    return run_job(s, j, out);
}

static int start_check_fence(struct latch_client *c, struct job *j)
{
    return latch_check_fence(c, j->fence, job_cb, j);
}

int latch_sync_check_fence(struct latch_sync *s,
                           const struct latch_fence *fence,
                           struct latch_result **out)
{
    JOB(j, start_check_fence);
    j->fence = fence;
    return run_job(s, j, out);
}

static int start_campaign(struct latch_client *c, struct job *j)
{
    return latch_campaign(c, j->s1, j->i1, j->p, j->n, j->u1, job_cb, j);
}

int latch_sync_campaign(struct latch_sync *s,
                        const char *election,
                        int64_t session,
                        const void *value,
                        size_t value_len,
                        uint64_t timeout_ms,
                        struct latch_result **out)
{
    JOB(j, start_campaign);
    j->s1 = election;
    j->i1 = session;
    j->p = value;
    j->n = value_len;
    j->u1 = timeout_ms;
    return run_job(s, j, out);
}

static int start_proclaim(struct latch_client *c, struct job *j)
{
    return latch_proclaim(c, j->s1, j->i1, j->p, j->n, job_cb, j);
}

int latch_sync_proclaim(struct latch_sync *s,
                        const char *election,
                        int64_t token,
                        const void *value,
                        size_t value_len,
                        struct latch_result **out)
{
    JOB(j, start_proclaim);
    j->s1 = election;
    j->i1 = token;
    j->p = value;
    j->n = value_len;
    return run_job(s, j, out);
}

static int start_resign(struct latch_client *c, struct job *j)
{
    return latch_resign(c, j->s1, j->i1, job_cb, j);
}

int latch_sync_resign(struct latch_sync *s,
                      const char *election,
                      int64_t token,
                      struct latch_result **out)
{
    JOB(j, start_resign);
    j->s1 = election;
    j->i1 = token;
    return run_job(s, j, out);
}

static int start_leader(struct latch_client *c, struct job *j)
{
    return latch_leader(c, j->s1, j->flags, job_cb, j);
}

int latch_sync_leader(struct latch_sync *s,
                      const char *election,
                      unsigned flags,
                      struct latch_result **out)
{
    JOB(j, start_leader);
    j->s1 = election;
    j->flags = flags;
    return run_job(s, j, out);
}

/* ---- raw calls -------------------------------------------------------------------------- */

static int start_raw_unary(struct latch_client *c, struct job *j)
{
    return latch_raw_unary(c, j->s1, j->p, j->n, j->b, j->u1, job_cb, j);
}

int latch_sync_raw_unary(struct latch_sync *s,
                         const char *method,
                         const uint8_t *req,
                         size_t len,
                         bool idempotent,
                         uint64_t timeout_ms,
                         struct latch_result **out)
{
    JOB(j, start_raw_unary);
    j->s1 = method;
    j->p = req;
    j->n = len;
    j->b = idempotent;
    j->u1 = timeout_ms;
    return run_job(s, j, out);
}

static void raw_message(const uint8_t *msg, size_t len, void *data)
{
    struct job *j = data;
    j->on_message(msg, len, j->udata);
}

static void raw_end(int err, const char *message, void *data)
{
    struct job *j = data;
    j->err = err;
    j->r = latch_result_new(err, -1, message);
    job_finish(sync_of_job(j), j);
}

static int start_raw_stream(struct latch_client *c, struct job *j)
{
    return latch_raw_stream(c, j->s1, j->p, j->n, raw_message, raw_end, j);
}

int latch_sync_raw_stream(struct latch_sync *s,
                          const char *method,
                          const uint8_t *req,
                          size_t len,
                          void (*on_message)(const uint8_t *msg, size_t len, void *data),
                          void *data,
                          char **message)
{
    JOB(j, start_raw_stream);
    j->s1 = method;
    j->p = req;
    j->n = len;
    j->on_message = on_message;
    j->udata = data;
    struct latch_result *r = NULL;
    int err = run_job(s, j, &r);
    if (message != NULL) {
        *message = strdup(r != NULL ? r->message : "out of memory");
    }
    latch_result_free(r);
    return err;
}

/* ---- watches ---------------------------------------------------------------------------- */

static void sw_event(struct latch_watch *w, const struct latch_event *ev, void *data)
{
    struct sync_watch *sw = data;
    sw->user.on_event(w, ev, sw->udata);
}

static void sw_leader(struct latch_watch *w, const struct latch_result *r, void *data)
{
    struct sync_watch *sw = data;
    sw->user.on_leader(w, r, sw->udata);
}

static void sw_unlink(struct latch_sync *s, struct sync_watch *sw)
{
    for (struct sync_watch **p = &s->watches; *p != NULL; p = &(*p)->next) {
        if (*p == sw) {
            *p = sw->next;
            return;
        }
    }
}

static void sw_end(struct latch_watch *w, int err, const char *message, void *data)
{
    struct sync_watch *sw = data;
    struct latch_sync *s = sw->s;
    sw->user.on_end(w, err, message, sw->udata);
    pthread_mutex_lock(&s->mu);
    sw->ended = true;
    if (!sw->cancelling) {
        sw_unlink(s, sw);
        free(sw);
    } else {
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static const struct latch_watch_cbs sw_cbs = {
    .on_event = sw_event,
    .on_leader = sw_leader,
    .on_end = sw_end,
};

static int start_watch(struct latch_client *c, struct job *j)
{
    struct latch_watch *w = NULL;
    int rc;
    if (j->b) {
        rc = latch_observe(c, j->s1, &sw_cbs, j->sw, &w);
    } else {
        rc = latch_watch(c, j->s1, j->flags, j->i1, &sw_cbs, j->sw, &w);
    }
    if (rc == LATCH_OK) {
        j->sw->w = w;
        j->r = latch_result_new(LATCH_OK, 0, "");
        j->err = j->r != NULL ? LATCH_OK : LATCH_ENOMEM;
        job_finish(sync_of_job(j), j);
    }
    return rc;
}

static int sync_watch_start(struct latch_sync *s,
                            bool observe,
                            const char *path,
                            unsigned flags,
                            int64_t start_revision,
                            const struct latch_watch_cbs *cbs,
                            void *data,
                            struct latch_watch **w)
{
    *w = NULL;
    if (cbs == NULL || cbs->on_end == NULL || (observe && cbs->on_leader == NULL) ||
        (!observe && cbs->on_event == NULL)) {
        return LATCH_EINVAL;
    }
    struct sync_watch *sw = calloc(1, sizeof(*sw));
    if (sw == NULL) {
        return LATCH_ENOMEM;
    }
    sw->s = s;
    sw->user = *cbs;
    sw->udata = data;
    pthread_mutex_lock(&s->mu);
    sw->next = s->watches;
    s->watches = sw;
    pthread_mutex_unlock(&s->mu);
    JOB(j, start_watch);
    j->b = observe;
    j->s1 = path;
    j->flags = flags;
    j->i1 = start_revision;
    j->sw = sw;
    int err = run_job(s, j, NULL);
    if (err != LATCH_OK) {
        pthread_mutex_lock(&s->mu);
        if (sw->w == NULL) {
            sw_unlink(s, sw);
            free(sw);
        }
        pthread_mutex_unlock(&s->mu);
        return err;
    }
    *w = sw->w;
    return LATCH_OK;
}

int latch_sync_watch(struct latch_sync *s,
                     const char *path,
                     unsigned flags,
                     int64_t start_revision,
                     const struct latch_watch_cbs *cbs,
                     void *data,
                     struct latch_watch **w)
{
    return sync_watch_start(s, false, path, flags, start_revision, cbs, data, w);
}

int latch_sync_observe(struct latch_sync *s,
                       const char *election,
                       const struct latch_watch_cbs *cbs,
                       void *data,
                       struct latch_watch **w)
{
    return sync_watch_start(s, true, election, 0, 0, cbs, data, w);
}

static int start_cancel(struct latch_client *c, struct job *j)
{
    (void)c;
    struct latch_sync *s = sync_of_job(j);
    pthread_mutex_lock(&s->mu);
    bool ended = j->sw->ended;
    pthread_mutex_unlock(&s->mu);
    if (!ended) {
        latch_watch_cancel(j->sw->w); /* alive: on_end runs on this thread, later */
    }
    j->r = latch_result_new(LATCH_OK, 0, "");
    job_finish(s, j);
    return LATCH_OK;
}

void latch_sync_watch_cancel(struct latch_sync *s, struct latch_watch *w)
{
    pthread_mutex_lock(&s->mu);
    struct sync_watch *sw = s->watches;
    while (sw != NULL && sw->w != w) {
        sw = sw->next;
    }
    if (sw == NULL || sw->cancelling) {
        pthread_mutex_unlock(&s->mu); /* it ended already (and was freed) */
        return;
    }
    sw->cancelling = true;
    pthread_mutex_unlock(&s->mu);
    JOB(j, start_cancel);
    j->sw = sw;
    run_job(s, j, NULL);
    pthread_mutex_lock(&s->mu);
    while (!sw->ended) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    sw_unlink(s, sw);
    pthread_mutex_unlock(&s->mu);
    free(sw);
}
