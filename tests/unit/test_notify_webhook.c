/*
 * test_notify_webhook.c — the notify-webhook stage (plugins/notify-webhook),
 * linked in statically and driven through the real host services (options
 * from a libconfig group, host_ctx_new, real HTTP) against the scripted
 * test server tests/servers/httpd.py: the four body formats, the
 * HMAC-SHA256 signature (recomputed with libcrypto and against a known
 * vector from `openssl dgst`), custom headers, retries and Retry-After,
 * timeouts, option checks, and that secrets never reach the log.
 */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/loader.h"
#include "engine/options.h"
#include "services/http.h"
#include "services/log.h"

extern const struct cpb_stage notify_webhook_stage;

#define STAGE (&notify_webhook_stage)

/* The text body of event_two() (format "text") and its HMAC-SHA256 under
 * TEXT_KEY, computed independently with:
 *   printf '%s' "$BODY" | openssl dgst -sha256 -hmac 'webhook-test-key-0123456789' */
#define TEXT_KEY "webhook-test-key-0123456789"
#define TEXT_BODY                                                                                  \
    "[CRITICAL] demo order.dead: 2 order(s) exhausted their retries and are in the dead-letter "   \
    "queue\n"                                                                                      \
    "- order 12 (woo 1001) item.unknown: SKU <X&Y> not in IM_ITEM\n"                               \
    "- order 13 (woo 1002) db.deadlock: deadlock, tried 3 times\n"                                 \
    "Run: cpbridge dlq demo.cfg list"
#define TEXT_SIG "680f735cbf44e1072cd52c052884c0ff0d219dfe1d37dcbc77a8925daf21cdae"

static struct cpbserver srv;
static struct http_client *cli;
static struct host_env env;
static FILE *log_file;

/* One configured stage instance. */
struct inst {
    config_t lc;
    struct opt_store *store;
    void *opts;
    void *state;
    struct cpb_ctx *ctx;
    struct err err;
    int fill_rc;
    int init_rc;
};

/* ---- helpers ------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One exchange with the test server's control endpoints. */
static enum cpb_status control(const char *method, const char *path, const char *body,
                               struct cpb_http_response *resp)
{
    char *url = cpbserver_url(&srv, path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(url);
    const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct cpb_http_request r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.method = method;
    r.url = url;
    r.headers = hdrs;
    r.body = body;
    r.body_len = body != NULL ? strlen(body) : 0;
    r.timeout_ms = 10000;
    enum cpb_status st = http_perform(cli, &r, resp);
    free(url);
    return st;
}

static void script(const char *path, const char *responses_json)
{
    char body[2048];
    struct cpb_http_response resp;
    int n =
        snprintf(body, sizeof body, "{\"path\": \"%s\", \"responses\": %s}", path, responses_json);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof body);
    CU_ASSERT_EQUAL_FATAL(control("POST", "/_script", body, &resp), CPB_OK);
    http_response_free(&resp);
}

/* Answer 200 "ok" on path (the server's default for unknown paths is 404). */
static void accept_on(const char *path)
{
    script(path, "[{\"status\": 200, \"body\": \"ok\"}]");
}

/* The server's records for `path` (new reference, a JSON array). */
static json_t *recorded(const char *path)
{
    char q[300];
    struct cpb_http_response resp;
    json_error_t jerr;
    snprintf(q, sizeof q, "/_requests?path=%s", path);
    CU_ASSERT_EQUAL_FATAL(control("GET", q, NULL, &resp), CPB_OK);
    json_t *arr = json_loadb(resp.body, resp.body_len, 0, &jerr);
    http_response_free(&resp);
    CU_ASSERT_FATAL(json_is_array(arr));
    return arr;
}

static size_t count_recorded(const char *path)
{
    json_t *arr = recorded(path);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

/* The only request recorded for path (new reference). */
static json_t *only_request(const char *path)
{
    json_t *arr = recorded(path);
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 1);
    json_t *rec = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return rec;
}

static const char *rec_header(json_t *rec, const char *lower_name)
{
    return json_string_value(json_object_get(json_object_get(rec, "headers"), lower_name));
}

