/*
 * test_stock_e2e.c — the stock pipeline end to end through the real engine,
 * on SQLite and on PostgreSQL: Counterpoint's IM_ITEM / IM_INV /
 * USER_ITEM_MAP (the demo database plus 2,000 generated items) ->
 * source-cp-stock -> the engine's record staging -> push-woo-stock -> the
 * WooCommerce stand-in (tests/servers/woo_standin.py, OAuth over http) with
 * 1,600 simple products and 80 variable ones of 5 variations each.
 *
 * Checked in the store (GET /_products) and in its request statistics
 * (GET /_stats): the first push sets every SKU to what Counterpoint has
 * available, in batch requests, with the catalog read once; a second run
 * with nothing changed sends no request; a sale (IM_INV.QTY_ON_SO raised,
 * as update-qty does) lowers the quantity on the next run with one
 * request; safety stock and the floor at zero; a SKU the store lacks is
 * DEAD with sku.unknown and nothing more is sent for it; a batch with one
 * failing item applies the rest and retries that one; 429 and 5xx on the
 * whole batch are retried; an id removed from the store is resolved again;
 * and a sale the orders pipeline itself applied (source-file, validate,
 * create-order, update-qty, a second pipeline on the same database) shows
 * in the store after the next stock run.
 *
 * Each suite uses a fresh database (a new SQLite file, or a new schema in
 * the PostgreSQL of CPB_TEST_PG) and a fresh stand-in.
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
#include "services/db.h"
#include "services/http.h"
#include "services/log.h"
#include "services/sql.h"

/* The store: 1,680 products P1..P1680, every 21st variable with the 5
 * variations Pn-1..Pn-5. Counterpoint has the 1,600 simple ones and the
 * 400 variations (the variable parents are no items of their own). */
#define PRODUCTS   1680
#define EVERY      21
#define VARIATIONS 5
#define ITEMS      2000
#define PARENTS    (PRODUCTS / EVERY)
/* The first MAPPED simple products are items CP-n mapped to SKU Pn. */
#define MAPPED 10
/* run.batch of the pipeline: 2 rounds for the first push. */
#define RUN_BATCH 1000
#define ROUNDS    ((ITEMS + RUN_BATCH - 1) / RUN_BATCH)

static struct cpbserver srv;
static struct http_client *cli;
static enum db_dialect dialect;
static char conn[2048];
static int64_t safety;                     /* safety_stock of the pipeline, ten-thousandths */
static const char *locations = "\"MAIN\""; /* the pipeline's locations list */

/* One Counterpoint item of the test and its MAIN quantities (units). */
struct item {
    char sku[24];
    char item_no[24];
    int64_t hnd, commit, so;
};
static struct item items[ITEMS];

/* ---- the stand-in ------------------------------------------------------------ */

static json_t *ctl(const char *method, const char *path, const char *body)
{
    json_t *doc = cpbserver_json(&srv, cli, method, path, body);
    CU_ASSERT_PTR_NOT_NULL(doc);
    return doc;
}

static void ctl_do(const char *method, const char *path, const char *body)
{
    json_decref(ctl(method, path, body));
}

/* Requests of route `route` ("POST /products/batch"; NULL: all API
 * requests) since the last DELETE /_stats. */
static int64_t stat_route(const char *route)
{
    json_t *st = ctl("GET", "/_stats", NULL);
    int64_t n =
        route == NULL
            ? (int64_t)json_integer_value(json_object_get(st, "requests"))
            : (int64_t)json_integer_value(json_object_get(json_object_get(st, "by_route"), route));
    json_decref(st);
    return n;
}

static int64_t stat_value(const char *key)
{
    json_t *st = ctl("GET", "/_stats", NULL);
    int64_t n = (int64_t)json_integer_value(json_object_get(st, key));
    json_decref(st);
    return n;
}

/* The store's stock of every SKU (new reference: {"stock", "manage_stock",
 * "ids"}). */
static json_t *store_stock(void)
{
    return ctl("GET", "/_products", NULL);
}

static int64_t store_id(const char *sku)
{
    json_t *s = store_stock();
    int64_t id = (int64_t)json_integer_value(json_object_get(json_object_get(s, "ids"), sku));
    json_decref(s);
    return id;
}

