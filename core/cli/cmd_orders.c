/*
 * cmd_orders.c — `cpbridge orders`: the newest orders (`list`) and one
 * order's whole story (`show`: header, lines, document, after-commit steps,
 * inventory changes, events).
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

#include "engine/metrics.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_orders[] =
    "usage: cpbridge orders PIPELINE list [--state STATE] [--changed] [--limit N] [--json]\n"
    "       cpbridge orders PIPELINE show ID [--json]\n"
    "\n"
    "list   the newest orders first (default limit 50): id, source:external id,\n"
    "       order number, state, attempts, received, last error, document\n"
    "show   an order's whole story: header, lines, state, attempts, last error,\n"
    "       the Counterpoint document, after-commit steps done, inventory\n"
    "       changes, and every event in order\n"
    "\n"
    "ID is the staging id (a number) or SOURCE:EXTERNAL_ID (e.g. woo:1234).\n"
    "\n"
    "  --state STATE  only PENDING, APPLIED, INVALID, DEAD, CANCELLED or ROLLED_BACK\n"
    "  --changed      only orders the store changed after they were applied\n"
    "  --limit N      at most N orders (1..100000)\n"
    "  --json         print JSON\n"
    "\n"
    "Exit: 0 ok; 64 usage; 66 no such order; 69 database unreachable.\n";

/* The order's lines (USER_ORDER_STAGING_LIN). */
static int show_lines(struct ops *op, int64_t id, json_t *arr, int64_t *count)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    *count = 0;
    if (sql_query(op->db,
                  "SELECT LIN_SEQ_NO, SKU, ITEM_NO, NAME, QTY, PRC, LINE_TOTAL FROM"
                  " USER_ORDER_STAGING_LIN WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the order's lines");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        int64_t seq, qty, prc, tot;
        bool prc_null, tot_null, item_null;
        char sku[200], item[200], name[400];
        char q[48], p[48], t[48];
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        ops_rd_int(&r, &seq, NULL);
        ops_rd_text(&r, sku, sizeof sku, NULL);
        ops_rd_text(&r, item, sizeof item, &item_null);
        ops_rd_text(&r, name, sizeof name, NULL);
        ops_rd_dec(&r, &qty, NULL);
        ops_rd_dec(&r, &prc, &prc_null);
        ops_rd_dec(&r, &tot, &tot_null);
        if (r.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the order's lines");
            goto out;
        }
        (*count)++;
        if (arr != NULL) {
            json_array_append_new(
                arr, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "seq", (json_int_t)seq, "sku",
                               ops_jtext(sku, false), "item_no", ops_jtext(item, item_null), "name",
                               ops_jtext(name, false), "qty", ops_jdec(qty, false), "price",
                               ops_jdec(prc, prc_null), "total", ops_jdec(tot, tot_null)));
            continue;
        }
        if (*count == 1) {
            printf("  %-4s %-20s %-20s %10s %10s %10s  %s\n", "SEQ", "SKU", "ITEM", "QTY", "PRICE",
                   "TOTAL", "NAME");
        }
        printf("  %-4lld %-20s %-20s %10s %10s %10s  %s\n", (long long)seq, sku,
               item_null ? "-" : item, ops_fmt_dec(qty, 4, q, sizeof q),
               prc_null ? "-" : ops_fmt_dec(prc, 2, p, sizeof p),
               tot_null ? "-" : ops_fmt_dec(tot, 2, t, sizeof t), name);
    }
    if (arr == NULL && *count == 0) {
        printf("  no lines stored\n");
    }
out:
    db_finalize(st);
    return code;
}

