/*
 * test_cp_stages.c — the Counterpoint stages (validate, create-order,
 * update-qty) end to end through the real engine, on real SQLite (its ODBC
 * driver) and real PostgreSQL: each test makes a fresh database with the
 * engine schema and the Counterpoint demo subset, stages WooCommerce-shaped
 * orders with staging_upsert, runs a pipeline file with the built stages
 * (pipeline_open, pipeline_init, runner_run) and asserts on the rows.
 *
 * Covered: every validation rule passing and failing (with the stored
 * LAST_ERROR_CODE and message), the exact rows of a multi-line order with
 * shipping, discount, fee and tax, the store ticket counter and other
 * create-order options, inventory deltas for QTY_ON_SO and QTY_COMMIT (and
 * create_missing), idempotency, adopting an existing document, atomicity (a
 * failure in update-qty leaves nothing behind), and on PostgreSQL two
 * runners in two processes over 200 orders. A few rules the engine cannot
 * reach (its staging already holds malformed payloads) are driven by
 * calling the stages directly with the real host services and database.
 *
 * On PostgreSQL every test gets its own database (CREATE DATABASE on the
 * server from CPB_TEST_PG), dropped when the suite ends.
 */
#include <inttypes.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/host.h"
#include "engine/options.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "lib/order.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

/* The stages, linked in statically for the direct calls. */
extern const struct cpb_stage validate_stage;
extern const struct cpb_stage create_order_stage;
extern const struct cpb_stage update_qty_stage;

#define SOURCE       "samples"
#define FIRST_DOC_ID INT64_C(100000000001)
#define MAX_PG_DBS   32

static enum db_dialect dialect;
static char conn[1024];
static char pg_dbs[MAX_PG_DBS][48];
static unsigned n_pg_dbs;
static unsigned case_no;

/* ---- reporting ------------------------------------------------------------ */

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An assertion with a formatted message (CUnit copies the text). */
static void check(bool ok, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!ok) {
        fprintf(stderr, "test_cp_stages: %s\n", msg);
    }
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, __LINE__, msg, __FILE__, "", CU_FALSE);
}

/* ---- databases ------------------------------------------------------------ */

/* The PostgreSQL connection string for database `name`, from CPB_TEST_PG. */
static int pg_conn_for(const char *base, const char *name, char *out, size_t n)
{
    const char *p = strstr(base, "Database=");
    if (p == NULL) {
        return -1;
    }
    const char *end = strchr(p, ';');
    int w =
        snprintf(out, n, "%.*sDatabase=%s%s", (int)(p - base), base, name, end != NULL ? end : "");
    return (w < 0 || (size_t)w >= n) ? -1 : 0;
}

/* Run one statement on the CPB_TEST_PG database (autocommit). */
static int pg_admin(const char *sql)
{
    struct db *db = NULL;
    struct err e = {0};
    const char *base = cpbtest_pg_conn();
    if (base == NULL) {
        return -1;
    }
    if (db_connect(base, DB_POSTGRESQL, 10000, &db, &e) != 0) {
        fprintf(stderr, "test_cp_stages: %s\n", e.msg);
        return -1;
    }
    int rc = db_exec(db, sql) == CPB_OK ? 0 : -1;
    if (rc != 0) {
        fprintf(stderr, "test_cp_stages: %s: %s\n", sql, db_last_error(db));
    }
    db_close(db);
    return rc;
}

/* A fresh database with the engine schema and the demo subset; sets conn. */
static struct db *fresh_db(void)
{
    struct db *db = NULL;
    struct err e = {0};
    int from = 0;
    int to = 0;

    if (dialect == DB_SQLITE) {
        snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
    } else {
        const char *base = cpbtest_pg_conn();
        char sql[128];
        CU_ASSERT_PTR_NOT_NULL_FATAL(base);
        CU_ASSERT_FATAL(n_pg_dbs < MAX_PG_DBS);
        char *name = pg_dbs[n_pg_dbs];
        snprintf(name, sizeof pg_dbs[0], "cpst_%ld_%u", (long)getpid(), n_pg_dbs);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        CU_ASSERT_EQUAL_FATAL(pg_admin(sql), 0);
        n_pg_dbs++;
        CU_ASSERT_EQUAL_FATAL(pg_conn_for(base, name, conn, sizeof conn), 0);
    }
    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "test_cp_stages: %s\n", e.msg);
        CU_FAIL_FATAL("cannot connect to the test database");
    }
    if (schema_init(db, true, 0, &from, &to, &e) != 0) {
        fprintf(stderr, "test_cp_stages: schema_init: %s\n", e.msg);
        CU_FAIL_FATAL("schema_init failed");
    }
    return db;
}

/* ---- queries -------------------------------------------------------------- */

#define NONE INT64_MIN

/* The first column of the first row as an integer; NONE for no row/NULL. */
static int64_t q_int(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    int64_t v = 0;
    bool null = false;
    if (sql_query_int(db, sql, a, n, &v, &null) != CPB_OK || null) {
        return NONE;
    }
    return v;
}

static int64_t q_count(struct db *db, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    return q_int(db, sql, NULL, 0);
}

/* The first column of the first row as a decimal (ten-thousandths). */
static int64_t q_dec(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    struct cpb_stmt *st = NULL;
    int64_t v = NONE;
    bool null = false;
    if (sql_query(db, sql, a, n, &st) == CPB_OK && db_fetch(st) == CPB_OK &&
        db_col_decimal(st, 1, &v, &null) == CPB_OK && null) {
        v = NONE;
    }
    db_finalize(st);
    return v;
}

/* The first column of the first row as new text (free()), or NULL. */
static char *q_text(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char *out = NULL;
    if (sql_query(db, sql, a, n, &st) == CPB_OK && db_fetch(st) == CPB_OK &&
        db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        out = strdup(v);
    }
    db_finalize(st);
    return out;
}

/* IM_INV quantity `col` of (item, loc) in ten-thousandths; NONE: no row. */
static int64_t inv(struct db *db, const char *col, const char *item, const char *loc)
{
    char sql[200];
    struct sql_arg a[] = {sql_text(item), sql_text(loc)};
    snprintf(sql, sizeof sql, "SELECT %s FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?", col);
    return q_dec(db, sql, a, SQL_NARGS(a));
}

static int64_t counter(struct db *db, const char *id)
{
    struct sql_arg a[] = {sql_text(id)};
    return q_int(db, "SELECT NEXT_VAL FROM USER_DOC_COUNTER WHERE COUNTER_ID = ?", a, 1);
}

/* One expected column: "s:TEXT", "i:INT", "d:DECIMAL", "t:YYYY-MM-DDTHH:MM:SS",
 * "n" (NULL), "*" (not NULL), "g" (a GUID). */
struct want {
    const char *col;
    const char *want;
};

/* The one row of `table` matching `where` has the wanted values. */
static void expect_row(struct db *db, const char *table, const char *where,
                       const struct sql_arg *args, size_t nargs, const struct want *w, size_t n)
{
    char sql[2048];
    size_t len = (size_t)snprintf(sql, sizeof sql, "SELECT ");
    struct cpb_stmt *st = NULL;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(sql + len, sizeof sql - len, "%s%s", i > 0 ? ", " : "", w[i].col);
    }
    snprintf(sql + len, sizeof sql - len, " FROM %s WHERE %s", table, where);
    enum cpb_status rc = sql_query(db, sql, args, nargs, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    check(rc == CPB_OK, "%s: no row where %s (%s)", table, where, db_last_error(db));
    for (size_t i = 0; rc == CPB_OK && i < n; i++) {
        const char *v = NULL;
        const char *spec = w[i].want;
        int64_t got = 0;
        int64_t expect = 0;
        bool null = false;
        bool ok = false;
        db_col_text(st, (unsigned)i + 1, &v);
        switch (spec[0]) {
        case 's':
            ok = v != NULL && strcmp(v, spec + 2) == 0;
            break;
        case 'i':
            ok = text_parse_int(spec + 2, &expect) == 0 &&
                 db_col_int(st, (unsigned)i + 1, &got, &null) == CPB_OK && !null && got == expect;
            break;
        case 'd':
            ok = text_parse_decimal(spec + 2, &expect) == 0 &&
                 db_col_decimal(st, (unsigned)i + 1, &got, &null) == CPB_OK && !null &&
                 got == expect;
            break;
        case 't':
            ok = text_parse_time(spec + 2, &expect) == 0 &&
                 db_col_time(st, (unsigned)i + 1, &got, &null) == CPB_OK && !null && got == expect;
            break;
        case 'n':
            ok = v == NULL;
            break;
        case '*':
            ok = v != NULL && v[0] != '\0';
            break;
        case 'g':
            ok = v != NULL && strlen(v) == 36 && v[8] == '-' && v[13] == '-' && v[18] == '-' &&
                 v[23] == '-';
            break;
        default:
            break;
        }
        check(ok, "%s.%s where %s: want %s, got %s", table, w[i].col, where, spec,
              v != NULL ? v : "NULL");
    }
    if (rc == CPB_OK) {
        check(db_fetch(st) == CPB_SKIP, "%s: more than one row where %s", table, where);
    }
    db_finalize(st);
}

