/*
 * source-woo — a source stage that reads orders from a WooCommerce store
 * (REST API v3) incrementally and stages them through host->emit.
 *
 * One run: GET /orders?status=...&modified_after=<cursor - overlap>
 * &dates_are_gmt=true&orderby=id&order=asc&per_page=N&page=P, page after
 * page until P > X-WP-TotalPages or an empty page (woocommerce-api.md §3,
 * §4: naive UTC with dates_are_gmt, never "Z"; pages by id, never by
 * "modified"). Each order goes to host->emit; the engine de-duplicates, so
 * the overlap's re-reads are harmless. The cursor (state "cursor", naive
 * UTC) moves only after every page of the run succeeded, to the highest
 * date_modified_gmt read and staged, and never past the store's own clock
 * at the start of the run (its Date header, else the engine's clock), so an
 * order changed while the pages are read always comes back and a bogus
 * future time cannot freeze the cursor. A page that fails stops the run
 * with the cursor where it was: no order is ever skipped. The run's "limit"
 * bounds how many orders are processed, not read: every page is staged.
 */
#include <cpbridge/stage.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stage_util.h"
#include "woo_api.h"
#include "woo_webhook.h"

/* Longest status list sent (bytes of "a,b,c"). */
#define SOURCE_WOO_STATUS_MAX 600
/* The cursor's text form: naive UTC. */
#define SOURCE_WOO_TIME_FMT "%Y-%m-%dT%H:%M:%S"

struct source_woo_opts {
    struct woo_conn conn; /* url, consumer_key, consumer_secret, auth,
                             oauth_signature_method, timeout, max_tries,
                             tls_no_verify, ca_file */
    const char *const *statuses;
    const char *const *cancel_statuses;
    const char *start_date;
    int64_t overlap_ms;
    int64_t per_page;
    int64_t max_pages;
    const char *webhook_secret;
};

