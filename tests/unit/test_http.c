/*
 * test_http.c — the HTTP client (core/services/http.c) against a real local server
 * (tests/servers/httpd.py, plain and with TLS): bodies and headers byte-exact,
 * status classification, retries with backoff and Retry-After, timeouts,
 * refused connections, the body cap, truncated bodies, TLS verification,
 * and that credentials never reach messages or logs.
 */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "services/http.h"
#include "services/log.h"

static struct cpbserver srv;
static struct cpbserver tls_srv;
static struct http_client *cli;
static char cert_pem[600];

/* ---- helpers ------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct cpb_http_request req_for(const char *method, const char *url)
{
    struct cpb_http_request r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.method = method;
    r.url = url;
    r.timeout_ms = 10000;
    r.connect_timeout_ms = 5000;
    return r;
}

/* One exchange with the plain server; path includes any query. */
static enum cpb_status call(const char *method, const char *path, const char *body, size_t len,
                            const char *const *headers, struct cpb_http_response *resp)
{
    char *url = cpbserver_url(&srv, path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(url);
    struct cpb_http_request r = req_for(method, url);
    r.body = body;
    r.body_len = len;
    r.headers = headers;
    enum cpb_status st = http_perform(cli, &r, resp);
    free(url);
    return st;
}

/* The server's records for `path` (new reference, a JSON array). */
static json_t *recorded(const char *path)
{
    char q[300];
    struct cpb_http_response resp;
    snprintf(q, sizeof q, "/_requests?path=%s", path);
    enum cpb_status st = call("GET", q, NULL, 0, NULL, &resp);
    CU_ASSERT_EQUAL_FATAL(st, CPB_OK);
    json_error_t jerr;
    json_t *arr = json_loadb(resp.body, resp.body_len, JSON_ALLOW_NUL, &jerr);
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

/* A header value from a record (borrowed) or NULL. */
static const char *rec_header(json_t *rec, const char *lower_name)
{
    return json_string_value(json_object_get(json_object_get(rec, "headers"), lower_name));
}

static void clear_records(void)
{
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("DELETE", "/_requests", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
}

static void script(const char *path, const char *responses_json)
{
    char body[2048];
    int n =
        snprintf(body, sizeof body, "{\"path\": \"%s\", \"responses\": %s}", path, responses_json);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof body);
    const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct cpb_http_response resp;
    enum cpb_status st = call("POST", "/_script", body, (size_t)n, hdrs, &resp);
    CU_ASSERT_EQUAL_FATAL(st, CPB_OK);
    http_response_free(&resp);
}

/* base64 of data (new string). */
static char *b64(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* ---- suite setup -------------------------------------------------------- */

static int setup(void)
{
    struct err err = {0};
    if (http_global_init(&err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    const char *log_path = cpbtest_path("httpd.log");
    const char *const args[] = {"--log", log_path, NULL};
    if (cpbserver_start(&srv, cpbtest_src("tests/servers/httpd.py"), args) != 0) {
        return -1;
    }
    cli = http_client_new("test-http");
    return cli != NULL ? 0 : -1;
}

static int teardown(void)
{
    http_client_free(cli);
    cli = NULL;
    cpbserver_stop(&srv);
    cpbserver_stop(&tls_srv);
    http_global_cleanup();
    log_reset();
    return 0;
}

/* ---- pure helpers ------------------------------------------------------- */

static void test_classify_status(void)
{
    CU_ASSERT_EQUAL(http_classify_status(200), CPB_OK);
    CU_ASSERT_EQUAL(http_classify_status(201), CPB_OK);
    CU_ASSERT_EQUAL(http_classify_status(204), CPB_OK);
    CU_ASSERT_EQUAL(http_classify_status(299), CPB_OK);
    CU_ASSERT_EQUAL(http_classify_status(301), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(304), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(400), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(401), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(404), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(409), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(408), CPB_RETRY);
    CU_ASSERT_EQUAL(http_classify_status(429), CPB_RETRY);
    CU_ASSERT_EQUAL(http_classify_status(500), CPB_RETRY);
    CU_ASSERT_EQUAL(http_classify_status(503), CPB_RETRY);
    CU_ASSERT_EQUAL(http_classify_status(599), CPB_RETRY);
    CU_ASSERT_EQUAL(http_classify_status(600), CPB_FAIL);
    CU_ASSERT_EQUAL(http_classify_status(0), CPB_RETRY);
}

static void test_retry_after_parse(void)
{
    /* Wed, 21 Oct 2015 07:28:00 GMT */
    const int64_t date_ms = 1445412480LL * 1000;
    CU_ASSERT_EQUAL(http_parse_retry_after("120", 0), 120000);
    CU_ASSERT_EQUAL(http_parse_retry_after("0", 0), 0);
    CU_ASSERT_EQUAL(http_parse_retry_after(" 5\t", 0), 5000);
    CU_ASSERT_EQUAL(http_parse_retry_after("-1", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("+5", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("5s", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("1.5", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("   ", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after("soon", 0), -1);
    CU_ASSERT_EQUAL(http_parse_retry_after(NULL, 0), -1);
    /* Absurd delays saturate instead of overflowing. */
    CU_ASSERT(http_parse_retry_after("99999999999999999999999", 0) > HTTP_MAX_RETRY_WAIT_MS);
    CU_ASSERT(http_parse_retry_after("9223372036854775807", 0) > HTTP_MAX_RETRY_WAIT_MS);

    /* HTTP-date in the three forms RFC 9110 names. */
    CU_ASSERT_EQUAL(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date_ms - 30000),
                    30000);
    CU_ASSERT_EQUAL(http_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", date_ms - 1000),
                    1000);
    CU_ASSERT_EQUAL(http_parse_retry_after("Wed Oct 21 07:28:00 2015", date_ms - 2000), 2000);
    /* A date in the past means "now". */
    CU_ASSERT_EQUAL(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date_ms + 5000), 0);
    CU_ASSERT_EQUAL(http_parse_retry_after("Wed, 99 Foo 2015 99:99:99 GMT", 0), -1);
}

static void test_zeroed_response_free(void)
{
    struct cpb_http_response resp;
    memset(&resp, 0, sizeof resp);
    http_response_free(&resp);
    http_response_free(&resp);
    http_response_free(NULL);
    CU_ASSERT_PTR_NULL(resp.body);
    CU_ASSERT_PTR_NULL(http_header(&resp, "Content-Type"));
    CU_ASSERT_PTR_NULL(http_header(NULL, "Content-Type"));
}

/* ---- exchanges ---------------------------------------------------------- */

static void test_get_echo(void)
{
    struct cpb_http_response resp;
    enum cpb_status st = call("GET", "/echo?x=1", NULL, 0, NULL, &resp);
    CU_ASSERT_EQUAL(st, CPB_OK);
    CU_ASSERT_EQUAL(resp.status, 200);
    CU_ASSERT_EQUAL(resp.retry_after_ms, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.body);
    CU_ASSERT_EQUAL(strlen(resp.body), resp.body_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.content_type);
    CU_ASSERT_STRING_EQUAL(resp.content_type, "application/json");
    /* Case-insensitive lookup; absent header is NULL. */
    const char *a = http_header(&resp, "content-type");
    const char *b = http_header(&resp, "CONTENT-TYPE");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_STRING_EQUAL(a, "application/json");
    CU_ASSERT_STRING_EQUAL(b, "application/json");
    CU_ASSERT_PTR_NOT_NULL(http_header(&resp, "Content-Length"));
    CU_ASSERT_PTR_NULL(http_header(&resp, "X-Not-There"));
    CU_ASSERT_PTR_NULL(http_header(&resp, "HTTP/1.1 200 OK"));

    json_t *rec = json_loadb(resp.body, resp.body_len, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "method")), "GET");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "path")), "/echo");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "query")), "x=1");
    const char *ua = rec_header(rec, "user-agent");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ua);
    CU_ASSERT_STRING_EQUAL(ua, "cpbridge/" CPB_VERSION);
    json_decref(rec);
    http_response_free(&resp);
    CU_ASSERT_PTR_NULL(resp.body);
    CU_ASSERT_PTR_NULL(resp.priv);
    http_response_free(&resp); /* twice is safe */
}