/* USER_ORDER_STEP and USER_ORDER_INV of the order. */
static int show_steps_and_inventory(struct ops *op, int64_t id, json_t *steps, json_t *inv)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    int n = 0;
    if (steps == NULL) {
        printf("After-commit steps done:\n");
    }
    if (sql_query(op->db,
                  "SELECT STAGE_ID, DONE_DT FROM USER_ORDER_STEP WHERE STAGING_ID = ?"
                  " ORDER BY DONE_DT, STAGE_ID",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the after-commit steps");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char stage[200];
        char when[40];
        int64_t done;
        bool has;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        ops_rd_text(&r, stage, sizeof stage, NULL);
        ops_rd_time(&r, &done, &has);
        if (r.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the after-commit steps");
            goto out;
        }
        n++;
        if (steps != NULL) {
            json_array_append_new(steps, json_pack("{s:o, s:o}", "stage", ops_jtext(stage, false),
                                                   "done", ops_jwhen(done, has)));
        } else {
            printf("  %-24s %s\n", stage, ops_fmt_when(done, has, when, sizeof when));
        }
    }
    if (steps == NULL && n == 0) {
        printf("  none\n");
    }
    db_finalize(st);
    st = NULL;

    n = 0;
    if (inv == NULL) {
        printf("Inventory changes (USER_ORDER_INV):\n");
    }
    if (sql_query(op->db,
                  "SELECT LIN_SEQ_NO, ITEM_NO, LOC_ID, QTY_COLUMN, QTY, CREATED_ROW, DOC_ID"
                  " FROM USER_ORDER_INV WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the inventory changes");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char item[200], loc[200], column[100], q[48];
        int64_t seq, qty, created, doc;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        ops_rd_int(&r, &seq, NULL);
        ops_rd_text(&r, item, sizeof item, NULL);
        ops_rd_text(&r, loc, sizeof loc, NULL);
        ops_rd_text(&r, column, sizeof column, NULL);
        ops_rd_dec(&r, &qty, NULL);
        ops_rd_int(&r, &created, NULL);
        ops_rd_int(&r, &doc, NULL);
        if (r.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the inventory changes");
            goto out;
        }
        n++;
        if (inv != NULL) {
            json_array_append_new(
                inv, json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:I}", "seq", (json_int_t)seq,
                               "item_no", ops_jtext(item, false), "loc_id", ops_jtext(loc, false),
                               "column", ops_jtext(column, false), "qty", ops_jdec(qty, false),
                               "created_row", created != 0, "doc_id", (json_int_t)doc));
        } else {
            printf("  line %lld: IM_INV %s @ %s %s +%s%s\n", (long long)seq, item, loc, column,
                   ops_fmt_dec(qty, 4, q, sizeof q),
                   created != 0 ? " (row created by cpbridge)" : "");
        }
    }
    if (inv == NULL && n == 0) {
        printf("  none\n");
    }
out:
    db_finalize(st);
    return code;
}

static int show_events(struct ops *op, int64_t id, json_t *arr)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    int n = 0;
    if (sql_query(op->db,
                  "SELECT EVENT_DT, KIND, STAGE_ID, STATUS_FROM, STATUS_TO, CODE, MESSAGE, ACTOR,"
                  " DURATION_MS, RUN_ID FROM USER_ORDER_EVENT WHERE STAGING_ID = ?"
                  " ORDER BY EVENT_ID",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = ops_db_failed(op, "reading the order's events");
        goto out;
    }
    if (arr == NULL) {
        printf("Events:\n");
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        int64_t when, ms;
        bool has_when, stage_null, from_null, to_null, code_null, msg_null, actor_null, ms_null,
            run_null;
        char kind[100], stage[200], from[64], to[64], ecode[200], msg[2100], actor[300], run[100];
        char t[40];
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        ops_rd_time(&r, &when, &has_when);
        ops_rd_text(&r, kind, sizeof kind, NULL);
        ops_rd_text(&r, stage, sizeof stage, &stage_null);
        ops_rd_text(&r, from, sizeof from, &from_null);
        ops_rd_text(&r, to, sizeof to, &to_null);
        ops_rd_text(&r, ecode, sizeof ecode, &code_null);
        ops_rd_text(&r, msg, sizeof msg, &msg_null);
        ops_rd_text(&r, actor, sizeof actor, &actor_null);
        ops_rd_int(&r, &ms, &ms_null);
        ops_rd_text(&r, run, sizeof run, &run_null);
        if (r.rc != CPB_OK) {
            code = ops_db_failed(op, "reading the order's events");
            goto out;
        }
        n++;
        if (arr != NULL) {
            json_array_append_new(
                arr,
                json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "time",
                          ops_jwhen(when, has_when), "kind", ops_jtext(kind, false), "stage",
                          ops_jtext(stage, stage_null), "from", ops_jtext(from, from_null), "to",
                          ops_jtext(to, to_null), "code", ops_jtext(ecode, code_null), "message",
                          ops_jtext(msg, msg_null), "actor", ops_jtext(actor, actor_null),
                          "duration_ms", ms_null ? json_null() : json_integer(ms), "run_id",
                          ops_jtext(run, run_null)));
            continue;
        }
        printf("  %s  %-20s", ops_fmt_when(when, has_when, t, sizeof t), kind);
        if (!stage_null) {
            printf(" [%s]", stage);
        }
        if (!from_null || !to_null) {
            printf(" %s->%s", from_null ? "" : from, to_null ? "" : to);
        }
        if (!code_null) {
            printf(" %s", ecode);
        }
        if (!msg_null && msg[0] != '\0') {
            printf(": %s", msg);
        }
        if (!actor_null) {
            printf(" (by %s)", actor);
        }
        if (!ms_null) {
            printf(" %lldms", (long long)ms);
        }
        printf("\n");
    }
    if (arr == NULL && n == 0) {
        printf("  none\n");
    }
