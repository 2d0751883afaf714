/*
 * cmd_rollback.c — `cpbridge rollback`: undo an APPLIED order in
 * Counterpoint in one transaction (docs/ROLLBACK.md), or print what would
 * change.
 *
 * Every text read from the database is untrusted: it is printed through
 * ops_clean (control bytes and invalid UTF-8 escaped, cut to a fixed size).
 * Every value goes into SQL as a bound parameter.
 */
#include "cli/ops.h"
#include "cli/ops_common.h"

#include <stdarg.h>
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

static const char usage_rollback[] =
    "usage: cpbridge rollback PIPELINE ID [--dry-run] [--force] [--why TEXT]\n"
    "\n"
    "Undo an APPLIED order in Counterpoint, in one transaction: delete the\n"
    "document cpbridge wrote (PS_DOC_NOTE, PS_DOC_PMT, PS_DOC_CONTACT,\n"
    "PS_DOC_HDR_MISC_CHRG, PS_DOC_HDR_TOT, PS_DOC_LIN, PS_DOC_HDR), subtract\n"
    "exactly the quantities it added to IM_INV, and mark the order ROLLED_BACK\n"
    "(`cpbridge dlq PIPELINE retry ID` applies it again). Refused for a\n"
    "document that is no longer open (posted or released), that was edited in\n"
    "Counterpoint since, or that cpbridge adopted instead of writing.\n"
    "docs/ROLLBACK.md explains when to use it.\n"
    "\n"
    "  --dry-run   print exactly what would change, and change nothing\n"
    "  --force     roll back a document edited in Counterpoint since (the edits\n"
    "              are lost), or whose inventory would go below zero\n"
    "  --why TEXT  why, for the audit trail\n"
    "\n"
    "Exit: 0 done; 64 usage; 65 refused (the message says why and what to do);\n"
    "66 no such order; 69 database unreachable.\n";

/* The document tables cpbridge writes, children first: the order a delete
 * must take (PS_DOC_HDR last, as the foreign keys require). */
static const char *const doc_tables[] = {
    "PS_DOC_NOTE",    "PS_DOC_PMT", "PS_DOC_CONTACT", "PS_DOC_HDR_MISC_CHRG",
    "PS_DOC_HDR_TOT", "PS_DOC_LIN", "PS_DOC_HDR"};
static const char *const doc_delete_sql[] = {"DELETE FROM PS_DOC_NOTE WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_PMT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_CONTACT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR_MISC_CHRG WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR_TOT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_LIN WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR WHERE DOC_ID = ?"};
#define N_DOC_TABLES (sizeof doc_tables / sizeof doc_tables[0])

/* The document header, locked for the transaction where the dialect can. */
static const char *const doc_hdr_sql[] = {
    [DB_SQLITE] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR WHERE DOC_ID = ?",
    [DB_POSTGRESQL] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR"
                      " WHERE DOC_ID = ? FOR UPDATE",
    [DB_MSSQL] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR"
                 " WITH (UPDLOCK, ROWLOCK) WHERE DOC_ID = ?",
};

/* SQL Server's datetime keeps 1/300 s: an edit is a LST_MAINT_DT more than
 * this after APPLIED_DT. */
#define EDIT_TOLERANCE_MS 1000

/* One IM_INV change: every USER_ORDER_INV row of one item, location and
 * column added up. item/loc are the raw values (bound back into SQL). */
struct inv_change {
    char *item;
    char *loc;
    size_t column; /* index into inv_columns */
    int64_t qty;   /* ten-thousandths cpbridge added */
    bool created;  /* cpbridge created the row */
    bool found;    /* the row is still there */
    int64_t old_v, new_v;
};

struct rollback {
    struct ops *op;
    bool dry_run;
    bool force;
    bool automatic; /* a run's answer to run.store_cancel (ops_undo_for_store) */
    bool note_due;  /* automatic: leave the after-commit steps due */
    bool busy;      /* refused because a run holds the order */
    const char *actor;
    struct order_row o;
    char label[500];
    int64_t doc_rows[N_DOC_TABLES];
    struct inv_change *inv;
    size_t n_inv;
    int64_t inv_rows;
    int64_t step_rows;
    struct buf forced; /* the edit findings --force went past */
};

