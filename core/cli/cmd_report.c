/*
 * cmd_report.c — `cpbridge report`: how the pipeline has been doing over a
 * period, as one self-contained HTML page (report_html.c draws it) or, with
 * --json, as the aggregates the page is drawn from.
 *
 * What is read, and how:
 *  - outcomes per hour (per day for periods over 14 days): the audit trail's
 *    transitions to APPLIED, INVALID and DEAD, counted with GROUP BY in SQL;
 *  - order placed (ORDER_DT) to APPLIED_DT per day: count and maximum with
 *    GROUP BY, the median and 95th percentile by the nearest-rank rule read
 *    from one query of the durations sorted in SQL, picking the ranks as the
 *    rows stream past (no value is kept in memory);
 *  - per-stage latency: the per-step timings the runner writes in the
 *    message of each 'applied' event ("validate 1.2 ms, create-order ..."):
 *    a text SQL cannot sort by, so each stage's values (4 bytes per applied
 *    order and stage in the period) are kept, sorted and ranked here; the
 *    event's DURATION_MS gives the whole transaction;
 *  - states, oldest pending and last success: metrics_snapshot, as status
 *    and health read them; runs, dead letters and changed orders: plain
 *    queries with a row limit.
 * Date arithmetic differs per dialect: every dialect-specific expression is
 * in the one table below, with all three variants. Every value is bound.
 * Every text from the database is cleaned (ops_clean) before it goes into
 * the aggregates, and escaped for HTML by report_html.c.
 */
#include "cli/ops_common.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/report.h"
#include "engine/config.h"
#include "engine/metrics.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_report[] =
    "usage: cpbridge report PIPELINE [--since PERIOD] [-o FILE] [--json]\n"
    "\n"
    "Writes one self-contained HTML page (inline CSS and SVG, no script, nothing\n"
    "fetched: open it from disk or attach it to an email) on how the pipeline did\n"
    "over the period: orders applied / invalid / dead per hour (per day beyond\n"
    "14d), time from order placed to applied per day (median, p95, max), per-stage\n"
    "latency, orders per state, oldest pending, last success, the dead-letter and\n"
    "invalid orders with the command that fixes each, failed runs, and orders\n"
    "changed in the store after they were applied.\n"
    "\n"
    "  --since PERIOD   how far back: 1h to 366d, e.g. 24h, 7d (default 7d)\n"
    "  -o, --output FILE  write to FILE instead of standard output\n"
    "  --json           the same aggregates as JSON instead of HTML\n"
    "\n"
    "Exit: 0 ok; 64 usage; 66 no such pipeline file; 69 database unreachable;\n"
    "70 out of memory; 74 FILE cannot be written; 78 configuration error or\n"
    "schema missing.\n";

#define HOUR_MS         INT64_C(3600000)
#define DAY_MS          INT64_C(86400000)
#define MAX_PERIOD_MS   (366 * DAY_MS)
#define HOURLY_UP_TO_MS (14 * DAY_MS)
#define LIST_LIMIT      200
#define RUN_LIMIT       50
#define MAX_STAGES      16

/* The dialect-specific SQL of the report, all of it: epoch hour and day
 * numbers of a timestamp column, and order placed to applied in ms. */
struct report_sql {
    const char *event_hour;
    const char *event_day;
    const char *applied_day;
    const char *placed_to_applied_ms;
};

