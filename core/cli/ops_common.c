/*
 * ops_common.c — what the operations commands share (see ops_common.h):
 * messages, untrusted text made printable, row reading, connecting, and
 * the queries over one order or a list of orders.
 */
#include "cli/ops_common.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/host.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

int ops_usage_error(const struct verb *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge %s: ", v->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", v->usage);
    va_end(ap);
    return CPB_EXIT_USAGE;
}

/* Print "cpbridge VERB: message" on stderr and return `code`. */
int ops_fail(const struct ops *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (op->quiet != NULL) {
        buf_reset(op->quiet);
        buf_vaddf(op->quiet, fmt, ap);
    } else {
        fprintf(stderr, "cpbridge %s: ", op->v->name);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
    return code;
}

/* ---- text from the database -------------------------------------------- */

/* Length of the valid UTF-8 character at p (2..4 bytes), 0 when invalid. */
static size_t utf8_char(const unsigned char *p)
{
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
    for (size_t i = 1; i < len; i++) {
        if (p[i] == '\0') {
            return 0;
        }
    }
    return len > 0 && text_utf8_valid((const char *)p, len) ? len : 0;
}

/*
 * Copy untrusted text `s` into out[n] so a terminal shows it as text:
 * control bytes (C0, DEL and C1) and bytes that are not valid UTF-8 become
 * "\xNN"; the copy is cut between characters to fit. NULL gives "".
 */
void ops_clean(const char *s, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0) {
        return;
    }
    out[0] = '\0';
    if (s == NULL) {
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        char piece[8];
        size_t plen = 0;
        size_t adv = 1;
        size_t clen = *p >= 0x80 ? utf8_char(p) : 0;
        bool c1 = clen == 2 && p[0] == 0xc2 && p[1] < 0xa0;
        if (*p >= 0x20 && *p < 0x7f) {
            piece[0] = (char)*p;
            plen = 1;
        } else if (clen > 0 && !c1) {
            memcpy(piece, p, clen);
            plen = clen;
            adv = clen;
        } else {
            snprintf(piece, sizeof piece, "\\x%02x", (unsigned)*p);
            plen = 4;
        }
        if (o + plen >= n) {
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        p += adv;
    }
    out[o] = '\0';
}

/* A JSON string of cleaned text, or null. New reference. */
json_t *ops_jtext(const char *cleaned, bool is_null)
{
    if (is_null || cleaned == NULL) {
        return json_null();
    }
    json_t *s = json_string(cleaned);
    return s != NULL ? s : json_string("");
}

/* A UTC time as "YYYY-MM-DDTHH:MM:SSZ", or "-" when there is none. */
const char *ops_fmt_when(int64_t ms, bool has, char *out, size_t n)
{
    if (!has || text_format_time(ms, out, n > 1 ? n - 1 : n) < 0) {
        snprintf(out, n, "-");
        return out;
    }
    size_t len = strlen(out);
    if (len + 1 < n) {
        out[len] = 'Z';
        out[len + 1] = '\0';
    }
    return out;
}

json_t *ops_jwhen(int64_t ms, bool has)
{
    char t[40];
    if (!has) {
        return json_null();
    }
    return json_string(ops_fmt_when(ms, true, t, sizeof t));
}

/* A duration for people: "45s", "12m", "5h", "3d". */
const char *ops_fmt_age(int64_t ms, char *out, size_t n)
{
    int64_t s = ms > 0 ? ms / 1000 : 0;
    if (s < 120) {
        snprintf(out, n, "%llds", (long long)s);
    } else if (s < 120 * 60) {
        snprintf(out, n, "%lldm", (long long)(s / 60));
    } else if (s < 48 * 3600) {
        snprintf(out, n, "%lldh", (long long)(s / 3600));
    } else {
        snprintf(out, n, "%lldd", (long long)(s / 86400));
    }
    return out;
}

/* Ten-thousandths with `decimals` places. */
const char *ops_fmt_dec(int64_t v, int decimals, char *out, size_t n)
{
    if (text_format_decimal(v, decimals, out, n) < 0) {
        snprintf(out, n, "?");
    }
    return out;
}

json_t *ops_jdec(int64_t v, bool is_null)
{
    char t[48];
    if (is_null) {
        return json_null();
    }
    return json_string(ops_fmt_dec(v, 4, t, sizeof t));
}

void ops_rd_text(struct rd *r, char *out, size_t n, bool *is_null)
{
    const char *v = NULL;
    unsigned col = ++r->col;
    out[0] = '\0';
    if (is_null != NULL) {
        *is_null = true;
    }
    if (r->rc != CPB_OK) {
        return;
    }
    r->rc = db_col_text(r->st, col, &v);
    if (r->rc == CPB_OK && v != NULL) {
        ops_clean(v, out, n);
        if (is_null != NULL) {
            *is_null = false;
        }
    }
}

/* The raw text (new, free()) for values that go back into SQL. */
void ops_rd_raw(struct rd *r, char **out)
{
    const char *v = NULL;
    unsigned col = ++r->col;
    *out = NULL;
    if (r->rc != CPB_OK) {
        return;
    }
    r->rc = db_col_text(r->st, col, &v);
    if (r->rc == CPB_OK) {
        *out = strdup(v != NULL ? v : "");
        if (*out == NULL) {
            r->rc = CPB_FAIL;
        }
    }
}

void ops_rd_int(struct rd *r, int64_t *v, bool *is_null)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_int(r->st, col, v, &null);
    }
    if (null) {
        *v = 0;
    }
    if (is_null != NULL) {
        *is_null = null;
    }
}

