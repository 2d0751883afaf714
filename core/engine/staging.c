/*
 * staging.c — the engine's statements over its USER_ tables (see staging.h).
 * The claim is the only statement that differs by dialect; it lives in
 * claim_sql[] below, next to the reasons for each form.
 */
#include "engine/staging.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/order.h"
#include "lib/text.h"
#include "services/sql.h"

/* Which rows are due: pending orders whose time has come, and applied
 * orders with after-commit work due (and orders rolled back for their
 * store, whose after-commit stages tell the store: run.store_cancel);
 * never a row under a live lease. */
#define DUE_WHERE                                                                                  \
    "((STATUS = 'PENDING') OR (STATUS IN ('APPLIED', 'ROLLED_BACK') AND AFTER_PENDING = 1))"       \
    " AND NEXT_ATTEMPT_DT <= ? AND (LEASE_UNTIL IS NULL OR LEASE_UNTIL < ?)"

#define CLAIM_SET                                                                                  \
    " SET LEASE_TOKEN = ?, LEASE_OWNER = ?, LEASE_UNTIL = ?, UPDATED_DT = ?,"                      \
    " ATTEMPTS = CASE WHEN STATUS = 'PENDING' THEN ATTEMPTS + 1 ELSE ATTEMPTS END,"                \
    " AFTER_ATTEMPTS = CASE WHEN STATUS <> 'PENDING' THEN AFTER_ATTEMPTS + 1"                      \
    " ELSE AFTER_ATTEMPTS END"

/*
 * The claim, per dialect. Parameters: the four CLAIM_SET values, then the
 * two DUE_WHERE times and the row limit — except on SQL Server, where TOP
 * comes before the WHERE (limit_first).
 *  - SQLite: the whole database is locked by BEGIN IMMEDIATE, so a plain
 *    subquery is safe; RETURNING is unusable through its ODBC driver, so
 *    the claimed ids are read back by token.
 *  - PostgreSQL: FOR UPDATE SKIP LOCKED lets runners claim disjoint rows.
 *  - SQL Server: UPDLOCK, READPAST, ROWLOCK (no HOLDLOCK: see the reference
 *    on deadlocks with many workers). Not executable here; kept in step.
 */
static const struct {
    const char *sql;
    int limit_first;
} claim_sql[] = {
    [DB_SQLITE] = {"UPDATE USER_ORDER_STAGING" CLAIM_SET " WHERE STAGING_ID IN"
                   " (SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE " DUE_WHERE
                   " ORDER BY STAGING_ID LIMIT ?)",
                   0},
    [DB_POSTGRESQL] = {"UPDATE USER_ORDER_STAGING" CLAIM_SET " WHERE STAGING_ID IN"
                       " (SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE " DUE_WHERE
                       " ORDER BY STAGING_ID LIMIT ? FOR UPDATE SKIP LOCKED)",
                       0},
    [DB_MSSQL] = {"UPDATE USER_ORDER_STAGING" CLAIM_SET " WHERE STAGING_ID IN"
                  " (SELECT TOP (?) STAGING_ID FROM USER_ORDER_STAGING"
                  " WITH (UPDLOCK, READPAST, ROWLOCK) WHERE " DUE_WHERE " ORDER BY STAGING_ID)",
                  1},
};

void staging_order_clear(struct staged_order *o)
{
    free(o->source);
    free(o->ext_id);
    free(o->status);
    free(o->payload);
    free(o->cp_tkt_no);
    memset(o, 0, sizeof *o);
}

/* A string member of a JSON object, or NULL. Borrowed. */
static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int64_t jint(json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

/* A time member ("YYYY-MM-DDTHH:MM:SS") as an argument; NULL when absent. */
static struct sql_arg jtime(json_t *obj, const char *key)
{
    int64_t ms = 0;
    const char *s = jstr(obj, key);
    if (s == NULL || text_parse_time(s, &ms) != 0) {
        return sql_null();
    }
    return sql_time(ms);
}

static struct sql_arg jdec(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        return sql_null();
    }
    return sql_decimal((int64_t)json_integer_value(v));
}

/* Currency codes are three letters; anything else is stored cut. */
static void currency_of(json_t *norm, char out[4])
{
    const char *c = jstr(norm, "currency");
    out[0] = '\0';
    if (c != NULL) {
        size_t n = text_utf8_prefix(c, 3);
        memcpy(out, c, n < 3 ? n : 3);
        out[n < 3 ? n : 3] = '\0';
    }
}

/* Write the order's lines; `replace`: delete the previous version's first
 * (a new order has none, so it skips that statement). */
/* The columns of one USER_ORDER_STAGING_LIN row, and rows per INSERT
 * (11 x 8 parameters: well inside every driver's limit). */
#define LINE_COLS 11
#define LINES_PER_INSERT 8

