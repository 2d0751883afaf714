/*
 * test_woo_e2e.c — end to end through the real engine, on SQLite and on
 * PostgreSQL: the WooCommerce stand-in (tests/servers/woo_standin.py, OAuth
 * over http) -> source-woo -> staging -> validate, create-order, update-qty
 * (Counterpoint tables of the demo database) -> sync-status writes the
 * status and a note back to the stand-in. Then: a second run changes
 * nothing, an applied order that changes later in the store is flagged
 * (CHANGED_AFTER_APPLY = 1) and not created again, and an order that comes
 * again unchanged is staged once.
 *
 * Each suite uses a fresh database: a new SQLite file, or a new schema in
 * the PostgreSQL of CPB_TEST_PG (search_path set at connect), dropped after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "services/db.h"
#include "services/http.h"
#include "services/log.h"
#include "services/sql.h"

static struct cpbserver srv;
static struct http_client *cli;
static enum db_dialect dialect;
static char conn[2048];

/* ---- the stand-in ------------------------------------------------------------ */

static json_t *ctl(const char *method, const char *path, const char *body)
{
    char *url = cpbserver_url(&srv, path);
    const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct cpb_http_request r;
    struct cpb_http_response resp;
    json_error_t jerr;
    json_t *doc = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(url);
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.method = method;
    r.url = url;
    r.headers = hdrs;
    r.body = body;
    r.body_len = body != NULL ? strlen(body) : 0;
    r.timeout_ms = 10000;
    enum cpb_status st = http_perform(cli, &r, &resp);
    CU_ASSERT_EQUAL(st, CPB_OK);
    if (st == CPB_OK) {
        doc = json_loadb(resp.body, resp.body_len, 0, &jerr);
    }
    http_response_free(&resp);
    free(url);
    return doc;
}

static void ctl_do(const char *method, const char *path, const char *body)
{
    json_t *doc = ctl(method, path, body);
    CU_ASSERT_PTR_NOT_NULL(doc);
    json_decref(doc);
}

static size_t count_requests(const char *method)
{
    json_t *all = ctl("GET", "/_requests", NULL);
    size_t n = 0;
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        const char *m = json_string_value(json_object_get(r, "method"));
        const char *p = json_string_value(json_object_get(r, "path"));
        if (m != NULL && p != NULL && strcmp(m, method) == 0 && strncmp(p, "/wp-json/", 9) == 0) {
            n++;
        }
    }
    json_decref(all);
    return n;
}

/* The stored order (new reference, with "notes"). */
static json_t *store_order(const char *id)
{
    char path[64];
    snprintf(path, sizeof path, "/_orders/%s", id);
    return ctl("GET", path, NULL);
}

/* ---- the database ----------------------------------------------------------- */

static struct db *connect_db(void)
{
    struct db *db = NULL;
    struct err e = {0};
    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "connect: %s\n", e.msg);
        CU_FAIL_FATAL("cannot connect");
    }
    return db;
}

static int64_t q_int(struct db *db, const char *sql, const char *arg)
{
    int64_t v = -1;
    bool is_null = false;
    struct sql_arg a[] = {sql_text(arg)};
    enum cpb_status rc = sql_query_int(db, sql, a, arg != NULL ? 1 : 0, &v, &is_null);
    if (rc != CPB_OK) {
        fprintf(stderr, "query '%s': %s\n", sql, db_last_error(db));
        return -1;
    }
    return is_null ? 0 : v;
}

static int64_t q_decimal(struct db *db, const char *sql)
{
    struct cpb_stmt *st = NULL;
    int64_t v = -1;
    bool is_null = false;
    if (sql_query(db, sql, NULL, 0, &st) != CPB_OK || db_fetch(st) != CPB_OK ||
        db_col_decimal(st, 1, &v, &is_null) != CPB_OK) {
        fprintf(stderr, "query '%s': %s\n", sql, db_last_error(db));
        v = -1;
    }
    db_finalize(st);
    return is_null ? 0 : v;
}

/* A fresh database with the engine schema and the Counterpoint demo. */
static int fresh_database(void)
{
    return cpbtest_db_fresh(dialect, "woo_e2e", conn, sizeof conn);
}

static void drop_database(void)
{
    cpbtest_db_drop();
}

/* ---- the pipeline -------------------------------------------------------------- */