static const struct report_sql dialect_sql[] = {
    [DB_SQLITE] = {"(CAST(strftime('%s', EVENT_DT) AS INTEGER) / 3600)",
                   "(CAST(strftime('%s', EVENT_DT) AS INTEGER) / 86400)",
                   "(CAST(strftime('%s', APPLIED_DT) AS INTEGER) / 86400)",
                   "CAST(ROUND((julianday(APPLIED_DT) - julianday(ORDER_DT)) * 86400000.0)"
                   " AS INTEGER)"},
    [DB_POSTGRESQL] = {"CAST(FLOOR(EXTRACT(EPOCH FROM EVENT_DT) / 3600) AS BIGINT)",
                       "CAST(FLOOR(EXTRACT(EPOCH FROM EVENT_DT) / 86400) AS BIGINT)",
                       "CAST(FLOOR(EXTRACT(EPOCH FROM APPLIED_DT) / 86400) AS BIGINT)",
                       "CAST(ROUND(EXTRACT(EPOCH FROM (APPLIED_DT - ORDER_DT)) * 1000) AS BIGINT)"},
    [DB_MSSQL] = {"DATEDIFF(HOUR, '19700101', EVENT_DT)", "DATEDIFF(DAY, '19700101', EVENT_DT)",
                  "DATEDIFF(DAY, '19700101', APPLIED_DT)",
                  "DATEDIFF_BIG(MILLISECOND, ORDER_DT, APPLIED_DT)"},
};

/* 1-based nearest rank of percentile p (1..100) among n >= 1 values. */
static int64_t rank_of(int64_t n, int p)
{
    int64_t r = (n * p + 99) / 100;
    return r < 1 ? 1 : r;
}

/* A query's failure or out of memory: the exit code, message printed. */
static int failed(const struct ops *op, bool oom, const char *what)
{
    if (oom) {
        return ops_fail(op, CPB_EXIT_SOFTWARE, "out of memory while %s", what);
    }
    return ops_db_failed(op, what);
}

/* ---- outcomes per hour (or day) ------------------------------------------ */

static int read_outcomes(struct ops *op, const struct report_sql *q, int64_t since,
                         int64_t bucket_ms, json_t *r)
{
    const char *expr = bucket_ms == HOUR_MS ? q->event_hour : q->event_day;
    struct buf sql = BUF_INIT;
    struct cpb_stmt *st = NULL;
    json_t *arr = json_array();
    json_t *cur = NULL;
    int64_t cur_bucket = INT64_MIN;
    int64_t tot[3] = {0, 0, 0};
    static const char *const keys[] = {"applied", "invalid", "dead"};
    int code = 0;
    enum cpb_status rc = CPB_FAIL;

    buf_addf(&sql,
             "SELECT %s, STATUS_TO, COUNT(*) FROM USER_ORDER_EVENT WHERE EVENT_DT >= ?"
             " AND EVENT_DT <= ? AND STATUS_TO IN ('APPLIED', 'INVALID', 'DEAD')"
             " GROUP BY %s, STATUS_TO ORDER BY 1",
             expr, expr);
    struct sql_arg a[] = {sql_time(since), sql_time(op->now)};
    /* r owns arr from here, even when setting it fails. */
    if (json_object_set_new(r, "per_bucket", arr) != 0 || sql.oom) {
        code = failed(op, true, "reading outcomes");
        goto out;
    }
    rc = sql_query(op->db, buf_str(&sql), a, SQL_NARGS(a), &st);
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        int64_t bucket = 0;
        int64_t n = 0;
        char to[16];
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        ops_rd_int(&d, &bucket, NULL);
        ops_rd_text(&d, to, sizeof to, NULL);
        ops_rd_int(&d, &n, NULL);
        rc = d.rc;
        if (rc != CPB_OK) {
            break;
        }
        if (cur == NULL || bucket != cur_bucket) {
            cur = json_pack("{s:o, s:I, s:I, s:I}", "start", ops_jwhen(bucket * bucket_ms, true),
                            "applied", (json_int_t)0, "invalid", (json_int_t)0, "dead",
                            (json_int_t)0);
            if (cur == NULL || json_array_append_new(arr, cur) != 0) {
                code = failed(op, true, "reading outcomes");
                goto out;
            }
            cur_bucket = bucket;
        }
        int k = strcmp(to, "APPLIED") == 0 ? 0 : strcmp(to, "INVALID") == 0 ? 1 : 2;
        json_object_set_new(cur, keys[k], json_integer((json_int_t)n));
        tot[k] += n;
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading outcomes per hour");
        goto out;
    }
    json_object_set_new(r, "outcomes",
                        json_pack("{s:I, s:I, s:I}", "applied", (json_int_t)tot[0], "invalid",
                                  (json_int_t)tot[1], "dead", (json_int_t)tot[2]));