/* The staging row's state, reason code and a part of its message. */
static void expect_outcome(struct db *db, int64_t sid, const char *status, const char *code,
                           const char *part)
{
    struct sql_arg a[] = {sql_int(sid)};
    struct cpb_stmt *st = NULL;
    const char *v[3] = {NULL, NULL, NULL};
    enum cpb_status rc = sql_query(db,
                                   "SELECT STATUS, LAST_ERROR_CODE, LAST_ERROR FROM"
                                   " USER_ORDER_STAGING WHERE STAGING_ID = ?",
                                   a, 1, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    check(rc == CPB_OK, "staging row %" PRId64 " is missing", sid);
    for (unsigned i = 0; rc == CPB_OK && i < 3; i++) {
        db_col_text(st, i + 1, &v[i]);
    }
    if (rc == CPB_OK) {
        check(v[0] != NULL && strcmp(v[0], status) == 0,
              "order %" PRId64 ": status %s, want %s"
              " (%s: %s)",
              sid, v[0] != NULL ? v[0] : "NULL", status, v[1] != NULL ? v[1] : "-",
              v[2] != NULL ? v[2] : "-");
        if (code == NULL) {
            check(v[1] == NULL, "order %" PRId64 ": unexpected reason %s: %s", sid, v[1],
                  v[2] != NULL ? v[2] : "");
        } else {
            check(v[1] != NULL && strcmp(v[1], code) == 0,
                  "order %" PRId64 ": reason %s, want %s (%s)", sid, v[1] != NULL ? v[1] : "NULL",
                  code, v[2] != NULL ? v[2] : "");
        }
        if (part != NULL) {
            check(v[2] != NULL && strstr(v[2], part) != NULL,
                  "order %" PRId64 ": message \"%s\" lacks \"%s\"", sid, v[2] != NULL ? v[2] : "",
                  part);
        }
    }
    db_finalize(st);
}

/* ---- orders --------------------------------------------------------------- */

/* One line of a test order; money in cents. */
struct tline {
    const char *sku;
    const char *name;
    int64_t qty;
    int64_t price;
    int64_t discount;
    int64_t tax;
};

/* A test order; money in cents. */
struct torder {
    int id;
    const char *email;
    int64_t customer_id;
    const struct tline *lines;
    size_t nlines;
    int64_t shipping, shipping_tax, fee, fee_tax;
    int64_t total_adjust; /* added to the computed total */
    const char *created;  /* NULL: an hour ago; "": none */
    const char *note;
};

/* Money text for cents (static rotation of 32). */
static const char *money(int64_t cents)
{
    static char bufs[32][32];
    static unsigned next;
    char *b = bufs[next++ % 32];
    int64_t a = cents < 0 ? -cents : cents;
    snprintf(b, 32, "%s%" PRId64 ".%02" PRId64, cents < 0 ? "-" : "", a / 100, a % 100);
    return b;
}

/* UTC time text `offset_s` seconds from now (static rotation of 8). */
static const char *time_from_now(int64_t offset_s)
{
    static char bufs[8][32];
    static unsigned next;
    char *b = bufs[next++ % 8];
    time_t t = time(NULL) + (time_t)offset_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(b, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    return b;
}

/* The created time every order gets unless it says otherwise (fixed for a
 * test program run, so expected rows can name it). */
static const char *created_default(void)
{
    static char text[32];
    if (text[0] == '\0') {
        snprintf(text, sizeof text, "%s", time_from_now(-3600));
    }
    return text;
}

/* A new WooCommerce REST-shaped order. */
static json_t *make_order(const struct torder *t)
{
    json_t *items = json_array();
    int64_t lines_total = 0;
    int64_t cart_tax = t->fee_tax;
    int64_t discount = 0;
    char number[32];

    for (size_t i = 0; i < t->nlines; i++) {
        const struct tline *l = &t->lines[i];
        int64_t sub = l->qty * l->price;
        int64_t tot = sub - l->discount;
        lines_total += tot;
        cart_tax += l->tax;
        discount += l->discount;
        json_array_append_new(
            items, json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s}", "id",
                             (json_int_t)(100 + i), "name", l->name != NULL ? l->name : "Item",
                             "sku", l->sku != NULL ? l->sku : "", "product_id",
                             (json_int_t)(500 + i), "variation_id", (json_int_t)0, "quantity",
                             (json_int_t)l->qty, "subtotal", money(sub), "subtotal_tax",
                             money(l->tax), "total", money(tot), "total_tax", money(l->tax)));
    }
    int64_t tax = cart_tax + t->shipping_tax;
    int64_t total = lines_total + t->shipping + t->fee + tax + t->total_adjust;
    json_t *ship_lines = json_array();
    if (t->shipping > 0) {
        json_array_append_new(
            ship_lines, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)900, "method_id",
                                  "flat_rate", "method_title", "Flat rate", "total",
                                  money(t->shipping), "total_tax", money(t->shipping_tax)));
    }
    json_t *fee_lines = json_array();
    if (t->fee != 0) {
        json_array_append_new(fee_lines, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)950,
                                                   "name", "Gift wrap", "total", money(t->fee),
                                                   "total_tax", money(t->fee_tax)));
    }
    json_t *coupons = json_array();
    if (discount > 0) {
        json_array_append_new(coupons, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)970,
                                                 "code", "save10", "discount", money(discount),
                                                 "discount_tax", "0.00"));
    }
    const char *created = t->created == NULL ? created_default() : t->created;
    snprintf(number, sizeof number, "%d", t->id);
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s?, s:s?, s:n, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
        " s:s, s:s}",
        "id", (json_int_t)t->id, "number", number, "status", "processing", "currency", "USD",
        "date_created_gmt", created[0] != '\0' ? created : NULL, "date_modified_gmt",
        created[0] != '\0' ? created : NULL, "date_paid_gmt", "customer_id",
        (json_int_t)t->customer_id, "total", money(total), "total_tax", money(tax), "cart_tax",
        money(cart_tax), "shipping_total", money(t->shipping), "shipping_tax",
        money(t->shipping_tax), "discount_total", money(discount), "discount_tax", "0.00",
        "payment_method", "stripe", "payment_method_title", "Credit Card (Stripe)", "customer_note",
        t->note != NULL ? t->note : "");
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    json_object_set_new(
        o, "billing",
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "first_name", "Jane",
                  "last_name", "Doe", "company", "", "address_1", "14 Elm Street", "address_2",
                  "Apt 3", "city", "Springfield", "state", "IL", "postcode", "62701", "country",
                  "US", "email", t->email != NULL ? t->email : "", "phone", "555-201-4410"));
    json_object_set_new(o, "shipping",
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                                  "first_name", "John", "last_name", "Roe", "company", "Acme Corp",
                                  "address_1", "900 Market St", "address_2", "", "city", "Chicago",
                                  "state", "IL", "postcode", "60601", "country", "US", "phone",
                                  ""));
    json_object_set_new(o, "line_items", items);
    json_object_set_new(o, "shipping_lines", ship_lines);
    json_object_set_new(o, "fee_lines", fee_lines);
    json_object_set_new(o, "coupon_lines", coupons);
    return o;
}

/* Stage `raw` (takes ownership) as staging_upsert does for a source;
 * returns the staging id. */
static int64_t stage_json(struct db *db, json_t *raw, enum upsert_outcome *outcome)
{
    json_t *norm = NULL;
    char msg[300];
    char hash[65];
    enum upsert_outcome local;
    int64_t sid = 0;
    if (outcome == NULL) {
        outcome = &local;
    }
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    CU_ASSERT_EQUAL_FATAL(order_hash(norm, hash), 0);
    char *payload = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(payload);
    CU_ASSERT_EQUAL_FATAL(staging_upsert(db, SOURCE, norm, payload, hash,
                                         (int64_t)time(NULL) * 1000, "test", outcome, &sid),
                          CPB_OK);
    free(payload);
    json_decref(norm);
    json_decref(raw);
    return sid;
}

static int64_t stage_order(struct db *db, const struct torder *t)
{
    return stage_json(db, make_order(t), NULL);
}

/* The multi-line order of the document tests: a plain line, a discounted
 * line, a legacy SKU (USER_ITEM_MAP), a unit price with four decimals;
 * shipping, a fee, tax and a customer note. */
static const struct tline full_lines[] = {
    {"TSHIRT-BLU-M", "Crew Neck T-Shirt - Blue, M", 2, 1999, 0, 320},
    {"HOODIE-M-BLK", "Pullover Hoodie - Black, M", 1, 4900, 490, 353},
    {"mug-350 ", "Ceramic Coffee Mug", 3, 990, 0, 238},
    {"CANDLE-SOY-LAV", "Soy Candle, Lavender", 3, 1600, 100, 376},
};

static struct torder full_order(int id)
{
    struct torder t = {.id = id,
                       .email = "jane.doe@example.com",
                       .lines = full_lines,
                       .nlines = 4,
                       .shipping = 750,
                       .shipping_tax = 60,
                       .fee = 200,
                       .fee_tax = 16,
                       .note = "Please leave at the back door."};
    return t;
}

/* ---- pipelines ------------------------------------------------------------ */

/* Write a pipeline file with the three stages (option text for each) and
 * the fixture notifier; returns its path (static rotation). */
