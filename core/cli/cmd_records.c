/*
 * cmd_records.c — `cpbridge records`: a pipeline's records that are not
 * orders (ABI 1.5, e.g. the stock pipeline's one per SKU): list them, and
 * retry DEAD ones once their cause is fixed (a refused login made every
 * record of a push DEAD, say), which otherwise wait for a changed payload.
 *
 * Every text read from the database is untrusted: printed through
 * ops_clean. Every value goes into SQL as a bound parameter.
 */
#include "cli/ops_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "lib/buf.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_records[] =
    "usage: cpbridge records PIPELINE list [--state STATE] [--limit N] [--json]\n"
    "       cpbridge records PIPELINE retry KEY... [--why TEXT]\n"
    "       cpbridge records PIPELINE retry --all [--reason CODE] [--why TEXT]\n"
    "\n"
    "The pipeline's records that are not orders (a stock pipeline's, one per\n"
    "SKU): PENDING (due for the next run), DONE (the world matches them) or\n"
    "DEAD (given up: their last error says why; a changed payload queues one\n"
    "again by itself).\n"
    "\n"
    "list    the records, newest change first (default: every state, 50)\n"
    "retry   put DEAD records back to PENDING, due now, attempts 0, error\n"
    "        cleared (fix the cause first), with an audit event each\n"
    "\n"
    "  --state STATE  list: PENDING, DONE or DEAD only\n"
    "  --limit N      list: at most N records (default 50)\n"
    "  --all          retry every DEAD record of the pipeline\n"
    "  --reason CODE  with --all: only those whose last error code is CODE\n"
    "  --why TEXT     why, for the audit trail\n"
    "  --json         list: print JSON\n"
    "\n"
    "Exit: 0 done; 64 usage; 65 a named record is not DEAD (nothing done to\n"
    "it); 66 no such record; 69 database unreachable.\n";

#define LIST_COLS "KIND, REC_KEY, STATUS, ATTEMPTS, LAST_ERROR_CODE, LAST_ERROR, UPDATED_DT"

static int records_list(struct ops *op)
{
    struct cpb_stmt *st = NULL;
    bool json = (op->o.given & OPT_JSON) != 0;
    json_t *arr = json ? json_array() : NULL;
    int64_t limit = 50;
    int code = 0;
    const char *state = (op->o.given & OPT_STATE) != 0 ? op->o.state : NULL;
    if (state != NULL && strcmp(state, "PENDING") != 0 && strcmp(state, "DONE") != 0 &&
        strcmp(state, "DEAD") != 0) {
        code = ops_usage_error(op->v, "--state takes PENDING, DONE or DEAD, not '%s'", state);
        goto out;
    }
    if ((op->o.given & OPT_LIMIT) != 0 &&
        (text_parse_int(op->o.limit, &limit) != 0 || limit < 1 || limit > 100000)) {
        code = ops_usage_error(op->v, "--limit takes a number from 1 to 100000");
        goto out;
    }
    struct sql_arg a[] = {sql_text(op->cfg->name), sql_text(state), sql_int(state == NULL)};
    if (ops_query_limited(op->db, LIST_COLS,
                          "FROM USER_RECORD_STAGING WHERE PIPELINE = ? AND (STATUS = ? OR 1 = ?)"
                          " ORDER BY UPDATED_DT DESC, RECORD_ID DESC",
                          a, SQL_NARGS(a), limit, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the records");
        goto out;
    }
    for (int row = 0;; row++) {
        char kind[40], key[120], status[16], ecode[80], emsg[520], when[40];
        int64_t attempts = 0, at = 0;
        bool has = false;
        enum cpb_status rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            if (row == 0 && !json) {
                printf("no records%s%s\n", state != NULL ? " in state " : "",
                       state != NULL ? state : "");
            }
            break;
        }
        struct rd d = {st, rc, 0};
        ops_rd_text(&d, kind, sizeof kind, NULL);
        ops_rd_text(&d, key, sizeof key, NULL);
        ops_rd_text(&d, status, sizeof status, NULL);
        ops_rd_int(&d, &attempts, NULL);
        ops_rd_text(&d, ecode, sizeof ecode, NULL);
        ops_rd_text(&d, emsg, sizeof emsg, NULL);
        ops_rd_time(&d, &at, &has);
        if (d.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the records");
            goto out;
        }
        if (json) {
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o}", "kind",
                                                 kind, "key", key, "state", status, "attempts",
                                                 (json_int_t)attempts, "reason", ecode, "message",
                                                 emsg, "changed", ops_jwhen(at, has)));
            continue;
        }
        if (row == 0) {
            printf("%-8s %-24s %-8s %8s  %-20s %s\n", "KIND", "KEY", "STATE", "ATTEMPTS", "CHANGED",
                   "LAST ERROR");
        }
        printf("%-8s %-24s %-8s %8lld  %-20s %s%s%s\n", kind, key, status, (long long)attempts,
               ops_fmt_when(at, has, when, sizeof when), ecode, ecode[0] != '\0' ? ": " : "", emsg);
    }
    if (json) {
        ops_print_json(arr);
    }
out:
    db_finalize(st);
    json_decref(arr);
    return code;
}

/* Retry the DEAD records `where` picks (with args; the pipeline's first),
 * in one transaction with a 'requeue' event each. *n gets how many. */
