/*
 * load_quick.c — the "load_quick" test (CTest label "load"): the load
 * generator, and 200 generated orders end to end through the real cpbridge
 * binary and stages (source-file, validate, create-order, update-qty) on
 * real SQLite (its ODBC driver) and real PostgreSQL (CPB_TEST_PG). It
 * asserts correctness invariants only, never time (the figures come from
 * tests/load/bench.sh):
 *  - the generator is reproducible (the same seed gives byte-identical
 *    orders, manifest and floor input; another seed does not), its orders
 *    add up (woo_standin.py --check-fixtures), and it holds the invalid
 *    share, in all three kinds;
 *  - every valid order is applied exactly once: one APPLIED staging row,
 *    one PS_DOC_HDR with its number in REF and the expected customer, its
 *    lines; a second run over the same files applies nothing more;
 *  - IM_INV.QTY_ON_SO rose, per item, by exactly the sum of the applied
 *    lines' quantities (and not at all for the invalid orders' items);
 *  - every invalid order is held INVALID, with no document;
 *  - the floor program (the benchmark's lower bound) writes the same
 *    documents and the same inventory change, so the ratio compares equal
 *    work.
 * On PostgreSQL each check gets its own database (CREATE DATABASE on the
 * CPB_TEST_PG server), dropped when the suite ends.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpbtest.h"
#include "services/db.h"
#include "services/sql.h"

#define N_ORDERS   200
#define N_INVALID  10 /* 5 % of 200 */
#define SEED       20240304
#define MAX_ITEMS  128
#define MAX_PG_DBS 8
#define NONE       INT64_MIN

/* What the manifest says. */
struct expected {
    char number[32];
    char kind[16];
    char cust[16];
    unsigned nlines;
};

struct item_qty {
    char item[24];
    int64_t qty; /* ten-thousandths */
};

static struct expected orders[N_ORDERS];
static unsigned n_orders;
static unsigned n_valid;
static unsigned n_valid_lines;
static struct item_qty deltas[MAX_ITEMS];
static unsigned n_deltas;
static bool generated;
static char pg_dbs[MAX_PG_DBS][48];
static unsigned n_pg_dbs;

/* ---- reporting ------------------------------------------------------------- */

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
        fprintf(stderr, "load_quick: %s\n", msg);
    }
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, __LINE__, msg, __FILE__, "", CU_FALSE);
}

/* ---- the generator ------------------------------------------------------------ */

static int gen(const char *out, unsigned seed, double share, const char *manifest,
               const char *floor)
{
    return cpbtest_sh("/usr/bin/python3 '%s' --count %d --lines 1 --lines-max 5 --seed %u"
                      " --invalid-share %.2f --out '%s' --manifest '%s' --floor '%s'",
                      cpbtest_src("tests/load/gen_orders.py"), N_ORDERS, seed, share, out, manifest,
                      floor);
}

static struct item_qty *delta_slot(const char *item)
{
    for (unsigned i = 0; i < n_deltas; i++) {
        if (strcmp(deltas[i].item, item) == 0) {
            return &deltas[i];
        }
    }
    if (n_deltas == MAX_ITEMS) {
        return NULL;
    }
    struct item_qty *d = &deltas[n_deltas++];
    snprintf(d->item, sizeof d->item, "%s", item);
    d->qty = 0;
    return d;
}