static enum cpb_status insert_lines(struct db *db, int64_t id, json_t *norm, bool replace)
{
    json_t *lines = json_object_get(norm, "lines");
    enum cpb_status rc = CPB_OK;
    if (replace) {
        rc = sql_exec(db, "DELETE FROM USER_ORDER_STAGING_LIN WHERE STAGING_ID = ?",
                      (struct sql_arg[]){sql_int(id)}, 1, NULL);
    }
    if (rc != CPB_OK) {
        return rc;
    }
    /* LINES_PER_INSERT rows per statement: one round trip for most orders;
     * the texts for 1..LINES_PER_INSERT rows stay prepared. */
    struct sql_arg a[LINES_PER_INSERT * LINE_COLS];
    struct buf sql = {0};
    size_t n = json_array_size(lines);
    for (size_t at = 0; at < n && rc == CPB_OK; at += LINES_PER_INSERT) {
        size_t k = n - at < LINES_PER_INSERT ? n - at : LINES_PER_INSERT;
        buf_reset(&sql);
        int bad = buf_adds(&sql, "INSERT INTO USER_ORDER_STAGING_LIN (STAGING_ID, LIN_SEQ_NO,"
                                 " EXT_LINE_ID, SKU, ITEM_NO, NAME, QTY, PRC, LINE_SUBTOTAL,"
                                 " LINE_TOTAL, LINE_TAX) VALUES ");
        for (size_t j = 0; j < k; j++) {
            json_t *line = json_array_get(lines, at + j);
            struct sql_arg row[LINE_COLS] = {
                sql_int(id),
                sql_int(jint(line, "seq")),
                sql_int_or_null(jint(line, "line_id")),
                sql_text(jstr(line, "sku")),
                sql_text(jstr(line, "item_no")),
                sql_text(jstr(line, "name")),
                sql_decimal(jint(line, "qty")),
                jdec(line, "unit_price"),
                jdec(line, "subtotal"),
                jdec(line, "total"),
                jdec(line, "tax"),
            };
            memcpy(&a[j * LINE_COLS], row, sizeof row);
            bad |= buf_adds(&sql, j > 0 ? ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                                        : "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        rc = bad != 0 ? CPB_RETRY : sql_exec(db, buf_str(&sql), a, k * LINE_COLS, NULL);
    }
    buf_free(&sql);
    return rc;
}

/* The first problem of a normalized order as "field: message" (new). */
static char *first_problem(json_t *norm)
{
    json_t *p = json_array_get(json_object_get(norm, "problems"), 0);
    struct buf b = BUF_INIT;
    if (p == NULL) {
        return NULL;
    }
    size_t count = json_array_size(json_object_get(norm, "problems"));
    buf_addf(&b, "%s: %s", jstr(p, "field") != NULL ? jstr(p, "field") : "order",
             jstr(p, "message") != NULL ? jstr(p, "message") : "unreadable");
    if (count > 1) {
        buf_addf(&b, " (and %zu more)", count - 1);
    }
    return buf_take(&b);
}

struct upsert_args {
    const char *source;
    json_t *norm;
    const char *payload;
    const char *hash;
    int64_t now;
    const char *run_id;
    enum upsert_outcome outcome;
    int64_t id;
};

static enum cpb_status record(struct db *db, int64_t id, const char *run_id, const char *kind,
                              const char *from, const char *to, const char *code, const char *msg,
                              int64_t now)
{
    struct staging_event ev = {id, run_id, kind, NULL, from, to, code, msg, NULL, -1};
    return staging_event(db, &ev, now);
}

/* One SKU's quantity and amount, summed over an order's lines. */
struct sku_sum {
    char *sku;
    int64_t qty, total;
    int64_t new_qty, new_total;
    bool in_old, in_new;
};

static struct sku_sum *sku_find(struct sku_sum **v, size_t *n, size_t *cap, const char *sku)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*v)[i].sku, sku) == 0) {
            return &(*v)[i];
        }
    }
    if (*n == *cap) {
        size_t ncap = *cap == 0 ? 8 : *cap * 2;
        struct sku_sum *grown = realloc(*v, ncap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        *v = grown;
        *cap = ncap;
    }
    struct sku_sum *e = &(*v)[*n];
    memset(e, 0, sizeof *e);
    e->sku = strdup(sku);
    if (e->sku == NULL) {
        return NULL;
    }
    (*n)++;
    return e;
}

/* Ten-thousandths for a person: money with 2 places, a quantity with none
 * when it is whole, else 4. */
static const char *dec(int64_t v, int decimals, char *out, size_t n)
{
    if (decimals == 4 && v % 10000 == 0) {
        decimals = 0;
    }
    if (text_format_decimal(v, decimals, out, n) < 0) {
        snprintf(out, n, "?");
    }
    return out;
}

/*
 * What changed in an applied order, in words a person can act on: the
 * store status, each SKU whose quantity or amount differs (added, removed,
 * changed), and each refund the store recorded. *cancel is set when the
 * store cancelled or fully refunded the order (its status is "cancelled"
 * or "refunded"); the run's store_cancel policy decides those. *material
 * is set when a line or a refund differs; a change of the store status alone
 * (as sync-status makes) is not material.
 */
