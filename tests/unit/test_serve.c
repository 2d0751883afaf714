/*
 * test_serve.c — `cpbridge serve`, the real program, on SQLite and on
 * PostgreSQL (a schema of CPB_TEST_PG): signed WooCommerce webhook
 * deliveries over HTTP (the signature computed here with OpenSSL, checked
 * against woocommerce-api.md §10's test vector), each answered only once
 * the order is staged, applied by the server's workers through the runner,
 * and every refusal: the unsigned ping, a missing or wrong signature, a
 * topic or body that is not an order, a status the source does not stage,
 * a body over the limit, a database that refuses the order (503, then the
 * store's retry). order.deleted cancels a staged order; an applied one the
 * store removes or cancels is rolled back (run.store_cancel). `cpbridge run` works beside it;
 * health shows the receiver up, stopped (SIGTERM, exit 0) and gone (SIGKILL: CRITICAL).
 */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "services/db.h"
#include "services/http.h"
#include "services/sql.h"

#define SECRET "s3cret"

static struct cpbserver srv;
static struct http_client *cli;
static enum db_dialect dialect;
static char conn[2048];
static char cfg_path[1024];

/* ---- helpers --------------------------------------------------------------------- */

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* base64(HMAC-SHA256(body, secret)) into out[64]. */
static void sign(const char *secret, const char *body, size_t len, char out[64])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac, &n);
    EVP_EncodeBlock((unsigned char *)out, mac, (int)n);
}

/* POST body to `path` with the topic and signature headers (either NULL:
 * left out); returns the HTTP status, the answer's text in out. */
static long post(const char *path, const char *topic, const char *signature, const char *body,
                 size_t len, char *out, size_t n)
{
    char *url = cpbserver_url(&srv, path);
    char th[120];
    char sh[120];
    const char *hdrs[4];
    size_t k = 0;
    hdrs[k++] = "Content-Type: application/json";
    if (topic != NULL) {
        snprintf(th, sizeof th, "X-WC-Webhook-Topic: %s", topic);
        hdrs[k++] = th;
    }
    if (signature != NULL) {
        snprintf(sh, sizeof sh, "X-WC-Webhook-Signature: %s", signature);
        hdrs[k++] = sh;
    }
    hdrs[k] = NULL;
    struct cpb_http_request r = {.size = sizeof r,
                                 .method = "POST",
                                 .url = url,
                                 .headers = hdrs,
                                 .body = body,
                                 .body_len = len,
                                 .timeout_ms = 20000,
                                 .max_tries = 1};
    struct cpb_http_response resp;
    (void)http_perform(cli, &r, &resp);
    long status = resp.status;
    if (out != NULL) {
        snprintf(out, n, "%s", resp.body != NULL ? resp.body : "");
    }
    http_response_free(&resp);
    free(url);
    return status;
}

/* A signed delivery of `body` for `topic`. */
static long deliver(const char *topic, const char *body)
{
    char sig[64];
    sign(SECRET, body, strlen(body), sig);
    return post("/webhooks/shop", topic, sig, body, strlen(body), NULL, 0);
}