static void rollback_free(struct rollback *rb)
{
    for (size_t i = 0; i < rb->n_inv; i++) {
        free(rb->inv[i].item);
        free(rb->inv[i].loc);
    }
    free(rb->inv);
    buf_free(&rb->forced);
}

/* Is `user` (raw) one of the users the pipeline's create-order stages
 * write documents as (their `user` option; "CPBRIDGE" by default)? */
static bool written_by_us(const struct config *cfg, const char *user)
{
    bool any = false;
    if (user == NULL) {
        return false;
    }
    for (size_t i = 0; i < cfg->n_stages; i++) {
        const char *u = "CPBRIDGE";
        if (cfg->stages[i].stage == NULL || strcmp(cfg->stages[i].stage, "create-order") != 0) {
            continue;
        }
        any = true;
        if (cfg->stages[i].options != NULL) {
            const char *set = NULL;
            if (config_setting_lookup_string(cfg->stages[i].options, "user", &set) == CONFIG_TRUE &&
                set != NULL) {
                u = set;
            }
        }
        if (strcmp(u, user) == 0) {
            return true;
        }
    }
    return !any && strcmp(user, "CPBRIDGE") == 0;
}

/* Refuse: print the reason (or keep it in op->quiet), return CPB_EXIT_DATAERR. */
static int refuse(const struct rollback *rb, const char *fmt, ...) CPB_PRINTF(2, 3);
static int refuse(const struct rollback *rb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (rb->op->quiet != NULL) {
        buf_reset(rb->op->quiet);
        buf_vaddf(rb->op->quiet, fmt, ap);
    } else {
        fprintf(stderr, "cpbridge rollback: order %s: refused: ", rb->label);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
    return CPB_EXIT_DATAERR;
}

/* A database failure inside the rollback: a refusal by the database (a
 * constraint: rows cpbridge does not know about still point at the
 * document) is 65, anything else 69. */
static int rollback_db_failed(struct rollback *rb, enum cpb_status rc, const char *what)
{
    char msg[1024];
    ops_clean(db_last_error(rb->op->db), msg, sizeof msg);
    if (rc == CPB_FAIL && !db_broken(rb->op->db)) {
        return refuse(rb,
                      "the database refused %s: %s (nothing was changed; rows cpbridge did not"
                      " write may refer to the document: remove it in Counterpoint instead)",
                      what, msg);
    }
    return ops_fail(rb->op, CPB_EXIT_UNAVAILABLE, "order %s: %s: %s (nothing was changed)",
                    rb->label, what, msg);
}

/* Checks inside the transaction. Returns 0 or an exit code (printed). */
static int rollback_check(struct rollback *rb)
{
    struct ops *op = rb->op;
    struct order_row *o = &rb->o;
    struct cpb_stmt *st = NULL;
    char when[40];
    int code = 0;
    enum cpb_status rc;

    if (strcmp(o->status, ST_ROLLED_BACK) == 0) {
        return refuse(rb,
                      "it is ROLLED_BACK already; `cpbridge dlq %s retry %lld` applies it again",
                      op->path, (long long)o->id);
    }
    if (strcmp(o->status, ST_APPLIED) != 0) {
        return refuse(rb,
                      "it is %s, not APPLIED: it was never written to Counterpoint, so there is"
                      " nothing to roll back%s%s%s",
                      o->status,
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : " (to drop it: `cpbridge dlq ",
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : op->path,
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : " cancel ID --why TEXT`)");
    }
    if (o->doc_id == 0) {
        return refuse(rb, "it is APPLIED without a Counterpoint document (the pipeline has no"
                          " create-order step): nothing to roll back");
    }
    if (o->adopted != 0) {
        return refuse(rb,
                      "document %lld existed already and cpbridge adopted it instead of writing"
                      " it: cpbridge does not delete what it did not write; change it in"
                      " Counterpoint",
                      (long long)o->doc_id);
    }
    if (ops_lease_live(o, rb->op->now)) {
        rb->busy = true;
        return refuse(rb,
                      "a run is working on it (after-commit steps; lease held by %s until %s):"
                      " try again after that run",
                      o->lease_owner, ops_fmt_when(o->lease_until, true, when, sizeof when));
    }

    /* The document header: still open, and as cpbridge left it? */
    rc = sql_query(op->db, doc_hdr_sql[db_get_dialect(op->db)],
                   (struct sql_arg[]){sql_int(o->doc_id)}, 1, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_SKIP) {
        code = refuse(rb,
                      "document %lld (ticket %s) is no longer open in Counterpoint: it was posted"
                      " or released (it moved to the PS_TKT_HIST tables) or deleted. A rollback"
                      " cannot undo a posted document: void it or enter a return in Counterpoint"
                      " (docs/ROLLBACK.md)",
                      (long long)o->doc_id, o->tkt_no);
        goto out;
    }
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "reading the document header");
        goto out;
    }
    struct rd r = {st, CPB_OK, 0};
    char *tkt = NULL;
    char *user = NULL;
    int64_t maint = 0;
    bool has_maint = false;
    ops_rd_raw(&r, &tkt);
    ops_rd_raw(&r, &user);
    ops_rd_time(&r, &maint, &has_maint);
    if (r.rc != CPB_OK) {
        free(tkt);
        free(user);
        code = rollback_db_failed(rb, r.rc, "reading the document header");
        goto out;
    }
    /* A different ticket number: not the document cpbridge wrote. Never forced. */
    char shown[200];
    ops_clean(tkt, shown, sizeof shown);
    if (!o->tkt_no_null && strcmp(shown, o->tkt_no) != 0) {
        free(tkt);
        free(user);
        code = refuse(rb,
                      "document %lld has ticket %s, but cpbridge wrote ticket %s: it is not the"
                      " document cpbridge wrote; nothing was changed",
                      (long long)o->doc_id, shown, o->tkt_no);
        goto out;
    }
    if (!written_by_us(op->cfg, user)) {
        ops_clean(user, shown, sizeof shown);
        buf_addf(&rb->forced, "%slast changed by user '%s', not the create-order user",
                 rb->forced.len > 0 ? "; " : "", user != NULL ? shown : "(none)");
    }
    if (has_maint && o->has_applied && maint > o->applied + EDIT_TOLERANCE_MS) {
        char t2[40];
        buf_addf(&rb->forced, "%slast changed %s, after cpbridge applied it (%s)",
                 rb->forced.len > 0 ? "; " : "", ops_fmt_when(maint, true, when, sizeof when),
                 ops_fmt_when(o->applied, true, t2, sizeof t2));
    }
    free(tkt);
    free(user);
    db_finalize(st);
    st = NULL;

    int64_t doc_lines = 0;
    int64_t order_lines = 0;
    int64_t tax_rows = 0;
    rc = sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_LIN WHERE DOC_ID = ?",
                       (struct sql_arg[]){sql_int(o->doc_id)}, 1, &doc_lines, NULL);
    if (rc == CPB_OK) {
        rc = sql_query_int(op->db,
                           "SELECT COUNT(*) FROM USER_ORDER_STAGING_LIN WHERE STAGING_ID = ?",
                           (struct sql_arg[]){sql_int(o->id)}, 1, &order_lines, NULL);
    }
    if (rc == CPB_OK) {
        rc = sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_TAX WHERE DOC_ID = ?",
                           (struct sql_arg[]){sql_int(o->doc_id)}, 1, &tax_rows, NULL);
    }
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "counting the document's rows");
        goto out;
    }
    if (doc_lines != order_lines) {
        buf_addf(&rb->forced, "%shas %lld line%s, the order has %lld",
                 rb->forced.len > 0 ? "; " : "", (long long)doc_lines, doc_lines == 1 ? "" : "s",
                 (long long)order_lines);
    }
    if (tax_rows > 0) {
        /* cpbridge never writes PS_DOC_TAX: Counterpoint recalculated the
         * document. Deleting those rows would touch what cpbridge did not
         * write, so not even --force goes past this. */
        code = refuse(rb,
                      "document %lld has %lld PS_DOC_TAX row%s, which cpbridge never writes:"
                      " Counterpoint worked on it since; remove or void the document in"
                      " Counterpoint instead",
                      (long long)o->doc_id, (long long)tax_rows, tax_rows == 1 ? "" : "s");
        goto out;
    }
    if (rb->forced.len > 0 && !rb->force) {
        code = refuse(rb,
                      "document %lld was edited in Counterpoint since cpbridge wrote it (%s)."
                      " Fix it by hand in Counterpoint, or add --force to delete it anyway"
                      " (the edits are lost)",
                      (long long)o->doc_id, buf_str(&rb->forced));
        goto out;
    }
