/*
 * push-woo-stock — a record stage (ABI 1.5) that makes a WooCommerce
 * store's stock match the "stock" records a source staged (source-cp-stock):
 * each record's product or variation gets stock_quantity = the record's
 * quantity and manage_stock = true.
 *
 * It takes claimed records a batch at a time (process_batch):
 *  1. SKU -> id. A record's product id (and variation id) is resolved once
 *     and kept in its `result` ({"product_id": P, "variation_id": V}),
 *     which the host stores between runs: that is the cache. Records
 *     without one are looked up with GET /products?sku=a,b,c (up to 100 at
 *     a time); variations are not listed there, so for SKUs still missing
 *     the variable products are listed (GET /products?type=variable, paged)
 *     and their variations (GET /products/{id}/variations, paged), once per
 *     run and only when needed. A SKU found nowhere is CPB_FAIL
 *     "sku.unknown": the record goes DEAD and is reported once; it is
 *     queued again only when its quantity changes.
 *  2. The writes: POST /products/batch for products and POST
 *     /products/{id}/variations/batch per parent for variations, up to
 *     `batch_size` items each, `connections` requests at once through the
 *     host's concurrent HTTP service (woo_request_many). Setting an absolute
 *     quantity is idempotent, so a request is retried as any read is.
 *  3. Every item of the answer is checked (the answer is 200 even when
 *     items fail): an id the store no longer has (*_invalid_id) clears the
 *     cached id and is CPB_RETRY (resolved again on the next attempt); a
 *     transient item error (429, 5xx) is CPB_RETRY; another one is CPB_FAIL
 *     "stock.rejected"; an item answered with another quantity than sent is
 *     CPB_FAIL "stock.not_applied"; an item not answered is CPB_RETRY. A
 *     whole request that failed is CPB_RETRY for its items (429/5xx and
 *     timeouts after the host's own tries, and a refused key or a page
 *     that is not JSON too: no fault of the records; reason stock.<class>
 *     with woo_describe's cause); a variations batch answered 404 clears
 *     the parent's id.
 *
 * `result` after a push: "product_id", "variation_id" (variations only) and
 * "pushed" (the quantity the store confirmed). It shares source-woo's
 * WooCommerce client (woo_api.c, woo_oauth.c) as sync-status does: the
 * same authentication, TLS, retry and Retry-After handling and failure
 * classification. Every byte from the store is untrusted.
 */
#include <cpbridge/stage.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_util.h"
#include "woo_api.h"

/* The record kind this stage handles (source-cp-stock stages it). */
#define STOCK_KIND "stock"
/* Longest SKU (USER_ITEM_MAP.SKU, the engine's longest key). */
#define SKU_MAX 100
/* SKUs in one GET /products?sku= (the list stays well under URL limits). */
#define LOOKUP_SKUS  100
#define LOOKUP_BYTES 1500
/* Pages read of one list at most (100 per page). */
#define MAX_PAGES 2000
/* The variation index is read again when older than this (a long-lived
 * instance under cpbridge serve). */
#define INDEX_MAX_AGE_MS (10 * 60 * 1000)

struct push_woo_stock_opts {
    struct woo_conn conn; /* url, consumer_key, consumer_secret, auth,
                             oauth_signature_method, timeout, max_tries,
                             tls_no_verify, ca_file */
    int64_t batch_size;
    int64_t connections;
};

