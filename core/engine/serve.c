/*
 * serve.c — `cpbridge serve` (see serve.h): the receiver, its workers and
 * its housekeeping.
 */
#include "engine/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/host.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "lib/buf.h"
#include "services/httpd.h"
#include "services/log.h"

#define WEBHOOK_PREFIX     "/webhooks/"
#define MAX_WORKERS        16
#define PER_MINUTE_BUCKETS 5 /* deliveries per minute: the mean of the 4 whole minutes before */
/* The state and the metrics file: this often, and a second after a delivery. */
#define STATE_EVERY_MS 15000

/* What the receiver answered, for the counters. */
enum outcome { OUT_STAGED, OUT_IGNORED, OUT_REFUSED, OUT_BAD_SIGNATURE, OUT_FAILED, OUT_N };
static const char *const outcome_names[OUT_N] = {"staged", "ignored", "refused", "bad_signature",
                                                 "failed"};

struct worker {
    struct server *srv;
    pthread_t thread;
    bool started;
    int index;
};

struct server {
    const struct serve_options *o;
    struct pipeline *intake_p;
    struct runner_intake *intake;
    struct httpd *httpd;
    bool listened; /* it served: its stop is recorded for health */
    const struct config_serve *cfg;
    char name[128];
    char listen[80];
    unsigned port;
    int64_t started_ms;
    int64_t last_tick_ms;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t wake;
    bool stopping;
    atomic_bool stop_runs; /* the workers' runs claim no more */
    unsigned due; /* deliveries staged since a worker last started a run */
    uint64_t counts[OUT_N];
    int64_t last_delivery_ms; /* 0: none yet */
    uint64_t minute[PER_MINUTE_BUCKETS];
    int64_t minute_of[PER_MINUTE_BUCKETS];

    struct worker workers[MAX_WORKERS];
    int n_workers;
    char *tls_cert;
    char *tls_key;
};

static int64_t now_ms(void)
{
    return host_services()->now_ms(NULL);
}

void serve_state_key(const char *name, char *out, size_t n)
{
    snprintf(out, n, "serve/%s", name);
}

/* ---- the receiver -------------------------------------------------------------- */

static void count(struct server *s, enum outcome o)
{
    int64_t t = now_ms();
    int64_t m = t / 60000;
    size_t b = (size_t)(m % PER_MINUTE_BUCKETS);
    pthread_mutex_lock(&s->mu);
    s->counts[o]++;
    s->last_delivery_ms = t;
    if (s->minute_of[b] != m) {
        s->minute_of[b] = m;
        s->minute[b] = 0;
    }
    s->minute[b]++;
    if (o == OUT_STAGED) {
        s->due++;
        pthread_cond_signal(&s->wake); /* one worker; it wakes others for more */
    }
    pthread_mutex_unlock(&s->mu);
}

static void on_http(void *arg, const struct httpd_request *rq, struct httpd_reply *rp)
{
    struct server *s = arg;
    if (strcmp(rq->path, "/health") == 0 && strcmp(rq->method, "GET") == 0) {
        rp->status = 200;
        snprintf(rp->body, sizeof rp->body, "ok\n");
        return;
    }
    if (strncmp(rq->path, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) != 0) {
        rp->status = 404;
        snprintf(rp->body, sizeof rp->body, "not found: deliveries go to %s<source id>\n",
                 WEBHOOK_PREFIX);
        return;
    }
    if (strcmp(rq->method, "POST") != 0) {
        rp->status = 405;
        snprintf(rp->body, sizeof rp->body, "deliveries are POSTed\n");
        return;
    }
    if (rq->too_large) {
        rp->status = 413;
        snprintf(rp->body, sizeof rp->body, "request body larger than %lld bytes\n",
                 (long long)s->cfg->max_body);
        log_msg(CPB_LOG_WARN, NULL, 0,
                "a delivery from %s was refused: its body is larger than serve.max_body (%lld"
                " bytes)",
                rq->remote, (long long)s->cfg->max_body);
        count(s, OUT_REFUSED);
        return;
    }
    const char *id = rq->path + strlen(WEBHOOK_PREFIX);
    struct cpb_delivery d = {sizeof d,     rq->method, rq->path,  rq->body,
                             rq->body_len, rq->remote, (void *)rq};
    struct cpb_answer ans = {sizeof ans, 500, ""};
    enum cpb_status st = runner_intake_receive(s->intake, id, &d, &ans);
    rp->status = ans.status >= 100 && ans.status <= 599 ? ans.status : 500;
    snprintf(rp->body, sizeof rp->body, "%s", ans.message[0] != '\0' ? ans.message : "\n");
    if (rp->status == 404 && st == CPB_FAIL) {
        log_msg(CPB_LOG_WARN, NULL, 0,
                "a delivery from %s for '%s': no source stage receives there", rq->remote, id);
    }
    enum outcome o = rp->status == 401   ? OUT_BAD_SIGNATURE
                     : rp->status >= 500 ? OUT_FAILED
                     : rp->status >= 400 ? OUT_REFUSED
                     : st == CPB_OK      ? OUT_STAGED
                                         : OUT_IGNORED;
    count(s, o);
}

