/*
 * test_source_woo.c — the source-woo stage against the WooCommerce stand-in
 * (tests/servers/woo_standin.py, real HTTP on 127.0.0.1) with orders staged
 * in a real SQLite database through the engine's staging code: pagination
 * and the cursor, the strictly-greater-than boundary and the overlap,
 * orders changed while the pages are read, every fault the stand-in can
 * make (401, 404, 429 + Retry-After, 500, slow, HTML, truncated, malformed
 * JSON, a failure on page 3 of 5, staging that fails), OAuth 1.0a over
 * http (the stand-in verifies signatures), Basic over https-mode, `since`,
 * secrets kept out of the log, a run through the real runner, and the
 * OAuth reference test vector.
 *
 * The stage is loaded as the engine loads it (pipeline_open: dlopen, the
 * declared options, init); the test plays the runner's part for emit so it
 * can count outcomes and make staging fail on demand.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "lib/order.h"
#include "services/db.h"
#include "services/http.h"
#include "services/log.h"
#include "services/sql.h"
#include "woo_oauth.h"

static struct cpbserver srv;   /* OAuth over plain http (the stand-in's default) */
static struct cpbserver https; /* --https-mode: Basic auth accepted */
static struct http_client *cli;
static char fixture_max[24]; /* highest date_modified_gmt of the listed orders */
static unsigned case_no;

/* ---- the stand-in ------------------------------------------------------------ */

/* One control call; returns the parsed answer (new reference) or NULL. */
static json_t *ctl(struct cpbserver *s, const char *method, const char *path, const char *body)
{
    json_t *doc = cpbserver_json(s, cli, method, path, body);
    CU_ASSERT_PTR_NOT_NULL(doc); /* answered 2xx with JSON (why printed otherwise) */
    return doc;
}

static void ctl_do(struct cpbserver *s, const char *method, const char *path, const char *body)
{
    json_t *doc = ctl(s, method, path, body);
    CU_ASSERT_PTR_NOT_NULL(doc);
    json_decref(doc);
}

/* Back to the fixture orders, no faults, hooks or recorded requests. */
static void reset(struct cpbserver *s)
{
    char *orders = cpbtest_slurp(cpbtest_src("tests/fixtures/woo/orders-basic.json"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orders);
    ctl_do(s, "DELETE", "/_orders", NULL);
    ctl_do(s, "DELETE", "/_fault", NULL);
    ctl_do(s, "DELETE", "/_hook", NULL);
    ctl_do(s, "POST", "/_orders", orders);
    ctl_do(s, "DELETE", "/_requests", NULL);
    free(orders);
}

/* The recorded list requests (GET .../orders), a new array. */
static json_t *list_requests(struct cpbserver *s)
{
    json_t *all = ctl(s, "GET", "/_requests", NULL);
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        const char *path = json_string_value(json_object_get(r, "path"));
        const char *method = json_string_value(json_object_get(r, "method"));
        if (path != NULL && method != NULL && strcmp(method, "GET") == 0 &&
            strcmp(path, "/wp-json/wc/v3/orders") == 0) {
            json_array_append(out, r);
        }
    }
    json_decref(all);
    return out;
}

static const char *param(json_t *req, const char *name)
{
    return json_string_value(json_object_get(json_object_get(req, "params"), name));
}

/* ---- the harness: the stage loaded by the engine, emit into staging ------------- */

struct harness {
    struct db *db;
    char conn[1024];
    unsigned emits;
    int fail_at; /* emit number that returns CPB_RETRY; 0: never */
    unsigned added, updated, unchanged, rejected;
    char code[64];
    char msg[1200];
};