/* The exact body bytes of a record (new, NUL-terminated; *len its size). */
static unsigned char *rec_body(json_t *rec, size_t *len)
{
    const char *b64 = json_string_value(json_object_get(rec, "body_b64"));
    json_int_t n = json_integer_value(json_object_get(rec, "body_len"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(b64);
    size_t b64_len = strlen(b64);
    unsigned char *out = calloc(b64_len / 4 * 3 + 4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    int got = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)b64_len);
    CU_ASSERT_FATAL(got >= 0 && (json_int_t)got >= n && n >= 0);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

/* The body of a record parsed as JSON (new reference). */
static json_t *rec_json(json_t *rec)
{
    size_t len = 0;
    unsigned char *body = rec_body(rec, &len);
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        fprintf(stderr, "\n  body is not JSON (%s): %s\n", jerr.text, body);
    }
    free(body);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    return doc;
}

/* HMAC-SHA256 as lowercase hex, computed here with libcrypto. */
static void hmac_hex(const char *key, const unsigned char *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(HMAC(EVP_sha256(), key, (int)strlen(key), data, len, md, &md_len));
    CU_ASSERT_EQUAL_FATAL(md_len, 32);
    for (unsigned i = 0; i < md_len; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}

static void expect_in(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL) {
        fprintf(stderr, "\n  expected \"%s\" in: %s\n", needle, hay != NULL ? hay : "(null)");
        CU_FAIL("text missing");
    }
}

/* Configure an instance: `options_text` is the inside of an options group,
 * "%URL%" standing for the test server's URL of `path`. */
static void inst_start(struct inst *in, const char *path, const char *options_text)
{
    char *url = cpbserver_url(&srv, path);
    char text[4096];
    const char *mark = strstr(options_text, "%URL%");
    CU_ASSERT_PTR_NOT_NULL_FATAL(url);
    int n = 0;
    if (mark != NULL) {
        n = snprintf(text, sizeof text, "options = { %.*s%s%s };", (int)(mark - options_text),
                     options_text, url, mark + 5);
    } else {
        n = snprintf(text, sizeof text, "options = { %s };", options_text);
    }
    free(url);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof text);

    memset(in, 0, sizeof *in);
    config_init(&in->lc);
    config_set_options(&in->lc, config_get_options(&in->lc) & ~CONFIG_OPTION_AUTOCONVERT);
    if (config_read_string(&in->lc, text) != CONFIG_TRUE) {
        fprintf(stderr, "\n  %s: line %d: %s\n", text, config_error_line(&in->lc),
                config_error_text(&in->lc));
        CU_FAIL_FATAL("test options did not parse");
    }
    in->opts = calloc(1, STAGE->options_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(in->opts);
    in->fill_rc = options_fill(STAGE->options, config_lookup(&in->lc, "options"), in->opts,
                               &in->store, "stage 'notify-webhook'", &in->err);
    in->init_rc = -1;
    if (in->fill_rc != 0) {
        return;
    }
    in->ctx = host_ctx_new("hook", &env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(in->ctx);
    host_reason_clear(in->ctx);
    in->init_rc = STAGE->init(host_services(), in->ctx, in->opts, &in->state);
}

/* As inst_start, and init must succeed. */
static void inst_ok(struct inst *in, const char *path, const char *options_text)
{
    inst_start(in, path, options_text);
    if (in->fill_rc != 0) {
        fprintf(stderr, "\n  options: %s\n", in->err.msg);
    } else if (in->init_rc != 0) {
        fprintf(stderr, "\n  init: %s\n", host_reason_message(in->ctx));
    }
    CU_ASSERT_EQUAL_FATAL(in->fill_rc, 0);
    CU_ASSERT_EQUAL_FATAL(in->init_rc, 0);
}

static void inst_stop(struct inst *in)
{
    if (in->ctx != NULL) {
        STAGE->fini(in->state);
    }
    host_ctx_free(in->ctx);
    opt_store_free(in->store);
    free(in->opts);
    config_destroy(&in->lc);
    memset(in, 0, sizeof *in);
}

/* Deliver event `ev` (borrowed) to the instance. */
static enum cpb_status deliver(struct inst *in, json_t *ev)
{
    struct cpb_record rec = {.size = sizeof rec,
                             .event = json_string_value(json_object_get(ev, "event")),
                             .payload = ev};
    host_reason_clear(in->ctx);
    return STAGE->process(in->state, &rec);
}

/* An event as the runner builds it, with n orders (new reference). The
 * first two orders are fixed: their text is in TEXT_BODY. */
static json_t *event_n(size_t n)
{
    json_t *orders = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = NULL;
        if (i == 0) {
            o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)12, "source", "woo",
                          "external_id", "1001", "reason", "item.unknown", "message",
                          "SKU <X&Y> not in IM_ITEM", "command",
                          "cpbridge orders demo.cfg show 12");
        } else if (i == 1) {
            o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)13, "source", "woo",
                          "external_id", "1002", "reason", "db.deadlock", "message",
                          "deadlock,\ntried 3 times", "command",
                          "cpbridge orders demo.cfg show 13");
        } else {
            char ext[32];
            snprintf(ext, sizeof ext, "%zu", 2000 + i);
            o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)(100 + i), "source",
                          "woo", "external_id", ext, "reason", "item.unknown", "message", "later",
                          "command", "cpbridge orders demo.cfg show N");
        }
        CU_ASSERT_FATAL(json_array_append_new(orders, o) == 0);
    }
    char summary[200];
    snprintf(summary, sizeof summary,
             "%zu order(s) exhausted their retries and are in the dead-letter queue", n);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:[{s:s, s:s, s:s}]}", "event",
                           "order.dead", "severity", "critical", "pipeline", "demo", "run_id",
                           "11111111-2222-3333-4444-555555555555", "time",
                           "2024-05-01T10:00:00.000Z", "summary", summary, "command",
                           "cpbridge dlq demo.cfg list", "orders", orders, "details", "stage",
                           "create-order", "reason", "db.deadlock", "message", "retried 3 times");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    return ev;
}