static const struct cpb_option source_woo_options[] = {
    {"url", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 8, WOO_URL_MAX, NULL,
     offsetof(struct source_woo_opts, conn.url),
     "The store's home URL, e.g. https://shop.example (the API is <url>/wp-json/wc/v3)."},
    {"consumer_key", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 1, 200, NULL,
     offsetof(struct source_woo_opts, conn.key),
     "REST API consumer key (ck_...) with Read permission."},
    {"consumer_secret", CPB_OPT_STRING, CPB_OPT_REQUIRED | CPB_OPT_SECRET, NULL, 1, 200, NULL,
     offsetof(struct source_woo_opts, conn.secret),
     "REST API consumer secret (cs_...); \"file:/path\" reads it from a file."},
    {"auth", CPB_OPT_ENUM, 0, "auto", 0, 0, woo_auth_choices,
     offsetof(struct source_woo_opts, conn.auth),
     "auto (Basic over https, OAuth 1.0a over http), basic or oauth; WooCommerce refuses Basic "
     "over plain http."},
    {"oauth_signature_method", CPB_OPT_ENUM, 0, "HMAC-SHA256", 0, 0, woo_sig_choices,
     offsetof(struct source_woo_opts, conn.sig),
     "OAuth signature method: HMAC-SHA256 or HMAC-SHA1."},
    {"statuses", CPB_OPT_LIST, 0, "processing", 1, 20, NULL,
     offsetof(struct source_woo_opts, statuses),
     "Order statuses to read (e.g. [\"processing\"]; \"any\" is every status but trash)."},
    {"cancel_statuses", CPB_OPT_LIST, 0, "cancelled,refunded", 0, 20, NULL,
     offsetof(struct source_woo_opts, cancel_statuses),
     "Statuses that mean the store cancelled the order (read too, never staged): a staged order"
     " is cancelled before it is applied, an applied one goes to run.store_cancel ([] reads"
     " none)."},
    {"start_date", CPB_OPT_STRING, 0, "2020-01-01T00:00:00", 10, 19, NULL,
     offsetof(struct source_woo_opts, start_date),
     "UTC time (YYYY-MM-DDTHH:MM:SS) the first run reads from, before any cursor exists."},
    {"overlap", CPB_OPT_DURATION, 0, "2s", 0, 3600000, NULL,
     offsetof(struct source_woo_opts, overlap_ms),
     "How far before the cursor each run starts reading (re-read orders are de-duplicated)."},
    {"per_page", CPB_OPT_INT, 0, "100", 1, 100, NULL, offsetof(struct source_woo_opts, per_page),
     "Orders per page request (WooCommerce allows 1..100)."},
    {"max_pages", CPB_OPT_INT, 0, "100", 1, 100000, NULL,
     offsetof(struct source_woo_opts, max_pages),
     "Most pages read in one run; a longer backlog keeps the cursor and logs a warning."},
    {"timeout", CPB_OPT_DURATION, 0, "30s", 100, 600000, NULL,
     offsetof(struct source_woo_opts, conn.timeout_ms), "Time allowed for each HTTP request."},
    {"max_tries", CPB_OPT_INT, 0, "3", 1, 10, NULL,
     offsetof(struct source_woo_opts, conn.max_tries),
     "Tries per request on 429, 5xx and timeouts (Retry-After is honoured) before the run gives "
     "up and the next run tries again."},
    {"tls_no_verify", CPB_OPT_BOOL, 0, "false", 0, 0, NULL,
     offsetof(struct source_woo_opts, conn.tls_no_verify),
     "Turn TLS certificate verification off (logged as a warning on every request)."},
    {"ca_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL,
     offsetof(struct source_woo_opts, conn.ca_file),
     "CA bundle (PEM) that signed the store's certificate; default: the system's."},
    {"webhook_secret", CPB_OPT_STRING, CPB_OPT_SECRET, NULL, 1, 200, NULL,
     offsetof(struct source_woo_opts, webhook_secret),
     "The secret of the store's order webhooks, for `cpbridge serve` (deliveries to"
     " /webhooks/<this stage's id>); \"file:/path\" reads it from a file. Unset: deliveries are"
     " refused (503) and only polling stages orders."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct source_woo {
    const struct cpb_host *host;
    struct cpb_ctx *ctx;
    const struct source_woo_opts *o;
    struct woo_client client;
    char statuses[SOURCE_WOO_STATUS_MAX + 1]; /* "processing,on-hold" */
    int64_t start;                            /* start_date, seconds since the epoch */
};

/* Counts of one run, for the log line. */
struct tally {
    unsigned pages;
    unsigned orders;
    unsigned staged;
    unsigned unchanged;
    unsigned rejected;
};

/* ---- time ------------------------------------------------------------------ */

static int digits(const char *s, size_t n, long *out)
{
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * A UTC time "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS" ('T' or ' '), with an
 * optional fraction (dropped) and an optional trailing 'Z', into seconds
 * since the epoch. Untrusted text: every field is checked, and the date
 * must exist (2026-02-30 is refused). Returns 0 or -1.
 */
static int parse_utc(const char *s, int64_t *out)
{
    long y, mo, d, h = 0, mi = 0, se = 0;
    size_t len;
    struct tm tm;
    struct tm back;
    if (s == NULL) {
        return -1;
    }
    len = strlen(s);
    if (len > 0 && (s[len - 1] == 'Z' || s[len - 1] == 'z')) {
        len--;
    }
    if (len < 10 || digits(s, 4, &y) != 0 || s[4] != '-' || digits(s + 5, 2, &mo) != 0 ||
        s[7] != '-' || digits(s + 8, 2, &d) != 0) {
        return -1;
    }
    if (len > 10) {
        if (len < 19 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
            digits(s + 11, 2, &h) != 0 || s[13] != ':' || digits(s + 14, 2, &mi) != 0 ||
            s[16] != ':' || digits(s + 17, 2, &se) != 0) {
            return -1;
        }
        if (len > 19) {
            long frac;
            if (s[19] != '.' || len == 20 || len > 29 || digits(s + 20, len - 20, &frac) != 0) {
                return -1;
            }
        }
    }
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        se > 59) {
        return -1;
    }
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (int)(y - 1900);
    tm.tm_mon = (int)(mo - 1);
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_mday != (int)d ||
        back.tm_mon != (int)(mo - 1)) {
        return -1;
    }
    *out = (int64_t)t;
    return 0;
}

/* Seconds since the epoch as naive UTC text into out (>= 20 bytes). */
static void format_utc(int64_t secs, char *out, size_t n)
{
    time_t t = (time_t)secs;
    struct tm tm;
    if (secs < 0 || gmtime_r(&t, &tm) == NULL || strftime(out, n, SOURCE_WOO_TIME_FMT, &tm) == 0) {
        snprintf(out, n, "1970-01-01T00:00:00");
    }
}

/* An HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", as every
 * server sends in Date) into seconds; -1 when it is not one. */
static int64_t parse_http_date(const char *v)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char wday[4];
    char mon[4];
    int d;
    int y;
    int h;
    int mi;
    int se;
    char text[40];
    if (v == NULL || strlen(v) > 35) {
        return -1;
    }
    if (sscanf(v, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT", wday, &d, mon, &y, &h, &mi,
               &se) != 7) {
        return -1;
    }
    const char *m = strstr(months, mon);
    if (strlen(mon) != 3 || m == NULL || (m - months) % 3 != 0) {
        return -1;
    }
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d", y, (int)((m - months) / 3) + 1, d,
             h, mi, se);
    int64_t secs;
    return parse_utc(text, &secs) == 0 ? secs : -1;
}

