/*
 * sync-status — an after-commit stage that writes applied orders back to
 * their WooCommerce store: the order's status (default "completed") and an
 * order note naming the Counterpoint ticket and document.
 *
 * It takes the engine's applied orders a batch at a time (process_batch,
 * ABI 1.1): per 100 orders one read of their statuses (GET /orders with
 * include=, so an order that is already at the target is left alone and one
 * that left from_statuses — cancelled, refunded, ... — is never
 * overwritten) and one POST /orders/batch, each of whose items is checked
 * (the answer is 200 even when items fail; an item refused with a
 * retryable error gets the single PUT /orders/{id}); then the notes,
 * `connections` at a time through the host's concurrent HTTP service.
 *
 * Traps it avoids (woocommerce-api.md §6, §12): the batch endpoint does
 * not validate statuses (an unknown one becomes "pending"), so only a core
 * status goes by batch; a custom one (extra_statuses) goes by the single
 * PUT, which the store validates. Bodies go with Content-Type:
 * application/json (without it the store answers 200 and changes nothing:
 * the status in every answer is checked, sync.not_applied).
 *
 * Exactly once: the engine records each order's completion. The status
 * change is idempotent (an order already at the target is not changed).
 * The note is not: it is posted without reading the notes first only on
 * the order's first attempt (attempt 1: the engine applied the order just
 * before, nothing can have been sent yet); on a later attempt (after a
 * crash, a failure or a retry from the dead-letter queue) the notes are
 * read and the note added only when none names the ticket yet. A note POST
 * is tried again within the call only when the store certainly did not act
 * on it (429, 503, no connection); one that timed out waits for the next
 * attempt, which reads first.
 *
 * An order the engine rolled back because the store cancelled it
 * (result.rolled_back, ABI 1.4) gets no status change, only the note
 * "Removed from Counterpoint: ticket T (document D) ...", exactly once in
 * the same way (the engine hands it over with attempt > 1, so the notes are
 * read first and a note that begins so and names the ticket is enough).
 */
#include <cpbridge/stage.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_util.h"
#include "woo_api.h"

struct sync_status_opts {
    struct woo_conn conn; /* url, consumer_key, consumer_secret, auth,
                             oauth_signature_method, timeout, max_tries,
                             tls_no_verify, ca_file */
    const char *status;
    const char *const *extra_statuses;
    const char *const *from_statuses;
    bool note;
    bool dry_run;
    const char *source;
    int64_t connections;
};

