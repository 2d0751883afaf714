/*
 * http.c — the engine's HTTP client over libcurl (see http.h): one easy
 * handle per client for one request at a time, and a multi handle with a
 * pool of easy handles for several at once (http_perform_many; kept
 * connections are reused in both), TLS verification on,
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
    CURLM *multi;                  /* http_perform_many: made on first use */
    CURL *pool[HTTP_MAX_PARALLEL]; /* its easy handles, kept for their connections */
    unsigned cap; /* 0, or at most this many at once: the server asked to slow down */
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

/* One exchange on an easy handle: what xfer_setup gives libcurl and the
 * callbacks fill, until xfer_finish. */
struct xfer {
    CURL *h; /* borrowed from the client */
    struct curl_slist *headers;
    struct http_transfer t;
    char errbuf[CURL_ERROR_SIZE];
    bool unsent; /* xfer_finish: the server certainly did not act on it */
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
    for (size_t i = 0; i < HTTP_MAX_PARALLEL; i++) {
        curl_easy_cleanup(c->pool[i]);
    }
    curl_multi_cleanup(c->multi);
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

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
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
static enum cpb_status transport_error(const struct xfer *x, const struct cpb_http_request *r,
                                       CURLcode rc, const char *url, struct cpb_http_response *resp)
{
    char detail[CURL_ERROR_SIZE];
    copy_printable(detail, sizeof detail, x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(rc),
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
        if (curl_easy_getinfo(x->h, CURLINFO_CONNECT_TIME_T, &connect_us) != CURLE_OK) {
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

/*
 * Set up handle x->h for request `r` (normalised): headers, options and
 * callbacks; resp->priv gets the header store. Returns CPB_OK, or the
 * status with resp->error set (then xfer_release, and no transfer).
 */
static enum cpb_status xfer_setup(struct xfer *x, const struct cpb_http_request *r, const char *url,
                                  struct cpb_http_response *resp)
{
    struct http_priv *p = calloc(1, sizeof *p);
    int bad = 0;

    x->headers = NULL;
    x->t = (struct http_transfer){BUF_INIT, (size_t)max_body_bytes, 0, NULL};
    x->errbuf[0] = '\0';
    if (p == NULL) {
        set_error(resp, "out of memory");
        return CPB_RETRY;
    }
    resp->priv = p;
    x->t.priv = p;

    x->headers = curl_slist_append(NULL, "Expect:");
    if (x->headers == NULL) {
        set_error(resp, "out of memory");
        return CPB_RETRY;
    }
    if (r->headers != NULL) {
        for (size_t i = 0; r->headers[i] != NULL; i++) {
            struct curl_slist *more = curl_slist_append(x->headers, r->headers[i]);
            if (more == NULL) {
                set_error(resp, "out of memory");
                return CPB_RETRY;
            }
            x->headers = more;
        }
    }

    CURL *h = x->h;
    curl_easy_reset(h); /* keeps live connections, DNS and TLS session caches */
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)x) != CURLE_OK;
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
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, r->tls_no_verify ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, r->tls_no_verify ? 0L : 2L) != CURLE_OK;
    if (r->ca_file != NULL) {
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file) != CURLE_OK;
    }
    bad |= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->t.max_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &x->t) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &x->t) != CURLE_OK;
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
        return CPB_FAIL;
    }
    return CPB_OK;
}

/* Fill resp from the finished transfer on x (libcurl's result rc) and
 * classify it. */
static enum cpb_status xfer_finish(struct xfer *x, CURLcode rc, const struct cpb_http_request *r,
                                   const char *url, struct cpb_http_response *resp)
{
    struct http_priv *p = x->t.priv;
    enum cpb_status st;
    long status = 0;
    if (curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
        status = 0;
    }
    resp->status = status;
    if (x->t.too_big || x->t.body.oom) {
        buf_free(&x->t.body);
    }
    size_t body_len = x->t.body.len;
    resp->body = buf_take(&x->t.body); /* "" when empty; NULL only when out of memory */
    resp->body_len = resp->body != NULL ? body_len : 0;
    resp->content_type = http_header(resp, "Content-Type");
    const char *ra = http_header(resp, "Retry-After");
    resp->retry_after_ms = ra != NULL ? http_parse_retry_after(ra, wall_ms()) : -1;

    /* Refused before it was acted on: an overloaded server's answer, or no
     * connection at all. */
    curl_off_t connect_us = 0;
    if (rc != CURLE_OK &&
        curl_easy_getinfo(x->h, CURLINFO_CONNECT_TIME_T, &connect_us) != CURLE_OK) {
        connect_us = 0;
    }
    x->unsent = (rc == CURLE_OK && (status == 429 || status == 503)) ||
                rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                rc == CURLE_COULDNT_RESOLVE_PROXY ||
                (rc == CURLE_OPERATION_TIMEDOUT && connect_us == 0);
    if (x->t.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        set_error(resp, "the response from %s is larger than the %ld-byte limit", url,
                  max_body_bytes);
        st = CPB_FAIL;
    } else if (p->oom || x->t.body.oom || resp->body == NULL) {
        set_error(resp, "out of memory reading the response from %s", url);
        st = CPB_RETRY;
    } else if (rc != CURLE_OK) {
        st = transport_error(x, r, rc, url, resp);
    } else {
        st = http_classify_status(status);
        if (st != CPB_OK) {
            status_error(resp, p->reason, url, resp);
        }
    }
    return st;
}