static enum cpb_status change_summary(struct db *db, int64_t id, const char *old_store_status,
                                      json_t *norm, struct buf *out, bool *cancel, bool *material)
{
    struct cpb_stmt *st = NULL;
    struct sku_sum *v = NULL;
    size_t n = 0, cap = 0;
    char a[48], b[48], c[48], d[48];
    const char *status = jstr(norm, "status");
    enum cpb_status rc;

    *cancel =
        status != NULL && (strcmp(status, "cancelled") == 0 || strcmp(status, "refunded") == 0);
    *material = false;
    if (status != NULL && old_store_status != NULL && strcmp(status, old_store_status) != 0) {
        buf_addf(out, "store status %s -> %s", old_store_status, status);
    }
    rc = sql_query(db,
                   "SELECT SKU, QTY, LINE_TOTAL FROM USER_ORDER_STAGING_LIN WHERE STAGING_ID = ?"
                   " ORDER BY LIN_SEQ_NO",
                   (struct sql_arg[]){sql_int(id)}, 1, &st);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        const char *sku = NULL;
        int64_t qty = 0, total = 0;
        bool null = false;
        rc = db_col_text(st, 1, &sku);
        if (rc == CPB_OK) {
            rc = db_col_decimal(st, 2, &qty, &null);
        }
        if (rc == CPB_OK) {
            rc = db_col_decimal(st, 3, &total, &null);
        }
        if (rc != CPB_OK) {
            break;
        }
        struct sku_sum *e = sku_find(&v, &n, &cap, sku != NULL ? sku : "");
        if (e == NULL) {
            rc = CPB_FAIL;
            break;
        }
        e->in_old = true;
        e->qty += qty;
        e->total += total;
    }
    db_finalize(st);
    if (rc != CPB_SKIP) {
        goto out;
    }
    rc = CPB_OK;
    json_t *lines = json_object_get(norm, "lines");
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *line = json_array_get(lines, i);
        const char *sku = jstr(line, "sku");
        struct sku_sum *e = sku_find(&v, &n, &cap, sku != NULL ? sku : "");
        if (e == NULL) {
            rc = CPB_FAIL;
            goto out;
        }
        e->in_new = true;
        e->new_qty += jint(line, "qty");
        e->new_total += jint(line, "total");
    }
    for (size_t i = 0; i < n; i++) {
        struct sku_sum *e = &v[i];
        const char *sep = out->len > 0 ? "; " : "";
        *material = *material || !e->in_new || !e->in_old || e->qty != e->new_qty ||
                    e->total != e->new_total;
        if (!e->in_new) {
            buf_addf(out, "%sSKU '%s' removed (was qty %s, %s)", sep, e->sku,
                     dec(e->qty, 4, a, sizeof a), dec(e->total, 2, b, sizeof b));
        } else if (!e->in_old) {
            buf_addf(out, "%sSKU '%s' added (qty %s, %s)", sep, e->sku,
                     dec(e->new_qty, 4, a, sizeof a), dec(e->new_total, 2, b, sizeof b));
        } else if (e->qty != e->new_qty || e->total != e->new_total) {
            buf_addf(out, "%sSKU '%s' qty %s -> %s, amount %s -> %s", sep, e->sku,
                     dec(e->qty, 4, a, sizeof a), dec(e->new_qty, 4, b, sizeof b),
                     dec(e->total, 2, c, sizeof c), dec(e->new_total, 2, d, sizeof d));
        }
    }
    json_t *refunds = json_object_get(norm, "refunds");
    for (size_t i = 0; i < json_array_size(refunds); i++) {
        json_t *r = json_array_get(refunds, i);
        const char *why = jstr(r, "reason");
        *material = true;
        buf_addf(out, "%srefund #%lld of %s%s%s%s", out->len > 0 ? "; " : "",
                 (long long)jint(r, "id"), dec(jint(r, "total"), 2, a, sizeof a),
                 why != NULL && why[0] != '\0' ? " ('" : "", why != NULL ? why : "",
                 why != NULL && why[0] != '\0' ? "')" : "");
    }
    if (out->oom) {
        rc = CPB_FAIL;
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(v[i].sku);
    }
    free(v);
    return rc;
}

static enum cpb_status upsert_in_tx(struct db *db, void *arg)
{
    struct upsert_args *u = arg;
    const char *ext_id = jstr(u->norm, "id");
    json_t *billing = json_object_get(u->norm, "billing");
    json_t *totals = json_object_get(u->norm, "totals");
    char currency[4];
    char *problem = first_problem(u->norm);
    const char *status = problem != NULL ? ST_INVALID : ST_PENDING;
    struct cpb_stmt *st = NULL;
    char *old_status = NULL;
    char *old_hash = NULL;
    char *flagged_hash = NULL; /* the changed version already flagged */
    char *old_store_status = NULL;
    enum cpb_status rc;

    currency_of(u->norm, currency);
    rc = sql_query(db,
                   "SELECT STAGING_ID, STATUS, PAYLOAD_HASH, CHANGED_HASH, STORE_STATUS"
                   " FROM USER_ORDER_STAGING"
                   " WHERE SOURCE = ? AND EXT_ORDER_ID = ?",
                   (struct sql_arg[]){sql_text(u->source), sql_text(ext_id)}, 2, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc == CPB_OK) {
        const char *s = NULL;
        const char *h = NULL;
        rc = db_col_int(st, 1, &u->id, NULL);
        if (rc == CPB_OK) {
            rc = db_col_text(st, 2, &s);
        }
        if (rc == CPB_OK) {
            rc = db_col_text(st, 3, &h);
        }
        if (rc != CPB_OK) {
            goto out;
        }
        old_status = strdup(s != NULL ? s : "");
        old_hash = strdup(h != NULL ? h : "");
        if (db_col_text(st, 4, &h) == CPB_OK && h != NULL) {
            flagged_hash = strdup(h);
        }
        if (db_col_text(st, 5, &h) == CPB_OK && h != NULL) {
            old_store_status = strdup(h);
        }
        if (old_status == NULL || old_hash == NULL) {
            rc = CPB_FAIL;
            goto out;
        }
    } else if (rc != CPB_SKIP) {
        goto out;
    }
    db_finalize(st);
    st = NULL;

    struct sql_arg fields[] = {
        sql_text(jstr(u->norm, "number")),
        sql_text(jstr(u->norm, "status")),
        sql_text(u->payload),
        sql_text(u->hash),
        sql_text(jstr(u->norm, "email")),
        sql_int(jint(u->norm, "customer_id")),
        sql_text(jstr(billing, "name")),
        sql_text(currency[0] != '\0' ? currency : NULL),
        jdec(totals, "total"),
        jtime(u->norm, "created"),
        jtime(u->norm, "modified"),
    };

