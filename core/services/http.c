/*
 * http.c — the engine's HTTP client over libcurl (see http.h): one easy
 * handle per client (kept connections are reused), TLS verification on,
 * timeouts, no redirects, a cap on body size, headers kept for lookup,
 * outcomes classified as OK / RETRY / FAIL, and retries with backoff or
 * Retry-After. Messages never carry a URL's query string or user info.
 */
#include "services/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/retry.h"
#include "services/log.h"

/* Backoff between tries when the server gives no Retry-After. */
#define HTTP_RETRY_BASE_MS 500
#define HTTP_RETRY_CAP_MS  10000
/* Headers kept per response; more are ignored (libcurl caps their size). */
#define HTTP_MAX_HEADERS 512
/* Longest reason phrase kept for messages. */
#define HTTP_MAX_REASON 64
/* A URL as shown in messages and logs. */
#define HTTP_SAFE_URL 160

struct http_client {
    CURL *curl;
    const char *log_stage; /* borrowed */
    uint64_t rng;
    char errbuf[CURL_ERROR_SIZE];
};

struct http_hdr {
    char *name;
    char *value;
};

/* What hangs off cpb_http_response.priv. */
struct http_priv {
    struct http_hdr *items;
    size_t n;
    size_t cap;
    char reason[HTTP_MAX_REASON + 1];
    int oom;
};

/* State of one transfer, for the curl callbacks. */
struct http_transfer {
    struct buf body;
    size_t max_body;
    int too_big;
    struct http_priv *priv;
};

static long max_body_bytes = HTTP_MAX_BODY;

void http_set_max_body_for_tests(long bytes)
{
    max_body_bytes = bytes > 0 ? bytes : HTTP_MAX_BODY;
}

int http_global_init(struct err *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        return err_set(err, CPB_EXIT_SOFTWARE, "cannot initialise libcurl: %s",
                       curl_easy_strerror(rc));
    }
    return 0;
}

void http_global_cleanup(void)
{
    curl_global_cleanup();
}

struct http_client *http_client_new(const char *log_stage)
{
    struct http_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        free(c);
        return NULL;
    }
    c->log_stage = log_stage;
    c->rng = retry_rng_seed();
    return c;
}

void http_client_free(struct http_client *c)
{
    if (c == NULL) {
        return;
    }
    curl_easy_cleanup(c->curl);
    free(c);
}

/* ---- response memory ---------------------------------------------------- */

static void priv_clear_headers(struct http_priv *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].name);
        free(p->items[i].value);
    }
    p->n = 0;
}

void http_response_free(struct cpb_http_response *resp)
{
    if (resp == NULL) {
        return;
    }
    struct http_priv *p = resp->priv;
    if (p != NULL) {
        priv_clear_headers(p);
        free(p->items);
        free(p);
    }
    free(resp->body);
    resp->priv = NULL;
    resp->body = NULL;
    resp->body_len = 0;
    resp->content_type = NULL;
}

const char *http_header(const struct cpb_http_response *resp, const char *name)
{
    if (resp == NULL || resp->priv == NULL || name == NULL) {
        return NULL;
    }
    const struct http_priv *p = resp->priv;
    /* From the end: the last value of a repeated header wins. */
    for (size_t i = p->n; i > 0; i--) {
        if (strcasecmp(p->items[i - 1].name, name) == 0) {
            return p->items[i - 1].value;
        }
    }
    return NULL;
}

/* ---- pure helpers ------------------------------------------------------- */

enum cpb_status http_classify_status(long status)
{
    if (status >= 200 && status <= 299) {
        return CPB_OK;
    }
    if (status == 0 || status == 408 || status == 429 || (status >= 500 && status <= 599)) {
        return CPB_RETRY;
    }
    return CPB_FAIL;
}