static const struct cpb_option sync_status_options[] = {
    {"url", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 8, WOO_URL_MAX, NULL,
     offsetof(struct sync_status_opts, conn.url),
     "The store's home URL, e.g. https://shop.example (the API is <url>/wp-json/wc/v3)."},
    {"consumer_key", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 1, 200, NULL,
     offsetof(struct sync_status_opts, conn.key),
     "REST API consumer key (ck_...) with Read/Write permission."},
    {"consumer_secret", CPB_OPT_STRING, CPB_OPT_REQUIRED | CPB_OPT_SECRET, NULL, 1, 200, NULL,
     offsetof(struct sync_status_opts, conn.secret),
     "REST API consumer secret (cs_...); \"file:/path\" reads it from a file."},
    {"auth", CPB_OPT_ENUM, 0, "auto", 0, 0, woo_auth_choices,
     offsetof(struct sync_status_opts, conn.auth),
     "auto (Basic over https, OAuth 1.0a over http), basic or oauth; WooCommerce refuses Basic "
     "over plain http."},
    {"oauth_signature_method", CPB_OPT_ENUM, 0, "HMAC-SHA256", 0, 0, woo_sig_choices,
     offsetof(struct sync_status_opts, conn.sig),
     "OAuth signature method: HMAC-SHA256 or HMAC-SHA1."},
    {"status", CPB_OPT_STRING, 0, "completed", 1, 40, NULL,
     offsetof(struct sync_status_opts, status),
     "Status an applied order gets: a core WooCommerce status or one of extra_statuses."},
    {"extra_statuses", CPB_OPT_LIST, 0, NULL, 0, 50, NULL,
     offsetof(struct sync_status_opts, extra_statuses),
     "Custom order statuses a plugin registered in the store (e.g. [\"shipped\"])."},
    {"from_statuses", CPB_OPT_LIST, 0, "pending,processing,on-hold", 1, 50, NULL,
     offsetof(struct sync_status_opts, from_statuses),
     "Statuses an order may be changed from; an order found in another one (cancelled, "
     "refunded, ...) is left alone and reported."},
    {"note", CPB_OPT_BOOL, 0, "true", 0, 0, NULL, offsetof(struct sync_status_opts, note),
     "Add a private order note naming the Counterpoint ticket and document."},
    {"dry_run", CPB_OPT_BOOL, 0, "false", 0, 0, NULL, offsetof(struct sync_status_opts, dry_run),
     "Log what would be sent and send nothing (the order still counts as synced)."},
    {"source", CPB_OPT_STRING, 0, NULL, 1, 64, NULL, offsetof(struct sync_status_opts, source),
     "Only write back orders from this source stage id (one sync-status per store); default: "
     "every order."},
    {"timeout", CPB_OPT_DURATION, 0, "30s", 100, 600000, NULL,
     offsetof(struct sync_status_opts, conn.timeout_ms), "Time allowed for each HTTP request."},
    {"connections", CPB_OPT_INT, 0, "4", 1, 16, NULL,
     offsetof(struct sync_status_opts, connections),
     "Notes sent at once to the store (connections in parallel, reused); shared hosting "
     "tolerates a few. A 429 from the store slows every connection down."},
    {"max_tries", CPB_OPT_INT, 0, "3", 1, 10, NULL,
     offsetof(struct sync_status_opts, conn.max_tries),
     "Tries per request on 429, 5xx and timeouts (Retry-After is honoured) before the order is "
     "retried in a later run."},
    {"tls_no_verify", CPB_OPT_BOOL, 0, "false", 0, 0, NULL,
     offsetof(struct sync_status_opts, conn.tls_no_verify),
     "Turn TLS certificate verification off (logged as a warning on every request)."},
    {"ca_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL,
     offsetof(struct sync_status_opts, conn.ca_file),
     "CA bundle (PEM) that signed the store's certificate; default: the system's."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* WooCommerce's core order statuses (woocommerce-api.md §6). */
static const char *const core_statuses[] = {"pending",   "processing", "on-hold", "completed",
                                            "cancelled", "refunded",   "failed",  NULL};

struct sync_status {
    const struct cpb_host *host;
    struct cpb_ctx *ctx;
    const struct sync_status_opts *o;
    struct woo_client client;
    bool batch; /* the target is a core status: POST /orders/batch may set it */
};

static bool listed(const char *const *list, const char *s)
{
    for (; list != NULL && *list != NULL; list++) {
        if (strcmp(*list, s) == 0) {
            return true;
        }
    }
    return false;
}

static int check_list(const struct cpb_host *host, struct cpb_ctx *ctx, const char *name,
                      const char *const *list)
{
    for (; list != NULL && *list != NULL; list++) {
        if (!woo_status_ok(*list)) {
            stage_init_fail(
                host, ctx,
                "%s: \"%.40s\" is not an order status (lower-case letters, digits, '-' and "
                "'_')",
                name, *list);
            return -1;
        }
    }
    return 0;
}

static int sync_status_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                            void **state)
{
    const struct sync_status_opts *o = options;
    char msg[400];
    struct sync_status *s = calloc(1, sizeof *s);
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
    if (check_list(host, ctx, "extra_statuses", o->extra_statuses) != 0 ||
        check_list(host, ctx, "from_statuses", o->from_statuses) != 0) {
        return -1;
    }
    if (!listed(core_statuses, o->status) && !listed(o->extra_statuses, o->status)) {
        stage_init_fail(host, ctx,
                        "status \"%.40s\" is not a WooCommerce order status (pending, processing, "
                        "on-hold, completed, cancelled, refunded, failed) nor listed in "
                        "extra_statuses; the store would refuse it",
                        o->status);
        return -1;
    }
    /* The batch endpoint does not validate statuses: one the store lacks
     * becomes "pending". Core statuses always exist; a custom one goes by
     * the single PUT, which the store validates (400 when it lacks it). */
    s->batch = listed(core_statuses, o->status);
    if (o->dry_run) {
        host->log(ctx, CPB_LOG_WARN, "dry_run is on: nothing is written to %s", s->client.home);
    }
    return 0;
}

/* A WooCommerce order id: 1 to 18 digits, no leading zero. */
static bool id_ok(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;
    return n > 0 && n <= 18 && id[0] != '0' && strspn(id, "0123456789") == n;
}

/* Orders in one status read and one batch update: the store's limit. */
#define SYNC_CHUNK 100

/* How the note after a rollback for the store begins (and is found again). */
#define REMOVED_NOTE "Removed from Counterpoint"

/* Where a reason goes: one order's, recorded until the call returns. */
struct reason {
    char code[48];
    char msg[900];
};

/* One order of a call, from its record to its outcome. */
struct item {
    const struct cpb_record *rec;
    const char *id; /* rec->external_id, checked */
    char note[300];
    char tkt[48];
    bool want_note;
    bool removed;     /* rolled back for the store: only the removal note */
    bool status_done; /* the store shows the target status */
    bool finished;
    enum cpb_status st; /* the outcome, once finished */
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

/* A failed exchange as a reason; returns the verdict. */
static enum cpb_status failed(struct sync_status *s, const char *what, enum cpb_status st,
                              const struct cpb_http_response *resp, struct reason *why)
{
    enum cpb_status verdict;
    enum woo_failure kind =
        woo_describe(&s->client, what, st, resp, why->msg, sizeof why->msg, &verdict);
    snprintf(why->code, sizeof why->code, "sync.%s", woo_failure_name(kind));
    return verdict;
}

/* The JSON body of an exchange that succeeded (new reference), or NULL with
 * the reason set and *verdict the status to give. */
static json_t *json_answer(struct sync_status *s, const char *what, enum cpb_status rc,
                           const struct cpb_http_response *resp, struct reason *why,
                           enum cpb_status *verdict)
{
    char msg[300];
    json_t *doc = NULL;
    if (rc != CPB_OK || !woo_is_json(resp)) {
        *verdict = failed(s, what, rc, resp, why);
        return NULL;
    }
    doc = woo_json_body(resp, msg, sizeof msg);
    if (doc == NULL) {
        snprintf(why->code, sizeof why->code, "sync.bad_json");
        snprintf(why->msg, sizeof why->msg, "%s: HTTP %ld, the body is %s", what, resp->status,
                 msg);
        *verdict = CPB_RETRY;
    }
    return doc;
}

/* One exchange whose answer must be JSON: *doc receives the parsed body
 * (new reference) on CPB_OK; otherwise `why` is set. */
static enum cpb_status call_json(struct sync_status *s, const char *what, const char *method,
                                 const char *route, const struct woo_param *q, size_t nq,
                                 const char *body, unsigned tries, long *status, json_t **doc,
                                 struct reason *why)
{
    struct cpb_http_response resp;
    enum cpb_status verdict = CPB_OK;
    enum cpb_status rc = woo_request(&s->client, method, route, q, nq, body, tries, &resp);
    *status = resp.status;
    *doc = json_answer(s, what, rc, &resp, why, &verdict);
    s->host->http_free(&resp);
    return *doc != NULL ? CPB_OK : verdict;
}

/* True when `text` holds "ticket <tkt>" not followed by more of a ticket. */
static bool names_ticket(const char *text, const char *tkt)
{
    char needle[80];
    int w = snprintf(needle, sizeof needle, "ticket %s", tkt);
    if (w < 0 || (size_t)w >= sizeof needle) {
        return false;
    }
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        char next = p[w];
        bool more = (next >= 'A' && next <= 'Z') || (next >= 'a' && next <= 'z') ||
                    (next >= '0' && next <= '9') || next == '-' || next == '_';
        if (!more) {
            return true;
        }
    }
    return false;
}

/* The status the store answered for an order it changed, checked against
 * the target: the order is done with its status, or finished failed. */
static void check_answered(struct sync_status *s, struct item *it, const char *what, long http,
                           const char *now)
{
    char shown[48];
    const char *target = s->o->status;
    if (now == NULL || strcmp(now, target) != 0) {
        woo_clean_text(now != NULL ? now : "(none)", strlen(now != NULL ? now : "(none)"), shown,
                       sizeof shown);
        finish(it, CPB_FAIL, "sync.not_applied",
               "%s: the store answered HTTP %ld but the order is '%s', not '%s' (a plugin or proxy "
               "may have changed the request or its Content-Type)",
               what, http, shown, target);
        return;
    }
    it->status_done = true;
    s->host->log(s->ctx, CPB_LOG_INFO, "order %s set to '%s'", it->id, target);
}

/* The single PUT /orders/{id}: for an order the batch refused with a
 * retryable error. */
static void put_status(struct sync_status *s, struct item *it)
{
    char what[120];
    char route[64];
    char body[100];
    json_t *doc = NULL;
    long http = 0;
    snprintf(route, sizeof route, "/orders/%s", it->id);
    snprintf(body, sizeof body, "{\"status\":\"%s\"}", s->o->status); /* a checked slug */
    snprintf(what, sizeof what, "setting order %s to '%s'", it->id, s->o->status);
    enum cpb_status rc =
        call_json(s, what, "PUT", route, NULL, 0, body, s->client.max_tries, &http, &doc, &it->why);
    if (rc != CPB_OK) {
        finish(it, rc, NULL, NULL);
        return;
    }
    check_answered(s, it, what, http, json_string_value(json_object_get(doc, "status")));
    json_decref(doc);
}

/* The element of `arr` (borrowed) for order `id`, or NULL. */
static json_t *by_id(json_t *arr, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        json_t *v = json_object_get(e, "id");
        char text[24];
        if (json_is_integer(v)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            if (strcmp(text, id) == 0) {
                return e;
            }
        }
    }
    return NULL;
}