static enum cpb_status harness_emit(void *owner, struct cpb_ctx *ctx, json_t *order)
{
    struct harness *h = owner;
    json_t *norm = NULL;
    char msg[300];
    char hash[65];
    enum upsert_outcome outcome;
    int64_t id = 0;
    enum cpb_status rc = CPB_RETRY;
    (void)ctx;
    h->emits++;
    if (h->fail_at > 0 && h->emits >= (unsigned)h->fail_at) {
        return CPB_RETRY; /* as the runner does when the database fails */
    }
    if (order_normalize(order, &norm, msg, sizeof msg) != 0) {
        h->rejected++;
        return CPB_FAIL;
    }
    char *payload = json_dumps(order, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (payload != NULL && order_hash(norm, hash) == 0 &&
        staging_upsert(h->db, "woo", norm, payload, hash, host_now_ms(), "test", &outcome, &id) ==
            CPB_OK) {
        rc = CPB_OK;
        if (outcome == UPSERT_NEW) {
            h->added++;
        } else if (outcome == UPSERT_UPDATED) {
            h->updated++;
        } else {
            h->unchanged++;
            rc = CPB_SKIP;
        }
    }
    free(payload);
    json_decref(norm);
    return rc;
}

static void harness_open(struct harness *h)
{
    struct err e = {0};
    int from = 0;
    int to = 0;
    memset(h, 0, sizeof *h);
    snprintf(h->conn, sizeof h->conn, "%s", cpbtest_sqlite_conn());
    CU_ASSERT_EQUAL_FATAL(db_connect(h->conn, DB_SQLITE, 5000, &h->db, &e), 0);
    CU_ASSERT_EQUAL_FATAL(schema_init(h->db, false, 0, &from, &to, &e), 0);
}

static void harness_close(struct harness *h)
{
    db_close(h->db);
    h->db = NULL;
}

/* Write a pipeline with one source-woo stage (id "woo") for server s;
 * `opts` are extra option lines (max_tries 1 and timeout 10s unless they
 * set them). Returns the path (static rotation). */
static const char *pipeline_for(struct harness *h, struct cpbserver *s, const char *opts)
{
    char name[64];
    char text[4096];
    snprintf(name, sizeof name, "woo%u.cfg", ++case_no);
    snprintf(text, sizeof text,
             "name = \"woo-test\";\n"
             "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; };\n"
             "stages = (\n"
             "  { stage = \"source-woo\"; id = \"woo\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"cs_test\"; %s %s\n"
             "      %s }; }\n"
             ");\n",
             h->conn, cpbtest_path("woo.lock"), s->port,
             opts != NULL && strstr(opts, "max_tries") != NULL ? "" : "max_tries = 1;",
             opts != NULL && strstr(opts, "timeout") != NULL ? "" : "timeout = \"10s\";",
             opts != NULL ? opts : "");
    const char *path = cpbtest_path(name);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

/* Open the pipeline as the engine does and call the source once. */
static enum cpb_status run_source(struct harness *h, struct cpbserver *s, const char *opts,
                                  const char *since)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    enum cpb_status st = CPB_FAIL;
    const char *path = pipeline_for(h, s, opts);
    h->code[0] = '\0';
    h->msg[0] = '\0';
    h->emits = 0;
    if (pipeline_open(path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        fprintf(stderr, "pipeline: %s\n", e.msg);
        CU_FAIL("the pipeline did not open");
        pipeline_close(p);
        return CPB_FAIL;
    }
    struct stage_inst *si = &p->st[0];
    p->env.db = h->db;
    p->env.emit = harness_emit;
    p->env.owner = h;
    json_t *params = json_object();
    if (since != NULL) {
        json_object_set_new(params, "since", json_string(since));
    }
    struct cpb_record rec = {.size = sizeof rec, .payload = params};
    host_reason_clear(si->ctx);
    st = si->ls.desc->process(si->state, &rec);
    snprintf(h->code, sizeof h->code, "%s", host_reason_code(si->ctx));
    snprintf(h->msg, sizeof h->msg, "%s", host_reason_message(si->ctx));
    if (st != CPB_OK) {
        fprintf(stderr, "source-woo: %d %s: %s\n", st, h->code, h->msg);
    }
    json_decref(params);
    p->env.db = NULL;
    p->env.emit = NULL;
    pipeline_close(p);
    return st;
}

/* The saved cursor (new string) or NULL. */
static char *cursor(struct harness *h)
{
    char *v = NULL;
    CU_ASSERT_EQUAL(staging_state_get(h->db, "woo-test/woo/cursor", &v), CPB_OK);
    return v;
}

static void assert_cursor(struct harness *h, const char *want)
{
    char *c = cursor(h);
    if (want == NULL) {
        CU_ASSERT_PTR_NULL(c);
    } else {
        CU_ASSERT_PTR_NOT_NULL(c);
        if (c != NULL) {
            CU_ASSERT_STRING_EQUAL(c, want);
            if (strcmp(c, want) != 0) {
                fprintf(stderr, "cursor %s, expected %s\n", c, want);
            }
        }
    }
    free(c);
}

static int64_t count_rows(struct harness *h, const char *sql)
{
    int64_t v = -1;
    CU_ASSERT_EQUAL(sql_query_int(h->db, sql, NULL, 0, &v, NULL), CPB_OK);
    return v;
}

/* The staged payload's customer_note of an order (new string) or NULL. */
static char *staged_note(struct harness *h, const char *ext)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char *out = NULL;
    json_error_t jerr;
    if (sql_query(h->db, "SELECT PAYLOAD FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                  (struct sql_arg[]){sql_text(ext)}, 1, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        json_t *o = json_loads(v, 0, &jerr);
        const char *n = json_string_value(json_object_get(o, "customer_note"));
        out = n != NULL ? strdup(n) : NULL;
        json_decref(o);
    }
    db_finalize(st);
    return out;
}

static void touch(struct cpbserver *s, int id, const char *date, const char *note)
{
    char path[64];
    char body[300];
    snprintf(path, sizeof path, "/_orders/%d/touch", id);
    if (date != NULL) {
        snprintf(body, sizeof body, "{\"date_modified_gmt\": \"%s\", \"customer_note\": \"%s\"}",
                 date, note);
    } else {
        snprintf(body, sizeof body, "{\"customer_note\": \"%s\"}", note);
    }
    ctl_do(s, "POST", path, body);
}

static void fault(struct cpbserver *s, const char *spec)
{
    ctl_do(s, "POST", "/_fault", spec);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- suite setup ------------------------------------------------------------------ */

static int setup(void)
{
    struct err err = {0};
    json_error_t jerr;
    if (http_global_init(&err) != 0) {
        return -1;
    }
    cli = http_client_new("test");
    const char *const plain[] = {"--key", "ck_test", "--secret", "cs_test", NULL};
    const char *const tls[] = {"--key", "ck_test", "--secret", "cs_test", "--https-mode", NULL};
    if (cli == NULL ||
        cpbserver_start(&srv, cpbtest_src("tests/servers/woo_standin.py"), plain) != 0 ||
        cpbserver_start(&https, cpbtest_src("tests/servers/woo_standin.py"), tls) != 0) {
        return -1;
    }
    /* The highest date_modified_gmt among the orders a "status=any" list
     * shows (trash left out), computed from the fixture itself. */
    json_t *all = json_load_file(cpbtest_src("tests/fixtures/woo/orders-basic.json"), 0, &jerr);
    size_t i;
    json_t *o;
    fixture_max[0] = '\0';
    json_array_foreach(all, i, o)
    {
        const char *m = json_string_value(json_object_get(o, "date_modified_gmt"));
        const char *st = json_string_value(json_object_get(o, "status"));
        if (m != NULL && st != NULL && strcmp(st, "trash") != 0 && strcmp(m, fixture_max) > 0) {
            snprintf(fixture_max, sizeof fixture_max, "%s", m);
        }
    }
    json_decref(all);
    return fixture_max[0] != '\0' ? 0 : -1;
}

static int teardown(void)
{
    cpbserver_stop(&srv);
    cpbserver_stop(&https);
    http_client_free(cli);
    http_global_cleanup();
    log_reset();
    return 0;
}

/* ---- OAuth: the reference vector ---------------------------------------------------- */

static const struct woo_param vector_params[] = {
    {"status", "processing"},
    {"per_page", "20"},
    {"oauth_consumer_key", "ck_test"},
    {"oauth_timestamp", "1700000000"},
    {"oauth_nonce", "abcdef0123456789abcdef0123456789"},
    {"oauth_signature_method", "HMAC-SHA1"},
};

static void test_oauth_vector(void)
{
    char sig[WOO_SIG_MAX];
    char *base =
        woo_oauth_base_string("get", "http://example.com/wp-json/wc/v3/orders", vector_params, 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(base);
    CU_ASSERT_STRING_EQUAL(
        base, "GET&http%3A%2F%2Fexample.com%2Fwp-json%2Fwc%2Fv3%2Forders&oauth_consumer_key%3Dck_"
              "test%26oauth_nonce%3Dabcdef0123456789abcdef0123456789%26oauth_signature_method%"
              "3DHMAC-SHA1%26oauth_timestamp%3D1700000000%26per_page%3D20%26status%3Dprocessing");
    CU_ASSERT_EQUAL(woo_oauth_signature(base, "cs_test", WOO_SIG_HMAC_SHA1, sig, sizeof sig), 0);
    CU_ASSERT_STRING_EQUAL(sig, "fH4DyLJn8OZ2AyCye9qeRFZrCVg=");

    /* In the URL the signature is percent-encoded. */
    char *enc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&enc, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(woo_rfc3986(f, sig), 0);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(enc, "fH4DyLJn8OZ2AyCye9qeRFZrCVg%3D");
    free(enc);

    /* HMAC-SHA256 of the same base string, checked against openssl(1). */
    CU_ASSERT_EQUAL(woo_oauth_signature(base, "cs_test", WOO_SIG_HMAC_SHA256, sig, sizeof sig), 0);
    CU_ASSERT_EQUAL(strlen(sig), 44);
    CU_ASSERT_EQUAL(cpbtest_write(cpbtest_path("base.txt"), base), 0);
    CU_ASSERT_EQUAL(cpbtest_sh("openssl dgst -sha256 -hmac 'cs_test&' -binary '%s' | base64 > '%s'",
                               cpbtest_path("base.txt"), cpbtest_path("sig.txt")),
                    0);
    char *want = cpbtest_slurp(cpbtest_path("sig.txt"), NULL);
    CU_ASSERT_PTR_NOT_NULL(want);
    if (want != NULL) {
        want[strcspn(want, "\n")] = '\0';
        CU_ASSERT_STRING_EQUAL(sig, want);
        free(want);
    }
    free(base);
}

static void test_rfc3986(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(woo_rfc3986(f, "aZ09-._~ +/*,=&\xc3\xa9"), 0);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(out, "aZ09-._~%20%2B%2F%2A%2C%3D%26%C3%A9");
    free(out);
}

/* ---- pagination, cursor, boundary ------------------------------------------------------ */

static void test_pages_and_cursor(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    CU_ASSERT_EQUAL(h.unchanged, 0);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 25);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE"
                                   " EXT_ORDER_ID = '5113'"),
                    0); /* trashed: not in "any" */
    assert_cursor(&h, fixture_max);

    /* Exactly 5 page requests, each as woocommerce-api.md §4 wants it. */
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_EQUAL(json_array_size(reqs), 5);
    size_t i;
    json_t *r;
    json_array_foreach(reqs, i, r)
    {
        char page[24];
        snprintf(page, sizeof page, "%zu", i + 1);
        CU_ASSERT_STRING_EQUAL(param(r, "page"), page);
        CU_ASSERT_STRING_EQUAL(param(r, "per_page"), "5");
        CU_ASSERT_STRING_EQUAL(param(r, "status"), "any");
        CU_ASSERT_STRING_EQUAL(param(r, "orderby"), "id");
        CU_ASSERT_STRING_EQUAL(param(r, "order"), "asc");
        CU_ASSERT_STRING_EQUAL(param(r, "dates_are_gmt"), "true");
        /* start_date 2020-01-01T00:00:00 minus the 2 s overlap, no "Z" */
        CU_ASSERT_STRING_EQUAL(param(r, "modified_after"), "2019-12-31T23:59:58");
        CU_ASSERT_STRING_EQUAL(param(r, "oauth_signature_method"), "HMAC-SHA256");
        CU_ASSERT_PTR_NOT_NULL(param(r, "oauth_signature"));
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "status")), 200);
        CU_ASSERT_PTR_NULL(json_object_get(json_object_get(r, "headers"), "Authorization"));
    }
    json_decref(reqs);

    /* The next run starts at the cursor minus the overlap: only the two
     * orders modified at the cursor's second come back, unchanged. */
    ctl_do(&srv, "DELETE", "/_requests", NULL);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    CU_ASSERT_EQUAL(h.updated, 0);
    CU_ASSERT_EQUAL(h.unchanged, 2);
    reqs = list_requests(&srv);
    CU_ASSERT_EQUAL(json_array_size(reqs), 1);
    CU_ASSERT_STRING_EQUAL(param(json_array_get(reqs, 0), "modified_after"), "2026-02-11T22:15:05");
    json_decref(reqs);
    assert_cursor(&h, fixture_max);
    harness_close(&h);
}

