/*
 * woo_api.c — the WooCommerce REST API v3 client shared by source-woo and
 * sync-status (see woo_api.h): home URL normalization, Basic or OAuth
 * 1.0a requests through the host's HTTP service, JSON recognition, and
 * failure messages that name the store's error and its likely cause.
 */
#include "woo_api.h"
#include "stage_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *const woo_auth_choices[] = {"auto", "basic", "oauth", NULL};
const char *const woo_sig_choices[] = {"HMAC-SHA256", "HMAC-SHA1", NULL};

/* OAuth retries (the host cannot re-sign: nonces are single-use). */
#define WOO_RETRY_BASE_MS 500L
#define WOO_RETRY_CAP_MS  10000L
#define WOO_RETRY_MAX_MS  60000L
/* Text kept from an error page or message. */
#define WOO_TEXT_MAX 200

/* ---- URL ------------------------------------------------------------------ */

static int url_fail(char *msg, size_t n, const char *why)
{
    snprintf(msg, n, "url %s (the store's home URL, e.g. https://shop.example)", why);
    return -1;
}

/* Normalize the home URL into out (WOO_URL_MAX + 1 bytes). */
static int normalize_url(const char *u, char *out, bool *https, char *msg, size_t n)
{
    size_t len = strlen(u);
    size_t skip;
    if (len == 0 || len > WOO_URL_MAX) {
        return url_fail(msg, n, "is empty or too long");
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)u[i];
        if (ch <= 0x20 || ch == 0x7f) {
            return url_fail(msg, n, "contains a space or a control character");
        }
    }
    if (strncasecmp(u, "https://", 8) == 0) {
        *https = true;
        skip = 8;
    } else if (strncasecmp(u, "http://", 7) == 0) {
        *https = false;
        skip = 7;
    } else {
        return url_fail(msg, n, "must start with https:// or http://");
    }
    const char *auth = u + skip;
    size_t alen = strcspn(auth, "/?#");
    const char *path = auth + alen;
    if (alen == 0) {
        return url_fail(msg, n, "has no host name");
    }
    if (memchr(auth, '@', alen) != NULL) {
        return url_fail(msg, n,
                        "must not contain a user name or password (set consumer_key and "
                        "consumer_secret instead)");
    }
    if (strpbrk(path, "?#") != NULL) {
        return url_fail(msg, n, "must not have a query string or fragment");
    }
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/') {
        plen--;
    }
    for (size_t i = 0; i + 8 <= plen; i++) {
        if (strncasecmp(path + i, "/wp-json", 8) == 0) {
            return url_fail(msg, n, "is the REST API address; give the home URL without /wp-json");
        }
    }
    /* host[:port], or [v6]:port */
    size_t hlen = alen;
    const char *port = NULL;
    size_t portlen = 0;
    const char *colon = NULL;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL) {
            return url_fail(msg, n, "has an unterminated [IPv6] address");
        }
        if ((size_t)(close - auth) + 1 < alen) {
            colon = close + 1;
        }
    } else {
        colon = memchr(auth, ':', alen);
    }
    if (colon != NULL) {
        if (*colon != ':') {
            return url_fail(msg, n, "has text after the [IPv6] address");
        }
        hlen = (size_t)(colon - auth);
        port = colon + 1;
        portlen = alen - hlen - 1;
        if (portlen == 0 || portlen > 5 || strspn(port, "0123456789") < portlen) {
            return url_fail(msg, n, "has an invalid port");
        }
        char digits[6];
        memcpy(digits, port, portlen);
        digits[portlen] = '\0';
        errno = 0;
        long p = strtol(digits, NULL, 10);
        if (errno != 0 || p < 1 || p > 65535) {
            return url_fail(msg, n, "has a port outside 1..65535");
        }
        if ((*https && p == 443) || (!*https && p == 80)) {
            port = NULL; /* WordPress's home URL leaves the default port out */
        }
    }
    if (hlen == 0) {
        return url_fail(msg, n, "has no host name");
    }
    char host[WOO_URL_MAX + 1];
    for (size_t i = 0; i < hlen; i++) {
        char ch = auth[i];
        host[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    host[hlen] = '\0';
    int w = snprintf(out, WOO_URL_MAX + 1, "%s://%s%s%.*s%.*s", *https ? "https" : "http", host,
                     port != NULL ? ":" : "", port != NULL ? (int)portlen : 0,
                     port != NULL ? port : "", (int)plen, path);
    if (w < 0 || w > WOO_URL_MAX) {
        return url_fail(msg, n, "is too long");
    }
    return 0;
}

int woo_client_init(struct woo_client *c, const struct cpb_host *host, struct cpb_ctx *ctx,
                    const struct woo_conn *conn, char *msg, size_t n)
{
    memset(c, 0, sizeof *c);
    c->host = host;
    c->ctx = ctx;
    if (conn->url == NULL || conn->key == NULL || conn->secret == NULL) {
        snprintf(msg, n, "url, consumer_key and consumer_secret are required");
        return -1;
    }
    if (normalize_url(conn->url, c->home, &c->https, msg, n) != 0) {
        return -1;
    }
    if (conn->key[0] == '\0' || conn->secret[0] == '\0') {
        snprintf(msg, n, "consumer_key and consumer_secret must not be empty");
        return -1;
    }
    switch (conn->auth) {
    case WOO_AUTH_BASIC:
        c->oauth = false;
        break;
    case WOO_AUTH_OAUTH:
        c->oauth = true;
        break;
    default:
        c->oauth = !c->https;
        break;
    }
    c->key = conn->key;
    c->secret = conn->secret;
    c->sig = conn->sig == WOO_SIG_HMAC_SHA1 ? WOO_SIG_HMAC_SHA1 : WOO_SIG_HMAC_SHA256;
    c->timeout_ms = conn->timeout_ms > 0 ? (long)conn->timeout_ms : 30000L;
    c->max_tries = conn->max_tries > 0 && conn->max_tries < 100 ? (unsigned)conn->max_tries : 1u;
    c->tls_no_verify = conn->tls_no_verify;
    c->ca_file = conn->ca_file;
    host->redact(ctx, conn->secret);
    if (!c->oauth && !c->https) {
        host->log(ctx, CPB_LOG_WARN,
                  "auth = basic over plain http: WooCommerce accepts Basic auth only when it "
                  "sees HTTPS (e.g. a TLS proxy that sets X-Forwarded-Proto: https); otherwise "
                  "every request gets 401");
    }
    return 0;
}

/* ---- requests -------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        /* interrupted: sleep the rest */
    }
}