static void check_body_roundtrip(const char *method, const char *path, size_t len)
{
    char *body = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    for (size_t i = 0; i < len; i++) {
        body[i] = (char)((i * 131 + 7) & 0xff); /* NULs, CR, LF, high bytes */
    }
    clear_records();
    const char *const hdrs[] = {"Content-Type: application/octet-stream", NULL};
    struct cpb_http_response resp;
    enum cpb_status st = call(method, path, body, len, hdrs, &resp);
    CU_ASSERT_EQUAL(st, CPB_OK);
    http_response_free(&resp);

    json_t *arr = recorded(path);
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 1);
    json_t *rec = json_array_get(arr, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "method")), method);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(rec, "body_len")), (json_int_t)len);
    char *want = b64(body, len);
    const char *got = json_string_value(json_object_get(rec, "body_b64"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, want);
    /* The empty Expect: header keeps curl from waiting for 100-continue. */
    CU_ASSERT_PTR_NULL(rec_header(rec, "expect"));
    free(want);
    json_decref(arr);
    free(body);
}

static void test_post_put_bytes_exact(void)
{
    check_body_roundtrip("POST", "/echo", 1000);
    check_body_roundtrip("PUT", "/echo", 777);
    check_body_roundtrip("PATCH", "/echo", 3);
    check_body_roundtrip("POST", "/echo", 2 * 1024 * 1024 + 5);
}