out:
    db_finalize(st);
    return code;
}

/* Read USER_ORDER_INV and add the rows up per item, location and column. */
static int rollback_load_inventory(struct rollback *rb)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    size_t cap = 0;
    enum cpb_status rc = sql_query(rb->op->db,
                                   "SELECT ITEM_NO, LOC_ID, QTY_COLUMN, QTY, CREATED_ROW, DOC_ID"
                                   " FROM USER_ORDER_INV WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                                   (struct sql_arg[]){sql_int(rb->o.id)}, 1, &st);
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "reading the inventory changes");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char *item = NULL;
        char *loc = NULL;
        char column[64];
        int64_t qty = 0;
        int64_t created = 0;
        int64_t doc = 0;
        size_t col = OPS_N_INV_COLUMNS;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        ops_rd_raw(&r, &item);
        ops_rd_raw(&r, &loc);
        ops_rd_text(&r, column, sizeof column, NULL);
        ops_rd_dec(&r, &qty, NULL);
        ops_rd_int(&r, &created, NULL);
        ops_rd_int(&r, &doc, NULL);
        if (r.rc != CPB_OK) {
            free(item);
            free(loc);
            code = rollback_db_failed(rb, r.rc, "reading the inventory changes");
            goto out;
        }
        rb->inv_rows++;
        for (size_t i = 0; i < OPS_N_INV_COLUMNS; i++) {
            if (strcmp(column, ops_inv_columns[i].column) == 0) {
                col = i;
            }
        }
        if (col == OPS_N_INV_COLUMNS || doc != rb->o.doc_id) {
            free(item);
            free(loc);
            code = refuse(rb,
                          col == OPS_N_INV_COLUMNS
                              ? "USER_ORDER_INV names the IM_INV column '%s', which is not one"
                                " cpbridge writes (QTY_ON_SO, QTY_COMMIT): nothing was changed"
                              : "USER_ORDER_INV rows (column %s) belong to another document:"
                                " nothing was changed",
                          column);
            goto out;
        }
        size_t k = 0;
        while (k < rb->n_inv && !(rb->inv[k].column == col && strcmp(rb->inv[k].item, item) == 0 &&
                                  strcmp(rb->inv[k].loc, loc) == 0)) {
            k++;
        }
        if (k < rb->n_inv) {
            rb->inv[k].qty += qty;
            rb->inv[k].created = rb->inv[k].created || created != 0;
            free(item);
            free(loc);
            continue;
        }
        if (rb->n_inv == cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            struct inv_change *grown = realloc(rb->inv, ncap * sizeof *grown);
            if (grown == NULL) {
                free(item);
                free(loc);
                code = ops_fail(rb->op, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
            rb->inv = grown;
            cap = ncap;
        }
        struct inv_change *c = &rb->inv[rb->n_inv++];
        memset(c, 0, sizeof *c);
        c->item = item;
        c->loc = loc;
        c->column = col;
        c->qty = qty;
        c->created = created != 0;
    }
out:
    db_finalize(st);
    return code;
}