/* event_n(2) without details: the text format's known body. */
static json_t *event_two(void)
{
    json_t *ev = event_n(2);
    json_object_set_new(ev, "details", json_array());
    return ev;
}

static char *read_log(void)
{
    fflush(log_file);
    return cpbtest_slurp(cpbtest_path("webhook.log"), NULL);
}

/* ---- suite setup -------------------------------------------------------- */

static int setup(void)
{
    struct err err = {0};
    if (http_global_init(&err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    if (cpbserver_start(&srv, cpbtest_src("tests/servers/httpd.py"), NULL) != 0) {
        return -1;
    }
    cli = http_client_new("test-control");
    log_file = fopen(cpbtest_path("webhook.log"), "w+");
    if (cli == NULL || log_file == NULL) {
        return -1;
    }
    log_set_stream(log_file);
    log_configure(CPB_LOG_DEBUG, LOG_TEXT);
    env.pipeline = "demo";
    return 0;
}

static int teardown(void)
{
    http_client_free(cli);
    cli = NULL;
    cpbserver_stop(&srv);
    http_global_cleanup();
    log_reset();
    if (log_file != NULL) {
        fclose(log_file);
        log_file = NULL;
    }
    return 0;
}

/* ---- descriptor --------------------------------------------------------- */

static void test_descriptor(void)
{
    struct err err = {0};
    CU_ASSERT_STRING_EQUAL(STAGE->name, "notify-webhook");
    CU_ASSERT_EQUAL(STAGE->kind, CPB_NOTIFY);
    CU_ASSERT_EQUAL(
        options_check_table(STAGE->options, STAGE->options_size, "stage 'notify-webhook'", &err),
        0);
    int rc = loader_check("notify-webhook", "notify-webhook.so", STAGE, &err);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", err.msg);
    }
    CU_ASSERT_EQUAL(rc, 0);

    /* The built module loads through the real loader (libcrypto linked). */
    struct loaded_stage ls = {0};
    const char *so = cpbtest_build("stages/notify-webhook.so");
    rc = loader_open("notify-webhook", so, &ls, &err);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", err.msg);
    }
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0) {
        CU_ASSERT_STRING_EQUAL(ls.desc->name, "notify-webhook");
        CU_ASSERT_EQUAL(ls.desc->options_size, STAGE->options_size);
    }
    loader_close(&ls);
}

/* ---- formats ------------------------------------------------------------ */

static void test_generic_body(void)
{
    struct inst in;
    json_t *ev = event_n(2);
    accept_on("/generic");
    inst_ok(&in, "/generic", "url = \"%URL%\";");
    int64_t before = host_now_ms() / 1000;
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);
    int64_t after = host_now_ms() / 1000;

    json_t *rec = only_request("/generic");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "method")), "POST");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "content-type"), "application/json");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-cpbridge-event"), "order.dead");
    CU_ASSERT_PTR_NULL(rec_header(rec, "x-cpbridge-signature"));

    json_t *b = rec_json(rec);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "source")), "cpbridge");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "version")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "event")), "order.dead");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "severity")), "critical");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "pipeline")), "demo");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "run_id")),
                           "11111111-2222-3333-4444-555555555555");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "time")),
                           "2024-05-01T10:00:00.000Z");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "summary")),
                           "2 order(s) exhausted their retries and are in the dead-letter queue");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "command")),
                           "cpbridge dlq demo.cfg list");
    json_int_t ts = json_integer_value(json_object_get(b, "timestamp"));
    CU_ASSERT(ts >= before && ts <= after);
    const char *did = json_string_value(json_object_get(b, "delivery_id"));
    CU_ASSERT(did != NULL && strlen(did) == 36);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(b, "orders_total")), 2);

    json_t *orders = json_object_get(b, "orders");
    CU_ASSERT_EQUAL_FATAL(json_array_size(orders), 2);
    json_t *o = json_array_get(orders, 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "id")), 12);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "source")), "woo");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "external_id")), "1001");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "reason")), "item.unknown");
    /* Generic JSON needs no escaping: the text arrives as it was. */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "message")),
                           "SKU <X&Y> not in IM_ITEM");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "command")),
                           "cpbridge orders demo.cfg show 12");
    json_t *d = json_array_get(json_object_get(b, "details"), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "stage")), "create-order");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "message")), "retried 3 times");

    /* The stage logged the delivery, naming the URL. */
    char *log = read_log();
    expect_in(log, "sent order.dead to http://127.0.0.1:");
    free(log);

    json_decref(b);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