out:
    db_finalize(st);
    return code;
}

/* Is the document still in PS_DOC_HDR? 1 yes, 0 no, -1 unknown. */
static int doc_present(struct ops *op, int64_t doc_id)
{
    int64_t n = 0;
    if (sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE DOC_ID = ?",
                      (struct sql_arg[]){sql_int(doc_id)}, 1, &n, NULL) != CPB_OK) {
        return -1;
    }
    return n > 0 ? 1 : 0;
}

/* What a person can do next with an order in this state. */
static void next_steps(const struct ops *op, const struct order_row *o)
{
    const char *p = op->path;
    long long id = (long long)o->id;
    if (strcmp(o->status, ST_DEAD) == 0 || strcmp(o->status, ST_INVALID) == 0) {
        printf("Next: fix the cause (the last error says what), then `cpbridge dlq %s retry %lld`;"
               " or `cpbridge dlq %s cancel %lld --why TEXT`\n",
               p, id, p, id);
    } else if (strcmp(o->status, ST_APPLIED) == 0) {
        if (o->after_pending == AFTER_GAVE_UP) {
            printf("Next: the after-commit steps were given up; fix the cause, then"
                   " `cpbridge dlq %s retry %lld` runs them again\n",
                   p, id);
        }
        if (o->changed != 0) {
            printf("Next: the store changed this order after it was applied; compare and fix the"
                   " Counterpoint document by hand (docs/OPERATIONS_RUNBOOK.md, order.changed)\n");
        }
        if (o->doc_id != 0 && o->adopted == 0) {
            printf("Undo: `cpbridge rollback %s %lld --dry-run` shows what a rollback would do\n",
                   p, id);
        }
    } else if (strcmp(o->status, ST_ROLLED_BACK) == 0) {
        printf("Next: `cpbridge dlq %s retry %lld` applies it again; `cpbridge dlq %s cancel %lld"
               " --why TEXT` drops it\n",
               p, id, p, id);
    } else if (strcmp(o->status, ST_PENDING) == 0) {
        printf("Next: the next run processes it when due; `cpbridge dlq %s cancel %lld --why TEXT`"
               " drops it\n",
               p, id);
    }
}