static void test_default_statuses(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    /* 14 processing orders in the fixture, one page of 100. */
    CU_ASSERT_EQUAL(h.added, 14);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE"
                                   " STORE_STATUS <> 'processing'"),
                    0);
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_EQUAL(json_array_size(reqs), 1);
    /* cancel_statuses are read too (and withdrawn, never staged: the
     * fixture's cancelled and refunded orders are not staged here). */
    CU_ASSERT_STRING_EQUAL(param(json_array_get(reqs, 0), "status"),
                           "processing,cancelled,refunded");
    CU_ASSERT_STRING_EQUAL(param(json_array_get(reqs, 0), "per_page"), "100");
    json_decref(reqs);
    harness_close(&h);
}

static void test_boundary(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = [];", NULL),
                    CPB_OK);
    assert_cursor(&h, fixture_max); /* 2026-02-11T22:15:07 */

    /* A changed at exactly the cursor's time, B one second later. */
    touch(&srv, 5101, "2026-02-11T22:15:07", "A changed");
    touch(&srv, 5102, "2026-02-11T22:15:08", "B changed");

    /* No overlap: strictly after the cursor, so only B comes back. */
    ctl_do(&srv, "DELETE", "/_requests", NULL);
    h.added = h.updated = h.unchanged = 0;
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; overlap = \"0s\";", NULL),
        CPB_OK);
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_STRING_EQUAL(param(json_array_get(reqs, 0), "modified_after"), "2026-02-11T22:15:07");
    json_decref(reqs);
    CU_ASSERT_EQUAL(h.emits, 1);
    CU_ASSERT_EQUAL(h.updated, 1);
    char *a = staged_note(&h, "5101");
    char *b = staged_note(&h, "5102");
    CU_ASSERT(a == NULL || strcmp(a, "A changed") != 0);
    CU_ASSERT(b != NULL && strcmp(b, "B changed") == 0);
    free(a);
    free(b);
    assert_cursor(&h, "2026-02-11T22:15:08");

    /* With the default 2 s overlap A is read too; B and the two orders at
     * 22:15:07 are re-read and staged unchanged: nothing twice. */
    h.added = h.updated = h.unchanged = 0;
    CU_ASSERT_EQUAL(run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = [];", NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(h.emits, 4);
    CU_ASSERT_EQUAL(h.updated, 1);
    CU_ASSERT_EQUAL(h.unchanged, 3);
    CU_ASSERT_EQUAL(h.added, 0);
    a = staged_note(&h, "5101");
    CU_ASSERT(a != NULL && strcmp(a, "A changed") == 0);
    free(a);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 25);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'staged'"),
                    25);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = 'changed'"),
                    2);
    assert_cursor(&h, "2026-02-11T22:15:08");
    harness_close(&h);
}