/* Every block's text (and the fallback text) joined, for searching. */
static void slack_texts(json_t *b, char *out, size_t n)
{
    size_t used = 0;
    size_t i;
    json_t *blk;
    out[0] = '\0';
    json_array_foreach(json_object_get(b, "blocks"), i, blk)
    {
        const char *t = json_string_value(json_object_get(json_object_get(blk, "text"), "text"));
        json_t *els = json_object_get(blk, "elements");
        if (t == NULL && json_is_array(els)) {
            t = json_string_value(json_object_get(json_array_get(els, 0), "text"));
        }
        if (t != NULL && used < n) {
            int k = snprintf(out + used, n - used, "%s\n", t);
            used += k > 0 ? (size_t)k : 0;
        }
    }
}

static void test_slack_body(void)
{
    struct inst in;
    json_t *ev = event_n(25);
    accept_on("/slack");
    inst_ok(&in, "/slack", "url = \"%URL%\"; format = \"slack\";");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);

    json_t *rec = only_request("/slack");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "content-type"), "application/json");
    json_t *b = rec_json(rec);
    const char *text = json_string_value(json_object_get(b, "text"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_STRING_EQUAL(
        text, "[CRITICAL] demo: 25 order(s) exhausted their retries and are in the dead-letter "
              "queue");

    json_t *blocks = json_object_get(b, "blocks");
    CU_ASSERT_FATAL(json_is_array(blocks) && json_array_size(blocks) <= 50);
    json_t *head = json_array_get(blocks, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(head, "type")), "header");
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(head, "text"), "type")), "plain_text");
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(head, "text"), "text")),
        "cpbridge demo: order.dead");

    /* Up to 20 orders, each its own section; the rest counted. */
    size_t order_sections = 0;
    size_t i;
    json_t *blk;
    json_array_foreach(blocks, i, blk)
    {
        const char *t = json_string_value(json_object_get(json_object_get(blk, "text"), "text"));
        if (t != NULL && strncmp(t, "*Order ", 7) == 0) {
            order_sections++;
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(blk, "type")), "section");
            CU_ASSERT_STRING_EQUAL(
                json_string_value(json_object_get(json_object_get(blk, "text"), "type")), "mrkdwn");
        }
    }
    CU_ASSERT_EQUAL(order_sections, 20);

    char all[16384];
    slack_texts(b, all, sizeof all);
    /* mrkdwn escaping of & < > in text from the store. */
    expect_in(all, "*Order 12* (woo 1001)\n`item.unknown` SKU &lt;X&amp;Y&gt; not in IM_ITEM\n"
                   "`cpbridge orders demo.cfg show 12`");
    CU_ASSERT_PTR_NULL(strstr(all, "<X&Y>"));
    /* Line breaks inside a field do not break the layout. */
    expect_in(all, "`db.deadlock` deadlock, tried 3 times");
    expect_in(all, "...and 5 more order(s)");
    expect_in(all, "Next step: `cpbridge dlq demo.cfg list`");
    expect_in(all, "create-order: db.deadlock: retried 3 times");

    json_decref(b);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

static void test_teams_body(void)
{
    struct inst in;
    json_t *ev = event_n(2);
    accept_on("/teams");
    inst_ok(&in, "/teams", "url = \"%URL%\"; format = \"teams\";");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);

    json_t *rec = only_request("/teams");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "content-type"), "application/json");
    json_t *b = rec_json(rec);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "type")), "message");
    json_t *att = json_array_get(json_object_get(b, "attachments"), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(b, "attachments")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(att, "contentType")),
                           "application/vnd.microsoft.card.adaptive");
    json_t *card = json_object_get(att, "content");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(card, "type")), "AdaptiveCard");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(card, "version")), "1.4");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(card, "$schema")),
                           "http://adaptivecards.io/schemas/adaptive-card.json");

    json_t *body = json_object_get(card, "body");
    CU_ASSERT_FATAL(json_array_size(body) >= 4);
    json_t *title = json_array_get(body, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(title, "type")), "TextBlock");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(title, "text")),
                           "cpbridge demo: order.dead");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(title, "color")), "Attention");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(body, 1), "text")),
                           "2 order(s) exhausted their retries and are in the dead-letter queue");
    json_t *facts = json_array_get(body, 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(facts, "type")), "FactSet");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
                               json_array_get(json_object_get(facts, "facts"), 0), "value")),
                           "CRITICAL");

    /* One Container per order, with its text unescaped (not mrkdwn). */
    size_t containers = 0;
    bool found = false;
    size_t i;
    json_t *el;
    json_array_foreach(body, i, el)
    {
        if (strcmp(json_string_value(json_object_get(el, "type")), "Container") != 0) {
            continue;
        }
        containers++;
        size_t k;
        json_t *tb;
        json_array_foreach(json_object_get(el, "items"), k, tb)
        {
            const char *t = json_string_value(json_object_get(tb, "text"));
            if (t != NULL && strcmp(t, "item.unknown: SKU <X&Y> not in IM_ITEM") == 0) {
                found = true;
            }
        }
    }
    CU_ASSERT_EQUAL(containers, 2);
    CU_ASSERT(found);

    json_decref(b);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