/* Is `status` one of `list` (NULL-terminated; may be NULL)? */
static bool listed(const char *const *list, const char *status)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (status != NULL && strcmp(list[i], status) == 0) {
            return true;
        }
    }
    return false;
}

static bool wanted_status(const struct source_woo *s, const char *status)
{
    return listed(s->o->statuses, "any") || listed(s->o->statuses, status);
}

/* The store cancelled order `ext` (its status is one of cancel_statuses):
 * withdrawn, never staged. Returns what withdraw returns. */
static enum cpb_status cancelled_in_store(struct source_woo *s, const char *ext, const char *status)
{
    char why[120];
    snprintf(why, sizeof why, "the store set order %s to '%s'", ext, status);
    /* Built for ABI 1.3 or later, which the host has: withdraw is there. */
    return s->host->withdraw(s->ctx, ext, why);
}

/* ---- init / fini ------------------------------------------------------------ */

static int source_woo_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                           void **state)
{
    const struct source_woo_opts *o = options;
    char msg[400];
    struct source_woo *s = calloc(1, sizeof *s);
    *state = s;
    if (s == NULL) {
        stage_init_fail(host, ctx, "out of memory");
        return -1;
    }
    s->host = host;
    s->ctx = ctx;
    s->o = o;
    if (woo_client_init(&s->client, host, ctx, &o->conn, msg, sizeof msg) != 0) {
        stage_init_fail(host, ctx, "%s", msg);
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; o->statuses != NULL && o->statuses[i] != NULL; i++) {
        const char *st = o->statuses[i];
        if (!woo_status_ok(st)) {
            stage_init_fail(
                host, ctx,
                "statuses: \"%.40s\" is not an order status (lower-case letters, digits, "
                "'-' and '_', such as processing or on-hold)",
                st);
            return -1;
        }
        int w = snprintf(s->statuses + used, sizeof s->statuses - used, "%s%s", used > 0 ? "," : "",
                         st);
        if (w < 0 || (size_t)w >= sizeof s->statuses - used) {
            stage_init_fail(host, ctx, "statuses: the list is too long");
            return -1;
        }
        used += (size_t)w;
    }
    if (used == 0) {
        stage_init_fail(host, ctx, "statuses: give at least one status, e.g. [\"processing\"]");
        return -1;
    }
    for (size_t i = 0; o->cancel_statuses != NULL && o->cancel_statuses[i] != NULL; i++) {
        const char *st = o->cancel_statuses[i];
        if (!woo_status_ok(st)) {
            stage_init_fail(host, ctx,
                            "cancel_statuses: \"%.40s\" is not an order status (lower-case"
                            " letters, digits, '-' and '_', such as cancelled)",
                            st);
            return -1;
        }
        if (wanted_status(s, st) && !listed(o->statuses, st)) {
            continue; /* "any" reads it already */
        }
        int w = snprintf(s->statuses + used, sizeof s->statuses - used, ",%s", st);
        if (w < 0 || (size_t)w >= sizeof s->statuses - used) {
            stage_init_fail(host, ctx, "statuses and cancel_statuses: the list is too long");
            return -1;
        }
        used += (size_t)w;
    }
    if (parse_utc(o->start_date, &s->start) != 0) {
        stage_init_fail(
            host, ctx, "start_date \"%.19s\" is not a UTC time YYYY-MM-DDTHH:MM:SS (or YYYY-MM-DD)",
            o->start_date);
        return -1;
    }
    host->log(ctx, CPB_LOG_DEBUG, "store %s, %s auth, statuses %s", s->client.home,
              s->client.oauth ? "OAuth 1.0a" : "Basic", s->statuses);
    return 0;
}