/* Subtract each change from IM_INV; the row is locked by the UPDATE, so the
 * value read after it is exact and old = new + quantity. */
static int rollback_inventory(struct rollback *rb)
{
    struct db *db = rb->op->db;
    char q[48], a[48];
    for (size_t i = 0; i < rb->n_inv; i++) {
        struct inv_change *c = &rb->inv[i];
        int64_t rows = 0;
        bool null = false;
        struct sql_arg args[] = {sql_decimal(c->qty), sql_text(c->item), sql_text(c->loc)};
        enum cpb_status rc =
            sql_exec(db, ops_inv_columns[c->column].subtract_sql, args, SQL_NARGS(args), &rows);
        if (rc != CPB_OK) {
            return rollback_db_failed(rb, rc, "updating IM_INV");
        }
        char item[200], loc[200];
        ops_clean(c->item, item, sizeof item);
        ops_clean(c->loc, loc, sizeof loc);
        if (rows == 0) {
            if (!rb->force) {
                return refuse(rb,
                              "IM_INV has no row for item %s at location %s any more, so the %s"
                              " cpbridge added to %s cannot be given back; add --force to roll"
                              " back without it",
                              item, loc, ops_fmt_dec(c->qty, 4, q, sizeof q),
                              ops_inv_columns[c->column].column);
            }
            continue;
        }
        c->found = true;
        struct cpb_stmt *st = NULL;
        rc = sql_query(db, ops_inv_columns[c->column].read_sql, args + 1, 2, &st);
        if (rc == CPB_OK) {
            rc = db_fetch(st);
        }
        if (rc == CPB_OK) {
            rc = db_col_decimal(st, 1, &c->new_v, &null);
        }
        db_finalize(st);
        if (rc != CPB_OK) {
            return rollback_db_failed(rb, rc, "reading IM_INV");
        }
        c->old_v = c->new_v + c->qty;
        if (c->new_v < 0 && !rb->force) {
            return refuse(rb,
                          "IM_INV %s for item %s at location %s is %s, less than the %s cpbridge"
                          " added: Counterpoint has relieved it since (the order was released"
                          " or changed?); check the document, or add --force to subtract anyway",
                          ops_inv_columns[c->column].column, item, loc,
                          ops_fmt_dec(c->old_v, 4, a, sizeof a),
                          ops_fmt_dec(c->qty, 4, q, sizeof q));
        }
    }
    return 0;
}

