/*
 * cmd_drift.c — `cpbridge drift`: compare what cpbridge committed in IM_INV
 * (USER_ORDER_INV, written by update-qty) with what Counterpoint holds now,
 * and with --fix correct what cpbridge itself committed, in one
 * transaction, with an audit row per change (docs/OPERATIONS_RUNBOOK.md,
 * "Inventory drift").
 *
 * Three kinds of difference, each read by one portable query:
 *  - gone:  USER_ORDER_INV rows whose document is no longer in PS_DOC_HDR
 *           (released, posted or deleted in Counterpoint): the commitment is
 *           recorded as still out;
 *  - lines: an open document whose PS_DOC_LIN quantity for an item differs
 *           from what cpbridge committed for it (a line edited, added or
 *           removed in Counterpoint);
 *  - low:   an IM_INV column lower than what cpbridge's open documents
 *           hold in it (impossible without an outside change).
 * Commitments by other sources (Counterpoint's own orders) are not
 * cpbridge's to know: a column higher than cpbridge's share is no drift.
 * Every value goes into SQL bound; text from the database is printed
 * through ops_clean.
 */
#include "cli/ops_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/host.h"
#include "engine/staging.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_drift[] =
    "usage: cpbridge drift PIPELINE [--dry-run] [--fix --why TEXT] [--json] [--nagios]\n"
    "\n"
    "Compare the inventory cpbridge committed (USER_ORDER_INV) with Counterpoint:\n"
    "a commitment whose document is gone (released or deleted in Counterpoint\n"
    "without releasing the quantity), an open document whose lines no longer\n"
    "match what was committed, and an IM_INV column lower than cpbridge's open\n"
    "documents hold. The default (--dry-run) only lists them.\n"
    "\n"
    "  --fix       correct what cpbridge committed, in one transaction, with an\n"
    "              audit row per change (needs --why)\n"
    "  --why TEXT  why, for the audit trail\n"
    "  --json      the differences as JSON\n"
    "  --nagios    one line for a monitoring check: DRIFT OK / DRIFT WARNING\n"
    "\n"
    "Exit: 0 no drift (or --fix corrected all of it); 1 drift found (or left\n"
    "after --fix); 64 usage; 69 database unreachable; 78 configuration error.\n"
    "With --nagios: 0 OK, 1 WARNING, 3 UNKNOWN.\n";

enum drift_kind { DRIFT_GONE = 0, DRIFT_LINES = 1, DRIFT_LOW = 2 };
static const char *const kind_name[] = {"gone", "lines", "low"};
static const char *const kind_code[] = {"drift.document_gone", "drift.lines_changed",
                                        "drift.column_low"};

/* One difference. recorded: what cpbridge committed (gone, lines) or its
 * open documents hold (low); actual: the document's quantity (lines) or the
 * column (low). change: what --fix adds to the column. */
struct drift {
    enum drift_kind kind;
    int64_t staging_id; /* 0 for low */
    int64_t doc_id;     /* 0 for low */
    char *item, *loc;   /* raw, bound back into SQL */
    int column;         /* index into ops_inv_columns */
    int64_t recorded, actual, change;
    bool fixed;
    char note[300];
};

struct drift_run {
    struct ops *op;
    bool fix;
    struct drift *v;
    size_t n, cap;
    size_t fixed;
    char actor[420];
};

static void drift_free(struct drift_run *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].item);
        free(d->v[i].loc);
    }
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

/* A new difference (zeroed, item and loc copied) or NULL when out of memory. */
static struct drift *drift_add(struct drift_run *d, enum drift_kind kind, const char *item,
                               const char *loc, int column)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap == 0 ? 16 : d->cap * 2;
        struct drift *grown = realloc(d->v, ncap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        d->v = grown;
        d->cap = ncap;
    }
    struct drift *x = &d->v[d->n];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->column = column;
    x->item = strdup(item != NULL ? item : "");
    x->loc = strdup(loc != NULL ? loc : "");
    if (x->item == NULL || x->loc == NULL) {
        free(x->item);
        free(x->loc);
        return NULL;
    }
    d->n++;
    return x;
}

