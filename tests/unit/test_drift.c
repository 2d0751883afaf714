/*
 * test_drift.c — `cpbridge drift` on SQLite and on PostgreSQL, through the
 * command's own entry (ops_main) against a database the real engine filled:
 * 1,000 orders applied by source-file, validate, create-order and
 * update-qty show no drift; then drift is seeded in each of the three ways
 * it can happen (a document deleted in Counterpoint without releasing its
 * quantity, a document line edited, a committed column lowered from
 * outside), found, fixed to the exact values with one audit row each, and a
 * second check is clean. `health` reports the last check.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ops.h"
#include "cpbtest.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/staging.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

#define N_ORDERS 1000

static enum db_dialect dialect;
static char conn[2048];
static const char *pipeline_path;

static struct db *connect_db(void)
{
    return cpbtest_connect(conn, dialect);
}

static int64_t q_dec(struct db *db, const char *sql, const char *a1, const char *a2)
{
    struct cpb_stmt *st = NULL;
    int64_t v = -1;
    bool null = false;
    struct sql_arg a[] = {sql_text(a1), sql_text(a2)};
    size_t n = a2 != NULL ? 2 : a1 != NULL ? 1 : 0;
    if (sql_query(db, sql, a, n, &st) != CPB_OK || db_fetch(st) != CPB_OK ||
        db_col_decimal(st, 1, &v, &null) != CPB_OK) {
        fprintf(stderr, "query '%s': %s\n", sql, db_last_error(db));
        v = -1;
    }
    db_finalize(st);
    return null ? 0 : v;
}

static int64_t on_so(struct db *db, const char *item)
{
    return q_dec(db, "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = 'MAIN'", item,
                 NULL);
}

static int drift(const char *a1, const char *a2, const char *a3)
{
    char *argv[6] = {"drift", (char *)pipeline_path, (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 2 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    return ops_main("drift", argc, argv);
}

/* The last check as health reads it: "left" (-1 when none). */
static int64_t last_left(struct db *db)
{
    char *text = NULL;
    int64_t left = -1;
    CU_ASSERT_EQUAL(staging_state_get(db, "drift/drift-test", &text), CPB_OK);
    json_t *j = text != NULL ? json_loads(text, 0, NULL) : NULL;
    if (j != NULL) {
        left = json_integer_value(json_object_get(j, "left"));
    }
    json_decref(j);
    free(text);
    return left;
}

/* N_ORDERS copies of a four-line sample order, in one array file. */
static const char *write_orders(void)
{
    json_error_t jerr;
    json_t *tmpl = json_load_file(cpbtest_src("pipelines/samples/2001-multi-line.json"), 0, &jerr);
    json_t *all = json_array();
    CU_ASSERT_PTR_NOT_NULL_FATAL(tmpl);
    for (int i = 0; i < N_ORDERS; i++) {
        json_t *o = json_deep_copy(tmpl);
        char number[16];
        snprintf(number, sizeof number, "%d", 70000 + i);
        json_object_set_new(o, "id", json_integer(70000 + i));
        json_object_set_new(o, "number", json_string(number));
        json_array_append_new(all, o);
    }
    const char *path = cpbtest_path("orders.json");
    CU_ASSERT_EQUAL_FATAL(json_dump_file(all, path, JSON_COMPACT), 0);
    json_decref(all);
    json_decref(tmpl);
    return path;
}

static int setup(enum db_dialect d)
{
    char text[4096];
    dialect = d;
    if (cpbtest_db_fresh(dialect, "drift", conn, sizeof conn) != 0) {
        return -1;
    }
    snprintf(text, sizeof text,
             "name = \"drift-test\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = 100; };\n"
             "stages = (\n"
             "  { stage = \"source-file\"; id = \"files\"; options = { path = \"%s\"; }; },\n"
             "  { stage = \"validate\"; options = { allow_walk_in = true;"
             " price_check = \"warn\"; }; },\n"
             "  { stage = \"create-order\"; },\n"
             "  { stage = \"update-qty\"; }\n"
             ");\n",
             d == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_path("drift.lock"),
             cpbtest_path("orders.json"));
    pipeline_path = cpbtest_path("drift.cfg");
    return cpbtest_write(pipeline_path, text);
}

static int setup_sqlite(void)
{
    return setup(DB_SQLITE);
}

static int setup_pg(void)
{
    return setup(DB_POSTGRESQL);
}

static int teardown(void)
{
    cpbtest_db_drop();
    log_reset();
    return 0;
}