static const char *write_pipeline(const char *vopts, const char *copts, const char *uopts)
{
    char name[64];
    char lock[64];
    char events[64];
    char text[8192];
    snprintf(name, sizeof name, "p%u.cfg", ++case_no);
    snprintf(lock, sizeof lock, "p%u.lock", case_no);
    snprintf(events, sizeof events, "events%u.log", case_no);
    snprintf(text, sizeof text,
             "name = \"cp-test\";\n"
             "stage_dirs = [\"%s\", \"%s\"];\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = 7; };\n"
             "retry = { max_attempts = 3; base = \"1s\"; cap = \"10s\"; };\n"
             "log = { level = \"warn\"; };\n"
             "stages = (\n"
             "  { stage = \"validate\"; options = { %s }; },\n"
             "  { stage = \"create-order\"; options = { %s }; },\n"
             "  { stage = \"update-qty\"; options = { %s }; },\n"
             "  { stage = \"cp-test-notify\"; on = [\"order.*\"];"
             " options = { log_file = \"%s\"; }; }\n"
             ");\n",
             cpbtest_build("stages"), cpbtest_build("fixture-stages"), db_dialect_name(dialect),
             conn, cpbtest_path(lock), vopts, copts, uopts, cpbtest_path(events));
    const char *path = cpbtest_path(name);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

/* The events file of the last pipeline written. */
static const char *events_path(void)
{
    char events[64];
    snprintf(events, sizeof events, "events%u.log", case_no);
    return cpbtest_path(events);
}

/* Open, init and run a pipeline; returns the exit code, -1 when it could
 * not be opened. */
static int run_pipeline(const char *path, struct run_result *res)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = path};
    struct run_result local;
    if (res == NULL) {
        res = &local;
    }
    if (pipeline_open(path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        fprintf(stderr, "test_cp_stages: %s\n", e.msg);
        pipeline_close(p);
        return -1;
    }
    int code = runner_run(p, &o, res, &e);
    if (code != CPB_EXIT_OK && code != CPB_EXIT_ATTENTION) {
        fprintf(stderr, "test_cp_stages: run: %s\n", e.msg);
    }
    pipeline_close(p);
    return code;
}