static const char *write_pipeline(void)
{
    char text[4096];
    snprintf(text, sizeof text,
             "name = \"woo-e2e\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = 5; };\n"
             "retry = { max_attempts = 3; base = \"1s\"; cap = \"1m\"; };\n"
             "stages = (\n"
             "  { stage = \"source-woo\"; id = \"shop\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"file:%s\"; statuses = [\"processing\"];\n"
             "      per_page = 5; }; },\n"
             "  { stage = \"validate\"; options = { allow_walk_in = true; }; },\n"
             "  { stage = \"create-order\"; },\n"
             "  { stage = \"update-qty\"; },\n"
             "  { stage = \"sync-status\"; id = \"shop-sync\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"file:%s\"; source = \"shop\"; }; }\n"
             ");\n",
             dialect == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_path("e2e.lock"),
             srv.port, cpbtest_path("woo.secret"), srv.port, cpbtest_path("woo.secret"));
    const char *path = cpbtest_path("e2e.cfg");
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

static int run_once(const char *path, struct run_result *res)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = path};
    memset(res, 0, sizeof *res);
    if (pipeline_open(path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        fprintf(stderr, "pipeline: %s\n", e.msg);
        pipeline_close(p);
        CU_FAIL("the pipeline did not open");
        return -1;
    }
    int code = runner_run(p, &o, res, &e);
    if (code != CPB_EXIT_OK && code != CPB_EXIT_ATTENTION) {
        fprintf(stderr, "run: %d %s\n", code, e.msg);
    }
    pipeline_close(p);
    return code;
}

/* ---- suites ------------------------------------------------------------------------ */

static int setup_common(void)
{
    struct err err = {0};
    if (http_global_init(&err) != 0) {
        return -1;
    }
    cli = http_client_new("test");
    if (cli == NULL) {
        return -1;
    }
    if (cpbtest_write(cpbtest_path("woo.secret"), "cs_test\n") != 0 ||
        chmod(cpbtest_path("woo.secret"), 0600) != 0) {
        return -1;
    }
    const char *const args[] = {"--orders", cpbtest_src("tests/fixtures/woo/orders-basic.json"),
                                "--key",    "ck_test",
                                "--secret", "cs_test",
                                NULL};
    if (cpbserver_start(&srv, cpbtest_src("tests/servers/woo_standin.py"), args) != 0) {
        return -1;
    }
    return fresh_database();
}

static int setup_sqlite(void)
{
    dialect = DB_SQLITE;
    return setup_common();
}

static int setup_pg(void)
{
    dialect = DB_POSTGRESQL;
    return setup_common();
}

static int teardown(void)
{
    drop_database();
    cpbserver_stop(&srv);
    http_client_free(cli);
    cli = NULL;
    http_global_cleanup();
    log_reset();
    return 0;
}

/* Every applied order is in Counterpoint once, and the store has its
 * status and exactly one note naming its ticket and document. */
static void check_applied(struct db *db, unsigned *applied)
{
    struct cpb_stmt *st = NULL;
    *applied = 0;
    CU_ASSERT_EQUAL_FATAL(sql_query(db,
                                    "SELECT EXT_ORDER_ID, CP_DOC_ID, CP_TKT_NO FROM"
                                    " USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                                    " ORDER BY EXT_ORDER_ID",
                                    NULL, 0, &st),
                          CPB_OK);
    while (db_fetch(st) == CPB_OK) {
        const char *ext = NULL;
        const char *tkt = NULL;
        int64_t doc = 0;
        char note[200];
        char ext_copy[48];
        CU_ASSERT_EQUAL(db_col_text(st, 1, &ext), CPB_OK);
        CU_ASSERT_EQUAL(db_col_int(st, 2, &doc, NULL), CPB_OK);
        CU_ASSERT_EQUAL(db_col_text(st, 3, &tkt), CPB_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ext);
        CU_ASSERT_PTR_NOT_NULL_FATAL(tkt);
        CU_ASSERT(doc > 0);
        snprintf(ext_copy, sizeof ext_copy, "%s", ext);
        snprintf(note, sizeof note,
                 "Imported into Counterpoint as ticket %s (document %lld) by cpbridge.", tkt,
                 (long long)doc);
        json_t *o = store_order(ext_copy);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "status")), "completed");
        size_t i;
        json_t *n;
        unsigned found = 0;
        json_array_foreach(json_object_get(o, "notes"), i, n)
        {
            const char *t = json_string_value(json_object_get(n, "note"));
            if (t != NULL && strcmp(t, note) == 0) {
                found++;
                CU_ASSERT(json_is_false(json_object_get(n, "customer_note")));
            }
        }
        CU_ASSERT_EQUAL(found, 1);
        json_decref(o);
        (*applied)++;
    }
    db_finalize(st);
}