/* ---- the workers ----------------------------------------------------------------- */

/* Sleep up to ms unless stopping; with s->mu held. Returns false when stopping. */
static bool wait_ms(struct server *s, int64_t ms, bool until_due)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    /* A plain sleep (!until_due) ends early only for the stop. */
    while (!s->stopping && (!until_due || s->due == 0)) {
        if (pthread_cond_timedwait(&s->wake, &s->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    return !s->stopping;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct server *s = w->srv;
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = s->o->pipeline_path,
                            .apply_only = true,
                            .stop = &s->stop_runs,
                            .undo = s->o->undo,
                            .undo_arg = s->o->undo_arg};
    struct run_result res;

    if (pipeline_open(s->o->pipeline_path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "serve worker %d: %s", w->index, e.msg);
        pipeline_close(p);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        /* A delivery, or the sweep. */
        if (!wait_ms(s, s->cfg->sweep_ms, true)) {
            break;
        }
        if (s->due > 0 && !wait_ms(s, s->cfg->coalesce_ms, false)) {
            break; /* stopping: what is staged waits for the next run */
        }
        /* More than one claim batch arrived: wake another worker to claim
         * beside this one. */
        unsigned batch = (unsigned)p->cfg->run.batch;
        s->due = s->due > batch ? s->due - batch : 0;
        if (s->due > 0) {
            pthread_cond_signal(&s->wake);
        }
        pthread_mutex_unlock(&s->mu);
        memset(&e, 0, sizeof e);
        int code = runner_run(p, &o, &res, &e);
        if (code != CPB_EXIT_OK && code != CPB_EXIT_ATTENTION) {
            log_msg(CPB_LOG_ERROR, NULL, 0, "serve worker %d: the run failed (%d): %s", w->index,
                    code, e.msg);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    pipeline_close(p);
    return NULL;
}

/* ---- housekeeping ------------------------------------------------------------------ */

static json_t *state_json(struct server *s, bool stopped)
{
    int64_t t = now_ms();
    int64_t m = t / 60000;
    uint64_t recent = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < PER_MINUTE_BUCKETS; b++) {
        if (s->minute_of[b] > m - PER_MINUTE_BUCKETS && s->minute_of[b] < m) {
            recent += s->minute[b]; /* the 4 whole minutes before this one */
        }
    }
    uint64_t total = 0;
    for (int i = 0; i < OUT_N; i++) {
        total += s->counts[i];
    }
    json_t *j = json_pack(
        "{s:I, s:s, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:f}", "pid", (json_int_t)getpid(), "listen",
        s->listen, "port", (json_int_t)s->port, "started", (json_int_t)s->started_ms, "heartbeat",
        (json_int_t)t, "stopped", stopped, "deliveries", (json_int_t)total, "bad_signatures",
        (json_int_t)s->counts[OUT_BAD_SIGNATURE], "last_delivery", (json_int_t)s->last_delivery_ms,
        "per_minute", (double)recent / (PER_MINUTE_BUCKETS - 1));
    pthread_mutex_unlock(&s->mu);
    return j;
}

static void write_state(struct server *s, bool stopped)
{
    char key[200];
    json_t *j = state_json(s, stopped);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    serve_state_key(s->name, key, sizeof key);
    if (text == NULL || runner_intake_state_set(s->intake, key, text) != CPB_OK) {
        log_msg(CPB_LOG_WARN, NULL, 0, "could not record the receiver's state for health");
    }
    free(text);
    json_decref(j);
}

static void write_metrics_file(struct server *s, bool up)
{
    const char *path = s->cfg->metrics_file;
    struct buf b = BUF_INIT;
    struct buf tmp = BUF_INIT;
    int fd = -1;
    if (path == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    buf_adds(&b, "# HELP cpbridge_serve_deliveries_total Deliveries the receiver answered, by"
                 " result.\n# TYPE cpbridge_serve_deliveries_total counter\n");
    for (int i = 0; i < OUT_N; i++) {
        buf_addf(&b, "cpbridge_serve_deliveries_total{pipeline=\"%s\",result=\"%s\"} %llu\n",
                 s->name, outcome_names[i], (unsigned long long)s->counts[i]);
    }
    buf_addf(&b,
             "# HELP cpbridge_serve_last_delivery_timestamp_seconds When the last delivery was"
             " answered (0: none yet).\n# TYPE cpbridge_serve_last_delivery_timestamp_seconds"
             " gauge\ncpbridge_serve_last_delivery_timestamp_seconds{pipeline=\"%s\"} %.3f\n",
             s->name, (double)s->last_delivery_ms / 1000.0);
    pthread_mutex_unlock(&s->mu);
    buf_addf(&b,
             "# HELP cpbridge_serve_up 1 while the receiver runs, 0 once it stopped.\n# TYPE"
             " cpbridge_serve_up gauge\ncpbridge_serve_up{pipeline=\"%s\"} %d\n",
             s->name, up ? 1 : 0);
    buf_addf(&tmp, "%s.XXXXXX", path);
    if (b.oom || tmp.oom || (fd = mkstemp(tmp.data)) < 0) {
        log_msg(CPB_LOG_WARN, NULL, 0, "serve metrics file %s: %s", path, strerror(errno));
        goto out;
    }
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    if (off != b.len || fchmod(fd, 0644) != 0 || close(fd) != 0 || rename(tmp.data, path) != 0) {
        log_msg(CPB_LOG_WARN, NULL, 0, "serve metrics file %s: %s", path, strerror(errno));
        if (off != b.len) {
            (void)close(fd);
        }
        (void)unlink(tmp.data);
    }
out:
    buf_free(&b);
    buf_free(&tmp);
}

void serve_tick(struct server *s)
{
    int64_t t = now_ms();
    runner_intake_flush(s->intake);
    pthread_mutex_lock(&s->mu);
    bool changed = s->last_delivery_ms > s->last_tick_ms; /* news for health within a second */
    pthread_mutex_unlock(&s->mu);
    if (changed || t - s->last_tick_ms >= STATE_EVERY_MS) {
        s->last_tick_ms = t;
        write_state(s, false);
        write_metrics_file(s, true);
    }
}

/* ---- start and stop ------------------------------------------------------------------ */

static char *read_pem(const char *path, struct err *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n = -1;
    if (f == NULL) {
        err_set(err, CPB_EXIT_CONFIG, "serve: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        n = ftell(f);
    }
    if (n < 0 || n > 1024 * 1024 || fseek(f, 0, SEEK_SET) != 0) {
        err_set(err, CPB_EXIT_CONFIG, "serve: %s is not a PEM file of at most 1 MiB", path);
    } else if ((text = calloc(1, (size_t)n + 1)) == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    } else if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        err_set(err, CPB_EXIT_CONFIG, "serve: cannot read %s", path);
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

/* The certificate and key TLS will use are PEM OpenSSL can read: a bad one
 * is a configuration error (78), found before anything listens. */
static int check_pem(const char *cert, const char *key, const struct config_serve *cfg,
                     struct err *err)
{
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    X509_free(x);
    if (x == NULL) {
        return err_set(err, CPB_EXIT_CONFIG, "serve.tls_cert %s holds no PEM certificate",
                       cfg->tls_cert);
    }
    b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    EVP_PKEY_free(k);
    if (k == NULL) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "serve.tls_key %s holds no PEM private key (without a passphrase)",
                       cfg->tls_key);
    }
    return 0;
}

static int write_port_file(const char *path, unsigned port, struct err *err)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%u\n", port);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0) {
        return err_set(err, CPB_EXIT_IOERR, "--port-file %s: %s", path, strerror(errno));
    }
    return 0;
}

int serve_start(const struct serve_options *o, struct pipeline *p, struct server **out,
                struct err *err)
{
    struct server *s = calloc(1, sizeof *s);
    *out = NULL;
    if (s == NULL) {
        pipeline_close(p);
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    s->intake_p = p;
    s->o = o;
    s->started_ms = now_ms();
    s->last_tick_ms = 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pipeline_init(s->intake_p, err) != 0) {
        goto fail;
    }
    s->cfg = &s->intake_p->cfg->serve;
    snprintf(s->name, sizeof s->name, "%s", s->intake_p->cfg->name);
    size_t receivers = 0;
    for (size_t i = 0; i < s->intake_p->n; i++) {
        const struct stage_inst *si = &s->intake_p->st[i];
        if (si->ls.desc->kind == CPB_SOURCE && loader_receive(si->ls.desc) != NULL) {
            log_msg(CPB_LOG_INFO, NULL, 0, "deliveries for source '%s' go to %s%s", si->cs->id,
                    WEBHOOK_PREFIX, si->cs->id);
            receivers++;
        }
    }
    if (receivers == 0) {
        err_set(err, CPB_EXIT_CONFIG,
                "%s: no source stage of this pipeline receives deliveries (source-woo does, with"
                " webhook_secret set)",
                o->pipeline_path);
        goto fail;
    }
    if (runner_intake_open(s->intake_p, o->pipeline_path, &s->intake, err) != 0) {
        goto fail;
    }
    if (s->cfg->tls_cert != NULL) {
        s->tls_cert = read_pem(s->cfg->tls_cert, err);
        s->tls_key = s->tls_cert != NULL ? read_pem(s->cfg->tls_key, err) : NULL;
        if (s->tls_key == NULL || check_pem(s->tls_cert, s->tls_key, s->cfg, err) != 0) {
            goto fail;
        }
    }
    struct httpd_config hc = {s->cfg->listen,
                              (unsigned)s->cfg->port,
                              (size_t)s->cfg->max_body,
                              4,
                              s->tls_cert,
                              s->tls_key,
                              60};
    if (httpd_start(&hc, on_http, s, &s->httpd, err) != 0) {
        goto fail;
    }
    s->port = httpd_port(s->httpd);
    s->listened = true;
    snprintf(s->listen, sizeof s->listen, "%s", s->cfg->listen);
    s->n_workers = (int)s->cfg->workers;
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i] = (struct worker){s, 0, false, i + 1};
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            err_set(err, CPB_EXIT_SOFTWARE, "could not start worker %d", i + 1);
            goto fail;
        }
        s->workers[i].started = true;
    }
    bool v6 = strchr(s->listen, ':') != NULL;
    log_msg(CPB_LOG_INFO, NULL, 0, "serving pipeline '%s' on %s%s%s%s:%u with %d worker(s)",
            s->name, s->cfg->tls_cert != NULL ? "https://" : "http://", v6 ? "[" : "", s->listen,
            v6 ? "]" : "", s->port, s->n_workers);
    write_state(s, false);
    write_metrics_file(s, true);
    s->last_tick_ms = now_ms();
    if (o->port_file != NULL && write_port_file(o->port_file, s->port, err) != 0) {
        goto fail;
    }
    /* A first sweep: what earlier runs left due. */
    pthread_mutex_lock(&s->mu);
    s->due = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    *out = s;
    return 0;
fail:
    serve_stop(s);
    return -1;
}

void serve_stop(struct server *s)
{
    if (s == NULL) {
        return;
    }
    httpd_quiesce(s->httpd); /* no new connections */
    httpd_stop(s->httpd);    /* waits for the deliveries in flight */
    s->httpd = NULL;
    atomic_store(&s->stop_runs, true);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++) {
        if (s->workers[i].started) {
            pthread_join(s->workers[i].thread, NULL); /* each finishes the orders it holds */
        }
    }
    if (s->intake != NULL && s->listened) {
        write_state(s, true);
        write_metrics_file(s, false);
        log_msg(CPB_LOG_INFO, NULL, 0, "stopped serving pipeline '%s'", s->name);
    }
    runner_intake_close(s->intake);
    pipeline_close(s->intake_p);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
}
