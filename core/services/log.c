/*
 * log.c — one line per message, text or JSON, secrets masked (see log.h).
 * The sink, the level and the secrets are the process's, behind one mutex;
 * the run label is the calling thread's, so workers of one process (one
 * pipeline or several) label their own lines.
 */
#include "services/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LOG_MAX_SECRETS 64

static struct {
    enum cpb_log_level level;
    enum log_format format;
    FILE *stream;
    char *secrets[LOG_MAX_SECRETS];
    size_t n_secrets;
    char status[LOG_STATUS_MAX]; /* the status line on the terminal, "" when none */
} L = {CPB_LOG_INFO, LOG_TEXT, NULL, {NULL}, 0, ""};

/* Erase the line the cursor is on: back to its start, clear to its end. */
#define TTY_ERASE "\r\033[K"

/* Guards L and the writes, so lines of two threads never interleave. */
static pthread_mutex_t L_lock = PTHREAD_MUTEX_INITIALIZER;

/* The calling thread's run label ("" when none); longer names are cut. */
static _Thread_local struct {
    char run_id[64];
    char pipeline[128];
} T;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_configure(enum cpb_log_level level, enum log_format format)
{
    pthread_mutex_lock(&L_lock);
    L.level = level;
    L.format = format;
    pthread_mutex_unlock(&L_lock);
}

int log_level_parse(const char *name, enum cpb_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum cpb_log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&L_lock);
    L.stream = stream;
    pthread_mutex_unlock(&L_lock);
}

void log_set_run(const char *run_id, const char *pipeline)
{
    snprintf(T.run_id, sizeof T.run_id, "%s", run_id != NULL ? run_id : "");
    snprintf(T.pipeline, sizeof T.pipeline, "%s", pipeline != NULL ? pipeline : "");
}

static int redact_add_locked(const char *secret)
{
    for (size_t i = 0; i < L.n_secrets; i++) {
        if (strcmp(L.secrets[i], secret) == 0) {
            return 0;
        }
    }
    if (L.n_secrets == LOG_MAX_SECRETS) {
        /* Drop the shortest-lived guarantee rather than a secret: refuse. */
        return -1;
    }
    char *copy = strdup(secret);
    if (copy == NULL) {
        return -1;
    }
    L.secrets[L.n_secrets++] = copy;
    return 0;
}

int log_redact_add(const char *secret)
{
    if (secret == NULL || secret[0] == '\0') {
        return 0;
    }
    pthread_mutex_lock(&L_lock);
    int rc = redact_add_locked(secret);
    pthread_mutex_unlock(&L_lock);
    return rc;
}

/* The secret that starts at s, longest first, or NULL. */
static const char *secret_at(const char *s)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < L.n_secrets; i++) {
        size_t n = strlen(L.secrets[i]);
        if (n > best_len && strncmp(s, L.secrets[i], n) == 0) {
            best = L.secrets[i];
            best_len = n;
        }
    }
    return best;
}

static void redact_into_locked(const char *in, struct buf *out)
{
    const char *p = in;
    while (*p != '\0') {
        const char *sec = L.n_secrets > 0 ? secret_at(p) : NULL;
        if (sec != NULL) {
            buf_adds(out, "********");
            p += strlen(sec);
        } else {
            buf_add(out, p, 1);
            p++;
        }
    }
}

void log_redact_into(const char *in, struct buf *out)
{
    pthread_mutex_lock(&L_lock);
    redact_into_locked(in, out);
    pthread_mutex_unlock(&L_lock);
}

static void stamp(char *out, size_t n)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
}