/* ---- the database ----------------------------------------------------------- */

static struct db *connect_db(void)
{
    return cpbtest_connect(conn, dialect);
}

static void exec_ok(struct db *db, const char *sql, const struct sql_arg *a, size_t n)
{
    enum cpb_status rc = sql_exec(db, sql, a, n, NULL);
    if (rc != CPB_OK) {
        fprintf(stderr, "'%s': %s\n", sql, db_last_error(db));
    }
    CU_ASSERT_EQUAL_FATAL(rc, CPB_OK);
}

/* What the store should show for item i: MAIN's on hand - committed - on
 * SO, minus the safety stock, floored at 0, rounded down. */
static int64_t expected(const struct item *it)
{
    int64_t avail = (it->hnd - it->commit - it->so) * 10000 - safety;
    return avail <= 0 ? 0 : avail / 10000;
}

/* Records of this pipeline in state `state`. */
static int64_t records(struct db *db, const char *state)
{
    return cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_RECORD_STAGING WHERE STATUS = ?", state);
}

/* Column `sql` (a query of one text column with the key as parameter) of
 * the record of SKU `sku`, into out ("" for none). */
static const char *record_text(struct db *db, const char *sql, const char *sku, char *out, size_t n)
{
    char *v = cpbtest_q_text(db, sql, sku);
    snprintf(out, n, "%s", v != NULL ? v : "");
    free(v);
    return out;
}

static const char *record_state(struct db *db, const char *sku, char *out, size_t n)
{
    return record_text(db, "SELECT STATUS FROM USER_RECORD_STAGING WHERE REC_KEY = ?", sku, out, n);
}

/* The record's last error code (into out). */
static const char *record_code(struct db *db, const char *sku, char *out, size_t n)
{
    return record_text(db, "SELECT LAST_ERROR_CODE FROM USER_RECORD_STAGING WHERE REC_KEY = ?", sku,
                       out, n);
}

/* The record's result object (new reference, or NULL). */
static json_t *record_result(struct db *db, const char *sku)
{
    json_error_t jerr;
    char *v = cpbtest_q_text(db, "SELECT RESULT FROM USER_RECORD_STAGING WHERE REC_KEY = ?", sku);
    json_t *doc = v != NULL ? json_loads(v, 0, &jerr) : NULL;
    free(v);
    return doc;
}

static struct item *find_item(const char *sku)
{
    for (size_t i = 0; i < ITEMS; i++) {
        if (strcmp(items[i].sku, sku) == 0) {
            return &items[i];
        }
    }
    CU_FAIL_FATAL("no such test item");
    return NULL;
}

/* Set item `sku`'s MAIN quantities in Counterpoint (and in items[]). */
static void set_qty(struct db *db, const char *sku, int64_t hnd, int64_t commit, int64_t so)
{
    struct item *it = find_item(sku);
    it->hnd = hnd;
    it->commit = commit;
    it->so = so;
    struct sql_arg a[] = {sql_decimal(hnd * 10000), sql_decimal(commit * 10000),
                          sql_decimal(so * 10000), sql_text(it->item_no), sql_text("MAIN")};
    exec_ok(db,
            "UPDATE IM_INV SET QTY_ON_HND = ?, QTY_COMMIT = ?, QTY_ON_SO = ? WHERE ITEM_NO = ? AND"
            " LOC_ID = ?",
            a, 5);
}