void ops_rd_dec(struct rd *r, int64_t *v, bool *is_null)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_decimal(r->st, col, v, &null);
    }
    if (null) {
        *v = 0;
    }
    if (is_null != NULL) {
        *is_null = null;
    }
}

void ops_rd_time(struct rd *r, int64_t *v, bool *has)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_time(r->st, col, v, &null);
    }
    *has = r->rc == CPB_OK && !null;
}

/*
 * "SELECT cols rest" with at most `limit` rows, the dialect's way: LIMIT ?
 * at the end, or TOP (?) on SQL Server. `args` (n <= 7) are bound in order
 * around the limit. On CPB_OK *st is ready for db_fetch.
 */
enum cpb_status ops_query_limited(struct db *db, const char *cols, const char *rest,
                                  const struct sql_arg *args, size_t n, int64_t limit,
                                  struct cpb_stmt **st)
{
    struct buf sql = BUF_INIT;
    struct sql_arg a[8];
    enum cpb_status rc = CPB_FAIL;
    *st = NULL;
    if (n + 1 > sizeof a / sizeof a[0]) {
        return CPB_FAIL;
    }
    if (db_get_dialect(db) == DB_MSSQL) {
        buf_addf(&sql, "SELECT TOP (?) %s %s", cols, rest);
        a[0] = sql_int(limit);
        if (n > 0) {
            memcpy(a + 1, args, n * sizeof a[0]);
        }
    } else {
        buf_addf(&sql, "SELECT %s %s LIMIT ?", cols, rest);
        if (n > 0) {
            memcpy(a, args, n * sizeof a[0]);
        }
        a[n] = sql_int(limit);
    }
    if (!sql.oom) {
        rc = sql_query(db, buf_str(&sql), a, n + 1, st);
    }
    buf_free(&sql);
    return rc;
}

/* ---- connecting ---------------------------------------------------------- */

/* Read the pipeline file and connect to its database with the schema
 * checked. Returns 0, or -1 with err (CPB_EXIT_NOINPUT, CPB_EXIT_CONFIG,
 * CPB_EXIT_UNAVAILABLE); *schema_old tells a missing or old schema. */