/* ---- one run ------------------------------------------------------------------ */

/* Where this run starts: `since` from the run's parameters, else the saved
 * cursor, else start_date. *saved gets the saved cursor (-1: none). */
static enum cpb_status run_start(struct source_woo *s, json_t *params, int64_t *from,
                                 int64_t *saved, bool *backfill)
{
    const char *value = NULL;
    json_t *since = json_object_get(params, "since");
    *saved = -1;
    *backfill = false;
    enum cpb_status rc = s->host->state_get(s->ctx, "cursor", &value);
    if (rc != CPB_OK) {
        return rc; /* the host set the reason */
    }
    if (value != NULL && parse_utc(value, saved) != 0) {
        char shown[40];
        woo_clean_text(value, strlen(value), shown, sizeof shown);
        s->host->reason(s->ctx, "source.bad_cursor",
                        "the saved cursor \"%s\" is not a UTC time; run once with --since "
                        "YYYY-MM-DDTHH:MM:SS to set it again",
                        shown);
        return CPB_FAIL;
    }
    if (since != NULL) {
        if (!json_is_string(since) || parse_utc(json_string_value(since), from) != 0) {
            s->host->reason(s->ctx, "source.bad_since",
                            "since must be a UTC time YYYY-MM-DDTHH:MM:SS (or YYYY-MM-DD)");
            return CPB_FAIL;
        }
        *backfill = true;
        return CPB_OK;
    }
    *from = *saved >= 0 ? *saved : s->start;
    return CPB_OK;
}

/* A non-negative integer header (X-WP-TotalPages, X-WP-Total), or -1. */
static long header_count(const struct source_woo *s, const struct cpb_http_response *resp,
                         const char *name)
{
    const char *v = s->host->http_header(resp, name);
    char *end = NULL;
    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (*v < '0' || *v > '9') {
        return -1;
    }
    errno = 0;
    long n = strtol(v, &end, 10);
    while (end != NULL && (*end == ' ' || *end == '\t')) {
        end++;
    }
    if (errno != 0 || end == NULL || *end != '\0' || n < 0 || n > INT_MAX) {
        return -1;
    }
    return n;
}

static void fail_reason(struct source_woo *s, enum woo_failure kind, const char *msg)
{
    char code[48];
    snprintf(code, sizeof code, "source.%s", woo_failure_name(kind));
    s->host->reason(s->ctx, code, "%s; the cursor was not moved", msg);
}

