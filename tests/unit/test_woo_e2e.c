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

#include "cli/ops.h"
#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/host.h"
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
    json_t *doc = cpbserver_json(&srv, cli, method, path, body);
    CU_ASSERT_PTR_NOT_NULL(doc); /* answered 2xx with JSON (why printed otherwise) */
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
    return cpbtest_connect(conn, dialect);
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

/* The pipeline, with run.store_cancel = `policy`. */
static const char *write_pipeline(const char *policy)
{
    char text[4096];
    snprintf(text, sizeof text,
             "name = \"woo-e2e\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = 5; store_cancel = \"%s\"; };\n"
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
             dialect == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_path("e2e.lock"), policy,
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
    /* As `cpbridge run` does: rollbacks for the store through the rollback
     * command's code. */
    struct ops_undo undo = {p->cfg, path};
    o.undo = ops_undo_for_store;
    o.undo_arg = &undo;
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
    const char *path = write_pipeline("flag");
    struct db *db = connect_db();
    int64_t so_before = q_decimal(db, "SELECT SUM(QTY_ON_SO) FROM IM_INV");
    int64_t docs_before = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
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
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before,
                    applied);
    /* Inventory committed by exactly the applied lines' quantities. */
    int64_t so_after = q_decimal(db, "SELECT SUM(QTY_ON_SO) FROM IM_INV");
    int64_t lines = q_decimal(db, "SELECT SUM(L.QTY) FROM USER_ORDER_STAGING_LIN L JOIN"
                                  " USER_ORDER_STAGING S ON S.STAGING_ID = L.STAGING_ID"
                                  " WHERE S.STATUS = 'APPLIED'");
    CU_ASSERT(lines > 0);
    CU_ASSERT_EQUAL(so_after - so_before, lines);
    if (dialect == DB_POSTGRESQL) {
        /* Four pages of 5, 5, 5 and 1 (the 14 processing orders, and one
         * cancelled and one refunded, which source-woo reads for
         * cancel_statuses and withdraws, never stages): four staging
         * transactions (group commit), not 14. */
        CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM STAGED_TX", NULL), 14);
        CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(DISTINCT TX) FROM STAGED_TX", NULL), 4);
    }

    /* Run 2: nothing new; nothing written to the store or Counterpoint. */
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    CU_ASSERT_EQUAL(res.counts.after_done, 0);
    CU_ASSERT_EQUAL(count_requests("PUT") + count_requests("POST"), 0);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before,
                    applied);

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
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID = ?",
                                  "5101"),
                    1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID = ?",
                                  "5102"),
                    0);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "5102"),
        1);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S"
                      " ON S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ?"
                      " AND E.KIND = 'staged'",
                      "5102"),
        1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before,
                    applied);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL), 14);
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
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL) - docs_before,
                    applied + 1);
    o = store_order("5999");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "status")), "completed");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(o, "notes")), 2); /* status change + ours */
    json_decref(o);
    db_close(db);
}

/* ---- the store changes an applied order (run.store_cancel) -------------- */

/* What an order committed in IM_INV: its USER_ORDER_INV rows, summed per
 * item and location, with QTY_ON_SO there when read. */
struct commit_row {
    char item[32];
    char loc[16];
    int64_t qty;
    int64_t on_so;
};

static size_t commitments(struct db *db, const char *ext, struct commit_row *v, size_t max)
{
    struct cpb_stmt *st = NULL;
    size_t n = 0;
    struct sql_arg a[] = {sql_text(ext)};
    CU_ASSERT_EQUAL_FATAL(sql_query(db,
                                    "SELECT I.ITEM_NO, I.LOC_ID, SUM(I.QTY) FROM USER_ORDER_INV I"
                                    " JOIN USER_ORDER_STAGING S ON S.STAGING_ID = I.STAGING_ID"
                                    " WHERE S.EXT_ORDER_ID = ? GROUP BY I.ITEM_NO, I.LOC_ID"
                                    " ORDER BY I.ITEM_NO, I.LOC_ID",
                                    a, 1, &st),
                          CPB_OK);
    while (n < max && db_fetch(st) == CPB_OK) {
        const char *item = NULL;
        const char *loc = NULL;
        CU_ASSERT_EQUAL(db_col_text(st, 1, &item), CPB_OK);
        CU_ASSERT_EQUAL(db_col_text(st, 2, &loc), CPB_OK);
        CU_ASSERT_EQUAL(db_col_decimal(st, 3, &v[n].qty, NULL), CPB_OK);
        snprintf(v[n].item, sizeof v[n].item, "%s", item != NULL ? item : "");
        snprintf(v[n].loc, sizeof v[n].loc, "%s", loc != NULL ? loc : "");
        n++;
    }
    db_finalize(st);
    for (size_t i = 0; i < n; i++) {
        struct sql_arg k[] = {sql_text(v[i].item), sql_text(v[i].loc)};
        st = NULL;
        CU_ASSERT_EQUAL(sql_query(db,
                                  "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?",
                                  k, 2, &st),
                        CPB_OK);
        CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_decimal(st, 1, &v[i].on_so, NULL), CPB_OK);
        db_finalize(st);
    }
    return n;
}