/* An order changed between two page requests keeps its place (by id) and
 * comes back next run by its new modification time. */
static void test_changed_between_pages(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    ctl_do(&srv, "POST", "/_hook",
           "{\"on_page\": 3, \"touch_id\": 5101, \"customer_note\": \"changed while paging\"}");
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    char *n = staged_note(&h, "5101");
    CU_ASSERT(n == NULL || strcmp(n, "changed while paging") != 0); /* read before the change */
    free(n);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.updated, 1);
    n = staged_note(&h, "5101");
    CU_ASSERT(n != NULL && strcmp(n, "changed while paging") == 0);
    free(n);
    harness_close(&h);
}

/* Two orders changed while the pages are read: one already read (page 1)
 * and one read later with a newer time. The cursor must not pass the first
 * change (it stops at the store's clock when the run began). */
static void test_two_changes_while_paging(void)
{
    struct harness h;
    char later[32];
    char hook[300];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(later, sizeof later, "%Y-%m-%dT%H:%M:%S", &tm);
    reset(&srv);
    harness_open(&h);
    snprintf(hook, sizeof hook,
             "[{\"on_page\": 3, \"touch_id\": 5101, \"customer_note\": \"first\"},"
             " {\"on_page\": 3, \"touch_id\": 5125, \"customer_note\": \"second\","
             " \"date_modified_gmt\": \"%s\"}]",
             later);
    ctl_do(&srv, "POST", "/_hook", hook);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    char *n = staged_note(&h, "5125");
    CU_ASSERT(n != NULL && strcmp(n, "second") == 0); /* read on page 5 */
    free(n);
    char *c = cursor(&h);
    CU_ASSERT(c != NULL && strcmp(c, later) < 0);
    free(c);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    n = staged_note(&h, "5101");
    CU_ASSERT(n != NULL && strcmp(n, "first") == 0);
    free(n);
    harness_close(&h);
}