static const struct cpb_option push_woo_stock_options[] = {
    {"url", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 8, WOO_URL_MAX, NULL,
     offsetof(struct push_woo_stock_opts, conn.url),
     "The store's home URL, e.g. https://shop.example (the API is <url>/wp-json/wc/v3)."},
    {"consumer_key", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 1, 200, NULL,
     offsetof(struct push_woo_stock_opts, conn.key),
     "REST API consumer key (ck_...) with Read/Write permission."},
    {"consumer_secret", CPB_OPT_STRING, CPB_OPT_REQUIRED | CPB_OPT_SECRET, NULL, 1, 200, NULL,
     offsetof(struct push_woo_stock_opts, conn.secret),
     "REST API consumer secret (cs_...); \"file:/path\" reads it from a file."},
    {"auth", CPB_OPT_ENUM, 0, "auto", 0, 0, woo_auth_choices,
     offsetof(struct push_woo_stock_opts, conn.auth),
     "auto (Basic over https, OAuth 1.0a over http), basic or oauth; WooCommerce refuses Basic "
     "over plain http."},
    {"oauth_signature_method", CPB_OPT_ENUM, 0, "HMAC-SHA256", 0, 0, woo_sig_choices,
     offsetof(struct push_woo_stock_opts, conn.sig),
     "OAuth signature method: HMAC-SHA256 or HMAC-SHA1."},
    {"batch_size", CPB_OPT_INT, 0, "100", 1, 100, NULL,
     offsetof(struct push_woo_stock_opts, batch_size),
     "Products or variations per batch request (the store accepts up to 100)."},
    {"connections", CPB_OPT_INT, 0, "4", 1, 16, NULL,
     offsetof(struct push_woo_stock_opts, connections),
     "Batch requests sent at once (connections in parallel, reused); a 429 from the store "
     "slows every connection down."},
    {"timeout", CPB_OPT_DURATION, 0, "60s", 100, 600000, NULL,
     offsetof(struct push_woo_stock_opts, conn.timeout_ms),
     "Time allowed for each HTTP request (a batch of 100 can take a while)."},
    {"max_tries", CPB_OPT_INT, 0, "3", 1, 10, NULL,
     offsetof(struct push_woo_stock_opts, conn.max_tries),
     "Tries per request on 429, 5xx and timeouts (Retry-After is honoured) before the records "
     "are retried later."},
    {"tls_no_verify", CPB_OPT_BOOL, 0, "false", 0, 0, NULL,
     offsetof(struct push_woo_stock_opts, conn.tls_no_verify),
     "Turn TLS certificate verification off (logged as a warning on every request)."},
    {"ca_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL,
     offsetof(struct push_woo_stock_opts, conn.ca_file),
     "CA bundle (PEM) that signed the store's certificate; default: the system's."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* One variation of the store: its SKU (folded to ASCII upper case). */
struct var_entry {
    char *sku;
    int64_t parent;
    int64_t id;
};

struct push_woo_stock {
    const struct cpb_host *host;         /* borrowed until fini */
    struct cpb_ctx *ctx;                 /* borrowed until fini */
    const struct push_woo_stock_opts *o; /* borrowed until fini */
    struct woo_client client;
    bool indexed;           /* vars holds the store's variations */
    int64_t indexed_at;     /* when it was read (host clock) */
    struct var_entry *vars; /* sorted by sku; owned */
    size_t nvars;
};

/* Where a reason goes: one record's, until the call returns. */
struct reason {
    char code[48];
    char msg[600];
};

/* One record of a call, from its record to its outcome. */
struct item {
    struct cpb_record *rec;
    const char *sku; /* borrowed from the record, checked */
    json_int_t qty;
    int64_t pid; /* product id, 0 while unknown */
    int64_t vid; /* variation id, 0 for a product */
    bool finished;
    enum cpb_status st;
    struct reason why;
};

static void finish(struct item *it, enum cpb_status st, const char *code, const char *fmt, ...)
    CPB_PRINTF(4, 5);
static void finish(struct item *it, enum cpb_status st, const char *code, const char *fmt, ...)
{
    it->finished = true;
    it->st = st;
    if (code != NULL) {
        va_list ap;
        snprintf(it->why.code, sizeof it->why.code, "%s", code);
        va_start(ap, fmt);
        vsnprintf(it->why.msg, sizeof it->why.msg, fmt, ap);
        va_end(ap);
    }
}

static void free_index(struct push_woo_stock *s)
{
    for (size_t i = 0; i < s->nvars; i++) {
        free(s->vars[i].sku);
    }
    free(s->vars);
    s->vars = NULL;
    s->nvars = 0;
    s->indexed = false;
}

static void push_woo_stock_fini(void *state)
{
    struct push_woo_stock *s = state;
    if (s == NULL) {
        return;
    }
    free_index(s);
    free(s);
}

static int push_woo_stock_init(const struct cpb_host *host, struct cpb_ctx *ctx,
                               const void *options, void **state)
{
    const struct push_woo_stock_opts *o = options;
    char msg[400];
    struct push_woo_stock *s = calloc(1, sizeof *s);
    *state = s;
    if (s == NULL) {
        return stage_init_fail(host, ctx, "out of memory");
    }
    s->host = host;
    s->ctx = ctx;
    s->o = o;
    if (!CPB_HOST_HAS(host, http_many) || !CPB_HOST_HAS(host, reason_at)) {
        return stage_init_fail(host, ctx, "this engine lacks concurrent HTTP: upgrade cpbridge");
    }
    if (woo_client_init(&s->client, host, ctx, &o->conn, msg, sizeof msg) != 0) {
        return stage_init_fail(host, ctx, "%s", msg);
    }
    return 0;
}

/* ASCII upper case, as the store's case-insensitive SKU lookup compares. */
static char fold(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static int fold_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)fold(*a);
        unsigned char y = (unsigned char)fold(*b);
        if (x != y || x == '\0') {
            return (int)x - (int)y;
        }
    }
}

/* A SKU this stage can look up: 1 to SKU_MAX bytes, no control characters,
 * no comma (the store splits ?sku= on commas). */
static bool sku_ok(const char *sku)
{
    size_t n = sku != NULL ? strlen(sku) : 0;
    if (n == 0 || n > SKU_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)sku[i];
        if (c < 0x20 || c == 0x7f || c == ',') {
            return false;
        }
    }
    return true;
}