/*
 * Read one page and emit its orders. *count receives the number of orders
 * on it (0: the end), *total_pages and *total the headers (-1: absent),
 * *date the store's Date (-1: absent), *max_seen the highest
 * date_modified_gmt staged so far.
 */
static enum cpb_status read_page(struct source_woo *s, const char *after, long page,
                                 struct tally *t, size_t *count, long *total_pages, long *total,
                                 int64_t *date, int64_t *max_seen)
{
    char per_page[24];
    char page_no[24];
    char what[80];
    char msg[900];
    struct cpb_http_response resp;
    json_t *doc = NULL;
    json_t **orders = NULL;
    enum cpb_status *staged = NULL;
    enum cpb_status rc;

    *count = 0;
    snprintf(per_page, sizeof per_page, "%lld", (long long)s->o->per_page);
    snprintf(page_no, sizeof page_no, "%ld", page);
    snprintf(what, sizeof what, "reading page %ld of the orders", page);
    const struct woo_param q[] = {
        {"status", s->statuses}, {"modified_after", after}, {"dates_are_gmt", "true"},
        {"orderby", "id"},       {"order", "asc"},          {"per_page", per_page},
        {"page", page_no},
    };
    rc = woo_request(&s->client, "GET", "/orders", q, sizeof q / sizeof q[0], NULL,
                     s->client.max_tries, &resp);
    if (rc != CPB_OK || !woo_is_json(&resp)) {
        enum cpb_status verdict;
        enum woo_failure kind =
            woo_describe(&s->client, what, rc, &resp, msg, sizeof msg, &verdict);
        fail_reason(s, kind, msg);
        rc = verdict;
        goto out;
    }
    doc = woo_json_body(&resp, msg, sizeof msg);
    if (doc == NULL) {
        s->host->reason(s->ctx, "source.bad_json",
                        "%s: HTTP %ld, the body is %s (a PHP warning printed before the JSON, or "
                        "a response cut short); the cursor was not moved and the next run tries "
                        "again",
                        what, resp.status, msg);
        rc = CPB_RETRY;
        goto out;
    }
    if (!json_is_array(doc)) {
        s->host->reason(s->ctx, "source.bad_json",
                        "%s: HTTP %ld, the body is JSON but not a list of orders; the cursor was "
                        "not moved",
                        what, resp.status);
        rc = CPB_FAIL;
        goto out;
    }
    *total_pages = header_count(s, &resp, "X-WP-TotalPages");
    *total = header_count(s, &resp, "X-WP-Total");
    *date = parse_http_date(s->host->http_header(&resp, "Date"));
    t->pages++;
    size_t n = json_array_size(doc);
    orders = calloc(n > 0 ? n : 1, sizeof *orders);
    staged = calloc(n > 0 ? n : 1, sizeof *staged);
    if (orders == NULL || staged == NULL) {
        s->host->reason(s->ctx, "source.oom", "out of memory staging page %ld", page);
        rc = CPB_RETRY;
        goto out;
    }
    /* Orders in a cancel status are withdrawn, the rest staged: the whole
     * page in one transaction (moved to the front of orders[]). */
    size_t k = 0;
    bool withdraw_failed = false;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(doc, i);
        const char *status = json_string_value(json_object_get(o, "status"));
        json_t *id = json_object_get(o, "id");
        if (status != NULL && listed(s->o->cancel_statuses, status) && json_is_integer(id)) {
            char ext[24];
            snprintf(ext, sizeof ext, "%lld", (long long)json_integer_value(id));
            withdraw_failed = cancelled_in_store(s, ext, status) == CPB_RETRY || withdraw_failed;
            int64_t when;
            const char *mod = json_string_value(json_object_get(o, "date_modified_gmt"));
            if (mod != NULL && parse_utc(mod, &when) == 0 && when > *max_seen) {
                *max_seen = when;
            }
            continue;
        }
        orders[k++] = o;
    }
    /* Built for ABI 1.2 or later, which the host has: emit_many is there. */
    if (withdraw_failed || s->host->emit_many(s->ctx, orders, k, staged) == CPB_RETRY) {
        s->host->reason(s->ctx, "source.stage_failed",
                        "could not stage every order from page %ld (see the log); the cursor "
                        "was not moved and the next run reads it again",
                        page);
        rc = CPB_RETRY;
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        json_t *order = orders[i];
        enum cpb_status e = staged[i];
        t->orders++;
        if (e == CPB_FAIL) {
            t->rejected++; /* the engine reported it */
            continue;
        }
        if (e == CPB_OK) {
            t->staged++;
        } else {
            t->unchanged++;
        }
        int64_t when;
        const char *mod = json_string_value(json_object_get(order, "date_modified_gmt"));
        if (mod != NULL && parse_utc(mod, &when) == 0) {
            if (when > *max_seen) {
                *max_seen = when;
            }
        } else {
            s->host->log(s->ctx, CPB_LOG_WARN,
                         "an order on page %ld has no readable date_modified_gmt; it does not "
                         "move the cursor",
                         page);
        }
    }
    *count = n;
    rc = CPB_OK;