/* A complete processing order (REST shape); `sku` of its one line. */
static char *order_text(int id, const char *status, const char *sku)
{
    char *text = NULL;
    json_error_t e;
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"id\": %d, \"number\": \"%d\", \"status\": \"%s\", \"currency\": \"USD\","
             " \"date_created_gmt\": \"2026-12-01T10:00:00\","
             " \"date_modified_gmt\": \"2026-12-01T10:05:00\", \"date_paid_gmt\": null,"
             " \"customer_id\": 0, \"total\": \"44.98\", \"total_tax\": \"0.00\","
             " \"cart_tax\": \"0.00\", \"shipping_total\": \"5.00\", \"shipping_tax\": \"0.00\","
             " \"discount_total\": \"0.00\", \"discount_tax\": \"0.00\","
             " \"payment_method\": \"card\", \"payment_method_title\": \"Card\","
             " \"billing\": {\"first_name\": \"Ann\", \"last_name\": \"Lee\","
             " \"email\": \"ann@example.com\"}, \"shipping\": {},"
             " \"line_items\": [{\"id\": 1, \"sku\": \"%s\", \"name\": \"T-shirt\","
             " \"quantity\": 2, \"subtotal\": \"39.98\", \"subtotal_tax\": \"0.00\","
             " \"total\": \"39.98\", \"total_tax\": \"0.00\", \"price\": 19.99}],"
             " \"shipping_lines\": [{\"id\": 2, \"method_title\": \"Flat\", \"method_id\":"
             " \"flat_rate\", \"total\": \"5.00\", \"total_tax\": \"0.00\"}],"
             " \"fee_lines\": [], \"coupon_lines\": []}",
             id, id, status, sku);
    json_t *o = json_loads(buf, 0, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static struct db *connect_db(void)
{
    return cpbtest_connect(conn, dialect);
}

static int64_t rows_of(struct db *db, const char *ext)
{
    return cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", ext);
}

/* Wait up to 10 s for order ext to reach `status`; true when it did. */
static bool wait_status(struct db *db, const char *ext, const char *status)
{
    for (int i = 0; i < 200; i++) {
        char *s =
            cpbtest_q_text(db, "SELECT STATUS FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", ext);
        bool done = s != NULL && strcmp(s, status) == 0;
        free(s);
        if (done) {
            return true;
        }
        pause_ms(50);
    }
    return false;
}

/* `cpbridge ARGS` with output into FILE; returns the exit status. */
static int cpbridge(const char *args, const char *out_file)
{
    return cpbtest_sh("'%s' %s > '%s' 2>&1", cpbtest_build("core/cpbridge"), args, out_file);
}

/* ---- the server -------------------------------------------------------------------- */

static int write_pipeline(void)
{
    char text[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s", cpbtest_path("serve.cfg"));
    snprintf(text, sizeof text,
             "name = \"serve-test\";\n"
             "stage_dirs = [\"%s\"];\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = 5; store_cancel = \"rollback\"; };\n"
             "log = { level = \"debug\"; };\n"
             "serve = { port = 0; workers = 2; coalesce = \"50ms\"; sweep = \"1s\";\n"
             "          max_body = 4096; metrics_file = \"%s\"; };\n"
             "stages = (\n"
             "  { stage = \"source-woo\"; id = \"shop\"; options = {\n"
             "      url = \"http://127.0.0.1:9\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"cs_test\"; webhook_secret = \"file:%s\";\n"
             "      statuses = [\"processing\"]; }; },\n"
             "  { stage = \"validate\"; options = { allow_walk_in = true; }; },\n"
             "  { stage = \"create-order\"; },\n"
             "  { stage = \"update-qty\"; }\n"
             ");\n",
             cpbtest_build("stages"), dialect == DB_SQLITE ? "sqlite" : "postgresql", conn,
             cpbtest_path("serve.lock"), cpbtest_path("serve.prom"), cpbtest_path("hook.secret"));
    return cpbtest_write(cfg_path, text);
}

static int start_server(void)
{
    const char *const args[] = {"serve", cfg_path, NULL};
    return cpbserver_start_program(&srv, cpbtest_build("core/cpbridge"), args);
}

/* SIGTERM and the exit status (-1 when it did not end in 15 s). */
static int stop_server(void)
{
    int status = 0;
    if (srv.pid <= 0) {
        return -1;
    }
    kill(srv.pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(srv.pid, &status, WNOHANG) == srv.pid) {
            srv.pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        pause_ms(50);
    }
    cpbserver_stop(&srv);
    return -1;
}

static int setup_common(void)
{
    struct err err = {0};
    if (http_global_init(&err) != 0 || (cli = http_client_new("test")) == NULL) {
        return -1;
    }
    if (cpbtest_write(cpbtest_path("hook.secret"), SECRET "\n") != 0 ||
        chmod(cpbtest_path("hook.secret"), 0600) != 0 ||
        cpbtest_db_fresh(dialect, "serve_test", conn, sizeof conn) != 0 || write_pipeline() != 0) {
        return -1;
    }
    return start_server();
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
    cpbserver_stop(&srv);
    cpbtest_db_drop();
    http_client_free(cli);
    cli = NULL;
    http_global_cleanup();
    return 0;
}

/* ---- the tests ------------------------------------------------------------------------ */

/* The signature is the reference's (woocommerce-api.md §10). */
static void test_signature_vector(void)
{
    char sig[64];
    sign("s3cret", "{\"id\":30}", 9, sig);
    CU_ASSERT_STRING_EQUAL(sig, "0vT2UM1HssyboAVBMBjqI14cmWlp5kkpoCPhBagKqm0=");
}

/* Refused before anything is read or staged. */
static void test_refusals(void)
{
    struct db *db = connect_db();
    char out[300];
    char sig[64];
    char *o = order_text(6001, "processing", "TSHIRT-BLU-M");
    size_t len = strlen(o);
    int64_t before = cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL);
    /* The ping: unsigned, form-encoded, 200. */
    CU_ASSERT_EQUAL(post("/webhooks/shop", NULL, NULL, "webhook_id=7", 12, out, sizeof out), 200);
    /* No signature, a wrong one, one of other bytes: 401. */
    CU_ASSERT_EQUAL(post("/webhooks/shop", "order.created", NULL, o, len, out, sizeof out), 401);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "signature"));
    sign("not-the-secret", o, len, sig);
    CU_ASSERT_EQUAL(post("/webhooks/shop", "order.created", sig, o, len, NULL, 0), 401);
    sign(SECRET, o, len - 1, sig);
    CU_ASSERT_EQUAL(post("/webhooks/shop", "order.created", sig, o, len, NULL, 0), 401);
    /* Signed, but not an order: 400. */
    CU_ASSERT_EQUAL(deliver("product.updated", "{\"id\": 5}"), 400);
    CU_ASSERT_EQUAL(deliver("order.created", "[1, 2]"), 400);
    CU_ASSERT_EQUAL(deliver("order.created", "{\"id\": \"x\"}"), 400);
    CU_ASSERT_EQUAL(deliver("order.created", "{\"id\": 7, trailing"), 400);
    /* A status the source does not stage (polling would not either): 200. */
    char *held = order_text(6002, "on-hold", "TSHIRT-BLU-M");
    CU_ASSERT_EQUAL(deliver("order.updated", held), 200);
    /* Too large: 413, whatever it says. */
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    CU_ASSERT_EQUAL(deliver("order.created", big), 413);
    /* Another route, another method. */
    CU_ASSERT_EQUAL(post("/webhooks/nope", "order.created", sig, o, len, NULL, 0), 404);
    CU_ASSERT_EQUAL(post("/elsewhere", "order.created", sig, o, len, NULL, 0), 404);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING", NULL), before);
    free(held);
    free(o);
    db_close(db);
}

