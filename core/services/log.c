/*
 * log.c — one line per message, text or JSON, secrets masked (see log.h).
 */
#include "services/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LOG_MAX_SECRETS 64

static struct {
    enum cpb_log_level level;
    enum log_format format;
    FILE *stream;
    char *run_id;
    char *pipeline;
    char *secrets[LOG_MAX_SECRETS];
    size_t n_secrets;
} L = {CPB_LOG_INFO, LOG_TEXT, NULL, NULL, NULL, {NULL}, 0};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_configure(enum cpb_log_level level, enum log_format format)
{
    L.level = level;
    L.format = format;
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
    L.stream = stream;
}

static int replace(char **slot, const char *value)
{
    char *copy = NULL;
    if (value != NULL) {
        copy = strdup(value);
        if (copy == NULL) {
            return -1;
        }
    }
    free(*slot);
    *slot = copy;
    return 0;
}

void log_set_run(const char *run_id, const char *pipeline)
{
    /* Out of memory here only loses the label on later lines. */
    (void)replace(&L.run_id, run_id);
    (void)replace(&L.pipeline, pipeline);
}

int log_redact_add(const char *secret)
{
    if (secret == NULL || secret[0] == '\0') {
        return 0;
    }
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

void log_redact_into(const char *in, struct buf *out)
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
    if (L.run_id != NULL) {
        buf_addf(&line, " run=%s", L.run_id);
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
    if (L.pipeline != NULL) {
        json_object_set_new(o, "pipeline", json_string(L.pipeline));
    }
    if (L.run_id != NULL) {
        json_object_set_new(o, "run", json_string(L.run_id));
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
    if (level > L.level || (int)level < 0) {
        return;
    }
    struct buf raw = BUF_INIT;
    struct buf clean = BUF_INIT;
    char when[64];
    FILE *f = L.stream != NULL ? L.stream : stderr;

    buf_vaddf(&raw, fmt, ap);
    log_redact_into(buf_str(&raw), &clean);
    stamp(when, sizeof when);
    if (L.format == LOG_JSON) {
        write_json(f, when, level, stage, order_id, buf_str(&clean));
    } else {
        write_text(f, when, level, stage, order_id, buf_str(&clean));
    }
    fflush(f);
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

void log_reset(void)
{
    free(L.run_id);
    free(L.pipeline);
    L.run_id = NULL;
    L.pipeline = NULL;
    for (size_t i = 0; i < L.n_secrets; i++) {
        free(L.secrets[i]);
        L.secrets[i] = NULL;
    }
    L.n_secrets = 0;
    L.stream = NULL;
    L.level = CPB_LOG_INFO;
    L.format = LOG_TEXT;
}