static void test_methods_without_body(void)
{
    struct cpb_http_response resp;
    clear_records();
    CU_ASSERT_EQUAL(call("DELETE", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("POST", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("HEAD", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.body_len, 0);
    http_response_free(&resp);
    json_t *arr = recorded("/echo");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 3);
    const char *want[] = {"DELETE", "POST", "HEAD"};
    for (size_t i = 0; i < 3; i++) {
        json_t *rec = json_array_get(arr, i);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "method")), want[i]);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(rec, "body_len")), 0);
    }
    json_decref(arr);
}

static void test_headers_and_basic_auth(void)
{
    clear_records();
    char *url = cpbserver_url(&srv, "/echo");
    const char *const hdrs[] = {"X-Custom: some value", "Accept: application/json", NULL};
    struct cpb_http_request r = req_for("GET", url);
    r.headers = hdrs;
    r.user = "ck_user";
    r.password = "p@ss:word";
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    http_response_free(&resp);
    free(url);

    json_t *arr = recorded("/echo");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 1);
    json_t *rec = json_array_get(arr, 0);
    const char *x = rec_header(rec, "x-custom");
    const char *acc = rec_header(rec, "accept");
    const char *auth = rec_header(rec, "authorization");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(auth);
    CU_ASSERT_STRING_EQUAL(x, "some value");
    CU_ASSERT_STRING_EQUAL(acc, "application/json");
    char *cred = b64("ck_user:p@ss:word", strlen("ck_user:p@ss:word"));
    char want[128];
    snprintf(want, sizeof want, "Basic %s", cred);
    CU_ASSERT_STRING_EQUAL(auth, want);
    free(cred);
    json_decref(arr);
}

static void test_bad_header_refused(void)
{
    clear_records();
    const char *const crlf[] = {"X-Evil: a\r\nX-Injected: b", NULL};
    const char *const nocolon[] = {"NoColonHere", NULL};
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/echo", NULL, 0, crlf, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "header") != NULL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("GET", "/echo", NULL, 0, nocolon, &resp), CPB_FAIL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("get", "/echo", NULL, 0, NULL, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "method") != NULL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("POST", "/echo", NULL, 5, NULL, &resp), CPB_FAIL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(count_recorded("/echo"), 0); /* nothing was sent */
}

static void test_status_classes(void)
{
    struct {
        const char *path;
        long status;
        enum cpb_status want;
    } cases[] = {
        {"/status/404", 404, CPB_FAIL},  {"/status/400", 400, CPB_FAIL},
        {"/status/500", 500, CPB_RETRY}, {"/status/503", 503, CPB_RETRY},
        {"/status/429", 429, CPB_RETRY}, {"/status/408", 408, CPB_RETRY},
        {"/status/204", 204, CPB_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cpb_http_response resp;
        enum cpb_status st = call("GET", cases[i].path, NULL, 0, NULL, &resp);
        CU_ASSERT_EQUAL(st, cases[i].want);
        CU_ASSERT_EQUAL(resp.status, cases[i].status);
        if (cases[i].want != CPB_OK) {
            char code[16];
            snprintf(code, sizeof code, "HTTP %ld", cases[i].status);
            CU_ASSERT(strstr(resp.error, code) != NULL);
            CU_ASSERT(strstr(resp.error, cases[i].path) != NULL);
        }
        http_response_free(&resp);
    }
}

static void test_redirect_not_followed(void)
{
    clear_records();
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/status/302", NULL, 0, NULL, &resp), CPB_FAIL);
    CU_ASSERT_EQUAL(resp.status, 302);
    CU_ASSERT(strstr(resp.error, "not followed") != NULL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(count_recorded("/status/302"), 1);
    CU_ASSERT_EQUAL(count_recorded("/echo"), 0);
}

static void test_odd_response_headers(void)
{
    /* A repeated header (last wins), a folded one, a blank before the colon,
     * an empty value. */
    script("/odd", "[{\"status\": 200, \"body\": \"ok\", \"headers\": {"
                   "\"X-Dup\": [\"first\", \"second\"],"
                   "\"X-Folded\": \"part one\\r\\n   part two\","
                   "\"X-Spaced \": \"  v2  \","
                   "\"X-Empty\": \"\"}}]");
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/odd", NULL, 0, NULL, &resp), CPB_OK);
    const char *dup = http_header(&resp, "x-dup");
    const char *folded = http_header(&resp, "X-Folded");
    const char *spaced = http_header(&resp, "X-Spaced");
    const char *empty = http_header(&resp, "X-Empty");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dup);
    CU_ASSERT_PTR_NOT_NULL_FATAL(folded);
    CU_ASSERT_PTR_NOT_NULL_FATAL(spaced);
    CU_ASSERT_PTR_NOT_NULL_FATAL(empty);
    CU_ASSERT_STRING_EQUAL(dup, "second");
    CU_ASSERT_STRING_EQUAL(folded, "part one part two");
    CU_ASSERT_STRING_EQUAL(spaced, "v2");
    CU_ASSERT_STRING_EQUAL(empty, "");
    CU_ASSERT_STRING_EQUAL(resp.body, "ok");
    http_response_free(&resp);

    /* A line without a colon: libcurl refuses the response; a clear error. */
    script("/nocolon", "[{\"status\": 200, \"body\": \"ok\", \"headers\": {"
                       "\"X-Odd\": \"v\\r\\nthis line has no colon\"}}]");
    enum cpb_status st = call("GET", "/nocolon", NULL, 0, NULL, &resp);
    CU_ASSERT_NOT_EQUAL(st, CPB_OK);
    CU_ASSERT(strstr(resp.error, "invalid HTTP response from") != NULL);
    CU_ASSERT(strstr(resp.error, "/nocolon") != NULL);
    http_response_free(&resp);
}

static void test_keep_alive(void)
{
    clear_records();
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("GET", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
    json_t *arr = recorded("/echo");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 2);
    json_int_t p1 = json_integer_value(json_object_get(json_array_get(arr, 0), "client_port"));
    json_int_t p2 = json_integer_value(json_object_get(json_array_get(arr, 1), "client_port"));
    CU_ASSERT(p1 != 0);
    CU_ASSERT_EQUAL(p1, p2); /* one connection, reused */
    json_decref(arr);
}

static void test_retries_then_success(void)
{
    clear_records();
    script("/flaky", "[{\"status\": 503, \"body\": \"busy\"}, {\"status\": 503},"
                     " {\"status\": 200, \"body\": \"finally\"}]");
    char *url = cpbserver_url(&srv, "/flaky");
    struct cpb_http_request r = req_for("GET", url);
    r.max_tries = 3;
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.status, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.body);
    CU_ASSERT_STRING_EQUAL(resp.body, "finally");
    CU_ASSERT_EQUAL(resp.error[0], '\0');
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/flaky"), 3);
}