long http_parse_retry_after(const char *value, int64_t now_ms)
{
    if (value == NULL) {
        return -1;
    }
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    size_t len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t')) {
        len--;
    }
    if (len == 0 || len > 64) {
        return -1;
    }
    char text[65];
    memcpy(text, value, len);
    text[len] = '\0';

    if (isdigit((unsigned char)text[0])) {
        /* delta-seconds: digits only. */
        for (size_t i = 0; i < len; i++) {
            if (!isdigit((unsigned char)text[i])) {
                return -1;
            }
        }
        errno = 0;
        char *end = NULL;
        long long secs = strtoll(text, &end, 10);
        if (end == text || *end != '\0') {
            return -1;
        }
        if (errno == ERANGE || secs > LONG_MAX / 1000) {
            return LONG_MAX; /* absurdly long: certainly longer than we wait */
        }
        return (long)(secs * 1000);
    }
    if (!isalpha((unsigned char)text[0])) {
        return -1; /* no sign, no junk: an HTTP-date starts with a day name */
    }
    time_t when = curl_getdate(text, NULL);
    if (when == (time_t)-1 || when < 0 || (int64_t)when > INT64_MAX / 1000) {
        return -1;
    }
    int64_t delta = (int64_t)when * 1000 - now_ms;
    if (delta < 0) {
        return 0;
    }
    if (delta > LONG_MAX) {
        return LONG_MAX;
    }
    return (long)delta;
}

/* ---- helpers ------------------------------------------------------------ */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec left;
    left.tv_sec = ms / 1000;
    left.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        /* interrupted by a signal: sleep the rest */
    }
}

/* Copy at most n bytes of s into out (size outn), replacing control
 * characters so a message stays one printable line. */
static void copy_printable(char *out, size_t outn, const char *s, size_t n)
{
    size_t j = 0;
    if (outn == 0) {
        return;
    }
    for (size_t i = 0; i < n && s[i] != '\0' && j + 1 < outn; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[j] = '\0';
}

/* The URL as shown to people: scheme://host[:port]/path, without user info,
 * query string or fragment (they may hold credentials). */
static void safe_url(const char *url, char *out, size_t n)
{
    char *scheme = NULL;
    char *host = NULL;
    char *port = NULL;
    char *path = NULL;
    CURLU *u = NULL;

    if (url == NULL) {
        snprintf(out, n, "(no URL)");
        return;
    }
    u = curl_url();
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK) {
            port = NULL;
        }
        char tmp[HTTP_SAFE_URL * 2];
        snprintf(tmp, sizeof tmp, "%s://%s%s%s%s", scheme, host, port != NULL ? ":" : "",
                 port != NULL ? port : "", path);
        copy_printable(out, n, tmp, sizeof tmp);
        goto out;
    }

    /* Not a URL curl understands: cut it by hand. */
    {
        size_t len = strcspn(url, "?#");
        const char *start = url;
        const char *sep = strstr(url, "://");
        struct buf b = BUF_INIT;
        if (sep != NULL && (size_t)(sep - url) < len) {
            const char *auth = sep + 3;
            size_t auth_len = strcspn(auth, "/?#");
            const char *at = memchr(auth, '@', auth_len);
            buf_add(&b, url, (size_t)(auth - url));
            start = at != NULL ? at + 1 : auth;
        }
        buf_add(&b, start, len - (size_t)(start - url));
        copy_printable(out, n, buf_str(&b), b.len);
        buf_free(&b);
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
}

/* Set resp->error, masked with the registered secrets. */
static void set_error(struct cpb_http_response *resp, const char *fmt, ...) CPB_PRINTF(2, 3);
static void set_error(struct cpb_http_response *resp, const char *fmt, ...)
{
    char raw[sizeof resp->error];
    struct buf masked = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    log_redact_into(raw, &masked);
    if (masked.oom) {
        snprintf(resp->error, sizeof resp->error, "%s", "out of memory");
    } else {
        copy_printable(resp->error, sizeof resp->error, buf_str(&masked), masked.len);
    }
    buf_free(&masked);
}

/* ---- curl callbacks ----------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t n = size * nmemb;
    if (n > t->max_body || t->body.len > t->max_body - n) {
        t->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (buf_add(&t->body, data, n) != 0) {
        return 0;
    }
    return n;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Add "name: value" to the list; folded lines extend the last value. */