/* Items, quantities and the map in Counterpoint; the products in the store. */
static int seed(void)
{
    struct db *db = NULL;
    struct cpb_stmt *item_st = NULL;
    struct cpb_stmt *inv_st = NULL;
    struct err e = {0};
    size_t n = 0;
    int rc = -1;
    char spec[200];

    for (int p = 1; p <= PRODUCTS; p++) {
        if (p % EVERY == 0) {
            for (int v = 1; v <= VARIATIONS; v++) {
                snprintf(items[n].sku, sizeof items[n].sku, "P%d-%d", p, v);
                snprintf(items[n].item_no, sizeof items[n].item_no, "P%d-%d", p, v);
                n++;
            }
            continue;
        }
        snprintf(items[n].sku, sizeof items[n].sku, "P%d", p);
        if (p <= MAPPED) {
            snprintf(items[n].item_no, sizeof items[n].item_no, "CP-%d", p);
        } else {
            snprintf(items[n].item_no, sizeof items[n].item_no, "P%d", p);
        }
        n++;
    }
    if (n != ITEMS) {
        fprintf(stderr, "seed: %zu items, not %d\n", n, ITEMS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].hnd = (int64_t)((i * 7) % 50) + 3;
        items[i].commit = (int64_t)(i % 3);
        items[i].so = (int64_t)(i % 2);
    }
    items[2].hnd = 1; /* P3: below zero, floored */
    items[2].so = 9;

    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "seed: %s\n", e.msg);
        return -1;
    }
    /* The demo's own items are not published: only the test's. */
    if (db_exec(db, "UPDATE IM_ITEM SET IS_ECOMM_ITEM = 'N'") != CPB_OK || db_begin(db) != CPB_OK ||
        db_prepare(
            db, "INSERT INTO IM_ITEM (ITEM_NO, DESCR, STAT, IS_ECOMM_ITEM) VALUES (?, ?, 'A', 'Y')",
            &item_st) != CPB_OK ||
        db_prepare(db,
                   "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND, QTY_COMMIT, QTY_ON_SO) VALUES"
                   " (?, ?, ?, ?, ?)",
                   &inv_st) != CPB_OK) {
        fprintf(stderr, "seed: %s\n", db_last_error(db));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct item *it = &items[i];
        struct sql_arg ia[] = {sql_text(it->item_no), sql_text(it->sku)};
        struct sql_arg va[] = {sql_text(it->item_no), sql_text("MAIN"),
                               sql_decimal(it->hnd * 10000), sql_decimal(it->commit * 10000),
                               sql_decimal(it->so * 10000)};
        /* Another location, not in `locations`: never counted. */
        struct sql_arg oa[] = {sql_text(it->item_no), sql_text("OUTLET"), sql_decimal(500000),
                               sql_decimal(0), sql_decimal(0)};
        if (sql_bind(item_st, ia, 2) != CPB_OK || db_execute(item_st, NULL) != CPB_OK ||
            sql_bind(inv_st, va, 5) != CPB_OK || db_execute(inv_st, NULL) != CPB_OK ||
            (i % 5 == 0 &&
             (sql_bind(inv_st, oa, 5) != CPB_OK || db_execute(inv_st, NULL) != CPB_OK))) {
            fprintf(stderr, "seed: %s\n", db_last_error(db));
            goto out;
        }
    }
    for (int p = 1; p <= MAPPED; p++) {
        char sku[16];
        char item_no[16];
        snprintf(sku, sizeof sku, "P%d", p);
        snprintf(item_no, sizeof item_no, "CP-%d", p);
        struct sql_arg ma[] = {sql_text(sku), sql_text(item_no)};
        if (sql_exec(db, "INSERT INTO USER_ITEM_MAP (SKU, ITEM_NO) VALUES (?, ?)", ma, 2, NULL) !=
            CPB_OK) {
            fprintf(stderr, "seed: %s\n", db_last_error(db));
            goto out;
        }
    }
    if (db_commit(db) != CPB_OK) {
        fprintf(stderr, "seed: %s\n", db_last_error(db));
        goto out;
    }
    snprintf(spec, sizeof spec,
             "{\"seed\": %d, \"sku_prefix\": \"P\", \"variations\": %d, \"every\": %d}", PRODUCTS,
             VARIATIONS, EVERY);
    json_t *ids = ctl("POST", "/_products", spec);
    size_t got = json_object_size(json_object_get(ids, "ids"));
    json_decref(ids);
    if (got != PRODUCTS + PARENTS * VARIATIONS) {
        fprintf(stderr, "seed: the stand-in made %zu products\n", got);
        goto out;
    }
    rc = 0;
out:
    db_finalize(item_st);
    db_finalize(inv_st);
    if (db != NULL && db_in_transaction(db)) {
        db_rollback(db);
    }
    db_close(db);
    return rc;
}

/* ---- the pipeline -------------------------------------------------------------- */