out:
    free(orders);
    free(staged);
    json_decref(doc);
    s->host->http_free(&resp);
    return rc;
}

static enum cpb_status source_woo_process(void *state, struct cpb_record *rec)
{
    struct source_woo *s = state;
    struct tally t = {0, 0, 0, 0, 0};
    int64_t from = 0;
    int64_t saved = -1;
    int64_t max_seen = -1;
    int64_t cap = -1;
    long prev_total = -1;
    bool backfill = false;
    bool truncated = false;
    bool shrunk = false;
    char after[24];
    char now_text[24];
    enum cpb_status rc = run_start(s, rec->payload, &from, &saved, &backfill);
    if (rc != CPB_OK) {
        return rc;
    }
    /* WordPress compares strictly after, to the second: start a little
     * before the cursor so nothing at the boundary is missed. */
    int64_t overlap = (s->o->overlap_ms + 999) / 1000;
    format_utc(from - overlap > 0 ? from - overlap : 0, after, sizeof after);

    for (long page = 1;; page++) {
        size_t count = 0;
        long total_pages = -1;
        long total = -1;
        int64_t date = -1;
        if (page > s->o->max_pages) {
            truncated = true;
            break;
        }
        rc = read_page(s, after, page, &t, &count, &total_pages, &total, &date, &max_seen);
        if (rc != CPB_OK) {
            s->host->log(s->ctx, CPB_LOG_INFO,
                         "stopped at page %ld: %u order(s) read, %u new or changed; cursor kept",
                         page, t.orders, t.staged);
            return rc;
        }
        if (page == 1) {
            /* The store's clock when the run started (its Date header),
             * else the engine's: the cursor never passes it, so a bogus
             * future date_modified_gmt cannot freeze it. */
            cap = (date > 0 ? date : s->host->now_ms(s->ctx) / 1000) - 1;
        }
        if (total >= 0 && prev_total >= 0 && total < prev_total) {
            shrunk = true; /* orders left the list while it was read */
        }
        if (total >= 0) {
            prev_total = total;
        }
        if (count == 0 || (total_pages >= 0 && page >= total_pages)) {
            break;
        }
    }

