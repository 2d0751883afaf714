/*
 * cmd_status.c — `cpbridge status`: orders per state, the last runs, the
 * dead-letter orders at a glance and the orders changed in the store after
 * they were applied.
 *
 * Every text read from the database is untrusted: it is printed through
 * ops_clean (control bytes and invalid UTF-8 escaped, cut to a fixed size).
 * Every value goes into SQL as a bound parameter.
 */
#include "cli/ops_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/metrics.h"
#include "lib/err.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_status[] =
    "usage: cpbridge status PIPELINE [--json]\n"
    "\n"
    "Orders per state, the last 10 runs (start, duration, result, counts,\n"
    "orders/s), the dead-letter orders at a glance and the orders changed in the\n"
    "store after they were applied; for a pipeline with records that are not\n"
    "orders (a stock pipeline), its records by state and the dead ones.\n"
    "\n"
    "  --json   print the same as JSON\n"
    "\n"
    "Exit: 0 ok; 64 usage; 66 no such pipeline file; 69 database unreachable;\n"
    "78 configuration error or schema missing.\n";

#define RUN_COLS                                                                                   \
    "STARTED_DT, ENDED_DT, DURATION_MS, RESULT, EXIT_CODE, N_STAGED, N_CLAIMED, N_APPLIED,"        \
    " N_RETRY, N_INVALID, N_DEAD, N_AFTER_DONE, N_AFTER_FAILED, HOST_NAM, RUN_ID"

struct run_row {
    int64_t started, ended, duration;
    bool has_started, has_ended, duration_null;
    char result[32];
    int64_t exit_code;
    bool exit_null;
    int64_t n[8]; /* staged, claimed, applied, retry, invalid, dead, after_done, after_failed */
    char host[200];
    char run_id[100];
};

static enum cpb_status read_run(struct cpb_stmt *st, struct run_row *r)
{
    struct rd d = {st, CPB_OK, 0};
    ops_rd_time(&d, &r->started, &r->has_started);
    ops_rd_time(&d, &r->ended, &r->has_ended);
    ops_rd_int(&d, &r->duration, &r->duration_null);
    ops_rd_text(&d, r->result, sizeof r->result, NULL);
    ops_rd_int(&d, &r->exit_code, &r->exit_null);
    for (int i = 0; i < 8; i++) {
        ops_rd_int(&d, &r->n[i], NULL);
    }
    ops_rd_text(&d, r->host, sizeof r->host, NULL);
    ops_rd_text(&d, r->run_id, sizeof r->run_id, NULL);
    return d.rc;
}

/* Applied orders per second, as text with two decimals ("-" without a
 * duration). Integer arithmetic: exact and without double. */
static const char *fmt_rate(int64_t applied, int64_t duration_ms, char *out, size_t n)
{
    if (duration_ms <= 0) {
        snprintf(out, n, "-");
        return out;
    }
    int64_t centi = applied * 100000 / duration_ms;
    snprintf(out, n, "%lld.%02lld", (long long)(centi / 100), (long long)(centi % 100));
    return out;
}

/* This pipeline's records (not orders), when it has any: counts by state
 * and the DEAD ones (the first 20), into j (JSON) or on stdout. */