static const char *write_pipeline(void)
{
    char text[4096];
    char safety_text[32];
    snprintf(safety_text, sizeof safety_text, "%lld.%04lld", (long long)(safety / 10000),
             (long long)(safety % 10000));
    snprintf(text, sizeof text,
             "name = \"stock-e2e\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = %d; };\n"
             "retry = { max_attempts = 4; base = \"1s\"; cap = \"1s\"; };\n"
             "stages = (\n"
             "  { stage = \"source-cp-stock\"; id = \"cp\"; options = {\n"
             "      locations = [%s]; safety_stock = \"%s\"; }; },\n"
             "  { stage = \"push-woo-stock\"; id = \"shop-stock\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"file:%s\"; max_tries = 3; timeout = \"20s\"; }; }\n"
             ");\n",
             dialect == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_path("stock.lock"),
             RUN_BATCH, locations, safety_text, srv.port, cpbtest_path("woo.secret"));
    const char *path = cpbtest_path("stock.cfg");
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

static int run_once(struct run_result *res)
{
    const char *path = write_pipeline();
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

/* Run until no record is PENDING (retries wait out their backoff), at most
 * `max` runs. Returns the runs made. */
static int run_until_settled(struct db *db, int max)
{
    struct run_result res;
    int n = 0;
    while (n < max) {
        run_once(&res);
        n++;
        if (records(db, "PENDING") == 0) {
            break;
        }
        usleep(600 * 1000);
    }
    return n;
}

/* Every test item's SKU shows its expected quantity, managed. Returns how
 * many do not. */
static size_t wrong_in_store(void)
{
    json_t *s = store_stock();
    json_t *stock = json_object_get(s, "stock");
    json_t *managed = json_object_get(s, "manage_stock");
    size_t bad = 0;
    for (size_t i = 0; i < ITEMS; i++) {
        json_t *q = json_object_get(stock, items[i].sku);
        if (!json_is_integer(q) || json_integer_value(q) != expected(&items[i]) ||
            !json_is_true(json_object_get(managed, items[i].sku))) {
            if (bad < 5) {
                fprintf(stderr, "store: %s has %lld, expected %lld\n", items[i].sku,
                        json_is_integer(q) ? (long long)json_integer_value(q) : -1LL,
                        (long long)expected(&items[i]));
            }
            bad++;
        }
    }
    json_decref(s);
    return bad;
}

/* ---- suites ------------------------------------------------------------------------ */

static int setup_common(void)
{
    struct err err = {0};
    safety = 0;
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
    const char *const args[] = {"--key", "ck_test", "--secret", "cs_test", NULL};
    if (cpbserver_start(&srv, cpbtest_src("tests/servers/woo_standin.py"), args) != 0) {
        return -1;
    }
    return cpbtest_db_fresh(dialect, "stock_e2e", conn, sizeof conn);
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
    cpbtest_db_drop();
    cpbserver_stop(&srv);
    http_client_free(cli);
    cli = NULL;
    http_global_cleanup();
    log_reset();
    return 0;
}

/* The first push: every SKU, in batches, the catalog read once. */
static void test_first_push(void)
{
    struct run_result res;
    CU_ASSERT_EQUAL_FATAL(seed(), 0);
    struct db *db = connect_db();
    ctl_do("DELETE", "/_stats", NULL);
    ctl_do("DELETE", "/_requests", NULL);
    int code = run_once(&res);
    CU_ASSERT(code == CPB_EXIT_OK || code == CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(records(db, "DONE"), ITEMS);
    CU_ASSERT_EQUAL(records(db, "PENDING"), 0);
    CU_ASSERT_EQUAL(records(db, "DEAD"), 0);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    CU_ASSERT_EQUAL(stat_value("stock_changes"), ITEMS);
    /* The writes: 1,600 products 100 a batch, the variations one batch per
     * parent; a round's last batch of each may be short. */
    int64_t product_posts = stat_route("POST /products/batch");
    int64_t variation_posts = stat_route("POST /products/{id}/variations/batch");
    /* The reads: SKUs 100 a request (a short one per round), then the
     * variable products (17 pages of 100 here: the stand-in lists every
     * product for ?type=variable) and each one's variations, once. */
    int64_t sku_reads = stat_route("GET /products");
    int64_t variation_reads = stat_route("GET /products/{id}/variations");
    fprintf(stderr,
            "first push of %d SKUs: %lld product batches, %lld variation batches, %lld product "
            "list reads, %lld variation list reads\n",
            ITEMS, (long long)product_posts, (long long)variation_posts, (long long)sku_reads,
            (long long)variation_reads);
    CU_ASSERT(product_posts >= (ITEMS - PARENTS * VARIATIONS) / 100);
    CU_ASSERT(product_posts <= (ITEMS - PARENTS * VARIATIONS) / 100 + ROUNDS);
    CU_ASSERT(variation_posts >= PARENTS);
    CU_ASSERT(variation_posts <= PARENTS + ROUNDS);
    CU_ASSERT(sku_reads <= ITEMS / 100 + ROUNDS + (PRODUCTS + 99) / 100);
    CU_ASSERT_EQUAL(variation_reads, PARENTS);
    /* The ids are cached in each record's result. */
    json_t *r = record_result(db, "P21-3");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "variation_id")), store_id("P21-3"));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "product_id")), store_id("P21"));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "pushed")), expected(find_item("P21-3")));
    json_decref(r);
    r = record_result(db, "P1"); /* mapped: item CP-1 */
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "product_id")), store_id("P1"));
    CU_ASSERT_PTR_NULL(json_object_get(r, "variation_id"));
    json_decref(r);
    db_close(db);
}