out:
    db_finalize(st);
    buf_free(&sql);
    return code;
}

/* ---- order placed to applied, per day ------------------------------------ */

struct day_stat {
    int64_t day, n, max, median, p95;
};

static int read_placed_to_applied(struct ops *op, const struct report_sql *q, int64_t since,
                                  json_t *r)
{
    struct buf counts = BUF_INIT;
    struct buf values = BUF_INIT;
    struct cpb_stmt *st = NULL;
    struct day_stat *days = NULL;
    size_t ndays = 0;
    size_t cap = 0;
    json_t *arr = json_array();
    int code = 0;
    enum cpb_status rc = CPB_FAIL;
    static const char where[] = " FROM USER_ORDER_STAGING WHERE APPLIED_DT >= ? AND"
                                " APPLIED_DT <= ? AND ORDER_DT IS NOT NULL";
    struct sql_arg a[] = {sql_time(since), sql_time(op->now)};

    buf_addf(&counts, "SELECT %s, COUNT(*), MAX(%s)%s GROUP BY %s ORDER BY 1", q->applied_day,
             q->placed_to_applied_ms, where, q->applied_day);
    buf_addf(&values, "SELECT %s, %s%s ORDER BY 1, 2", q->applied_day, q->placed_to_applied_ms,
             where);
    if (json_object_set_new(r, "placed_to_applied", arr) != 0 || counts.oom || values.oom) {
        code = failed(op, true, "reading order latency");
        goto out;
    }

    /* The days, their counts and maxima. */
    rc = sql_query(op->db, buf_str(&counts), a, SQL_NARGS(a), &st);
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        if (ndays == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            struct day_stat *nd = realloc(days, ncap * sizeof *nd);
            if (nd == NULL) {
                code = failed(op, true, "reading order latency");
                goto out;
            }
            days = nd;
            cap = ncap;
        }
        struct day_stat *ds = &days[ndays];
        memset(ds, 0, sizeof *ds);
        ops_rd_int(&d, &ds->day, NULL);
        ops_rd_int(&d, &ds->n, NULL);
        ops_rd_int(&d, &ds->max, NULL);
        rc = d.rc;
        if (rc == CPB_OK && ds->n > 0) {
            ndays++;
        }
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading order latency per day");
        goto out;
    }
    db_finalize(st);
    st = NULL;

    /* The sorted durations: pick each day's ranks as they pass. */
    rc = sql_query(op->db, buf_str(&values), a, SQL_NARGS(a), &st);
    size_t di = 0;
    int64_t seen = 0;
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        int64_t day = 0;
        int64_t ms = 0;
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        ops_rd_int(&d, &day, NULL);
        ops_rd_int(&d, &ms, NULL);
        rc = d.rc;
        if (rc != CPB_OK) {
            break;
        }
        while (di < ndays && days[di].day < day) {
            di++;
            seen = 0;
        }
        if (di == ndays || days[di].day != day) {
            continue; /* a row the count did not see (written in between) */
        }
        seen++;
        if (seen == rank_of(days[di].n, 50)) {
            days[di].median = ms;
        }
        if (seen == rank_of(days[di].n, 95)) {
            days[di].p95 = ms;
        }
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading order latency per day");
        goto out;
    }
    for (size_t i = 0; i < ndays; i++) {
        char day[40];
        ops_fmt_when(days[i].day * DAY_MS, true, day, sizeof day);
        day[10] = '\0';
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I}", "day", day, "orders",
                              (json_int_t)days[i].n, "median_ms", (json_int_t)days[i].median,
                              "p95_ms", (json_int_t)days[i].p95, "max_ms", (json_int_t)days[i].max);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            code = failed(op, true, "reading order latency");
            goto out;
        }
    }