int ops_show_order(struct ops *op, const char *id_text)
{
    int64_t id = 0;
    struct order_row o;
    json_t *j = NULL;
    bool json = (op->o.given & OPT_JSON) != 0;
    char a[64], b[64], c[64];
    int64_t nlines = 0;
    int code = ops_resolve_id(op, id_text, &id);
    if (code != 0) {
        return code;
    }
    enum cpb_status rc = ops_load_order(op->db, id, &o);
    if (rc == CPB_SKIP) {
        return ops_fail(op, CPB_EXIT_NOINPUT, "order %lld disappeared", (long long)id);
    }
    if (rc != CPB_OK) {
        return ops_db_failed(op, "reading the order");
    }
    int present = o.doc_id != 0 ? doc_present(op, o.doc_id) : 0;
    if (json) {
        j = ops_order_json(&o, op->now);
        json_t *lines = json_array();
        json_t *steps = json_array();
        json_t *inv = json_array();
        json_t *events = json_array();
        json_object_set_new(j, "lines", lines);
        json_object_set_new(j, "document_open",
                            o.doc_id == 0 || present < 0 ? json_null() : json_boolean(present));
        json_object_set_new(j, "after_steps_done", steps);
        json_object_set_new(j, "inventory", inv);
        json_object_set_new(j, "events", events);
        code = show_lines(op, id, lines, &nlines);
        if (code == 0) {
            code = show_steps_and_inventory(op, id, steps, inv);
        }
        if (code == 0) {
            code = show_events(op, id, events);
        }
        if (code == 0) {
            ops_print_json(j);
        }
        json_decref(j);
        return code;
    }

    printf("Order %lld: %s:%s", (long long)o.id, o.source, o.ext);
    if (!o.order_no_null) {
        printf(" (order number %s)", o.order_no);
    }
    printf("\n");
    printf("  state         %s, %lld attempt%s", o.status, (long long)o.attempts,
           o.attempts == 1 ? "" : "s");
    if (strcmp(o.status, ST_PENDING) == 0) {
        printf(", next attempt %s", ops_fmt_when(o.next_attempt, o.has_next_attempt, a, sizeof a));
    }
    printf("\n");
    if (!o.err_code_null || !o.err_msg_null) {
        printf("  last error    %s: %s\n", o.err_code_null ? "-" : o.err_code, o.err_msg);
    }
    if (ops_lease_live(&o, op->now)) {
        printf("  lease         held by %s until %s\n", o.lease_owner,
               ops_fmt_when(o.lease_until, true, a, sizeof a));
    }
    printf("  store status  %s\n", o.store_status_null ? "-" : o.store_status);
    printf("  customer      %s", o.bill_nam_null ? "-" : o.bill_nam);
    if (!o.email_null) {
        printf(" <%s>", o.email);
    }
    if (!o.customer_null && o.customer != 0) {
        printf(", store customer %lld", (long long)o.customer);
    }
    printf("\n");
    printf("  total         %s %s\n", o.total_null ? "-" : ops_fmt_dec(o.total, 2, a, sizeof a),
           o.currency_null ? "" : o.currency);
    printf("  ordered       %s, modified %s\n",
           ops_fmt_when(o.order_dt, o.has_order_dt, a, sizeof a),
           ops_fmt_when(o.modified_dt, o.has_modified_dt, b, sizeof b));
    printf("  received      %s, updated %s\n",
           ops_fmt_when(o.received, o.has_received, a, sizeof a),
           ops_fmt_when(o.updated, o.has_updated, b, sizeof b));
    if (o.changed != 0) {
        printf("  CHANGED       the store changed this order after it was applied\n");
    }
    printf("Lines:\n");
    code = show_lines(op, id, NULL, &nlines);
    if (code != 0) {
        return code;
    }
    printf("Counterpoint:\n");
    if (o.doc_id == 0) {
        printf("  no document\n");
    } else {
        printf("  document %lld, ticket %s, %s; applied %s\n", (long long)o.doc_id,
               o.tkt_no_null ? "-" : o.tkt_no,
               o.adopted != 0 ? "adopted (it existed; cpbridge did not write it)"
                              : "written by cpbridge",
               ops_fmt_when(o.applied, o.has_applied, c, sizeof c));
        printf("  PS_DOC_HDR    %s\n",
               present < 0    ? "unknown (could not read PS_DOC_HDR)"
               : present == 1 ? "open (still in PS_DOC_HDR)"
               : strcmp(o.status, ST_ROLLED_BACK) == 0
                   ? "gone (rolled back by cpbridge)"
                   : "gone (posted or released in Counterpoint, or removed)");
    }
    if (strcmp(o.status, ST_APPLIED) == 0) {
        printf("  after-commit  %s, %lld attempt%s\n",
               o.after_pending == AFTER_DUE       ? "due"
               : o.after_pending == AFTER_GAVE_UP ? "GIVEN UP"
                                                  : "done",
               (long long)o.after_attempts, o.after_attempts == 1 ? "" : "s");
    }
    code = show_steps_and_inventory(op, id, NULL, NULL);
    if (code == 0) {
        code = show_events(op, id, NULL);
    }
    if (code == 0) {
        next_steps(op, &o);
    }
    return code;
}

/* --limit N: 1..100000. Returns 0 or CPB_EXIT_USAGE. */
static int parse_limit(const struct ops *op, int64_t def, int64_t *out)
{
    *out = def;
    if ((op->o.given & OPT_LIMIT) == 0) {
        return 0;
    }
    if (text_parse_int(op->o.limit, out) != 0 || *out < 1 || *out > 100000) {
        char shown[64];
        ops_clean(op->o.limit, shown, sizeof shown);
        return ops_usage_error(op->v, "--limit wants a number from 1 to 100000, not '%s'", shown);
    }
    return 0;
}

