/*
 * test_sync_status.c — the sync-status stage against the WooCommerce
 * stand-in (tests/servers/woo_standin.py, real HTTP on 127.0.0.1, OAuth
 * signatures verified): status and note written exactly once (checked in
 * the store through GET /_orders/{id}), the batch request's JSON content
 * type and body, a 503 retried, a crash between the status and the note
 * resumed without a second status change or note, a note whose answer was
 * lost (not sent again in the call, found by the next attempt), dry runs
 * that send nothing, statuses refused at init (a custom status by the
 * single PUT the store validates), store errors (unknown order, bad
 * status, wrong secret, a status the order must not leave), Basic auth
 * over https-mode; process_batch with many orders (one status read and one
 * batch per 100, notes `connections` at once, per-item errors retried alone
 * or refused, "200 but unchanged", a 429 that slows every note down); and
 * the after-commit retry through the real runner (source-woo, a fixture
 * step, sync-status).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/loader.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "services/db.h"
#include "services/http.h"
#include "services/log.h"
#include "services/sql.h"

#define NOTE_5101 "Imported into Counterpoint as ticket W-000042 (document 4242) by cpbridge."

static struct cpbserver srv;   /* OAuth over plain http */
static struct cpbserver https; /* --https-mode: Basic auth accepted */
static struct http_client *cli;
static unsigned case_no;

/* ---- the stand-in ------------------------------------------------------------ */

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

static void fault(struct cpbserver *s, const char *spec)
{
    ctl_do(s, "POST", "/_fault", spec);
}

/* The API requests recorded with this method whose path matches `path`
 * exactly (a new array). */
static json_t *requests(struct cpbserver *s, const char *method, const char *path)
{
    json_t *all = ctl(s, "GET", "/_requests", NULL);
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        const char *p = json_string_value(json_object_get(r, "path"));
        const char *m = json_string_value(json_object_get(r, "method"));
        if (p != NULL && m != NULL && strcmp(m, method) == 0 &&
            (path == NULL ? strncmp(p, "/wp-json/", 9) == 0 : strcmp(p, path) == 0)) {
            json_array_append(out, r);
        }
    }
    json_decref(all);
    return out;
}