/* The commitments of documents gone from PS_DOC_HDR. */
static const char gone_sql[] =
    "SELECT I.STAGING_ID, I.DOC_ID, I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN, SUM(I.QTY)"
    " FROM USER_ORDER_INV I WHERE NOT EXISTS"
    " (SELECT 1 FROM PS_DOC_HDR H WHERE H.DOC_ID = I.DOC_ID)"
    " GROUP BY I.STAGING_ID, I.DOC_ID, I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN"
    " ORDER BY I.STAGING_ID, I.ITEM_NO, I.LOC_ID";

/* Per open document and item: what cpbridge committed, and the document's
 * quantity now (update-qty commits a document at one location). */
static const char lines_sql[] =
    "SELECT I.STAGING_ID, I.DOC_ID, I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN, SUM(I.QTY),"
    " (SELECT COALESCE(SUM(L.QTY_SOLD), 0) FROM PS_DOC_LIN L"
    " WHERE L.DOC_ID = I.DOC_ID AND L.ITEM_NO = I.ITEM_NO)"
    " FROM USER_ORDER_INV I WHERE EXISTS"
    " (SELECT 1 FROM PS_DOC_HDR H WHERE H.DOC_ID = I.DOC_ID)"
    " GROUP BY I.STAGING_ID, I.DOC_ID, I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN"
    " ORDER BY I.STAGING_ID, I.ITEM_NO";

/* Items on an open document cpbridge committed that it did not commit
 * (added in Counterpoint), at the document's location and column. */
static const char added_sql[] =
    "SELECT I.STAGING_ID, L.DOC_ID, L.ITEM_NO, I.LOC_ID, I.QTY_COLUMN, 0, SUM(L.QTY_SOLD)"
    " FROM PS_DOC_LIN L JOIN (SELECT STAGING_ID, DOC_ID, MIN(LOC_ID) AS LOC_ID,"
    " MIN(QTY_COLUMN) AS QTY_COLUMN FROM USER_ORDER_INV GROUP BY STAGING_ID, DOC_ID) I"
    " ON I.DOC_ID = L.DOC_ID WHERE NOT EXISTS (SELECT 1 FROM USER_ORDER_INV J"
    " WHERE J.DOC_ID = L.DOC_ID AND J.ITEM_NO = L.ITEM_NO)"
    " GROUP BY I.STAGING_ID, L.DOC_ID, L.ITEM_NO, I.LOC_ID, I.QTY_COLUMN"
    " ORDER BY I.STAGING_ID, L.ITEM_NO";

/* Per item, location and column: what cpbridge's open documents hold, and
 * the column. */
static const char low_sql[] =
    "SELECT I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN, SUM(I.QTY),"
    " MAX(CASE I.QTY_COLUMN WHEN 'QTY_ON_SO' THEN V.QTY_ON_SO"
    " WHEN 'QTY_COMMIT' THEN V.QTY_COMMIT END)"
    " FROM USER_ORDER_INV I JOIN IM_INV V ON V.ITEM_NO = I.ITEM_NO AND V.LOC_ID = I.LOC_ID"
    " WHERE EXISTS (SELECT 1 FROM PS_DOC_HDR H WHERE H.DOC_ID = I.DOC_ID)"
    " GROUP BY I.ITEM_NO, I.LOC_ID, I.QTY_COLUMN ORDER BY I.ITEM_NO, I.LOC_ID";

static int drift_db_failed(struct drift_run *d, const char *what)
{
    return ops_db_failed(d->op, what);
}