/* The text format, byte for byte, signed: the signature must equal the one
 * `openssl dgst -sha256 -hmac` gives for the same bytes. */
static void test_text_body_known_vector(void)
{
    struct inst in;
    json_t *ev = event_two();
    accept_on("/text");
    inst_ok(&in, "/text", "url = \"%URL%\"; format = \"text\"; secret = \"" TEXT_KEY "\";");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);

    json_t *rec = only_request("/text");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "content-type"), "text/plain; charset=utf-8");
    size_t len = 0;
    unsigned char *body = rec_body(rec, &len);
    CU_ASSERT_EQUAL(len, strlen(TEXT_BODY));
    CU_ASSERT_STRING_EQUAL((const char *)body, TEXT_BODY);
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-cpbridge-signature"), "sha256=" TEXT_SIG);

    /* This test's own HMAC helper agrees with the vector and with RFC 4231
     * test case 2, so the comparisons in the other tests mean something. */
    char hex[65];
    hmac_hex(TEXT_KEY, (const unsigned char *)TEXT_BODY, strlen(TEXT_BODY), hex);
    CU_ASSERT_STRING_EQUAL(hex, TEXT_SIG);
    static const char rfc_data[] = "what do ya want for nothing?";
    hmac_hex("Jefe", (const unsigned char *)rfc_data, strlen(rfc_data), hex);
    CU_ASSERT_STRING_EQUAL(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    free(body);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

/* ---- signature and headers --------------------------------------------- */

static void test_signature_over_raw_body(void)
{
    const char *key_path = cpbtest_path("webhook.key");
    char opts[1024];
    struct inst in;
    json_t *ev = event_n(3);

    /* The secret from a file (one trailing newline dropped). */
    CU_ASSERT_FATAL(cpbtest_write(key_path, "file-secret-0123456789abcdef\n") == 0);
    snprintf(opts, sizeof opts,
             "url = \"%%URL%%\"; secret = \"file:%s\"; signature_header = \"X-Hub-Signature-256\";",
             key_path);
    accept_on("/signed");
    inst_ok(&in, "/signed", opts);
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);

    json_t *rec = only_request("/signed");
    size_t len = 0;
    unsigned char *body = rec_body(rec, &len);
    char hex[65];
    char want[80];
    hmac_hex("file-secret-0123456789abcdef", body, len, hex);
    snprintf(want, sizeof want, "sha256=%s", hex);
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-hub-signature-256"), want);
    CU_ASSERT_PTR_NULL(rec_header(rec, "x-cpbridge-signature"));
    /* The key with its newline would give another signature. */
    hmac_hex("file-secret-0123456789abcdef\n", body, len, hex);
    CU_ASSERT_PTR_NULL(strstr(rec_header(rec, "x-hub-signature-256"), hex));
    /* The timestamp travels inside the signed body. */
    json_t *b = rec_json(rec);
    CU_ASSERT(json_integer_value(json_object_get(b, "timestamp")) > 1700000000);

    json_decref(b);
    free(body);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

static void test_custom_headers_arrive(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    accept_on("/headers");
    inst_ok(&in, "/headers",
            "url = \"%URL%\"; headers = [ \"X-Api-Key: k-123456\", \"X-Team:  ops on call\", "
            "\"Authorization: Bearer tok-abcdef\" ];");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);
    json_t *rec = only_request("/headers");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-api-key"), "k-123456");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-team"), "ops on call");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "authorization"), "Bearer tok-abcdef");
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "content-type"), "application/json");
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

/* ---- outcomes ----------------------------------------------------------- */