static int priv_add_line(struct http_priv *p, const char *line, size_t len)
{
    if (is_blank(line[0])) {
        /* obs-fold continuation: append to the previous value */
        if (p->n == 0) {
            return 0;
        }
        while (len > 0 && is_blank(line[0])) {
            line++;
            len--;
        }
        struct http_hdr *h = &p->items[p->n - 1];
        size_t old = strlen(h->value);
        char *grown = realloc(h->value, old + 1 + len + 1);
        if (grown == NULL) {
            return -1;
        }
        grown[old] = ' ';
        memcpy(grown + old + 1, line, len);
        grown[old + 1 + len] = '\0';
        h->value = grown;
        return 0;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line) {
        return 0; /* not a header line: ignore it */
    }
    size_t name_len = (size_t)(colon - line);
    while (name_len > 0 && is_blank(line[name_len - 1])) {
        name_len--;
    }
    for (size_t i = 0; i < name_len; i++) {
        if (is_blank(line[i])) {
            return 0; /* a name with blanks inside is no header */
        }
    }
    if (name_len == 0 || p->n >= HTTP_MAX_HEADERS) {
        return 0;
    }
    const char *v = colon + 1;
    size_t v_len = len - (size_t)(v - line);
    while (v_len > 0 && is_blank(v[0])) {
        v++;
        v_len--;
    }
    while (v_len > 0 && is_blank(v[v_len - 1])) {
        v_len--;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap != 0 ? p->cap * 2 : 16;
        struct http_hdr *items = realloc(p->items, cap * sizeof *items);
        if (items == NULL) {
            return -1;
        }
        p->items = items;
        p->cap = cap;
    }
    char *name = dup_range(line, name_len);
    char *value = dup_range(v, v_len);
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return -1;
    }
    p->items[p->n].name = name;
    p->items[p->n].value = value;
    p->n++;
    return 0;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    struct http_priv *p = t->priv;
    size_t n = size * nitems;
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) {
        len--;
    }
    if (len == 0) {
        return n;
    }
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the headers so far and keep
         * the reason phrase for messages. */
        priv_clear_headers(p);
        p->reason[0] = '\0';
        const char *sp = memchr(data, ' ', len);
        if (sp != NULL) {
            const char *sp2 = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - data));
            if (sp2 != NULL) {
                size_t rlen = len - (size_t)(sp2 + 1 - data);
                copy_printable(p->reason, sizeof p->reason, sp2 + 1, rlen);
            }
        }
        return n;
    }
    if (priv_add_line(p, data, len) != 0) {
        p->oom = 1;
        return 0;
    }
    return n;
}

/* ---- one try ------------------------------------------------------------ */

static int valid_method(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isupper((unsigned char)m[i])) {
            return 0;
        }
    }
    return 1;
}

/* Validate the request before anything is sent; 0 or -1 with resp->error. */
static int check_request(const struct cpb_http_request *r, struct cpb_http_response *resp)
{
    if (r->url == NULL || r->url[0] == '\0') {
        set_error(resp, "HTTP request without a URL");
        return -1;
    }
    if (r->method != NULL && !valid_method(r->method)) {
        set_error(resp, "invalid HTTP method (expected upper-case letters such as GET or POST)");
        return -1;
    }
    if (r->body == NULL && r->body_len != 0) {
        set_error(resp, "HTTP request with a body length but no body");
        return -1;
    }
    if (r->headers != NULL) {
        for (size_t i = 0; r->headers[i] != NULL; i++) {
            const char *h = r->headers[i];
            if (strpbrk(h, "\r\n") != NULL || strchr(h, ':') == NULL || h[0] == ':') {
                set_error(resp,
                          "invalid HTTP request header #%zu (expected one \"Name: value\" line)",
                          i + 1);
                return -1;
            }
        }
    }
    return 0;
}

static int is_tls_verify_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION: /* also CURLE_SSL_CACERT */
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return 1;
    default:
        return 0;
    }
}