/* Read the differences of one per-document query (gone, lines, added). */
static int read_doc_rows(struct drift_run *d, const char *sql, enum drift_kind kind)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    enum cpb_status rc = sql_query(d->op->db, sql, NULL, 0, &st);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        struct rd r = {st, CPB_OK, 0};
        int64_t staging = 0, doc = 0, qty = 0, now_qty = 0;
        char *item = NULL, *loc = NULL;
        char column[32];
        ops_rd_int(&r, &staging, NULL);
        ops_rd_int(&r, &doc, NULL);
        ops_rd_raw(&r, &item);
        ops_rd_raw(&r, &loc);
        ops_rd_text(&r, column, sizeof column, NULL);
        ops_rd_dec(&r, &qty, NULL);
        if (kind == DRIFT_LINES) {
            ops_rd_dec(&r, &now_qty, NULL);
        }
        rc = r.rc;
        int col = ops_inv_column_index(column);
        if (rc == CPB_OK && (kind != DRIFT_LINES || qty != now_qty)) {
            struct drift *x = col < 0 ? NULL : drift_add(d, kind, item, loc, col);
            if (col < 0) {
                code = ops_fail(d->op, CPB_EXIT_DATAERR,
                                "USER_ORDER_INV names the IM_INV column '%s', which is not one"
                                " cpbridge writes (QTY_ON_SO, QTY_COMMIT)",
                                column);
            } else if (x == NULL) {
                code = ops_fail(d->op, CPB_EXIT_SOFTWARE, "out of memory");
            } else {
                x->staging_id = staging;
                x->doc_id = doc;
                x->recorded = qty;
                x->actual = kind == DRIFT_LINES ? now_qty : 0;
                x->change = kind == DRIFT_LINES ? now_qty - qty : -qty;
            }
        }
        free(item);
        free(loc);
        if (code != 0) {
            break;
        }
    }
    db_finalize(st);
    if (code == 0 && rc != CPB_SKIP) {
        code = drift_db_failed(d, "reading USER_ORDER_INV against the documents");
    }
    return code;
}

static int read_low(struct drift_run *d)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    enum cpb_status rc = sql_query(d->op->db, low_sql, NULL, 0, &st);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        struct rd r = {st, CPB_OK, 0};
        int64_t held = 0, value = 0;
        char *item = NULL, *loc = NULL;
        char column[32];
        ops_rd_raw(&r, &item);
        ops_rd_raw(&r, &loc);
        ops_rd_text(&r, column, sizeof column, NULL);
        ops_rd_dec(&r, &held, NULL);
        ops_rd_dec(&r, &value, NULL);
        rc = r.rc;
        int col = ops_inv_column_index(column);
        if (rc == CPB_OK && col >= 0 && value < held) {
            struct drift *x = drift_add(d, DRIFT_LOW, item, loc, col);
            if (x == NULL) {
                code = ops_fail(d->op, CPB_EXIT_SOFTWARE, "out of memory");
            } else {
                x->recorded = held;
                x->actual = value;
                x->change = held - value;
            }
        }
        free(item);
        free(loc);
        if (code != 0) {
            break;
        }
    }
    db_finalize(st);
    if (code == 0 && rc != CPB_SKIP) {
        code = drift_db_failed(d, "reading IM_INV against cpbridge's open documents");
    }
    return code;
}

/* The column's value now: *found false when IM_INV has no such row. */
static enum cpb_status column_value(struct db *db, const struct drift *x, int64_t *v, bool *found)
{
    struct cpb_stmt *st = NULL;
    struct sql_arg k[] = {sql_text(x->item), sql_text(x->loc)};
    enum cpb_status rc = sql_query(db, ops_inv_columns[x->column].read_sql, k, 2, &st);
    *found = false;
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        *found = true;
        rc = db_col_decimal(st, 1, v, NULL);
    }
    db_finalize(st);
    return rc == CPB_SKIP ? CPB_OK : rc;
}

/* What cpbridge's other open documents hold in the column. */
static enum cpb_status open_share(struct db *db, const struct drift *x, int64_t *v)
{
    struct cpb_stmt *st = NULL;
    struct sql_arg k[] = {sql_text(x->item), sql_text(x->loc),
                          sql_text(ops_inv_columns[x->column].column)};
    enum cpb_status rc = sql_query(db,
                                   "SELECT COALESCE(SUM(I.QTY), 0) FROM USER_ORDER_INV I"
                                   " WHERE I.ITEM_NO = ? AND I.LOC_ID = ? AND I.QTY_COLUMN = ?"
                                   " AND EXISTS (SELECT 1 FROM PS_DOC_HDR H"
                                   " WHERE H.DOC_ID = I.DOC_ID)",
                                   k, SQL_NARGS(k), &st);
    *v = 0;
    if (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        rc = db_col_decimal(st, 1, v, NULL);
    }
    db_finalize(st);
    return rc;
}

/* Add `delta` to the column (never below zero: the change is cut to what
 * is there). *rows 0 when IM_INV has no such row. */