/* What xfer_setup took, except the response (the caller's). */
static void xfer_release(struct xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    buf_free(&x->t.body);
}

static enum cpb_status perform_once(struct http_client *c, const struct cpb_http_request *r,
                                    const char *url, struct cpb_http_response *resp, bool *unsent)
{
    struct xfer x = {.h = c->curl};
    enum cpb_status st = xfer_setup(&x, r, url, resp);
    if (st == CPB_OK) {
        st = xfer_finish(&x, curl_easy_perform(x.h), r, url, resp);
    }
    *unsent = st == CPB_OK ? false : x.unsent || st != CPB_RETRY;
    xfer_release(&x);
    return st;
}

/* Copy the caller's request into *r (only the fields its struct has, for
 * older stages), with the default timeouts, and check it; url[] gets the
 * URL as shown to people. Returns 0, or -1 with resp->error set. */
static int normalise(const struct http_client *c, const struct cpb_http_request *req,
                     struct cpb_http_request *r, char url[HTTP_SAFE_URL],
                     struct cpb_http_response *resp)
{
    memset(r, 0, sizeof *r);
    size_t n = req->size == 0 || req->size > sizeof *r ? sizeof *r : req->size;
    memcpy(r, req, n);
    if (r->timeout_ms <= 0) {
        r->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    }
    if (r->connect_timeout_ms <= 0) {
        r->connect_timeout_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    }
    if (check_request(r, resp) != 0) {
        return -1;
    }
    if (r->password != NULL) {
        /* Never logged by this module; masked in case anything else does.
         * Failure (the secret table is full) cannot be helped here. */
        (void)log_redact_add(r->password);
    }
    safe_url(r->url, url, HTTP_SAFE_URL);
    if (r->tls_no_verify) {
        log_msg(CPB_LOG_WARN, c->log_stage, 0,
                "TLS verification is OFF for %s (tls_no_verify): the server is not authenticated",
                url);
    }
    return 0;
}

/* The wait before try `attempt` + 1 after the retryable answer in resp:
 * its Retry-After, or the backoff. -1 (logged) when the server asks for
 * longer than a run waits. */
static long retry_wait(struct http_client *c, const struct cpb_http_response *resp,
                       unsigned attempt, unsigned tries)
{
    struct retry_policy policy = {HTTP_RETRY_BASE_MS, HTTP_RETRY_CAP_MS, tries};
    if (resp->retry_after_ms < 0) {
        return (long)retry_delay_ms(&policy, attempt, &c->rng);
    }
    if (resp->retry_after_ms > HTTP_MAX_RETRY_WAIT_MS) {
        log_msg(CPB_LOG_INFO, c->log_stage, 0,
                "%s; Retry-After asks for %ld s, more than the %ld s waited within a run: not "
                "retrying now",
                resp->error, resp->retry_after_ms / 1000, HTTP_MAX_RETRY_WAIT_MS / 1000);
        return -1;
    }
    return resp->retry_after_ms;
}

static void response_reset(struct cpb_http_response *resp)
{
    http_response_free(resp);
    memset(resp, 0, sizeof *resp);
    resp->retry_after_ms = -1;
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
    if (normalise(c, req, &r, url, resp) != 0) {
        return CPB_FAIL;
    }
    unsigned tries = r.max_tries > 1 ? r.max_tries : 1;
    for (unsigned attempt = 1;; attempt++) {
        if (attempt > 1) {
            response_reset(resp);
        }
        bool unsent = false;
        st = perform_once(c, &r, url, resp, &unsent);
        if (st != CPB_RETRY || attempt >= tries || (r.retry_unsent_only && !unsent)) {
            break;
        }
        long wait = retry_wait(c, resp, attempt, tries);
        if (wait < 0) {
            break;
        }
        log_msg(CPB_LOG_INFO, c->log_stage, 0, "%s; try %u of %u, retrying in %ld ms", resp->error,
                attempt, tries, wait);
        sleep_ms(wait);
    }
    return st;
}