/* Read the manifest into orders[] and deltas[]. */
static int read_manifest(const char *path)
{
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    json_t *list = json_object_get(m, "orders");
    size_t i;
    json_t *o;
    int rc = -1;

    if (!json_is_array(list) || json_array_size(list) != N_ORDERS) {
        fprintf(stderr, "load_quick: %s: no list of %d orders (%s)\n", path, N_ORDERS,
                m == NULL ? jerr.text : "wrong shape");
        goto out;
    }
    json_array_foreach(list, i, o)
    {
        struct expected *e = &orders[i];
        const char *number = json_string_value(json_object_get(o, "number"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *cust = json_string_value(json_object_get(o, "cust_no"));
        json_t *lines = json_object_get(o, "lines");
        if (number == NULL || kind == NULL || cust == NULL || !json_is_array(lines)) {
            fprintf(stderr, "load_quick: manifest order %zu is incomplete\n", i);
            goto out;
        }
        snprintf(e->number, sizeof e->number, "%s", number);
        snprintf(e->kind, sizeof e->kind, "%s", kind);
        snprintf(e->cust, sizeof e->cust, "%s", cust);
        e->nlines = (unsigned)json_array_size(lines);
        if (strcmp(kind, "valid") != 0) {
            continue;
        }
        n_valid++;
        n_valid_lines += e->nlines;
        size_t k;
        json_t *line;
        json_array_foreach(lines, k, line)
        {
            const char *item = json_string_value(json_array_get(line, 0));
            json_t *qty = json_array_get(line, 1);
            struct item_qty *d = item != NULL ? delta_slot(item) : NULL;
            if (d == NULL || !json_is_integer(qty)) {
                fprintf(stderr, "load_quick: manifest order %s line %zu is unusable\n", number,
                        k + 1);
                goto out;
            }
            d->qty += (int64_t)json_integer_value(qty) * 10000;
        }
    }
    n_orders = N_ORDERS;
    rc = 0;
out:
    json_decref(m);
    return rc;
}

/* Generate the orders once (directory "orders"), with the manifest. */
static void ensure_generated(void)
{
    if (generated) {
        return;
    }
    CU_ASSERT_EQUAL_FATAL(gen(cpbtest_path("orders"), SEED, 0.05, cpbtest_path("manifest.json"),
                              cpbtest_path("floor.tsv")),
                          0);
    CU_ASSERT_EQUAL_FATAL(read_manifest(cpbtest_path("manifest.json")), 0);
    generated = true;
}

static void test_reproducible(void)
{
    ensure_generated();
    CU_ASSERT_EQUAL_FATAL(gen(cpbtest_path("again"), SEED, 0.05, cpbtest_path("manifest2.json"),
                              cpbtest_path("floor2.tsv")),
                          0);
    check(cpbtest_sh("diff -r '%s' '%s' >/dev/null", cpbtest_path("orders"),
                     cpbtest_path("again")) == 0,
          "the same seed wrote different order files");
    check(cpbtest_sh("cmp -s '%s' '%s'", cpbtest_path("manifest.json"),
                     cpbtest_path("manifest2.json")) == 0,
          "the same seed wrote a different manifest");
    check(cpbtest_sh("cmp -s '%s' '%s'", cpbtest_path("floor.tsv"), cpbtest_path("floor2.tsv")) ==
              0,
          "the same seed wrote a different floor input");
    CU_ASSERT_EQUAL_FATAL(gen(cpbtest_path("other"), SEED + 1, 0.05, cpbtest_path("manifest3.json"),
                              cpbtest_path("floor3.tsv")),
                          0);
    check(cpbtest_sh("diff -r '%s' '%s' >/dev/null", cpbtest_path("orders"),
                     cpbtest_path("other")) == 1,
          "another seed wrote the same order files");
    check(cpbtest_sh("ls '%s' | wc -l | grep -qx %d", cpbtest_path("orders"), N_ORDERS) == 0,
          "expected %d order files", N_ORDERS);
}

static void test_money_adds_up(void)
{
    ensure_generated();
    const char *standin = cpbtest_src("tests/servers/woo_standin.py");
    /* With no invalid share every order must pass the stand-in's check of
     * WooCommerce's arithmetic ... */
    CU_ASSERT_EQUAL_FATAL(gen(cpbtest_path("valid"), SEED, 0.0, cpbtest_path("manifest4.json"),
                              cpbtest_path("floor4.tsv")),
                          0);
    check(cpbtest_sh("/usr/bin/python3 '%s' --check-fixtures '%s' >/dev/null", standin,
                     cpbtest_path("valid")) == 0,
          "generated orders do not add up (woo_standin.py --check-fixtures)");
    /* ... and the bad totals and zero quantities of the invalid ones must
     * be caught by it (so the check above can fail). */
    check(cpbtest_sh("/usr/bin/python3 '%s' --check-fixtures '%s' >/dev/null", standin,
                     cpbtest_path("orders")) == 1,
          "the invalid orders pass woo_standin.py --check-fixtures");
}

static void test_invalid_share(void)
{
    ensure_generated();
    unsigned unknown = 0;
    unsigned total = 0;
    unsigned zero = 0;
    for (unsigned i = 0; i < n_orders; i++) {
        unknown += strcmp(orders[i].kind, "unknown_sku") == 0;
        total += strcmp(orders[i].kind, "bad_total") == 0;
        zero += strcmp(orders[i].kind, "zero_qty") == 0;
    }
    check(n_orders - n_valid == N_INVALID, "%u invalid orders, expected %d", n_orders - n_valid,
          N_INVALID);
    check(unknown + total + zero == N_INVALID, "unknown kinds of invalid orders");
    check(unknown >= 3 && total >= 3 && zero >= 3,
          "every kind of invalid order appears (unknown_sku %u, bad_total %u, zero_qty %u)",
          unknown, total, zero);
    check(n_deltas >= 20, "the orders use %u items, expected at least 20", n_deltas);
}

/* ---- databases ------------------------------------------------------------------- */

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
        fprintf(stderr, "load_quick: %s\n", e.msg);
        return -1;
    }
    int rc = db_exec(db, sql) == CPB_OK ? 0 : -1;
    if (rc != 0) {
        fprintf(stderr, "load_quick: %s: %s\n", sql, db_last_error(db));
    }
    db_close(db);
    return rc;
}