/* A positive id held in result[key], else 0. */
static int64_t cached_id(const json_t *result, const char *key)
{
    json_t *v = json_object_get(result, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

/* Keep the resolved ids in the record's result (the host stores it). */
static void remember(struct item *it)
{
    json_t *r = it->rec->result;
    if (!json_is_object(r)) {
        return;
    }
    json_object_set_new(r, "product_id", json_integer((json_int_t)it->pid));
    if (it->vid > 0) {
        json_object_set_new(r, "variation_id", json_integer((json_int_t)it->vid));
    } else {
        json_object_del(r, "variation_id");
    }
}

/* The store no longer has the cached id: forget it, try again later. */
static void forget(struct item *it, const char *what)
{
    json_t *r = it->rec->result;
    if (json_is_object(r)) {
        json_object_del(r, "product_id");
        json_object_del(r, "variation_id");
    }
    finish(it, CPB_RETRY, "stock.id_gone",
           "SKU %s: the store no longer has %s %lld (%s); it is looked up again by SKU on the next "
           "attempt",
           it->sku, it->vid > 0 ? "variation" : "product",
           (long long)(it->vid > 0 ? it->vid : it->pid), what);
    it->pid = 0;
    it->vid = 0;
}

/* What to do for one record before the store is asked. */
static void prepare_item(struct item *it, struct cpb_record *rec)
{
    memset(it, 0, sizeof *it);
    it->rec = rec;
    const char *kind = rec->size >= offsetof(struct cpb_record, record_kind) + sizeof(const char *)
                           ? rec->record_kind
                           : NULL;
    if (kind == NULL || strcmp(kind, STOCK_KIND) != 0) {
        finish(it, CPB_SKIP, NULL, NULL); /* another stage's record */
        return;
    }
    const char *sku = rec->external_id;
    const char *psku = json_string_value(json_object_get(rec->payload, "sku"));
    json_t *q = json_object_get(rec->payload, "stock_quantity");
    char shown[SKU_MAX * 4 + 8];
    stage_quote(sku, 40, shown, sizeof shown);
    if (!sku_ok(sku)) {
        finish(it, CPB_FAIL, "stock.bad_sku",
               "SKU '%s' cannot be looked up in the store (1 to %d characters, no comma or "
               "control character)",
               shown, SKU_MAX);
        return;
    }
    if (psku != NULL && strcmp(psku, sku) != 0) {
        finish(it, CPB_FAIL, "stock.bad_record",
               "record %s: its payload names another SKU; the source staged a broken record",
               shown);
        return;
    }
    if (!json_is_integer(q) || json_integer_value(q) < -2147483647 ||
        json_integer_value(q) > 2147483647) {
        finish(it, CPB_FAIL, "stock.bad_record",
               "record %s: stock_quantity is missing or not an integer the store takes", shown);
        return;
    }
    it->sku = sku;
    it->qty = json_integer_value(q);
    it->pid = cached_id(rec->result, "product_id");
    it->vid = it->pid > 0 ? cached_id(rec->result, "variation_id") : 0;
}

/* A failed exchange as the item's reason. Always CPB_RETRY: a request
 * that failed as a whole (the store unreachable, 429/5xx after the host's
 * own tries, a refused key, a page that is not JSON) says nothing about its
 * records, which wait for the store or the fix (DEAD only after
 * retry.max_attempts); the reason keeps woo_describe's class and cause. */
static enum cpb_status failed(struct push_woo_stock *s, const char *what, enum cpb_status st,
                              const struct cpb_http_response *resp, struct reason *why,
                              enum woo_failure *kind)
{
    enum cpb_status verdict;
    enum woo_failure k =
        woo_describe(&s->client, what, st, resp, why->msg, sizeof why->msg, &verdict);
    snprintf(why->code, sizeof why->code, "stock.%s", woo_failure_name(k));
    if (kind != NULL) {
        *kind = k;
    }
    return CPB_RETRY;
}

/* The JSON body of an exchange (new reference), or NULL with `why` set and
 * *verdict the status to give. */
static json_t *json_answer(struct push_woo_stock *s, const char *what, enum cpb_status rc,
                           const struct cpb_http_response *resp, struct reason *why,
                           enum cpb_status *verdict, enum woo_failure *kind)
{
    char msg[300];
    json_t *doc = NULL;
    if (rc != CPB_OK || !woo_is_json(resp)) {
        *verdict = failed(s, what, rc, resp, why, kind);
        return NULL;
    }
    doc = woo_json_body(resp, msg, sizeof msg);
    if (doc == NULL) {
        snprintf(why->code, sizeof why->code, "stock.bad_json");
        snprintf(why->msg, sizeof why->msg, "%s: HTTP %ld, the body is %s", what, resp->status,
                 msg);
        *verdict = CPB_RETRY;
    }
    return doc;
}

/* The X-WP-TotalPages header of a list answer, or -1 when absent or not a
 * number. */
static long total_pages(const struct push_woo_stock *s, const struct cpb_http_response *resp)
{
    const char *tp = s->host->http_header(resp, "X-WP-TotalPages");
    char *end = NULL;
    long v = tp != NULL ? strtol(tp, &end, 10) : -1;
    return tp != NULL && end != tp && v >= 0 ? v : -1;
}

/* One GET whose answer must be a JSON list: *doc (new reference) on CPB_OK
 * and *pages the X-WP-TotalPages header (-1 when absent); otherwise `why`
 * is set and the verdict returned. */
static enum cpb_status get_list(struct push_woo_stock *s, const char *what, const char *route,
                                const struct woo_param *q, size_t nq, json_t **doc, long *pages,
                                struct reason *why)
{
    struct cpb_http_response resp;
    enum cpb_status verdict = CPB_OK;
    enum cpb_status rc =
        woo_request(&s->client, "GET", route, q, nq, NULL, (unsigned)s->o->conn.max_tries, &resp);
    s->host->metric_add(s->ctx, "catalog_requests", 1);
    *pages = -1;
    *doc = json_answer(s, what, rc, &resp, why, &verdict, NULL);
    if (*doc != NULL && !json_is_array(*doc)) {
        snprintf(why->code, sizeof why->code, "stock.bad_json");
        snprintf(why->msg, sizeof why->msg, "%s: HTTP %ld, the answer is not a list", what,
                 resp.status);
        json_decref(*doc);
        *doc = NULL;
        verdict = CPB_RETRY;
    }
    if (*doc != NULL) {
        *pages = total_pages(s, &resp);
    }
    s->host->http_free(&resp);
    return *doc != NULL ? CPB_OK : verdict;
}

/* Give every unfinished item of v the same outcome. */
static void finish_all(struct item **v, size_t k, enum cpb_status st, const struct reason *why)
{
    for (size_t j = 0; j < k; j++) {
        if (!v[j]->finished) {
            finish(v[j], st, why->code, "%s", why->msg);
        }
    }
}

/* An element's positive integer member, else 0. */
static int64_t id_of(const json_t *e, const char *key)
{
    json_t *v = json_object_get(e, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* Look up v[0..k) (unresolved, unfinished) by SKU with one GET /products. */
static void lookup_products(struct push_woo_stock *s, struct item **v, size_t k)
{
    char *skus = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    long pages = 0;
    struct reason why = {"", ""};
    char what[80];
    FILE *f = open_memstream(&skus, &len);
    for (size_t j = 0; f != NULL && j < k; j++) {
        fprintf(f, "%s%s", j > 0 ? "," : "", v[j]->sku);
    }
    if (f == NULL || fclose(f) != 0 || skus == NULL) {
        snprintf(why.code, sizeof why.code, "stock.oom");
        snprintf(why.msg, sizeof why.msg, "out of memory");
        finish_all(v, k, CPB_RETRY, &why);
        goto out;
    }
    const struct woo_param q[] = {{"sku", skus}, {"per_page", "100"}};
    snprintf(what, sizeof what, "looking up %zu SKU(s) among the products", k);
    enum cpb_status rc = get_list(s, what, "/products", q, 2, &doc, &pages, &why);
    if (rc != CPB_OK) {
        finish_all(v, k, rc, &why);
        goto out;
    }
    size_t i;
    json_t *e;
    json_array_foreach(doc, i, e)
    {
        const char *sku = json_string_value(json_object_get(e, "sku"));
        int64_t id = id_of(e, "id");
        for (size_t j = 0; sku != NULL && id > 0 && j < k; j++) {
            if (v[j]->pid == 0 && fold_cmp(v[j]->sku, sku) == 0) {
                v[j]->pid = id;
                v[j]->vid = 0;
                remember(v[j]);
            }
        }
    }
out:
    free(skus);
    json_decref(doc);
}

static int var_cmp(const void *a, const void *b)
{
    const struct var_entry *x = a;
    const struct var_entry *y = b;
    return fold_cmp(x->sku, y->sku);
}

/* Add the variations of one list page to the index being built. */
static int index_page(struct var_entry **vars, size_t *n, size_t *cap, json_t *doc, int64_t parent)
{
    size_t i;
    json_t *e;
    json_array_foreach(doc, i, e)
    {
        const char *sku = json_string_value(json_object_get(e, "sku"));
        int64_t id = id_of(e, "id");
        if (sku == NULL || sku[0] == '\0' || strlen(sku) > SKU_MAX || id <= 0) {
            continue; /* a variation without a usable SKU cannot be ours */
        }
        if (*n == *cap) {
            size_t c = *cap > 0 ? *cap * 2 : 256;
            struct var_entry *nv = realloc(*vars, c * sizeof *nv);
            if (nv == NULL) {
                return -1;
            }
            *vars = nv;
            *cap = c;
        }
        char *copy = strdup(sku);
        if (copy == NULL) {
            return -1;
        }
        (*vars)[(*n)++] = (struct var_entry){copy, parent, id};
    }
    return 0;
}

/* Read every page of `route` (a list of 100 per page) into the index (for
 * variations: parent > 0) or the ids of its variable products (parents). */
static enum cpb_status read_pages(struct push_woo_stock *s, const char *route, bool variable,
                                  int64_t parent, struct var_entry **vars, size_t *n, size_t *cap,
                                  int64_t **parents, size_t *np, size_t *pcap, struct reason *why)
{
    for (long page = 1; page <= MAX_PAGES; page++) {
        char pg[24];
        char what[120];
        json_t *doc = NULL;
        long pages = -1;
        snprintf(pg, sizeof pg, "%ld", page);
        const struct woo_param qv[] = {{"type", "variable"}, {"per_page", "100"}, {"page", pg}};
        const struct woo_param qp[] = {{"per_page", "100"}, {"page", pg}};
        if (variable) {
            snprintf(what, sizeof what, "listing the variable products (page %ld)", page);
        } else {
            snprintf(what, sizeof what, "listing the variations of product %lld (page %ld)",
                     (long long)parent, page);
        }
        enum cpb_status rc = variable ? get_list(s, what, route, qv, 3, &doc, &pages, why)
                                      : get_list(s, what, route, qp, 2, &doc, &pages, why);
        if (rc != CPB_OK) {
            return rc;
        }
        size_t count = json_array_size(doc);
        int bad = 0;
        if (variable) {
            size_t i;
            json_t *e;
            json_array_foreach(doc, i, e)
            {
                const char *type = json_string_value(json_object_get(e, "type"));
                int64_t id = id_of(e, "id");
                if (type == NULL || strcmp(type, "variable") != 0 || id <= 0) {
                    continue;
                }
                if (*np == *pcap) {
                    size_t c = *pcap > 0 ? *pcap * 2 : 64;
                    int64_t *nv = realloc(*parents, c * sizeof *nv);
                    if (nv == NULL) {
                        bad = 1;
                        break;
                    }
                    *parents = nv;
                    *pcap = c;
                }
                (*parents)[(*np)++] = id;
            }
        } else {
            bad = index_page(vars, n, cap, doc, parent);
        }
        json_decref(doc);
        if (bad != 0) {
            snprintf(why->code, sizeof why->code, "stock.oom");
            snprintf(why->msg, sizeof why->msg, "out of memory listing the store's variations");
            return CPB_RETRY;
        }
        if (count < 100 || (pages >= 0 && page >= pages)) {
            return CPB_OK;
        }
    }
    snprintf(why->code, sizeof why->code, "stock.too_many");
    snprintf(why->msg, sizeof why->msg, "%s lists more than %d pages of 100; not read to the end",
             route, MAX_PAGES);
    return CPB_RETRY;
}

/* What a list answers a page without per_page (WooCommerce's default). */
#define DEFAULT_PAGE 10
/* Variation lists asked for at once. */
#define LIST_CHUNK 64

/* One variation list's first page (its answer, borrowed) into the index;
 * a product with more variations than that page holds is read again page
 * by page, 100 a page. */
static enum cpb_status first_page(struct push_woo_stock *s, const char *route, int64_t parent,
                                  enum cpb_status st, const struct cpb_http_response *resp,
                                  struct var_entry **vars, size_t *n, size_t *cap,
                                  struct reason *why)
{
    char what[120];
    enum cpb_status verdict = CPB_OK;
    enum cpb_status rc = CPB_OK;
    snprintf(what, sizeof what, "listing the variations of product %lld", (long long)parent);
    json_t *doc = json_answer(s, what, st, resp, why, &verdict, NULL);
    long pages = total_pages(s, resp);
    if (doc == NULL) {
        return verdict;
    }
    if (!json_is_array(doc)) {
        snprintf(why->code, sizeof why->code, "stock.bad_json");
        snprintf(why->msg, sizeof why->msg, "%s: HTTP %ld, the answer is not a list", what,
                 resp->status);
        rc = CPB_RETRY;
    } else if (pages == 1 || (pages < 0 && json_array_size(doc) < DEFAULT_PAGE) ||
               json_array_size(doc) == 0) {
        if (index_page(vars, n, cap, doc, parent) != 0) {
            snprintf(why->code, sizeof why->code, "stock.oom");
            snprintf(why->msg, sizeof why->msg, "out of memory listing the store's variations");
            rc = CPB_RETRY;
        }
    } else {
        rc = read_pages(s, route, false, parent, vars, n, cap, NULL, NULL, NULL, why);
    }
    json_decref(doc);
    return rc;
}

/* The variations of every variable product: the first page of each list
 * (no query: the store's default page) `connections` at once, the rest of
 * a longer list page by page. */
static enum cpb_status read_variations(struct push_woo_stock *s, const int64_t *parents, size_t np,
                                       struct var_entry **vars, size_t *n, size_t *cap,
                                       struct reason *why)
{
    char routes[LIST_CHUNK][64];
    const char *rp[LIST_CHUNK];
    struct cpb_http_response resps[LIST_CHUNK];
    enum cpb_status st[LIST_CHUNK];
    enum cpb_status rc = CPB_OK;
    for (size_t at = 0; rc == CPB_OK && at < np; at += LIST_CHUNK) {
        size_t k = np - at < LIST_CHUNK ? np - at : LIST_CHUNK;
        for (size_t j = 0; j < k; j++) {
            snprintf(routes[j], sizeof routes[j], "/products/%lld/variations",
                     (long long)parents[at + j]);
            rp[j] = routes[j];
        }
        if (woo_request_many(&s->client, "GET", rp, NULL, k, (unsigned)s->o->conn.max_tries, false,
                             (unsigned)s->o->connections, resps, st) != CPB_OK) {
            snprintf(why->code, sizeof why->code, "stock.oom");
            snprintf(why->msg, sizeof why->msg, "out of memory listing the store's variations");
            rc = CPB_RETRY;
        }
        s->host->metric_add(s->ctx, "catalog_requests", (double)k);
        for (size_t j = 0; j < k; j++) {
            if (rc == CPB_OK) {
                rc = first_page(s, routes[j], parents[at + j], st[j], &resps[j], vars, n, cap, why);
            }
            s->host->http_free(&resps[j]);
        }
    }
    return rc;
}

/* The store's variations, by SKU: read once per run (and again when older
 * than INDEX_MAX_AGE_MS), only when a SKU was not found among products. */
static enum cpb_status build_index(struct push_woo_stock *s, struct reason *why)
{
    struct var_entry *vars = NULL;
    size_t n = 0;
    size_t cap = 0;
    int64_t *parents = NULL;
    size_t np = 0;
    size_t pcap = 0;
    int64_t now = s->host->now_ms(s->ctx);
    enum cpb_status rc = CPB_OK;

    if (s->indexed && now - s->indexed_at < INDEX_MAX_AGE_MS) {
        return CPB_OK;
    }
    free_index(s);
    rc = read_pages(s, "/products", true, 0, &vars, &n, &cap, &parents, &np, &pcap, why);
    if (rc == CPB_OK) {
        rc = read_variations(s, parents, np, &vars, &n, &cap, why);
    }
    if (rc != CPB_OK) {
        for (size_t i = 0; i < n; i++) {
            free(vars[i].sku);
        }
        free(vars);
        goto out;
    }
    if (n > 0) {
        qsort(vars, n, sizeof *vars, var_cmp);
    }
    s->vars = vars;
    s->nvars = n;
    s->indexed = true;
    s->indexed_at = now;
    s->host->log(s->ctx, CPB_LOG_INFO, "the store has %zu variation(s) in %zu variable product(s)",
                 n, np);
out:
    free(parents);
    return rc;
}

/* Resolve the ids of the items that have none. */
static void resolve(struct push_woo_stock *s, struct item *items, size_t n)
{
    struct item **v = calloc(n > 0 ? n : 1, sizeof *v);
    struct reason why = {"", ""};
    size_t k = 0;
    if (v == NULL) {
        snprintf(why.code, sizeof why.code, "stock.oom");
        snprintf(why.msg, sizeof why.msg, "out of memory");
        for (size_t i = 0; i < n; i++) {
            if (!items[i].finished && items[i].pid == 0) {
                finish(&items[i], CPB_RETRY, why.code, "%s", why.msg);
            }
        }
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t bytes = 0;
        k = 0;
        for (; i < n && k < LOOKUP_SKUS; i++) {
            struct item *it = &items[i];
            if (it->finished || it->pid > 0) {
                continue;
            }
            if (k > 0 && bytes + strlen(it->sku) + 1 > LOOKUP_BYTES) {
                break;
            }
            bytes += strlen(it->sku) + 1;
            v[k++] = it;
        }
        if (k > 0) {
            lookup_products(s, v, k);
        }
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].finished && items[i].pid == 0) {
            v[k++] = &items[i];
        }
    }
    if (k > 0) {
        enum cpb_status rc = build_index(s, &why);
        if (rc != CPB_OK) {
            finish_all(v, k, rc, &why);
        }
    }
    for (size_t j = 0; j < k; j++) {
        struct item *it = v[j];
        struct var_entry key = {(char *)it->sku, 0, 0};
        struct var_entry *hit =
            s->vars != NULL ? bsearch(&key, s->vars, s->nvars, sizeof *s->vars, var_cmp) : NULL;
        if (it->finished) {
            continue;
        }
        if (hit == NULL) {
            char shown[SKU_MAX * 4 + 8];
            stage_quote(it->sku, SKU_MAX, shown, sizeof shown);
            finish(it, CPB_FAIL, "sku.unknown",
                   "SKU '%s' is neither a product nor a variation in the store: add it there or "
                   "fix the SKU (USER_ITEM_MAP); the record is queued again when its quantity "
                   "changes",
                   shown);
            continue;
        }
        it->pid = hit->parent;
        it->vid = hit->id;
        remember(it);
    }
    free(v);
}

/* One batch request to be made: its route, body and items. */
struct batch {
    char route[64];
    char *body;
    struct item **v;
    size_t k;
};

/* The element of `arr` (borrowed) for id, or NULL. */
static json_t *by_id(json_t *arr, int64_t id)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        json_t *v = json_object_get(e, "id");
        if (json_is_integer(v) && (int64_t)json_integer_value(v) == id) {
            return e;
        }
    }
    return NULL;
}