static int rollback_apply(struct rollback *rb)
{
    struct db *db = rb->op->db;
    struct order_row *o = &rb->o;
    int64_t rows = 0;
    int64_t now = host_now_ms();
    enum cpb_status rc;
    int code = rollback_load_inventory(rb);
    if (code == 0) {
        code = rollback_inventory(rb);
    }
    if (code != 0) {
        return code;
    }
    for (size_t i = 0; i < N_DOC_TABLES; i++) {
        rc = sql_exec(db, doc_delete_sql[i], (struct sql_arg[]){sql_int(o->doc_id)}, 1,
                      &rb->doc_rows[i]);
        if (rc != CPB_OK) {
            char what[80];
            snprintf(what, sizeof what, "deleting from %s", doc_tables[i]);
            return rollback_db_failed(rb, rc, what);
        }
    }
    rc = sql_exec(db, "DELETE FROM USER_ORDER_INV WHERE STAGING_ID = ?",
                  (struct sql_arg[]){sql_int(o->id)}, 1, NULL);
    if (rc == CPB_OK) {
        rc = sql_exec(db, "DELETE FROM USER_ORDER_STEP WHERE STAGING_ID = ?",
                      (struct sql_arg[]){sql_int(o->id)}, 1, &rb->step_rows);
    }
    if (rc == CPB_OK) {
        /* CP_DOC_ID and CP_TKT_NO stay on the row for the record (and in
         * the rollback event); `dlq retry` clears them. */
        /* A rollback for the store leaves the after-commit steps due when a
         * stage will tell the store (result.rolled_back). */
        struct sql_arg a[] = {sql_int(rb->note_due), sql_time(now), sql_time(now), sql_int(o->id)};
        rc = sql_exec(db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'ROLLED_BACK', AFTER_PENDING = ?,"
                      " AFTER_ATTEMPTS = 0, NEXT_ATTEMPT_DT = ?, STORE_CANCELLED = 0,"
                      " LEASE_TOKEN = NULL, LEASE_OWNER = NULL, LEASE_UNTIL = NULL,"
                      " UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = 'APPLIED'",
                      a, SQL_NARGS(a), &rows);
    }
    if (rc == CPB_OK && rows != 1) {
        return refuse(rb, "the order changed while this ran: look again");
    }
    if (rc == CPB_OK) {
        struct buf msg = BUF_INIT;
        buf_addf(&msg, "%s (document %lld, ticket %s removed",
                 rb->op->o.why != NULL ? rb->op->o.why : "rolled back by hand",
                 (long long)o->doc_id, o->tkt_no);
        if (rb->forced.len > 0) {
            buf_addf(&msg, "; forced past: %s", buf_str(&rb->forced));
        }
        buf_adds(&msg, ")");
        struct staging_event ev = {o->id,
                                   NULL,
                                   "rollback",
                                   NULL,
                                   ST_APPLIED,
                                   ST_ROLLED_BACK,
                                   rb->automatic        ? "store.rollback"
                                   : rb->forced.len > 0 ? "manual.rollback.forced"
                                                        : "manual.rollback",
                                   msg.oom ? rb->op->o.why : buf_str(&msg),
                                   rb->actor,
                                   -1};
        rc = staging_event(db, &ev, now);
        buf_free(&msg);
    }
    if (rc != CPB_OK) {
        return rollback_db_failed(rb, rc, "marking the order rolled back");
    }
    return 0;
}