static size_t count_requests(struct cpbserver *s, const char *method, const char *path)
{
    json_t *a = requests(s, method, path);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

/* How many update items for order `id` (0: any) the batch requests held. */
static size_t batch_items(struct cpbserver *s, json_int_t id)
{
    json_t *posts = requests(s, "POST", "/wp-json/wc/v3/orders/batch");
    size_t count = 0;
    size_t i;
    json_t *r;
    json_array_foreach(posts, i, r)
    {
        json_error_t jerr;
        json_t *body = json_loads(json_string_value(json_object_get(r, "body")), 0, &jerr);
        size_t j;
        json_t *item;
        json_array_foreach(json_object_get(body, "update"), j, item)
        {
            if (id == 0 || json_integer_value(json_object_get(item, "id")) == id) {
                count++;
            }
        }
        json_decref(body);
    }
    json_decref(posts);
    return count;
}

/* A figure of GET /_stats. */
static json_int_t store_stat(struct cpbserver *s, const char *key)
{
    json_t *st = ctl(s, "GET", "/_stats", NULL);
    json_int_t v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

/* The stored order's status (into out). */
static void store_status(struct cpbserver *s, int id, char *out, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/_orders/%d", id);
    json_t *o = ctl(s, "GET", path, NULL);
    const char *st = json_string_value(json_object_get(o, "status"));
    snprintf(out, n, "%s", st != NULL ? st : "(none)");
    json_decref(o);
}

/* How many of the stored order's notes hold `text`; *customer receives
 * whether any of them is a customer note. */
static size_t notes_with(struct cpbserver *s, int id, const char *text, bool *customer)
{
    char path[64];
    size_t count = 0;
    size_t i;
    json_t *note;
    snprintf(path, sizeof path, "/_orders/%d", id);
    json_t *o = ctl(s, "GET", path, NULL);
    if (customer != NULL) {
        *customer = false;
    }
    json_array_foreach(json_object_get(o, "notes"), i, note)
    {
        const char *t = json_string_value(json_object_get(note, "note"));
        if (t != NULL && strstr(t, text) != NULL) {
            count++;
            if (customer != NULL && json_is_true(json_object_get(note, "customer_note"))) {
                *customer = true;
            }
        }
    }
    json_decref(o);
    return count;
}

/* ---- the stage, loaded as the engine loads it ------------------------------------- */

struct stage {
    struct pipeline *p;
    char code[64];
    char msg[1200];
};

/* Open a pipeline with one sync-status stage for server s (`opts`: extra
 * option lines). Returns 0, or -1 with the error in st->msg. */
static int stage_open(struct stage *st, struct cpbserver *s, const char *opts)
{
    char name[64];
    char text[4096];
    struct err e = {0};
    memset(st, 0, sizeof *st);
    snprintf(name, sizeof name, "sync%u.cfg", ++case_no);
    snprintf(text, sizeof text,
             "name = \"sync-test\";\n"
             "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
             "stages = (\n"
             "  { stage = \"sync-status\"; id = \"sync\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"cs_test\"; %s %s }; }\n"
             ");\n",
             cpbtest_sqlite_conn(), s->port,
             opts != NULL && strstr(opts, "max_tries") != NULL ? "" : "max_tries = 1;",
             opts != NULL ? opts : "");
    const char *path = cpbtest_path(name);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    if (pipeline_open(path, &st->p, &e) != 0 || pipeline_init(st->p, &e) != 0) {
        snprintf(st->msg, sizeof st->msg, "%s", e.msg);
        return -1;
    }
    return 0;
}

static void stage_close(struct stage *st)
{
    pipeline_close(st->p);
    st->p = NULL;
}

/* Call the stage for an applied order as the runner would after commit:
 * attempt 1 right after the order was applied, more when resumed. */
static enum cpb_status sync_order_at(struct stage *st, const char *source, const char *ext,
                                     const char *tkt, int64_t doc, unsigned attempt)
{
    struct stage_inst *si = &st->p->st[0];
    json_t *result = json_object();
    if (tkt != NULL) {
        json_object_set_new(result, "cp_tkt_no", json_string(tkt));
    }
    if (doc > 0) {
        json_object_set_new(result, "cp_doc_id", json_integer(doc));
    }
    json_t *payload = json_pack("{s:s}", "id", ext);
    struct cpb_record rec = {.size = sizeof rec,
                             .id = 1,
                             .source = source,
                             .external_id = ext,
                             .attempt = attempt,
                             .payload = payload,
                             .result = result};
    host_reason_clear(si->ctx);
    enum cpb_status rc = si->ls.desc->process(si->state, &rec);
    snprintf(st->code, sizeof st->code, "%s", host_reason_code(si->ctx));
    snprintf(st->msg, sizeof st->msg, "%s", host_reason_message(si->ctx));
    if (rc != CPB_OK && rc != CPB_SKIP) {
        fprintf(stderr, "sync-status: %d %s: %s\n", rc, st->code, st->msg);
    }
    json_decref(result);
    json_decref(payload);
    return rc;
}

static enum cpb_status sync_order(struct stage *st, const char *source, const char *ext,
                                  const char *tkt, int64_t doc)
{
    return sync_order_at(st, source, ext, tkt, doc, 1);
}

/* Orders first..first+n-1 in the store: copies of fixture order 5101
 * ("processing"), each with its own id and number. */
static void add_orders(struct cpbserver *s, int first, size_t n)
{
    json_error_t jerr;
    json_t *all = json_load_file(cpbtest_src("tests/fixtures/woo/orders-basic.json"), 0, &jerr);
    json_t *out = json_array();
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_deep_copy(json_array_get(all, 0));
        char num[24];
        snprintf(num, sizeof num, "%d", first + (int)i);
        json_object_set_new(o, "id", json_integer(first + (json_int_t)i));
        json_object_set_new(o, "number", json_string(num));
        json_array_append_new(out, o);
    }
    char *text = json_dumps(out, JSON_COMPACT);
    ctl_do(s, "POST", "/_orders", text);
    free(text);
    json_decref(out);
    json_decref(all);
}

/* n applied orders first.. (tickets T-<id>) through process_batch, as the
 * runner calls it; out[i] and the reason codes (code[i], 64 bytes each)
 * receive each outcome. */
static void sync_batch(struct stage *st, int first, size_t n, unsigned attempt,
                       enum cpb_status *out, char (*code)[64])
{
    struct stage_inst *si = &st->p->st[0];
    struct cpb_record *recs = calloc(n, sizeof *recs);
    struct cpb_record **ptrs = calloc(n, sizeof *ptrs);
    char(*ids)[24] = calloc(n, sizeof *ids);
    CU_ASSERT_PTR_NOT_NULL_FATAL(recs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ptrs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loader_process_batch(si->ls.desc));
    for (size_t i = 0; i < n; i++) {
        char tkt[32];
        snprintf(ids[i], sizeof ids[i], "%d", first + (int)i);
        snprintf(tkt, sizeof tkt, "T-%d", first + (int)i);
        recs[i] = (struct cpb_record){.size = sizeof recs[i],
                                      .id = (int64_t)i + 1,
                                      .source = "woo",
                                      .external_id = ids[i],
                                      .attempt = attempt,
                                      .payload = json_pack("{s:s}", "id", ids[i]),
                                      .result = json_pack("{s:s, s:I}", "cp_tkt_no", tkt,
                                                          "cp_doc_id", (json_int_t)first + i)};
        ptrs[i] = &recs[i];
        out[i] = CPB_FAIL;
    }
    host_reason_clear(si->ctx);
    CU_ASSERT_EQUAL_FATAL(host_batch_begin(si->ctx, n), 0);
    loader_process_batch(si->ls.desc)(si->state, ptrs, n, out);
    for (size_t i = 0; i < n; i++) {
        snprintf(code[i], 64, "%s", host_batch_reason_code(si->ctx, i));
        if (out[i] != CPB_OK && out[i] != CPB_SKIP) {
            fprintf(stderr, "sync-status: order %s: %d %s: %s\n", ids[i], out[i], code[i],
                    host_batch_reason_message(si->ctx, i));
        }
        json_decref(recs[i].payload);
        json_decref(recs[i].result);
    }
    host_batch_end(si->ctx);
    free(recs);
    free(ptrs);
    free(ids);
}

/* ---- suite setup ------------------------------------------------------------------ */

static int setup(void)
{
    struct err err = {0};
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
    return 0;
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

/* ---- tests ------------------------------------------------------------------------- */

static void test_status_and_note_once(void)
{
    struct stage st;
    char status[64];
    bool customer = true;
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, NULL), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_OK);
    store_status(&srv, 5101, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, NOTE_5101, &customer), 1);
    CU_ASSERT_FALSE(customer); /* a customer note would email the customer */
    CU_ASSERT_EQUAL(
        notes_with(&srv, 5101, "Order status changed from Processing to Completed.", NULL), 1);

    /* One status read, one batch: JSON content type, the id and the status
     * only; no single PUT. */
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", "/wp-json/wc/v3/orders"), 1);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 0);
    json_t *puts = requests(&srv, "POST", "/wp-json/wc/v3/orders/batch");
    CU_ASSERT_EQUAL_FATAL(json_array_size(puts), 1);
    json_t *put = json_array_get(puts, 0);
    const char *ctype =
        json_string_value(json_object_get(json_object_get(put, "headers"), "Content-Type"));
    CU_ASSERT(ctype != NULL && strncmp(ctype, "application/json", 16) == 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(put, "body")),
                           "{\"update\":[{\"id\":5101,\"status\":\"completed\"}]}");
    CU_ASSERT_PTR_NOT_NULL(json_object_get(json_object_get(put, "params"), "oauth_signature"));
    json_decref(puts);
    json_t *posts = requests(&srv, "POST", "/wp-json/wc/v3/orders/5101/notes");
    CU_ASSERT_EQUAL_FATAL(json_array_size(posts), 1);
    json_error_t jerr;
    json_t *body =
        json_loads(json_string_value(json_object_get(json_array_get(posts, 0), "body")), 0, &jerr);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(body, "note")), NOTE_5101);
    CU_ASSERT(json_is_false(json_object_get(body, "customer_note")));
    json_decref(body);
    json_decref(posts);

    /* Called again, as a later attempt (the engine lost the record of it,
     * or the process died before it was recorded): nothing new. */
    ctl_do(&srv, "DELETE", "/_requests", NULL);
    CU_ASSERT_EQUAL(sync_order_at(&st, "woo", "5101", "W-000042", 4242, 2), CPB_OK);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 0);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", NULL), 0);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", NULL), 2); /* the status, the notes */
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, NOTE_5101, NULL), 1);
    stage_close(&st);
}