/* Classify a transport error and describe it. */
static enum cpb_status transport_error(struct http_client *c, const struct cpb_http_request *r,
                                       CURLcode rc, const char *url, struct cpb_http_response *resp)
{
    char detail[CURL_ERROR_SIZE];
    copy_printable(detail, sizeof detail, c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc),
                   sizeof detail);

    if (is_tls_verify_error(rc)) {
        set_error(resp,
                  "TLS verification failed for %s: %s (check the server certificate, or set "
                  "ca_file to the CA that signed it)",
                  url, detail);
        return CPB_FAIL;
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connect_us = 0;
        if (curl_easy_getinfo(c->curl, CURLINFO_CONNECT_TIME_T, &connect_us) != CURLE_OK) {
            connect_us = 0;
        }
        if (connect_us == 0) {
            long limit =
                r->connect_timeout_ms < r->timeout_ms ? r->connect_timeout_ms : r->timeout_ms;
            set_error(resp, "timed out after %ld ms connecting to %s", limit, url);
        } else {
            set_error(resp, "timed out after %ld ms waiting for %s", r->timeout_ms, url);
        }
        return CPB_RETRY;
    }
    case CURLE_COULDNT_CONNECT:
        set_error(resp, "cannot connect to %s: %s", url, detail);
        return CPB_RETRY;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        set_error(resp, "cannot resolve the host of %s: %s", url, detail);
        return CPB_RETRY;
    case CURLE_PARTIAL_FILE:
        set_error(resp, "the response from %s was cut short: %s", url, detail);
        return CPB_RETRY;
    case CURLE_GOT_NOTHING:
        set_error(resp, "%s closed the connection without a response", url);
        return CPB_RETRY;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        set_error(resp, "network error talking to %s: %s", url, detail);
        return CPB_RETRY;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        /* a broken server or proxy; often transient */
        set_error(resp, "invalid HTTP response from %s: %s", url, detail);
        return CPB_RETRY;
    case CURLE_SSL_CONNECT_ERROR:
        set_error(resp, "TLS handshake with %s failed: %s", url, detail);
        return CPB_RETRY;
    case CURLE_OUT_OF_MEMORY:
        set_error(resp, "out of memory talking to %s", url);
        return CPB_RETRY;
    case CURLE_UNSUPPORTED_PROTOCOL:
        set_error(resp, "unsupported URL scheme in %s (only http and https are allowed)", url);
        return CPB_FAIL;
    case CURLE_URL_MALFORMAT:
        set_error(resp, "malformed URL %s: %s", url, detail);
        return CPB_FAIL;
    default:
        set_error(resp, "request to %s failed: %s", url, detail);
        return CPB_FAIL;
    }
}

/* Describe a non-2xx status. */
static void status_error(const struct cpb_http_response *resp_in, const char *reason,
                         const char *url, struct cpb_http_response *resp)
{
    long st = resp_in->status;
    const char *sep = reason[0] != '\0' ? " " : "";
    if (st >= 300 && st <= 399) {
        char where[HTTP_SAFE_URL];
        const char *loc = http_header(resp_in, "Location");
        if (loc != NULL) {
            safe_url(loc, where, sizeof where);
            set_error(resp, "HTTP %ld%s%s from %s (redirect to %s not followed)", st, sep, reason,
                      url, where);
        } else {
            set_error(resp, "HTTP %ld%s%s from %s (redirects are not followed)", st, sep, reason,
                      url);
        }
        return;
    }
    set_error(resp, "HTTP %ld%s%s from %s", st, sep, reason, url);
}

static enum cpb_status perform_once(struct http_client *c, const struct cpb_http_request *r,
                                    const char *url, struct cpb_http_response *resp)
{
    enum cpb_status st = CPB_FAIL;
    struct curl_slist *headers = NULL;
    struct http_transfer t = {BUF_INIT, (size_t)max_body_bytes, 0, NULL};
    struct http_priv *p = calloc(1, sizeof *p);
    int bad = 0;

    if (p == NULL) {
        set_error(resp, "out of memory");
        st = CPB_RETRY;
        goto out;
    }
    resp->priv = p;
    t.priv = p;

    headers = curl_slist_append(NULL, "Expect:");
    if (headers == NULL) {
        set_error(resp, "out of memory");
        st = CPB_RETRY;
        goto out;
    }
    if (r->headers != NULL) {
        for (size_t i = 0; r->headers[i] != NULL; i++) {
            struct curl_slist *more = curl_slist_append(headers, r->headers[i]);
            if (more == NULL) {
                set_error(resp, "out of memory");
                st = CPB_RETRY;
                goto out;
            }
            headers = more;
        }
    }

    CURL *h = c->curl;
    curl_easy_reset(h); /* keeps live connections, DNS and TLS session caches */
    c->errbuf[0] = '\0';
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) !=
           CURLE_OK;