    if (old_status == NULL) {
        struct sql_arg a[] = {
            sql_text(u->source), sql_text(ext_id),
            fields[0],           fields[1],
            fields[2],           fields[3],
            fields[4],           fields[5],
            fields[6],           fields[7],
            fields[8],           fields[9],
            fields[10],          sql_text(status),
            sql_time(u->now),    sql_text(problem != NULL ? "payload.malformed" : NULL),
            sql_text(problem),   sql_time(u->now),
            sql_time(u->now),
        };
        rc =
            sql_exec(db,
                     "INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, ORDER_NO, STORE_STATUS,"
                     " PAYLOAD, PAYLOAD_HASH, CUST_EMAIL, WOO_CUSTOMER_ID, BILL_NAM, CURRENCY,"
                     " ORDER_TOTAL, ORDER_DT, MODIFIED_DT, STATUS, NEXT_ATTEMPT_DT,"
                     " LAST_ERROR_CODE, LAST_ERROR, RECEIVED_DT, UPDATED_DT)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     a, SQL_NARGS(a), NULL);
        if (rc != CPB_OK) {
            goto out;
        }
        rc = sql_query_int(db,
                           "SELECT STAGING_ID FROM USER_ORDER_STAGING"
                           " WHERE SOURCE = ? AND EXT_ORDER_ID = ?",
                           (struct sql_arg[]){sql_text(u->source), sql_text(ext_id)}, 2, &u->id,
                           NULL);
        if (rc != CPB_OK) {
            goto out;
        }
        rc = insert_lines(db, u->id, u->norm, false);
        if (rc != CPB_OK) {
            goto out;
        }
        u->outcome = UPSERT_NEW;
        rc = record(db, u->id, u->run_id, "staged", NULL, status,
                    problem != NULL ? "payload.malformed" : NULL, problem, u->now);
        goto out;
    }

    if (strcmp(old_hash, u->hash) == 0) {
        u->outcome = UPSERT_UNCHANGED;
        rc = CPB_OK;
        goto out;
    }
    if (strcmp(old_status, ST_APPLIED) == 0) {
        if (flagged_hash != NULL && strcmp(flagged_hash, u->hash) == 0) {
            /* This changed version was flagged already: once is enough. */
            u->outcome = UPSERT_UNCHANGED;
            rc = CPB_OK;
            goto out;
        }
        struct buf what = BUF_INIT;
        bool cancel = false;
        bool material = false;
        rc = change_summary(db, u->id, old_store_status, u->norm, &what, &cancel, &material);
        if (rc != CPB_OK) {
            buf_free(&what);
            goto out;
        }
        const char *now_status = jstr(u->norm, "status");
        if (!cancel && !material && now_status != NULL && old_store_status != NULL &&
            strcmp(now_status, old_store_status) != 0) {
            /* Only the store status moved (sync-status's own write, or a
             * person completing the order): seen, nothing for anyone. */
            buf_free(&what);
            u->outcome = UPSERT_UNCHANGED;
            rc = sql_exec(db,
                          "UPDATE USER_ORDER_STAGING SET CHANGED_HASH = ?, UPDATED_DT = ?"
                          " WHERE STAGING_ID = ?",
                          (struct sql_arg[]){sql_text(u->hash), sql_time(u->now), sql_int(u->id)},
                          3, NULL);
            goto out;
        }
        u->outcome = cancel ? UPSERT_STORE_CANCELLED : UPSERT_CHANGED_AFTER;
        rc = sql_exec(db,
                      "UPDATE USER_ORDER_STAGING SET CHANGED_AFTER_APPLY = 1, STORE_CANCELLED = ?,"
                      " CHANGED_HASH = ?, UPDATED_DT = ? WHERE STAGING_ID = ?",
                      (struct sql_arg[]){sql_int(cancel), sql_text(u->hash), sql_time(u->now),
                                         sql_int(u->id)},
                      4, NULL);
        if (rc == CPB_OK) {
            struct buf msg = BUF_INIT;
            buf_addf(&msg,
                     cancel ? "the store cancelled this order after it was applied to Counterpoint"
                              " (%s); run.store_cancel decides what happens"
                            : "the store changed this order after it was applied to Counterpoint"
                              " (%s); it was not applied again: compare and fix by hand",
                     what.len > 0 ? buf_str(&what) : "no line, status or refund differs");
            rc = record(db, u->id, u->run_id, "changed.after_apply", old_status, old_status,
                        cancel ? "order.cancelled" : "order.changed",
                        msg.oom ? "the store changed this order after it was applied"
                                : buf_str(&msg),
                        u->now);
            buf_free(&msg);
        }
        buf_free(&what);
        goto out;
    }
    if (strcmp(old_status, ST_ROLLED_BACK) == 0) {
        /* A person rolled it back: keep it so. The new version is stored so
         * that `cpbridge dlq retry` applies what the store has now. */
        status = ST_ROLLED_BACK;
    } else if (strcmp(old_status, ST_CANCELLED) == 0) {
        u->outcome = UPSERT_IGNORED;
        rc = record(db, u->id, u->run_id, "changed.ignored", old_status, old_status, NULL,
                    "the store changed this cancelled order; it stays cancelled", u->now);
        goto out;
    }
    struct sql_arg a[] = {
        fields[0],         fields[1],
        fields[2],         fields[3],
        fields[4],         fields[5],
        fields[6],         fields[7],
        fields[8],         fields[9],
        fields[10],        sql_text(status),
        sql_time(u->now),  sql_text(problem != NULL ? "payload.malformed" : NULL),
        sql_text(problem), sql_time(u->now),
        sql_int(u->id),
    };
    rc = sql_exec(db,
                  "UPDATE USER_ORDER_STAGING SET ORDER_NO = ?, STORE_STATUS = ?, PAYLOAD = ?,"
                  " PAYLOAD_HASH = ?, CUST_EMAIL = ?, WOO_CUSTOMER_ID = ?, BILL_NAM = ?,"
                  " CURRENCY = ?, ORDER_TOTAL = ?, ORDER_DT = ?, MODIFIED_DT = ?, STATUS = ?,"
                  " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = ?, LAST_ERROR = ?, ATTEMPTS = 0,"
                  " UPDATED_DT = ? WHERE STAGING_ID = ?",
                  a, SQL_NARGS(a), NULL);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = insert_lines(db, u->id, u->norm, true);
    if (rc != CPB_OK) {
        goto out;
    }
    u->outcome = UPSERT_UPDATED;
    rc = record(db, u->id, u->run_id, "changed", old_status, status, NULL,
                strcmp(status, ST_ROLLED_BACK) == 0
                    ? "the store changed this rolled-back order; it stays ROLLED_BACK, and"
                      " `cpbridge dlq retry` applies the new version"
                    : "the store changed this order before it was applied; the new version"
                      " replaces the old one",
                u->now);
out:
    db_finalize(st);
    free(problem);
    free(old_status);
    free(old_hash);
    free(flagged_hash);
    free(old_store_status);
    return rc;
}

enum cpb_status staging_upsert(struct db *db, const char *source, json_t *normalized,
                               const char *payload, const char *hash, int64_t now,
                               const char *run_id, enum upsert_outcome *outcome, int64_t *id)
{
    struct upsert_args u = {source, normalized, payload, hash, now, run_id, UPSERT_UNCHANGED, 0};
    enum cpb_status rc = sql_tx(db, upsert_in_tx, &u);
    *outcome = u.outcome;
    *id = u.id;
    return rc;
}

struct upsert_many_args {
    const char *source;
    struct staging_item *items;
    size_t n;
    int64_t now;
    const char *run_id;
};

static enum cpb_status upsert_many_in_tx(struct db *db, void *arg)
{
    struct upsert_many_args *m = arg;
    for (size_t i = 0; i < m->n; i++) {
        struct staging_item *it = &m->items[i];
        struct upsert_args u = {m->source, it->norm,  it->payload,      it->hash,
                                m->now,    m->run_id, UPSERT_UNCHANGED, 0};
        enum cpb_status rc = upsert_in_tx(db, &u);
        if (rc != CPB_OK) {
            return rc;
        }
        it->outcome = u.outcome;
        it->id = u.id;
    }
    return CPB_OK;
}

enum cpb_status staging_upsert_many(struct db *db, const char *source, struct staging_item *items,
                                    size_t n, int64_t now, const char *run_id)
{
    struct upsert_many_args m = {source, items, n, now, run_id};
    return sql_tx(db, upsert_many_in_tx, &m);
}

struct withdraw_args {
    const char *source;
    const char *ext_id;
    const char *why;
    const char *run_id;
    int64_t now;
    enum withdraw_outcome outcome;
    int64_t id;
};

/* The changed-version mark of an applied order the store removed. */
#define WITHDRAWN_HASH "deleted"

static enum cpb_status withdraw_in_tx(struct db *db, void *arg)
{
    struct withdraw_args *w = arg;
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char status[16] = "";
    char changed[72] = "";
    int64_t rows = 0;
    enum cpb_status rc =
        sql_query(db,
                  "SELECT STAGING_ID, STATUS, CHANGED_HASH FROM USER_ORDER_STAGING"
                  " WHERE SOURCE = ? AND EXT_ORDER_ID = ?",
                  (struct sql_arg[]){sql_text(w->source), sql_text(w->ext_id)}, 2, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_SKIP) {
        w->outcome = WITHDRAW_UNKNOWN;
        rc = CPB_OK;
        goto out;
    }
    if (rc != CPB_OK || (rc = db_col_int(st, 1, &w->id, NULL)) != CPB_OK ||
        (rc = db_col_text(st, 2, &v)) != CPB_OK) {
        goto out;
    }
    snprintf(status, sizeof status, "%s", v != NULL ? v : "");
    if (db_col_text(st, 3, &v) == CPB_OK && v != NULL) {
        snprintf(changed, sizeof changed, "%s", v);
    }
    db_finalize(st);
    st = NULL;
    if (strcmp(status, ST_PENDING) == 0 || strcmp(status, ST_INVALID) == 0 ||
        strcmp(status, ST_DEAD) == 0) {
        struct sql_arg a[] = {sql_text(w->why), sql_time(w->now), sql_int(w->id), sql_text(status)};
        rc = sql_exec(db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'CANCELLED', LEASE_TOKEN = NULL,"
                      " LEASE_OWNER = NULL, LEASE_UNTIL = NULL, LAST_ERROR_CODE = 'order.deleted',"
                      " LAST_ERROR = ?, UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = ?",
                      a, SQL_NARGS(a), &rows);
        if (rc == CPB_OK && rows != 1) {
            rc = CPB_RETRY; /* it moved on meanwhile: the store sends it again */
        }
        if (rc == CPB_OK) {
            w->outcome = WITHDRAW_CANCELLED;
            rc = record(db, w->id, w->run_id, "cancelled", status, ST_CANCELLED, "order.deleted",
                        w->why, w->now);
        }
        goto out;
    }
    if (strcmp(status, ST_APPLIED) == 0 && strcmp(changed, WITHDRAWN_HASH) != 0) {
        rc =
            sql_exec(db,
                     "UPDATE USER_ORDER_STAGING SET CHANGED_AFTER_APPLY = 1, STORE_CANCELLED = 1,"
                     " CHANGED_HASH = ?, UPDATED_DT = ? WHERE STAGING_ID = ?",
                     (struct sql_arg[]){sql_text(WITHDRAWN_HASH), sql_time(w->now), sql_int(w->id)},
                     3, NULL);
        if (rc == CPB_OK) {
            w->outcome = WITHDRAW_FLAGGED;
            rc = record(db, w->id, w->run_id, "changed.after_apply", status, status,
                        "order.deleted", w->why, w->now);
        }
        goto out;
    }
    w->outcome = WITHDRAW_ALREADY;
out:
    db_finalize(st);
    return rc;
}

enum cpb_status staging_withdraw(struct db *db, const char *source, const char *ext_id,
                                 const char *why, const char *run_id, int64_t now,
                                 enum withdraw_outcome *outcome, int64_t *id)
{
    struct withdraw_args w = {source, ext_id, why, run_id, now, WITHDRAW_UNKNOWN, 0};
    enum cpb_status rc = sql_tx(db, withdraw_in_tx, &w);
    *outcome = rc == CPB_OK ? w.outcome : WITHDRAW_UNKNOWN;
    if (id != NULL) {
        *id = rc == CPB_OK ? w.id : 0;
    }
    return rc;
}

struct claim_args {
    const char *token;
    const char *claim_token;
    const char *owner;
    int64_t now;
    int64_t due_by;
    int64_t lease_ms;
    unsigned limit;
    int64_t *ids;
    unsigned n;
};

static enum cpb_status claim_in_tx(struct db *db, void *arg)
{
    struct claim_args *c = arg;
    enum db_dialect d = db_get_dialect(db);
    struct cpb_stmt *st = NULL;
    struct sql_arg set[] = {sql_text(c->claim_token), sql_text(c->owner),
                            sql_time(c->now + c->lease_ms),
                            sql_time(c->now)};
    struct sql_arg due[] = {sql_time(c->due_by), sql_time(c->now)};
    struct sql_arg lim = sql_int(c->limit);
    struct sql_arg a[7] = {set[0], set[1], set[2], set[3]};
    if (claim_sql[d].limit_first) {
        a[4] = lim;
        a[5] = due[0];
        a[6] = due[1];
    } else {
        a[4] = due[0];
        a[5] = due[1];
        a[6] = lim;
    }
    enum cpb_status rc = sql_exec(db, claim_sql[d].sql, a, SQL_NARGS(a), NULL);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = sql_query(db,
                   "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE LEASE_TOKEN = ?"
                   " ORDER BY STAGING_ID",
                   (struct sql_arg[]){sql_text(c->claim_token)}, 1, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    c->n = 0;
    for (;;) {
        rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            rc = CPB_OK;
            break;
        }
        if (rc != CPB_OK) {
            goto out;
        }
        if (c->n < c->limit) {
            rc = db_col_int(st, 1, &c->ids[c->n], NULL);
            if (rc != CPB_OK) {
                goto out;
            }
            c->n++;
        }
    }
    /* The rows now carry the runner's token, as the rest of the run expects. */
    rc = sql_exec(db, "UPDATE USER_ORDER_STAGING SET LEASE_TOKEN = ? WHERE LEASE_TOKEN = ?",
                  (struct sql_arg[]){sql_text(c->token), sql_text(c->claim_token)}, 2, NULL);
out:
    db_finalize(st);
    return rc;
}

enum cpb_status staging_claim(struct db *db, const char *token, const char *claim_token,
                              const char *owner, int64_t now, int64_t due_by, int64_t lease_ms,
                              unsigned limit, int64_t *ids, unsigned *n)
{
    struct claim_args c = {token, claim_token, owner, now, due_by, lease_ms, limit, ids, 0};
    enum cpb_status rc = sql_tx(db, claim_in_tx, &c);
    *n = rc == CPB_OK ? c.n : 0;
    return rc;
}

enum cpb_status staging_count_due(struct db *db, int64_t due_by, int64_t now, int64_t *n)
{
    struct sql_arg a[] = {sql_time(due_by), sql_time(now)};
    return sql_query_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE " DUE_WHERE, a,
                         SQL_NARGS(a), n, NULL);
}