static void test_put_retried_on_503(void)
{
    struct stage st;
    char status[64];
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "max_tries = 3;"), 0);
    fault(&srv, "{\"path_regex\": \"/orders/batch$\", \"method\": \"POST\", \"kind\":"
                " \"status\", \"status\": 503, \"retry_after\": \"0\"}");
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5102", "W-000043", 4243), CPB_OK);
    json_t *puts = requests(&srv, "POST", "/wp-json/wc/v3/orders/batch");
    CU_ASSERT_EQUAL(json_array_size(puts), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(puts, 0), "status")), 503);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(puts, 1), "status")), 200);
    json_decref(puts);
    store_status(&srv, 5102, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    CU_ASSERT_EQUAL(notes_with(&srv, 5102, "ticket W-000043", NULL), 1);
    stage_close(&st);
}

/* The status is written, then the note fails (as if the process died
 * between the two calls); the retry must not PUT again nor add two notes. */
static void test_crash_between_put_and_note(void)
{
    struct stage st;
    char status[64];
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, NULL), 0);
    fault(&srv, "{\"path_regex\": \"/orders/5101/notes$\", \"method\": \"POST\", \"kind\":"
                " \"status\", \"status\": 503}");
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.unavailable");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "503"));
    store_status(&srv, 5101, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, NOTE_5101, NULL), 0);

    CU_ASSERT_EQUAL(sync_order_at(&st, "woo", "5101", "W-000042", 4242, 2), CPB_OK);
    CU_ASSERT_EQUAL(batch_items(&srv, 5101), 1);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 0);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", "/wp-json/wc/v3/orders/5101/notes"), 2);
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, NOTE_5101, NULL), 1);
    stage_close(&st);
}