/* Nothing changed: nothing is queued, no request is sent. */
static void test_unchanged(void)
{
    struct run_result res;
    struct db *db = connect_db();
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_EQUAL(stat_route(NULL), 0);
    CU_ASSERT_EQUAL(records(db, "PENDING"), 0);
    CU_ASSERT_EQUAL(records(db, "DONE"), ITEMS);
    db_close(db);
}

/* A sale the orders pipeline applied (QTY_ON_SO up) lowers the store's
 * quantity on the next run: one batch request, no catalog read. */
static void test_sale(void)
{
    struct run_result res;
    struct db *db = connect_db();
    struct item *it = find_item("P12");
    int64_t before = expected(it);
    CU_ASSERT_FATAL(before >= 2);
    set_qty(db, "P12", it->hnd, it->commit, it->so + 2);
    /* A mapped item (CP-5 is SKU P5) sells too. */
    it = find_item("P5");
    set_qty(db, "P5", it->hnd, it->commit, it->so + 1);
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_EQUAL(expected(find_item("P12")), before - 2);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    CU_ASSERT_EQUAL(stat_value("stock_changes"), 2);
    CU_ASSERT_EQUAL(stat_route("POST /products/batch"), 1);
    CU_ASSERT_EQUAL(stat_route(NULL), 1);
    db_close(db);
}

/* Safety stock 2.5: every quantity drops by 3 units (2.5 rounded down off
 * the rest), never below 0. */
static void test_safety_stock(void)
{
    struct db *db = connect_db();
    safety = 25000;
    run_until_settled(db, 3);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    CU_ASSERT_EQUAL(expected(find_item("P3")), 0); /* on hand below on SO */
    json_t *s = store_stock();
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(s, "stock"), "P3")), 0);
    json_decref(s);
    safety = 0;
    run_until_settled(db, 3);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* A SKU the store does not have: DEAD with sku.unknown after one try,
 * nothing more is sent for it while its quantity stays, and a person's
 * retry once the store has it pushes it. */