/* A new empty database: a SQLite file name or a PostgreSQL database. */
static int new_database(enum db_dialect d, const char *label, char *conn, size_t n)
{
    if (d == DB_SQLITE) {
        int w = snprintf(conn, n,
                         "Driver=SQLite3;Database=%s/%s.db;Timeout=2000;JournalMode=WAL;"
                         "FKSupport=1",
                         cpbtest_tmpdir(), label);
        return (w < 0 || (size_t)w >= n) ? -1 : 0;
    }
    const char *base = cpbtest_pg_conn();
    char sql[128];
    if (base == NULL || n_pg_dbs == MAX_PG_DBS) {
        return -1;
    }
    char *name = pg_dbs[n_pg_dbs];
    snprintf(name, sizeof pg_dbs[0], "load_%s_%ld", label, (long)getpid());
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (pg_admin(sql) != 0) {
        return -1;
    }
    n_pg_dbs++;
    return pg_conn_for(base, name, conn, n);
}

static int drop_pg_databases(void)
{
    int rc = 0;
    char sql[128];
    for (unsigned i = 0; i < n_pg_dbs; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", pg_dbs[i]);
        if (pg_admin(sql) != 0) {
            rc = -1;
        }
    }
    n_pg_dbs = 0;
    return rc;
}

/* Write the pipeline file `path` over the generated orders. */
static int write_pipeline(const char *path, enum db_dialect d, const char *conn, const char *label)
{
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "name = \"load-quick-%s\";\n"
                     "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
                     "run = { batch = 50; lease = \"2m\"; lock_file = \"%s/%s.lock\"; };\n"
                     "log = { level = \"warn\"; };\n"
                     "stages = (\n"
                     "  { stage = \"source-file\"; id = \"samples\";"
                     " options = { path = \"%s\"; }; },\n"
                     "  { stage = \"validate\"; options = { store = \"WEB\";"
                     " allow_walk_in = true; price_check = \"warn\"; }; },\n"
                     "  { stage = \"create-order\"; options = { store = \"WEB\";"
                     " station = \"WEB-01\"; pay_code = \"EC_WOOCOMM\"; }; },\n"
                     "  { stage = \"update-qty\"; options = { column = \"QTY_ON_SO\"; }; }\n"
                     ");\n",
                     label, d == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_tmpdir(), label,
                     cpbtest_path("orders"));
    if (n < 0 || (size_t)n >= sizeof text) {
        return -1;
    }
    return cpbtest_write(path, text);
}