/* A note POST the store refused unseen (503) is tried again in the call;
 * one whose answer was lost after the store made the note (the
 * connection cut mid-answer) is not, and the next attempt finds the note
 * instead of adding a second. */
static void note_retried_only_when_unsent(struct cpbserver *store, const char *opts)
{
    struct stage st;
    reset(store);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, store, opts), 0);
    fault(store, "{\"path_regex\": \"/orders/5101/notes$\", \"method\": \"POST\", \"kind\":"
                 " \"status\", \"status\": 503, \"retry_after\": \"0\"}");
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_OK);
    CU_ASSERT_EQUAL(count_requests(store, "POST", "/wp-json/wc/v3/orders/5101/notes"), 2);
    CU_ASSERT_EQUAL(notes_with(store, 5101, NOTE_5101, NULL), 1);

    fault(store, "{\"path_regex\": \"/orders/5102/notes$\", \"method\": \"POST\", \"kind\":"
                 " \"short_read\"}");
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5102", "W-000043", 4243), CPB_RETRY);
    CU_ASSERT_EQUAL(count_requests(store, "POST", "/wp-json/wc/v3/orders/5102/notes"), 1);
    CU_ASSERT_EQUAL(notes_with(store, 5102, "ticket W-000043", NULL), 1);
    CU_ASSERT_EQUAL(sync_order_at(&st, "woo", "5102", "W-000043", 4243, 2), CPB_OK);
    CU_ASSERT_EQUAL(count_requests(store, "POST", "/wp-json/wc/v3/orders/5102/notes"), 1);
    CU_ASSERT_EQUAL(count_requests(store, "GET", "/wp-json/wc/v3/orders/5102/notes"), 1);
    CU_ASSERT_EQUAL(notes_with(store, 5102, "ticket W-000043", NULL), 1);
    stage_close(&st);
}

/* Both ways of retrying: OAuth (the stage re-signs each try) and Basic (the
 * host retries). */
static void test_note_retried_only_when_unsent(void)
{
    note_retried_only_when_unsent(&srv, "max_tries = 3;");
    note_retried_only_when_unsent(&https, "max_tries = 3; auth = \"basic\";");
}

static void test_dry_run(void)
{
    struct stage st;
    char status[64];
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "dry_run = true;"), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_OK);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", NULL) + count_requests(&srv, "PUT", NULL) +
                        count_requests(&srv, "POST", NULL),
                    0);
    store_status(&srv, 5101, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "processing");
    stage_close(&st);
}