/* Give every unfinished order of the chunk the same failure. */
static void finish_all(struct item **v, size_t k, enum cpb_status st, const struct reason *why)
{
    for (size_t j = 0; j < k; j++) {
        if (!v[j]->finished) {
            finish(v[j], st, why->code, "%s", why->msg);
        }
    }
}

/* Read the statuses of the chunk's orders in one request, so an order that
 * is already at the target is left alone and one that left from_statuses
 * (cancelled, refunded, ...) is never overwritten. Returns how many still
 * need the update; those are moved to the front of v. */
static size_t read_statuses(struct sync_status *s, struct item **v, size_t k)
{
    char what[80];
    char *ids = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    long http = 0;
    struct reason why = {"", ""};
    size_t left = 0;
    FILE *f = open_memstream(&ids, &len);
    for (size_t j = 0; f != NULL && j < k; j++) {
        fprintf(f, "%s%s", j > 0 ? "," : "", v[j]->id);
    }
    if (f == NULL || fclose(f) != 0 || ids == NULL) {
        snprintf(why.code, sizeof why.code, "sync.oom");
        snprintf(why.msg, sizeof why.msg, "out of memory");
        finish_all(v, k, CPB_RETRY, &why);
        goto out;
    }
    const struct woo_param q[] = {
        {"include", ids}, {"per_page", "100"}, {"status", "any"}, {"_fields", "id,status"}};
    snprintf(what, sizeof what, "reading the status of %zu order(s)", k);
    enum cpb_status rc = call_json(s, what, "GET", "/orders", q, sizeof q / sizeof q[0], NULL,
                                   s->client.max_tries, &http, &doc, &why);
    if (rc == CPB_OK && !json_is_array(doc)) {
        snprintf(why.code, sizeof why.code, "sync.bad_json");
        snprintf(why.msg, sizeof why.msg, "%s: HTTP %ld, the answer is not a list", what, http);
        rc = CPB_RETRY;
    }
    if (rc != CPB_OK) {
        finish_all(v, k, rc, &why);
        goto out;
    }
    for (size_t j = 0; j < k; j++) {
        struct item *it = v[j];
        const char *current = json_string_value(json_object_get(by_id(doc, it->id), "status"));
        char shown[48];
        if (current == NULL) {
            finish(it, CPB_FAIL, "sync.not_found",
                   "order %s does not exist in the store (deleted, or moved to the trash)", it->id);
            continue;
        }
        woo_clean_text(current, strlen(current), shown, sizeof shown);
        if (strcmp(current, s->o->status) == 0) {
            s->host->log(s->ctx, CPB_LOG_DEBUG, "order %s is already '%s'", it->id, s->o->status);
            it->status_done = true;
        } else if (!listed(s->o->from_statuses, current)) {
            finish(it, CPB_FAIL, "sync.status_conflict",
                   "order %s is '%s' in the store, which is not one of from_statuses: it was not "
                   "changed to '%s' (change it by hand if it should be)",
                   it->id, shown, s->o->status);
        } else {
            v[left++] = it;
        }
    }
out:
    free(ids);
    json_decref(doc);
    return left;
}