enum cpb_status staging_renew(struct db *db, const char *token, int64_t until)
{
    struct sql_arg a[] = {sql_time(until), sql_text(token)};
    return sql_exec(db, "UPDATE USER_ORDER_STAGING SET LEASE_UNTIL = ? WHERE LEASE_TOKEN = ?", a,
                    SQL_NARGS(a), NULL);
}

static enum cpb_status dup_col(struct cpb_stmt *st, unsigned col, char **out)
{
    const char *v = NULL;
    enum cpb_status rc = db_col_text(st, col, &v);
    if (rc != CPB_OK) {
        return rc;
    }
    *out = NULL;
    if (v != NULL) {
        *out = strdup(v);
        if (*out == NULL) {
            return CPB_FAIL;
        }
    }
    return CPB_OK;
}

enum cpb_status staging_load(struct db *db, int64_t id, const char *token, struct staged_order *out)
{
    struct cpb_stmt *st = NULL;
    int64_t v = 0;
    bool null = false;
    memset(out, 0, sizeof *out);
    struct sql_arg a[] = {sql_int(id), sql_text(token)};
    enum cpb_status rc = sql_query(
        db,
        token != NULL
            ? "SELECT SOURCE, EXT_ORDER_ID, STATUS, PAYLOAD, ATTEMPTS, AFTER_ATTEMPTS,"
              " AFTER_PENDING, CP_DOC_ID, CP_TKT_NO FROM USER_ORDER_STAGING"
              " WHERE STAGING_ID = ? AND LEASE_TOKEN = ?"
            : "SELECT SOURCE, EXT_ORDER_ID, STATUS, PAYLOAD, ATTEMPTS, AFTER_ATTEMPTS,"
              " AFTER_PENDING, CP_DOC_ID, CP_TKT_NO FROM USER_ORDER_STAGING WHERE STAGING_ID = ?",
        a, token != NULL ? 2 : 1, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc != CPB_OK) {
        goto out;
    }
    out->id = id;
    rc = dup_col(st, 1, &out->source);
    if (rc == CPB_OK) {
        rc = dup_col(st, 2, &out->ext_id);
    }
    if (rc == CPB_OK) {
        rc = dup_col(st, 3, &out->status);
    }
    if (rc == CPB_OK) {
        rc = dup_col(st, 4, &out->payload);
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 5, &v, NULL);
        out->attempts = (unsigned)v;
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 6, &v, NULL);
        out->after_attempts = (unsigned)v;
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 7, &v, NULL);
        out->after_pending = (int)v;
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 8, &out->cp_doc_id, &null);
        if (null) {
            out->cp_doc_id = 0;
        }
    }
    if (rc == CPB_OK) {
        rc = dup_col(st, 9, &out->cp_tkt_no);
    }
    if (rc == CPB_OK && (out->source == NULL || out->ext_id == NULL || out->status == NULL ||
                         out->payload == NULL)) {
        rc = CPB_FAIL;
    }