/* The body {"update": [{"id", "stock_quantity", "manage_stock": true}...]}
 * of a batch (new string), or NULL (out of memory). */
static char *batch_body(struct item **v, size_t k)
{
    json_t *upd = json_array();
    json_t *body = NULL;
    char *text = NULL;
    for (size_t j = 0; upd != NULL && j < k; j++) {
        int64_t id = v[j]->vid > 0 ? v[j]->vid : v[j]->pid;
        json_t *e = json_pack("{s:I, s:I, s:b}", "id", (json_int_t)id, "stock_quantity", v[j]->qty,
                              "manage_stock", 1);
        if (e == NULL || json_array_append_new(upd, e) != 0) {
            goto out;
        }
    }
    body = json_pack("{s:O}", "update", upd);
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
    }
out:
    json_decref(upd);
    json_decref(body);
    return text;
}

/* Check one item's element of a batch answer. */
static void check_item(struct item *it, json_t *answered)
{
    int64_t id = it->vid > 0 ? it->vid : it->pid;
    json_t *e = by_id(answered, id);
    json_t *err = json_object_get(e, "error");
    if (e == NULL) {
        finish(it, CPB_RETRY, "stock.unanswered",
               "SKU %s: the store's batch answer has no item for id %lld; tried again later",
               it->sku, (long long)id);
        return;
    }
    if (err != NULL) {
        json_int_t st = json_integer_value(json_object_get(json_object_get(err, "data"), "status"));
        const char *c = json_string_value(json_object_get(err, "code"));
        const char *m = json_string_value(json_object_get(err, "message"));
        char cs[80];
        char ms[300];
        woo_clean_text(c != NULL ? c : "", c != NULL ? strlen(c) : 0, cs, sizeof cs);
        woo_clean_text(m != NULL ? m : "", m != NULL ? strlen(m) : 0, ms, sizeof ms);
        size_t cl = strlen(cs);
        if (cl >= 11 && strcmp(cs + cl - 11, "_invalid_id") == 0) {
            forget(it, cs);
        } else if (st == 429 || st >= 500 || st == 0) {
            finish(it, CPB_RETRY, "stock.item_failed",
                   "SKU %s: the store failed the item (%lld %s: %s); tried again later", it->sku,
                   (long long)st, cs, ms);
        } else {
            finish(it, CPB_FAIL, "stock.rejected",
                   "SKU %s: the store refused stock_quantity %lld (%lld %s: %s)", it->sku,
                   (long long)it->qty, (long long)st, cs, ms);
        }
        return;
    }
    /* The cached id still being this SKU's: a product whose SKU moved to
     * another, or one in the trash (a new product took the SKU), got this
     * write in vain; the SKU is looked up again and pushed to the right one. */
    const char *sku = json_string_value(json_object_get(e, "sku"));
    const char *status = json_string_value(json_object_get(e, "status"));
    if (sku != NULL && fold_cmp(sku, it->sku) != 0) {
        char shown[SKU_MAX + 1];
        char what[SKU_MAX + 40];
        woo_clean_text(sku, strlen(sku), shown, sizeof shown);
        snprintf(what, sizeof what, "its SKU is now \"%s\"", shown);
        forget(it, what);
        return;
    }
    if (status != NULL && strcmp(status, "trash") == 0) {
        forget(it, "it is in the store's trash");
        return;
    }
    json_t *q = json_object_get(e, "stock_quantity");
    if (!json_is_integer(q) || json_integer_value(q) != it->qty) {
        finish(it, CPB_FAIL, "stock.not_applied",
               "SKU %s: the store answered 200 but its stock_quantity is not %lld (a plugin or "
               "proxy may have changed the request)",
               it->sku, (long long)it->qty);
        return;
    }
    if (json_is_object(it->rec->result)) {
        json_object_set_new(it->rec->result, "pushed", json_integer(it->qty));
    }
    finish(it, CPB_OK, NULL, NULL);
}