static void test_unknown_sku(void)
{
    struct run_result res;
    struct db *db = connect_db();
    char st[32];
    char code[64];
    struct sql_arg ia[] = {sql_text("NOPE-1")};
    exec_ok(db,
            "INSERT INTO IM_ITEM (ITEM_NO, DESCR, STAT, IS_ECOMM_ITEM) VALUES (?, 'x', 'A', 'Y')",
            ia, 1);
    struct sql_arg va[] = {sql_text("NOPE-1"), sql_text("MAIN"), sql_decimal(70000)};
    exec_ok(db, "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND) VALUES (?, ?, ?)", va, 3);
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_STRING_EQUAL(record_state(db, "NOPE-1", st, sizeof st), "DEAD");
    CU_ASSERT_STRING_EQUAL(record_code(db, "NOPE-1", code, sizeof code), "sku.unknown");
    CU_ASSERT_EQUAL(stat_value("stock_changes"), 0);
    CU_ASSERT_EQUAL(stat_route("POST /products/batch"), 0);
    CU_ASSERT(stat_route("GET /products") >= 1);
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_EQUAL(stat_route(NULL), 0);
    CU_ASSERT_STRING_EQUAL(record_state(db, "NOPE-1", st, sizeof st), "DEAD");
    /* Reported once: one 'dead' audit row over both runs. */
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_RECORD_EVENT E JOIN USER_RECORD_STAGING S ON"
                      " S.RECORD_ID = E.RECORD_ID WHERE S.REC_KEY = ? AND E.KIND = 'dead'",
                      "NOPE-1"),
        1);
    /* The product is added to the store and a person retries the record
     * (cpbridge records PIPELINE retry): it is pushed on the next run. */
    ctl_do("POST", "/_products", "[{\"sku\": \"NOPE-1\"}]");
    CU_ASSERT_EQUAL(cpbtest_sh("'%s' records '%s' retry NOPE-1 --why 'added to the store' >&2",
                               cpbtest_build("core/cpbridge"), write_pipeline()),
                    0);
    CU_ASSERT_STRING_EQUAL(record_state(db, "NOPE-1", st, sizeof st), "PENDING");
    run_once(&res);
    CU_ASSERT_STRING_EQUAL(record_state(db, "NOPE-1", st, sizeof st), "DONE");
    json_t *s = store_stock();
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(s, "stock"), "NOPE-1")), 7);
    json_decref(s);
    db_close(db);
}

/* One item of a batch fails (500 in its entry): the others are applied,
 * that one is retried and applied on a later run. */
static void test_batch_item(void)
{
    struct db *db = connect_db();
    char spec[300];
    char st[32];
    const char *skus[] = {"P13", "P14", "P15", "P16", "P17"};
    for (size_t i = 0; i < 5; i++) {
        struct item *it = find_item(skus[i]);
        set_qty(db, skus[i], it->hnd + 4, it->commit, it->so);
    }
    snprintf(spec, sizeof spec,
             "{\"kind\": \"batch_item\", \"path_regex\": \"/products/batch$\", \"order_id\": "
             "%lld, \"status\": 500, \"code\": \"internal_error\", \"times\": 1}",
             (long long)store_id("P15"));
    ctl_do("POST", "/_fault", spec);
    struct run_result res;
    run_once(&res);
    json_t *s = store_stock();
    json_t *stock = json_object_get(s, "stock");
    for (size_t i = 0; i < 5; i++) {
        int64_t want = expected(find_item(skus[i]));
        if (i == 2) {
            CU_ASSERT_NOT_EQUAL(json_integer_value(json_object_get(stock, skus[i])), want);
        } else {
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(stock, skus[i])), want);
        }
    }
    json_decref(s);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P15", st, sizeof st), "PENDING");
    run_until_settled(db, 6);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P15", st, sizeof st), "DONE");
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* 429 with Retry-After and 503 on the whole batch: the host's retry within
 * max_tries applies it in the same run; 500 past max_tries: the records
 * are retried on a later run. */
static void test_throttled(void)
{
    struct run_result res;
    struct db *db = connect_db();
    struct item *it = find_item("P18");
    set_qty(db, "P18", it->hnd + 1, it->commit, it->so);
    ctl_do("POST", "/_fault",
           "[{\"path_regex\": \"/products/batch$\", \"method\": \"POST\", \"kind\": \"status\","
           " \"status\": 429, \"retry_after\": \"1\", \"times\": 1},"
           " {\"path_regex\": \"/products/batch$\", \"method\": \"POST\", \"kind\": \"status\","
           " \"status\": 503, \"times\": 1}]");
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_EQUAL(stat_route("POST /products/batch"), 3);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);

    it = find_item("P19");
    set_qty(db, "P19", it->hnd + 1, it->commit, it->so);
    ctl_do("POST", "/_fault",
           "{\"path_regex\": \"/products/batch$\", \"method\": \"POST\", \"kind\": \"status\","
           " \"status\": 500, \"times\": 3}");
    run_once(&res);
    char st[32];
    CU_ASSERT_STRING_EQUAL(record_state(db, "P19", st, sizeof st), "PENDING");
    run_until_settled(db, 6);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P19", st, sizeof st), "DONE");
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* A product removed from the store and created again (a new id): the
 * cached id is refused, cleared and resolved again by SKU. */