static enum cpb_status column_add(struct db *db, struct drift *x, int64_t *rows)
{
    struct sql_arg a[] = {sql_decimal(-x->change), sql_text(x->item), sql_text(x->loc)};
    return sql_exec(db, ops_inv_columns[x->column].subtract_sql, a, SQL_NARGS(a), rows);
}

/* Rewrite USER_ORDER_INV of one document and item from its PS_DOC_LIN rows
 * (lines), or drop the document's rows (gone). */
static enum cpb_status rewrite_record(struct db *db, const struct drift *x)
{
    if (x->kind == DRIFT_GONE) {
        struct sql_arg a[] = {sql_int(x->staging_id), sql_int(x->doc_id), sql_text(x->item),
                              sql_text(x->loc)};
        return sql_exec(db,
                        "DELETE FROM USER_ORDER_INV WHERE STAGING_ID = ? AND DOC_ID = ?"
                        " AND ITEM_NO = ? AND LOC_ID = ?",
                        a, SQL_NARGS(a), NULL);
    }
    struct sql_arg del[] = {sql_int(x->staging_id), sql_int(x->doc_id), sql_text(x->item)};
    enum cpb_status rc = sql_exec(db,
                                  "DELETE FROM USER_ORDER_INV WHERE STAGING_ID = ? AND DOC_ID = ?"
                                  " AND ITEM_NO = ?",
                                  del, SQL_NARGS(del), NULL);
    if (rc != CPB_OK) {
        return rc;
    }
    struct sql_arg ins[] = {sql_int(x->staging_id), sql_text(x->loc),
                            sql_text(ops_inv_columns[x->column].column), sql_int(x->doc_id),
                            sql_text(x->item)};
    return sql_exec(db,
                    "INSERT INTO USER_ORDER_INV (STAGING_ID, DOC_ID, LIN_SEQ_NO, ITEM_NO, LOC_ID,"
                    " QTY_COLUMN, QTY, CREATED_ROW) SELECT CAST(? AS BIGINT), DOC_ID, LIN_SEQ_NO,"
                    " ITEM_NO, CAST(? AS VARCHAR(10)), CAST(? AS VARCHAR(20)), QTY_SOLD, 0"
                    " FROM PS_DOC_LIN WHERE DOC_ID = ? AND ITEM_NO = ?",
                    ins, SQL_NARGS(ins), NULL);
}

static void describe(const struct drift *x, char *out, size_t n)
{
    char item[100], loc[40], a[48], b[48];
    const char *col = ops_inv_columns[x->column].column;
    ops_clean(x->item, item, sizeof item);
    ops_clean(x->loc, loc, sizeof loc);
    switch (x->kind) {
    case DRIFT_GONE:
        snprintf(out, n,
                 "order %lld: document %lld is no longer in PS_DOC_HDR (released, posted or"
                 " deleted), but cpbridge's commitment of %s to %s for item %s at %s is"
                 " recorded as still out",
                 (long long)x->staging_id, (long long)x->doc_id,
                 ops_fmt_dec(x->recorded, 4, a, sizeof a), col, item, loc);
        break;
    case DRIFT_LINES:
        snprintf(out, n,
                 "order %lld: document %lld has %s of item %s, cpbridge committed %s to %s at %s",
                 (long long)x->staging_id, (long long)x->doc_id,
                 ops_fmt_dec(x->actual, 4, a, sizeof a), item,
                 ops_fmt_dec(x->recorded, 4, b, sizeof b), col, loc);
        break;
    case DRIFT_LOW:
        snprintf(out, n, "item %s at %s: %s is %s, less than the %s cpbridge's open documents hold",
                 item, loc, col, ops_fmt_dec(x->actual, 4, a, sizeof a),
                 ops_fmt_dec(x->recorded, 4, b, sizeof b));
        break;
    }
}

/* Correct one difference inside the fix's transaction; x->fixed and
 * x->note say what was done. Returns 0 or an exit code. */