static void test_retries_exhausted(void)
{
    clear_records();
    char *url = cpbserver_url(&srv, "/status/500");
    struct cpb_http_request r = req_for("GET", url);
    r.max_tries = 2;
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    CU_ASSERT_EQUAL(resp.status, 500);
    CU_ASSERT(strstr(resp.error, "HTTP 500") != NULL);
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/status/500"), 2);

    /* FAIL is not retried. */
    url = cpbserver_url(&srv, "/status/404");
    r = req_for("GET", url);
    r.max_tries = 3;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_FAIL);
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/status/404"), 1);
}

static void test_retry_after_honoured(void)
{
    clear_records();
    script("/ra", "[{\"status\": 429, \"headers\": {\"Retry-After\": \"1\"}},"
                  " {\"status\": 200, \"body\": \"ok\"}]");
    char *url = cpbserver_url(&srv, "/ra");
    struct cpb_http_request r = req_for("GET", url);
    r.max_tries = 2;
    struct cpb_http_response resp;
    int64_t t0 = mono_ms();
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    int64_t elapsed = mono_ms() - t0;
    CU_ASSERT(elapsed >= 1000);
    CU_ASSERT_EQUAL(resp.status, 200);
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/ra"), 2);
}

static void test_retry_after_too_long(void)
{
    clear_records();
    script("/ralong", "[{\"status\": 503, \"headers\": {\"Retry-After\": \"3600\"},"
                      " \"body\": \"come back later\"}, {\"status\": 200}]");
    char *url = cpbserver_url(&srv, "/ralong");
    struct cpb_http_request r = req_for("GET", url);
    r.max_tries = 3;
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    CU_ASSERT_EQUAL(resp.status, 503);
    CU_ASSERT_EQUAL(resp.retry_after_ms, 3600000L);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.body);
    CU_ASSERT_STRING_EQUAL(resp.body, "come back later");
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/ralong"), 1);
}

static void test_timeout(void)
{
    char *url = cpbserver_url(&srv, "/slow?ms=3000");
    struct cpb_http_request r = req_for("GET", url);
    r.timeout_ms = 300;
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    CU_ASSERT(strstr(resp.error, "timed out after 300 ms") != NULL);
    CU_ASSERT(strstr(resp.error, "/slow") != NULL);
    CU_ASSERT(strstr(resp.error, "ms=3000") == NULL); /* no query string */
    http_response_free(&resp);
    free(url);
    /* The client is still usable after an aborted exchange. */
    CU_ASSERT_EQUAL(call("GET", "/echo", NULL, 0, NULL, &resp), CPB_OK);
    http_response_free(&resp);
}