int ops_connect(struct ops *op, bool *schema_old, struct err *err)
{
    enum db_dialect d;
    int version = 0;
    *schema_old = false;
    if (config_load(op->path, &op->cfg, err) != 0) {
        return -1;
    }
    if (db_dialect_parse(op->cfg->database.dialect, &d) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: unknown database dialect", op->path);
    }
    if (db_connect(op->cfg->database.connection, d, op->cfg->database.login_timeout_ms, &op->db,
                   err) != 0) {
        return -1;
    }
    if (schema_current(op->db, &version, err) != 0) {
        return -1;
    }
    if (version < schema_latest(d)) {
        *schema_old = true;
        return err_set(err, CPB_EXIT_CONFIG,
                       "the database's cpbridge schema is at version %d, this cpbridge needs %d:"
                       " run `cpbridge db init %s` first",
                       version, schema_latest(d), op->path);
    }
    op->now = host_now_ms();
    return 0;
}

/* Connect for the commands other than health; prints the failure. */
int ops_open_or_fail(struct ops *op)
{
    struct err e = {0};
    bool old = false;
    if (ops_connect(op, &old, &e) != 0) {
        char msg[sizeof e.msg];
        ops_clean(e.msg, msg, sizeof msg);
        return ops_fail(op, e.code != 0 ? e.code : CPB_EXIT_SOFTWARE, "%s", msg);
    }
    return 0;
}

/* A failed statement: CPB_EXIT_UNAVAILABLE with the database's message. */
int ops_db_failed(const struct ops *op, const char *what)
{
    char msg[1024];
    ops_clean(db_last_error(op->db), msg, sizeof msg);
    return ops_fail(op, CPB_EXIT_UNAVAILABLE, "%s: %s", what, msg[0] != '\0' ? msg : "failed");
}

void ops_print_json(json_t *j)
{
    if (j != NULL) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    }
}

/* ---- one order ----------------------------------------------------------- */

enum cpb_status ops_read_order(struct cpb_stmt *st, struct order_row *o)
{
    struct rd r = {st, CPB_OK, 0};
    bool null = false;
    ops_rd_int(&r, &o->id, NULL);
    ops_rd_text(&r, o->source, sizeof o->source, NULL);
    ops_rd_text(&r, o->ext, sizeof o->ext, NULL);
    ops_rd_text(&r, o->order_no, sizeof o->order_no, &o->order_no_null);
    ops_rd_text(&r, o->status, sizeof o->status, NULL);
    ops_rd_text(&r, o->store_status, sizeof o->store_status, &o->store_status_null);
    ops_rd_text(&r, o->email, sizeof o->email, &o->email_null);
    ops_rd_int(&r, &o->customer, &o->customer_null);
    ops_rd_text(&r, o->bill_nam, sizeof o->bill_nam, &o->bill_nam_null);
    ops_rd_text(&r, o->currency, sizeof o->currency, &o->currency_null);
    ops_rd_dec(&r, &o->total, &o->total_null);
    ops_rd_time(&r, &o->order_dt, &o->has_order_dt);
    ops_rd_time(&r, &o->modified_dt, &o->has_modified_dt);
    ops_rd_int(&r, &o->attempts, NULL);
    ops_rd_time(&r, &o->next_attempt, &o->has_next_attempt);
    ops_rd_text(&r, o->lease_owner, sizeof o->lease_owner, NULL);
    ops_rd_time(&r, &o->lease_until, &o->has_lease);
    ops_rd_text(&r, o->err_code, sizeof o->err_code, &o->err_code_null);
    ops_rd_text(&r, o->err_msg, sizeof o->err_msg, &o->err_msg_null);
    ops_rd_int(&r, &o->doc_id, &null);
    ops_rd_text(&r, o->tkt_no, sizeof o->tkt_no, &o->tkt_no_null);
    ops_rd_int(&r, &o->adopted, NULL);
    ops_rd_int(&r, &o->after_pending, NULL);
    ops_rd_int(&r, &o->after_attempts, NULL);
    ops_rd_int(&r, &o->changed, NULL);
    ops_rd_time(&r, &o->received, &o->has_received);
    ops_rd_time(&r, &o->updated, &o->has_updated);
    ops_rd_time(&r, &o->applied, &o->has_applied);
    return r.rc;
}