/* Build the request URL into *url (new): base, the query, and (OAuth) the
 * signed oauth_* parameters. Returns 0 or -1 (out of memory). */
static int build_url(struct woo_client *c, const char *method, const char *base,
                     const struct woo_param *query, size_t nquery, char **url)
{
    char *text = NULL;
    size_t len = 0;
    struct woo_param *all = NULL;
    char *bs = NULL;
    char uuid[37];
    char nonce[33];
    char stamp[24];
    char sig[WOO_SIG_MAX];
    FILE *f = NULL;
    int failed = 0;
    int rc = -1;
    size_t nall = nquery;

    *url = NULL;
    all = malloc((nquery + 5) * sizeof *all);
    if (all == NULL) {
        goto out;
    }
    if (nquery > 0) {
        memcpy(all, query, nquery * sizeof *all);
    }
    if (c->oauth) {
        size_t j = 0;
        c->host->uuid(c->ctx, uuid);
        for (size_t i = 0; uuid[i] != '\0' && j < 32; i++) {
            if (uuid[i] != '-') {
                nonce[j++] = uuid[i];
            }
        }
        nonce[j] = '\0';
        snprintf(stamp, sizeof stamp, "%lld", (long long)(c->host->now_ms(c->ctx) / 1000));
        all[nall++] = (struct woo_param){"oauth_consumer_key", c->key};
        all[nall++] = (struct woo_param){"oauth_nonce", nonce};
        all[nall++] = (struct woo_param){"oauth_signature_method", woo_sig_name(c->sig)};
        all[nall++] = (struct woo_param){"oauth_timestamp", stamp};
        bs = woo_oauth_base_string(method, base, all, nall);
        if (bs == NULL || woo_oauth_signature(bs, c->secret, c->sig, sig, sizeof sig) != 0) {
            goto out;
        }
        all[nall++] = (struct woo_param){"oauth_signature", sig};
    }
    f = open_memstream(&text, &len);
    if (f == NULL) {
        goto out;
    }
    if (fputs(base, f) == EOF) {
        failed = 1;
    }
    for (size_t i = 0; i < nall && !failed; i++) {
        if (fputc(i == 0 ? '?' : '&', f) == EOF || woo_rfc3986(f, all[i].key) != 0 ||
            fputc('=', f) == EOF || woo_rfc3986(f, all[i].value) != 0) {
            failed = 1;
        }
    }
    if (ferror(f)) {
        failed = 1;
    }
    if (fclose(f) != 0) {
        failed = 1;
    }
    if (!failed) {
        *url = text; /* open_memstream publishes it at fclose */
        text = NULL;
        rc = 0;
    }
out:
    free(text);
    free(all);
    free(bs);
    return rc;
}