/* Make a staging row due again (as `cpbridge dlq retry` would). */
static void make_pending(struct db *db, int64_t sid)
{
    struct sql_arg a[] = {sql_time(0), sql_int(sid)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE USER_ORDER_STAGING SET STATUS = 'PENDING', CP_DOC_ID = NULL,"
                             " CP_TKT_NO = NULL, ATTEMPTS = 0, NEXT_ATTEMPT_DT = ?,"
                             " AFTER_PENDING = 0 WHERE STAGING_ID = ?",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

/* An active item without any IM_INV row. */
static void add_item_without_inventory(struct db *db, const char *item)
{
    struct sql_arg a[] = {sql_text(item), sql_decimal(50000)};
    CU_ASSERT_EQUAL_FATAL(sql_exec(db,
                                   "INSERT INTO IM_ITEM (ITEM_NO, DESCR, ITEM_TYP, STAT, PRC_1)"
                                   " VALUES (?, 'Test item without inventory', 'I', 'A', ?)",
                                   a, SQL_NARGS(a), NULL),
                          CPB_OK);
}

/* ---- validation through the engine ---------------------------------------- */

static void t_validation_rules(void)
{
    struct db *db = fresh_db();
    const struct tline ok1[] = {{"TSHIRT-BLU-M", "T-Shirt", 2, 1999, 0, 320}};
    const struct tline ok2[] = {{"tshirt-blu-m", "T-Shirt", 1, 1999, 0, 160},
                                {"COASTER-CORK-4", "Coasters", 2, 1250, 0, 200}};
    const struct tline no_sku[] = {{"TSHIRT-BLU-M", "T-Shirt", 1, 1999, 0, 0},
                                   {"", "Mystery product", 1, 500, 0, 0}};
    const struct tline unknown[] = {{"NOPE-123", "Nope", 1, 500, 0, 0}};
    const struct tline inactive[] = {{"POLO-NVY-L", "Polo", 1, 2999, 0, 0}};
    const struct tline many[] = {{"SOCK-CREW-3PK", "Socks", 1001, 1200, 0, 0}};
    const struct tline cheap[] = {{"TSHIRT-BLU-M", "T-Shirt", 1, 1500, 0, 0}};
    const struct tline none[] = {{NULL, NULL, 0, 0, 0, 0}};

    /* 1: the email matches two customers: the e-commerce one wins (C1002). */
    struct torder o = full_order(1001);
    int64_t s_ok = stage_order(db, &o);
    /* 2: email compared trimmed and case-insensitively; SKU upper-cased; an
     * item without IM_PRC at the location priced from IM_ITEM. */
    struct torder o2 = {.id = 1002, .email = "  ZOE@example.org ", .lines = ok2, .nlines = 2};
    int64_t s_zoe = stage_order(db, &o2);
    /* 3: a mapped web customer wins over an unknown email. */
    struct torder o3 = {.id = 1003,
                        .email = "unknown@nowhere.example",
                        .customer_id = 7,
                        .lines = ok1,
                        .nlines = 1};
    int64_t s_map = stage_order(db, &o3);
    struct torder o4 = {.id = 1004, .email = "nobody@example.com", .lines = ok1, .nlines = 1};
    int64_t s_unknown = stage_order(db, &o4);
    struct torder o5 = {.id = 1005, .email = "", .lines = ok1, .nlines = 1};
    int64_t s_nocust = stage_order(db, &o5);
    struct torder o6 = {.id = 1006, .email = "jane.doe@example.com", .lines = no_sku, .nlines = 2};
    int64_t s_nosku = stage_order(db, &o6);
    struct torder o7 = {.id = 1007, .email = "jane.doe@example.com", .lines = unknown, .nlines = 1};
    int64_t s_noitem = stage_order(db, &o7);
    struct torder o8 = {
        .id = 1008, .email = "jane.doe@example.com", .lines = inactive, .nlines = 1};
    int64_t s_inactive = stage_order(db, &o8);
    struct torder o9 = {.id = 1009, .email = "jane.doe@example.com", .lines = many, .nlines = 1};
    int64_t s_many = stage_order(db, &o9);
    struct torder o10 = {
        .id = 1010, .email = "jane.doe@example.com", .lines = ok1, .nlines = 1, .created = ""};
    int64_t s_nodate = stage_order(db, &o10);
    struct torder o11 = {.id = 1011,
                         .email = "jane.doe@example.com",
                         .lines = ok1,
                         .nlines = 1,
                         .created = time_from_now(3 * 3600)};
    int64_t s_future = stage_order(db, &o11);
    struct torder o12 = {.id = 1012,
                         .email = "jane.doe@example.com",
                         .lines = ok1,
                         .nlines = 1,
                         .created = "2014-06-01T12:00:00"};
    int64_t s_old = stage_order(db, &o12);
    struct torder o13 = {.id = 1013,
                         .email = "jane.doe@example.com",
                         .lines = ok1,
                         .nlines = 1,
                         .shipping = 500,
                         .total_adjust = 100};
    int64_t s_total = stage_order(db, &o13);
    struct torder o14 = {.id = 1014,
                         .email = "jane.doe@example.com",
                         .lines = ok1,
                         .nlines = 1,
                         .shipping = 500,
                         .total_adjust = 1};
    int64_t s_cent = stage_order(db, &o14);
    /* 15: billing has neither a name nor an email. */
    struct torder o15 = {.id = 1015, .email = "", .lines = ok1, .nlines = 1};
    json_t *j15 = make_order(&o15);
    json_t *b15 = json_object_get(j15, "billing");
    json_object_set_new(b15, "first_name", json_string(""));
    json_object_set_new(b15, "last_name", json_string(""));
    int64_t s_noname = stage_json(db, j15, NULL);
    struct torder o16 = {.id = 1016, .email = "jane.doe@example.com", .lines = none, .nlines = 0};
    int64_t s_nolines = stage_order(db, &o16);
    /* 17: a price off the catalogue only warns by default. */
    struct torder o17 = {.id = 1017, .email = "jane.doe@example.com", .lines = cheap, .nlines = 1};
    int64_t s_cheap = stage_order(db, &o17);
    /* 18: several failures: the first one's code, all of them listed. */
    struct torder o18 = {.id = 1018,
                         .email = "ghost@example.com",
                         .lines = inactive,
                         .nlines = 1,
                         .total_adjust = -300};
    int64_t s_several = stage_order(db, &o18);
    /* 19: a map row pointing at a customer that does not exist. */
    CU_ASSERT_EQUAL(db_exec(db, "INSERT INTO USER_CUSTOMER_MAP (SOURCE, WOO_CUSTOMER_ID, CUST_NO,"
                                " IS_ACTIVE) VALUES ('samples', 99, 'GONE', 1)"),
                    CPB_OK);
    struct torder o19 = {
        .id = 1019, .email = "jane.doe@example.com", .customer_id = 99, .lines = ok1, .nlines = 1};
    int64_t s_gone = stage_order(db, &o19);
    /* 20: an order in another currency than the store's (USD by default). */
    struct torder o20 = {.id = 1020, .email = "jane.doe@example.com", .lines = ok1, .nlines = 1};
    json_t *j20 = make_order(&o20);
    json_object_set_new(j20, "currency", json_string("EUR"));
    int64_t s_eur = stage_json(db, j20, NULL);

    int code = run_pipeline(write_pipeline("", "", ""), NULL);
    CU_ASSERT_EQUAL(code, CPB_EXIT_ATTENTION);

    expect_outcome(db, s_ok, "APPLIED", NULL, NULL);
    struct sql_arg r1[] = {sql_text("1001")};
    expect_row(db, "PS_DOC_HDR", "REF = ?", r1, 1, (struct want[]){{"CUST_NO", "s:C1002"}}, 1);
    expect_outcome(db, s_zoe, "APPLIED", NULL, NULL);
    struct sql_arg r2[] = {sql_text("1002")};
    expect_row(db, "PS_DOC_HDR", "REF = ?", r2, 1, (struct want[]){{"CUST_NO", "s:C1003"}}, 1);
    expect_outcome(db, s_map, "APPLIED", NULL, NULL);
    struct sql_arg r3[] = {sql_text("1003")};
    expect_row(db, "PS_DOC_HDR", "REF = ?", r3, 1, (struct want[]){{"CUST_NO", "s:C1007"}}, 1);
    expect_outcome(db, s_unknown, "INVALID", "customer.unknown",
                   "no AR_CUST customer has email 'nobody@example.com'");
    expect_outcome(db, s_nocust, "INVALID", "customer.missing",
                   "neither a billing email nor a customer account");
    expect_outcome(db, s_nosku, "INVALID", "item.unknown", "line 2 has no SKU");
    expect_outcome(db, s_noitem, "INVALID", "item.unknown", "SKU 'NOPE-123' matches no item");
    expect_outcome(db, s_inactive, "INVALID", "item.inactive",
                   "line 1 item POLO-NVY-L is not active (STAT 'D')");
    expect_outcome(db, s_many, "INVALID", "qty.too_large",
                   "line 1 quantity 1001 is above max_qty 1000");
    expect_outcome(db, s_nodate, "INVALID", "date.missing", "no creation date");
    expect_outcome(db, s_future, "INVALID", "date.future", "in the future");
    expect_outcome(db, s_old, "INVALID", "date.too_old", "before date_floor 2015-01-01");
    expect_outcome(db, s_total, "INVALID", "totals.mismatch",
                   "lines 39.98 + shipping 5.00 + fees 0.00 + tax 3.20 = 48.18, but the order"
                   " total is 49.18");
    expect_outcome(db, s_cent, "APPLIED", NULL, NULL);
    expect_outcome(db, s_noname, "INVALID", "field.missing", "neither a name nor an email");
    expect_outcome(db, s_noname, "INVALID", "field.missing", "customer");
    expect_outcome(db, s_nolines, "INVALID", "field.missing", "no line items");
    expect_outcome(db, s_cheap, "APPLIED", NULL, NULL);
    expect_outcome(db, s_several, "INVALID", "customer.unknown", "ghost@example.com");
    expect_outcome(db, s_several, "INVALID", "customer.unknown", "POLO-NVY-L is not active");
    expect_outcome(db, s_several, "INVALID", "customer.unknown", "but the order total is");
    expect_outcome(db, s_gone, "INVALID", "customer.unknown",
                   "maps web customer 99 to 'GONE', which is not in AR_CUST");
    expect_outcome(db, s_eur, "INVALID", "currency.mismatch",
                   "the order is in 'EUR', Counterpoint's prices are in USD");

    /* The warning reached the notifier as an order.warning event. */
    char *events = cpbtest_slurp(events_path(), NULL);
    CU_ASSERT_PTR_NOT_NULL(events);
    if (events != NULL) {
        check(strstr(events, "\"event\":\"order.warning\"") != NULL &&
                  strstr(events, "\"code\":\"price.mismatch\"") != NULL &&
                  strstr(events, "\"order_price\":\"15.00\"") != NULL &&
                  strstr(events, "\"catalogue_price\":\"19.99\"") != NULL,
              "no order.warning for the price in: %.600s", events);
        /* The discounted hoodie of order 1001 is no price mismatch. */
        check(strstr(events, "HOODIE-M-BLK") == NULL, "a discount raised a price warning");
    }
    free(events);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_HDR"), 5);
    db_close(db);
}

static void t_validation_options(void)
{
    struct db *db = fresh_db();
    const struct tline ok1[] = {{"TSHIRT-BLU-M", "T-Shirt", 2, 1999, 0, 320}};
    const struct tline cheap[] = {{"TSHIRT-BLU-M", "T-Shirt", 1, 1500, 0, 0}};
    const struct tline near[] = {{"TSHIRT-BLU-M", "T-Shirt", 1, 2000, 0, 0}};
    const struct tline jacket_prc[] = {{"JACKET-RAIN-M", "Jacket", 1, 7900, 0, 0}};
    const struct tline jacket_item[] = {{"JACKET-RAIN-M", "Jacket", 1, 8900, 0, 0}};
    const struct tline six[] = {{"SOCK-CREW-3PK", "Socks", 6, 1200, 0, 0}};

    /* The discounted full order passes price_check = fail. */
    struct torder o1 = full_order(2001);
    o1.email = "walk.in@example.com";
    int64_t s_walk = stage_order(db, &o1);
    struct torder o2 = {.id = 2002, .email = "jane.doe@example.com", .lines = cheap, .nlines = 1};
    int64_t s_cheap = stage_order(db, &o2);
    struct torder o3 = {
        .id = 2003, .email = "jane.doe@example.com", .lines = jacket_prc, .nlines = 1};
    int64_t s_prc = stage_order(db, &o3);
    struct torder o4 = {
        .id = 2004, .email = "jane.doe@example.com", .lines = jacket_item, .nlines = 1};
    int64_t s_item_prc = stage_order(db, &o4);
    struct torder o5 = {.id = 2005, .email = "jane.doe@example.com", .lines = near, .nlines = 1};
    int64_t s_near = stage_order(db, &o5);
    struct torder o6 = {.id = 2006, .email = "jane.doe@example.com", .lines = six, .nlines = 1};
    int64_t s_six = stage_order(db, &o6);
    CU_ASSERT_EQUAL(db_exec(db, "INSERT INTO PS_DOC_HDR (DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP,"
                                " STR_ID, STA_ID, TKT_NO, REF) VALUES (555,"
                                " '6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5', 'O', 'T', 'WEB',"
                                " 'WEB-01', 'LEGACY-555', '2007')"),
                    CPB_OK);
    struct torder o7 = {.id = 2007, .email = "jane.doe@example.com", .lines = ok1, .nlines = 1};
    int64_t s_dup = stage_order(db, &o7);

    int code = run_pipeline(write_pipeline("allow_walk_in = true; price_check = \"fail\";"
                                           " max_qty = \"5\"; on_existing_document = \"fail\";",
                                           "", ""),
                            NULL);
    CU_ASSERT_EQUAL(code, CPB_EXIT_ATTENTION);
    expect_outcome(db, s_walk, "APPLIED", NULL, NULL);
    struct sql_arg r1[] = {sql_text("2001")};
    expect_row(db, "PS_DOC_HDR", "REF = ?", r1, 1, (struct want[]){{"CUST_NO", "s:WEBCASH"}}, 1);
    expect_outcome(db, s_cheap, "INVALID", "price.mismatch",
                   "line 1 item TSHIRT-BLU-M is priced 15.00 in the order but 19.99 in the"
                   " catalogue at MAIN");
    expect_outcome(db, s_prc, "APPLIED", NULL, NULL);
    expect_outcome(db, s_item_prc, "INVALID", "price.mismatch", "89.00 in the order but 79.00");
    expect_outcome(db, s_near, "APPLIED", NULL, NULL);
    expect_outcome(db, s_six, "INVALID", "qty.too_large", "quantity 6 is above max_qty 5");
    expect_outcome(db, s_dup, "INVALID", "duplicate.document",
                   "already has order document 555 with REF '2007'");
    db_close(db);
}

/* ---- direct calls --------------------------------------------------------- */

/* One stage instance called directly with the real host services and
 * database (no runner): for rules the engine's staging never lets reach it. */
struct direct {
    const struct cpb_stage *desc;
    config_t cfg;
    struct opt_store *store;
    void *opts;
    struct host_env env;
    struct cpb_ctx *ctx;
    void *state;
    int init_rc;
};

static void direct_open(struct direct *d, const struct cpb_stage *desc, struct db *db,
                        const char *options)
{
    struct err e = {0};
    memset(d, 0, sizeof *d);
    d->desc = desc;
    config_init(&d->cfg);
    CU_ASSERT_FATAL(config_read_string(&d->cfg, options) == CONFIG_TRUE);
    d->opts = calloc(1, desc->options_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->opts);
    CU_ASSERT_EQUAL_FATAL(options_fill(desc->options, config_root_setting(&d->cfg), d->opts,
                                       &d->store, desc->name, &e),
                          0);
    d->env.db = db;
    d->env.in_order_tx = true;
    d->env.pipeline = "direct";
    d->ctx = host_ctx_new(desc->name, &d->env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->ctx);
    d->init_rc = desc->init(host_services(), d->ctx, d->opts, &d->state);
}

static enum cpb_status direct_call(struct direct *d, json_t *order, json_t *result)
{
    struct cpb_record rec = {.size = sizeof rec,
                             .id = 1,
                             .source = SOURCE,
                             .external_id = "direct",
                             .attempt = 1,
                             .payload = order,
                             .order = order,
                             .result = result};
    host_reason_clear(d->ctx);
    CU_ASSERT_EQUAL_FATAL(db_begin(d->env.db), CPB_OK);
    enum cpb_status st = d->desc->process(d->state, &rec);
    CU_ASSERT_EQUAL(db_rollback(d->env.db), CPB_OK);
    return st;
}

static void direct_close(struct direct *d)
{
    d->desc->fini(d->state);
    host_ctx_free(d->ctx);
    opt_store_free(d->store);
    free(d->opts);
    config_destroy(&d->cfg);
}

/* A normalized order (new) for the direct calls. */
static json_t *normalized(const struct torder *t)
{
    json_t *raw = make_order(t);
    json_t *norm = NULL;
    char msg[200];
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    json_decref(raw);
    return norm;
}

static void t_direct(void)
{
    struct db *db = fresh_db();
    struct direct d;
    struct torder t = full_order(8001);
    json_t *norm = normalized(&t);
    json_t *result = json_object();

    /* A normal order passes and yields what create-order needs. */
    direct_open(&d, &validate_stage, db, "");
    CU_ASSERT_EQUAL(d.init_rc, 0);
    CU_ASSERT_EQUAL(direct_call(&d, norm, result), CPB_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(result, "cp_cust_no")), "C1002");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(result, "cp_stk_loc_id")), "MAIN");
    json_t *items = json_object_get(result, "cp_items");
    CU_ASSERT_EQUAL(json_array_size(items), 4);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(items, 2)), "MUG-CER-350");
    CU_ASSERT_PTR_NULL(json_object_get(result, "cp_adopt_doc_id"));

    /* payload.malformed: the normalizer's problems, named. */
    json_t *bad = json_deep_copy(norm);
    json_object_set_new(bad, "problems",
                        json_pack("[{s:s, s:s}]", "field", "line_items[1].total", "message",
                                  "\"abc\" is not a decimal amount"));
    json_t *r1 = json_object();
    CU_ASSERT_EQUAL(direct_call(&d, bad, r1), CPB_FAIL);
    json_decref(r1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(d.ctx), "payload.malformed");
    CU_ASSERT_PTR_NOT_NULL(strstr(host_reason_message(d.ctx), "line_items[1].total"));
    json_decref(bad);

    /* qty.invalid: a line quantity of zero. */
    bad = json_deep_copy(norm);
    json_object_set_new(json_array_get(json_object_get(bad, "lines"), 1), "qty", json_integer(0));
    json_t *r2 = json_object();
    CU_ASSERT_EQUAL(direct_call(&d, bad, r2), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(d.ctx), "qty.invalid");
    CU_ASSERT_PTR_NOT_NULL(strstr(host_reason_message(d.ctx), "line 2 quantity 0 is not positive"));
    CU_ASSERT_PTR_NULL(json_object_get(r2, "cp_cust_no"));
    json_decref(r2);
    json_decref(bad);
    direct_close(&d);

    /* A store without configuration, and a date floor that is no date. */
    direct_open(&d, &validate_stage, db, "store = \"NOPE\";");
    json_t *r3 = json_object();
    CU_ASSERT_EQUAL(direct_call(&d, norm, r3), CPB_FAIL);
    json_decref(r3);
    CU_ASSERT_STRING_EQUAL(host_reason_code(d.ctx), "store.unknown");
    direct_close(&d);
    direct_open(&d, &validate_stage, db, "date_floor = \"2015-02-30\";");
    CU_ASSERT_EQUAL(d.init_rc, -1);
    direct_close(&d);

    /* create-order refuses to run without validate's results. */
    direct_open(&d, &create_order_stage, db, "");
    CU_ASSERT_EQUAL(d.init_rc, 0);
    json_t *empty = json_object();
    CU_ASSERT_EQUAL(direct_call(&d, norm, empty), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(d.ctx), "create-order.needs_validate");
    /* ... and writes a document with them (rolled back by direct_call). */
    CU_ASSERT_EQUAL(direct_call(&d, norm, result), CPB_OK);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(result, "cp_doc_id")), FIRST_DOC_ID);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(result, "cp_tkt_no")), "WWEB-000001");
    direct_close(&d);
    /* A prefix that makes ticket numbers too long is refused at init. */
    direct_open(&d, &create_order_stage, db, "ticket_prefix = \"WEBOR\"; store = \"WEBSTORE1\";");
    CU_ASSERT_EQUAL(d.init_rc, -1);
    direct_close(&d);

    /* update-qty needs create-order's results, and skips adopted documents. */
    direct_open(&d, &update_qty_stage, db, "");
    CU_ASSERT_EQUAL(direct_call(&d, norm, empty), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(d.ctx), "update-qty.needs_create_order");
    json_object_set_new(empty, "cp_adopted", json_true());
    CU_ASSERT_EQUAL(direct_call(&d, norm, empty), CPB_SKIP);
    direct_close(&d);

    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_HDR"), 0);
    json_decref(empty);
    json_decref(result);
    json_decref(norm);
    db_close(db);
}