/* A store's bogus future modification time does not freeze the cursor. */
static void test_future_date(void)
{
    struct harness h;
    char now[32];
    time_t t = time(NULL) + 5;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S", &tm);
    reset(&srv);
    harness_open(&h);
    touch(&srv, 5101, "2099-01-01T00:00:00", "from the future");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    char *c = cursor(&h);
    CU_ASSERT(c != NULL && strcmp(c, now) <= 0);
    free(c);
    /* An order changed now still comes back next run. */
    touch(&srv, 5102, NULL, "changed now");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    char *n = staged_note(&h, "5102");
    CU_ASSERT(n != NULL && strcmp(n, "changed now") == 0);
    free(n);
    harness_close(&h);
}

static void test_since(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = [];", "2026-02-10T18:30:00"),
        CPB_OK);
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_STRING_EQUAL(param(json_array_get(reqs, 0), "modified_after"), "2026-02-10T18:29:58");
    json_decref(reqs);
    /* 5104-5106 (18:30:00), 5103 (20:48:50), 5118 and 5119 (22:15:07) */
    CU_ASSERT_EQUAL(h.added, 6);
    assert_cursor(&h, fixture_max);

    /* A backfill from further back re-reads everything and leaves the
     * cursor where it is (never backwards). */
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = [];", "2026-01-01"), CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    assert_cursor(&h, fixture_max);

    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, "last tuesday"), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.bad_since");
    harness_close(&h);
}

/* ---- faults --------------------------------------------------------------------------- */

static void test_fault_401(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 401}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "401"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "woocommerce_rest_authentication_error"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "Consumer secret is invalid."));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "consumer_secret is wrong"));
    CU_ASSERT_EQUAL(h.emits, 0);
    assert_cursor(&h, NULL);
    harness_close(&h);
}

/* A key without Read permission: the store's message and what to do. */
static void test_key_without_read(void)
{
    struct harness h;
    struct cpbserver ro;
    const char *const args[] = {"--key",         "ck_test", "--secret", "cs_test",
                                "--permissions", "write",   NULL};
    memset(&ro, 0, sizeof ro);
    CU_ASSERT_EQUAL_FATAL(cpbserver_start(&ro, cpbtest_src("tests/servers/woo_standin.py"), args),
                          0);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &ro, NULL, NULL), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "does not have read permissions"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "lacks Read permission"));
    harness_close(&h);
    cpbserver_stop(&ro);
}