static int64_t on_so(struct db *db, const char *item, const char *loc)
{
    struct cpb_stmt *st = NULL;
    int64_t v = -1;
    struct sql_arg k[] = {sql_text(item), sql_text(loc)};
    if (sql_query(db, "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?", k, 2, &st) !=
            CPB_OK ||
        db_fetch(st) != CPB_OK || db_col_decimal(st, 1, &v, NULL) != CPB_OK) {
        v = -1;
    }
    db_finalize(st);
    return v;
}

/* Notes of store order `ext` whose text contains `part`. */
static size_t notes_with(const char *ext, const char *part)
{
    json_t *o = store_order(ext);
    size_t i, found = 0;
    json_t *n;
    json_array_foreach(json_object_get(o, "notes"), i, n)
    {
        const char *t = json_string_value(json_object_get(n, "note"));
        found += t != NULL && strstr(t, part) != NULL;
    }
    json_decref(o);
    return found;
}

static const char *order_status(struct db *db, const char *ext, char *out, size_t n)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    out[0] = '\0';
    if (sql_query(db, "SELECT STATUS FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                  (struct sql_arg[]){sql_text(ext)}, 1, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        snprintf(out, n, "%s", v);
    }
    db_finalize(st);
    return out;
}

/* The last event of `kind` for order `ext`: its code (code[64]) and
 * message (msg[n]). */
static bool last_event(struct db *db, const char *ext, const char *kind, char code[64], char *msg,
                       size_t n)
{
    struct cpb_stmt *st = NULL;
    const char *c = NULL;
    const char *m = NULL;
    bool got = false;
    struct sql_arg a[] = {sql_text(ext), sql_text(kind)};
    if (sql_query(db,
                  "SELECT E.CODE, E.MESSAGE FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S"
                  " ON S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ? AND E.KIND = ?"
                  " ORDER BY E.EVENT_ID DESC",
                  a, 2, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &c) == CPB_OK &&
        db_col_text(st, 2, &m) == CPB_OK) {
        snprintf(code, 64, "%s", c != NULL ? c : "");
        snprintf(msg, n, "%s", m != NULL ? m : "");
        got = true;
    }
    db_finalize(st);
    return got;
}

static void cancel_in_store(const char *ext)
{
    char path[64];
    snprintf(path, sizeof path, "/_orders/%s/touch", ext);
    ctl_do("POST", path, "{\"status\": \"cancelled\"}");
}

/* Cancelled in the store after it was applied, under "rollback": the
 * document and its commitment are gone, exactly, with an audit row, and the
 * store gets one note; a second run does nothing more. */
static void test_cancel_rollback(void)
{
    struct run_result res;
    struct commit_row before[16];
    char st[32], code[64], msg[1200];
    const char *path = write_pipeline("rollback");
    struct db *db = connect_db();
    int64_t doc = cpbtest_q_int(
        db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "5102");
    size_t n = commitments(db, "5102", before, 16);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT(doc > 0);
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);

    cancel_in_store("5102");
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5102", st, sizeof st), "ROLLED_BACK");
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs - 1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM PS_DOC_LIN L JOIN USER_ORDER_STAGING S ON"
                                  " S.CP_DOC_ID = L.DOC_ID WHERE S.EXT_ORDER_ID = ?",
                                  "5102"),
                    0);
    struct commit_row left[16];
    CU_ASSERT_EQUAL(commitments(db, "5102", left, 16), 0);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(on_so(db, before[i].item, before[i].loc), before[i].on_so - before[i].qty);
    }
    CU_ASSERT_TRUE(last_event(db, "5102", "rollback", code, msg, sizeof msg));
    CU_ASSERT_STRING_EQUAL(code, "store.rollback");
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "store cancelled order 5102"));
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db, "SELECT STORE_CANCELLED FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                      "5102"),
        0);
    /* The store: still cancelled, one note, no status change. */
    json_t *o = store_order("5102");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "status")), "cancelled");
    json_decref(o);
    CU_ASSERT_EQUAL(notes_with("5102", "Removed from Counterpoint: ticket "), 1);
    CU_ASSERT_EQUAL(count_requests("PUT"), 0);
    CU_ASSERT_EQUAL(count_requests("POST"), 1);

    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_EQUAL(count_requests("POST") + count_requests("PUT"), 0);
    CU_ASSERT_EQUAL(notes_with("5102", "Removed from Counterpoint"), 1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs - 1);
    db_close(db);
}