/* ---- documents ------------------------------------------------------------ */

static void t_document_rows(void)
{
    struct db *db = fresh_db();
    struct torder t = full_order(3001);
    int64_t sid = stage_order(db, &t);
    struct torder t2 = full_order(3002);
    int64_t sid2 = stage_order(db, &t2);
    char created[40];
    snprintf(created, sizeof created, "t:%s", created_default());

    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("", "drawer = \"1\";", ""), NULL), CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    expect_outcome(db, sid2, "APPLIED", NULL, NULL);

    struct sql_arg s1[] = {sql_int(sid)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s1, 1,
               (struct want[]){{"CP_DOC_ID", "i:100000000001"}, {"CP_TKT_NO", "s:WWEB-000001"}}, 2);
    struct sql_arg s2[] = {sql_int(sid2)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s2, 1,
               (struct want[]){{"CP_DOC_ID", "i:100000000002"}, {"CP_TKT_NO", "s:WWEB-000002"}}, 2);

    struct sql_arg doc[] = {sql_int(FIRST_DOC_ID)};
    const struct want hdr[] = {
        {"DOC_GUID", "g"},
        {"DOC_TYP", "s:O"},
        {"TKT_TYP", "s:T"},
        {"STR_ID", "s:WEB"},
        {"STA_ID", "s:WEB-01"},
        {"DRW_ID", "s:1"},
        {"TKT_NO", "s:WWEB-000001"},
        {"CUST_NO", "s:C1002"},
        {"TKT_DT", created},
        {"USR_ID", "s:CPBRIDGE"},
        {"STK_LOC_ID", "s:MAIN"},
        {"PRC_LOC_ID", "s:MAIN"},
        {"REF", "s:3001"},
        {"CUST_PO_NO", "n"},
        {"BILL_TO_CONTACT_ID", "i:1"},
        {"SHIP_TO_CONTACT_ID", "i:2"},
        {"ORD_LINS", "i:4"},
        {"SAL_LINS", "i:0"},
        {"RET_LINS", "i:0"},
        {"SAL_LIN_TOT", "d:0"},
        {"IS_DOC_COMMITTED", "s:Y"},
        {"LST_MAINT_DT", "*"},
        {"LST_MAINT_USR_ID", "s:CPBRIDGE"},
    };
    expect_row(db, "PS_DOC_HDR", "DOC_ID = ?", doc, 1, hdr, sizeof hdr / sizeof hdr[0]);

    /* Lines: PRC is the unit price after discounts (4 decimals), EXT_PRC
     * and CALC_EXT_PRC the line total, GROSS_EXT_PRC the subtotal. */
    static const char *const lin[4][6] = {
        {"s:TSHIRT-BLU-M", "s:Crew Neck T-Shirt - Blue, M", "d:2", "d:19.99", "d:39.98", "d:39.98"},
        {"s:HOODIE-M-BLK", "s:Pullover Hoodie - Black, M", "d:1", "d:44.10", "d:44.10", "d:49.00"},
        {"s:MUG-CER-350", "s:Ceramic Coffee Mug", "d:3", "d:9.90", "d:29.70", "d:29.70"},
        {"s:CANDLE-SOY-LAV", "s:Soy Candle, Lavender", "d:3", "d:15.6667", "d:47.00", "d:48.00"},
    };
    for (int i = 0; i < 4; i++) {
        struct sql_arg k[] = {sql_int(FIRST_DOC_ID), sql_int(i + 1)};
        const struct want w[] = {
            {"STR_ID", "s:WEB"},     {"STA_ID", "s:WEB-01"},       {"TKT_NO", "s:WWEB-000001"},
            {"LIN_TYP", "s:O"},      {"ITEM_NO", lin[i][0]},       {"DESCR", lin[i][1]},
            {"QTY_SOLD", lin[i][2]}, {"SELL_UNIT", "s:0"},         {"PRC", lin[i][3]},
            {"EXT_PRC", lin[i][4]},  {"GROSS_EXT_PRC", lin[i][5]}, {"CALC_EXT_PRC", lin[i][4]},
            {"USR_ENTD_PRC", "s:Y"}, {"STK_LOC_ID", "s:MAIN"},     {"PRC_LOC_ID", "s:MAIN"},
            {"LIN_GUID", "g"},
        };
        expect_row(db, "PS_DOC_LIN", "DOC_ID = ? AND LIN_SEQ_NO = ?", k, 2, w,
                   sizeof w / sizeof w[0]);
    }
    struct sql_arg d1[] = {sql_int(FIRST_DOC_ID)};
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_LIN WHERE DOC_ID = ?", d1, 1), 4);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(DISTINCT LIN_GUID) FROM PS_DOC_LIN", NULL, 0), 8);

    /* Totals: lines 160.78 after 5.90 of discounts on 166.68, shipping 7.50
     * and fees 2.00 as misc, tax 13.63 (lines, fee and shipping tax). */
    const struct want tot[] = {
        {"LINS", "i:4"},
        {"SUB_TOT", "d:166.68"},
        {"TAX_AMT", "d:13.63"},
        {"NORM_TAX_AMT", "d:13.63"},
        {"TOT_MISC", "d:9.50"},
        {"TOT_HDR_DISC", "d:0"},
        {"TOT_LIN_DISC", "d:5.90"},
        {"TOT", "d:183.91"},
        {"AMT_DUE", "d:0"},
        {"TOT_TND", "d:183.91"},
        {"INITIAL_MIN_DUE", "d:0"},
        {"TAX_AMT_SHIPPED", "d:0"},
        {"TOT_WEIGHT", "d:0"},
        {"TOT_CUBE", "d:0"},
    };
    expect_row(db, "PS_DOC_HDR_TOT", "DOC_ID = ? AND TOT_TYP = 'O'", d1, 1, tot,
               sizeof tot / sizeof tot[0]);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR_TOT WHERE DOC_ID = ?", d1, 1), 1);

    struct sql_arg m1[] = {sql_int(FIRST_DOC_ID), sql_int(1)};
    expect_row(
        db, "PS_DOC_HDR_MISC_CHRG", "DOC_ID = ? AND MISC_CHRG_NO = ?", m1, 2,
        (struct want[]){
            {"TOT_TYP", "s:O"}, {"MISC_TYP", "s:A"}, {"MISC_AMT", "d:7.50"}, {"MISC_PCT", "d:0"}},
        4);
    struct sql_arg m2[] = {sql_int(FIRST_DOC_ID), sql_int(2)};
    expect_row(
        db, "PS_DOC_HDR_MISC_CHRG", "DOC_ID = ? AND MISC_CHRG_NO = ?", m2, 2,
        (struct want[]){
            {"TOT_TYP", "s:O"}, {"MISC_TYP", "s:A"}, {"MISC_AMT", "d:2.00"}, {"MISC_PCT", "d:0"}},
        4);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR_MISC_CHRG WHERE DOC_ID = ?", d1, 1),
                    2);

    struct sql_arg c1[] = {sql_int(FIRST_DOC_ID), sql_int(1)};
    const struct want bill[] = {
        {"NAM", "s:Jane Doe"},
        {"FST_NAM", "s:Jane"},
        {"LST_NAM", "s:Doe"},
        {"ADRS_1", "s:14 Elm Street"},
        {"ADRS_2", "s:Apt 3"},
        {"ADRS_3", "n"},
        {"CITY", "s:Springfield"},
        {"STATE", "s:IL"},
        {"ZIP_COD", "s:62701"},
        {"CNTRY", "s:US"},
        {"PHONE_1", "s:555-201-4410"},
        {"EMAIL_ADRS_1", "s:jane.doe@example.com"},
        {"NAM_TYP", "s:P"},
    };
    expect_row(db, "PS_DOC_CONTACT", "DOC_ID = ? AND CONTACT_ID = ?", c1, 2, bill,
               sizeof bill / sizeof bill[0]);
    struct sql_arg c2[] = {sql_int(FIRST_DOC_ID), sql_int(2)};
    const struct want ship[] = {
        {"NAM", "s:Acme Corp"}, {"FST_NAM", "s:John"},
        {"LST_NAM", "s:Roe"},   {"ADRS_1", "s:900 Market St"},
        {"ADRS_2", "n"},        {"CITY", "s:Chicago"},
        {"STATE", "s:IL"},      {"ZIP_COD", "s:60601"},
        {"CNTRY", "s:US"},      {"PHONE_1", "n"},
        {"EMAIL_ADRS_1", "n"},  {"NAM_TYP", "s:B"},
    };
    expect_row(db, "PS_DOC_CONTACT", "DOC_ID = ? AND CONTACT_ID = ?", c2, 2, ship,
               sizeof ship / sizeof ship[0]);

    const struct want pmt[] = {
        {"PAY_COD", "s:EC_WOOCOMM"}, {"AMT", "d:183.91"},    {"HOME_CURNCY_AMT", "d:183.91"},
        {"FINAL_PMT", "s:N"},        {"PAY_DAT", created},   {"DESCR", "s:Credit Card (Stripe)"},
        {"STR_ID", "s:WEB"},         {"STA_ID", "s:WEB-01"}, {"TKT_NO", "s:WWEB-000001"},
    };
    expect_row(db, "PS_DOC_PMT", "DOC_ID = ? AND PMT_SEQ_NO = 1", d1, 1, pmt,
               sizeof pmt / sizeof pmt[0]);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_PMT WHERE DOC_ID = ?", d1, 1), 1);
    expect_row(db, "PS_DOC_NOTE", "DOC_ID = ?", d1, 1,
               (struct want[]){{"NOTE_ID", "s:WEB"}, {"NOTE", "s:Please leave at the back door."}},
               2);

    /* The counters moved by exactly the two documents. */
    CU_ASSERT_EQUAL(counter(db, "DOC_ID"), FIRST_DOC_ID + 2);
    CU_ASSERT_EQUAL(counter(db, "TKT_NO:WEB"), 3);
    db_close(db);
}