static void test_id_removed(void)
{
    struct db *db = connect_db();
    char path[64];
    char st[32];
    int64_t old_id = store_id("P20");
    snprintf(path, sizeof path, "/_products/%lld", (long long)old_id);
    ctl_do("DELETE", path, NULL);
    ctl_do("POST", "/_products", "[{\"sku\": \"P20\", \"stock_quantity\": 0}]");
    int64_t new_id = store_id("P20");
    CU_ASSERT_NOT_EQUAL(new_id, old_id);
    struct item *it = find_item("P20");
    set_qty(db, "P20", it->hnd + 2, it->commit, it->so);
    run_until_settled(db, 6);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P20", st, sizeof st), "DONE");
    json_t *r = record_result(db, "P20");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "product_id")), new_id);
    json_decref(r);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* A variable product with more variations than the store's default page
 * (10): its list is read again in full, and every variation is found. */
static void test_many_variations(void)
{
    struct run_result res;
    struct db *db = connect_db();
    json_t *spec = json_pack("[{s:s, s:[]}]", "sku", "BIG", "variations");
    json_t *vars = json_object_get(json_array_get(spec, 0), "variations");
    for (int v = 1; v <= 12; v++) {
        char sku[16];
        snprintf(sku, sizeof sku, "BIG-%d", v);
        json_array_append_new(vars, json_pack("{s:s}", "sku", sku));
        struct sql_arg ia[] = {sql_text(sku)};
        exec_ok(
            db,
            "INSERT INTO IM_ITEM (ITEM_NO, DESCR, STAT, IS_ECOMM_ITEM) VALUES (?, 'x', 'A', 'Y')",
            ia, 1);
        struct sql_arg va[] = {sql_text(sku), sql_text("MAIN"), sql_decimal(v * 10000)};
        exec_ok(db, "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND) VALUES (?, ?, ?)", va, 3);
    }
    char *text = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    ctl_do("POST", "/_products", text);
    free(text);
    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    json_t *st = store_stock();
    for (int v = 1; v <= 12; v++) {
        char sku[16];
        snprintf(sku, sizeof sku, "BIG-%d", v);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(st, "stock"), sku)), v);
    }
    json_decref(st);
    /* Page 1 of every variable product's list, and BIG's again in full. */
    CU_ASSERT_EQUAL(stat_route("GET /products/{id}/variations"), PARENTS + 2);
    CU_ASSERT_EQUAL(stat_route("POST /products/{id}/variations/batch"), 1);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* The store refuses the key (a wrong secret): the records wait, PENDING
 * with stock.auth, and are pushed once the secret is right again. */
static void test_wrong_key(void)
{
    struct run_result res;
    struct db *db = connect_db();
    char st[32];
    char code[64];
    struct item *it = find_item("P22");
    set_qty(db, "P22", it->hnd + 3, it->commit, it->so);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("woo.secret"), "cs_wrong\n"), 0);
    run_once(&res);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P22", st, sizeof st), "PENDING");
    CU_ASSERT_STRING_EQUAL(record_code(db, "P22", code, sizeof code), "stock.auth");
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("woo.secret"), "cs_test\n"), 0);
    run_until_settled(db, 6);
    CU_ASSERT_STRING_EQUAL(record_state(db, "P22", st, sizeof st), "DONE");
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

/* A sale the orders pipeline itself applied — source-file, validate,
 * create-order and update-qty on the same database, a pipeline of its own
 * beside the stock one — lowers the store's quantity on the next stock
 * run. The sample order sells 2 of TSHIRT-BLU-M (a demo item, published
 * and added to the store here). */
