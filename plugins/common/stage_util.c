/*
 * stage_util.c — helpers several stages share (see stage_util.h): JSON
 * members, money rounding, UTF-8-safe cutting and quoting, UTC dates, bound
 * arguments and statement helpers over the host's db_* services, and state
 * allocation. Compiled into each stage that uses it, hidden there.
 */
#define _XOPEN_SOURCE 700 /* strptime */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1 /* timegm */
#endif

#include "stage_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- JSON ------------------------------------------------------------------ */

int64_t stage_json_int(const json_t *obj, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

const char *stage_json_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

/* ---- money ----------------------------------------------------------------- */

int64_t stage_div_round(int64_t num, int64_t den)
{
    if (den <= 0) {
        return 0;
    }
    int64_t q = num / den;
    int64_t r = num % den;
    int64_t ar = r < 0 ? -r : r;
    /* |r| >= den / 2, written without overflow; den == 1 leaves no rest. */
    if (ar != 0 && ar >= den - ar) {
        q += num < 0 ? -1 : 1;
    }
    return q;
}

int64_t stage_cents(int64_t v)
{
    /* The rounded quotient is at most INT64_MAX / 100 in size (rounding
     * up past it would need |v| > INT64_MAX), so * 100 fits. */
    return stage_div_round(v, 100) * 100;
}

/* ---- text ------------------------------------------------------------------ */

static bool is_continuation(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

size_t stage_utf8_floor(const char *s, size_t len)
{
    while (len > 0 && is_continuation(s[len])) {
        len--;
    }
    return len;
}

void stage_utf8_cut(const char *s, size_t max_chars, char *out, size_t outlen)
{
    size_t i = 0;
    size_t chars = 0;
    if (outlen == 0) {
        return;
    }
    if (s == NULL) {
        s = "";
    }
    while (s[i] != '\0') {
        size_t n = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xF0) {
            n = 4;
        } else if (c >= 0xE0) {
            n = 3;
        } else if (c >= 0xC0) {
            n = 2;
        }
        if (chars + 1 > max_chars || i + n >= outlen) {
            break;
        }
        size_t k = 0;
        while (k < n && s[i + k] != '\0') {
            k++;
        }
        if (k < n) {
            break; /* a truncated character at the end: drop it */
        }
        i += n;
        chars++;
    }
    memcpy(out, s, i);
    out[i] = '\0';
}

void stage_quote(const char *s, size_t max_chars, char *out, size_t outlen)
{
    size_t o = 0;
    size_t chars = 0;
    size_t i = 0;
    if (outlen == 0) {
        return;
    }
    if (s == NULL) {
        s = "";
    }
    while (s[i] != '\0' && chars < max_chars && o + 5 < outlen) {
        unsigned char c = (unsigned char)s[i];
        if (!is_continuation(s[i])) {
            chars++;
        }
        out[o++] = (c < 0x20 || c == 0x7f || c == '\'') ? '?' : (char)c;
        i++;
    }
    /* Never end inside a character: finish it when there is room... */
    while (s[i] != '\0' && is_continuation(s[i]) && o + 5 < outlen) {
        out[o++] = s[i++];
    }
    /* ... else drop its first bytes (out holds s's bytes one for one). */
    while (o > 0 && is_continuation(s[i])) {
        o--;
        i--;
    }
    if (s[i] != '\0' && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int stage_copy(const char *v, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s", v != NULL ? v : "");
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* ---- time ------------------------------------------------------------------ */

int stage_parse_utc(const char *s, bool with_time, int64_t *ms)
{
    struct tm tm;
    struct tm back;
    if (s == NULL) {
        return -1;
    }
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, with_time ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d", &tm);
    if (end == NULL || *end != '\0') {
        return -1;
    }
    struct tm want = tm;
    time_t t = timegm(&tm);
    /* timegm normalizes (February 30th becomes March 2nd): a time that
     * does not come back as written did not exist. */
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != want.tm_year ||
        back.tm_mon != want.tm_mon || back.tm_mday != want.tm_mday ||
        back.tm_hour != want.tm_hour || back.tm_min != want.tm_min || back.tm_sec != want.tm_sec) {
        return -1;
    }
    *ms = (int64_t)t * 1000;
    return 0;
}

/* ---- database ---------------------------------------------------------------- */

struct stage_arg stage_arg_text(const char *s)
{
    struct stage_arg a = {STAGE_ARG_TEXT, s, 0};
    return a;
}

struct stage_arg stage_arg_int(int64_t v)
{
    struct stage_arg a = {STAGE_ARG_INT, NULL, v};
    return a;
}

struct stage_arg stage_arg_dec(int64_t v)
{
    struct stage_arg a = {STAGE_ARG_DECIMAL, NULL, v};
    return a;
}

struct stage_arg stage_arg_time(int64_t ms)
{
    struct stage_arg a = {STAGE_ARG_TIME, NULL, ms};
    return a;
}

enum cpb_status stage_db_bind_at(const struct cpb_host *host, struct cpb_stmt *stmt, unsigned first,
                                 const struct stage_arg *args, unsigned n)
{
    enum cpb_status rc = CPB_OK;
    for (unsigned i = 0; rc == CPB_OK && i < n; i++) {
        unsigned idx = first + i;
        switch (args[i].type) {
        case STAGE_ARG_TEXT:
            rc = host->db_bind_text(stmt, idx, args[i].text);
            break;
        case STAGE_ARG_INT:
            rc = host->db_bind_int(stmt, idx, args[i].value);
            break;
        case STAGE_ARG_DECIMAL:
            rc = host->db_bind_decimal(stmt, idx, args[i].value);
            break;
        case STAGE_ARG_TIME:
            rc = host->db_bind_time(stmt, idx, args[i].value);
            break;
        }
    }
    return rc;
}

enum cpb_status stage_db_bind(const struct cpb_host *host, struct cpb_stmt *stmt,
                              const struct stage_arg *args, unsigned n)
{
    return stage_db_bind_at(host, stmt, 1, args, n);
}

enum cpb_status stage_db_prepare(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                                 const struct stage_arg *args, unsigned n, struct cpb_stmt **stmt)
{
    enum cpb_status rc = CPB_OK;
    if (*stmt == NULL) {
        rc = host->db_prepare(ctx, sql, stmt);
    }
    if (rc == CPB_OK) {
        rc = stage_db_bind(host, *stmt, args, n);
    }
    return rc;
}

enum cpb_status stage_db_exec(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                              const struct stage_arg *args, unsigned n, int64_t *rows)
{
    struct cpb_stmt *stmt = NULL;
    enum cpb_status rc = stage_db_prepare(host, ctx, sql, args, n, &stmt);
    if (rc == CPB_OK) {
        rc = host->db_execute(stmt, rows);
    }
    host->db_finalize(stmt);
    return rc;
}

enum cpb_status stage_db_query(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                               const struct stage_arg *args, unsigned n, struct cpb_stmt **stmt)
{
    enum cpb_status rc = stage_db_prepare(host, ctx, sql, args, n, stmt);
    if (rc == CPB_OK) {
        rc = host->db_execute(*stmt, NULL);
    }
    if (rc == CPB_OK) {
        rc = host->db_fetch(*stmt);
    }
    return rc;
}

/* ---- init / fini ------------------------------------------------------------- */

void *stage_state_new(const struct cpb_host *host, struct cpb_ctx *ctx, size_t size, void **state)
{
    void *p = calloc(1, size);
    *state = p;
    if (p == NULL) {
        host->log(ctx, CPB_LOG_ERROR, "out of memory");
    }
    return p;
}

void stage_state_free(void *state)
{
    free(state);
}

int stage_init_fail(const struct cpb_host *host, struct cpb_ctx *ctx, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    host->reason(ctx, "config.invalid", "%s", msg);
    return -1;
}