static struct db *open_db(enum db_dialect d, const char *conn)
{
    struct db *db = NULL;
    struct err e = {0};
    if (db_connect(conn, d, 10000, &db, &e) != 0) {
        fprintf(stderr, "load_quick: %s\n", e.msg);
        return NULL;
    }
    return db;
}

static int64_t q_int(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    int64_t v = 0;
    bool null = false;
    if (sql_query_int(db, sql, a, n, &v, &null) != CPB_OK || null) {
        return NONE;
    }
    return v;
}

/* QTY_ON_SO at MAIN per item of deltas[] into out[] (ten-thousandths). */
static int read_inventory(struct db *db, int64_t *out)
{
    for (unsigned i = 0; i < n_deltas; i++) {
        struct cpb_stmt *st = NULL;
        bool null = false;
        out[i] = NONE;
        struct sql_arg a[] = {sql_text(deltas[i].item)};
        enum cpb_status rc =
            sql_query(db, "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = 'MAIN'", a,
                      SQL_NARGS(a), &st);
        if (rc == CPB_OK) {
            rc = db_fetch(st);
        }
        if (rc == CPB_OK) {
            rc = db_col_decimal(st, 1, &out[i], &null);
        }
        db_finalize(st);
        if (rc != CPB_OK || null) {
            fprintf(stderr, "load_quick: no IM_INV row at MAIN for %s\n", deltas[i].item);
            return -1;
        }
    }
    return 0;
}

/* The QTY_ON_SO change per item equals the manifest's applied quantities. */
static void check_inventory(struct db *db, const int64_t *before, const char *who)
{
    int64_t after[MAX_ITEMS];
    int64_t sum = 0;
    int64_t want = 0;
    CU_ASSERT_EQUAL_FATAL(read_inventory(db, after), 0);
    for (unsigned i = 0; i < n_deltas; i++) {
        int64_t got = after[i] - before[i];
        sum += got;
        want += deltas[i].qty;
        check(got == deltas[i].qty,
              "%s: IM_INV.QTY_ON_SO of %s rose by %" PRId64 ", expected %" PRId64 " (/10000)", who,
              deltas[i].item, got, deltas[i].qty);
    }
    check(sum == want && want > 0, "%s: IM_INV rose by %" PRId64 " in all, expected %" PRId64, who,
          sum, want);
}

/* Every valid order has exactly one document with the expected customer;
 * no invalid order has one. */
static void check_documents(struct db *db, const char *who)
{
    check(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL, 0) == n_valid,
          "%s: PS_DOC_HDR has %" PRId64 " rows, expected %u", who,
          q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL, 0), n_valid);
    check(q_int(db, "SELECT COUNT(*) FROM PS_DOC_LIN", NULL, 0) == n_valid_lines,
          "%s: PS_DOC_LIN has %" PRId64 " rows, expected %u", who,
          q_int(db, "SELECT COUNT(*) FROM PS_DOC_LIN", NULL, 0), n_valid_lines);
    unsigned bad = 0;
    for (unsigned i = 0; i < n_orders && bad < 5; i++) {
        const struct expected *e = &orders[i];
        bool valid = strcmp(e->kind, "valid") == 0;
        struct sql_arg a[] = {sql_text(e->number)};
        int64_t docs = q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE REF = ?", a, 1);
        if (docs != (valid ? 1 : 0)) {
            check(false, "%s: order %s (%s) has %" PRId64 " documents", who, e->number, e->kind,
                  docs);
            bad++;
            continue;
        }
        if (!valid) {
            continue;
        }
        struct sql_arg c[] = {sql_text(e->number), sql_text(e->cust)};
        if (q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE REF = ? AND CUST_NO = ?", c, 2) != 1) {
            check(false, "%s: order %s is not booked on customer %s", who, e->number, e->cust);
            bad++;
        }
    }
    check(bad == 0, "%s: %u orders with wrong documents", who, bad);
}

/* Every order's staging row: APPLIED with a document when valid, INVALID
 * otherwise; exactly one row per order. */