static void test_status_checked_at_init(void)
{
    struct stage st;
    CU_ASSERT_NOT_EQUAL(stage_open(&st, &srv, "status = \"bogus\";"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "bogus"));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "extra_statuses"));
    stage_close(&st);
    CU_ASSERT_NOT_EQUAL(stage_open(&st, &srv, "status = \"Completed\";"), 0);
    stage_close(&st);
    CU_ASSERT_NOT_EQUAL(stage_open(&st, &srv, "extra_statuses = [\"has space\"];"), 0);
    stage_close(&st);

    /* A custom status is accepted when listed; this store does not have
     * it, so its 400 comes back as a FAIL with the store's message. */
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(
        stage_open(&st, &srv, "status = \"shipped\"; extra_statuses = [\"shipped\"];"), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.rejected");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "HTTP 400"));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "rest_invalid_param"));
    stage_close(&st);
}

static void test_store_errors(void)
{
    struct stage st;
    char status[64];
    reset(&srv);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, NULL), 0);
    /* an order the store does not have */
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "999999", "W-1", 1), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.not_found");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "does not exist"));
    /* a cancelled order is not completed behind a person's back */
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5112", "W-2", 2), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.status_conflict");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "cancelled"));
    store_status(&srv, 5112, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "cancelled");
    /* an order already completed keeps its status and gets the note */
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5103", "W-3", 3), CPB_OK);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", "/wp-json/wc/v3/orders/5103"), 0);
    CU_ASSERT_EQUAL(batch_items(&srv, 5103), 0);
    CU_ASSERT_EQUAL(notes_with(&srv, 5103, "ticket W-3 ", NULL), 1);
    /* 5xx after the tries: RETRY */
    fault(&srv, "{\"path_regex\": \"/orders$\", \"method\": \"GET\", \"kind\": \"status\","
                " \"status\": 502}");
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5104", "W-4", 4), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.unavailable");
    /* not a WooCommerce id */
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "abc", "W-5", 5), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.bad_id");
    stage_close(&st);

    /* a wrong secret */
    CU_ASSERT_EQUAL(cpbtest_write(cpbtest_path("wrong.secret"), "cs_wrong\n"), 0);
    CU_ASSERT_EQUAL(chmod(cpbtest_path("wrong.secret"), 0600), 0);
    char opts[1200];
    snprintf(opts, sizeof opts, "auth = \"oauth\"; oauth_signature_method = \"HMAC-SHA1\";");
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, opts), 0);
    stage_close(&st);
    char text[2048];
    struct err e = {0};
    snprintf(text, sizeof text,
             "name = \"sync-test\";\n"
             "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
             "stages = ( { stage = \"sync-status\"; id = \"sync\"; options = {\n"
             "  url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "  consumer_secret = \"file:%s\"; max_tries = 1; }; } );\n",
             cpbtest_sqlite_conn(), srv.port, cpbtest_path("wrong.secret"));
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("wrong.cfg"), text), 0);
    memset(&st, 0, sizeof st);
    CU_ASSERT_EQUAL_FATAL(pipeline_open(cpbtest_path("wrong.cfg"), &st.p, &e), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_init(st.p, &e), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5105", "W-6", 6), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "Invalid signature"));
    stage_close(&st);
}

/* A key without Write permission: reading works, the PUT is refused. */
static void test_key_without_write(void)
{
    struct stage st;
    struct cpbserver ro;
    char status[64];
    const char *const args[] = {"--key",         "ck_test", "--secret", "cs_test",
                                "--permissions", "read",    NULL};
    memset(&ro, 0, sizeof ro);
    CU_ASSERT_EQUAL_FATAL(cpbserver_start(&ro, cpbtest_src("tests/servers/woo_standin.py"), args),
                          0);
    reset(&ro);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &ro, NULL), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(st.code, "sync.auth");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "setting order 5101"));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "lacks Write permission"));
    store_status(&ro, 5101, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "processing");
    stage_close(&st);
    cpbserver_stop(&ro);
}