static void test_connection_refused(void)
{
    /* A port that was free a moment ago: bind port 0, note it, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t len = sizeof sa;
    CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));

    struct cpb_http_request r = req_for("GET", url);
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    CU_ASSERT_EQUAL(resp.status, 0);
    CU_ASSERT(strstr(resp.error, "cannot connect") != NULL);
    CU_ASSERT(strstr(resp.error, "127.0.0.1") != NULL);
    http_response_free(&resp);
}

static void test_unsupported_scheme(void)
{
    struct cpb_http_request r = req_for("GET", "file:///etc/passwd");
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "scheme") != NULL);
    CU_ASSERT_EQUAL(resp.body_len, 0);
    http_response_free(&resp);
}

static void test_body_cap(void)
{
    struct cpb_http_response resp;
    http_set_max_body_for_tests(1000);
    /* Declared by Content-Length, and discovered while reading (chunked). */
    CU_ASSERT_EQUAL(call("GET", "/big?bytes=5000", NULL, 0, NULL, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "1000-byte limit") != NULL);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("GET", "/big?bytes=5000&chunked=1", NULL, 0, NULL, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "1000-byte limit") != NULL);
    http_response_free(&resp);
    /* Exactly at the cap is fine. */
    CU_ASSERT_EQUAL(call("GET", "/big?bytes=1000", NULL, 0, NULL, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.body_len, 1000);
    http_response_free(&resp);
    CU_ASSERT_EQUAL(call("GET", "/big?bytes=1000&chunked=1", NULL, 0, NULL, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.body_len, 1000);
    http_response_free(&resp);
    http_set_max_body_for_tests(0);
    CU_ASSERT_EQUAL(call("GET", "/big?bytes=300000&chunked=1", NULL, 0, NULL, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.body_len, 300000);
    http_response_free(&resp);
}

static void test_html_error_page(void)
{
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/html", NULL, 0, NULL, &resp), CPB_RETRY);
    CU_ASSERT_EQUAL(resp.status, 503);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.content_type);
    CU_ASSERT(strncmp(resp.content_type, "text/html", 9) == 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp.body);
    CU_ASSERT(strstr(resp.body, "<html>") != NULL);
    CU_ASSERT(strstr(resp.error, "HTTP 503 Service Unavailable") != NULL);
    http_response_free(&resp);
}

static void test_truncated_body(void)
{
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(call("GET", "/truncated", NULL, 0, NULL, &resp), CPB_RETRY);
    CU_ASSERT(strstr(resp.error, "cut short") != NULL);
    http_response_free(&resp);
}

static void test_secrets_stay_out(void)
{
    FILE *logf = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(logf);
    log_configure(CPB_LOG_DEBUG, LOG_TEXT);
    log_set_stream(logf);
    clear_records();

    char url[512];
    snprintf(url, sizeof url,
             "http://urluser:urlpass-77@127.0.0.1:%d/status/503"
             "?consumer_key=ck_live_4455&consumer_secret=cs_live_9988&oauth_signature=sig_1122",
             srv.port);
    struct cpb_http_request r = req_for("POST", url);
    r.user = "basic-user";
    r.password = "hunter2-pw";
    r.body = "{}";
    r.body_len = 2;
    r.max_tries = 2;
    r.tls_no_verify = true; /* logs a warning naming the URL */
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    char error[sizeof resp.error];
    snprintf(error, sizeof error, "%s", resp.error);
    http_response_free(&resp);

    /* A 404 with credentials in the URL user info too. */
    snprintf(url, sizeof url,
             "http://urluser:urlpass-77@127.0.0.1:%d/status/404?consumer_secret=cs_live_9988",
             srv.port);
    r = req_for("GET", url);
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_FAIL);
    char error2[sizeof resp.error];
    snprintf(error2, sizeof error2, "%s", resp.error);
    http_response_free(&resp);

    fflush(logf);
    log_set_stream(NULL);
    rewind(logf);
    char logtext[16384];
    size_t n = fread(logtext, 1, sizeof logtext - 1, logf);
    logtext[n] = '\0';
    fclose(logf);
    log_configure(CPB_LOG_INFO, LOG_TEXT);

    /* The messages are useful ... */
    CU_ASSERT(strstr(error, "HTTP 503") != NULL);
    CU_ASSERT(strstr(error, "127.0.0.1") != NULL);
    CU_ASSERT(strstr(error, "/status/503") != NULL);
    CU_ASSERT(strstr(error2, "/status/404") != NULL);
    CU_ASSERT(strstr(logtext, "TLS verification is OFF") != NULL);
    CU_ASSERT(strstr(logtext, "retrying") != NULL);
    CU_ASSERT(strstr(logtext, "test-http") != NULL);
    /* ... and free of credentials. */
    const char *secrets[] = {"hunter2-pw",   "urlpass-77", "ck_live_4455",
                             "cs_live_9988", "sig_1122",   "consumer_secret"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        CU_ASSERT_PTR_NULL(strstr(error, secrets[i]));
        CU_ASSERT_PTR_NULL(strstr(error2, secrets[i]));
        CU_ASSERT_PTR_NULL(strstr(logtext, secrets[i]));
    }
    /* The credentials did reach the server (so the test means something). */
    json_t *arr = recorded("/status/503");
    CU_ASSERT_EQUAL_FATAL(json_array_size(arr), 2);
    json_t *args = json_object_get(json_array_get(arr, 0), "args");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(args, "consumer_secret")),
                           "cs_live_9988");
    json_decref(arr);
}