/* Staged before the 200, applied by the workers, once however often the
 * store delivers it. */
static void test_delivery_staged_then_applied(void)
{
    struct db *db = connect_db();
    char *o = order_text(6101, "processing", "TSHIRT-BLU-M");
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    CU_ASSERT_EQUAL(deliver("order.created", o), 200);
    CU_ASSERT_EQUAL(rows_of(db, "6101"), 1); /* durable when answered */
    CU_ASSERT_TRUE(wait_status(db, "6101", "APPLIED"));
    /* The store sends it again (order.updated fires too): nothing new. */
    CU_ASSERT_EQUAL(deliver("order.updated", o), 200);
    CU_ASSERT_EQUAL(deliver("order.created", o), 200);
    pause_ms(300);
    CU_ASSERT_EQUAL(rows_of(db, "6101"), 1);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs + 1);
    /* A burst: every order applied once. */
    for (int id = 6110; id < 6130; id++) {
        char *b = order_text(id, "processing", "TSHIRT-BLU-M");
        CU_ASSERT_EQUAL(deliver("order.created", b), 200);
        free(b);
    }
    CU_ASSERT_TRUE(wait_status(db, "6129", "APPLIED"));
    for (int i = 0;
         i < 200 && cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS ="
                                  " 'APPLIED' AND EXT_ORDER_ID >= ?",
                                  "6110") < 20;
         i++) {
        pause_ms(50);
    }
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs + 21);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'applied' AND"
                                  " STAGING_ID IN (SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID >= ?)",
                                  "6101"),
                    21);
    free(o);
    db_close(db);
}

/* The database refuses the order: 503, nothing staged; the store's retry
 * stages it. */
static void test_staging_failure_is_5xx(void)
{
    struct db *db = connect_db();
    char *o = order_text(6201, "processing", "TSHIRT-BLU-M");
    const char *refuse =
        dialect == DB_SQLITE
            ? "CREATE TRIGGER REFUSE_6201 BEFORE INSERT ON USER_ORDER_STAGING WHEN"
              " NEW.EXT_ORDER_ID = '6201' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            : "CREATE FUNCTION REFUSE_6201_F() RETURNS trigger AS $$ BEGIN IF NEW.EXT_ORDER_ID ="
              " '6201' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE"
              " plpgsql";
    CU_ASSERT_EQUAL_FATAL(db_begin(db), CPB_OK);
    CU_ASSERT_EQUAL(db_exec(db, refuse), CPB_OK);
    if (dialect == DB_POSTGRESQL) {
        CU_ASSERT_EQUAL(db_exec(db, "CREATE TRIGGER REFUSE_6201 BEFORE INSERT ON"
                                    " USER_ORDER_STAGING FOR EACH ROW EXECUTE FUNCTION"
                                    " REFUSE_6201_F()"),
                        CPB_OK);
    }
    CU_ASSERT_EQUAL_FATAL(db_commit(db), CPB_OK);
    CU_ASSERT_EQUAL(deliver("order.created", o), 503);
    CU_ASSERT_EQUAL(rows_of(db, "6201"), 0);
    CU_ASSERT_EQUAL_FATAL(db_begin(db), CPB_OK);
    CU_ASSERT_EQUAL(db_exec(db, dialect == DB_SQLITE
                                    ? "DROP TRIGGER REFUSE_6201"
                                    : "DROP TRIGGER REFUSE_6201 ON USER_ORDER_STAGING"),
                    CPB_OK);
    CU_ASSERT_EQUAL_FATAL(db_commit(db), CPB_OK);
    CU_ASSERT_EQUAL(deliver("order.created", o), 200);
    CU_ASSERT_TRUE(wait_status(db, "6201", "APPLIED"));
    free(o);
    db_close(db);
}