static void t_store_counter(void)
{
    struct db *db = fresh_db();
    const struct tline one[] = {{"SOCK-CREW-3PK", "Socks", 1, 1200, 0, 0}};
    struct torder t = {.id = 4001,
                       .email = "orders@riverbend-yoga.example",
                       .lines = one,
                       .nlines = 1,
                       .shipping = 500,
                       .fee = 150};
    json_t *j = make_order(&t);
    /* No shipping address (ship-to falls back to billing), a company, no
     * payment date, and an amount with more than two decimals. */
    json_object_set_new(j, "shipping", json_object());
    json_object_set_new(json_object_get(j, "billing"), "company",
                        json_string("Riverbend Yoga Studio"));
    json_object_set_new(j, "date_paid_gmt", json_null());
    json_t *li = json_array_get(json_object_get(j, "line_items"), 0);
    json_object_set_new(li, "subtotal", json_string("12.005"));
    json_object_set_new(li, "total", json_string("12.005"));
    json_object_set_new(j, "total", json_string("18.505"));
    int64_t sid = stage_json(db, j, NULL);
    struct torder t2 = {.id = 4002, .email = "jane.doe@example.com", .lines = one, .nlines = 1};
    int64_t sid2 = stage_order(db, &t2);
    char created[40];
    snprintf(created, sizeof created, "t:%s", created_default());

    const char *path = write_pipeline("ref_column = \"CUST_PO_NO\";",
                                      "ticket_counter = \"store\"; ticket_prefix = \"O\";"
                                      " ref_column = \"CUST_PO_NO\"; payment_final = true;"
                                      " fee_misc_charge = 0; user = \"WEBUSER\";"
                                      " station = \"WEB-01\"; pay_code = \"EC_WOOCOMM\";",
                                      "");
    CU_ASSERT_EQUAL(run_pipeline(path, NULL), CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    expect_outcome(db, sid2, "APPLIED", NULL, NULL);

    struct sql_arg po[] = {sql_text("4001")};
    expect_row(db, "PS_DOC_HDR", "CUST_PO_NO = ?", po, 1,
               (struct want[]){{"DOC_ID", "i:100000000001"},
                               {"TKT_NO", "s:O100001"},
                               {"REF", "n"},
                               {"DRW_ID", "n"},
                               {"USR_ID", "s:WEBUSER"},
                               {"LST_MAINT_USR_ID", "s:WEBUSER"},
                               {"CUST_NO", "s:C1005"}},
               7);
    struct sql_arg po2[] = {sql_text("4002")};
    expect_row(db, "PS_DOC_HDR", "CUST_PO_NO = ?", po2, 1, (struct want[]){{"TKT_NO", "s:O100002"}},
               1);
    char *next = q_text(db, "SELECT NXT_ORD_NO FROM PS_STR_CFG_PS WHERE STR_ID = 'WEB'", NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(next);
    if (next != NULL) {
        CU_ASSERT_STRING_EQUAL(next, "100003");
    }
    free(next);
    CU_ASSERT_EQUAL(counter(db, "TKT_NO:WEB"), NONE);

    struct sql_arg d1[] = {sql_int(FIRST_DOC_ID)};
    /* Shipping and fee together in misc charge 1; half a cent rounds up. */
    expect_row(db, "PS_DOC_HDR_MISC_CHRG", "DOC_ID = ?", d1, 1,
               (struct want[]){{"MISC_CHRG_NO", "i:1"}, {"MISC_AMT", "d:6.50"}}, 2);
    expect_row(db, "PS_DOC_LIN", "DOC_ID = ?", d1, 1,
               (struct want[]){{"PRC", "d:12.005"},
                               {"EXT_PRC", "d:12.01"},
                               {"GROSS_EXT_PRC", "d:12.01"},
                               {"CALC_EXT_PRC", "d:12.01"}},
               4);
    expect_row(db, "PS_DOC_HDR_TOT", "DOC_ID = ?", d1, 1,
               (struct want[]){{"SUB_TOT", "d:12.01"},
                               {"TOT_MISC", "d:6.50"},
                               {"TOT_LIN_DISC", "d:0"},
                               {"TOT", "d:18.51"},
                               {"TOT_TND", "d:18.51"},
                               {"AMT_DUE", "d:0"}},
               6);
    expect_row(db, "PS_DOC_PMT", "DOC_ID = ?", d1, 1,
               (struct want[]){{"FINAL_PMT", "s:Y"}, {"PAY_DAT", created}, {"AMT", "d:18.51"}}, 3);
    /* Both contacts are the billing company. */
    for (int c = 1; c <= 2; c++) {
        struct sql_arg k[] = {sql_int(FIRST_DOC_ID), sql_int(c)};
        expect_row(db, "PS_DOC_CONTACT", "DOC_ID = ? AND CONTACT_ID = ?", k, 2,
                   (struct want[]){{"NAM", "s:Riverbend Yoga Studio"},
                                   {"NAM_TYP", "s:B"},
                                   {"ADRS_1", "s:14 Elm Street"},
                                   {"EMAIL_ADRS_1", "s:orders@riverbend-yoga.example"}},
                   4);
    }
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_NOTE WHERE DOC_ID = ?", d1, 1), 0);
    db_close(db);
}

/* ---- inventory ------------------------------------------------------------ */

static void t_inventory_on_so(void)
{
    struct db *db = fresh_db();
    const struct tline lines[] = {{"TSHIRT-BLU-M", "T-Shirt", 2, 1999, 0, 0},
                                  {"MUG-350", "Mug", 3, 990, 0, 0},
                                  {"TSHIRT-BLU-M", "T-Shirt again", 1, 1999, 0, 0}};
    struct torder t = {.id = 5101, .email = "jane.doe@example.com", .lines = lines, .nlines = 3};
    int64_t sid = stage_order(db, &t);

    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "TSHIRT-BLU-M", "MAIN"), 650000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_AVAIL", "TSHIRT-BLU-M", "MAIN"), 650000);
    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("", "", ""), NULL), CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);

    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 30000);
    CU_ASSERT_EQUAL(inv(db, "QTY_COMMIT", "TSHIRT-BLU-M", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "TSHIRT-BLU-M", "MAIN"), 650000);
    CU_ASSERT_EQUAL(inv(db, "QTY_AVAIL", "TSHIRT-BLU-M", "MAIN"), 650000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "MUG-CER-350", "MAIN"), 30000);
    CU_ASSERT_EQUAL(inv(db, "QTY_AVAIL", "MUG-CER-350", "MAIN"), 1500000);
    /* Other locations are untouched. */
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "OUTLET"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "MUG-CER-350", "OUTLET"), 0);
    struct sql_arg k[] = {sql_text("TSHIRT-BLU-M"), sql_text("MAIN")};
    expect_row(db, "IM_INV", "ITEM_NO = ? AND LOC_ID = ?", k, 2,
               (struct want[]){{"LST_MAINT_DT", "*"}}, 1);

    /* What changed is recorded line by line. */
    static const char *const rec[3][2] = {
        {"s:TSHIRT-BLU-M", "d:2"}, {"s:MUG-CER-350", "d:3"}, {"s:TSHIRT-BLU-M", "d:1"}};
    for (int i = 0; i < 3; i++) {
        struct sql_arg r[] = {sql_int(sid), sql_int(i + 1)};
        const struct want w[] = {{"DOC_ID", "i:100000000001"}, {"ITEM_NO", rec[i][0]},
                                 {"LOC_ID", "s:MAIN"},         {"QTY_COLUMN", "s:QTY_ON_SO"},
                                 {"QTY", rec[i][1]},           {"CREATED_ROW", "i:0"}};
        expect_row(db, "USER_ORDER_INV", "STAGING_ID = ? AND LIN_SEQ_NO = ?", r, 2, w,
                   sizeof w / sizeof w[0]);
    }
    CU_ASSERT_EQUAL(q_count(db, "USER_ORDER_INV"), 3);

    /* Another location, chosen in validate, flows to the document and stock. */
    const struct tline outlet[] = {{"HOODIE-M-BLK", "Hoodie", 2, 4900, 0, 0}};
    struct torder t2 = {.id = 5102, .email = "jane.doe@example.com", .lines = outlet, .nlines = 1};
    int64_t sid2 = stage_order(db, &t2);
    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("location = \"OUTLET\";", "", ""), NULL),
                    CPB_EXIT_OK);
    expect_outcome(db, sid2, "APPLIED", NULL, NULL);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "HOODIE-M-BLK", "OUTLET"), 20000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "HOODIE-M-BLK", "MAIN"), 0);
    struct sql_arg r2[] = {sql_text("5102")};
    expect_row(db, "PS_DOC_HDR", "REF = ?", r2, 1,
               (struct want[]){{"STK_LOC_ID", "s:OUTLET"}, {"PRC_LOC_ID", "s:OUTLET"}}, 2);
    db_close(db);
}