static void rollback_print(const struct rollback *rb)
{
    char q[48], a[48], b[48];
    printf("%s order %s: document %lld, ticket %s\n",
           rb->dry_run ? "Dry run: rolling back would change" : "Rolled back", rb->label,
           (long long)rb->o.doc_id, rb->o.tkt_no);
    if (rb->forced.len > 0) {
        char shown[1100];
        ops_clean(buf_str(&rb->forced), shown, sizeof shown);
        printf("  forced past: %s\n", shown);
    }
    for (size_t i = 0; i < N_DOC_TABLES; i++) {
        printf("  %-22s %lld row%s deleted\n", doc_tables[i], (long long)rb->doc_rows[i],
               rb->doc_rows[i] == 1 ? "" : "s");
    }
    for (size_t i = 0; i < rb->n_inv; i++) {
        const struct inv_change *c = &rb->inv[i];
        char item[200], loc[200];
        ops_clean(c->item, item, sizeof item);
        ops_clean(c->loc, loc, sizeof loc);
        if (!c->found) {
            printf("  IM_INV %s @ %s %s: row missing, -%s skipped (--force)\n", item, loc,
                   ops_inv_columns[c->column].column, ops_fmt_dec(c->qty, 4, q, sizeof q));
            continue;
        }
        printf("  IM_INV %s @ %s %s: %s -> %s (-%s)%s\n", item, loc,
               ops_inv_columns[c->column].column, ops_fmt_dec(c->old_v, 4, a, sizeof a),
               ops_fmt_dec(c->new_v, 4, b, sizeof b), ops_fmt_dec(c->qty, 4, q, sizeof q),
               c->created ? "; the row was created by cpbridge and is left in place" : "");
    }
    printf("  %-22s %lld row%s deleted\n", "USER_ORDER_INV", (long long)rb->inv_rows,
           rb->inv_rows == 1 ? "" : "s");
    printf("  %-22s %lld row%s deleted (after-commit steps done)\n", "USER_ORDER_STEP",
           (long long)rb->step_rows, rb->step_rows == 1 ? "" : "s");
    printf("  %-22s APPLIED -> ROLLED_BACK, event 'rollback' by %s\n", "USER_ORDER_STAGING",
           rb->actor);
    if (rb->dry_run) {
        printf("Nothing was changed (dry run). Run without --dry-run to roll back.\n");
    } else {
        printf("Done. The store still has the order: `cpbridge dlq %s retry %lld` applies it again,"
               " `cpbridge dlq %s cancel %lld --why TEXT` drops it.\n",
               rb->op->path, (long long)rb->o.id, rb->op->path, (long long)rb->o.id);
    }
}