static int fix_one(struct drift_run *d, struct drift *x)
{
    struct db *db = d->op->db;
    char q[48], what[900];
    int64_t rows = 0, v = 0, share = 0;
    bool found = false;
    enum cpb_status rc = CPB_OK;

    if (x->kind == DRIFT_GONE) {
        /* Release what the column still holds beyond cpbridge's open
         * documents, at most what was recorded: a Counterpoint that
         * released the quantity itself is not released twice. */
        rc = column_value(db, x, &v, &found);
        if (rc == CPB_OK) {
            rc = open_share(db, x, &share);
        }
        if (rc != CPB_OK) {
            return drift_db_failed(d, "reading IM_INV");
        }
        int64_t spare = v - share > 0 ? v - share : 0;
        x->change = found ? -(x->recorded < spare ? x->recorded : spare) : 0;
    }
    if (x->change != 0) {
        rc = column_add(db, x, &rows);
        if (rc != CPB_OK) {
            return drift_db_failed(d, "updating IM_INV");
        }
        if (rows == 0) {
            snprintf(x->note, sizeof x->note, "IM_INV has no row for it: not changed");
            return 0;
        }
    }
    if (x->kind != DRIFT_LOW && rewrite_record(db, x) != CPB_OK) {
        return drift_db_failed(d, "correcting USER_ORDER_INV");
    }
    x->fixed = true;
    d->fixed++;
    snprintf(x->note, sizeof x->note, "%s %s %s", x->change >= 0 ? "added" : "released",
             ops_fmt_dec(x->change >= 0 ? x->change : -x->change, 4, q, sizeof q),
             ops_inv_columns[x->column].column);
    describe(x, what, sizeof what);
    struct buf msg = BUF_INIT;
    buf_addf(&msg, "%s: %s; %s", d->op->o.why, what, x->note);
    struct staging_event ev = {x->staging_id, /* 0: none (NULL) */
                               NULL,
                               "drift.fix",
                               NULL,
                               NULL,
                               NULL,
                               kind_code[x->kind],
                               msg.oom ? d->op->o.why : buf_str(&msg),
                               d->actor,
                               -1};
    rc = staging_event(db, &ev, host_now_ms());
    buf_free(&msg);
    return rc == CPB_OK ? 0 : drift_db_failed(d, "writing the audit row");
}

/* Find the differences; with --fix correct them, then look for columns
 * still low (a fix of the others can change them). */
static int drift_find(struct drift_run *d)
{
    int code = read_doc_rows(d, gone_sql, DRIFT_GONE);
    if (code == 0) {
        code = read_doc_rows(d, lines_sql, DRIFT_LINES);
    }
    if (code == 0) {
        code = read_doc_rows(d, added_sql, DRIFT_LINES);
    }
    if (code != 0 || !d->fix) {
        return code != 0 ? code : read_low(d);
    }
    for (size_t i = 0; i < d->n && code == 0; i++) {
        code = fix_one(d, &d->v[i]);
    }
    size_t before = d->n;
    if (code == 0) {
        code = read_low(d);
    }
    for (size_t i = before; i < d->n && code == 0; i++) {
        code = fix_one(d, &d->v[i]);
    }
    return code;
}

/* The check's result for `health`: USER_SYNC_STATE "drift/<pipeline>". */
static int drift_record(struct drift_run *d)
{
    char key[200];
    ops_drift_state_key(d->op->cfg->name, key, sizeof key);
    json_t *j = json_pack("{s:I, s:I, s:I}", "checked", (json_int_t)host_now_ms(), "found",
                          (json_int_t)d->n, "left", (json_int_t)(d->n - d->fixed));
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        return ops_fail(d->op, CPB_EXIT_SOFTWARE, "out of memory");
    }
    enum cpb_status rc = staging_state_set(d->op->db, key, text, host_now_ms());
    free(text);
    return rc == CPB_OK ? 0 : drift_db_failed(d, "recording the check for health");
}

static void drift_print(const struct drift_run *d)
{
    char line[1000];
    printf("Inventory drift of pipeline '%s' (what cpbridge committed in IM_INV):\n",
           d->op->cfg->name);
    for (size_t i = 0; i < d->n; i++) {
        const struct drift *x = &d->v[i];
        describe(x, line, sizeof line);
        printf("  %-5s %s%s%s\n", kind_name[x->kind], line, x->note[0] != '\0' ? ": " : "",
               x->note);
    }
    if (d->n == 0) {
        printf("  none: every commitment cpbridge recorded matches Counterpoint\n");
    } else if (!d->fix) {
        printf("%zu difference%s. `cpbridge drift %s --fix --why TEXT` corrects what cpbridge"
               " committed (docs/OPERATIONS_RUNBOOK.md, \"Inventory drift\").\n",
               d->n, d->n == 1 ? "" : "s", d->op->path);
    } else {
        printf("%zu of %zu difference%s corrected.\n", d->fixed, d->n, d->n == 1 ? "" : "s");
    }
}

