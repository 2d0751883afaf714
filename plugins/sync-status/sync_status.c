/*
 * sync-status — an after-commit stage that writes an applied order back to
 * its WooCommerce store: the order's status (default "completed") and an
 * order note naming the Counterpoint ticket and document.
 *
 * Traps it avoids (woocommerce-api.md §6, §12): the status is checked at
 * init against the store's statuses (the batch endpoint silently turns an
 * unknown one into "pending"), so only the single PUT /orders/{id} is used,
 * with Content-Type: application/json (without it the store answers 200
 * and changes nothing: the answer's status is checked) and never an "id" in
 * the body (it would override the URL's). It is idempotent across retries:
 * the order's current status is read first and the PUT skipped when it is
 * already the target, and the note is added only when no note names the
 * ticket yet, so a crash between the two calls adds no second note. A
 * status the order should not leave (cancelled, refunded, ...) is never
 * overwritten: see from_statuses.
 */
#include <cpbridge/stage.h>

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

/* Record a failed exchange as this call's reason; returns the verdict. */
static enum cpb_status failed(struct sync_status *s, const char *what, enum cpb_status st,
                              const struct cpb_http_response *resp)
{
    char msg[900];
    char code[48];
    enum cpb_status verdict;
    enum woo_failure kind = woo_describe(&s->client, what, st, resp, msg, sizeof msg, &verdict);
    snprintf(code, sizeof code, "sync.%s", woo_failure_name(kind));
    s->host->reason(s->ctx, code, "%s", msg);
    return verdict;
}

/*
 * One exchange whose answer must be JSON: *doc receives the parsed body
 * (new reference) on CPB_OK; otherwise the reason is set.
 */
static enum cpb_status call_json(struct sync_status *s, const char *what, const char *method,
                                 const char *route, const struct woo_param *q, size_t nq,
                                 const char *body, unsigned tries, long *status, json_t **doc)
{
    struct cpb_http_response resp;
    char msg[300];
    *doc = NULL;
    enum cpb_status rc = woo_request(&s->client, method, route, q, nq, body, tries, &resp);
    *status = resp.status;
    if (rc != CPB_OK || !woo_is_json(&resp)) {
        rc = failed(s, what, rc, &resp);
        goto out;
    }
    *doc = woo_json_body(&resp, msg, sizeof msg);
    if (*doc == NULL) {
        s->host->reason(s->ctx, "sync.bad_json", "%s: HTTP %ld, the body is %s", what, resp.status,
                        msg);
        rc = CPB_RETRY;
    }
out:
    s->host->http_free(&resp);
    return rc;
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

/* Make the order's status the target one (skipped when it already is). */
static enum cpb_status sync_state(struct sync_status *s, const char *id, const char *route)
{
    char what[120];
    json_t *doc = NULL;
    json_t *body = NULL;
    char *text = NULL;
    long status = 0;
    const char *target = s->o->status;
    const struct woo_param fields[] = {{"_fields", "id,status"}};

    snprintf(what, sizeof what, "reading order %s", id);
    enum cpb_status rc =
        call_json(s, what, "GET", route, fields, 1, NULL, s->client.max_tries, &status, &doc);
    if (rc != CPB_OK) {
        goto out;
    }
    const char *current = json_string_value(json_object_get(doc, "status"));
    if (current == NULL) {
        s->host->reason(s->ctx, "sync.bad_json", "%s: HTTP %ld, the answer has no order status",
                        what, status);
        rc = CPB_FAIL;
        goto out;
    }
    char shown[48];
    woo_clean_text(current, strlen(current), shown, sizeof shown);
    if (strcmp(current, target) == 0) {
        s->host->log(s->ctx, CPB_LOG_DEBUG, "order %s is already '%s'", id, target);
        rc = CPB_OK;
        goto out;
    }
    if (!listed(s->o->from_statuses, current)) {
        s->host->reason(s->ctx, "sync.status_conflict",
                        "order %s is '%s' in the store, which is not one of from_statuses: it was "
                        "not changed to '%s' (change it by hand if it should be)",
                        id, shown, target);
        rc = CPB_FAIL;
        goto out;
    }
    json_decref(doc);
    doc = NULL;
    body = json_pack("{s:s}", "status", target);
    text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text == NULL) {
        s->host->reason(s->ctx, "sync.oom", "out of memory");
        rc = CPB_RETRY;
        goto out;
    }
    snprintf(what, sizeof what, "setting order %s to '%s'", id, target);
    rc = call_json(s, what, "PUT", route, NULL, 0, text, s->client.max_tries, &status, &doc);
    if (rc != CPB_OK) {
        goto out;
    }
    const char *now = json_string_value(json_object_get(doc, "status"));
    if (now == NULL || strcmp(now, target) != 0) {
        woo_clean_text(now != NULL ? now : "(none)", strlen(now != NULL ? now : "(none)"), shown,
                       sizeof shown);
        s->host->reason(s->ctx, "sync.not_applied",
                        "%s: the store answered HTTP %ld but the order is '%s', not '%s' (a "
                        "plugin or proxy may have changed the request or its Content-Type)",
                        what, status, shown, target);
        rc = CPB_FAIL;
        goto out;
    }
    s->host->log(s->ctx, CPB_LOG_INFO, "order %s set to '%s'", id, target);
out:
    free(text);
    json_decref(body);
    json_decref(doc);
    return rc;
}