out:
    db_finalize(st);
    free(days);
    buf_free(&counts);
    buf_free(&values);
    return code;
}

/* ---- per-stage latency --------------------------------------------------- */

struct stage_acc {
    char id[65];
    uint32_t *v; /* tenths of a millisecond */
    size_t n, cap;
};

static int acc_add(struct stage_acc *s, uint32_t tenths)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap == 0 ? 256 : s->cap * 2;
        uint32_t *nv = realloc(s->v, ncap * sizeof *nv);
        if (nv == NULL) {
            return -1;
        }
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = tenths;
    return 0;
}

/* "12.3" (digits, optional '.' and one digit) to tenths; -1 on junk. */
static int64_t parse_tenths(const char *s, size_t len)
{
    int64_t v = 0;
    size_t i = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > INT64_C(100000000)) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0) {
        return -1;
    }
    v *= 10;
    if (i < len) {
        if (s[i] != '.' || i + 2 != len || s[i + 1] < '0' || s[i + 1] > '9') {
            return -1;
        }
        v += s[i + 1] - '0';
    }
    return v;
}

/* One "id 1.2 ms, id 3.4 ms" text into the accumulators; parts that do
 * not read as "ID NUMBER ms" are skipped (the text is from the database). */
static int add_timings(struct stage_acc *acc, size_t *nacc, const char *msg)
{
    const char *p = msg;
    while (p != NULL && *p != '\0') {
        const char *end = strstr(p, ", ");
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *next = end != NULL ? end + 2 : NULL;
        /* "ID N ms": the number sits between the last two spaces. */
        if (len > 5 && memcmp(p + len - 3, " ms", 3) == 0) {
            size_t num_end = len - 3;
            size_t sp = num_end;
            while (sp > 0 && p[sp - 1] != ' ') {
                sp--;
            }
            int64_t t = sp > 1 ? parse_tenths(p + sp, num_end - sp) : -1;
            size_t idlen = sp - 1;
            if (t >= 0 && t <= UINT32_MAX && idlen < sizeof acc[0].id) {
                size_t i = 0;
                while (i < *nacc && (strlen(acc[i].id) != idlen || memcmp(acc[i].id, p, idlen))) {
                    i++;
                }
                if (i == *nacc && *nacc < MAX_STAGES) {
                    memcpy(acc[i].id, p, idlen);
                    acc[i].id[idlen] = '\0';
                    (*nacc)++;
                }
                if (i < *nacc && acc_add(&acc[i], (uint32_t)t) != 0) {
                    return -1;
                }
            }
        }
        p = next;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* {"stage", "orders", "median_us", "p95_us", "max_us"} of one accumulator
 * (sorted here), or NULL when out of memory. */
static json_t *acc_json(struct stage_acc *s)
{
    char id[80];
    ops_clean(s->id, id, sizeof id);
    if (s->n == 0) {
        return json_pack("{s:s, s:I, s:n, s:n, s:n}", "stage", id, "orders", (json_int_t)0,
                         "median_us", "p95_us", "max_us");
    }
    qsort(s->v, s->n, sizeof s->v[0], cmp_u32);
    int64_t n = (int64_t)s->n;
    return json_pack("{s:s, s:I, s:I, s:I, s:I}", "stage", id, "orders", (json_int_t)n, "median_us",
                     (json_int_t)s->v[rank_of(n, 50) - 1] * 100, "p95_us",
                     (json_int_t)s->v[rank_of(n, 95) - 1] * 100, "max_us",
                     (json_int_t)s->v[n - 1] * 100);
}

static int read_stage_latency(struct ops *op, int64_t since, json_t *r)
{
    struct stage_acc acc[MAX_STAGES];
    struct stage_acc total;
    size_t nacc = 0;
    struct cpb_stmt *st = NULL;
    json_t *arr = json_array();
    int code = 0;
    enum cpb_status rc = CPB_FAIL;
    char *msg = NULL;
    struct sql_arg a[] = {sql_time(since), sql_time(op->now)};

    memset(acc, 0, sizeof acc);
    memset(&total, 0, sizeof total);
    snprintf(total.id, sizeof total.id, "transaction");
    if (json_object_set_new(r, "stages", arr) != 0) {
        code = failed(op, true, "reading stage timings");
        goto out;
    }
    rc = sql_query(op->db,
                   "SELECT MESSAGE, DURATION_MS FROM USER_ORDER_EVENT WHERE KIND = 'applied'"
                   " AND EVENT_DT >= ? AND EVENT_DT <= ?",
                   a, SQL_NARGS(a), &st);
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        int64_t ms = 0;
        bool ms_null = true;
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        free(msg);
        msg = NULL;
        ops_rd_raw(&d, &msg);
        ops_rd_int(&d, &ms, &ms_null);
        rc = d.rc;
        if (rc != CPB_OK) {
            break;
        }
        if ((msg != NULL && add_timings(acc, &nacc, msg) != 0) ||
            (!ms_null && ms >= 0 && ms < INT64_C(400000000) &&
             acc_add(&total, (uint32_t)(ms * 10)) != 0)) {
            code = failed(op, true, "reading stage timings");
            goto out;
        }
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading stage timings");
        goto out;
    }
    for (size_t i = 0; i < nacc; i++) {
        if (json_array_append_new(arr, acc_json(&acc[i])) != 0) {
            code = failed(op, true, "reading stage timings");
            goto out;
        }
    }
    json_t *t = acc_json(&total);
    if (t == NULL) {
        code = failed(op, true, "reading stage timings");
        goto out;
    }
    json_object_set_new(r, "transaction", t);
out:
    db_finalize(st);
    free(msg);
    for (size_t i = 0; i < MAX_STAGES; i++) {
        free(acc[i].v);
    }
    free(total.v);
    return code;
}

/* ---- runs ---------------------------------------------------------------- */

static int read_runs(struct ops *op, int64_t since, json_t *r)
{
    struct cpb_stmt *st = NULL;
    json_t *runs = json_object();
    json_t *by = json_object();
    json_t *failed_runs = json_array();
    int64_t total = 0;
    int code = 0;
    enum cpb_status rc = CPB_FAIL;
    struct sql_arg a[] = {sql_text(op->cfg->name), sql_time(since)};

    if (runs == NULL || by == NULL || failed_runs == NULL) {
        json_decref(runs);
        json_decref(by);
        json_decref(failed_runs);
        return failed(op, true, "reading the run log");
    }
    json_object_set_new(r, "runs", runs);
    json_object_set_new(runs, "by_result", by);
    json_object_set_new(runs, "failed", failed_runs);
    rc = sql_query(op->db,
                   "SELECT RESULT, COUNT(*) FROM USER_SYNC_LOG WHERE PIPELINE = ?"
                   " AND STARTED_DT >= ? GROUP BY RESULT ORDER BY 1",
                   a, SQL_NARGS(a), &st);
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        char result[32];
        int64_t n = 0;
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        ops_rd_text(&d, result, sizeof result, NULL);
        ops_rd_int(&d, &n, NULL);
        rc = d.rc;
        if (rc == CPB_OK) {
            json_object_set_new(by, result, json_integer((json_int_t)n));
            total += n;
        }
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading the run log");
        goto out;
    }
    json_object_set_new(runs, "total", json_integer((json_int_t)total));
    db_finalize(st);
    st = NULL;

    rc = ops_query_limited(op->db, "STARTED_DT, ENDED_DT, EXIT_CODE, HOST_NAM, RUN_ID, MESSAGE",
                           "FROM USER_SYNC_LOG WHERE PIPELINE = ? AND STARTED_DT >= ?"
                           " AND RESULT = 'FAILED' ORDER BY STARTED_DT DESC, LOG_ID DESC",
                           a, SQL_NARGS(a), RUN_LIMIT, &st);
    while (rc == CPB_OK) {
        struct rd d = {st, CPB_OK, 0};
        int64_t started = 0;
        int64_t ended = 0;
        int64_t exit_code = 0;
        bool has_started = false;
        bool has_ended = false;
        bool exit_null = true;
        bool msg_null = true;
        char host[200];
        char run_id[100];
        char message[1100];
        rc = db_fetch(st);
        if (rc != CPB_OK) {
            break;
        }
        ops_rd_time(&d, &started, &has_started);
        ops_rd_time(&d, &ended, &has_ended);
        ops_rd_int(&d, &exit_code, &exit_null);
        ops_rd_text(&d, host, sizeof host, NULL);
        ops_rd_text(&d, run_id, sizeof run_id, NULL);
        ops_rd_text(&d, message, sizeof message, &msg_null);
        rc = d.rc;
        if (rc != CPB_OK) {
            break;
        }
        json_t *o =
            json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "started", ops_jwhen(started, has_started),
                      "ended", ops_jwhen(ended, has_ended), "exit_code",
                      exit_null ? json_null() : json_integer((json_int_t)exit_code), "host",
                      ops_jtext(host, false), "run_id", ops_jtext(run_id, false), "message",
                      ops_jtext(message, msg_null));
        if (o == NULL || json_array_append_new(failed_runs, o) != 0) {
            code = failed(op, true, "reading the run log");
            goto out;
        }
    }
    if (rc != CPB_SKIP) {
        code = failed(op, false, "reading the failed runs");
        goto out;
    }