static void test_https_to_plain_server(void)
{
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo?consumer_secret=cs_x", srv.port);
    struct cpb_http_request r = req_for("GET", url);
    struct cpb_http_response resp;
    enum cpb_status st = http_perform(cli, &r, &resp);
    CU_ASSERT(st == CPB_RETRY || st == CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "TLS") != NULL);
    CU_ASSERT(strstr(resp.error, "https://127.0.0.1") != NULL);
    CU_ASSERT(strstr(resp.error, "cs_x") == NULL);
    http_response_free(&resp);
}

/* ---- a real TLS server -------------------------------------------------- */

static int start_tls_server(void)
{
    if (tls_srv.pid > 0) {
        return 0;
    }
    const char *key = cpbtest_path("key.pem");
    snprintf(cert_pem, sizeof cert_pem, "%s", cpbtest_path("cert.pem"));
    int rc = cpbtest_sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' "
                        "-days 2 -subj /CN=127.0.0.1 "
                        "-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null",
                        key, cert_pem);
    if (rc != 0) {
        fprintf(stderr, "openssl req failed (%d)\n", rc);
        return -1;
    }
    const char *const args[] = {"--tls-cert", cert_pem, "--tls-key", key, NULL};
    return cpbserver_start(&tls_srv, cpbtest_src("tests/servers/httpd.py"), args);
}

static void test_tls_verification(void)
{
    CU_ASSERT_EQUAL_FATAL(start_tls_server(), 0);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo", tls_srv.port);
    struct cpb_http_response resp;

    /* Self-signed, not trusted: verification fails, permanently. */
    struct cpb_http_request r = req_for("GET", url);
    r.max_tries = 3;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "TLS verification failed") != NULL);
    CU_ASSERT_EQUAL(resp.status, 0);
    http_response_free(&resp);

    /* Trusted through ca_file. */
    r.ca_file = cert_pem;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    CU_ASSERT_EQUAL(resp.status, 200);
    http_response_free(&resp);

    /* A missing CA file is a clear permanent error. */
    r.ca_file = cpbtest_path("no-such-ca.pem");
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_FAIL);
    CU_ASSERT(strstr(resp.error, "TLS") != NULL);
    http_response_free(&resp);

    /* Verification off: works, and says so in the log. */
    FILE *logf = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(logf);
    log_set_stream(logf);
    r.ca_file = NULL;
    r.tls_no_verify = true;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_OK);
    http_response_free(&resp);
    fflush(logf);
    log_set_stream(NULL);
    rewind(logf);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, logf);
    text[n] = '\0';
    fclose(logf);
    CU_ASSERT(strstr(text, "warn") != NULL);
    CU_ASSERT(strstr(text, "TLS verification is OFF") != NULL);
}

static void test_server_log_file(void)
{
    char *text = cpbtest_slurp(cpbtest_path("httpd.log"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t lines = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
        json_t *rec = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, NULL);
        CU_ASSERT(json_is_object(rec));
        CU_ASSERT(json_is_string(json_object_get(rec, "method")));
        json_decref(rec);
        lines++;
        line = nl + 1;
    }
    CU_ASSERT(lines > 10);
    free(text);
}

/* ---- several at once: http_perform_many ---------------------------------- */

enum { MANY_MAX = 16 };

/* Perform reqs for paths[0..n-1] (GET, max_tries `tries`, retry_unsent_only
 * `unsent`) through http_perform_many; resps/st filled; returns its
 * status. */