/* Load one staging row: CPB_SKIP when it does not exist. */
enum cpb_status ops_load_order(struct db *db, int64_t id, struct order_row *o)
{
    struct cpb_stmt *st = NULL;
    memset(o, 0, sizeof *o);
    enum cpb_status rc =
        sql_query(db, "SELECT " ORDER_COLS " FROM USER_ORDER_STAGING WHERE STAGING_ID = ?",
                  (struct sql_arg[]){sql_int(id)}, 1, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        rc = ops_read_order(st, o);
    }
    db_finalize(st);
    return rc;
}

int ops_next_order(const struct ops *op, struct cpb_stmt *st, struct order_row *o, bool *done)
{
    enum cpb_status rc = db_fetch(st);
    *done = rc == CPB_SKIP;
    if (*done) {
        return 0;
    }
    if (rc == CPB_OK) {
        rc = ops_read_order(st, o);
    }
    return rc == CPB_OK ? 0 : ops_db_failed(op, "reading orders");
}

int ops_lock_order(const struct ops *op, int64_t id, int64_t now, struct order_row *o)
{
    enum cpb_status rc = staging_lock(op->db, id, NULL, now);
    if (rc == CPB_OK) {
        rc = ops_load_order(op->db, id, o);
    }
    if (rc == CPB_SKIP) {
        return ops_fail(op, CPB_EXIT_NOINPUT, "order %lld disappeared", (long long)id);
    }
    if (rc != CPB_OK) {
        return ops_db_failed(op, "reading the order");
    }
    return 0;
}

/* True while a runner holds the order's lease. */
bool ops_lease_live(const struct order_row *o, int64_t now)
{
    return o->has_lease && o->lease_until > now;
}

/* "12 (woo:1234)" */
const char *ops_order_label(const struct order_row *o, char *out, size_t n)
{
    snprintf(out, n, "%lld (%s:%s)", (long long)o->id, o->source, o->ext);
    return out;
}

json_t *ops_order_json(const struct order_row *o, int64_t now)
{
    json_t *j = json_object();
    if (j == NULL) {
        return NULL;
    }
    json_object_set_new(j, "id", json_integer((json_int_t)o->id));
    json_object_set_new(j, "source", ops_jtext(o->source, false));
    json_object_set_new(j, "external_id", ops_jtext(o->ext, false));
    json_object_set_new(j, "order_no", ops_jtext(o->order_no, o->order_no_null));
    json_object_set_new(j, "state", ops_jtext(o->status, false));
    json_object_set_new(j, "store_status", ops_jtext(o->store_status, o->store_status_null));
    json_object_set_new(j, "email", ops_jtext(o->email, o->email_null));
    json_object_set_new(j, "store_customer_id",
                        o->customer_null ? json_null() : json_integer((json_int_t)o->customer));
    json_object_set_new(j, "bill_name", ops_jtext(o->bill_nam, o->bill_nam_null));
    json_object_set_new(j, "currency", ops_jtext(o->currency, o->currency_null));
    json_object_set_new(j, "total", ops_jdec(o->total, o->total_null));
    json_object_set_new(j, "ordered", ops_jwhen(o->order_dt, o->has_order_dt));
    json_object_set_new(j, "modified", ops_jwhen(o->modified_dt, o->has_modified_dt));
    json_object_set_new(j, "attempts", json_integer((json_int_t)o->attempts));
    json_object_set_new(j, "next_attempt", ops_jwhen(o->next_attempt, o->has_next_attempt));
    json_object_set_new(j, "lease_owner",
                        ops_lease_live(o, now) ? ops_jtext(o->lease_owner, false) : json_null());
    json_object_set_new(j, "lease_until", ops_jwhen(o->lease_until, ops_lease_live(o, now)));
    json_object_set_new(j, "last_error_code", ops_jtext(o->err_code, o->err_code_null));
    json_object_set_new(j, "last_error", ops_jtext(o->err_msg, o->err_msg_null));
    json_object_set_new(j, "cp_doc_id",
                        o->doc_id != 0 ? json_integer((json_int_t)o->doc_id) : json_null());
    json_object_set_new(j, "cp_tkt_no", ops_jtext(o->tkt_no, o->tkt_no_null));
    json_object_set_new(j, "cp_adopted", json_boolean(o->adopted != 0));
    json_object_set_new(j, "after_pending", json_integer((json_int_t)o->after_pending));
    json_object_set_new(j, "after_attempts", json_integer((json_int_t)o->after_attempts));
    json_object_set_new(j, "changed_after_apply", json_boolean(o->changed != 0));
    json_object_set_new(j, "received", ops_jwhen(o->received, o->has_received));
    json_object_set_new(j, "updated", ops_jwhen(o->updated, o->has_updated));
    json_object_set_new(j, "applied", ops_jwhen(o->applied, o->has_applied));
    return j;
}