out:
    db_finalize(st);
    return code;
}

/* ---- orders that need a person ------------------------------------------- */

/* The orders matching `where` (at most LIST_LIMIT) into r[key] as
 * {"count": total, "shown": [order + {"command": ...}]}: `verb` and `action`
 * make the command ("dlq", "retry" gives `cpbridge dlq PATH retry ID`). */
static int read_orders(struct ops *op, const char *where, int64_t total, const char *key,
                       const char *verb, const char *action, json_t *r)
{
    json_t *shown = json_array();
    size_t i;
    json_t *o;
    /* json_pack's "o" takes shown even when it fails. */
    if (shown == NULL ||
        json_object_set_new(
            r, key, json_pack("{s:I, s:o}", "count", (json_int_t)total, "shown", shown)) != 0) {
        return failed(op, true, "listing orders");
    }
    int code = ops_order_list(op, where, NULL, 0, LIST_LIMIT, shown, NULL);
    if (code != 0) {
        return code;
    }
    char path[600];
    ops_clean(op->path, path, sizeof path);
    json_array_foreach(shown, i, o)
    {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "cpbridge %s %s %s %lld", verb, path, action,
                 (long long)json_integer_value(json_object_get(o, "id")));
        json_object_set_new(o, "command", json_string(cmd));
    }
    return 0;
}