/* order.deleted: a staged order not applied (here INVALID: an unknown SKU)
 * is cancelled with an audit row; an applied one, and one the store
 * cancels, are rolled back (run.store_cancel = "rollback") once. */
static void test_deleted(void)
{
    struct db *db = connect_db();
    char *bad = order_text(6301, "processing", "NO-SUCH-SKU");
    CU_ASSERT_EQUAL(deliver("order.created", bad), 200);
    CU_ASSERT_TRUE(wait_status(db, "6301", "INVALID"));
    CU_ASSERT_EQUAL(deliver("order.deleted", "{\"id\":6301}"), 200);
    CU_ASSERT_TRUE(wait_status(db, "6301", "CANCELLED"));
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S ON"
                      " S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ? AND E.KIND ="
                      " 'cancelled' AND E.CODE = 'order.deleted'",
                      "6301"),
        1);
    /* Applied (6101, above), under run.store_cancel = "rollback": the
     * workers roll it back, once, however often the store says so. */
    int64_t docs = cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL);
    CU_ASSERT_EQUAL(deliver("order.deleted", "{\"id\":6101}"), 200);
    CU_ASSERT_EQUAL(deliver("order.deleted", "{\"id\":6101}"), 200);
    CU_ASSERT_TRUE(wait_status(db, "6101", "ROLLED_BACK"));
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S ON"
                      " S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ? AND E.KIND ="
                      " 'changed.after_apply' AND E.CODE = 'order.deleted'",
                      "6101"),
        1);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S ON"
                      " S.STAGING_ID = E.STAGING_ID WHERE S.EXT_ORDER_ID = ? AND E.KIND ="
                      " 'rollback' AND E.CODE = 'store.rollback'",
                      "6101"),
        1);
    /* An applied order the store sets to cancelled (order.updated): the same. */
    char *gone = order_text(6110, "cancelled", "TSHIRT-BLU-M");
    CU_ASSERT_EQUAL(deliver("order.updated", gone), 200);
    CU_ASSERT_TRUE(wait_status(db, "6110", "ROLLED_BACK"));
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT COUNT(*) FROM PS_DOC_HDR", NULL), docs - 2);
    free(gone);
    /* Unknown here: nothing to do, still 200 (the store must not retry). */
    CU_ASSERT_EQUAL(deliver("order.deleted", "{\"id\":99999}"), 200);
    free(bad);
    db_close(db);
}

/* A scheduled run beside the server: it takes its lock and runs (the
 * server holds none), and the database's claims keep them apart. */
static void test_run_beside(void)
{
    struct db *db = connect_db();
    char args[1200];
    for (int id = 6400; id < 6410; id++) {
        char *b = order_text(id, "processing", "TSHIRT-BLU-M");
        CU_ASSERT_EQUAL(deliver("order.created", b), 200);
        free(b);
    }
    snprintf(args, sizeof args, "run '%s'", cfg_path);
    int code = cpbridge(args, cpbtest_path("run.out"));
    CU_ASSERT(code == 0 || code == 1); /* not 75: no lock is held by the server */
    CU_ASSERT_TRUE(wait_status(db, "6409", "APPLIED"));
    pause_ms(300);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'applied' AND"
                                  " STAGING_ID IN (SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE"
                                  " EXT_ORDER_ID >= ? AND EXT_ORDER_ID < '6410')",
                                  "6400"),
                    10);
    db_close(db);
}

/* health: up; after SIGTERM (exit 0) WARNING, stopped; after SIGKILL
 * CRITICAL, not answering. The metrics file counts the deliveries. */