static void check_staging(struct db *db, const char *who)
{
    unsigned bad = 0;
    check(q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL, 0) == n_orders,
          "%s: %" PRId64 " staging rows, expected %u", who,
          q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL, 0), n_orders);
    check(q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'", NULL, 0) ==
              n_valid,
          "%s: APPLIED count differs from the %u valid orders", who, n_valid);
    check(q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'INVALID'", NULL, 0) ==
              n_orders - n_valid,
          "%s: INVALID count differs from the %u invalid orders", who, n_orders - n_valid);
    for (unsigned i = 0; i < n_orders && bad < 5; i++) {
        const struct expected *e = &orders[i];
        bool valid = strcmp(e->kind, "valid") == 0;
        struct sql_arg a[] = {sql_text(e->number), sql_text(valid ? "APPLIED" : "INVALID")};
        int64_t n = q_int(db,
                          "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE SOURCE = 'samples'"
                          " AND EXT_ORDER_ID = ? AND STATUS = ?"
                          " AND (STATUS <> 'APPLIED' OR CP_DOC_ID IS NOT NULL)",
                          a, 2);
        if (n != 1) {
            check(false, "%s: order %s (%s) is not %s exactly once", who, e->number, e->kind,
                  valid ? "APPLIED" : "INVALID");
            bad++;
        }
    }
}

/* Run the pipeline; the --json summary's counts into *staged, *applied,
 * *invalid. Returns the exit status. */
static int run_pipeline(const char *cfg, const char *label, int64_t *staged, int64_t *applied,
                        int64_t *invalid)
{
    char out[600];
    char errlog[700];
    json_error_t jerr;
    snprintf(out, sizeof out, "%s", cpbtest_path(label));
    snprintf(errlog, sizeof errlog, "%s.log", out);
    int code = cpbtest_sh("'%s' run '%s' --json > '%s' 2> '%s'", cpbtest_build("core/cpbridge"),
                          cfg, out, errlog);
    json_t *s = json_load_file(out, 0, &jerr);
    json_t *c = json_object_get(s, "counts");
    *staged = json_integer_value(json_object_get(c, "staged"));
    *applied = json_integer_value(json_object_get(c, "applied"));
    *invalid = json_integer_value(json_object_get(c, "invalid"));
    if (c == NULL) {
        fprintf(stderr, "load_quick: no summary from the run (exit %d); see %s\n", code, errlog);
        *staged = *applied = *invalid = NONE;
    }
    json_decref(s);
    return code;
}