static void test_sale_by_orders_pipeline(void)
{
    struct run_result res;
    struct pipeline *p = NULL;
    struct err e = {0};
    char text[4096];
    struct db *db = connect_db();
    struct sql_arg item[] = {sql_text("TSHIRT-BLU-M")};
    exec_ok(db, "UPDATE IM_ITEM SET IS_ECOMM_ITEM = 'Y' WHERE ITEM_NO = ?", item, 1);
    exec_ok(db,
            "UPDATE IM_INV SET QTY_ON_HND = 40, QTY_COMMIT = 0, QTY_ON_SO = 0 WHERE ITEM_NO = ?"
            " AND LOC_ID = 'MAIN'",
            item, 1);
    ctl_do("POST", "/_products",
           "[{\"sku\": \"TSHIRT-BLU-M\", \"stock_quantity\": 0, \"manage_stock\": true}]");
    run_once(&res);
    json_t *s = store_stock();
    int64_t before =
        (int64_t)json_integer_value(json_object_get(json_object_get(s, "stock"), "TSHIRT-BLU-M"));
    json_decref(s);
    CU_ASSERT_EQUAL(before, (400000 - safety) / 10000);

    snprintf(text, sizeof text,
             "name = \"orders-e2e\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; };\n"
             "stages = (\n"
             "  { stage = \"source-file\"; id = \"files\"; options = { path = \"%s\"; }; },\n"
             "  { stage = \"validate\"; options = { allow_walk_in = true;"
             " price_check = \"warn\"; }; },\n"
             "  { stage = \"create-order\"; },\n"
             "  { stage = \"update-qty\"; }\n"
             ");\n",
             dialect == DB_SQLITE ? "sqlite" : "postgresql", conn, cpbtest_path("orders.lock"),
             cpbtest_src("pipelines/samples/2001-multi-line.json"));
    const char *orders = cpbtest_path("orders.cfg");
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(orders, text), 0);
    struct run_options o = {.pipeline_path = orders};
    struct run_result ores;
    CU_ASSERT_EQUAL_FATAL(pipeline_open(orders, &p, &e), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_init(p, &e), 0);
    CU_ASSERT_EQUAL(runner_run(p, &o, &ores, &e), 0);
    pipeline_close(p);
    CU_ASSERT_EQUAL(ores.counts.applied, 1);

    ctl_do("DELETE", "/_stats", NULL);
    run_once(&res);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 1); /* the t-shirt alone changed */
    s = store_stock();
    CU_ASSERT_EQUAL(
        (int64_t)json_integer_value(json_object_get(json_object_get(s, "stock"), "TSHIRT-BLU-M")),
        before - 2);
    json_decref(s);
    CU_ASSERT_EQUAL(stat_route("POST /products/batch"), 1);
    db_close(db);
}

/* A location Counterpoint does not have (a typo, a wrong case) reads as
 * nothing at all: the source fails before staging, rather than every SKU
 * at 0 — the store is left as it was and nothing is sent. */
static void test_unknown_location(void)
{
    struct run_result res;
    struct db *db = connect_db();
    struct item *it = find_item("P30");
    set_qty(db, "P30", it->hnd + 5, it->commit, it->so); /* a change that must wait */
    locations = "\"MAIN\", \"main\"";
    ctl_do("DELETE", "/_stats", NULL);
    CU_ASSERT_EQUAL(run_once(&res), CPB_EXIT_ATTENTION);
    CU_ASSERT_TRUE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 0);
    CU_ASSERT_EQUAL(stat_route(NULL), 0);
    locations = "\"MAIN\"";
    run_once(&res);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 1);
    CU_ASSERT_EQUAL(wrong_in_store(), 0);
    db_close(db);
}

static const struct cpbtest_case cases[] = {
    {"first push", test_first_push},
    {"nothing changed", test_unchanged},
    {"a sale lowers the quantity", test_sale},
    {"safety stock and the floor", test_safety_stock},
    {"unknown SKU reported once", test_unknown_sku},
    {"one bad item in a batch", test_batch_item},
    {"429 and 5xx", test_throttled},
    {"id removed from the store", test_id_removed},
    {"a product with many variations", test_many_variations},
    {"a refused key", test_wrong_key},
    {"a sale the orders pipeline applied lowers the quantity", test_sale_by_orders_pipeline},
    {"an unknown location stages nothing", test_unknown_location},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