static void test_retry_then_ok(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    script("/flaky", "[{\"status\": 503}, {\"status\": 503}, {\"status\": 200, \"body\": \"ok\"}]");
    inst_ok(&in, "/flaky", "url = \"%URL%\"; max_tries = 3;");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);
    CU_ASSERT_EQUAL(count_recorded("/flaky"), 3);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "");

    /* Every try carries the same body, so the same signature. */
    json_t *arr = recorded("/flaky");
    size_t l0 = 0;
    size_t l2 = 0;
    unsigned char *b0 = rec_body(json_array_get(arr, 0), &l0);
    unsigned char *b2 = rec_body(json_array_get(arr, 2), &l2);
    CU_ASSERT(l0 == l2 && memcmp(b0, b2, l0) == 0);
    free(b0);
    free(b2);
    json_decref(arr);
    json_decref(ev);
    inst_stop(&in);
}

static void test_rejected_is_fail(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    script("/reject", "[{\"status\": 400, \"body\": \"invalid_payload\"}]");
    inst_ok(&in, "/reject?token=QUERYSECRET", "url = \"%URL%\"; max_tries = 5;");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_FAIL);
    CU_ASSERT_EQUAL(count_recorded("/reject"), 1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.rejected");
    const char *msg = host_reason_message(in.ctx);
    expect_in(msg, "/reject");
    expect_in(msg, "HTTP 400");
    expect_in(msg, "invalid_payload");
    CU_ASSERT_PTR_NULL(strstr(msg, "QUERYSECRET"));
    CU_ASSERT_PTR_NULL(strstr(msg, "token="));
    json_decref(ev);
    inst_stop(&in);
}

/* Credentials in the URL go out as basic auth and never into messages. */
static void test_url_credentials_hidden(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    char url[200];
    char opts[300];
    script("/userinfo", "[{\"status\": 403, \"body\": \"forbidden\"}]");
    snprintf(url, sizeof url, "http://alerts:pa55-w0rd@127.0.0.1:%d/userinfo#frag", srv.port);
    snprintf(opts, sizeof opts, "url = \"%s\"; max_tries = 1;", url);
    inst_ok(&in, "/userinfo", opts);
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_FAIL);
    json_t *rec = only_request("/userinfo");
    /* base64("alerts:pa55-w0rd") */
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "authorization"), "Basic YWxlcnRzOnBhNTUtdzByZA==");
    const char *msg = host_reason_message(in.ctx);
    char want[100];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/userinfo", srv.port);
    expect_in(msg, want);
    CU_ASSERT_PTR_NULL(strstr(msg, "pa55-w0rd"));
    CU_ASSERT_PTR_NULL(strstr(msg, "alerts:"));
    CU_ASSERT_PTR_NULL(strstr(msg, "frag"));
    log_msg(CPB_LOG_WARN, "hook", 0, "echo %s", url);
    char *log = read_log();
    CU_ASSERT_PTR_NULL(strstr(log, "pa55-w0rd"));
    free(log);
    json_decref(rec);
    json_decref(ev);
    inst_stop(&in);
}

static void test_unavailable_is_retry(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    script("/down", "[{\"status\": 503}]");
    inst_ok(&in, "/down", "url = \"%URL%\"; max_tries = 2;");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_RETRY);
    CU_ASSERT_EQUAL(count_recorded("/down"), 2);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.unreachable");
    expect_in(host_reason_message(in.ctx), "/down");
    expect_in(host_reason_message(in.ctx), "HTTP 503");
    json_decref(ev);
    inst_stop(&in);
}

static void test_retry_after_honoured(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    script("/later",
           "[{\"status\": 429, \"headers\": {\"Retry-After\": \"2\"}}, {\"status\": 200}]");
    inst_ok(&in, "/later", "url = \"%URL%\"; max_tries = 2;");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);
    json_t *arr = recorded("/later");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 2);
    double t0 = json_real_value(json_object_get(json_array_get(arr, 0), "time"));
    double t1 = json_real_value(json_object_get(json_array_get(arr, 1), "time"));
    CU_ASSERT(t1 - t0 >= 1.9);
    json_decref(arr);

    /* A Retry-After longer than the host waits within a run: RETRY now,
     * after one request, without sleeping. */
    script("/much-later", "[{\"status\": 503, \"headers\": {\"Retry-After\": \"3600\"}}]");
    struct inst in2;
    inst_ok(&in2, "/much-later", "url = \"%URL%\"; max_tries = 3;");
    int64_t start = mono_ms();
    CU_ASSERT_EQUAL(deliver(&in2, ev), CPB_RETRY);
    CU_ASSERT(mono_ms() - start < 5000);
    CU_ASSERT_EQUAL(count_recorded("/much-later"), 1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in2.ctx), "webhook.unreachable");
    CU_ASSERT_EQUAL(host_retry_after_ms(in2.ctx), 3600000);

    json_decref(ev);
    inst_stop(&in);
    inst_stop(&in2);
}