static int orders_list(struct ops *op)
{
    int64_t limit = 0;
    struct buf where = BUF_INIT;
    struct sql_arg args[1];
    size_t n = 0;
    char state[16] = "";
    bool json = (op->o.given & OPT_JSON) != 0;
    int code = parse_limit(op, 50, &limit);
    if (code != 0) {
        return code;
    }
    if ((op->o.given & OPT_STATE) != 0) {
        size_t len = strlen(op->o.state);
        for (size_t i = 0; i < len && i + 1 < sizeof state; i++) {
            char ch = op->o.state[i];
            state[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
            state[i + 1] = '\0';
        }
        if (len >= sizeof state || metrics_state_index(state) < 0) {
            char shown[64];
            ops_clean(op->o.state, shown, sizeof shown);
            return ops_usage_error(
                op->v,
                "--state '%s': one of PENDING, APPLIED, INVALID, DEAD, CANCELLED,"
                " ROLLED_BACK",
                shown);
        }
    }
    code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    buf_adds(&where, "WHERE 1 = 1");
    if (state[0] != '\0') {
        buf_adds(&where, " AND STATUS = ?");
        args[n++] = sql_text(state);
    }
    if ((op->o.given & OPT_CHANGED) != 0) {
        buf_adds(&where, " AND CHANGED_AFTER_APPLY = 1");
    }
    /* Newest first: order_list sorts ascending, so use its own query. */
    struct cpb_stmt *st = NULL;
    struct buf rest = BUF_INIT;
    json_t *arr = json ? json_array() : NULL;
    int rows = 0;
    buf_addf(&rest, "FROM USER_ORDER_STAGING %s ORDER BY STAGING_ID DESC", buf_str(&where));
    if (ops_query_limited(op->db, ORDER_COLS, buf_str(&rest), args, n, limit, &st) != CPB_OK) {
        code = ops_db_failed(op, "listing orders");
        goto out;
    }
    for (;;) {
        struct order_row o;
        char when[40];
        char who[420];
        bool done = false;
        code = ops_next_order(op, st, &o, &done);
        if (code != 0) {
            goto out;
        }
        if (done) {
            break;
        }
        rows++;
        if (json) {
            json_array_append_new(arr, ops_order_json(&o, op->now));
            continue;
        }
        if (rows == 1) {
            printf("%-8s %-28s %-14s %-11s %8s  %-20s %s\n", "ID", "SOURCE:ORDER", "NUMBER",
                   "STATE", "ATTEMPTS", "RECEIVED", "LAST ERROR / DOCUMENT");
        }
        snprintf(who, sizeof who, "%s:%s", o.source, o.ext);
        printf("%-8lld %-28s %-14s %-11s %8lld  %-20s ", (long long)o.id, who,
               o.order_no_null ? "-" : o.order_no, o.status, (long long)o.attempts,
               ops_fmt_when(o.received, o.has_received, when, sizeof when));
        if (!o.err_code_null) {
            printf("%s", o.err_code);
        } else if (o.doc_id != 0) {
            printf("document %lld, ticket %s", (long long)o.doc_id, o.tkt_no);
        } else {
            printf("-");
        }
        printf("%s\n", o.changed != 0 ? " [CHANGED after apply]" : "");
    }
    if (json) {
        ops_print_json(arr);
    } else if (rows == 0) {
        printf("no orders\n");
    } else if (rows == limit) {
        printf("(the newest %lld; --limit N for more)\n", (long long)limit);
    }
out:
    db_finalize(st);
    json_decref(arr);
    buf_free(&rest);
    buf_free(&where);
    return code;
}

static int cmd_orders(struct ops *op)
{
    if (op->o.nargs < 2) {
        return ops_usage_error(op->v, "give the pipeline file and list or show");
    }
    op->path = op->o.args[0];
    const char *sub = op->o.args[1];
    if (strcmp(sub, "list") == 0) {
        if (op->o.nargs != 2) {
            return ops_usage_error(op->v, "list takes no more arguments");
        }
        return orders_list(op);
    }
    if (strcmp(sub, "show") == 0) {
        if (op->o.nargs != 3) {
            return ops_usage_error(op->v, "show takes one order id");
        }
        if ((op->o.given & (OPT_STATE | OPT_CHANGED | OPT_LIMIT)) != 0) {
            return ops_usage_error(op->v, "--state, --changed and --limit apply to list only");
        }
        int code = ops_open_or_fail(op);
        return code != 0 ? code : ops_show_order(op, op->o.args[2]);
    }
    char shown[64];
    ops_clean(sub, shown, sizeof shown);
    return ops_usage_error(op->v, "unknown subcommand '%s' (list, show)", shown);
}

const struct verb ops_verb_orders = {
    "orders", usage_orders, OPT_HELP | OPT_JSON | OPT_STATE | OPT_CHANGED | OPT_LIMIT, cmd_orders};