/* Set the target status of v[0..k-1] with one POST /orders/batch (statuses
 * are checked at init: the batch would turn an unknown one into "pending")
 * and check every element of the answer, which is 200 even when items
 * failed. An item refused with a retryable error gets the single PUT. */
static void batch_update(struct sync_status *s, struct item **v, size_t k)
{
    char what[80];
    json_t *body = json_object();
    json_t *upd = json_array();
    json_t *doc = NULL;
    char *text = NULL;
    long http = 0;
    struct reason why = {"", ""};

    for (size_t j = 0; body != NULL && upd != NULL && j < k; j++) {
        json_t *e = json_pack("{s:I, s:s}", "id", (json_int_t)strtoll(v[j]->id, NULL, 10), "status",
                              s->o->status);
        if (e == NULL || json_array_append_new(upd, e) != 0) {
            json_decref(upd);
            upd = NULL;
        }
    }
    if (body != NULL && upd != NULL && json_object_set(body, "update", upd) == 0) {
        text = json_dumps(body, JSON_COMPACT);
    }
    if (text == NULL) {
        snprintf(why.code, sizeof why.code, "sync.oom");
        snprintf(why.msg, sizeof why.msg, "out of memory");
        finish_all(v, k, CPB_RETRY, &why);
        goto out;
    }
    if (k == 1) {
        snprintf(what, sizeof what, "setting order %s to '%s'", v[0]->id, s->o->status);
    } else {
        snprintf(what, sizeof what, "setting %zu orders to '%s' in one batch", k, s->o->status);
    }
    enum cpb_status rc = call_json(s, what, "POST", "/orders/batch", NULL, 0, text,
                                   s->client.max_tries, &http, &doc, &why);
    json_t *answered = json_object_get(doc, "update");
    if (rc == CPB_OK && !json_is_array(answered)) {
        snprintf(why.code, sizeof why.code, "sync.bad_json");
        snprintf(why.msg, sizeof why.msg, "%s: HTTP %ld, the answer has no \"update\" list", what,
                 http);
        rc = CPB_RETRY;
    }
    if (rc != CPB_OK) {
        finish_all(v, k, rc, &why);
        goto out;
    }
    for (size_t j = 0; j < k; j++) {
        struct item *it = v[j];
        json_t *e = by_id(answered, it->id);
        json_t *err = json_object_get(e, "error");
        char one[120];
        snprintf(one, sizeof one, "setting order %s to '%s' in a batch", it->id, s->o->status);
        if (e == NULL) {
            put_status(s, it); /* not answered: ask for this one alone */
        } else if (err != NULL) {
            json_int_t st =
                json_integer_value(json_object_get(json_object_get(err, "data"), "status"));
            const char *c = json_string_value(json_object_get(err, "code"));
            const char *m = json_string_value(json_object_get(err, "message"));
            char cs[80];
            char ms[300];
            woo_clean_text(c != NULL ? c : "", c != NULL ? strlen(c) : 0, cs, sizeof cs);
            woo_clean_text(m != NULL ? m : "", m != NULL ? strlen(m) : 0, ms, sizeof ms);
            if (st == 429 || st >= 500 || st == 0) {
                s->host->log(s->ctx, CPB_LOG_INFO,
                             "%s: the store refused the item (%s: %s); trying it alone", one, cs,
                             ms);
                put_status(s, it);
            } else {
                finish(it, CPB_FAIL, "sync.rejected", "%s: the store refused it (%lld %s: %s)", one,
                       (long long)st, cs, ms);
            }
        } else {
            check_answered(s, it, one, http, json_string_value(json_object_get(e, "status")));
        }
    }
out:
    free(text);
    json_decref(upd);
    json_decref(body);
    json_decref(doc);
}