out:
    db_finalize(st);
    if (rc != CPB_OK) {
        staging_order_clear(out);
    }
    return rc;
}

/* CPB_SKIP when an UPDATE guarded by the lease token hit no row. */
static enum cpb_status guarded(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    int64_t rows = 0;
    enum cpb_status rc = sql_exec(db, sql, a, n, &rows);
    if (rc == CPB_OK && rows == 0) {
        rc = CPB_SKIP;
    }
    return rc;
}

enum cpb_status staging_lock(struct db *db, int64_t id, const char *token, int64_t now)
{
    struct sql_arg a[] = {sql_time(now), sql_int(id), sql_text(token)};
    if (token == NULL) {
        return guarded(db, "UPDATE USER_ORDER_STAGING SET UPDATED_DT = ? WHERE STAGING_ID = ?", a,
                       2);
    }
    return guarded(db,
                   "UPDATE USER_ORDER_STAGING SET UPDATED_DT = ?"
                   " WHERE STAGING_ID = ? AND LEASE_TOKEN = ?",
                   a, SQL_NARGS(a));
}

enum cpb_status staging_mark_applied(struct db *db, int64_t id, const char *token,
                                     int64_t doc_id, const char *tkt_no, bool adopted,
                                     bool after_due, int64_t now)
{
    if (after_due) {
        struct sql_arg a[] = {sql_int_or_null(doc_id), sql_text(tkt_no), sql_int(adopted),
                              sql_time(now),           sql_time(now),    sql_time(now),
                              sql_int(id),             sql_text(token)};
        return guarded(db,
                       "UPDATE USER_ORDER_STAGING SET STATUS = 'APPLIED', CP_DOC_ID = ?,"
                       " CP_TKT_NO = ?, CP_ADOPTED = ?, AFTER_PENDING = 1, AFTER_ATTEMPTS = 1,"
                       " APPLIED_DT = ?, NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL,"
                       " LAST_ERROR = NULL, UPDATED_DT = ? WHERE STAGING_ID = ?"
                       " AND LEASE_TOKEN = ?",
                       a, SQL_NARGS(a));
    }
    struct sql_arg a[] = {sql_int_or_null(doc_id), sql_text(tkt_no), sql_int(adopted),
                          sql_time(now),           sql_time(now),    sql_int(id),
                          sql_text(token)};
    return guarded(db,
                   token != NULL
                       ? "UPDATE USER_ORDER_STAGING SET STATUS = 'APPLIED', CP_DOC_ID = ?,"
                         " CP_TKT_NO = ?, CP_ADOPTED = ?, AFTER_PENDING = 0, APPLIED_DT = ?,"
                         " LAST_ERROR_CODE = NULL, LAST_ERROR = NULL, LEASE_TOKEN = NULL,"
                         " LEASE_OWNER = NULL, LEASE_UNTIL = NULL, UPDATED_DT = ?"
                         " WHERE STAGING_ID = ? AND LEASE_TOKEN = ?"
                       : "UPDATE USER_ORDER_STAGING SET STATUS = 'APPLIED', CP_DOC_ID = ?,"
                         " CP_TKT_NO = ?, CP_ADOPTED = ?, AFTER_PENDING = 0, APPLIED_DT = ?,"
                         " LAST_ERROR_CODE = NULL, LAST_ERROR = NULL, UPDATED_DT = ?"
                         " WHERE STAGING_ID = ?",
                   a, token != NULL ? SQL_NARGS(a) : SQL_NARGS(a) - 1);
}