static const char *const json_headers[] = {"Accept: application/json",
                                           "Content-Type: application/json", NULL};
static const char *const get_headers[] = {"Accept: application/json", NULL};

/* Fill *req for one try of `method` on `base` (a full URL without query);
 * *url receives the new URL with the query (and a fresh OAuth signature),
 * which the caller frees after the exchange. Returns 0 or -1 (OOM). */
static int prepare(struct woo_client *c, const char *method, const char *base,
                   const struct woo_param *query, size_t nquery, const char *json_body,
                   unsigned tries, struct cpb_http_request *req, char **url)
{
    if (build_url(c, method, base, query, nquery, url) != 0) {
        return -1;
    }
    memset(req, 0, sizeof *req);
    req->size = sizeof *req;
    req->method = method;
    req->url = *url;
    req->headers = json_body != NULL ? json_headers : get_headers;
    req->body = json_body;
    req->body_len = json_body != NULL ? strlen(json_body) : 0;
    if (!c->oauth) {
        req->user = c->key;
        req->password = c->secret;
    }
    req->timeout_ms = c->timeout_ms;
    /* Basic: the host retries. OAuth: every try needs a fresh nonce and
     * signature (the store refuses a nonce it has seen), so we retry. */
    req->max_tries = c->oauth ? 1 : tries;
    req->tls_no_verify = c->tls_no_verify;
    req->ca_file = c->ca_file;
    return 0;
}