/* `method` on each order's notes route at once (host->http_many);
 * `bodies` may be NULL. A POST is tried again only when the store
 * certainly did not act on it. */
static void notes_many(struct sync_status *s, const char *method, struct item **v, size_t k,
                       const char *const *bodies, struct cpb_http_response *resps,
                       enum cpb_status *st)
{
    bool unsent_only = strcmp(method, "GET") != 0;
    char(*routes)[64] = calloc(k, sizeof *routes);
    const char **rp = calloc(k, sizeof *rp);
    if (routes == NULL || rp == NULL) {
        for (size_t j = 0; j < k; j++) {
            memset(&resps[j], 0, sizeof resps[j]);
            snprintf(resps[j].error, sizeof resps[j].error, "out of memory");
            st[j] = CPB_RETRY;
        }
        goto out;
    }
    for (size_t j = 0; j < k; j++) {
        snprintf(routes[j], sizeof routes[j], "/orders/%s/notes", v[j]->id);
        rp[j] = routes[j];
    }
    /* The stage is built for ABI 1.1, which the host has (it refuses a
     * stage newer than itself): http_many is there. */
    if (woo_request_many(&s->client, method, rp, bodies, k, s->client.max_tries, unsent_only,
                         (unsigned)s->o->connections, resps, st) != CPB_OK) {
        for (size_t j = 0; j < k; j++) {
            snprintf(resps[j].error, sizeof resps[j].error, "out of memory");
            st[j] = CPB_RETRY;
        }
    }
out:
    free(routes);
    free(rp);
}