static enum cpb_status many(const char *const *paths, size_t n, unsigned max_parallel,
                            unsigned tries, bool unsent, struct cpb_http_response *resps,
                            enum cpb_status *st)
{
    struct cpb_http_request r[MANY_MAX];
    const struct cpb_http_request *p[MANY_MAX];
    char *urls[MANY_MAX];
    CU_ASSERT_FATAL(n <= MANY_MAX);
    for (size_t i = 0; i < n; i++) {
        urls[i] = paths[i][0] == '/' ? cpbserver_url(&srv, paths[i]) : strdup(paths[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(urls[i]);
        r[i] = req_for("GET", urls[i]);
        r[i].max_tries = tries;
        r[i].retry_unsent_only = unsent;
        p[i] = &r[i];
    }
    enum cpb_status rc = http_perform_many(cli, p, resps, st, n, max_parallel);
    for (size_t i = 0; i < n; i++) {
        free(urls[i]);
    }
    return rc;
}

/* Each answer belongs to its own request; at most max_parallel
 * connections, kept for the next call. */
static void test_many_in_order_bounded_kept(void)
{
    enum { N = 12 };
    const char *paths[N];
    char text[N][40];
    struct cpb_http_response resps[N];
    enum cpb_status st[N];
    clear_records();
    for (size_t i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], i % 2 == 0 ? "/slow?ms=150&i=%zu" : "/echo?i=%zu", i);
        paths[i] = text[i];
    }
    CU_ASSERT_EQUAL_FATAL(many(paths, N, 3, 1, false, resps, st), CPB_OK);
    for (size_t i = 0; i < N; i++) {
        char want[20];
        CU_ASSERT_EQUAL(st[i], CPB_OK);
        CU_ASSERT_EQUAL(resps[i].status, 200);
        CU_ASSERT_PTR_NOT_NULL_FATAL(resps[i].body);
        snprintf(want, sizeof want, "\"i=%zu\"", i);
        if (i % 2 == 1) {
            CU_ASSERT_PTR_NOT_NULL(strstr(resps[i].body, want)); /* the echo of its own query */
        } else {
            CU_ASSERT_STRING_EQUAL(resps[i].body, "slow\n");
        }
        http_response_free(&resps[i]);
    }
    /* Ports: at most 3 connections for 12 requests, and more than one. */
    json_int_t ports[N * 2];
    size_t nports = 0;
    json_t *a = recorded("/slow");
    json_t *b = recorded("/echo");
    json_t *both[] = {a, b};
    for (size_t k = 0; k < 2; k++) {
        size_t i;
        json_t *rec;
        json_array_foreach(both[k], i, rec)
        {
            json_int_t port = json_integer_value(json_object_get(rec, "client_port"));
            bool seen = false;
            for (size_t j = 0; j < nports; j++) {
                seen = seen || ports[j] == port;
            }
            if (!seen) {
                ports[nports++] = port;
            }
        }
    }
    CU_ASSERT_EQUAL(json_array_size(a) + json_array_size(b), N);
    CU_ASSERT(nports >= 2);
    CU_ASSERT(nports <= 3);
    json_decref(a);
    json_decref(b);

    /* The next call reuses those connections. */
    clear_records();
    CU_ASSERT_EQUAL_FATAL(many(paths + 1, 1, 3, 1, false, resps, st), CPB_OK);
    http_response_free(&resps[0]);
    a = recorded("/echo");
    json_int_t again = json_integer_value(json_object_get(json_array_get(a, 0), "client_port"));
    bool reused = false;
    for (size_t j = 0; j < nports; j++) {
        reused = reused || ports[j] == again;
    }
    CU_ASSERT(reused);
    json_decref(a);

    /* Nothing to do is fine; no client is not. */
    CU_ASSERT_EQUAL(http_perform_many(cli, NULL, NULL, NULL, 0, 0), CPB_OK);
    CU_ASSERT_EQUAL(http_perform_many(NULL, NULL, resps, st, 1, 0), CPB_FAIL);
    CU_ASSERT_EQUAL(st[0], CPB_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(resps[0].error, "without a client"));
    http_response_free(&resps[0]);
}

/* A 429 with Retry-After holds back every request not yet started, and
 * the refused one is tried again after it. */
static void test_many_429_holds_the_rest(void)
{
    const char *paths[] = {"/m429", "/echo?k=1", "/echo?k=2", "/echo?k=3"};
    struct cpb_http_response resps[4];
    enum cpb_status st[4];
    clear_records();
    script("/m429", "[{\"status\": 429, \"headers\": {\"Retry-After\": \"1\"}},"
                    " {\"status\": 200, \"body\": \"ok\"}]");
    CU_ASSERT_EQUAL_FATAL(many(paths, 4, 1, 3, false, resps, st), CPB_OK);
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(st[i], CPB_OK);
        http_response_free(&resps[i]);
    }
    json_t *r429 = recorded("/m429");
    json_t *echo = recorded("/echo");
    CU_ASSERT_EQUAL_FATAL(json_array_size(r429), 2);
    CU_ASSERT_EQUAL_FATAL(json_array_size(echo), 3);
    double refused = json_real_value(json_object_get(json_array_get(r429, 0), "time"));
    double first_other = json_real_value(json_object_get(json_array_get(echo, 0), "time"));
    CU_ASSERT(first_other - refused >= 0.9); /* waited for the Retry-After */
    json_decref(r429);
    json_decref(echo);

    /* Retry-After longer than a run waits: the rest are not sent at all. */
    clear_records();
    script("/mlong", "[{\"status\": 503, \"headers\": {\"Retry-After\": \"3600\"}}]");
    const char *more[] = {"/mlong", "/echo?k=4", "/echo?k=5"};
    CU_ASSERT_EQUAL_FATAL(many(more, 3, 1, 3, false, resps, st), CPB_OK);
    CU_ASSERT_EQUAL(st[0], CPB_RETRY);
    CU_ASSERT_EQUAL(resps[0].retry_after_ms, 3600000L);
    CU_ASSERT_EQUAL(st[1], CPB_RETRY);
    CU_ASSERT_PTR_NOT_NULL(strstr(resps[1].error, "not sent"));
    CU_ASSERT_EQUAL(resps[1].retry_after_ms, 3600000L);
    CU_ASSERT_EQUAL(st[2], CPB_RETRY);
    for (size_t i = 0; i < 3; i++) {
        http_response_free(&resps[i]);
    }
    CU_ASSERT_EQUAL(count_recorded("/mlong"), 1);
    CU_ASSERT_EQUAL(count_recorded("/echo"), 0);
}