static void end_to_end(enum db_dialect d, const char *label)
{
    char conn[1200];
    char cfg[600];
    int64_t before[MAX_ITEMS];
    int64_t staged = 0;
    int64_t applied = 0;
    int64_t invalid = 0;
    char name[64];

    ensure_generated();
    CU_ASSERT_EQUAL_FATAL(new_database(d, label, conn, sizeof conn), 0);
    snprintf(name, sizeof name, "%s.cfg", label);
    snprintf(cfg, sizeof cfg, "%s", cpbtest_path(name));
    CU_ASSERT_EQUAL_FATAL(write_pipeline(cfg, d, conn, label), 0);
    CU_ASSERT_EQUAL_FATAL(
        cpbtest_sh("'%s' db init '%s' --demo >/dev/null", cpbtest_build("core/cpbridge"), cfg), 0);
    struct db *db = open_db(d, conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    CU_ASSERT_EQUAL_FATAL(read_inventory(db, before), 0);
    db_close(db);

    /* Exit 1: done, and some orders are held for review. */
    int code = run_pipeline(cfg, "run1", &staged, &applied, &invalid);
    check(code == 1, "%s: the first run exited %d, expected 1 (orders held)", label, code);
    check(staged == N_ORDERS, "%s: staged %" PRId64 ", expected %d", label, staged, N_ORDERS);
    check(applied == n_valid, "%s: applied %" PRId64 ", expected %u", label, applied, n_valid);
    check(invalid == N_INVALID, "%s: invalid %" PRId64 ", expected %d", label, invalid, N_INVALID);

    db = open_db(d, conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    check_staging(db, label);
    check_documents(db, label);
    check_inventory(db, before, label);
    db_close(db);

    /* The same files again: nothing is staged or applied a second time. */
    code = run_pipeline(cfg, "run2", &staged, &applied, &invalid);
    check(code == 0 || code == 1, "%s: the second run exited %d", label, code);
    check(staged == 0 && applied == 0, "%s: the second run staged %" PRId64 " and applied %" PRId64,
          label, staged, applied);
    db = open_db(d, conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    check_staging(db, label);
    check_documents(db, label);
    check_inventory(db, before, label);
    db_close(db);
}

static void floor_check(enum db_dialect d, const char *label)
{
    char conn[1200];
    char cfg[600];
    char name[64];
    int64_t before[MAX_ITEMS];

    ensure_generated();
    CU_ASSERT_EQUAL_FATAL(new_database(d, label, conn, sizeof conn), 0);
    snprintf(name, sizeof name, "%s.cfg", label);
    snprintf(cfg, sizeof cfg, "%s", cpbtest_path(name));
    CU_ASSERT_EQUAL_FATAL(write_pipeline(cfg, d, conn, label), 0);
    CU_ASSERT_EQUAL_FATAL(
        cpbtest_sh("'%s' db init '%s' --demo >/dev/null", cpbtest_build("core/cpbridge"), cfg), 0);
    struct db *db = open_db(d, conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    CU_ASSERT_EQUAL_FATAL(read_inventory(db, before), 0);
    db_close(db);
    check(cpbtest_sh("'%s' --conn '%s' --in '%s' > '%s'", cpbtest_build("tests/load/floor"), conn,
                     cpbtest_path("floor.tsv"), cpbtest_path("floor.out")) == 0,
          "%s: the floor program failed", label);
    db = open_db(d, conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    check_staging(db, label);
    check(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL, 0) == n_valid,
          "%s: the floor wrote another number of documents", label);
    check(q_int(db, "SELECT COUNT(*) FROM PS_DOC_LIN", NULL, 0) == n_valid_lines,
          "%s: the floor wrote another number of document lines", label);
    check_inventory(db, before, label);
    db_close(db);

    /* Untrusted input: a damaged floor file is refused with a message. */
    CU_ASSERT_EQUAL_FATAL(
        cpbtest_write(cpbtest_path("bad.tsv"), "# cpbridge load floor v1\nO\t1\tAPPLIED\tx\n"), 0);
    check(cpbtest_sh("'%s' --conn '%s' --in '%s' >/dev/null 2>&1",
                     cpbtest_build("tests/load/floor"), conn, cpbtest_path("bad.tsv")) == 1,
          "%s: the floor program accepted a damaged input", label);
}

static void test_sqlite_end_to_end(void)
{
    end_to_end(DB_SQLITE, "sqlite");
}

static void test_sqlite_floor(void)
{
    floor_check(DB_SQLITE, "sqlite_floor");
}

static void test_pg_end_to_end(void)
{
    end_to_end(DB_POSTGRESQL, "pg");
}

static void test_pg_floor(void)
{
    floor_check(DB_POSTGRESQL, "pg_floor");
}

static int pg_teardown(void)
{
    return drop_pg_databases() == 0 ? 0 : 1;
}

static const struct cpbtest_case generator_cases[] = {
    {"reproducible", test_reproducible},
    {"money_adds_up", test_money_adds_up},
    {"invalid_share", test_invalid_share},
    {NULL, NULL},
};
static const struct cpbtest_case sqlite_cases[] = {
    {"end_to_end", test_sqlite_end_to_end},
    {"floor", test_sqlite_floor},
    {NULL, NULL},
};
static const struct cpbtest_case pg_cases[] = {
    {"end_to_end", test_pg_end_to_end},
    {"floor", test_pg_floor},
    {NULL, NULL},
};
static const struct cpbtest_suite generator_suite = {"generator", NULL, NULL, generator_cases};
static const struct cpbtest_suite sqlite_suite = {"sqlite", NULL, NULL, sqlite_cases};
static const struct cpbtest_suite pg_suite = {"postgresql", NULL, pg_teardown, pg_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&generator_suite, &sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