static void drift_json(const struct drift_run *d)
{
    json_t *arr = json_array();
    char line[1000];
    for (size_t i = 0; i < d->n; i++) {
        const struct drift *x = &d->v[i];
        char item[100], loc[40];
        ops_clean(x->item, item, sizeof item);
        ops_clean(x->loc, loc, sizeof loc);
        describe(x, line, sizeof line);
        json_array_append_new(
            arr, json_pack(
                     "{s:s, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:s}", "kind",
                     kind_name[x->kind], "order_id",
                     x->staging_id > 0 ? json_integer((json_int_t)x->staging_id) : json_null(),
                     "doc_id", x->doc_id > 0 ? json_integer((json_int_t)x->doc_id) : json_null(),
                     "item", item, "location", loc, "column", ops_inv_columns[x->column].column,
                     "recorded", ops_jdec(x->recorded, false), "actual", ops_jdec(x->actual, false),
                     "change", ops_jdec(x->change, false), "fixed", x->fixed, "message", line));
    }
    json_t *j =
        json_pack("{s:s, s:b, s:I, s:I, s:o}", "pipeline", d->op->cfg->name, "fix", d->fix, "found",
                  (json_int_t)d->n, "fixed", (json_int_t)d->fixed, "differences", arr);
    ops_print_json(j);
    json_decref(j);
}

static int cmd_drift(struct ops *op)
{
    struct drift_run d;
    bool nagios = (op->o.given & OPT_NAGIOS) != 0;
    int code;

    memset(&d, 0, sizeof d);
    d.op = op;
    d.fix = (op->o.given & OPT_FIX) != 0;
    if (op->o.nargs != 1) {
        return ops_usage_error(op->v, "give the pipeline file");
    }
    if (d.fix && (op->o.given & OPT_DRY_RUN) != 0) {
        return ops_usage_error(op->v, "--fix and --dry-run exclude each other");
    }
    if (d.fix && ((op->o.given & OPT_WHY) == 0 || op->o.why[0] == '\0')) {
        return ops_usage_error(op->v, "--fix needs --why TEXT, for the audit trail");
    }
    if ((op->o.given & OPT_WHY) != 0 && !text_utf8_valid(op->o.why, strlen(op->o.why))) {
        return ops_usage_error(op->v, "--why is not valid UTF-8");
    }
    op->path = op->o.args[0];
    code = ops_open_or_fail(op);
    if (code != 0) {
        return nagios ? 3 : code;
    }
    ops_actor_of(d.actor, sizeof d.actor);
    if (d.fix && db_begin(op->db) != CPB_OK) {
        code = ops_db_failed(op, "starting a transaction");
        goto out;
    }
    code = drift_find(&d);
    if (code == 0 && d.fix && db_commit(op->db) != CPB_OK) {
        code = ops_db_failed(op, "committing");
    }
    if (code == 0) {
        code = drift_record(&d);
    }
    if (code != 0) {
        goto out;
    }
    size_t left = d.n - d.fixed;
    if (nagios) {
        if (left == 0) {
            printf("DRIFT OK - %s\n", d.fixed > 0 ? "every difference corrected"
                                                  : "cpbridge's commitments match Counterpoint");
        } else {
            printf("DRIFT WARNING - %zu difference%s in cpbridge's inventory commitments;"
                   " `cpbridge drift %s`\n",
                   left, left == 1 ? "" : "s", op->path);
        }
    } else if ((op->o.given & OPT_JSON) != 0) {
        drift_json(&d);
    } else {
        drift_print(&d);
    }
    code = left == 0 ? CPB_EXIT_OK : CPB_EXIT_ATTENTION;
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    drift_free(&d);
    if (nagios && code > 1) {
        return 3;
    }
    return code;
}

const struct verb ops_verb_drift = {
    "drift", usage_drift, OPT_HELP | OPT_JSON | OPT_DRY_RUN | OPT_FIX | OPT_WHY | OPT_NAGIOS,
    cmd_drift};