#endif
    bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "cpbridge/" CPB_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, r->tls_no_verify ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, r->tls_no_verify ? 0L : 2L) != CURLE_OK;
    if (r->ca_file != NULL) {
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file) != CURLE_OK;
    }
    bad |= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t.max_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &t) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &t) != CURLE_OK;
    if (r->user != NULL) {
        bad |= curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_USERNAME, r->user) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_PASSWORD, r->password != NULL ? r->password : "") !=
               CURLE_OK;
    }

    const char *method = r->method != NULL ? r->method : "GET";
    if (strcmp(method, "HEAD") == 0) {
        bad |= curl_easy_setopt(h, CURLOPT_NOBODY, 1L) != CURLE_OK;
    } else if (strcmp(method, "GET") == 0 && r->body == NULL) {
        bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    } else if (r->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "PATCH") == 0) {
        bad |=
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "") != CURLE_OK;
        if (strcmp(method, "POST") != 0) {
            bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
        }
    } else {
        bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    }
    if (bad) {
        set_error(resp, "cannot set up the HTTP request to %s (libcurl refused an option)", url);
        st = CPB_FAIL;
        goto out;
    }

    CURLcode rc = curl_easy_perform(h);

    long status = 0;
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
        status = 0;
    }
    resp->status = status;
    if (t.too_big || t.body.oom) {
        buf_free(&t.body);
    }
    size_t body_len = t.body.len;
    resp->body = buf_take(&t.body); /* "" when empty; NULL only when out of memory */
    resp->body_len = resp->body != NULL ? body_len : 0;
    resp->content_type = http_header(resp, "Content-Type");
    const char *ra = http_header(resp, "Retry-After");
    resp->retry_after_ms = ra != NULL ? http_parse_retry_after(ra, wall_ms()) : -1;

    if (t.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        set_error(resp, "the response from %s is larger than the %ld-byte limit", url,
                  max_body_bytes);
        st = CPB_FAIL;
    } else if (p->oom || t.body.oom || resp->body == NULL) {
        set_error(resp, "out of memory reading the response from %s", url);
        st = CPB_RETRY;
    } else if (rc != CURLE_OK) {
        st = transport_error(c, r, rc, url, resp);
    } else {
        st = http_classify_status(status);
        if (st != CPB_OK) {
            status_error(resp, p->reason, url, resp);
        }
    }
out:
    curl_slist_free_all(headers);
    buf_free(&t.body);
    return st;
}

enum cpb_status http_perform(struct http_client *c, const struct cpb_http_request *req,
                             struct cpb_http_response *resp)
{
    struct cpb_http_request r;
    char url[HTTP_SAFE_URL];
    enum cpb_status st = CPB_FAIL;

    if (resp == NULL) {
        return CPB_FAIL;
    }
    memset(resp, 0, sizeof *resp);
    resp->retry_after_ms = -1;
    if (c == NULL || req == NULL) {
        set_error(resp, "HTTP request without a client or a request");
        return CPB_FAIL;
    }
    /* Read only the fields the caller's struct has (older stages). */
    memset(&r, 0, sizeof r);
    size_t n = req->size == 0 || req->size > sizeof r ? sizeof r : req->size;
    memcpy(&r, req, n);
    if (r.timeout_ms <= 0) {
        r.timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    }
    if (r.connect_timeout_ms <= 0) {
        r.connect_timeout_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    }
    if (check_request(&r, resp) != 0) {
        return CPB_FAIL;
    }
    if (r.password != NULL) {
        /* Never logged by this module; masked in case anything else does.
         * Failure (the secret table is full) cannot be helped here. */
        (void)log_redact_add(r.password);
    }
    safe_url(r.url, url, sizeof url);
    if (r.tls_no_verify) {
        log_msg(CPB_LOG_WARN, c->log_stage, 0,
                "TLS verification is OFF for %s (tls_no_verify): the server is not authenticated",
                url);
    }

    unsigned tries = r.max_tries > 1 ? r.max_tries : 1;
    struct retry_policy policy = {HTTP_RETRY_BASE_MS, HTTP_RETRY_CAP_MS, tries};
    for (unsigned attempt = 1;; attempt++) {
        if (attempt > 1) {
            http_response_free(resp);
            memset(resp, 0, sizeof *resp);
            resp->retry_after_ms = -1;
        }
        st = perform_once(c, &r, url, resp);
        if (st != CPB_RETRY || attempt >= tries) {
            break;
        }
        long wait = 0;
        if (resp->retry_after_ms >= 0) {
            if (resp->retry_after_ms > HTTP_MAX_RETRY_WAIT_MS) {
                log_msg(CPB_LOG_INFO, c->log_stage, 0,
                        "%s; Retry-After asks for %ld s, more than the %ld s waited within a "
                        "run: not retrying now",
                        resp->error, resp->retry_after_ms / 1000, HTTP_MAX_RETRY_WAIT_MS / 1000);
                break;
            }
            wait = resp->retry_after_ms;
        } else {
            wait = (long)retry_delay_ms(&policy, attempt, &c->rng);
        }
        log_msg(CPB_LOG_INFO, c->log_stage, 0, "%s; try %u of %u, retrying in %ld ms", resp->error,
                attempt, tries, wait);
        sleep_ms(wait);
    }
    return st;
}