static void t_inventory_commit(void)
{
    struct db *db = fresh_db();
    add_item_without_inventory(db, "NOINV-1");
    const struct tline lines[] = {{"TSHIRT-BLU-M", "T-Shirt", 2, 1999, 0, 0},
                                  {"NOINV-1", "No inventory yet", 4, 500, 0, 0}};
    struct torder t = {.id = 5201, .email = "jane.doe@example.com", .lines = lines, .nlines = 2};
    int64_t sid = stage_order(db, &t);

    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "NOINV-1", "MAIN"), NONE);
    CU_ASSERT_EQUAL(
        run_pipeline(write_pipeline("", "", "column = \"QTY_COMMIT\"; create_missing = true;"),
                     NULL),
        CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    CU_ASSERT_EQUAL(inv(db, "QTY_COMMIT", "TSHIRT-BLU-M", "MAIN"), 20000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "TSHIRT-BLU-M", "MAIN"), 650000);
    CU_ASSERT_EQUAL(inv(db, "QTY_AVAIL", "TSHIRT-BLU-M", "MAIN"), 630000);
    /* The missing row was created with zero quantities and the delta. */
    CU_ASSERT_EQUAL(inv(db, "QTY_COMMIT", "NOINV-1", "MAIN"), 40000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "NOINV-1", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "NOINV-1", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_AVAIL", "NOINV-1", "MAIN"), -40000);
    struct sql_arg r1[] = {sql_int(sid), sql_int(1)};
    expect_row(db, "USER_ORDER_INV", "STAGING_ID = ? AND LIN_SEQ_NO = ?", r1, 2,
               (struct want[]){{"QTY_COLUMN", "s:QTY_COMMIT"}, {"CREATED_ROW", "i:0"}}, 2);
    struct sql_arg r2[] = {sql_int(sid), sql_int(2)};
    expect_row(db, "USER_ORDER_INV", "STAGING_ID = ? AND LIN_SEQ_NO = ?", r2, 2,
               (struct want[]){{"ITEM_NO", "s:NOINV-1"},
                               {"QTY_COLUMN", "s:QTY_COMMIT"},
                               {"QTY", "d:4"},
                               {"CREATED_ROW", "i:1"}},
               4);
    db_close(db);
}

/* ---- idempotency, adoption, atomicity ------------------------------------- */

static void t_idempotency(void)
{
    struct db *db = fresh_db();
    struct torder t = full_order(6001);
    int64_t sid = stage_order(db, &t);
    const char *path = write_pipeline("", "", "");
    struct run_result res;

    CU_ASSERT_EQUAL(run_pipeline(path, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 20000);

    /* The same run again, and the same order staged again: nothing new. */
    CU_ASSERT_EQUAL(run_pipeline(path, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    enum upsert_outcome outcome = UPSERT_NEW;
    CU_ASSERT_EQUAL(stage_json(db, make_order(&t), &outcome), sid);
    CU_ASSERT_EQUAL(outcome, UPSERT_UNCHANGED);
    CU_ASSERT_EQUAL(run_pipeline(path, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.applied, 0);

    /* Even an order made due again (its staging bookkeeping lost) is not
     * created twice: validate finds its document and it is adopted. */
    make_pending(db, sid);
    CU_ASSERT_EQUAL(run_pipeline(path, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    struct sql_arg s1[] = {sql_int(sid)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s1, 1,
               (struct want[]){{"CP_DOC_ID", "i:100000000001"}, {"CP_TKT_NO", "s:WWEB-000001"}}, 2);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_HDR"), 1);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_LIN"), 4);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_PMT"), 1);
    CU_ASSERT_EQUAL(q_count(db, "USER_ORDER_INV"), 4);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 20000);
    CU_ASSERT_EQUAL(counter(db, "DOC_ID"), FIRST_DOC_ID + 1);
    db_close(db);
}

static void t_adopt(void)
{
    struct db *db = fresh_db();
    /* An order document made elsewhere for web order 6101, and a ticket
     * (DOC_TYP 'T') carrying 6102 in REF, which is no order document. */
    CU_ASSERT_EQUAL(db_exec(db, "INSERT INTO PS_DOC_HDR (DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP,"
                                " STR_ID, STA_ID, TKT_NO, REF, STK_LOC_ID) VALUES (777,"
                                " '0b0a3c1e-1111-4222-8333-444455556666', 'O', 'T', 'WEB',"
                                " 'WEB-01', 'LEGACY-000777', '6101', 'MAIN')"),
                    CPB_OK);
    CU_ASSERT_EQUAL(db_exec(db, "INSERT INTO PS_DOC_HDR (DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP,"
                                " STR_ID, STA_ID, TKT_NO, REF) VALUES (778,"
                                " '0b0a3c1e-1111-4222-8333-444455556667', 'T', 'T', 'WEB',"
                                " 'WEB-01', 'LEGACY-000778', '6102')"),
                    CPB_OK);
    struct torder t = full_order(6101);
    int64_t sid = stage_order(db, &t);
    struct torder t2 = full_order(6102);
    int64_t sid2 = stage_order(db, &t2);

    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("", "", ""), NULL), CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    struct sql_arg s1[] = {sql_int(sid)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s1, 1,
               (struct want[]){{"CP_DOC_ID", "i:777"}, {"CP_TKT_NO", "s:LEGACY-000777"}}, 2);
    struct sql_arg d777[] = {sql_int(777)};
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_LIN WHERE DOC_ID = ?", d777, 1), 0);
    expect_row(db, "PS_DOC_HDR", "DOC_ID = ?", d777, 1, (struct want[]){{"IS_DOC_COMMITTED", "n"}},
               1);
    struct sql_arg st1[] = {sql_int(sid)};
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM USER_ORDER_INV WHERE STAGING_ID = ?", st1, 1),
                    0);
    /* Only order 6102 was created and moved stock. */
    expect_outcome(db, sid2, "APPLIED", NULL, NULL);
    struct sql_arg s2[] = {sql_int(sid2)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s2, 1,
               (struct want[]){{"CP_DOC_ID", "i:100000000001"}}, 1);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_HDR"), 3);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 20000);
    CU_ASSERT_EQUAL(counter(db, "DOC_ID"), FIRST_DOC_ID + 1);
    db_close(db);
}

static void t_atomicity(void)
{
    struct db *db = fresh_db();
    add_item_without_inventory(db, "NOINV-1");
    const struct tline lines[] = {{"TSHIRT-BLU-M", "T-Shirt", 2, 1999, 0, 0},
                                  {"HOODIE-M-BLK", "Hoodie", 1, 4900, 0, 0},
                                  {"NOINV-1", "No inventory", 1, 500, 0, 0}};
    struct torder t = {.id = 7001,
                       .email = "jane.doe@example.com",
                       .lines = lines,
                       .nlines = 3,
                       .shipping = 500,
                       .note = "note"};
    int64_t sid = stage_order(db, &t);

    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("", "", ""), NULL), CPB_EXIT_ATTENTION);
    expect_outcome(db, sid, "INVALID", "inventory.missing",
                   "no IM_INV row at location MAIN for line 3 item NOINV-1");
    static const char *const tables[] = {"PS_DOC_HDR",     "PS_DOC_LIN",           "PS_DOC_HDR_TOT",
                                         "PS_DOC_CONTACT", "PS_DOC_HDR_MISC_CHRG", "PS_DOC_PMT",
                                         "PS_DOC_NOTE",    "USER_ORDER_INV"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        check(q_count(db, tables[i]) == 0, "%s has rows after a failed order", tables[i]);
    }
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "HOODIE-M-BLK", "MAIN"), 0);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_HND", "NOINV-1", "MAIN"), NONE);
    CU_ASSERT_EQUAL(counter(db, "DOC_ID"), FIRST_DOC_ID);
    CU_ASSERT_EQUAL(counter(db, "TKT_NO:WEB"), NONE);

    /* Fixed master data, retried: applied with the first numbers. */
    CU_ASSERT_EQUAL(db_exec(db, "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND) VALUES"
                                " ('NOINV-1', 'MAIN', 3)"),
                    CPB_OK);
    make_pending(db, sid);
    CU_ASSERT_EQUAL(run_pipeline(write_pipeline("", "", ""), NULL), CPB_EXIT_OK);
    expect_outcome(db, sid, "APPLIED", NULL, NULL);
    struct sql_arg s1[] = {sql_int(sid)};
    expect_row(db, "USER_ORDER_STAGING", "STAGING_ID = ?", s1, 1,
               (struct want[]){{"CP_DOC_ID", "i:100000000001"}, {"CP_TKT_NO", "s:WWEB-000001"}}, 2);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "NOINV-1", "MAIN"), 10000);
    CU_ASSERT_EQUAL(inv(db, "QTY_ON_SO", "TSHIRT-BLU-M", "MAIN"), 20000);
    db_close(db);
}