static int status_records(struct ops *op, const struct metrics_snapshot *s, json_t *j)
{
    const struct record_counts *c = &s->records;
    struct cpb_stmt *st = NULL;
    json_t *dead = NULL;
    char a[64];
    int code = 0;
    if (c->pending + c->done + c->dead == 0) {
        return 0;
    }
    if (j != NULL) {
        dead = json_array();
        json_object_set_new(j, "records",
                            json_pack("{s:I, s:I, s:I, s:o, s:o}", "pending",
                                      (json_int_t)c->pending, "done", (json_int_t)c->done, "dead",
                                      (json_int_t)c->dead, "oldest_pending",
                                      ops_jwhen(c->oldest_pending_ms, c->oldest_pending_ms > 0),
                                      "dead_records", dead));
    } else {
        printf("\nRecords (not orders) by state: PENDING %lld, DONE %lld, DEAD %lld",
               (long long)c->pending, (long long)c->done, (long long)c->dead);
        if (c->pending > 0) {
            printf(" (oldest pending queued %s ago)",
                   ops_fmt_age(s->now_ms - c->oldest_pending_ms, a, sizeof a));
        }
        printf("\n");
    }
    struct sql_arg pa[] = {sql_text(op->cfg->name)};
    if (ops_query_limited(op->db,
                          "KIND, REC_KEY, ATTEMPTS, LAST_ERROR_CODE, LAST_ERROR, UPDATED_DT",
                          "FROM USER_RECORD_STAGING WHERE PIPELINE = ? AND STATUS = 'DEAD'"
                          " ORDER BY UPDATED_DT DESC, RECORD_ID DESC",
                          pa, 1, 20, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the dead records");
        goto out;
    }
    for (int row = 0;; row++) {
        char kind[40], key[120], ecode[80], emsg[520];
        int64_t attempts = 0, when = 0;
        bool has = false;
        enum cpb_status rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            break;
        }
        struct rd d = {st, rc, 0};
        ops_rd_text(&d, kind, sizeof kind, NULL);
        ops_rd_text(&d, key, sizeof key, NULL);
        ops_rd_int(&d, &attempts, NULL);
        ops_rd_text(&d, ecode, sizeof ecode, NULL);
        ops_rd_text(&d, emsg, sizeof emsg, NULL);
        ops_rd_time(&d, &when, &has);
        if (d.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the dead records");
            goto out;
        }
        if (dead != NULL) {
            json_array_append_new(dead,
                                  json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "kind", kind, "key",
                                            key, "attempts", (json_int_t)attempts, "reason", ecode,
                                            "message", emsg, "since", ops_jwhen(when, has)));
            continue;
        }
        if (row == 0) {
            printf("  dead (each is queued again when its source stages a changed payload, or by"
                   " `cpbridge records %s retry`):\n",
                   op->path);
        }
        printf("  %s %s: %s: %s (since %s)\n", kind, key, ecode, emsg,
               ops_fmt_when(when, has, a, sizeof a));
    }
out:
    db_finalize(st);
    return code;
}