static void test_no_drift(void)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = pipeline_path};
    struct run_result res;
    write_orders();
    CU_ASSERT_EQUAL_FATAL(pipeline_open(pipeline_path, &p, &e), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_init(p, &e), 0);
    int code = runner_run(p, &o, &res, &e);
    pipeline_close(p);
    CU_ASSERT(code == CPB_EXIT_OK || code == CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.applied, N_ORDERS);
    CU_ASSERT_EQUAL(drift(NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(drift("--nagios", NULL, NULL), 0);
    struct db *db = connect_db();
    CU_ASSERT_EQUAL(last_left(db), 0);
    db_close(db);
}

static void test_seeded_drift(void)
{
    struct db *db = connect_db();
    /* Three orders' documents, and the quantities before the seeding. */
    int64_t doc_gone = cpbtest_q_int(
        db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "70001");
    int64_t doc_edit = cpbtest_q_int(
        db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "70002");
    CU_ASSERT_FATAL(doc_gone > 0 && doc_edit > 0);
    int64_t tshirt = on_so(db, "TSHIRT-BLU-M");
    int64_t jeans = on_so(db, "JEANS-SLIM-3232");
    int64_t socks = on_so(db, "SOCK-CREW-3PK");
    /* What the order of doc_gone committed for the T-shirt. */
    int64_t tshirt_one = q_dec(db,
                               "SELECT SUM(I.QTY) FROM USER_ORDER_INV I JOIN USER_ORDER_STAGING S"
                               " ON S.STAGING_ID = I.STAGING_ID WHERE S.EXT_ORDER_ID = ?"
                               " AND I.ITEM_NO = ?",
                               "70001", "TSHIRT-BLU-M");
    CU_ASSERT_FATAL(tshirt > 0 && tshirt_one > 0);
    CU_ASSERT_EQUAL(tshirt, (int64_t)N_ORDERS * tshirt_one);

    /* 1: deleted in Counterpoint without releasing its quantities. */
    static const char *const tables[] = {
        "PS_DOC_NOTE",    "PS_DOC_PMT", "PS_DOC_CONTACT", "PS_DOC_HDR_MISC_CHRG",
        "PS_DOC_HDR_TOT", "PS_DOC_LIN", "PS_DOC_HDR"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[100];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE DOC_ID = ?", tables[i]);
        CU_ASSERT_EQUAL(sql_exec(db, sql, (struct sql_arg[]){sql_int(doc_gone)}, 1, NULL), CPB_OK);
    }
    /* 2: a line edited in Counterpoint: one more pair of jeans. */
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE PS_DOC_LIN SET QTY_SOLD = QTY_SOLD + 1 WHERE DOC_ID = ?"
                             " AND ITEM_NO = 'JEANS-SLIM-3232'",
                             (struct sql_arg[]){sql_int(doc_edit)}, 1, NULL),
                    CPB_OK);
    /* 3: the committed column lowered from outside. */
    CU_ASSERT_EQUAL(db_exec(db, "UPDATE IM_INV SET QTY_ON_SO = 5 WHERE ITEM_NO = 'SOCK-CREW-3PK'"
                                " AND LOC_ID = 'MAIN'"),
                    CPB_OK);

    /* Found: the view changes nothing and exits 1. */
    CU_ASSERT_EQUAL(drift(NULL, NULL, NULL), 1);
    CU_ASSERT_EQUAL(drift("--json", NULL, NULL), 1);
    CU_ASSERT_EQUAL(drift("--nagios", NULL, NULL), 1);
    CU_ASSERT_EQUAL(last_left(db), 6); /* doc_gone's four items, the jeans, the socks */
    CU_ASSERT_EQUAL(on_so(db, "TSHIRT-BLU-M"), tshirt);
    CU_ASSERT_EQUAL(on_so(db, "SOCK-CREW-3PK"), 50000);
    /* --fix wants a reason. */
    CU_ASSERT_EQUAL(drift("--fix", NULL, NULL), 64);

    /* Fixed to the exact values, one audit row per change. */
    CU_ASSERT_EQUAL(drift("--fix", "--why", "seeded drift"), 0);
    CU_ASSERT_EQUAL(on_so(db, "TSHIRT-BLU-M"), tshirt - tshirt_one);
    CU_ASSERT_EQUAL(on_so(db, "JEANS-SLIM-3232"),
                    jeans - jeans / N_ORDERS /* doc_gone's */ + 10000 /* the edit */);
    CU_ASSERT_EQUAL(on_so(db, "SOCK-CREW-3PK"), socks - socks / N_ORDERS);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'drift.fix'"
                                  " AND MESSAGE LIKE ?",
                                  "seeded drift: %"),
                    6);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'drift.fix'"
                                  " AND CODE = ?",
                                  "drift.column_low"),
                    1);
    /* The record follows the document: a rollback now gives back 2 pairs. */
    CU_ASSERT_EQUAL(q_dec(db,
                          "SELECT SUM(I.QTY) FROM USER_ORDER_INV I JOIN USER_ORDER_STAGING S"
                          " ON S.STAGING_ID = I.STAGING_ID WHERE S.EXT_ORDER_ID = ?"
                          " AND I.ITEM_NO = ?",
                          "70002", "JEANS-SLIM-3232"),
                    jeans / N_ORDERS + 10000);
    CU_ASSERT_EQUAL(last_left(db), 0);

    /* A second check is clean. */
    CU_ASSERT_EQUAL(drift(NULL, NULL, NULL), 0);
    db_close(db);
}

static const struct cpbtest_case cases[] = {
    {"1,000 applied orders: no drift", test_no_drift},
    {"drift seeded three ways: found, fixed exactly, then clean", test_seeded_drift},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