/* Drop from v the orders whose notes already name their ticket: one read
 * each, only for orders an earlier attempt may have noted (a crash or a
 * failure left that unknown). Returns how many still need the note. */
static size_t already_noted(struct sync_status *s, struct item **v, size_t k,
                            struct cpb_http_response *resps, enum cpb_status *st)
{
    size_t left = 0;
    notes_many(s, "GET", v, k, NULL, resps, st);
    for (size_t j = 0; j < k; j++) {
        struct item *it = v[j];
        char what[80];
        enum cpb_status verdict = CPB_OK;
        snprintf(what, sizeof what, "reading the notes of order %s", it->id);
        json_t *doc = json_answer(s, what, st[j], &resps[j], &it->why, &verdict);
        s->host->http_free(&resps[j]);
        if (doc == NULL) {
            finish(it, verdict, NULL, NULL);
            continue;
        }
        bool found = false;
        size_t i;
        json_t *n;
        json_array_foreach(doc, i, n)
        {
            const char *t = json_string_value(json_object_get(n, "note"));
            found = found || (t != NULL && names_ticket(t, it->tkt) &&
                              (!it->removed || strstr(t, REMOVED_NOTE) != NULL));
        }
        json_decref(doc);
        if (found) {
            s->host->log(s->ctx, CPB_LOG_DEBUG, "order %s already has the note", it->id);
            finish(it, CPB_OK, NULL, NULL);
        } else {
            v[left++] = it;
        }
    }
    return left;
}

/* Add the note to each order of v, connections at a time. A POST is tried
 * again within the run only when the store refused it unseen (429, 503, no
 * connection): one that timed out may have made the note, so the order's
 * next attempt reads its notes first. */
static void add_notes(struct sync_status *s, struct item **v, size_t k)
{
    struct cpb_http_response *resps = calloc(k, sizeof *resps);
    enum cpb_status *st = calloc(k, sizeof *st);
    char **bodies = calloc(k, sizeof *bodies);
    struct reason oom = {"sync.oom", "out of memory"};
    if (resps == NULL || st == NULL || bodies == NULL) {
        finish_all(v, k, CPB_RETRY, &oom);
        goto out;
    }
    size_t check = 0;
    for (size_t j = 0; j < k; j++) {
        check += v[j]->rec->attempt > 1;
    }
    if (check > 0) {
        /* Those that may be noted first, so the rest go out in one set. */
        size_t first = 0;
        for (size_t j = 0; j < k; j++) {
            if (v[j]->rec->attempt > 1) {
                struct item *t = v[first];
                v[first++] = v[j];
                v[j] = t;
            }
        }
        size_t left = already_noted(s, v, check, resps, st);
        for (size_t j = check; j < k; j++) {
            v[left++] = v[j];
        }
        k = left;
    }
    for (size_t j = 0; j < k; j++) {
        json_t *b = json_pack("{s:s, s:b}", "note", v[j]->note, "customer_note", 0);
        bodies[j] = b != NULL ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        if (bodies[j] == NULL) {
            finish_all(v, k, CPB_RETRY, &oom);
            goto out;
        }
    }
    notes_many(s, "POST", v, k, (const char *const *)bodies, resps, st);
    for (size_t j = 0; j < k; j++) {
        struct item *it = v[j];
        char what[80];
        enum cpb_status verdict = CPB_OK;
        snprintf(what, sizeof what, "adding the note to order %s", it->id);
        json_t *doc = json_answer(s, what, st[j], &resps[j], &it->why, &verdict);
        s->host->http_free(&resps[j]);
        if (doc == NULL) {
            finish(it, verdict, NULL, NULL);
            continue;
        }
        json_decref(doc);
        s->host->log(s->ctx, CPB_LOG_INFO, "order %s: note added (ticket %s)", it->id, it->tkt);
        finish(it, CPB_OK, NULL, NULL);
    }
out:
    for (size_t j = 0; bodies != NULL && j < k; j++) {
        free(bodies[j]);
    }
    free(bodies);
    free(resps);
    free(st);
}