static void test_health_and_stop(void)
{
    char args[1200];
    char *out = NULL;
    snprintf(args, sizeof args, "health '%s'", cfg_path);
    pause_ms(1500); /* the receiver records its figures within a second */
    CU_ASSERT_EQUAL(cpbridge(args, cpbtest_path("health.out")), 0);
    out = cpbtest_slurp(cpbtest_path("health.out"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "receiver up, last delivery"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad_signatures=3c"));
    free(out);

    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(cpbridge(args, cpbtest_path("health.out")), 1); /* WARNING */
    out = cpbtest_slurp(cpbtest_path("health.out"), NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "receiver stopped"));
    free(out);
    out = cpbtest_slurp(cpbtest_path("serve.prom"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        out,
        "cpbridge_serve_deliveries_total{pipeline=\"serve-test\",result=\"bad_signature\"} 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "cpbridge_serve_up{pipeline=\"serve-test\"} 0"));
    /* 400 four times, 413 once, an unknown source once (test_refusals). */
    CU_ASSERT_PTR_NOT_NULL(strstr(
        out, "cpbridge_serve_deliveries_total{pipeline=\"serve-test\",result=\"refused\"} 6"));
    free(out);

    /* Killed: its last state says it runs, but nothing answers. */
    CU_ASSERT_EQUAL_FATAL(start_server(), 0);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    CU_ASSERT_EQUAL(cpbridge(args, cpbtest_path("health.out")), 2);
    out = cpbtest_slurp(cpbtest_path("health.out"), NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "receiver not answering"));
    free(out);
}

/* With serve.tls_cert and tls_key it answers over HTTPS only (a
 * certificate made here with openssl, trusted through ca_file). */
static void test_tls(void)
{
    struct cpbserver tls = {0};
    char text[4096];
    char *plain = cpbtest_slurp(cfg_path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    CU_ASSERT_EQUAL_FATAL(
        cpbtest_sh("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
                   " -addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null",
                   cpbtest_path("tls.key"), cpbtest_path("tls.crt")),
        0);
    /* The same pipeline with TLS on and its own state (another name). */
    char *at = strstr(plain, "serve = {");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    snprintf(text, sizeof text, "%.*sserve = { tls_cert = \"%s\"; tls_key = \"%s\";%s",
             (int)(at - plain), plain, cpbtest_path("tls.crt"), cpbtest_path("tls.key"),
             at + strlen("serve = {"));
    char *name = strstr(text, "serve-test");
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    memcpy(name, "serve-tlst", 10);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("tls.cfg"), text), 0);
    const char *const args[] = {"serve", cpbtest_path("tls.cfg"), NULL};
    CU_ASSERT_EQUAL_FATAL(cpbserver_start_program(&tls, cpbtest_build("core/cpbridge"), args), 0);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/webhooks/shop", tls.port);
    struct cpb_http_request r = {.size = sizeof r,
                                 .method = "POST",
                                 .url = url,
                                 .body = "webhook_id=9",
                                 .body_len = 12,
                                 .timeout_ms = 10000,
                                 .max_tries = 1,
                                 .ca_file = cpbtest_path("tls.crt")};
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.status, 200);
    http_response_free(&resp);
    /* Plain HTTP on the same port gets no answer. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", tls.port);
    r.url = url;
    r.method = "GET";
    r.body = NULL;
    r.body_len = 0;
    r.timeout_ms = 3000;
    CU_ASSERT_NOT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    CU_ASSERT_NOT_EQUAL(resp.status, 200);
    http_response_free(&resp);
    /* health probes it over HTTPS. */
    char hargs[1200];
    snprintf(hargs, sizeof hargs, "health '%s'", cpbtest_path("tls.cfg"));
    (void)cpbridge(hargs, cpbtest_path("health-tls.out"));
    char *out = cpbtest_slurp(cpbtest_path("health-tls.out"), NULL);
    CU_ASSERT_PTR_NOT_NULL(out != NULL ? strstr(out, "receiver up") : NULL);
    free(out);
    cpbserver_stop(&tls);
    free(plain);
}

static const struct cpbtest_case cases[] = {
    {"the signature matches the reference's test vector", test_signature_vector},
    {"ping 200; unsigned or wrongly signed 401; not an order 400; too large 413", test_refusals},
    {"a delivery is staged before its 200 and applied once", test_delivery_staged_then_applied},
    {"a database that refuses the order gives 503; the retry stages it",
     test_staging_failure_is_5xx},
    {"order.deleted cancels a staged order; a removed or cancelled applied one is rolled back",
     test_deleted},
    {"a scheduled run works beside the server", test_run_beside},
    {"over HTTPS with serve.tls_cert and tls_key", test_tls},
    {"health: up, stopped by SIGTERM, killed", test_health_and_stop},
    {NULL, NULL},
};
static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};
static const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};

int main(int argc, char **argv)
{
    return cpbtest_run(argc, argv, suites);
}