static void write_text(FILE *f, const char *when, enum cpb_log_level level, const char *stage,
                       int64_t order_id, const char *msg)
{
    struct buf line = BUF_INIT;
    buf_addf(&line, "%s %-5s", when, level_names[level]);
    if (T.run_id[0] != '\0') {
        buf_addf(&line, " run=%s", T.run_id);
    }
    if (stage != NULL) {
        buf_addf(&line, " stage=%s", stage);
    }
    if (order_id != 0) {
        buf_addf(&line, " order=%lld", (long long)order_id);
    }
    buf_adds(&line, " ");
    for (const char *p = msg; *p != '\0'; p++) {
        if (*p == '\n') {
            buf_adds(&line, "\\n");
        } else if (*p == '\r') {
            buf_adds(&line, "\\r");
        } else {
            buf_add(&line, p, 1);
        }
    }
    buf_adds(&line, "\n");
    fputs(buf_str(&line), f);
    buf_free(&line);
}

static void write_json(FILE *f, const char *when, enum cpb_log_level level, const char *stage,
                       int64_t order_id, const char *msg)
{
    json_t *o = json_object();
    if (o == NULL) {
        return;
    }
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "level", json_string(level_names[level]));
    if (T.pipeline[0] != '\0') {
        json_object_set_new(o, "pipeline", json_string(T.pipeline));
    }
    if (T.run_id[0] != '\0') {
        json_object_set_new(o, "run", json_string(T.run_id));
    }
    if (stage != NULL) {
        json_object_set_new(o, "stage", json_string(stage));
    }
    if (order_id != 0) {
        json_object_set_new(o, "order", json_integer((json_int_t)order_id));
    }
    /* json_string refuses invalid UTF-8; keep the line rather than lose it. */
    json_t *m = json_string(msg);
    if (m == NULL) {
        m = json_string("(message was not valid UTF-8)");
    }
    json_object_set_new(o, "msg", m);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL) {
        fputs(text, f);
        fputc('\n', f);
        free(text);
    }
    json_decref(o);
}

void log_vmsg(enum cpb_log_level level, const char *stage, int64_t order_id, const char *fmt,
              va_list ap)
{
    if ((int)level < 0) {
        return;
    }
    struct buf raw = BUF_INIT;
    struct buf clean = BUF_INIT;
    char when[64];

    pthread_mutex_lock(&L_lock);
    if (level > L.level) {
        pthread_mutex_unlock(&L_lock);
        return;
    }
    FILE *f = L.stream != NULL ? L.stream : stderr;
    buf_vaddf(&raw, fmt, ap);
    redact_into_locked(buf_str(&raw), &clean);
    stamp(when, sizeof when);
    if (L.status[0] != '\0') {
        fputs(TTY_ERASE, f); /* the log line takes the status line's place */
    }
    if (L.format == LOG_JSON) {
        write_json(f, when, level, stage, order_id, buf_str(&clean));
    } else {
        write_text(f, when, level, stage, order_id, buf_str(&clean));
    }
    if (L.status[0] != '\0') {
        fputs(L.status, f); /* and it is drawn again below */
    }
    fflush(f);
    pthread_mutex_unlock(&L_lock);
    buf_free(&raw);
    buf_free(&clean);
}

void log_msg(enum cpb_log_level level, const char *stage, int64_t order_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, stage, order_id, fmt, ap);
    va_end(ap);
}

void log_status(const char *text)
{
    pthread_mutex_lock(&L_lock);
    FILE *f = L.stream != NULL ? L.stream : stderr;
    bool shown = L.status[0] != '\0';
    snprintf(L.status, sizeof L.status, "%s", text != NULL ? text : "");
    if (shown || L.status[0] != '\0') {
        fputs(TTY_ERASE, f);
        fputs(L.status, f);
        fflush(f);
    }
    pthread_mutex_unlock(&L_lock);
}

void log_reset(void)
{
    log_set_run(NULL, NULL);
    pthread_mutex_lock(&L_lock);
    for (size_t i = 0; i < L.n_secrets; i++) {
        free(L.secrets[i]);
        L.secrets[i] = NULL;
    }
    L.n_secrets = 0;
    L.status[0] = '\0';
    L.stream = NULL;
    L.level = CPB_LOG_INFO;
    L.format = LOG_TEXT;
    pthread_mutex_unlock(&L_lock);
}