/*
 * Resolve ID (a staging id, or SOURCE:EXTERNAL_ID) to a staging id.
 * Returns 0, CPB_EXIT_USAGE, CPB_EXIT_NOINPUT or CPB_EXIT_UNAVAILABLE
 * (message printed).
 */
int ops_resolve_id(struct ops *op, const char *text, int64_t *id)
{
    int64_t v = 0;
    char shown[200];
    enum cpb_status rc;
    ops_clean(text, shown, sizeof shown);
    if (!text_utf8_valid(text, strlen(text))) {
        return ops_usage_error(op->v, "order id '%s' is not valid UTF-8", shown);
    }
    const char *colon = strchr(text, ':');
    if (text_parse_int(text, &v) == 0) {
        if (v <= 0) {
            return ops_usage_error(op->v, "order id '%s': a staging id is a positive number",
                                   shown);
        }
        rc = sql_query_int(op->db, "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STAGING_ID = ?",
                           (struct sql_arg[]){sql_int(v)}, 1, id, NULL);
    } else if (colon != NULL && colon != text && colon[1] != '\0') {
        size_t slen = (size_t)(colon - text);
        char *source = malloc(slen + 1);
        if (source == NULL) {
            return ops_fail(op, CPB_EXIT_SOFTWARE, "out of memory");
        }
        memcpy(source, text, slen);
        source[slen] = '\0';
        rc = sql_query_int(op->db,
                           "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE SOURCE = ?"
                           " AND EXT_ORDER_ID = ?",
                           (struct sql_arg[]){sql_text(source), sql_text(colon + 1)}, 2, id, NULL);
        free(source);
    } else {
        return ops_usage_error(op->v,
                               "order id '%s': give the staging id (a number) or"
                               " SOURCE:EXTERNAL_ID (e.g. woo:1234)",
                               shown);
    }
    if (rc == CPB_SKIP) {
        return ops_fail(op, CPB_EXIT_NOINPUT,
                        "no order '%s' in this database (see `cpbridge orders %s list`)", shown,
                        op->path);
    }
    if (rc != CPB_OK) {
        return ops_db_failed(op, "looking up the order");
    }
    return 0;
}

/* The DEAD/INVALID list (dlq list) or the changed-after-apply list;
 * limit < 0: all. Prints or appends to `arr`. Returns 0 or an exit code. */