/* ---- several at once ------------------------------------------------------ */

/* One request of http_perform_many. */
struct many_item {
    struct cpb_http_request r;
    char url[HTTP_SAFE_URL];
    unsigned attempt; /* tries started */
    unsigned tries;
    int64_t not_before; /* monotonic ms: its next try waits until then */
    enum { ITEM_WAITING, ITEM_RUNNING, ITEM_DONE } state;
};

/* A transfer slot: an easy handle of the client's pool and the item on it. */
struct many_slot {
    struct xfer x;
    size_t item;
    bool busy;
};

/* The multi handle and the pool, made on first use. 0 or -1. */
static int many_ready(struct http_client *c, unsigned window)
{
    if (c->multi == NULL) {
        c->multi = curl_multi_init();
        if (c->multi == NULL) {
            return -1;
        }
        /* Idle connections kept for reuse: one per slot. */
        (void)curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)HTTP_MAX_PARALLEL);
    }
    for (unsigned i = 0; i < window; i++) {
        if (c->pool[i] == NULL) {
            c->pool[i] = curl_easy_init();
            if (c->pool[i] == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

/* A request that is not sent: the server asked every request to wait
 * longer than a run waits. */
static void not_sent(struct cpb_http_response *resp, const char *url, long retry_after_ms)
{
    response_reset(resp);
    set_error(resp, "not sent to %s: the server asked to wait %ld s (Retry-After)", url,
              retry_after_ms / 1000);
    resp->retry_after_ms = retry_after_ms;
}

enum cpb_status http_perform_many(struct http_client *c, const struct cpb_http_request *const *reqs,
                                  struct cpb_http_response *resps, enum cpb_status *st, size_t n,
                                  unsigned max_parallel)
{
    struct many_item *items = NULL;
    struct many_slot slots[HTTP_MAX_PARALLEL];
    enum cpb_status ret = CPB_FAIL;
    unsigned asked = max_parallel == 0                  ? HTTP_DEFAULT_PARALLEL
                     : max_parallel > HTTP_MAX_PARALLEL ? HTTP_MAX_PARALLEL
                                                        : max_parallel;
    unsigned window = c != NULL && c->cap > 0 && c->cap < asked ? c->cap : asked;
    bool slowed = false; /* a 429 or 503 in this call */
    unsigned running = 0;
    size_t left = 0;
    int64_t hold_until = 0;  /* no new try starts before (the server asked) */
    long give_up_after = -1; /* >= 0: the server asked for longer than a run waits */

    memset(slots, 0, sizeof slots);
    for (size_t i = 0; resps != NULL && st != NULL && i < n; i++) {
        memset(&resps[i], 0, sizeof resps[i]);
        resps[i].retry_after_ms = -1;
        st[i] = CPB_FAIL;
        set_error(&resps[i], "HTTP requests without a client or a request list");
    }
    if (c == NULL || (n > 0 && (reqs == NULL || resps == NULL || st == NULL))) {
        return CPB_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        resps[i].error[0] = '\0';
    }
    if (n == 0) {
        return CPB_OK;
    }
    items = calloc(n, sizeof *items);
    if (items == NULL || many_ready(c, window) != 0) {
        for (size_t i = 0; i < n; i++) {
            set_error(&resps[i], "out of memory");
        }
        goto out;
    }
    for (unsigned k = 0; k < window; k++) {
        slots[k].x.h = c->pool[k];
    }
    for (size_t i = 0; i < n; i++) {
        struct many_item *it = &items[i];
        if (reqs[i] == NULL) {
            set_error(&resps[i], "HTTP request without a request");
            it->state = ITEM_DONE;
            continue;
        }
        if (normalise(c, reqs[i], &it->r, it->url, &resps[i]) != 0) {
            it->state = ITEM_DONE;
            continue;
        }
        it->tries = it->r.max_tries > 1 ? it->r.max_tries : 1;
        it->state = ITEM_WAITING;
        left++;
    }

    while (left > 0) {
        int64_t now = mono_ms();
        int64_t next_due = -1;
        /* Start what may start: a free slot, due, and the server not holding us back. */
        for (size_t i = 0; i < n; i++) {
            struct many_item *it = &items[i];
            if (it->state != ITEM_WAITING) {
                continue;
            }
            if (give_up_after >= 0) {
                not_sent(&resps[i], it->url, give_up_after);
                st[i] = CPB_RETRY;
                it->state = ITEM_DONE;
                left--;
                continue;
            }
            int64_t due = it->not_before > hold_until ? it->not_before : hold_until;
            if (due > now || running >= window) {
                next_due = next_due < 0 || due < next_due ? due : next_due;
                continue;
            }
            unsigned k = 0;
            while (k < window && slots[k].busy) {
                k++;
            }
            if (it->attempt > 0) {
                response_reset(&resps[i]);
            }
            it->attempt++;
            enum cpb_status s = xfer_setup(&slots[k].x, &it->r, it->url, &resps[i]);
            if (s == CPB_OK && curl_multi_add_handle(c->multi, slots[k].x.h) != CURLM_OK) {
                set_error(&resps[i], "cannot start the HTTP request to %s", it->url);
                s = CPB_RETRY;
            }
            if (s != CPB_OK) {
                xfer_release(&slots[k].x);
                st[i] = s;
                it->state = ITEM_DONE;
                left--;
                continue;
            }
            slots[k].busy = true;
            slots[k].item = i;
            it->state = ITEM_RUNNING;
            running++;
        }
        if (left == 0) {
            break;
        }
        if (running == 0) {
            /* Everything left waits for its retry time. */
            if (next_due > now) {
                sleep_ms((long)(next_due - now));
            }
            continue;
        }

        int still = 0;
        if (curl_multi_perform(c->multi, &still) != CURLM_OK) {
            still = 0;
        }
        CURLMsg *m;
        int queued = 0;
        bool freed = false; /* a slot came free: start the next request first */
        while ((m = curl_multi_info_read(c->multi, &queued)) != NULL) {
            struct xfer *x = NULL;
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            CURL *h = m->easy_handle;
            CURLcode rc = m->data.result;
            if (curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&x) != CURLE_OK || x == NULL) {
                continue; /* not ours: cannot happen */
            }
            (void)curl_multi_remove_handle(c->multi, h);
            struct many_slot *slot = (struct many_slot *)(void *)x; /* x is its first member */
            size_t i = slot->item;
            struct many_item *it = &items[i];
            enum cpb_status s = xfer_finish(x, rc, &it->r, it->url, &resps[i]);
            xfer_release(x);
            slot->busy = false;
            freed = true;
            running--;
            st[i] = s;
            it->state = ITEM_DONE;
            long ra = resps[i].retry_after_ms;
            if (s == CPB_RETRY && (resps[i].status == 429 || resps[i].status == 503)) {
                /* The server is overloaded: slow down for all of it, not
                 * just this request; its Retry-After (or the backoff) holds
                 * back every try not yet started, and half as many go at
                 * once from now on. */
                long hold = ra >= 0 ? ra : HTTP_RETRY_BASE_MS;
                if (hold > HTTP_MAX_RETRY_WAIT_MS) {
                    give_up_after = hold;
                } else if (mono_ms() + hold > hold_until) {
                    hold_until = mono_ms() + hold;
                }
                slowed = true;
                if (window > 1) {
                    window /= 2;
                    log_msg(CPB_LOG_INFO, c->log_stage, 0,
                            "%s asked to slow down (HTTP %ld%s): at most %u request(s) at once "
                            "from now on",
                            it->url, resps[i].status, ra >= 0 ? ", Retry-After" : "", window);
                }
            }
            if (s != CPB_RETRY || it->attempt >= it->tries ||
                (it->r.retry_unsent_only && !x->unsent)) {
                left--;
                continue;
            }
            long wait = retry_wait(c, &resps[i], it->attempt, it->tries);
            if (wait < 0) {
                left--;
                continue;
            }
            log_msg(CPB_LOG_INFO, c->log_stage, 0, "%s; try %u of %u, retrying in %ld ms",
                    resps[i].error, it->attempt, it->tries, wait);
            it->not_before = mono_ms() + wait;
            it->state = ITEM_WAITING;
        }
        if (running > 0 && !freed) {
            int64_t t = mono_ms();
            long timeout = 100;
            if (next_due > t && next_due - t < timeout) {
                timeout = (long)(next_due - t);
            }
            (void)curl_multi_poll(c->multi, NULL, 0, (int)timeout, NULL);
        }
    }
    /* Remember a slow-down for the next calls; each call the server takes
     * without one allows one more at once again. */
    if (slowed) {
        c->cap = window;
    } else if (c->cap > 0 && ++c->cap >= HTTP_MAX_PARALLEL) {
        c->cap = 0;
    }
    ret = CPB_OK;
out:
    for (unsigned k = 0; k < HTTP_MAX_PARALLEL; k++) {
        if (slots[k].busy) {
            (void)curl_multi_remove_handle(c->multi, slots[k].x.h);
            xfer_release(&slots[k].x);
        }
    }
    free(items);
    return ret;
}