static void test_fault_404(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 404}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.not_found");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "rest_no_route"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "permalinks"));
    harness_close(&h);
}

static void test_fault_429_retry_after(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 429,"
                " \"retry_after\": \"1\"}");
    int64_t t0 = mono_ms();
    CU_ASSERT_EQUAL(run_source(&h, &srv, "max_tries = 3;", NULL), CPB_OK);
    CU_ASSERT(mono_ms() - t0 >= 900); /* Retry-After: 1 was honoured */
    CU_ASSERT_EQUAL(h.added, 14);
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_EQUAL(json_array_size(reqs), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 429);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(reqs, 1), "status")), 200);
    /* a fresh nonce for the second try (the store refuses a used one) */
    CU_ASSERT_STRING_NOT_EQUAL(param(json_array_get(reqs, 0), "oauth_nonce"),
                               param(json_array_get(reqs, 1), "oauth_nonce"));
    json_decref(reqs);
    assert_cursor(&h, "2026-02-11T22:15:07");
    harness_close(&h);
}

static void test_fault_500_keeps_cursor(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    assert_cursor(&h, "2026-02-11T22:15:07");
    touch(&srv, 5110, "2026-03-01T00:00:00", "newer");
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 500}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(h.code, "source.unavailable");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "HTTP 500"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "cursor was not moved"));
    assert_cursor(&h, "2026-02-11T22:15:07");
    /* the next run gets it */
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    assert_cursor(&h, "2026-03-01T00:00:00");
    harness_close(&h);
}

static void test_fault_slow(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"slow\", \"delay_ms\": 2500}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, "timeout = \"1s\";", NULL), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(h.code, "source.unavailable");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "timed out"));
    CU_ASSERT_EQUAL(h.emits, 0);
    assert_cursor(&h, NULL);
    /* The stand-in records the request when its delay is over: wait for
     * it, so the record does not land in a later test's log. */
    for (int i = 0; i < 50; i++) {
        json_t *reqs = list_requests(&srv);
        size_t n = json_array_size(reqs);
        json_decref(reqs);
        if (n > 0) {
            break;
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    harness_close(&h);
}

static void test_fault_html(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    /* WordPress's critical error page with a 503: retried next run */
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"html\"}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(h.code, "source.unavailable");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "HTTP 503"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "text/html"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "There has been a critical error on this website."));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "PHP fatal error"));
    /* the same page with 200: something that is not the API answered */
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"html\", \"status\": 200}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.not_json");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "HTTP 200"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "home URL"));
    CU_ASSERT_EQUAL(h.emits, 0);
    assert_cursor(&h, NULL);
    harness_close(&h);
}

static void test_fault_bad_json(void)
{
    static const char *const kinds[] = {"truncated", "malformed_json", "short_read"};
    struct harness h;
    reset(&srv);
    harness_open(&h);
    for (size_t i = 0; i < 3; i++) {
        char spec[200];
        snprintf(spec, sizeof spec, "{\"path_regex\": \"/orders$\", \"kind\": \"%s\"}", kinds[i]);
        fault(&srv, spec);
        CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_RETRY);
        if (i < 2) {
            CU_ASSERT_STRING_EQUAL(h.code, "source.bad_json");
            CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "not valid JSON"));
        } else {
            CU_ASSERT_STRING_EQUAL(h.code, "source.unavailable");
        }
        CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "cursor was not moved"));
        CU_ASSERT_EQUAL(h.emits, 0);
        assert_cursor(&h, NULL);
    }
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_OK);
    CU_ASSERT_EQUAL(h.added, 14);
    harness_close(&h);
}

static void test_fault_page_3_of_5(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    fault(&srv,
          "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 500, \"page\": 3}");
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_RETRY);
    CU_ASSERT_EQUAL(h.added, 10); /* pages 1 and 2 */
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 10);
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "page 3"));
    assert_cursor(&h, NULL);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    CU_ASSERT_EQUAL(h.unchanged, 10);
    assert_cursor(&h, fixture_max);
    harness_close(&h);
}