/* Cut a message to the LAST_ERROR column (500 characters). */
enum cpb_status staging_mark_failed(struct db *db, int64_t id, const char *token,
                                    const char *status, int64_t next_attempt, const char *code,
                                    const char *message, int64_t now)
{
    char *msg = text_utf8_cut(message, 500);
    struct sql_arg a[] = {sql_text(status), sql_time(next_attempt), sql_text(code),
                          sql_text(msg),    sql_time(now),          sql_int(id),
                          sql_text(token)};
    enum cpb_status rc = guarded(db,
                                 "UPDATE USER_ORDER_STAGING SET STATUS = ?, NEXT_ATTEMPT_DT = ?,"
                                 " LAST_ERROR_CODE = ?, LAST_ERROR = ?, LEASE_TOKEN = NULL,"
                                 " LEASE_OWNER = NULL, LEASE_UNTIL = NULL, UPDATED_DT = ?"
                                 " WHERE STAGING_ID = ? AND LEASE_TOKEN = ?",
                                 a, SQL_NARGS(a));
    free(msg);
    return rc;
}

enum cpb_status staging_after_is_done(struct db *db, int64_t id, const char *stage_id, bool *done)
{
    int64_t one = 0;
    enum cpb_status rc =
        sql_query_int(db, "SELECT 1 FROM USER_ORDER_STEP WHERE STAGING_ID = ? AND STAGE_ID = ?",
                      (struct sql_arg[]){sql_int(id), sql_text(stage_id)}, 2, &one, NULL);
    *done = rc == CPB_OK;
    return rc == CPB_SKIP ? CPB_OK : rc;
}

enum cpb_status staging_after_done(struct db *db, int64_t id, const char *stage_id, int64_t now)
{
    struct sql_arg a[] = {sql_int(id), sql_text(stage_id), sql_time(now)};
    return sql_exec(db,
                    "INSERT INTO USER_ORDER_STEP (STAGING_ID, STAGE_ID, DONE_DT) VALUES (?, ?, ?)",
                    a, SQL_NARGS(a), NULL);
}