/* The answer of one batch request, for its items. */
static void check_batch(struct push_woo_stock *s, struct batch *b, enum cpb_status st,
                        const struct cpb_http_response *resp)
{
    char what[120];
    enum cpb_status verdict = CPB_OK;
    enum woo_failure kind = WOO_F_UNAVAILABLE;
    struct reason why = {"", ""};
    snprintf(what, sizeof what, "setting the stock of %zu item(s) (POST %s)", b->k, b->route);
    json_t *doc = json_answer(s, what, st, resp, &why, &verdict, &kind);
    json_t *answered = json_object_get(doc, "update");
    if (doc != NULL && !json_is_array(answered)) {
        snprintf(why.code, sizeof why.code, "stock.bad_json");
        snprintf(why.msg, sizeof why.msg, "%s: HTTP %ld, the answer has no \"update\" list", what,
                 resp->status);
        verdict = CPB_RETRY;
    } else if (doc == NULL && kind == WOO_F_NOT_FOUND && b->v[0]->vid > 0) {
        for (size_t j = 0; j < b->k; j++) {
            forget(b->v[j], "its product answered 404");
        }
    }
    if (doc == NULL || !json_is_array(answered)) {
        finish_all(b->v, b->k, verdict, &why);
        json_decref(doc);
        return;
    }
    for (size_t j = 0; j < b->k; j++) {
        check_item(b->v[j], answered);
    }
    json_decref(doc);
}