static int retry_where(struct ops *op, const char *where, const struct sql_arg *args, size_t nargs,
                       const char *actor, int64_t *n)
{
    struct buf ev = BUF_INIT;
    struct buf up = BUF_INIT;
    struct buf msg = BUF_INIT;
    struct sql_arg a[8];
    int code = 0;
    enum cpb_status rc;
    *n = 0;
    buf_addf(&msg, "retried by %s%s%s", actor, op->o.why != NULL ? ": " : "",
             op->o.why != NULL ? op->o.why : "");
    buf_addf(&ev,
             "INSERT INTO USER_RECORD_EVENT (RECORD_ID, EVENT_DT, KIND, CODE, MESSAGE)"
             " SELECT RECORD_ID, ?, 'requeue', LAST_ERROR_CODE, ? FROM USER_RECORD_STAGING"
             " WHERE PIPELINE = ? AND STATUS = 'DEAD'%s",
             where);
    buf_addf(&up,
             "UPDATE USER_RECORD_STAGING SET STATUS = 'PENDING', ATTEMPTS = 0,"
             " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL, LAST_ERROR = NULL, UPDATED_DT = ?"
             " WHERE PIPELINE = ? AND STATUS = 'DEAD'%s",
             where);
    if (ev.oom || up.oom || msg.oom || nargs + 3 > sizeof a / sizeof a[0]) {
        code = ops_fail(op, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    rc = db_begin(op->db);
    a[0] = sql_time(op->now);
    a[1] = sql_text(buf_str(&msg));
    a[2] = sql_text(op->cfg->name);
    memcpy(a + 3, args, nargs * sizeof *args);
    if (rc == CPB_OK) {
        rc = sql_exec(op->db, buf_str(&ev), a, 3 + nargs, NULL);
    }
    a[1] = sql_time(op->now);
    if (rc == CPB_OK) {
        rc = sql_exec(op->db, buf_str(&up), a, 3 + nargs, n);
    }
    if (rc == CPB_OK) {
        rc = db_commit(op->db);
    }
    if (rc != CPB_OK) {
        code = ops_db_failed(op, "retrying the records");
    }
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    buf_free(&ev);
    buf_free(&up);
    buf_free(&msg);
    return code;
}

/* Retry one record by key: 66 when the pipeline has none, 65 when it is
 * not DEAD. */
static int retry_key(struct ops *op, const char *key, const char *actor)
{
    char status[16] = "";
    char shown[120];
    int64_t n = 0;
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    struct sql_arg a[] = {sql_text(op->cfg->name), sql_text(key)};
    enum cpb_status rc = sql_query(op->db,
                                   "SELECT STATUS FROM USER_RECORD_STAGING WHERE PIPELINE = ?"
                                   " AND REC_KEY = ? ORDER BY RECORD_ID",
                                   a, SQL_NARGS(a), &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        rc = db_col_text(st, 1, &v);
        snprintf(status, sizeof status, "%s", v != NULL ? v : "");
    }
    db_finalize(st);
    ops_clean(key, shown, sizeof shown);
    if (rc == CPB_SKIP) {
        return ops_fail(op, CPB_EXIT_NOINPUT, "pipeline %s has no record with key %s",
                        op->cfg->name, shown);
    }
    if (rc != CPB_OK) {
        return ops_db_failed(op, "reading the record");
    }
    if (strcmp(status, "DEAD") != 0) {
        return ops_fail(op, CPB_EXIT_DATAERR, "record %s is %s: retry takes DEAD records only%s",
                        shown, status,
                        strcmp(status, "PENDING") == 0 ? " (it waits for the next run)" : "");
    }
    struct sql_arg k[] = {sql_text(key)};
    int code = retry_where(op, " AND REC_KEY = ?", k, 1, actor, &n);
    if (code == 0) {
        printf("record %s: DEAD -> PENDING, due now, attempts reset\n", shown);
    }
    return code;
}

static int records_retry(struct ops *op)
{
    char actor[420];
    int64_t n = 0;
    int worst = 0;
    bool all = (op->o.given & OPT_ALL) != 0;
    ops_actor_of(actor, sizeof actor);
    if (all == (op->o.nargs > 2)) {
        return ops_usage_error(op->v, "retry takes record keys, or --all");
    }
    if (!all && (op->o.given & OPT_REASON) != 0) {
        return ops_usage_error(op->v, "--reason goes with --all");
    }
    if (all) {
        struct sql_arg r[] = {sql_text(op->o.reason)};
        bool by_reason = (op->o.given & OPT_REASON) != 0;
        int code = retry_where(op, by_reason ? " AND LAST_ERROR_CODE = ?" : "", r,
                               by_reason ? 1 : 0, actor, &n);
        if (code == 0) {
            printf("%lld DEAD record(s) -> PENDING, due now, attempts reset\n", (long long)n);
        }
        return code;
    }
    for (int i = 2; i < op->o.nargs; i++) {
        int code = retry_key(op, op->o.args[i], actor);
        if (code == CPB_EXIT_UNAVAILABLE) {
            return code;
        }
        worst = code > worst ? code : worst;
    }
    return worst;
}

static int cmd_records(struct ops *op)
{
    if (op->o.nargs < 2) {
        return ops_usage_error(op->v, "give a pipeline file and list or retry");
    }
    op->path = op->o.args[0];
    const char *action = op->o.args[1];
    if (strcmp(action, "list") != 0 && strcmp(action, "retry") != 0) {
        return ops_usage_error(op->v, "unknown action '%s' (list or retry)", action);
    }
    if (strcmp(action, "list") == 0 && op->o.nargs != 2) {
        return ops_usage_error(op->v, "list takes no more arguments");
    }
    int code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    return strcmp(action, "list") == 0 ? records_list(op) : records_retry(op);
}

const struct verb ops_verb_records = {
    "records", usage_records,
    OPT_HELP | OPT_JSON | OPT_STATE | OPT_LIMIT | OPT_ALL | OPT_REASON | OPT_WHY, cmd_records};