/* Roll order `id` back (or not, for a dry run) in one transaction: lock,
 * check, undo, commit. Returns 0 or an exit code (its message printed, or
 * kept in op->quiet). */
static int rollback_tx(struct rollback *rb, int64_t id)
{
    struct ops *op = rb->op;
    enum cpb_status rc = db_begin(op->db);
    int code = 0;
    if (rc != CPB_OK) {
        code = ops_db_failed(op, "starting a transaction");
        goto out;
    }
    code = ops_lock_order(op, id, host_now_ms(), &rb->o);
    if (code != 0) {
        goto out;
    }
    ops_order_label(&rb->o, rb->label, sizeof rb->label);
    code = rollback_check(rb);
    if (code == 0) {
        code = rollback_apply(rb);
    }
    if (code != 0) {
        goto out;
    }
    rc = rb->dry_run ? db_rollback(op->db) : db_commit(op->db);
    if (rc != CPB_OK) {
        code = ops_db_failed(op, rb->dry_run ? "rolling the dry run back" : "committing");
    }
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    return code;
}

static int cmd_rollback(struct ops *op)
{
    struct rollback rb;
    char actor[420];
    int64_t id = 0;
    int code;

    if (op->o.nargs != 2) {
        return ops_usage_error(op->v, "give the pipeline file and one order id");
    }
    op->path = op->o.args[0];
    if ((op->o.given & OPT_WHY) != 0 && !text_utf8_valid(op->o.why, strlen(op->o.why))) {
        return ops_usage_error(op->v, "--why is not valid UTF-8");
    }
    code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    code = ops_resolve_id(op, op->o.args[1], &id);
    if (code != 0) {
        return code;
    }
    ops_actor_of(actor, sizeof actor);
    memset(&rb, 0, sizeof rb);
    rb.op = op;
    rb.dry_run = (op->o.given & OPT_DRY_RUN) != 0;
    rb.force = (op->o.given & OPT_FORCE) != 0;
    rb.actor = actor;
    snprintf(rb.label, sizeof rb.label, "%lld", (long long)id);
    code = rollback_tx(&rb, id);
    if (code == 0) {
        rollback_print(&rb);
    }
    rollback_free(&rb);
    return code;
}

int ops_undo_for_store(void *arg, struct db *db, int64_t id, const char *why, bool note_due,
                       char *msg, size_t n)
{
    const struct ops_undo *u = arg;
    struct buf quiet = BUF_INIT;
    struct ops op;
    struct rollback rb;
    char actor[300];

    memset(&op, 0, sizeof op);
    op.v = &ops_verb_rollback;
    op.path = u->path;
    op.cfg = u->cfg;
    op.db = db;
    op.now = host_now_ms();
    op.o.why = why;
    op.quiet = &quiet;
    snprintf(actor, sizeof actor, "cpbridge run (run.store_cancel)");
    memset(&rb, 0, sizeof rb);
    rb.op = &op;
    rb.automatic = true;
    rb.note_due = note_due;
    rb.actor = actor;
    snprintf(rb.label, sizeof rb.label, "%lld", (long long)id);
    int code = rollback_tx(&rb, id);
    snprintf(msg, n, "%s", quiet.oom ? "out of memory" : buf_str(&quiet));
    buf_free(&quiet);
    rollback_free(&rb);
    if (code == 0) {
        return 0;
    }
    if (rb.busy) {
        return 2;
    }
    return code == CPB_EXIT_DATAERR ? 1 : -1;
}

const struct verb ops_verb_rollback = {"rollback", usage_rollback,
                                       OPT_HELP | OPT_DRY_RUN | OPT_FORCE | OPT_WHY, cmd_rollback};