/* Sort key: products first, then variations by parent. */
static int item_cmp(const void *a, const void *b)
{
    const struct item *x = *(struct item *const *)a;
    const struct item *y = *(struct item *const *)b;
    int64_t px = x->vid > 0 ? x->pid : 0;
    int64_t py = y->vid > 0 ? y->pid : 0;
    return px < py ? -1 : px > py ? 1 : 0;
}

/* Send the resolved items' quantities, grouped in batch requests. */
static void push(struct push_woo_stock *s, struct item *items, size_t n)
{
    struct item **v = calloc(n > 0 ? n : 1, sizeof *v);
    struct batch *b = calloc(n > 0 ? n : 1, sizeof *b);
    const char **routes = calloc(n > 0 ? n : 1, sizeof *routes);
    const char **bodies = calloc(n > 0 ? n : 1, sizeof *bodies);
    struct cpb_http_response *resps = calloc(n > 0 ? n : 1, sizeof *resps);
    enum cpb_status *st = calloc(n > 0 ? n : 1, sizeof *st);
    struct reason oom = {"stock.oom", "out of memory"};
    size_t k = 0;
    size_t nb = 0;

    for (size_t i = 0; v != NULL && i < n; i++) {
        if (!items[i].finished) {
            v[k++] = &items[i];
        }
    }
    if (v == NULL || b == NULL || routes == NULL || bodies == NULL || resps == NULL || st == NULL) {
        for (size_t i = 0; i < n; i++) {
            if (!items[i].finished) {
                finish(&items[i], CPB_RETRY, oom.code, "%s", oom.msg);
            }
        }
        goto out;
    }
    if (k == 0) {
        goto out;
    }
    qsort(v, k, sizeof *v, item_cmp);
    size_t per = (size_t)s->o->batch_size;
    for (size_t at = 0; at < k;) {
        struct batch *one = &b[nb];
        int64_t parent = v[at]->vid > 0 ? v[at]->pid : 0;
        memset(one, 0, sizeof *one); /* a slot left by a body that failed */
        one->v = &v[at];
        while (at < k && one->k < per && (v[at]->vid > 0 ? v[at]->pid : 0) == parent) {
            one->k++;
            at++;
        }
        if (parent > 0) {
            snprintf(one->route, sizeof one->route, "/products/%lld/variations/batch",
                     (long long)parent);
        } else {
            snprintf(one->route, sizeof one->route, "/products/batch");
        }
        one->body = batch_body(one->v, one->k);
        if (one->body == NULL) {
            finish_all(one->v, one->k, CPB_RETRY, &oom);
            continue;
        }
        routes[nb] = one->route;
        bodies[nb] = one->body;
        nb++;
    }
    if (nb == 0) {
        goto out;
    }
    if (woo_request_many(&s->client, "POST", routes, bodies, nb, (unsigned)s->o->conn.max_tries,
                         false, (unsigned)s->o->connections, resps, st) != CPB_OK) {
        for (size_t j = 0; j < nb; j++) {
            finish_all(b[j].v, b[j].k, CPB_RETRY, &oom);
            s->host->http_free(&resps[j]);
        }
        goto out;
    }
    s->host->metric_add(s->ctx, "batch_requests", (double)nb);
    for (size_t j = 0; j < nb; j++) {
        check_batch(s, &b[j], st[j], &resps[j]);
        s->host->http_free(&resps[j]);
    }
out:
    for (size_t j = 0; b != NULL && j < n; j++) {
        free(b[j].body);
    }
    free(v);
    free(b);
    free(routes);
    free(bodies);
    free(resps);
    free(st);
}