static void test_timeout_is_retry(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    script("/stuck", "[{\"status\": 200, \"delay_ms\": 4000}]");
    inst_ok(&in, "/stuck", "url = \"%URL%\"; timeout = \"1s\"; max_tries = 1;");
    int64_t start = mono_ms();
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_RETRY);
    int64_t took = mono_ms() - start;
    CU_ASSERT(took >= 900 && took < 3000);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.unreachable");
    expect_in(host_reason_message(in.ctx), "timed out");
    json_decref(ev);
    inst_stop(&in);
}

static void test_refused_connection_is_retry(void)
{
    struct inst in;
    json_t *ev = event_n(1);
    /* Port 1 on loopback: nothing listens there. */
    inst_ok(&in, "/", "url = \"http://127.0.0.1:1/hook?key=abc\"; max_tries = 1;");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.unreachable");
    expect_in(host_reason_message(in.ctx), "http://127.0.0.1:1/hook");
    CU_ASSERT_PTR_NULL(strstr(host_reason_message(in.ctx), "key=abc"));
    json_decref(ev);
    inst_stop(&in);
}

/* ---- option checks ------------------------------------------------------ */

/* init must refuse `options_text` with a message containing `want` (also
 * logged), and never quote `hidden` (may be NULL). */
static void expect_init_refused(const char *options_text, const char *want, const char *hidden)
{
    struct inst in;
    inst_start(&in, "/never", options_text);
    CU_ASSERT_EQUAL_FATAL(in.fill_rc, 0);
    CU_ASSERT_EQUAL(in.init_rc, -1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.config");
    expect_in(host_reason_message(in.ctx), want);
    char *log = read_log();
    expect_in(log, want);
    if (hidden != NULL) {
        CU_ASSERT_PTR_NULL(strstr(host_reason_message(in.ctx), hidden));
        CU_ASSERT_PTR_NULL(strstr(log, hidden));
    }
    free(log);
    inst_stop(&in);
}

static void test_bad_options_refused(void)
{
    expect_init_refused("url = \"%URL%\"; headers = [ \"X-Token abcdefsecret\" ];",
                        "headers[0] has no colon", "abcdefsecret");
    expect_init_refused("url = \"%URL%\"; headers = [ \"X-Ok: 1\", \"X-A: b\\r\\nX-B: c\" ];",
                        "headers[1] contains a line break", NULL);
    expect_init_refused("url = \"%URL%\"; headers = [ \": value\" ];",
                        "headers[0] does not start with a header name", NULL);
    expect_init_refused("url = \"%URL%\"; headers = [ \"X Bad: v\" ];",
                        "headers[0] does not start with a header name", NULL);
    expect_init_refused("url = \"%URL%\"; headers = [ \"X-Empty:   \" ];",
                        "headers[0] (X-Empty) has no value", NULL);
    expect_init_refused("url = \"%URL%\"; headers = [ \"content-type: text/html\" ];",
                        "sets content-type, which this stage sets itself", NULL);
    expect_init_refused("url = \"%URL%\"; secret = \"0123456789abcdef0123\"; "
                        "headers = [ \"X-Cpbridge-Signature: forged\" ];",
                        "the signature_header", "forged");
    expect_init_refused("url = \"ftp://127.0.0.1/x\";", "url must start with http:// or https://",
                        NULL);
    expect_init_refused("url = \"https:///path\";", "url names no host", NULL);
    expect_init_refused("url = \"http://host/a b\";", "url contains a space", NULL);
    expect_init_refused("url = \"%URL%\"; signature_header = \"X Sig\";",
                        "signature_header must be a header name", NULL);
    expect_init_refused("url = \"%URL%\"; ca_file = \"/nonexistent/ca.pem\";",
                        "ca_file /nonexistent/ca.pem cannot be read", NULL);

    /* What the option table itself refuses, before init. */
    struct inst in;
    inst_start(&in, "/never", "url = \"%URL%\"; max_tries = 11;");
    CU_ASSERT_EQUAL(in.fill_rc, -1);
    expect_in(in.err.msg, "max_tries");
    inst_stop(&in);
    inst_start(&in, "/never", "url = \"%URL%\"; format = \"discord\";");
    CU_ASSERT_EQUAL(in.fill_rc, -1);
    expect_in(in.err.msg, "format");
    inst_stop(&in);
    inst_start(&in, "/never", "format = \"slack\";");
    CU_ASSERT_EQUAL(in.fill_rc, -1);
    expect_in(in.err.msg, "url");
    inst_stop(&in);
    inst_start(&in, "/never", "url = \"%URL%\"; headers = \"X-A: b\";");
    CU_ASSERT_EQUAL(in.fill_rc, -1);
    inst_stop(&in);

    /* Nothing was sent by any of them. */
    CU_ASSERT_EQUAL(count_recorded("/never"), 0);
}

/* ---- secrets ------------------------------------------------------------ */

static void test_secret_never_logged(void)
{
    static const char secret[] = "s3cr3t-do-not-log-0123456789";
    struct inst in;
    json_t *ev = event_n(1);
    char *log = NULL;

    /* The receiver answers with the secret in its error text. */
    script("/leaky", "[{\"status\": 401, \"body\": \"bad signature for key "
                     "s3cr3t-do-not-log-0123456789\"}]");
    inst_ok(&in, "/leaky",
            "url = \"%URL%\"; secret = \"s3cr3t-do-not-log-0123456789\"; "
            "headers = [ \"Authorization: Bearer tok-9f8e7d6c\" ];");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.rejected");
    /* The echoed secret is masked in the reason itself (it may travel
     * further than the log). */
    expect_in(host_reason_message(in.ctx), "bad signature for key ********");
    CU_ASSERT_PTR_NULL(strstr(host_reason_message(in.ctx), secret));
    /* As the runner reports a notifier failure: */
    log_msg(CPB_LOG_WARN, "hook", 0, "could not deliver order.dead: %s: %s",
            host_reason_code(in.ctx), host_reason_message(in.ctx));
    /* Anything else that would print the credentials is masked too. */
    log_msg(CPB_LOG_DEBUG, "hook", 0, "debug dump: secret=%s bearer=%s", secret, "tok-9f8e7d6c");

    script("/leaky", "[{\"status\": 200}]");
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);

    log = read_log();
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    expect_in(log, "could not deliver order.dead: webhook.rejected");
    expect_in(log, "debug dump: secret=******** bearer=********");
    expect_in(log, "sent order.dead to");
    CU_ASSERT_PTR_NULL(strstr(log, secret));
    CU_ASSERT_PTR_NULL(strstr(log, "tok-9f8e7d6c"));
    free(log);

    /* The header travelled, and the body was signed with the secret. */
    json_t *arr = recorded("/leaky");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 2);
    json_t *rec = json_array_get(arr, 1);
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "authorization"), "Bearer tok-9f8e7d6c");
    size_t len = 0;
    unsigned char *body = rec_body(rec, &len);
    char hex[65];
    char want[80];
    hmac_hex(secret, body, len, hex);
    snprintf(want, sizeof want, "sha256=%s", hex);
    CU_ASSERT_STRING_EQUAL(rec_header(rec, "x-cpbridge-signature"), want);
    free(body);
    json_decref(arr);
    json_decref(ev);
    inst_stop(&in);
}