/* Under "flag" (the default), the same cancellation leaves the order in
 * Counterpoint, flagged once, and nothing goes to the store. */
static void test_cancel_flag(void)
{
    struct run_result res;
    char st[32], code[64], msg[1200];
    const char *path = write_pipeline("flag");
    struct db *db = connect_db();
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    cancel_in_store("5108");
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5108", st, sizeof st), "APPLIED");
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT CHANGED_AFTER_APPLY + 10 * STORE_CANCELLED FROM"
                                  " USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                                  "5108"),
                    1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs);
    CU_ASSERT_TRUE(last_event(db, "5108", "store_cancel.flagged", code, msg, sizeof msg));
    CU_ASSERT_STRING_EQUAL(code, "order.changed");
    CU_ASSERT_EQUAL(count_requests("POST") + count_requests("PUT"), 0);
    /* Flagged once: the next run, under "rollback" even, leaves it to a person. */
    run_once(write_pipeline("rollback"), &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5108", st, sizeof st), "APPLIED");
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S ON"
                      " S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ? AND"
                      " E.KIND = 'store_cancel.flagged'",
                      "5108"),
        1);
    db_close(db);
}

/* A document no longer open (posted: gone from PS_DOC_*) or edited in
 * Counterpoint since is not rolled back: flagged with the reason, nothing
 * changed. */
static void test_cancel_refused(void)
{
    struct run_result res;
    struct commit_row before[16];
    char st[32], code[64], msg[1200];
    const char *path = write_pipeline("rollback");
    struct db *db = connect_db();
    int64_t doc = cpbtest_q_int(
        db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "5110");
    CU_ASSERT_FATAL(doc > 0);
    /* "Posted": Counterpoint moved the document to its history tables. */
    static const char *const tables[] = {
        "PS_DOC_NOTE",    "PS_DOC_PMT", "PS_DOC_CONTACT", "PS_DOC_HDR_MISC_CHRG",
        "PS_DOC_HDR_TOT", "PS_DOC_LIN", "PS_DOC_HDR"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[100];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE DOC_ID = ?", tables[i]);
        CU_ASSERT_EQUAL(sql_exec(db, sql, (struct sql_arg[]){sql_int(doc)}, 1, NULL), CPB_OK);
    }
    /* Edited: changed in Counterpoint an hour after cpbridge wrote it. */
    int64_t doc2 = cpbtest_q_int(
        db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "5111");
    CU_ASSERT_EQUAL(
        sql_exec(db, "UPDATE PS_DOC_HDR SET LST_MAINT_DT = ? WHERE DOC_ID = ?",
                 (struct sql_arg[]){sql_time(host_now_ms() + 3600 * 1000), sql_int(doc2)}, 2, NULL),
        CPB_OK);
    size_t n = commitments(db, "5111", before, 16);
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    cancel_in_store("5110");
    cancel_in_store("5111");
    ctl_do("DELETE", "/_requests", NULL);
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5110", st, sizeof st), "APPLIED");
    CU_ASSERT_TRUE(last_event(db, "5110", "store_cancel.flagged", code, msg, sizeof msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "no longer open"));
    CU_ASSERT_STRING_EQUAL(order_status(db, "5111", st, sizeof st), "APPLIED");
    CU_ASSERT_TRUE(last_event(db, "5111", "store_cancel.flagged", code, msg, sizeof msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "edited in Counterpoint"));
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(on_so(db, before[i].item, before[i].loc), before[i].on_so);
    }
    CU_ASSERT_EQUAL(count_requests("POST") + count_requests("PUT"), 0);
    db_close(db);
}

/* A partial refund or an edited line is never applied: flagged with the
 * line-level difference. A change of status alone is not flagged. */
