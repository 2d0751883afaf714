/*
 * host.c — the services stages call (see host.h and cpbridge/stage.h).
 * Database and HTTP calls go through thin wrappers that record the failure
 * as the call's reason, so a stage can simply return the status it got and
 * the order still carries an actionable message.
 */
#include "engine/host.h"

#include <math.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "engine/staging.h"
#include "lib/buf.h"
#include "services/http.h"
#include "services/httpd.h"
#include "services/log.h"

/* A reason given with reason_at for one record of a process_batch call. */
struct batch_reason {
    char code[64];
    char msg[1024];
};

struct cpb_ctx {
    const char *stage_id;
    struct host_env *env;
    struct http_client *http;
    char reason_code[64];
    char reason_msg[1024];
    struct batch_reason *batch; /* during process_batch: one per record */
    size_t n_batch;
    long retry_after_ms;
    char *state_value;
    json_t *metrics; /* name -> number, from metric_add */
};

int64_t host_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void set_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, va_list ap)
{
    snprintf(ctx->reason_code, sizeof ctx->reason_code, "%s", code != NULL ? code : "");
    vsnprintf(ctx->reason_msg, sizeof ctx->reason_msg, fmt, ap);
}

static void reason_f(struct cpb_ctx *ctx, const char *code, const char *fmt, ...) CPB_PRINTF(3, 4);
static void reason_f(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_reason(ctx, code, fmt, ap);
    va_end(ap);
}

static void h_log(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, ctx->stage_id, ctx->env->order_id, fmt, ap);
    va_end(ap);
}

static void h_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_reason(ctx, code, fmt, ap);
    va_end(ap);
}

static void h_event(struct cpb_ctx *ctx, const char *name, json_t *details)
{
    if (ctx->env->event != NULL && name != NULL) {
        ctx->env->event(ctx->env->owner, ctx, name, details);
    }
}