static void test_staging_fails(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    h.fail_at = 7;
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(h.code, "source.stage_failed");
    CU_ASSERT_EQUAL(h.emits, 10); /* the rest of page 2 had its try; no page 3 */
    CU_ASSERT_EQUAL(h.added, 6);
    assert_cursor(&h, NULL);
    json_t *reqs = list_requests(&srv);
    CU_ASSERT_EQUAL(json_array_size(reqs), 2);
    json_decref(reqs);
    h.fail_at = 0;
    CU_ASSERT_EQUAL(
        run_source(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 5;", NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 25);
    assert_cursor(&h, fixture_max);
    harness_close(&h);
}

static void test_max_pages(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(
        run_source(&h, &srv,
                   "statuses = [\"any\"]; cancel_statuses = []; per_page = 5; max_pages = 2;",
                   NULL),
        CPB_OK);
    CU_ASSERT_EQUAL(h.added, 10);
    assert_cursor(&h, NULL); /* the rest is older by id, maybe newer by time */
    harness_close(&h);
}

/* ---- authentication ---------------------------------------------------------------------- */

static void test_oauth_wrong_secret(void)
{
    struct harness h;
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &srv, "oauth_signature_method = \"HMAC-SHA1\";", NULL), CPB_OK);
    CU_ASSERT_EQUAL(h.added, 14);
    /* A wrong secret read from a file (the `file:` form). */
    char text[2048];
    snprintf(text, sizeof text,
             "name = \"woo-test\";\n"
             "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
             "stages = ( { stage = \"source-woo\"; id = \"woo\"; options = {\n"
             "  url = \"http://127.0.0.1:%d/\"; consumer_key = \"ck_test\";\n"
             "  consumer_secret = \"file:%s\"; max_tries = 1; }; } );\n",
             h.conn, srv.port, cpbtest_path("wrong.secret"));
    CU_ASSERT_EQUAL(cpbtest_write(cpbtest_path("wrong.secret"), "cs_wrong\n"), 0);
    CU_ASSERT_EQUAL(chmod(cpbtest_path("wrong.secret"), 0600), 0);
    CU_ASSERT_EQUAL(cpbtest_write(cpbtest_path("wrong.cfg"), text), 0);
    struct pipeline *p = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL_FATAL(pipeline_open(cpbtest_path("wrong.cfg"), &p, &e), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_init(p, &e), 0);
    p->env.db = h.db;
    p->env.emit = harness_emit;
    p->env.owner = &h;
    struct cpb_record rec = {.size = sizeof rec};
    host_reason_clear(p->st[0].ctx);
    CU_ASSERT_EQUAL(p->st[0].ls.desc->process(p->st[0].state, &rec), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(p->st[0].ctx), "source.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(host_reason_message(p->st[0].ctx), "Invalid signature"));
    CU_ASSERT_PTR_NOT_NULL(strstr(host_reason_message(p->st[0].ctx), "home URL"));
    p->env.db = NULL;
    pipeline_close(p);
    harness_close(&h);
}

static void test_basic_over_https(void)
{
    struct harness h;
    reset(&https);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &https, "auth = \"basic\";", NULL), CPB_OK);
    CU_ASSERT_EQUAL(h.added, 14);
    json_t *reqs = list_requests(&https);
    json_t *r = json_array_get(reqs, 0);
    const char *a =
        json_string_value(json_object_get(json_object_get(r, "headers"), "Authorization"));
    CU_ASSERT(a != NULL && strncmp(a, "Basic ", 6) == 0);
    CU_ASSERT_PTR_NULL(param(r, "oauth_signature"));
    CU_ASSERT_PTR_NULL(param(r, "consumer_secret"));
    json_decref(reqs);
    harness_close(&h);

    /* Basic over plain http is refused, and the message says why. */
    reset(&srv);
    harness_open(&h);
    CU_ASSERT_EQUAL(run_source(&h, &srv, "auth = \"basic\";", NULL), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(h.code, "source.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "woocommerce_rest_cannot_view"));
    CU_ASSERT_PTR_NOT_NULL(strstr(h.msg, "Basic auth over plain HTTP"));
    harness_close(&h);
}

/* Nothing secret reaches the log: not the secret, not a signed query. */
static void test_no_secret_in_log(void)
{
    struct harness h;
    char path[1024];
    snprintf(path, sizeof path, "%s", cpbtest_path("source.log"));
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_configure(CPB_LOG_DEBUG, LOG_TEXT);
    log_set_stream(f);
    reset(&srv);
    harness_open(&h);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 503,"
                " \"retry_after\": \"0\"}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, "max_tries = 2;", NULL), CPB_OK);
    fault(&srv, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 401}");
    CU_ASSERT_EQUAL(run_source(&h, &srv, NULL, NULL), CPB_FAIL);
    harness_close(&h);
    reset(&https);
    harness_open(&h);
    fault(&https, "{\"path_regex\": \"/orders$\", \"kind\": \"status\", \"status\": 503,"
                  " \"retry_after\": \"0\"}");
    CU_ASSERT_EQUAL(run_source(&h, &https, "auth = \"basic\"; max_tries = 2;", NULL), CPB_OK);
    harness_close(&h);
    log_set_stream(NULL);
    log_configure(CPB_LOG_INFO, LOG_TEXT);
    fclose(f);
    char *text = cpbtest_slurp(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "retrying")); /* the log was written */
    CU_ASSERT_PTR_NULL(strstr(text, "cs_test"));
    CU_ASSERT_PTR_NULL(strstr(text, "oauth_signature="));
    CU_ASSERT_PTR_NULL(strstr(text, "oauth_nonce="));
    CU_ASSERT_PTR_NULL(strstr(text, "modified_after="));
    CU_ASSERT_PTR_NULL(strstr(h.msg, "cs_test"));
    free(text);
}