static int cmd_status(struct ops *op)
{
    struct metrics_snapshot s;
    struct err e = {0};
    struct cpb_stmt *st = NULL;
    struct run_row r;
    json_t *j = NULL;
    json_t *runs = NULL;
    bool json = (op->o.given & OPT_JSON) != 0;
    char a[64];
    char b[64];
    int code;

    if (op->o.nargs != 1) {
        return ops_usage_error(op->v, "give exactly one pipeline file");
    }
    op->path = op->o.args[0];
    code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    if (metrics_snapshot(op->db, op->cfg->name, op->now, &s, &e) != 0) {
        return ops_fail(op, CPB_EXIT_UNAVAILABLE, "%s", e.msg);
    }
    if (json) {
        json_t *counts = json_object();
        j = json_object();
        runs = json_array();
        for (int i = 0; i < METRICS_N_STATES; i++) {
            json_object_set_new(counts, metrics_states[i], json_integer((json_int_t)s.by_state[i]));
        }
        json_object_set_new(j, "pipeline", ops_jtext(op->cfg->name, false));
        json_object_set_new(j, "time", ops_jwhen(s.now_ms, true));
        json_object_set_new(j, "orders", counts);
        json_object_set_new(j, "pending_due", json_integer((json_int_t)s.pending_due));
        json_object_set_new(j, "oldest_pending", ops_jwhen(s.oldest_pending_ms, s.has_pending));
        json_object_set_new(j, "after_due", json_integer((json_int_t)s.after_due));
        json_object_set_new(j, "after_failed", json_integer((json_int_t)s.after_gave_up));
        json_object_set_new(j, "changed_after_apply",
                            json_integer((json_int_t)s.changed_after_apply));
        json_object_set_new(j, "last_success", ops_jwhen(s.last_success_ms, s.has_success));
        json_object_set_new(j, "runs", runs);
    } else {
        printf("Pipeline %s (%s), %s\n\n", op->cfg->name, op->cfg->database.dialect,
               ops_fmt_when(s.now_ms, true, a, sizeof a));
        printf("Orders by state:\n");
        for (int i = 0; i < METRICS_N_STATES; i++) {
            printf("  %-12s %8lld", metrics_states[i], (long long)s.by_state[i]);
            if (i == 0 && s.by_state[0] > 0) {
                printf("  (%lld due now, oldest received %s ago)", (long long)s.pending_due,
                       ops_fmt_age(s.now_ms - s.oldest_pending_ms, a, sizeof a));
            } else if (i == 1 && (s.after_due > 0 || s.after_gave_up > 0)) {
                printf("  (after-commit steps: %lld due, %lld given up)", (long long)s.after_due,
                       (long long)s.after_gave_up);
            }
            printf("\n");
        }
        printf("  last success: %s\n\n",
               s.has_success ? ops_fmt_when(s.last_success_ms, true, a, sizeof a) : "never");
        printf("Last runs:\n");
    }

    struct sql_arg pa[] = {sql_text(op->cfg->name)};
    if (ops_query_limited(
            op->db, RUN_COLS,
            "FROM USER_SYNC_LOG WHERE PIPELINE = ? ORDER BY STARTED_DT DESC, LOG_ID DESC", pa, 1,
            10, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the run log");
        goto out;
    }
    for (int row = 0;; row++) {
        enum cpb_status rc = db_fetch(st);
        char rate[32];
        if (rc == CPB_SKIP) {
            if (row == 0 && !json) {
                printf("  no run yet\n");
            }
            break;
        }
        if (rc == CPB_OK) {
            rc = read_run(st, &r);
        }
        if (rc != CPB_OK) {
            code = ops_db_failed(op, "reading the run log");
            goto out;
        }
        fmt_rate(r.n[2], r.duration, rate, sizeof rate);
        if (json) {
            json_t *o = json_pack(
                "{s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:s,"
                " s:o, s:o}",
                "started", ops_jwhen(r.started, r.has_started), "ended",
                ops_jwhen(r.ended, r.has_ended), "duration_ms",
                r.duration_null ? json_null() : json_integer(r.duration), "result",
                ops_jtext(r.result, false), "exit_code",
                r.exit_null ? json_null() : json_integer(r.exit_code), "counts", "staged",
                (json_int_t)r.n[0], "claimed", (json_int_t)r.n[1], "applied", (json_int_t)r.n[2],
                "retry", (json_int_t)r.n[3], "invalid", (json_int_t)r.n[4], "dead",
                (json_int_t)r.n[5], "after_done", (json_int_t)r.n[6], "after_failed",
                (json_int_t)r.n[7], "orders_per_second", rate, "host", ops_jtext(r.host, false),
                "run_id", ops_jtext(r.run_id, false));
            json_array_append_new(runs, o);
            continue;
        }
        if (row == 0) {
            printf("  %-21s %9s  %-9s %6s %7s %7s %5s %4s %6s %8s\n", "STARTED", "DURATION",
                   "RESULT", "STAGED", "APPLIED", "INVALID", "RETRY", "DEAD", "AFTER", "ORDERS/S");
        }
        if (r.duration_null) {
            snprintf(b, sizeof b, "-");
        } else {
            ops_fmt_dec(r.duration * 10, 3, b, sizeof b); /* ms -> seconds with 3 decimals */
            size_t bl = strlen(b);
            if (bl + 1 < sizeof b) {
                b[bl] = 's';
                b[bl + 1] = '\0';
            }
        }
        printf("  %-21s %9s  %-9s %6lld %7lld %7lld %5lld %4lld %6lld %8s\n",
               ops_fmt_when(r.started, r.has_started, a, sizeof a), b, r.result, (long long)r.n[0],
               (long long)r.n[2], (long long)r.n[4], (long long)r.n[3], (long long)r.n[5],
               (long long)r.n[6], rate);
    }
    db_finalize(st);
    st = NULL;

    /* The dead letters at a glance, and the orders changed after apply. */
    json_t *dlq = json ? json_array() : NULL;
    json_t *changed = json ? json_array() : NULL;
    if (json) {
        json_object_set_new(j, "dead_letters", dlq);
        json_object_set_new(j, "changed", changed);
    } else {
        printf("\nDead letters (DEAD %lld, INVALID %lld):\n", (long long)s.by_state[3],
               (long long)s.by_state[2]);
    }
    code = ops_order_list(op, "WHERE STATUS IN ('DEAD', 'INVALID')", NULL, 0, 20, dlq, "none");
    if (code != 0) {
        goto out;
    }
    if (!json && s.by_state[2] + s.by_state[3] > 20) {
        printf("  ... the first 20 shown; all: cpbridge dlq %s list\n", op->path);
    }
    if (!json) {
        printf("\nChanged in the store after they were applied (%lld):\n",
               (long long)s.changed_after_apply);
    }
    code = ops_order_list(op, "WHERE STATUS = 'APPLIED' AND CHANGED_AFTER_APPLY = 1", NULL, 0, 20,
                          changed, "none");
    if (code == 0) {
        code = status_records(op, &s, j);
    }
    if (code != 0) {
        goto out;
    }
    if (json) {
        ops_print_json(j);
    }
out:
    db_finalize(st);
    json_decref(j);
    return code;
}

const struct verb ops_verb_status = {"status", usage_status, OPT_HELP | OPT_JSON, cmd_status};