/* The parts of a dry run's log line that name the note, if any. */
static const char *want_note_text(const struct item *it, int part)
{
    if (!it->want_note) {
        return "";
    }
    return part == 0 ? " and add the note \"" : part == 1 ? it->note : "\"";
}

/* An order the engine rolled back because the store cancelled it
 * (result.rolled_back, ABI 1.4): its status is left as the store set it,
 * and one note says that the Counterpoint document is gone. */
static void prepare_removal(struct sync_status *s, struct item *it, json_t *gone)
{
    const char *why = json_string_value(json_object_get(gone, "reason"));
    json_t *doc = json_object_get(gone, "cp_doc_id");
    char reason[120];
    woo_clean_text(why != NULL ? why : "", why != NULL ? strlen(why) : 0, reason, sizeof reason);
    it->removed = true;
    it->status_done = true;
    if (it->tkt[0] == '\0') {
        finish(it, CPB_SKIP, NULL, NULL); /* no ticket to name: nothing to say */
        return;
    }
    snprintf(it->note, sizeof it->note,
             REMOVED_NOTE ": ticket %s (document %lld) was deleted by cpbridge and its"
                          " inventory released (%s).",
             it->tkt, json_is_integer(doc) ? (long long)json_integer_value(doc) : 0LL,
             reason[0] != '\0' ? reason : "the store cancelled the order");
    it->want_note = true;
    if (s->o->dry_run) {
        s->host->log(s->ctx, CPB_LOG_INFO, "dry run: would add the note \"%s\" to order %s",
                     it->note, it->id);
        finish(it, CPB_OK, NULL, NULL);
    }
}

/* What to do for one record, before the store is asked: finished when it is
 * another store's order, a bad id or a dry run. */
static void prepare_item(struct sync_status *s, struct item *it, const struct cpb_record *rec)
{
    const char *id = rec->external_id;
    memset(it, 0, sizeof *it);
    it->rec = rec;
    it->id = id;
    if (s->o->source != NULL && (rec->source == NULL || strcmp(rec->source, s->o->source) != 0)) {
        finish(it, CPB_SKIP, NULL, NULL); /* another store's order */
        return;
    }
    if (!id_ok(id)) {
        char shown[48];
        woo_clean_text(id != NULL ? id : "", id != NULL ? strlen(id) : 0, shown, sizeof shown);
        finish(it, CPB_FAIL, "sync.bad_id",
               "order id \"%s\" is not a WooCommerce order id (a positive integer); is this order "
               "from a WooCommerce source? set `source` to limit sync-status to one",
               shown);
        return;
    }
    const char *t = json_string_value(json_object_get(rec->result, "cp_tkt_no"));
    json_t *doc_id = json_object_get(rec->result, "cp_doc_id");
    json_t *gone = json_object_get(rec->result, "rolled_back");
    if (t != NULL) {
        woo_clean_text(t, strlen(t), it->tkt, sizeof it->tkt);
    }
    if (json_is_object(gone)) {
        prepare_removal(s, it, gone);
        return;
    }
    if (it->tkt[0] != '\0' && json_is_integer(doc_id)) {
        snprintf(it->note, sizeof it->note,
                 "Imported into Counterpoint as ticket %s (document %lld) by cpbridge.", it->tkt,
                 (long long)json_integer_value(doc_id));
    } else {
        snprintf(it->note, sizeof it->note, "Imported into Counterpoint as ticket %s by cpbridge.",
                 it->tkt);
    }
    it->want_note = s->o->note && it->tkt[0] != '\0';
    if (s->o->note && it->tkt[0] == '\0') {
        s->host->log(s->ctx, CPB_LOG_WARN, "order %s has no Counterpoint ticket number: no note",
                     id);
    }
    if (s->o->dry_run) {
        s->host->log(s->ctx, CPB_LOG_INFO,
                     "dry run: would set order %s to '%s' (POST /orders/batch "
                     "{\"update\":[{\"id\":%s,\"status\":\"%s\"}]})%s%s%s",
                     id, s->o->status, id, s->o->status, want_note_text(it, 0),
                     want_note_text(it, 1), want_note_text(it, 2));
        finish(it, CPB_OK, NULL, NULL);
    }
}