enum cpb_status staging_after_finish(struct db *db, int64_t id, const char *token,
                                     enum after_state state, int64_t next_attempt, const char *code,
                                     const char *message, int64_t now)
{
    char *msg = text_utf8_cut(message, 500);
    struct sql_arg a[] = {sql_int(state), sql_time(next_attempt), sql_text(code),
                          sql_text(msg),  sql_time(now),          sql_int(id),
                          sql_text(token)};
    enum cpb_status rc =
        guarded(db,
                "UPDATE USER_ORDER_STAGING SET AFTER_PENDING = ?, NEXT_ATTEMPT_DT = ?,"
                " LAST_ERROR_CODE = ?, LAST_ERROR = ?, LEASE_TOKEN = NULL, LEASE_OWNER = NULL,"
                " LEASE_UNTIL = NULL, UPDATED_DT = ? WHERE STAGING_ID = ? AND LEASE_TOKEN = ?",
                a, SQL_NARGS(a));
    free(msg);
    return rc;
}

enum cpb_status staging_event(struct db *db, const struct staging_event *ev, int64_t now)
{
    char *msg = text_utf8_cut(ev->message, 1000);
    struct sql_arg a[] = {
        sql_int_or_null(ev->order_id),
        sql_text(ev->run_id),
        sql_time(now),
        sql_text(ev->kind),
        sql_text(ev->stage_id),
        sql_text(ev->status_from),
        sql_text(ev->status_to),
        sql_text(ev->code),
        sql_text(msg),
        sql_text(ev->actor),
        ev->duration_ms >= 0 ? sql_int(ev->duration_ms) : sql_null(),
    };
    enum cpb_status rc =
        sql_exec(db,
                 "INSERT INTO USER_ORDER_EVENT (STAGING_ID, RUN_ID, EVENT_DT, KIND, STAGE_ID,"
                 " STATUS_FROM, STATUS_TO, CODE, MESSAGE, ACTOR, DURATION_MS)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 a, SQL_NARGS(a), NULL);
    free(msg);
    return rc;
}

enum cpb_status staging_state_get(struct db *db, const char *key, char **value)
{
    struct cpb_stmt *st = NULL;
    *value = NULL;
    enum cpb_status rc =
        sql_query(db, "SELECT STATE_VALUE FROM USER_SYNC_STATE WHERE STATE_KEY = ?",
                  (struct sql_arg[]){sql_text(key)}, 1, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
        goto out;
    }
    if (rc != CPB_OK) {
        goto out;
    }
    rc = dup_col(st, 1, value);
out:
    db_finalize(st);
    return rc;
}

struct state_args {
    const char *key;
    const char *value;
    int64_t now;
};

static enum cpb_status state_set_in_tx(struct db *db, void *arg)
{
    struct state_args *s = arg;
    int64_t rows = 0;
    struct sql_arg up[] = {sql_text(s->value), sql_time(s->now), sql_text(s->key)};
    enum cpb_status rc = sql_exec(
        db, "UPDATE USER_SYNC_STATE SET STATE_VALUE = ?, UPDATED_DT = ? WHERE STATE_KEY = ?", up,
        SQL_NARGS(up), &rows);
    if (rc != CPB_OK || rows > 0) {
        return rc;
    }
    struct sql_arg ins[] = {sql_text(s->key), sql_text(s->value), sql_time(s->now)};
    return sql_exec(db,
                    "INSERT INTO USER_SYNC_STATE (STATE_KEY, STATE_VALUE, UPDATED_DT)"
                    " VALUES (?, ?, ?)",
                    ins, SQL_NARGS(ins), NULL);
}

enum cpb_status staging_state_set(struct db *db, const char *key, const char *value, int64_t now)
{
    struct state_args s = {key, value, now};
    return sql_tx(db, state_set_in_tx, &s);
}

enum cpb_status staging_run_start(struct db *db, const char *run_id, const char *pipeline,
                                  const char *host, int64_t now)
{
    struct sql_arg a[] = {sql_text(run_id), sql_text(pipeline), sql_text(host), sql_time(now)};
    return sql_exec(db,
                    "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, HOST_NAM, STARTED_DT, RESULT)"
                    " VALUES (?, ?, ?, ?, 'RUNNING')",
                    a, SQL_NARGS(a), NULL);
}

enum cpb_status staging_run_end(struct db *db, const char *run_id, const char *result,
                                int exit_code, const struct run_counts *c, int64_t duration_ms,
                                const char *message, const char *stage_timings, int64_t now)
{
    char *msg = text_utf8_cut(message, 1000);
    struct sql_arg a[] = {
        sql_time(now),          sql_text(result),         sql_int(exit_code),
        sql_int(c->staged),     sql_int(c->claimed),      sql_int(c->applied),
        sql_int(c->retry),      sql_int(c->invalid),      sql_int(c->dead),
        sql_int(c->after_done), sql_int(c->after_failed), sql_int(duration_ms),
        sql_text(msg),          sql_text(stage_timings),  sql_text(run_id),
    };
    enum cpb_status rc = sql_exec(
        db,
        "UPDATE USER_SYNC_LOG SET ENDED_DT = ?, RESULT = ?, EXIT_CODE = ?, N_STAGED = ?,"
        " N_CLAIMED = ?, N_APPLIED = ?, N_RETRY = ?, N_INVALID = ?, N_DEAD = ?, N_AFTER_DONE = ?,"
        " N_AFTER_FAILED = ?, DURATION_MS = ?, MESSAGE = ?, STAGE_TIMINGS = ? WHERE RUN_ID = ?",
        a, SQL_NARGS(a), NULL);
    free(msg);
    return rc;
}