/* Metric names become Prometheus label values: keep them plain. */
static bool metric_name_ok(const char *name)
{
    size_t n = 0;
    for (; name != NULL && name[n] != '\0'; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return n > 0 && n <= 64;
}

static void h_metric_add(struct cpb_ctx *ctx, const char *name, double value)
{
    if (!metric_name_ok(name) || !isfinite(value)) {
        log_msg(CPB_LOG_WARN, ctx->stage_id, 0,
                "metric_add ignored: a name is 1 to 64 of a-z, 0-9 and _, and a value a finite"
                " number");
        return;
    }
    if (ctx->metrics == NULL) {
        ctx->metrics = json_object();
        if (ctx->metrics == NULL) {
            return;
        }
    }
    double now = json_number_value(json_object_get(ctx->metrics, name));
    json_object_set_new(ctx->metrics, name, json_real(now + value));
}

static enum cpb_status h_emit(struct cpb_ctx *ctx, json_t *order)
{
    if (ctx->env->emit == NULL) {
        reason_f(ctx, "host.emit", "emit is only available to source stages during a run");
        return CPB_FAIL;
    }
    return ctx->env->emit(ctx->env->owner, ctx, order);
}

static enum cpb_status h_emit_many(struct cpb_ctx *ctx, json_t *const *orders, size_t n,
                                   enum cpb_status *out)
{
    if (ctx->env->emit == NULL || (n > 0 && (orders == NULL || out == NULL))) {
        reason_f(ctx, "host.emit", "%s",
                 ctx->env->emit == NULL
                     ? "emit_many is only available to source stages during a run"
                     : "emit_many: bad arguments");
        for (size_t i = 0; out != NULL && i < n; i++) {
            out[i] = CPB_FAIL;
        }
        return CPB_FAIL;
    }
    if (ctx->env->emit_many != NULL) {
        return ctx->env->emit_many(ctx->env->owner, ctx, orders, n, out);
    }
    enum cpb_status ret = CPB_OK; /* an owner that stages one at a time */
    for (size_t i = 0; i < n; i++) {
        out[i] = ctx->env->emit(ctx->env->owner, ctx, orders[i]);
        ret = out[i] == CPB_RETRY ? CPB_RETRY : ret;
    }
    return ret;
}

static enum cpb_status h_emit_records(struct cpb_ctx *ctx, const char *kind,
                                      const char *const *keys, json_t *const *payloads, size_t n,
                                      enum cpb_status *out)
{
    bool allowed = ctx->env->emit_records != NULL && ctx->env->in_source;
    if (!allowed || (n > 0 && (keys == NULL || payloads == NULL || out == NULL))) {
        reason_f(ctx, "host.emit", "%s",
                 !allowed ? "emit_records is only available to source stages in process during"
                            " a run"
                          : "emit_records: bad arguments");
        for (size_t i = 0; out != NULL && i < n; i++) {
            out[i] = CPB_FAIL;
        }
        return CPB_FAIL;
    }
    return ctx->env->emit_records(ctx->env->owner, ctx, kind, keys, payloads, n, out);
}

static const char *h_delivery_header(const struct cpb_delivery *d, const char *name)
{
    if (d == NULL || d->priv == NULL || name == NULL) {
        return NULL;
    }
    return httpd_header(d->priv, name);
}

static enum cpb_status h_withdraw(struct cpb_ctx *ctx, const char *external_id, const char *why)
{
    if (ctx->env->withdraw == NULL || external_id == NULL) {
        reason_f(ctx, "host.withdraw", "%s",
                 external_id == NULL ? "withdraw: no order id"
                                     : "withdraw is only available to a source stage receiving a"
                                       " delivery");
        return CPB_FAIL;
    }
    return ctx->env->withdraw(ctx->env->owner, ctx, external_id, why != NULL ? why : "");
}

/* "<pipeline>/<stage id>/<key>": state is per pipeline and instance. */
static int state_key(struct cpb_ctx *ctx, const char *key, struct buf *out)
{
    return buf_addf(out, "%s/%s/%s", ctx->env->pipeline, ctx->stage_id, key);
}

static enum cpb_status no_db(struct cpb_ctx *ctx, const char *what)
{
    reason_f(ctx, "host.no_database", "%s needs the database, which is not connected", what);
    return CPB_FAIL;
}

static enum cpb_status db_failed(struct cpb_ctx *ctx, enum cpb_status rc, const char *what)
{
    if (rc == CPB_RETRY || rc == CPB_FAIL) {
        reason_f(ctx, rc == CPB_RETRY ? "db.retryable" : "db.error", "%s: %s", what,
                 ctx->env->db != NULL ? db_last_error(ctx->env->db) : "not connected");
    }
    return rc;
}

static enum cpb_status h_state_get(struct cpb_ctx *ctx, const char *key, const char **value)
{
    struct buf k = BUF_INIT;
    enum cpb_status rc;
    *value = NULL;
    if (ctx->env->db == NULL) {
        return no_db(ctx, "state_get");
    }
    free(ctx->state_value);
    ctx->state_value = NULL;
    state_key(ctx, key, &k);
    rc = staging_state_get(ctx->env->db, buf_str(&k), &ctx->state_value);
    buf_free(&k);
    *value = ctx->state_value;
    return db_failed(ctx, rc, "reading stage state");
}

static enum cpb_status h_state_set(struct cpb_ctx *ctx, const char *key, const char *value)
{
    struct buf k = BUF_INIT;
    enum cpb_status rc;
    if (ctx->env->db == NULL) {
        return no_db(ctx, "state_set");
    }
    if (ctx->env->in_order_tx) {
        reason_f(ctx, "host.state_in_tx", "state_set cannot be called inside an order's step");
        return CPB_FAIL;
    }
    state_key(ctx, key, &k);
    rc = staging_state_set(ctx->env->db, buf_str(&k), value, host_now_ms());
    buf_free(&k);
    return db_failed(ctx, rc, "saving stage state");
}

static const char *h_db_dialect(struct cpb_ctx *ctx)
{
    return ctx->env->db != NULL ? db_dialect_name(db_get_dialect(ctx->env->db)) : "";
}

static enum cpb_status h_db_prepare(struct cpb_ctx *ctx, const char *sql, struct cpb_stmt **stmt)
{
    *stmt = NULL;
    if (ctx->env->db == NULL) {
        return no_db(ctx, "db_prepare");
    }
    if (!ctx->env->in_order_tx && !ctx->env->in_source) {
        reason_f(ctx, "host.no_transaction",
                 "db_prepare is only available to step stages inside an order's transaction"
                 " and to source stages while they run");
        return CPB_FAIL;
    }
    enum cpb_status rc = db_prepare(ctx->env->db, sql, stmt);
    /* The statement services are handed only the statement: its tag names
     * the context whose reason a failure becomes. */
    db_stmt_set_owner(*stmt, ctx);
    return db_failed(ctx, rc, "preparing a statement");
}

/* Wrappers that record database failures as the reason of the stage that
 * prepared the statement. */
static enum cpb_status rec_db(struct cpb_stmt *s, enum cpb_status rc, const char *what)
{
    struct cpb_ctx *ctx = db_stmt_owner(s);
    if (ctx != NULL) {
        return db_failed(ctx, rc, what);
    }
    return rc;
}

static enum cpb_status h_bind_text(struct cpb_stmt *s, unsigned i, const char *v)
{
    return rec_db(s, db_bind_text(s, i, v), "binding a value");
}

static enum cpb_status h_bind_int(struct cpb_stmt *s, unsigned i, int64_t v)
{
    return rec_db(s, db_bind_int(s, i, v), "binding a value");
}

static enum cpb_status h_bind_decimal(struct cpb_stmt *s, unsigned i, int64_t v)
{
    return rec_db(s, db_bind_decimal(s, i, v), "binding a value");
}

static enum cpb_status h_bind_null(struct cpb_stmt *s, unsigned i)
{
    return rec_db(s, db_bind_null(s, i), "binding a value");
}

static enum cpb_status h_bind_time(struct cpb_stmt *s, unsigned i, int64_t v)
{
    return rec_db(s, db_bind_time(s, i, v), "binding a value");
}

static enum cpb_status h_execute(struct cpb_stmt *s, int64_t *rows)
{
    return rec_db(s, db_execute(s, rows), "executing a statement");
}

static enum cpb_status h_fetch(struct cpb_stmt *s)
{
    return rec_db(s, db_fetch(s), "fetching a row");
}

static enum cpb_status h_col_text(struct cpb_stmt *s, unsigned c, const char **v)
{
    return rec_db(s, db_col_text(s, c, v), "reading a column");
}

static enum cpb_status h_col_int(struct cpb_stmt *s, unsigned c, int64_t *v, bool *n)
{
    return rec_db(s, db_col_int(s, c, v, n), "reading a column");
}

static enum cpb_status h_col_decimal(struct cpb_stmt *s, unsigned c, int64_t *v, bool *n)
{
    return rec_db(s, db_col_decimal(s, c, v, n), "reading a column");
}

static enum cpb_status h_col_time(struct cpb_stmt *s, unsigned c, int64_t *v, bool *n)
{
    return rec_db(s, db_col_time(s, c, v, n), "reading a column");
}

/* The stage's HTTP client, made on first use; NULL (reason set) when out
 * of memory. */
static struct http_client *ctx_http(struct cpb_ctx *ctx)
{
    if (ctx->http == NULL) {
        ctx->http = http_client_new(ctx->stage_id);
        if (ctx->http == NULL) {
            reason_f(ctx, "host.oom", "out of memory creating an HTTP client");
        }
    }
    return ctx->http;
}

/* Keep the longest Retry-After and, for a failure, the reason. */
static void rec_http(struct cpb_ctx *ctx, enum cpb_status rc, const struct cpb_http_response *resp)
{
    if (resp->retry_after_ms > ctx->retry_after_ms) {
        ctx->retry_after_ms = resp->retry_after_ms;
    }
    if (rc != CPB_OK) {
        reason_f(ctx, rc == CPB_RETRY ? "http.retryable" : "http.error", "%s", resp->error);
    }
}

static enum cpb_status h_http(struct cpb_ctx *ctx, const struct cpb_http_request *req,
                              struct cpb_http_response *resp)
{
    if (ctx_http(ctx) == NULL) {
        memset(resp, 0, sizeof *resp);
        resp->retry_after_ms = -1;
        return CPB_RETRY;
    }
    enum cpb_status rc = http_perform(ctx->http, req, resp);
    rec_http(ctx, rc, resp);
    return rc;
}

static enum cpb_status h_http_many(struct cpb_ctx *ctx, const struct cpb_http_request *const *reqs,
                                   struct cpb_http_response *resps, enum cpb_status *st, size_t n,
                                   unsigned max_parallel)
{
    if (ctx_http(ctx) == NULL) {
        for (size_t i = 0; resps != NULL && st != NULL && i < n; i++) {
            memset(&resps[i], 0, sizeof resps[i]);
            resps[i].retry_after_ms = -1;
            st[i] = CPB_RETRY;
        }
        return CPB_FAIL;
    }
    enum cpb_status rc = http_perform_many(ctx->http, reqs, resps, st, n, max_parallel);
    if (rc != CPB_OK) {
        reason_f(ctx, "host.http_many", "%s",
                 n > 0 && resps != NULL ? resps[0].error : "http_many: bad arguments");
        return rc;
    }
    /* The last failure is the call's reason; each st[i] tells its own. */
    for (size_t i = 0; i < n; i++) {
        rec_http(ctx, st[i], &resps[i]);
    }
    return rc;
}

static void h_reason_at(struct cpb_ctx *ctx, size_t i, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (ctx->batch != NULL && i < ctx->n_batch) {
        struct batch_reason *b = &ctx->batch[i];
        snprintf(b->code, sizeof b->code, "%s", code != NULL ? code : "");
        vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    } else {
        log_msg(CPB_LOG_WARN, ctx->stage_id, 0,
                "reason_at(%zu) outside a process_batch call of that many records: kept as the "
                "stage's reason",
                i);
        set_reason(ctx, code, fmt, ap);
    }
    va_end(ap);
}

static int64_t h_now_ms(struct cpb_ctx *ctx)
{
    (void)ctx;
    return host_now_ms();
}

static void h_uuid(struct cpb_ctx *ctx, char out[37])
{
    unsigned char b[16];
    (void)ctx;
    if (RAND_bytes(b, sizeof b) != 1) {
        /* The CSPRNG failing is not survivable for unique ids. */
        memset(b, 0, sizeof b);
        log_msg(CPB_LOG_ERROR, NULL, 0, "RAND_bytes failed: UUIDs are not random");
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void h_redact(struct cpb_ctx *ctx, const char *secret)
{
    if (log_redact_add(secret) != 0) {
        log_msg(CPB_LOG_WARN, ctx->stage_id, 0, "could not register a secret for redaction");
    }
}

static const char *h_stage_id(struct cpb_ctx *ctx)
{
    return ctx->stage_id;
}

static const char *h_pipeline_name(struct cpb_ctx *ctx)
{
    return ctx->env->pipeline;
}

static const struct cpb_host services = {
    .size = sizeof(struct cpb_host),
    .abi_major = CPB_ABI_MAJOR,
    .abi_minor = CPB_ABI_MINOR,
    .log = h_log,
    .reason = h_reason,
    .event = h_event,
    .metric_add = h_metric_add,
    .emit = h_emit,
    .state_get = h_state_get,
    .state_set = h_state_set,
    .db_dialect = h_db_dialect,
    .db_prepare = h_db_prepare,
    .db_bind_text = h_bind_text,
    .db_bind_int = h_bind_int,
    .db_bind_decimal = h_bind_decimal,
    .db_bind_null = h_bind_null,
    .db_execute = h_execute,
    .db_fetch = h_fetch,
    .db_col_text = h_col_text,
    .db_col_int = h_col_int,
    .db_col_decimal = h_col_decimal,
    .db_finalize = db_finalize,
    .db_bind_time = h_bind_time,
    .db_col_time = h_col_time,
    .http = h_http,
    .http_header = http_header,
    .http_free = http_response_free,
    .now_ms = h_now_ms,
    .uuid = h_uuid,
    .redact = h_redact,
    .stage_id = h_stage_id,
    .pipeline_name = h_pipeline_name,
    .http_many = h_http_many,
    .reason_at = h_reason_at,
    .emit_many = h_emit_many,
    .delivery_header = h_delivery_header,
    .withdraw = h_withdraw,
    .emit_records = h_emit_records,
};

const struct cpb_host *host_services(void)
{
    return &services;
}

struct cpb_ctx *host_ctx_new(const char *stage_id, struct host_env *env)
{
    struct cpb_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return NULL;
    }
    ctx->stage_id = stage_id;
    ctx->env = env;
    ctx->retry_after_ms = -1;
    return ctx;
}

void host_ctx_free(struct cpb_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    http_client_free(ctx->http);
    host_batch_end(ctx);
    free(ctx->state_value);
    json_decref(ctx->metrics);
    free(ctx);
}

const char *host_reason_code(const struct cpb_ctx *ctx)
{
    return ctx->reason_code;
}

const char *host_reason_message(const struct cpb_ctx *ctx)
{
    return ctx->reason_msg;
}

int host_batch_begin(struct cpb_ctx *ctx, size_t n)
{
    host_batch_end(ctx);
    ctx->batch = calloc(n > 0 ? n : 1, sizeof *ctx->batch);
    if (ctx->batch == NULL) {
        return -1;
    }
    ctx->n_batch = n;
    return 0;
}

/* Record i's own reason when it has one, else the call's. */
static const struct batch_reason *batch_at(const struct cpb_ctx *ctx, size_t i)
{
    if (ctx->batch == NULL || i >= ctx->n_batch) {
        return NULL;
    }
    const struct batch_reason *b = &ctx->batch[i];
    return b->code[0] != '\0' || b->msg[0] != '\0' ? b : NULL;
}

const char *host_batch_reason_code(const struct cpb_ctx *ctx, size_t i)
{
    const struct batch_reason *b = batch_at(ctx, i);
    return b != NULL ? b->code : ctx->reason_code;
}

const char *host_batch_reason_message(const struct cpb_ctx *ctx, size_t i)
{
    const struct batch_reason *b = batch_at(ctx, i);
    return b != NULL ? b->msg : ctx->reason_msg;
}

void host_batch_end(struct cpb_ctx *ctx)
{
    free(ctx->batch);
    ctx->batch = NULL;
    ctx->n_batch = 0;
}

void host_reason_clear(struct cpb_ctx *ctx)
{
    ctx->reason_code[0] = '\0';
    ctx->reason_msg[0] = '\0';
    ctx->retry_after_ms = -1;
}

json_t *host_ctx_metrics(const struct cpb_ctx *ctx)
{
    return ctx->metrics;
}

long host_retry_after_ms(const struct cpb_ctx *ctx)
{
    return ctx->retry_after_ms;
}