/*
 * The orders' write-back, SYNC_CHUNK at a time: one status read and one
 * batch update per chunk, then the notes, `connections` at once. Per order
 * that is 1 + 2/SYNC_CHUNK requests on a first attempt; the notes are read
 * first only on a later attempt. Each item ends with its own outcome.
 */
static void sync_items(struct sync_status *s, struct item *items, size_t n)
{
    struct item **v = calloc(n > 0 ? n : 1, sizeof *v);
    if (v == NULL) {
        struct reason oom = {"sync.oom", "out of memory"};
        for (size_t i = 0; i < n; i++) {
            if (!items[i].finished) {
                finish(&items[i], CPB_RETRY, oom.code, "%s", oom.msg);
            }
        }
        return;
    }
    for (size_t at = 0; at < n;) {
        size_t k = 0;
        for (; at < n && k < SYNC_CHUNK; at++) {
            if (!items[at].finished && !items[at].removed) {
                v[k++] = &items[at];
            }
        }
        size_t to_set = read_statuses(s, v, k);
        if (to_set > 0 && s->batch) {
            batch_update(s, v, to_set);
        }
        for (size_t j = 0; j < to_set && !s->batch; j++) {
            put_status(s, v[j]);
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct item *it = &items[i];
        if (it->finished) {
            continue;
        }
        if (!it->status_done) {
            finish(it, CPB_RETRY, "sync.lost", "order %s: the status was not confirmed", it->id);
        } else if (!it->want_note) {
            finish(it, CPB_OK, NULL, NULL);
        } else {
            v[k++] = it;
        }
    }
    if (k > 0) {
        add_notes(s, v, k);
    }
    free(v);
}

static enum cpb_status sync_status_process(void *state, struct cpb_record *rec)
{
    struct sync_status *s = state;
    struct item it;
    prepare_item(s, &it, rec);
    if (!it.finished) {
        sync_items(s, &it, 1);
    }
    if (it.why.code[0] != '\0') {
        s->host->reason(s->ctx, it.why.code, "%s", it.why.msg);
    }
    return it.st;
}

static void sync_status_process_batch(void *state, struct cpb_record *const *recs, size_t n,
                                      enum cpb_status *out)
{
    struct sync_status *s = state;
    struct item *items = calloc(n > 0 ? n : 1, sizeof *items);
    if (items == NULL) {
        for (size_t i = 0; i < n; i++) {
            out[i] = CPB_RETRY;
            s->host->reason_at(s->ctx, i, "sync.oom", "out of memory");
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        prepare_item(s, &items[i], recs[i]);
    }
    sync_items(s, items, n);
    for (size_t i = 0; i < n; i++) {
        out[i] = items[i].st;
        if (items[i].why.code[0] != '\0') {
            s->host->reason_at(s->ctx, i, items[i].why.code, "%s", items[i].why.msg);
        }
    }
    free(items);
}

const struct cpb_stage sync_status_stage = {
    CPB_STAGE_HEADER,
    .name = "sync-status",
    .version = "1.1.0",
    .summary = "Write an applied order's status and a note back to its WooCommerce store",
    .kind = CPB_AFTER_COMMIT,
    .options = sync_status_options,
    .options_size = sizeof(struct sync_status_opts),
    .init = sync_status_init,
    .process = sync_status_process,
    .fini = stage_state_free, /* the state owns nothing else */
    .process_batch = sync_status_process_batch,
};

CPB_STAGE_ENTRY(sync_status_stage);