static void test_init_checks(void)
{
    static const char *const bad[] = {
        "url = \"ftp://127.0.0.1\";",
        "url = \"http://user:pw@127.0.0.1\";",
        "url = \"http://127.0.0.1/wp-json/wc/v3\";",
        "url = \"http://127.0.0.1/?x=1\";",
        "url = \"http://127.0.0.1:99999\";",
        "statuses = [\"processing,completed\"];",
        "start_date = \"2026-02-30\";",
    };
    struct harness h;
    harness_open(&h);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[2048];
        struct pipeline *p = NULL;
        struct err e = {0};
        snprintf(text, sizeof text,
                 "name = \"woo-test\";\n"
                 "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
                 "stages = ( { stage = \"source-woo\"; options = {\n"
                 "  %s %s consumer_key = \"ck\"; consumer_secret = \"cs\"; }; } );\n",
                 h.conn, strncmp(bad[i], "url", 3) == 0 ? "" : "url = \"http://127.0.0.1\";",
                 bad[i]);
        CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("bad.cfg"), text), 0);
        CU_ASSERT_EQUAL_FATAL(pipeline_open(cpbtest_path("bad.cfg"), &p, &e), 0);
        int rc = pipeline_init(p, &e);
        CU_ASSERT_NOT_EQUAL(rc, 0);
        if (rc == 0) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
        }
        pipeline_close(p);
    }
    harness_close(&h);
}

/* ---- through the real runner ------------------------------------------------------------ */

static void test_runner(void)
{
    struct harness h;
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_result res;
    reset(&srv);
    harness_open(&h);
    const char *path =
        pipeline_for(&h, &srv, "statuses = [\"any\"]; cancel_statuses = []; per_page = 10;");
    struct run_options o = {.pipeline_path = path};
    CU_ASSERT_EQUAL_FATAL(pipeline_open(path, &p, &e), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_init(p, &e), 0);
    runner_run(p, &o, &res, &e);
    CU_ASSERT_FALSE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.staged, 25);
    runner_run(p, &o, &res, &e); /* again: the overlap re-reads two, unchanged */
    CU_ASSERT_FALSE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    pipeline_close(p);
    assert_cursor(&h, fixture_max);
    CU_ASSERT_EQUAL(count_rows(&h, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 25);
    harness_close(&h);
}

static const struct cpbtest_case oauth_cases[] = {
    {"reference test vector", test_oauth_vector},
    {"RFC 3986 encoding", test_rfc3986},
    {NULL, NULL},
};

static const struct cpbtest_case source_cases[] = {
    {"pages and the cursor", test_pages_and_cursor},
    {"default statuses", test_default_statuses},
    {"strictly after the cursor, overlap de-duplicated", test_boundary},
    {"an order changed between pages comes back", test_changed_between_pages},
    {"two changes while paging: cursor stops at the store's clock", test_two_changes_while_paging},
    {"a future modification time does not freeze the cursor", test_future_date},
    {"since overrides the cursor", test_since},
    {"401: FAIL with the store's message", test_fault_401},
    {"key without Read permission: FAIL", test_key_without_read},
    {"404 rest_no_route: FAIL", test_fault_404},
    {"429 with Retry-After is retried", test_fault_429_retry_after},
    {"500: RETRY, cursor kept", test_fault_500_keeps_cursor},
    {"slow answer beyond the timeout: RETRY", test_fault_slow},
    {"HTML instead of JSON", test_fault_html},
    {"truncated, malformed, short: RETRY", test_fault_bad_json},
    {"page 3 of 5 fails", test_fault_page_3_of_5},
    {"staging fails: stop, cursor kept", test_staging_fails},
    {"max_pages bound keeps the cursor", test_max_pages},
    {"OAuth: SHA1 works, wrong secret refused", test_oauth_wrong_secret},
    {"Basic over https-mode; refused over http", test_basic_over_https},
    {"no secret in the log", test_no_secret_in_log},
    {"init refuses bad options", test_init_checks},
    {"through the runner", test_runner},
    {NULL, NULL},
};

static const struct cpbtest_suite oauth_suite = {"oauth", NULL, NULL, oauth_cases};
static const struct cpbtest_suite source_suite = {"source", setup, teardown, source_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&oauth_suite, &source_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