/* ---- two runners at once (PostgreSQL) -------------------------------------- */

#define CONCURRENT_ORDERS 200

/* A child process: wait for the start signal, run the pipeline, exit with
 * the run's code. Never returns into CUnit. */
static void runner_child(const char *path, int go_fd)
{
    char c = 0;
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = path};
    struct run_result res;
    int code = 100;
    if (read(go_fd, &c, 1) != 1) {
        _exit(101);
    }
    if (pipeline_open(path, &p, &e) == 0 && pipeline_init(p, &e) == 0) {
        code = runner_run(p, &o, &res, &e);
        fprintf(stderr,
                "test_cp_stages: runner %ld: exit %d, claimed %u, applied %u, retry %u%s%s\n",
                (long)getpid(), code, res.counts.claimed, res.counts.applied, res.counts.retry,
                e.msg[0] != '\0' ? ": " : "", e.msg);
    } else {
        fprintf(stderr, "test_cp_stages: runner %ld: %s\n", (long)getpid(), e.msg);
    }
    pipeline_close(p);
    _exit(code);
}

static void t_two_runners(void)
{
    static const char *const skus[] = {"TSHIRT-BLU-M", "SOCK-CREW-3PK", "MUG-350",
                                       "TOTE-CANVAS",  "EBOOK-BREW",    "BOTTLE-INS-750"};
    static const int64_t prices[] = {1999, 1200, 990, 2400, 450, 2700};
    struct db *db = fresh_db();
    int64_t want_qty[6] = {0, 0, 0, 0, 0, 0};

    for (int i = 0; i < CONCURRENT_ORDERS; i++) {
        int a = i % 6;
        int b = (i / 6 + 1 + a) % 6;
        struct tline l[2] = {{skus[a], "A", 1 + i % 3, prices[a], 0, 0},
                             {skus[b], "B", 1, prices[b], 0, 0}};
        struct torder t = {
            .id = 20000 + i, .email = "jane.doe@example.com", .lines = l, .nlines = 2};
        want_qty[a] += 1 + i % 3;
        want_qty[b] += 1;
        stage_order(db, &t);
    }
    db_close(db);

    /* Two pipeline files (two lock files): two independent runners. */
    const char *paths[2];
    char copy[2][1024];
    for (int k = 0; k < 2; k++) {
        snprintf(copy[k], sizeof copy[k], "%s", write_pipeline("", "", ""));
        paths[k] = copy[k];
    }
    int go[2];
    CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
    fflush(NULL);
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        CU_ASSERT_FATAL(pids[k] >= 0);
        if (pids[k] == 0) {
            close(go[1]);
            runner_child(paths[k], go[0]);
        }
    }
    close(go[0]);
    CU_ASSERT_EQUAL(write(go[1], "gg", 2), 2);
    close(go[1]);
    for (int k = 0; k < 2; k++) {
        int status = 0;
        CU_ASSERT_EQUAL(waitpid(pids[k], &status, 0), pids[k]);
        check(WIFEXITED(status) && WEXITSTATUS(status) == CPB_EXIT_OK,
              "runner %d ended with status %d", k, status);
    }

    struct err e = {0};
    CU_ASSERT_EQUAL_FATAL(db_connect(conn, dialect, 10000, &db, &e), 0);
    int64_t applied =
        q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'", NULL, 0);
    check(applied == CONCURRENT_ORDERS, "%" PRId64 " of %d orders applied", applied,
          CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_HDR"), CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(DISTINCT DOC_ID) FROM PS_DOC_HDR", NULL, 0),
                    CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(DISTINCT TKT_NO) FROM PS_DOC_HDR", NULL, 0),
                    CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(DISTINCT REF) FROM PS_DOC_HDR", NULL, 0),
                    CONCURRENT_ORDERS);
    /* Numbers are dense: no gaps, no repeats. */
    CU_ASSERT_EQUAL(q_int(db, "SELECT MIN(DOC_ID) FROM PS_DOC_HDR", NULL, 0), FIRST_DOC_ID);
    CU_ASSERT_EQUAL(q_int(db, "SELECT MAX(DOC_ID) FROM PS_DOC_HDR", NULL, 0),
                    FIRST_DOC_ID + CONCURRENT_ORDERS - 1);
    char *max_tkt = q_text(db, "SELECT MAX(TKT_NO) FROM PS_DOC_HDR", NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(max_tkt);
    if (max_tkt != NULL) {
        CU_ASSERT_STRING_EQUAL(max_tkt, "WWEB-000200");
    }
    free(max_tkt);
    /* Every staging row points at its own document. */
    CU_ASSERT_EQUAL(q_int(db,
                          "SELECT COUNT(*) FROM USER_ORDER_STAGING s JOIN PS_DOC_HDR h ON"
                          " h.DOC_ID = s.CP_DOC_ID AND h.TKT_NO = s.CP_TKT_NO AND"
                          " h.REF = s.EXT_ORDER_ID",
                          NULL, 0),
                    CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_count(db, "PS_DOC_LIN"), 2 * CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(q_count(db, "USER_ORDER_INV"), 2 * CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(counter(db, "DOC_ID"), FIRST_DOC_ID + CONCURRENT_ORDERS);
    CU_ASSERT_EQUAL(counter(db, "TKT_NO:WEB"), CONCURRENT_ORDERS + 1);
    /* Both runners did part of the work. */
    CU_ASSERT_EQUAL(q_int(db,
                          "SELECT COUNT(DISTINCT RUN_ID) FROM USER_ORDER_EVENT WHERE"
                          " KIND = 'applied'",
                          NULL, 0),
                    2);
    /* Stock moved by exactly the ordered quantities. */
    for (int i = 0; i < 6; i++) {
        const char *item = strcmp(skus[i], "MUG-350") == 0 ? "MUG-CER-350" : skus[i];
        check(inv(db, "QTY_ON_SO", item, "MAIN") == want_qty[i] * 10000,
              "%s QTY_ON_SO %" PRId64 ", want %" PRId64, item, inv(db, "QTY_ON_SO", item, "MAIN"),
              want_qty[i] * 10000);
    }
    db_close(db);
}

/* ---- suites --------------------------------------------------------------- */

static int setup_sqlite(void)
{
    dialect = DB_SQLITE;
    return 0;
}

static int setup_pg(void)
{
    dialect = DB_POSTGRESQL;
    return 0;
}

static int teardown_pg(void)
{
    char sql[128];
    for (unsigned i = 0; i < n_pg_dbs; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_dbs[i]);
        (void)pg_admin(sql);
    }
    n_pg_dbs = 0;
    return 0;
}

static const struct cpbtest_case sqlite_cases[] = {
    {"validation rules", t_validation_rules},
    {"validation options", t_validation_options},
    {"direct calls", t_direct},
    {"document rows", t_document_rows},
    {"store ticket counter and options", t_store_counter},
    {"inventory QTY_ON_SO", t_inventory_on_so},
    {"inventory QTY_COMMIT and create_missing", t_inventory_commit},
    {"idempotency", t_idempotency},
    {"adopt an existing document", t_adopt},
    {"atomicity", t_atomicity},
    {NULL, NULL},
};

static const struct cpbtest_case pg_cases[] = {
    {"validation rules", t_validation_rules},
    {"validation options", t_validation_options},
    {"direct calls", t_direct},
    {"document rows", t_document_rows},
    {"store ticket counter and options", t_store_counter},
    {"inventory QTY_ON_SO", t_inventory_on_so},
    {"inventory QTY_COMMIT and create_missing", t_inventory_commit},
    {"idempotency", t_idempotency},
    {"adopt an existing document", t_adopt},
    {"atomicity", t_atomicity},
    {"two runners at once", t_two_runners},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, NULL, sqlite_cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown_pg, pg_cases};

int main(int argc, char **argv)
{
    static const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