static void test_options(void)
{
    struct stage st;
    reset(&srv);
    /* note = false: status only */
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "note = false;"), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_OK);
    CU_ASSERT_EQUAL(batch_items(&srv, 5101), 1);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", "/wp-json/wc/v3/orders/5101/notes"), 0);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", "/wp-json/wc/v3/orders/5101/notes"), 0);
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, "Counterpoint", NULL), 0);
    stage_close(&st);
    /* source: another store's orders are skipped, untouched */
    ctl_do(&srv, "DELETE", "/_requests", NULL);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "source = \"shop-eu\";"), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5102", "W-000043", 4243), CPB_SKIP);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", NULL), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "shop-eu", "5102", "W-000043", 4243), CPB_OK);
    CU_ASSERT_EQUAL(batch_items(&srv, 5102), 1);
    stage_close(&st);
}

static void test_basic_over_https(void)
{
    struct stage st;
    char status[64];
    reset(&https);
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &https, "auth = \"basic\";"), 0);
    CU_ASSERT_EQUAL(sync_order(&st, "woo", "5101", "W-000042", 4242), CPB_OK);
    store_status(&https, 5101, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    CU_ASSERT_EQUAL(notes_with(&https, 5101, NOTE_5101, NULL), 1);
    json_t *puts = requests(&https, "POST", "/wp-json/wc/v3/orders/batch");
    const char *a = json_string_value(
        json_object_get(json_object_get(json_array_get(puts, 0), "headers"), "Authorization"));
    CU_ASSERT(a != NULL && strncmp(a, "Basic ", 6) == 0);
    json_decref(puts);
    stage_close(&st);
}

/* ---- many orders at once: process_batch ------------------------------------------- */

/* 120 orders: two status reads and two batches (100 + 20), one note each,
 * never more than `connections` requests in flight. */
static void test_batch_many(void)
{
    enum { N = 120, FIRST = 7001 };
    struct stage st;
    enum cpb_status out[N];
    char code[N][64];
    reset(&srv);
    add_orders(&srv, FIRST, N);
    ctl_do(&srv, "DELETE", "/_stats", NULL);
    ctl_do(&srv, "POST", "/_latency", "{\"latency_ms\": 20}");
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "connections = 3;"), 0);
    sync_batch(&st, FIRST, N, 1, out, code);
    ctl_do(&srv, "POST", "/_latency", "{\"latency_ms\": 0}");
    size_t ok = 0;
    for (size_t i = 0; i < N; i++) {
        ok += out[i] == CPB_OK;
    }
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", "/wp-json/wc/v3/orders"), 2);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", "/wp-json/wc/v3/orders/batch"), 2);
    CU_ASSERT_EQUAL(batch_items(&srv, 0), N);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 0);
    CU_ASSERT_EQUAL(count_requests(&srv, "GET", NULL), 2); /* no note is read on attempt 1 */
    CU_ASSERT_EQUAL(store_stat(&srv, "requests"), N + 4);
    CU_ASSERT_EQUAL(store_stat(&srv, "status_changes"), N);
    CU_ASSERT_EQUAL(store_stat(&srv, "notes_added"), N);
    CU_ASSERT(store_stat(&srv, "max_in_flight") <= 3);
    CU_ASSERT(store_stat(&srv, "max_in_flight") >= 2); /* the notes did go in parallel */
    for (int id = FIRST; id < FIRST + N; id += 17) {
        char status[64];
        char tkt[32];
        store_status(&srv, id, status, sizeof status);
        CU_ASSERT_STRING_EQUAL(status, "completed");
        snprintf(tkt, sizeof tkt, "ticket T-%d ", id);
        CU_ASSERT_EQUAL(notes_with(&srv, id, tkt, NULL), 1);
    }

    /* All again as a later attempt: read, find everything done, write nothing. */
    ctl_do(&srv, "DELETE", "/_stats", NULL);
    sync_batch(&st, FIRST, N, 2, out, code);
    ok = 0;
    for (size_t i = 0; i < N; i++) {
        ok += out[i] == CPB_OK;
    }
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT_EQUAL(store_stat(&srv, "status_changes"), 0);
    CU_ASSERT_EQUAL(store_stat(&srv, "notes_added"), 0);
    CU_ASSERT_EQUAL(store_stat(&srv, "requests"),
                    N + 2); /* two status reads, one notes read each */
    stage_close(&st);
}

/* The batch answers 200 with per-item errors: a retryable one (500) is
 * tried alone with the single PUT, a permanent one (400) fails that order
 * only, an item the store "accepted" but did not change fails as
 * not_applied; the others are done. Each outcome has its own reason. */