/* ---- the command --------------------------------------------------------- */

static int write_out(const struct ops *op, const char *text, size_t len)
{
    const char *path = op->o.output;
    FILE *f = path != NULL ? fopen(path, "w") : stdout;
    int code = 0;
    if (f == NULL) {
        return ops_fail(op, CPB_EXIT_IOERR, "cannot write %s: %s", path, strerror(errno));
    }
    if (fwrite(text, 1, len, f) != len || fflush(f) != 0) {
        code = ops_fail(op, CPB_EXIT_IOERR, "writing %s: %s", path != NULL ? path : "stdout",
                        strerror(errno));
    }
    if (path != NULL && fclose(f) != 0 && code == 0) {
        code = ops_fail(op, CPB_EXIT_IOERR, "writing %s: %s", path, strerror(errno));
    }
    return code;
}

static int cmd_report(struct ops *op)
{
    struct metrics_snapshot s;
    struct err e = {0};
    struct buf html = BUF_INIT;
    json_t *r = NULL;
    json_t *counts = NULL;
    char *text = NULL;
    int64_t period = 7 * DAY_MS;
    int code;

    if (op->o.nargs != 1) {
        return ops_usage_error(op->v, "give exactly one pipeline file");
    }
    if (op->o.since != NULL && (text_parse_duration(op->o.since, &period) != 0 ||
                                period < HOUR_MS || period > MAX_PERIOD_MS)) {
        return ops_usage_error(op->v, "--since wants a period from 1h to 366d, such as 24h or 7d");
    }
    op->path = op->o.args[0];
    code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    const struct report_sql *q = &dialect_sql[db_get_dialect(op->db)];
    int64_t since = op->now - period;
    int64_t bucket_ms = period <= HOURLY_UP_TO_MS ? HOUR_MS : DAY_MS;
    char period_text[32];
    text_format_duration(period, period_text, sizeof period_text);

    if (metrics_snapshot(op->db, op->cfg->name, op->now, &s, &e) != 0) {
        return ops_fail(op, CPB_EXIT_UNAVAILABLE, "%s", e.msg);
    }
    r = json_object();
    counts = json_object();
    if (r == NULL || counts == NULL) {
        json_decref(counts);
        code = failed(op, true, "starting the report");
        goto out;
    }
    for (int i = 0; i < METRICS_N_STATES; i++) {
        json_object_set_new(counts, metrics_states[i], json_integer((json_int_t)s.by_state[i]));
    }
    json_object_set_new(r, "pipeline", ops_jtext(op->cfg->name, false));
    char file[600];
    ops_clean(op->path, file, sizeof file);
    json_object_set_new(r, "pipeline_file", json_string(file));
    json_object_set_new(r, "dialect", json_string(db_dialect_name(db_get_dialect(op->db))));
    json_object_set_new(r, "generated", ops_jwhen(op->now, true));
    json_object_set_new(r, "since", ops_jwhen(since, true));
    json_object_set_new(r, "period", json_string(period_text));
    json_object_set_new(r, "bucket", json_string(bucket_ms == HOUR_MS ? "hour" : "day"));
    json_object_set_new(r, "orders", counts);
    json_object_set_new(r, "pending_due", json_integer((json_int_t)s.pending_due));
    json_object_set_new(r, "oldest_pending", ops_jwhen(s.oldest_pending_ms, s.has_pending));
    json_object_set_new(r, "last_success", ops_jwhen(s.last_success_ms, s.has_success));

    code = read_outcomes(op, q, since, bucket_ms, r);
    if (code == 0) {
        code = read_placed_to_applied(op, q, since, r);
    }
    if (code == 0) {
        code = read_stage_latency(op, since, r);
    }
    if (code == 0) {
        code = read_runs(op, since, r);
    }
    if (code == 0) {
        code = read_orders(op, "WHERE STATUS IN ('DEAD', 'INVALID')",
                           s.by_state[metrics_state_index("DEAD")] +
                               s.by_state[metrics_state_index("INVALID")],
                           "dead_letters", "dlq", "retry", r);
    }
    if (code == 0) {
        code = read_orders(op, "WHERE STATUS = 'APPLIED' AND CHANGED_AFTER_APPLY = 1",
                           s.changed_after_apply, "changed", "orders", "show", r);
    }
    if (code != 0) {
        goto out;
    }
    if ((op->o.given & OPT_JSON) != 0) {
        text = json_dumps(r, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        if (text == NULL) {
            code = failed(op, true, "writing JSON");
            goto out;
        }
        buf_adds(&html, text);
        buf_adds(&html, "\n");
    } else if (report_html(r, &html) != 0) {
        html.oom = 1;
    }
    if (html.oom) {
        code = failed(op, true, "writing the report");
        goto out;
    }
    code = write_out(op, buf_str(&html), html.len);
out:
    free(text);
    buf_free(&html);
    json_decref(r);
    return code;
}

const struct verb ops_verb_report = {"report", usage_report,
                                     OPT_HELP | OPT_JSON | OPT_SINCE | OPT_OUTPUT, cmd_report};