    /* Every page read and staged: move the cursor. */
    int64_t next = max_seen;
    if (next >= 0 && cap >= 0 && next > cap) {
        next = cap;
    }
    if (truncated) {
        s->host->log(s->ctx, CPB_LOG_WARN,
                     "more than max_pages (%lld) pages of orders changed since %s UTC: the "
                     "cursor stays and the next run starts there again; raise max_pages, or "
                     "backfill in steps with --since",
                     (long long)s->o->max_pages, after);
        json_t *d = json_pack("{s:s, s:I}", "modified_after", after, "max_pages",
                              (json_int_t)s->o->max_pages);
        s->host->event(s->ctx, "source.truncated", d);
        json_decref(d);
        next = -1;
    } else if (shrunk) {
        s->host->log(s->ctx, CPB_LOG_INFO,
                     "orders left the list while its pages were read (X-WP-Total went down), "
                     "so one may have moved to a page already read: the cursor stays and the "
                     "next run reads the same span again");
        next = -1;
    }
    if (next >= 0 && saved >= 0 && next <= saved) {
        next = -1; /* never backwards, nothing new */
    }
    if (next >= 0) {
        format_utc(next, now_text, sizeof now_text);
        rc = s->host->state_set(s->ctx, "cursor", now_text);
        if (rc != CPB_OK) {
            return rc; /* staged already; the next run re-reads (harmless) */
        }
    } else {
        format_utc(saved >= 0 ? saved : from, now_text, sizeof now_text);
    }
    s->host->log(s->ctx, CPB_LOG_INFO,
                 "read %u order(s) on %u page(s) modified after %s UTC%s: %u new or changed, %u "
                 "unchanged, %u rejected; cursor %s%s",
                 t.orders, t.pages, after, backfill ? " (--since)" : "", t.staged, t.unchanged,
                 t.rejected, now_text, next >= 0 ? " (moved)" : " (kept)");
    return CPB_OK;
}

/* ---- webhooks (cpbridge serve) ---------------------------------------------------- */

static enum cpb_status answer(struct cpb_answer *ans, int status, enum cpb_status st,
                              const char *fmt, ...) CPB_PRINTF(4, 5);
static enum cpb_status answer(struct cpb_answer *ans, int status, enum cpb_status st,
                              const char *fmt, ...)
{
    va_list ap;
    ans->status = status;
    va_start(ap, fmt);
    vsnprintf(ans->message, sizeof ans->message, fmt, ap);
    va_end(ap);
    return st;
}

/*
 * One delivery: the unsigned ping gets 200; anything else must carry the
 * signature of its raw bytes (401 without it, one warning, nothing read);
 * then an order topic with an order object, staged as polling stages it
 * (the same statuses), or for order.deleted withdrawn. 200 only once that
 * is durable; 503 when the database failed, so the store sends it again.
 */
static enum cpb_status source_woo_receive(void *state, const struct cpb_delivery *d,
                                          struct cpb_answer *ans)
{
    struct source_woo *s = state;
    const struct cpb_host *h = s->host;
    const char *sig = h->delivery_header(d, "X-WC-Webhook-Signature");
    const char *topic = h->delivery_header(d, "X-WC-Webhook-Topic");
    char shown[100];
    json_error_t jerr;
    json_t *doc = NULL;
    enum cpb_status rc;