static int base_url(const struct woo_client *c, const char *route, char *out, size_t n)
{
    int w = snprintf(out, n, "%s/wp-json/wc/v3%s", c->home, route);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The wait before OAuth try `attempt` + 1, or -1 when the store asked for
 * longer than a run waits (the engine tries later). */
static long oauth_wait(const struct cpb_http_response *resp, unsigned attempt)
{
    long wait = WOO_RETRY_BASE_MS << (attempt - 1 < 5 ? attempt - 1 : 5);
    if (wait > WOO_RETRY_CAP_MS) {
        wait = WOO_RETRY_CAP_MS;
    }
    if (resp->retry_after_ms >= 0) {
        if (resp->retry_after_ms > WOO_RETRY_MAX_MS) {
            return -1;
        }
        wait = resp->retry_after_ms;
    }
    return wait;
}

enum cpb_status woo_request(struct woo_client *c, const char *method, const char *route,
                            const struct woo_param *query, size_t nquery, const char *json_body,
                            unsigned max_tries, struct cpb_http_response *resp)
{
    char base[WOO_URL_MAX + 300];
    enum cpb_status st = CPB_FAIL;
    unsigned tries = max_tries > 1 ? max_tries : 1;

    memset(resp, 0, sizeof *resp);
    resp->retry_after_ms = -1;
    if (base_url(c, route, base, sizeof base) != 0) {
        snprintf(resp->error, sizeof resp->error, "request path too long");
        return CPB_FAIL;
    }
    for (unsigned attempt = 1;; attempt++) {
        char *url = NULL;
        struct cpb_http_request req;
        if (prepare(c, method, base, query, nquery, json_body, tries, &req, &url) != 0) {
            snprintf(resp->error, sizeof resp->error, "out of memory building a request to %.120s",
                     route);
            return CPB_RETRY;
        }
        st = c->host->http(c->ctx, &req, resp);
        free(url);
        if (!c->oauth || st != CPB_RETRY || attempt >= tries) {
            break;
        }
        long wait = oauth_wait(resp, attempt);
        if (wait < 0) {
            break;
        }
        c->host->log(c->ctx, CPB_LOG_INFO, "%s %s: %s; try %u of %u, retrying in %ld ms", method,
                     route, resp->error, attempt, tries, wait);
        c->host->http_free(resp);
        memset(resp, 0, sizeof *resp);
        resp->retry_after_ms = -1;
        sleep_ms(wait);
    }
    return st;
}

enum cpb_status woo_request_many(struct woo_client *c, const char *method,
                                 const char *const *routes, const char *const *json_bodies,
                                 size_t n, unsigned max_tries, bool unsent_only,
                                 unsigned max_parallel, struct cpb_http_response *resps,
                                 enum cpb_status *st)
{
    struct cpb_http_request *reqs = calloc(n > 0 ? n : 1, sizeof *reqs);
    const struct cpb_http_request **ptrs = calloc(n > 0 ? n : 1, sizeof *ptrs);
    char **urls = calloc(n > 0 ? n : 1, sizeof *urls);
    size_t *pending = calloc(n > 0 ? n : 1, sizeof *pending);
    struct cpb_http_response *r = calloc(n > 0 ? n : 1, sizeof *r);
    enum cpb_status *rst = calloc(n > 0 ? n : 1, sizeof *rst);
    enum cpb_status ret = CPB_FAIL;
    unsigned tries = max_tries > 1 ? max_tries : 1;
    size_t k = n;

    for (size_t i = 0; i < n; i++) {
        memset(&resps[i], 0, sizeof resps[i]);
        resps[i].retry_after_ms = -1;
        st[i] = CPB_RETRY;
        if (pending != NULL) {
            pending[i] = i;
        }
    }
    if (reqs == NULL || ptrs == NULL || urls == NULL || pending == NULL || r == NULL ||
        rst == NULL) {
        goto out;
    }
    /* With OAuth each round re-signs what is left to retry (fresh nonces);
     * with Basic the host retries inside the one round. */
    for (unsigned attempt = 1; k > 0; attempt++) {
        char base[WOO_URL_MAX + 300];
        for (size_t j = 0; j < k; j++) {
            size_t i = pending[j];
            const char *body = json_bodies != NULL ? json_bodies[i] : NULL;
            if (base_url(c, routes[i], base, sizeof base) != 0 ||
                prepare(c, method, base, NULL, 0, body, tries, &reqs[j], &urls[j]) != 0) {
                goto out;
            }
            reqs[j].retry_unsent_only = unsent_only;
            ptrs[j] = &reqs[j];
        }
        if (c->host->http_many(c->ctx, ptrs, r, rst, k, max_parallel) != CPB_OK) {
            goto out;
        }
        size_t left = 0;
        long wait = 0;
        for (size_t j = 0; j < k; j++) {
            size_t i = pending[j];
            free(urls[j]);
            urls[j] = NULL;
            c->host->http_free(&resps[i]);
            resps[i] = r[j];
            st[i] = rst[j];
            bool again =
                rst[j] == CPB_RETRY && (!unsent_only || r[j].status == 429 || r[j].status == 503);
            if (c->oauth && again && attempt < tries) {
                long w = oauth_wait(&r[j], attempt);
                if (w >= 0) {
                    wait = w > wait ? w : wait;
                    pending[left++] = i;
                }
            }
        }
        k = left;
        if (k > 0) {
            sleep_ms(wait);
        }
    }
    ret = CPB_OK;
out:
    for (size_t j = 0; urls != NULL && j < n; j++) {
        free(urls[j]);
    }
    free(reqs);
    free(ptrs);
    free(urls);
    free(pending);
    free(r);
    free(rst);
    return ret;
}

bool woo_is_json(const struct cpb_http_response *resp)
{
    const char *ct = resp->content_type;
    if (ct == NULL) {
        return false;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    size_t len = strcspn(ct, "; \t");
    if (len == 16 && strncasecmp(ct, "application/json", 16) == 0) {
        return true;
    }
    return len > 5 && strncasecmp(ct + len - 5, "+json", 5) == 0;
}

json_t *woo_json_body(const struct cpb_http_response *resp, char *msg, size_t n)
{
    json_error_t jerr;
    if (resp->body == NULL || resp->body_len == 0) {
        snprintf(msg, n, "the body is empty");
        return NULL;
    }
    json_t *doc = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (doc == NULL) {
        char text[WOO_TEXT_MAX];
        woo_clean_text(jerr.text, strlen(jerr.text), text, sizeof text);
        snprintf(msg, n, "not valid JSON at line %d, column %d: %s", jerr.line, jerr.column, text);
    }
    return doc;
}

/* ---- failures -------------------------------------------------------------- */

const char *woo_failure_name(enum woo_failure f)
{
    switch (f) {
    case WOO_F_AUTH:
        return "auth";
    case WOO_F_NOT_FOUND:
        return "not_found";
    case WOO_F_REJECTED:
        return "rejected";
    case WOO_F_NOT_JSON:
        return "not_json";
    case WOO_F_TRANSPORT:
        return "transport";
    case WOO_F_UNAVAILABLE:
        break;
    }
    return "unavailable";
}

/* Length of one valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t want;
    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        want = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        want = 3;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        want = 4;
    } else {
        return 0;
    }
    if (want > n) {
        return 0;
    }
    for (size_t i = 1; i < want; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return want;
}

bool woo_status_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 40 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

void woo_clean_text(const char *in, size_t in_len, char *out, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t j = 0;
    bool in_tag = false;
    bool space = false;
    bool cut = false;
    if (n == 0) {
        return;
    }
    for (size_t i = 0; in != NULL && i < in_len;) {
        unsigned char ch = s[i];
        if (in_tag) {
            in_tag = ch != '>';
            space = space || !in_tag;
            i++;
            continue;
        }
        if (ch == '<') {
            in_tag = true;
            i++;
            continue;
        }
        if (ch < 0x20 || ch == 0x7f || ch == ' ') {
            space = true;
            i++;
            continue;
        }
        size_t len = utf8_len(s + i, in_len - i);
        const char *piece = len > 0 ? (const char *)s + i : "?";
        size_t plen = len > 0 ? len : 1;
        size_t need = plen + (space && j > 0 ? 1 : 0);
        if (j + need + 1 > n) {
            cut = true;
            break;
        }
        if (space && j > 0) {
            out[j++] = ' ';
        }
        space = false;
        memcpy(out + j, piece, plen);
        j += plen;
        i += len > 0 ? len : 1;
    }
    if (cut && n > 4) {
        while (j + 4 > n) {
            j = stage_utf8_floor(out, j - 1);
        }
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
}

/* The readable text of an HTML page: what follows <body ...>, else all. */
static void page_text(const struct cpb_http_response *resp, char *out, size_t n)
{
    const char *b = resp->body != NULL ? resp->body : "";
    size_t len = resp->body != NULL ? resp->body_len : 0;
    for (size_t i = 0; i + 5 <= len; i++) {
        if (strncasecmp(b + i, "<body", 5) == 0) {
            b += i;
            len -= i;
            break;
        }
    }
    woo_clean_text(b, len, out, n);
}

/* The likely cause of a 401/403 given the store's code and message. */
static const char *auth_hint(const struct woo_client *c, const char *code, const char *message,
                             bool json)
{
    if (!json) {
        return "a firewall (WAF, CDN) or a security plugin refused the request before "
               "WooCommerce saw it";
    }
    if (strstr(message, "Consumer secret is invalid") != NULL) {
        return "consumer_secret is wrong";
    }
    if (strstr(message, "Consumer key is invalid") != NULL) {
        return "consumer_key is wrong, or the key was revoked";
    }
    if (strstr(message, "Invalid signature") != NULL) {
        return "the OAuth signature was refused: check consumer_secret, and that url is exactly "
               "the WordPress home URL (scheme, host and port as in Settings > General)";
    }
    if (strstr(message, "Invalid timestamp") != NULL) {
        return "this host's clock and the store's differ by more than 15 minutes";
    }
    if (strstr(message, "read permission") != NULL) {
        return "the API key lacks Read permission (WooCommerce > Settings > Advanced > REST API)";
    }
    if (strstr(message, "write permission") != NULL) {
        return "the API key lacks Write permission (WooCommerce > Settings > Advanced > REST "
               "API)";
    }
    if (strncmp(code, "woocommerce_rest_cannot_", 24) == 0) {
        if (!c->oauth && !c->https) {
            return "Basic auth over plain HTTP is refused by WooCommerce: use an https:// url, or "
                   "auth = \"oauth\"";
        }
        if (!c->oauth) {
            return "the store saw no usable credentials: the web server may drop the "
                   "Authorization header (FastCGI), or WordPress does not see the request as "
                   "HTTPS behind a proxy; try auth = \"oauth\", and check consumer_key";
        }
        return "the store accepted no credentials: check consumer_key and that the key exists";
    }
    return "check consumer_key, consumer_secret and the key's permissions";
}

enum woo_failure woo_describe(const struct woo_client *c, const char *what, enum cpb_status st,
                              const struct cpb_http_response *resp, char *msg, size_t n,
                              enum cpb_status *verdict)
{
    char code[WOO_TEXT_MAX] = "";
    char text[WOO_TEXT_MAX] = "";
    const char *hint = NULL;
    enum woo_failure kind;
    long status = resp->status;
    bool json = woo_is_json(resp);

    if (status == 0 || (st != CPB_OK && status >= 200 && status <= 299)) {
        /* No (complete) response: the host's message says why, e.g. a
         * timeout or a body cut short; it never holds a query string. */
        *verdict = st == CPB_RETRY ? CPB_RETRY : CPB_FAIL;
        snprintf(msg, n, "%s: %s", what, resp->error[0] != '\0' ? resp->error : "no response");
        return st == CPB_RETRY ? WOO_F_UNAVAILABLE : WOO_F_TRANSPORT;
    }
    if (json) {
        char perr[WOO_TEXT_MAX];
        json_t *doc = woo_json_body(resp, perr, sizeof perr);
        const char *jc = json_string_value(json_object_get(doc, "code"));
        const char *jm = json_string_value(json_object_get(doc, "message"));
        if (jc != NULL) {
            woo_clean_text(jc, strlen(jc), code, sizeof code);
        }
        if (jm != NULL) {
            woo_clean_text(jm, strlen(jm), text, sizeof text);
        }
        json_decref(doc);
    } else {
        page_text(resp, text, sizeof text);
    }

    if (status >= 200 && status <= 299) {
        kind = WOO_F_NOT_JSON;
        *verdict = CPB_FAIL;
        hint = "expected JSON from the WooCommerce REST API: url may not be the WordPress home "
               "URL, or a security plugin, maintenance page or proxy answered instead";
    } else if (status == 401 || status == 403) {
        kind = WOO_F_AUTH;
        *verdict = CPB_FAIL;
        hint = auth_hint(c, code, text, json);
    } else if (status == 404) {
        kind = WOO_F_NOT_FOUND;
        *verdict = CPB_FAIL;
        if (strstr(code, "invalid_id") != NULL) {
            hint = "the order does not exist in the store (deleted permanently?)";
        } else {
            hint = "no WooCommerce REST API there: check that url is the WordPress home URL, "
                   "that WooCommerce 5.8 or later is active, and that pretty permalinks are on "
                   "(Settings > Permalinks)";
        }
    } else if (st == CPB_RETRY) {
        kind = WOO_F_UNAVAILABLE;
        *verdict = CPB_RETRY;
        if (status == 429) {
            hint = "rate limited by the store's host, firewall or CDN; tried again later";
        } else if (!json) {
            hint = "the store answered with a page instead of JSON (a PHP fatal error, "
                   "maintenance mode, or a proxy in front of WordPress); tried again later";
        } else {
            hint = "the store failed; tried again later";
        }
    } else {
        kind = WOO_F_REJECTED;
        *verdict = CPB_FAIL;
        if (status >= 300 && status <= 399) {
            hint = "redirects are not followed: set url to the address the store redirects to "
                   "(https://, www.)";
        } else {
            hint = "the store refused the request";
        }
    }

    if (json) {
        snprintf(msg, n, "%s: HTTP %ld %s%s%s%s; %s", what, status,
                 code[0] != '\0' ? code : "error", text[0] != '\0' ? " \"" : "", text,
                 text[0] != '\0' ? "\"" : "", hint);
    } else {
        char ctype[80];
        const char *ct = resp->content_type != NULL ? resp->content_type : "no content type";
        woo_clean_text(ct, strlen(ct), ctype, sizeof ctype);
        snprintf(msg, n, "%s: HTTP %ld with %s instead of JSON (\"%s\"); %s", what, status, ctype,
                 text, hint);
    }
    return kind;
}