static void test_batch_item_errors(void)
{
    enum { N = 6, FIRST = 7201 };
    struct stage st;
    enum cpb_status out[N];
    char code[N][64];
    char status[64];
    reset(&srv);
    add_orders(&srv, FIRST, N);
    fault(&srv, "{\"kind\": \"batch_item\", \"order_id\": 7202, \"status\": 500}");
    fault(&srv, "{\"kind\": \"batch_item\", \"order_id\": 7203, \"status\": 400, \"code\":"
                " \"woocommerce_rest_invalid_order\", \"message\": \"Nope.\"}");
    fault(&srv, "{\"kind\": \"unchanged\", \"order_id\": 7204}");
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, NULL), 0);
    sync_batch(&st, FIRST, N, 1, out, code);
    CU_ASSERT_EQUAL(out[0], CPB_OK);
    CU_ASSERT_EQUAL(out[1], CPB_OK); /* 7202: the single PUT did it */
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", "/wp-json/wc/v3/orders/7202"), 1);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 1);
    CU_ASSERT_EQUAL(out[2], CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code[2], "sync.rejected");
    CU_ASSERT_EQUAL(out[3], CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code[3], "sync.not_applied");
    CU_ASSERT_EQUAL(out[4], CPB_OK);
    CU_ASSERT_EQUAL(out[5], CPB_OK);
    CU_ASSERT_STRING_EQUAL(code[0], "");
    store_status(&srv, 7203, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "processing");
    CU_ASSERT_EQUAL(notes_with(&srv, 7203, "Counterpoint", NULL), 0); /* no note without status */
    store_status(&srv, 7202, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    CU_ASSERT_EQUAL(notes_with(&srv, 7202, "ticket T-7202 ", NULL), 1);
    CU_ASSERT_EQUAL(notes_with(&srv, 7205, "ticket T-7205 ", NULL), 1);
    stage_close(&st);
}

/* A 429 with Retry-After on one note holds back the notes not yet sent
 * and halves the connections: every note still arrives exactly once. */
static void test_429_slows_the_store(void)
{
    enum { N = 24, FIRST = 7301 };
    struct stage st;
    enum cpb_status out[N];
    char code[N][64];
    reset(&srv);
    add_orders(&srv, FIRST, N);
    fault(&srv, "{\"path_regex\": \"/orders/7303/notes$\", \"method\": \"POST\", \"kind\":"
                " \"status\", \"status\": 429, \"retry_after\": \"1\"}");
    CU_ASSERT_EQUAL_FATAL(stage_open(&st, &srv, "max_tries = 3; connections = 4;"), 0);
    struct timespec t0;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sync_batch(&st, FIRST, N, 1, out, code);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    size_t ok = 0;
    for (size_t i = 0; i < N; i++) {
        ok += out[i] == CPB_OK;
    }
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", "/wp-json/wc/v3/orders/7303/notes"), 2);
    for (int id = FIRST; id < FIRST + N; id++) {
        char tkt[32];
        snprintf(tkt, sizeof tkt, "ticket T-%d ", id);
        CU_ASSERT_EQUAL(notes_with(&srv, id, tkt, NULL), 1);
    }
    /* The notes after the 429 waited for its Retry-After: the last one
     * was sent at least a second after the 429 was answered. */
    json_t *posts = requests(&srv, "POST", NULL);
    const char *t429 = NULL;
    const char *last = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(posts, i, r)
    {
        const char *t = json_string_value(json_object_get(r, "time"));
        if (json_integer_value(json_object_get(r, "status")) == 429) {
            t429 = t;
        }
        last = t;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(t429);
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT(strcmp(last, t429) > 0);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CU_ASSERT(secs >= 1.0);
    json_decref(posts);
    stage_close(&st);
}

/* ---- through the runner: the after-commit step resumes --------------------------- */

static int run_pipeline(const char *path, struct run_result *res)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = path};
    if (pipeline_open(path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        fprintf(stderr, "pipeline: %s\n", e.msg);
        pipeline_close(p);
        CU_FAIL("pipeline did not open");
        return -1;
    }
    int code = runner_run(p, &o, res, &e);
    pipeline_close(p);
    return code;
}