static void push_woo_stock_process_batch(void *state, struct cpb_record *const *recs, size_t n,
                                         enum cpb_status *out)
{
    struct push_woo_stock *s = state;
    struct item *items = calloc(n > 0 ? n : 1, sizeof *items);
    size_t ok = 0;
    if (items == NULL) {
        for (size_t i = 0; i < n; i++) {
            out[i] = CPB_RETRY;
            s->host->reason_at(s->ctx, i, "stock.oom", "out of memory");
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        prepare_item(&items[i], recs[i]);
    }
    resolve(s, items, n);
    push(s, items, n);
    for (size_t i = 0; i < n; i++) {
        out[i] = items[i].finished ? items[i].st : CPB_RETRY;
        ok += out[i] == CPB_OK;
        if (items[i].finished && items[i].why.code[0] != '\0') {
            s->host->reason_at(s->ctx, i, items[i].why.code, "%s", items[i].why.msg);
        } else if (!items[i].finished) {
            s->host->reason_at(s->ctx, i, "stock.lost", "the quantity was not confirmed");
        }
    }
    s->host->metric_add(s->ctx, "pushed", (double)ok);
    s->host->log(s->ctx, CPB_LOG_INFO, "%zu of %zu stock level(s) set in the store", ok, n);
    free(items);
}

/* One record at a time (a host that does not batch): the batch's work on
 * one item, its reason through `reason`. */
static enum cpb_status push_woo_stock_process(void *state, struct cpb_record *rec)
{
    struct push_woo_stock *s = state;
    struct item it;
    prepare_item(&it, rec);
    if (!it.finished) {
        resolve(s, &it, 1);
        push(s, &it, 1);
    }
    if (!it.finished) {
        finish(&it, CPB_RETRY, "stock.lost", "the quantity was not confirmed");
    }
    if (it.why.code[0] != '\0') {
        s->host->reason(s->ctx, it.why.code, "%s", it.why.msg);
    }
    return it.st;
}

const struct cpb_stage push_woo_stock_stage = {
    CPB_STAGE_HEADER,
    .name = "push-woo-stock",
    .version = "1.0.0",
    .summary = "Set the stock quantities of staged stock records in a WooCommerce store (batch "
               "updates of products and variations)",
    .kind = CPB_RECORD,
    .options = push_woo_stock_options,
    .options_size = sizeof(struct push_woo_stock_opts),
    .init = push_woo_stock_init,
    .process = push_woo_stock_process,
    .fini = push_woo_stock_fini,
    .process_batch = push_woo_stock_process_batch,
};

CPB_STAGE_ENTRY(push_woo_stock_stage);