int ops_order_list(struct ops *op, const char *where, const struct sql_arg *args, size_t n,
                   int64_t limit, json_t *arr, const char *empty)
{
    struct cpb_stmt *st = NULL;
    struct order_row o;
    struct buf rest = BUF_INIT;
    int code = 0;
    int rows = 0;
    enum cpb_status rc;
    buf_addf(&rest, "FROM USER_ORDER_STAGING %s ORDER BY STAGING_ID", where);
    if (limit > 0) {
        rc = ops_query_limited(op->db, ORDER_COLS, buf_str(&rest), args, n, limit, &st);
    } else {
        struct buf sql = BUF_INIT;
        buf_addf(&sql, "SELECT " ORDER_COLS " %s", buf_str(&rest));
        rc = sql_query(op->db, buf_str(&sql), args, n, &st);
        buf_free(&sql);
    }
    if (rc != CPB_OK) {
        code = ops_db_failed(op, "listing orders");
        goto out;
    }
    for (;;) {
        char when[40];
        bool done = false;
        code = ops_next_order(op, st, &o, &done);
        if (code != 0) {
            goto out;
        }
        if (done) {
            break;
        }
        if (arr != NULL) {
            json_array_append_new(arr, ops_order_json(&o, op->now));
            continue;
        }
        if (rows == 0) {
            printf("  %-8s %-28s %-11s %8s  %-20s %s\n", "ID", "SOURCE:ORDER", "STATE", "ATTEMPTS",
                   "UPDATED", "LAST ERROR / DOCUMENT");
        }
        char who[420];
        snprintf(who, sizeof who, "%s:%s", o.source, o.ext);
        printf("  %-8lld %-28s %-11s %8lld  %-20s ", (long long)o.id, who, o.status,
               (long long)o.attempts, ops_fmt_when(o.updated, o.has_updated, when, sizeof when));
        if (!o.err_code_null || !o.err_msg_null) {
            printf("%s: %s\n", o.err_code_null ? "-" : o.err_code, o.err_msg);
        } else if (o.doc_id != 0) {
            printf("document %lld, ticket %s\n", (long long)o.doc_id, o.tkt_no);
        } else {
            printf("-\n");
        }
        rows++;
    }
    if (arr == NULL && rows == 0 && empty != NULL) {
        printf("  %s\n", empty);
    }
out:
    db_finalize(st);
    buf_free(&rest);
    return code;
}

/* Who is doing this: $SUDO_USER, $USER, the login name, or "unknown";
 * cut to the ACTOR column (100 characters). */
void ops_actor_of(char *out, size_t n)
{
    const char *cands[] = {getenv("SUDO_USER"), getenv("USER"), getlogin()};
    const char *who = "unknown";
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (cands[i] != NULL && cands[i][0] != '\0') {
            who = cands[i];
            break;
        }
    }
    char cleaned[512];
    ops_clean(who, cleaned, sizeof cleaned);
    size_t len = text_utf8_prefix(cleaned, 100);
    if (len >= n) {
        len = n - 1;
    }
    memcpy(out, cleaned, len);
    out[len] = '\0';
}

const struct ops_inv_column ops_inv_columns[OPS_N_INV_COLUMNS] = {
    {"QTY_ON_SO", "UPDATE IM_INV SET QTY_ON_SO = QTY_ON_SO - ? WHERE ITEM_NO = ? AND LOC_ID = ?",
     "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?"},
    {"QTY_COMMIT", "UPDATE IM_INV SET QTY_COMMIT = QTY_COMMIT - ? WHERE ITEM_NO = ? AND LOC_ID = ?",
     "SELECT QTY_COMMIT FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?"},
};

int ops_inv_column_index(const char *name)
{
    for (int i = 0; name != NULL && i < OPS_N_INV_COLUMNS; i++) {
        if (strcmp(name, ops_inv_columns[i].column) == 0) {
            return i;
        }
    }
    return -1;
}

void ops_drift_state_key(const char *name, char *out, size_t n)
{
    snprintf(out, n, "drift/%s", name);
}