static void test_runner_after_commit(void)
{
    char conn[1024];
    char text[4096];
    struct db *db = NULL;
    struct err e = {0};
    struct run_result res;
    int from = 0;
    int to = 0;
    int64_t n = -1;
    reset(&srv);
    snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
    CU_ASSERT_EQUAL_FATAL(db_connect(conn, DB_SQLITE, 5000, &db, &e), 0);
    CU_ASSERT_EQUAL_FATAL(schema_init(db, false, 0, &from, &to, &e), 0);
    snprintf(text, sizeof text,
             "name = \"sync-runner\";\n"
             "stage_dirs = [\"%s\"];\n"
             "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; };\n"
             "retry = { max_attempts = 3; base = \"1s\"; cap = \"1m\"; };\n"
             "stages = (\n"
             "  { stage = \"source-woo\"; id = \"woo\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"cs_test\"; }; },\n"
             "  { stage = \"test-step\"; options = { log_file = \"%s\"; }; },\n"
             "  { stage = \"sync-status\"; id = \"sync\"; options = {\n"
             "      url = \"http://127.0.0.1:%d\"; consumer_key = \"ck_test\";\n"
             "      consumer_secret = \"cs_test\"; source = \"woo\"; max_tries = 1; }; }\n"
             ");\n",
             cpbtest_build("fixture-stages"), conn, cpbtest_path("sync.lock"), srv.port,
             cpbtest_path("steps.log"), srv.port);
    const char *path = cpbtest_path("sync-runner.cfg");
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    /* The note of 5101 fails once: the order stays applied, its
     * after-commit step is due again. */
    fault(&srv, "{\"path_regex\": \"/orders/5101/notes$\", \"method\": \"POST\", \"kind\":"
                " \"status\", \"status\": 503}");
    run_pipeline(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 14);
    CU_ASSERT_EQUAL(res.counts.applied, 14);
    CU_ASSERT_EQUAL(res.counts.after_done, 13);
    CU_ASSERT_EQUAL(sql_query_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE AFTER_PENDING = 1"
                                  " AND EXT_ORDER_ID = '5101' AND STATUS = 'APPLIED'",
                                  NULL, 0, &n, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(n, 1);
    /* Due now instead of after the backoff; the next run resumes it. */
    CU_ASSERT_EQUAL(sql_exec(db, "UPDATE USER_ORDER_STAGING SET NEXT_ATTEMPT_DT = ?",
                             (struct sql_arg[]){sql_time(0)}, 1, NULL),
                    CPB_OK);
    run_pipeline(path, &res);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    CU_ASSERT_EQUAL(res.counts.after_done, 1);
    run_pipeline(path, &res);
    CU_ASSERT_EQUAL(res.counts.after_done, 0);
    CU_ASSERT_EQUAL(batch_items(&srv, 5101), 1);
    CU_ASSERT_EQUAL(batch_items(&srv, 0), 14);
    CU_ASSERT_EQUAL(count_requests(&srv, "POST", "/wp-json/wc/v3/orders/batch"), 1);
    CU_ASSERT_EQUAL(count_requests(&srv, "PUT", NULL), 0);
    CU_ASSERT_EQUAL(notes_with(&srv, 5101, "Imported into Counterpoint as ticket T", NULL), 1);
    CU_ASSERT_EQUAL(notes_with(&srv, 5126, "Imported into Counterpoint as ticket T", NULL), 1);
    char status[64];
    store_status(&srv, 5126, status, sizeof status);
    CU_ASSERT_STRING_EQUAL(status, "completed");
    db_close(db);
}

static const struct cpbtest_case cases[] = {
    {"status and note written once", test_status_and_note_once},
    {"PUT retried on 503", test_put_retried_on_503},
    {"crash between status and note", test_crash_between_put_and_note},
    {"a note is tried again only when unsent", test_note_retried_only_when_unsent},
    {"dry run sends nothing", test_dry_run},
    {"status checked at init", test_status_checked_at_init},
    {"store errors", test_store_errors},
    {"key without Write permission", test_key_without_write},
    {"note and source options", test_options},
    {"Basic over https-mode", test_basic_over_https},
    {"process_batch: 120 orders, two batches, bounded notes", test_batch_many},
    {"process_batch: per-item errors", test_batch_item_errors},
    {"process_batch: a 429 slows every note", test_429_slows_the_store},
    {"after-commit resumes through the runner", test_runner_after_commit},
    {NULL, NULL},
};

static const struct cpbtest_suite suite = {"sync-status", setup, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