/* retry_unsent_only: a 503 and a refused connection are tried again, a
 * cut answer (the server may have acted) is not; without the flag it is. */
static void test_many_retry_unsent_only(void)
{
    const char *paths[] = {"/u503", "/truncated", "http://127.0.0.1:1/refused"};
    struct cpb_http_response resps[3];
    enum cpb_status st[3];
    for (int pass = 0; pass < 2; pass++) {
        bool unsent = pass == 0;
        clear_records();
        script("/u503", "[{\"status\": 503, \"headers\": {\"Retry-After\": \"0\"}},"
                        " {\"status\": 200, \"body\": \"ok\"}]");
        CU_ASSERT_EQUAL_FATAL(many(paths, 3, 2, 2, unsent, resps, st), CPB_OK);
        CU_ASSERT_EQUAL(st[0], CPB_OK);
        CU_ASSERT_EQUAL(st[1], CPB_RETRY);
        CU_ASSERT_EQUAL(st[2], CPB_RETRY);
        for (size_t i = 0; i < 3; i++) {
            http_response_free(&resps[i]);
        }
        CU_ASSERT_EQUAL(count_recorded("/u503"), 2);
        CU_ASSERT_EQUAL(count_recorded("/truncated"), unsent ? 1 : 2);
    }

    /* The same rule for one request at a time. */
    clear_records();
    char *url = cpbserver_url(&srv, "/truncated");
    struct cpb_http_request r = req_for("POST", url);
    r.max_tries = 3;
    r.retry_unsent_only = true;
    struct cpb_http_response resp;
    CU_ASSERT_EQUAL(http_perform(cli, &r, &resp), CPB_RETRY);
    http_response_free(&resp);
    free(url);
    CU_ASSERT_EQUAL(count_recorded("/truncated"), 1);
}

static const struct cpbtest_case pure_cases[] = {
    {"classify_status", test_classify_status},
    {"retry_after_parse", test_retry_after_parse},
    {"zeroed_response_free", test_zeroed_response_free},
    {NULL, NULL},
};

static const struct cpbtest_case live_cases[] = {
    {"get_echo", test_get_echo},
    {"post_put_bytes_exact", test_post_put_bytes_exact},
    {"methods_without_body", test_methods_without_body},
    {"headers_and_basic_auth", test_headers_and_basic_auth},
    {"bad_header_refused", test_bad_header_refused},
    {"status_classes", test_status_classes},
    {"redirect_not_followed", test_redirect_not_followed},
    {"odd_response_headers", test_odd_response_headers},
    {"keep_alive", test_keep_alive},
    {"retries_then_success", test_retries_then_success},
    {"retries_exhausted", test_retries_exhausted},
    {"retry_after_honoured", test_retry_after_honoured},
    {"retry_after_too_long", test_retry_after_too_long},
    {"timeout", test_timeout},
    {"connection_refused", test_connection_refused},
    {"unsupported_scheme", test_unsupported_scheme},
    {"body_cap", test_body_cap},
    {"html_error_page", test_html_error_page},
    {"truncated_body", test_truncated_body},
    {"secrets_stay_out", test_secrets_stay_out},
    {"https_to_plain_server", test_https_to_plain_server},
    {"tls_verification", test_tls_verification},
    {"server_log_file", test_server_log_file},
    {"many_in_order_bounded_kept", test_many_in_order_bounded_kept},
    {"many_429_holds_the_rest", test_many_429_holds_the_rest},
    {"many_retry_unsent_only", test_many_retry_unsent_only},
    {NULL, NULL},
};

static const struct cpbtest_suite pure_suite = {"http_pure", NULL, NULL, pure_cases};
static const struct cpbtest_suite live_suite = {"http_live", setup, teardown, live_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&pure_suite, &live_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