static void test_partial_refund_and_edit(void)
{
    struct run_result res;
    char st[32], code[64], msg[1200];
    const char *path = write_pipeline("rollback");
    struct db *db = connect_db();
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    ctl_do("POST", "/_orders/5114/touch",
           "{\"status\": \"processing\", \"refunds\": [{\"id\": 77, \"reason\": \"Mug arrived"
           " chipped\", \"total\": \"-5.00\"}]}");
    /* 5115: its first line's quantity raised by one in the store. */
    json_t *o = store_order("5115");
    json_object_del(o, "notes");
    json_object_del(o, "date_modified_gmt");
    json_object_set_new(o, "status", json_string("processing"));
    json_t *line = json_array_get(json_object_get(o, "line_items"), 0);
    const char *sku = json_string_value(json_object_get(line, "sku"));
    char sku_copy[64];
    snprintf(sku_copy, sizeof sku_copy, "%s", sku != NULL ? sku : "");
    json_int_t qty = json_integer_value(json_object_get(line, "quantity"));
    json_object_set_new(line, "quantity", json_integer(qty + 1));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    ctl_do("POST", "/_orders", text);
    free(text);
    /* 5117: only its status moved (a person completed it again). */
    ctl_do("POST", "/_orders/5117/touch", "{\"status\": \"processing\"}");
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5114", st, sizeof st), "APPLIED");
    CU_ASSERT_TRUE(last_event(db, "5114", "changed.after_apply", code, msg, sizeof msg));
    CU_ASSERT_STRING_EQUAL(code, "order.changed");
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "refund #77 of -5.00 ('Mug arrived chipped')"));
    CU_ASSERT_TRUE(last_event(db, "5115", "changed.after_apply", code, msg, sizeof msg));
    char want[120];
    snprintf(want, sizeof want, "SKU '%s' qty %lld -> %lld, amount ", sku_copy, (long long)qty,
             (long long)qty + 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, want));
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT SUM(CHANGED_AFTER_APPLY) FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID IN ('5114', '5115')",
                                  NULL),
                    2);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID = ?",
                                  "5117"),
                    0);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs);
    db_close(db);
}

/* Trashed after apply (the webhook's withdraw), under "rollback": gone
 * from Counterpoint the same way. */
static void test_trash_rollback(void)
{
    struct run_result res;
    char st[32];
    enum withdraw_outcome out = WITHDRAW_UNKNOWN;
    int64_t id = 0;
    const char *path = write_pipeline("rollback");
    struct db *db = connect_db();
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    CU_ASSERT_EQUAL(staging_withdraw(db, "shop", "5118", "the store moved order 5118 to the trash",
                                     NULL, host_now_ms(), &out, &id),
                    CPB_OK);
    CU_ASSERT_EQUAL(out, WITHDRAW_FLAGGED);
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5118", st, sizeof st), "ROLLED_BACK");
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs - 1);
    db_close(db);
}

/* The note is written exactly once: when the rollback committed and the
 * note did not go out (503), the next run sends it; when the note went out
 * but its answer was lost (truncated), the next run finds it and sends none. */
static void test_note_once(void)
{
    struct run_result res;
    char st[32];
    const char *path = write_pipeline("rollback");
    struct db *db = connect_db();
    ctl_do("POST", "/_fault",
           "[{\"path_regex\": \"/orders/5120/notes$\", \"method\": \"POST\", \"kind\": \"status\","
           " \"status\": 503, \"times\": -1},"
           " {\"path_regex\": \"/orders/5122/notes$\", \"method\": \"POST\", \"kind\":"
           " \"truncated\", \"times\": 1}]");
    cancel_in_store("5120");
    cancel_in_store("5122");
    run_once(path, &res);
    CU_ASSERT_STRING_EQUAL(order_status(db, "5120", st, sizeof st), "ROLLED_BACK");
    CU_ASSERT_STRING_EQUAL(order_status(db, "5122", st, sizeof st), "ROLLED_BACK");
    CU_ASSERT_EQUAL(notes_with("5120", "Removed from Counterpoint"), 0);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT SUM(AFTER_PENDING) FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID IN ('5120', '5122')",
                                  NULL),
                    2);
    ctl_do("DELETE", "/_fault", NULL);
    /* Due again now, rather than after the backoff. */
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE USER_ORDER_STAGING SET NEXT_ATTEMPT_DT = ? WHERE"
                             " EXT_ORDER_ID IN ('5120', '5122')",
                             (struct sql_arg[]){sql_time(host_now_ms() - 1000)}, 1, NULL),
                    CPB_OK);
    run_once(path, &res);
    CU_ASSERT_EQUAL(notes_with("5120", "Removed from Counterpoint"), 1);
    CU_ASSERT_EQUAL(notes_with("5122", "Removed from Counterpoint"), 1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT SUM(AFTER_PENDING) FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID IN ('5120', '5122')",
                                  NULL),
                    0);
    run_once(path, &res);
    CU_ASSERT_EQUAL(notes_with("5120", "Removed from Counterpoint"), 1);
    CU_ASSERT_EQUAL(notes_with("5122", "Removed from Counterpoint"), 1);
    db_close(db);
}

static const struct cpbtest_case cases[] = {
    {"store to Counterpoint and back", test_end_to_end},
    {"cancelled after apply: rollback", test_cancel_rollback},
    {"cancelled after apply: flag", test_cancel_flag},
    {"cancelled after apply: refused, flagged", test_cancel_refused},
    {"partial refund and edited line: flagged with the difference", test_partial_refund_and_edit},
    {"trashed after apply: rollback", test_trash_rollback},
    {"the removal note exactly once", test_note_once},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