static void test_end_to_end(void)
{
    struct run_result res;
    unsigned applied = 0;
    const char *path = write_pipeline();
    struct db *db = connect_db();
    int64_t so_before = q_decimal(db, "SELECT SUM(QTY_ON_SO) FROM IM_INV");
    int64_t docs_before = q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    if (dialect == DB_POSTGRESQL) {
        /* Which transaction staged each order: a page is one. */
        CU_ASSERT_EQUAL_FATAL(db_begin(db), CPB_OK);
        CU_ASSERT_EQUAL(db_exec(db, "CREATE TABLE STAGED_TX (TX BIGINT)"), CPB_OK);
        CU_ASSERT_EQUAL(db_exec(db, "CREATE FUNCTION STAGED_TX_F() RETURNS trigger AS $$ BEGIN"
                                    " INSERT INTO STAGED_TX VALUES (txid_current()); RETURN NEW;"
                                    " END $$ LANGUAGE plpgsql"),
                        CPB_OK);
        CU_ASSERT_EQUAL(db_exec(db, "CREATE TRIGGER STAGED_TX_T AFTER INSERT ON"
                                    " USER_ORDER_STAGING FOR EACH ROW EXECUTE FUNCTION"
                                    " STAGED_TX_F()"),
                        CPB_OK);
        CU_ASSERT_EQUAL_FATAL(db_commit(db), CPB_OK);
    }

    /* Run 1: 14 processing orders staged, applied, written back. */
    int code = run_once(path, &res);
    CU_ASSERT(code == CPB_EXIT_OK || code == CPB_EXIT_ATTENTION);
    CU_ASSERT_FALSE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.staged, 14);
    /* The fixture's customers are not in the demo's AR_CUST: walk-in. */
    CU_ASSERT_EQUAL(res.counts.applied, 14);
    CU_ASSERT_EQUAL(res.counts.invalid, 0);
    CU_ASSERT_EQUAL(res.counts.after_done, res.counts.applied);
    CU_ASSERT_EQUAL(res.counts.after_failed, 0);
    check_applied(db, &applied);
    CU_ASSERT_EQUAL(applied, res.counts.applied);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before, applied);
    /* Inventory committed by exactly the applied lines' quantities. */
    int64_t so_after = q_decimal(db, "SELECT SUM(QTY_ON_SO) FROM IM_INV");
    int64_t lines = q_decimal(db, "SELECT SUM(L.QTY) FROM USER_ORDER_STAGING_LIN L JOIN"
                                  " USER_ORDER_STAGING S ON S.STAGING_ID = L.STAGING_ID"
                                  " WHERE S.STATUS = 'APPLIED'");
    CU_ASSERT(lines > 0);
    CU_ASSERT_EQUAL(so_after - so_before, lines);
    if (dialect == DB_POSTGRESQL) {
        /* Three pages of 5, 5 and 4: three staging transactions (group
         * commit), not 14. */
        CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM STAGED_TX", NULL), 14);
        CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(DISTINCT TX) FROM STAGED_TX", NULL), 3);
    }

    /* Run 2: nothing new; nothing written to the store or Counterpoint. */
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    CU_ASSERT_EQUAL(res.counts.after_done, 0);
    CU_ASSERT_EQUAL(count_requests("PUT") + count_requests("POST"), 0);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before, applied);

    /* An applied order edited in the store and set back to processing:
     * flagged for a person, not created again, not written back again. */
    ctl_do("POST", "/_orders/5101/touch",
           "{\"status\": \"processing\", \"customer_note\": \"please gift wrap\"}");
    /* An applied order that comes again unchanged (only its modification
     * time moved): staged once, nothing flagged. */
    ctl_do("POST", "/_orders/5102/touch", "{\"status\": \"processing\"}");
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    CU_ASSERT_EQUAL(res.counts.after_done, 0);
    CU_ASSERT_EQUAL(count_requests("PUT") + count_requests("POST"), 0);
    CU_ASSERT_EQUAL(q_int(db,
                          "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING WHERE"
                          " EXT_ORDER_ID = ?",
                          "5101"),
                    1);
    CU_ASSERT_EQUAL(q_int(db,
                          "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING WHERE"
                          " EXT_ORDER_ID = ?",
                          "5102"),
                    0);
    CU_ASSERT_EQUAL(
        q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "5102"), 1);
    CU_ASSERT_EQUAL(q_int(db,
                          "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S"
                          " ON S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ?"
                          " AND E.KIND = 'staged'",
                          "5102"),
                    1);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before, applied);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL), 14);
    json_t *o = store_order("5101");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "status")), "processing");
    json_decref(o);

    /* A new order placed in the store: only it is created and synced. */
    json_t *fresh = store_order("5110");
    json_object_del(fresh, "notes");
    json_object_set_new(fresh, "id", json_integer(5999));
    json_object_set_new(fresh, "number", json_string("5999"));
    json_object_set_new(fresh, "status", json_string("processing"));
    json_object_del(fresh, "date_modified_gmt");
    char *text = json_dumps(fresh, JSON_COMPACT);
    json_decref(fresh);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    /* POST /_orders stamps the missing modification time with now. */
    ctl_do("POST", "/_orders", text);
    free(text);
    run_once(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 1);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    CU_ASSERT_EQUAL(res.counts.after_done, 1);
    /* One status change (POST /orders/batch) and one note (POST .../notes). */
    CU_ASSERT_EQUAL(count_requests("PUT"), 0);
    CU_ASSERT_EQUAL(count_requests("POST"), 2);
    CU_ASSERT_EQUAL(q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before, applied + 1);
    o = store_order("5999");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "status")), "completed");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(o, "notes")), 2); /* status change + ours */
    json_decref(o);
    db_close(db);
}

static const struct cpbtest_case cases[] = {
    {"store to Counterpoint and back", test_end_to_end},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