/* Add the note unless a note already names the ticket. */
static enum cpb_status sync_note(struct sync_status *s, const char *id, const char *route,
                                 const char *note, const char *tkt)
{
    char what[120];
    char notes_route[80];
    json_t *doc = NULL;
    json_t *body = NULL;
    char *text = NULL;
    long status = 0;

    snprintf(notes_route, sizeof notes_route, "%s/notes", route);
    snprintf(what, sizeof what, "reading the notes of order %s", id);
    enum cpb_status rc =
        call_json(s, what, "GET", notes_route, NULL, 0, NULL, s->client.max_tries, &status, &doc);
    if (rc != CPB_OK) {
        goto out;
    }
    size_t i;
    json_t *n;
    json_array_foreach(doc, i, n)
    {
        const char *t = json_string_value(json_object_get(n, "note"));
        if (t != NULL && names_ticket(t, tkt)) {
            s->host->log(s->ctx, CPB_LOG_DEBUG, "order %s already has the note", id);
            rc = CPB_OK;
            goto out;
        }
    }
    json_decref(doc);
    doc = NULL;
    body = json_pack("{s:s, s:b}", "note", note, "customer_note", 0);
    text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text == NULL) {
        s->host->reason(s->ctx, "sync.oom", "out of memory");
        rc = CPB_RETRY;
        goto out;
    }
    /* One try: a POST that timed out may have created the note, so the
     * next attempt looks at the notes again before it posts. */
    snprintf(what, sizeof what, "adding the note to order %s", id);
    rc = call_json(s, what, "POST", notes_route, NULL, 0, text, 1, &status, &doc);
    if (rc != CPB_OK) {
        goto out;
    }
    s->host->log(s->ctx, CPB_LOG_INFO, "order %s: note added (ticket %s)", id, tkt);
out:
    free(text);
    json_decref(body);
    json_decref(doc);
    return rc;
}

static enum cpb_status sync_status_process(void *state, struct cpb_record *rec)
{
    struct sync_status *s = state;
    const char *id = rec->external_id;
    char route[64];
    char note[300];
    char tkt[48] = "";

    if (s->o->source != NULL && (rec->source == NULL || strcmp(rec->source, s->o->source) != 0)) {
        return CPB_SKIP; /* another store's order */
    }
    if (!id_ok(id)) {
        char shown[48];
        woo_clean_text(id != NULL ? id : "", id != NULL ? strlen(id) : 0, shown, sizeof shown);
        s->host->reason(s->ctx, "sync.bad_id",
                        "order id \"%s\" is not a WooCommerce order id (a positive integer); is "
                        "this order from a WooCommerce source? set `source` to limit sync-status "
                        "to one",
                        shown);
        return CPB_FAIL;
    }
    const char *t = json_string_value(json_object_get(rec->result, "cp_tkt_no"));
    json_t *doc_id = json_object_get(rec->result, "cp_doc_id");
    if (t != NULL) {
        woo_clean_text(t, strlen(t), tkt, sizeof tkt);
    }
    if (tkt[0] != '\0' && json_is_integer(doc_id)) {
        snprintf(note, sizeof note,
                 "Imported into Counterpoint as ticket %s (document %lld) by "
                 "cpbridge.",
                 tkt, (long long)json_integer_value(doc_id));
    } else {
        snprintf(note, sizeof note, "Imported into Counterpoint as ticket %s by cpbridge.", tkt);
    }
    bool want_note = s->o->note && tkt[0] != '\0';
    if (s->o->note && tkt[0] == '\0') {
        s->host->log(s->ctx, CPB_LOG_WARN, "order %s has no Counterpoint ticket number: no note",
                     id);
    }
    snprintf(route, sizeof route, "/orders/%s", id);
    if (s->o->dry_run) {
        s->host->log(s->ctx, CPB_LOG_INFO,
                     "dry run: would set order %s to '%s' (PUT %s {\"status\":\"%s\"})%s%s%s", id,
                     s->o->status, route, s->o->status, want_note ? " and add the note \"" : "",
                     want_note ? note : "", want_note ? "\"" : "");
        return CPB_OK;
    }
    enum cpb_status rc = sync_state(s, id, route);
    if (rc != CPB_OK || !want_note) {
        return rc;
    }
    return sync_note(s, id, route, note, tkt);
}

const struct cpb_stage sync_status_stage = {
    CPB_STAGE_HEADER,
    .name = "sync-status",
    .version = "1.0.0",
    .summary = "Write an applied order's status and a note back to its WooCommerce store",
    .kind = CPB_AFTER_COMMIT,
    .options = sync_status_options,
    .options_size = sizeof(struct sync_status_opts),
    .init = sync_status_init,
    .process = sync_status_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(sync_status_stage);