static void test_bad_record(void)
{
    struct inst in;
    accept_on("/bad-record");
    inst_ok(&in, "/bad-record", "url = \"%URL%\";");
    struct cpb_record rec = {.size = sizeof rec, .event = "order.dead", .payload = NULL};
    host_reason_clear(in.ctx);
    CU_ASSERT_EQUAL(STAGE->process(in.state, &rec), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(in.ctx), "webhook.bad_event");

    /* An event with odd member types still goes out, with defaults. */
    json_t *ev = json_pack("{s:s, s:i, s:s, s:[i, s, {s:i}]}", "event", "run.failed", "severity", 3,
                           "summary", "x", "orders", 5, "not an order", "id", 9);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    CU_ASSERT_EQUAL(deliver(&in, ev), CPB_OK);
    json_t *r = only_request("/bad-record");
    json_t *b = rec_json(r);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "severity")), "");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(b, "orders")), 3);
    CU_ASSERT_EQUAL(
        json_integer_value(json_object_get(json_array_get(json_object_get(b, "orders"), 2), "id")),
        9);
    json_decref(b);
    json_decref(r);
    json_decref(ev);
    inst_stop(&in);
}

int main(int argc, char **argv)
{
    static const struct cpbtest_case cases[] = {
        {"descriptor", test_descriptor},
        {"generic_body", test_generic_body},
        {"slack_body", test_slack_body},
        {"teams_body", test_teams_body},
        {"text_body_known_vector", test_text_body_known_vector},
        {"signature_over_raw_body", test_signature_over_raw_body},
        {"custom_headers_arrive", test_custom_headers_arrive},
        {"retry_then_ok", test_retry_then_ok},
        {"rejected_is_fail", test_rejected_is_fail},
        {"url_credentials_hidden", test_url_credentials_hidden},
        {"unavailable_is_retry", test_unavailable_is_retry},
        {"retry_after_honoured", test_retry_after_honoured},
        {"timeout_is_retry", test_timeout_is_retry},
        {"refused_connection_is_retry", test_refused_connection_is_retry},
        {"bad_options_refused", test_bad_options_refused},
        {"secret_never_logged", test_secret_never_logged},
        {"bad_record", test_bad_record},
        {NULL, NULL},
    };
    static const struct cpbtest_suite suite = {"notify_webhook", setup, teardown, cases};
    static const struct cpbtest_suite *const suites[] = {&suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