    if (s->o->webhook_secret == NULL) {
        h->log(s->ctx, CPB_LOG_ERROR,
               "a webhook delivery from %s was refused: webhook_secret is not set for this stage",
               d->remote);
        return answer(ans, 503, CPB_FAIL, "this source has no webhook_secret\n");
    }
    if (sig == NULL && woo_webhook_is_ping(d->body, d->body_len)) {
        stage_quote(d->body, 40, shown, sizeof shown);
        h->log(s->ctx, CPB_LOG_INFO, "webhook ping from %s (%s): answered, the webhook activates",
               d->remote, shown);
        return answer(ans, 200, CPB_SKIP, "ok\n");
    }
    if (!woo_webhook_signed(s->o->webhook_secret, d->body, d->body_len, sig)) {
        h->log(s->ctx, CPB_LOG_WARN,
               "a delivery from %s was refused: %s signature (X-WC-Webhook-Signature); is the"
               " webhook's secret the same as webhook_secret?",
               d->remote, sig == NULL ? "no" : "a wrong");
        return answer(ans, 401, CPB_FAIL, "bad or missing signature\n");
    }
    stage_quote(topic, 40, shown, sizeof shown);
    if (topic == NULL || strncmp(topic, "order.", 6) != 0) {
        h->log(s->ctx, CPB_LOG_WARN,
               "a signed delivery from %s is not about an order (topic '%s'): refused; give the"
               " webhook an order.* topic",
               d->remote, shown);
        return answer(ans, 400, CPB_FAIL, "not an order topic\n");
    }
    doc = json_loadb(d->body, d->body_len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *id = json_object_get(doc, "id");
    if (!json_is_object(doc) || !json_is_integer(id) || json_integer_value(id) <= 0) {
        h->log(s->ctx, CPB_LOG_WARN, "a signed %s delivery from %s is not an order: %s; refused",
               shown, d->remote, doc == NULL ? jerr.text : "no positive integer \"id\"");
        rc = answer(ans, 400, CPB_FAIL, "the body is not an order\n");
        goto out;
    }
    char ext[24];
    snprintf(ext, sizeof ext, "%lld", (long long)json_integer_value(id));
    if (strcmp(topic, "order.deleted") == 0) {
        char why[120];
        snprintf(why, sizeof why, "the store moved order %s to the trash (webhook order.deleted)",
                 ext);
        enum cpb_status w = h->withdraw(s->ctx, ext, why);
        rc = w == CPB_RETRY  ? answer(ans, 503, CPB_RETRY, "not recorded; send it again\n")
             : w == CPB_FAIL ? answer(ans, 500, CPB_FAIL, "not recorded\n")
                             : answer(ans, 200, w, "ok\n");
        goto out;
    }
    if (strcmp(topic, "order.created") != 0 && strcmp(topic, "order.updated") != 0 &&
        strcmp(topic, "order.restored") != 0) {
        h->log(s->ctx, CPB_LOG_INFO, "delivery %s for order %s: not a topic that stages; ignored",
               shown, ext);
        rc = answer(ans, 200, CPB_SKIP, "ignored\n");
        goto out;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status != NULL && listed(s->o->cancel_statuses, status)) {
        enum cpb_status w = cancelled_in_store(s, ext, status);
        rc = w == CPB_RETRY  ? answer(ans, 503, CPB_RETRY, "not recorded; send it again\n")
             : w == CPB_FAIL ? answer(ans, 500, CPB_FAIL, "not recorded\n")
                             : answer(ans, 200, w, "ok\n");
        goto out;
    }
    if (!wanted_status(s, status)) {
        char st[48];
        stage_quote(status, 30, st, sizeof st);
        h->log(s->ctx, CPB_LOG_DEBUG, "order %s is '%s', not one of statuses: not staged", ext, st);
        rc = answer(ans, 200, CPB_SKIP, "ignored: not a status this source stages\n");
        goto out;
    }
    enum cpb_status e = h->emit(s->ctx, doc);
    if (e == CPB_RETRY) {
        rc = answer(ans, 503, CPB_RETRY, "not staged; send it again\n");
    } else if (e == CPB_FAIL) {
        rc = answer(ans, 400, CPB_FAIL, "the order cannot be staged (see the bridge's log)\n");
    } else {
        h->log(s->ctx, CPB_LOG_DEBUG, "delivery %s for order %s from %s: %s", shown, ext, d->remote,
               e == CPB_OK ? "staged" : "unchanged");
        rc = answer(ans, 200, e, "ok\n");
    }
out:
    json_decref(doc);
    return rc;
}

const struct cpb_stage source_woo_stage = {
    CPB_STAGE_HEADER,
    .name = "source-woo",
    .version = "1.2.0",
    .summary = "Read new and changed orders from a WooCommerce store (REST API v3, and its"
               " webhooks under cpbridge serve)",
    .kind = CPB_SOURCE,
    .options = source_woo_options,
    .options_size = sizeof(struct source_woo_opts),
    .init = source_woo_init,
    .process = source_woo_process,
    .fini = stage_state_free, /* the state owns nothing else */
    .receive = source_woo_receive,
};

CPB_STAGE_ENTRY(source_woo_stage);
