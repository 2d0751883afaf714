/*
 * cmd_health.c — `cpbridge health`: the business health of a pipeline as a
 * Nagios/Icinga plugin (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), each
 * figure from metrics_snapshot against the pipeline's `health` thresholds.
 *
 * Every text read from the database is untrusted: it is printed through
 * ops_clean (control bytes and invalid UTF-8 escaped, cut to a fixed size).
 * Every value goes into SQL as a bound parameter.
 */
#include "cli/ops_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/metrics.h"
#include "engine/schema.h"
#include "engine/serve.h"
#include "engine/staging.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/http.h"
#include "services/sql.h"

static const char usage_health[] =
    "usage: cpbridge health PIPELINE [--json]\n"
    "\n"
    "Business health of the pipeline, as a Nagios/Icinga plugin: database\n"
    "reachable, pending orders (and how many are due), invalid and dead orders,\n"
    "the oldest pending order's age, the time since the last successful run and\n"
    "the last run's result, each against the pipeline's `health` thresholds; and,\n"
    "when `cpbridge serve` runs for it, the receiver: CRITICAL when it stopped\n"
    "answering, WARNING when it was stopped (orders then arrive only by the poll);\n"
    "and the last `cpbridge drift`: WARNING while differences it found are left;\n"
    "and records that are not orders (a stock pipeline), pending and dead, against\n"
    "the same thresholds as orders.\n"
    "The first line is the plugin output (with performance data), details follow.\n"
    "\n"
    "  --json   print every figure and the status as JSON\n"
    "\n"
    "Exit: 0 OK, 1 WARNING, 2 CRITICAL (also: database unreachable), 3 UNKNOWN\n"
    "(pipeline file unreadable, schema missing, no run yet); 64 usage.\n";

enum nagios { NAG_OK = 0, NAG_WARNING = 1, NAG_CRITICAL = 2, NAG_UNKNOWN = 3 };
static const char *const nag_names[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

/* CRITICAL > WARNING > UNKNOWN > OK. */
static int nag_worse(int a, int b)
{
    static const int rank[] = {0, 2, 3, 1};
    return rank[b] > rank[a] ? b : a;
}

/* A value against warn/crit thresholds (0: that threshold is off). */
static int against(int64_t v, int64_t warn, int64_t crit)
{
    if (crit > 0 && v >= crit) {
        return NAG_CRITICAL;
    }
    if (warn > 0 && v >= warn) {
        return NAG_WARNING;
    }
    return NAG_OK;
}

/* " (>= warn 50)" after a figure that is not OK. */
static void mark(struct buf *b, int state, const char *warn, const char *crit)
{
    if (state == NAG_WARNING) {
        buf_addf(b, " (>= warn %s)", warn);
    } else if (state == NAG_CRITICAL) {
        buf_addf(b, " (>= crit %s)", crit);
    }
}

/* Output of a health check that stopped early: one plugin line. */
static int health_early(const struct ops *op, int state, const char *what, const char *msg)
{
    char m[1100];
    ops_clean(msg, m, sizeof m);
    if ((op->o.given & OPT_JSON) != 0) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:s}", "status", nag_names[state], "code", state,
                              "problem", what, "message", m);
        if (j != NULL && op->cfg != NULL) {
            json_object_set_new(j, "pipeline", ops_jtext(op->cfg->name, false));
        }
        if (j != NULL) {
            json_object_set_new(j, "database_reachable",
                                state == NAG_CRITICAL ? json_false() : json_null());
        }
        ops_print_json(j);
        json_decref(j);
    } else {
        printf("CPBRIDGE %s - %s: %s\n", nag_names[state], what, m);
    }
    return state;
}

struct check {
    const char *name;
    int64_t value;
    bool known;
    int64_t warn, crit;
    const char *unit; /* "" or "s" */
    int state;
};

/* ", <prefix><value><suffix>" for a count check, marked with the threshold
 * it reached. `prefix` and `suffix` are borrowed. */
static void mark_count(struct buf *b, const char *prefix, const struct check *k,
                       const char *suffix)
{
    char w[32];
    char c[32];
    buf_addf(b, "%s%lld%s", prefix, (long long)k->value, suffix);
    snprintf(w, sizeof w, "%lld", (long long)k->warn);
    snprintf(c, sizeof c, "%lld", (long long)k->crit);
    mark(b, k->state, w, c);
}

static void perf(struct buf *b, const struct check *c, bool thresholds)
{
    buf_addf(b, " %s=", c->name);
    if (c->known) {
        buf_addf(b, "%lld%s", (long long)c->value, c->unit);
    } else {
        buf_adds(b, "U");
    }
    if (thresholds) {
        buf_adds(b, ";");
        if (c->warn > 0) {
            buf_addf(b, "%lld", (long long)c->warn);
        }
        buf_adds(b, ";");
        if (c->crit > 0) {
            buf_addf(b, "%lld", (long long)c->crit);
        }
    }
}

static json_t *check_json(const struct check *c)
{
    return json_pack("{s:s, s:o, s:o, s:o, s:s}", "name", c->name, "value",
                     c->known ? json_integer((json_int_t)c->value) : json_null(), "warn",
                     c->warn > 0 ? json_integer((json_int_t)c->warn) : json_null(), "crit",
                     c->crit > 0 ? json_integer((json_int_t)c->crit) : json_null(), "status",
                     nag_names[c->state]);
}

/* What `cpbridge serve` recorded for this pipeline, if it ever ran. */
struct receiver {
    bool known;
    bool stopped;
    bool answering;
    int64_t heartbeat_ms, last_delivery_ms;
    int64_t deliveries, bad_signatures;
    double per_minute;
    char url[160];
    int state;
    char why[200];
};

/* A heartbeat older than this: the receiver is not running. */
#define RECEIVER_STALE_MS (90 * 1000)

static void receiver_check(struct ops *op, int64_t now, struct receiver *rv)
{
    char key[200];
    const char *value = NULL;
    char *text = NULL;
    json_t *j = NULL;
    memset(rv, 0, sizeof *rv);
    serve_state_key(op->cfg->name, key, sizeof key);
    if (staging_state_get(op->db, key, &text) != CPB_OK || text == NULL) {
        return;
    }
    value = text;
    j = json_loads(value, 0, NULL);
    if (!json_is_object(j)) {
        goto out;
    }
    rv->known = true;
    rv->stopped = json_is_true(json_object_get(j, "stopped"));
    rv->heartbeat_ms = json_integer_value(json_object_get(j, "heartbeat"));
    rv->last_delivery_ms = json_integer_value(json_object_get(j, "last_delivery"));
    rv->deliveries = json_integer_value(json_object_get(j, "deliveries"));
    rv->bad_signatures = json_integer_value(json_object_get(j, "bad_signatures"));
    rv->per_minute = json_number_value(json_object_get(j, "per_minute"));
    const char *listen = op->cfg->serve.listen;
    /* A server on every address answers on the loopback of its family. */
    bool v6 = strchr(listen, ':') != NULL;
    const char *host = strcmp(listen, "0.0.0.0") == 0 ? "127.0.0.1"
                       : strcmp(listen, "::") == 0    ? "::1"
                                                      : listen;
    snprintf(rv->url, sizeof rv->url, "%s://%s%s%s:%lld/health",
             op->cfg->serve.tls_cert != NULL ? "https" : "http", v6 ? "[" : "", host,
             v6 ? "]" : "", (long long)json_integer_value(json_object_get(j, "port")));
    if (rv->stopped) {
        rv->state = NAG_WARNING;
        snprintf(rv->why, sizeof rv->why, "stopped; orders arrive only by the scheduled run");
        goto out;
    }
    if (now - rv->heartbeat_ms > RECEIVER_STALE_MS) {
        rv->state = NAG_CRITICAL;
        snprintf(rv->why, sizeof rv->why, "no heartbeat for %lld s: not running",
                 (long long)((now - rv->heartbeat_ms) / 1000));
        goto out;
    }
    /* It says it runs: does it answer? (its own certificate: not checked) */
    struct http_client *c = http_client_new("health");
    struct cpb_http_request rq = {.size = sizeof rq,
                                  .method = "GET",
                                  .url = rv->url,
                                  .timeout_ms = 5000,
                                  .connect_timeout_ms = 3000,
                                  .max_tries = 1,
                                  .tls_no_verify = op->cfg->serve.tls_cert != NULL};
    struct cpb_http_response resp;
    memset(&resp, 0, sizeof resp);
    rv->answering = c != NULL && http_perform(c, &rq, &resp) == CPB_OK && resp.status == 200;
    if (!rv->answering) {
        rv->state = NAG_CRITICAL;
        snprintf(rv->why, sizeof rv->why, "not answering on %s (%s)", rv->url,
                 resp.status > 0 ? "an error status" : "no connection");
    }
    http_response_free(&resp);
    http_client_free(c);
out:
    json_decref(j);
    free(text);
}

/* The last `cpbridge drift` of the pipeline: WARNING while differences it
 * found are left; nothing when it never ran. */
struct drift_seen {
    bool known;
    int64_t checked_ms, found, left;
    int state;
};

static void drift_check(struct ops *op, struct drift_seen *d)
{
    char key[200];
    char *text = NULL;
    memset(d, 0, sizeof *d);
    ops_drift_state_key(op->cfg->name, key, sizeof key);
    if (staging_state_get(op->db, key, &text) != CPB_OK || text == NULL) {
        return;
    }
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    d->known = true;
    d->checked_ms = json_integer_value(json_object_get(j, "checked"));
    d->found = json_integer_value(json_object_get(j, "found"));
    d->left = json_integer_value(json_object_get(j, "left"));
    d->state = d->left > 0 ? NAG_WARNING : NAG_OK;
    json_decref(j);
}

static int cmd_health(struct ops *op)
{
    struct err e = {0};
    bool schema_old = false;
    struct metrics_snapshot s;
    struct buf line = BUF_INIT;
    struct buf perfdata = BUF_INIT;
    char a[64];
    char w[64];
    char c[64];
    int state = NAG_OK;

    if (op->o.nargs != 1) {
        return ops_usage_error(op->v, "give exactly one pipeline file");
    }
    op->path = op->o.args[0];
    if (ops_connect(op, &schema_old, &e) != 0) {
        if (op->cfg == NULL) {
            return health_early(op, NAG_UNKNOWN, "cannot read the pipeline file", e.msg);
        }
        if (op->db == NULL) {
            if (e.code == CPB_EXIT_UNAVAILABLE) {
                return health_early(op, NAG_CRITICAL, "database unreachable", e.msg);
            }
            return health_early(op, NAG_UNKNOWN, "pipeline file", e.msg);
        }
        if (schema_old) {
            return health_early(op, NAG_UNKNOWN, "schema not ready", e.msg);
        }
        return health_early(op, NAG_CRITICAL, "database failing", e.msg);
    }
    if (metrics_snapshot(op->db, op->cfg->name, op->now, &s, &e) != 0) {
        return health_early(op, NAG_CRITICAL, "database failing", e.msg);
    }

    const struct config_health *h = &op->cfg->health;
    struct check pending = {"pending", s.by_state[0], true, h->pending_warn, h->pending_crit,
                            "",        NAG_OK};
    struct check due = {"due", s.pending_due, true, 0, 0, "", NAG_OK};
    struct check invalid = {"invalid", s.by_state[2], true, h->invalid_warn, h->invalid_crit,
                            "",        NAG_OK};
    struct check dead = {"dead", s.by_state[3], true, h->dead_warn, h->dead_crit, "", NAG_OK};
    struct check oldest = {"oldest_pending",
                           s.has_pending && s.now_ms > s.oldest_pending_ms
                               ? (s.now_ms - s.oldest_pending_ms) / 1000
                               : 0,
                           true,
                           h->oldest_pending_warn_ms / 1000,
                           h->oldest_pending_crit_ms / 1000,
                           "s",
                           NAG_OK};
    struct check success = {
        "last_success",
        s.has_success && s.now_ms > s.last_success_ms ? (s.now_ms - s.last_success_ms) / 1000 : 0,
        s.has_success,
        h->last_success_warn_ms / 1000,
        h->last_success_crit_ms / 1000,
        "s",
        NAG_OK};
    struct check after_failed = {"after_failed", s.after_gave_up, true, 0, 0, "", NAG_OK};
    struct check changed = {"changed", s.changed_after_apply, true, 0, 0, "", NAG_OK};
    /* Records that are not orders (a stock pipeline's), judged with the
     * orders' pending and dead thresholds. */
    const struct record_counts *rc = &s.records;
    bool has_records = rc->pending + rc->done + rc->dead > 0;
    struct check rec_pending = {"records_pending", rc->pending, true,  h->pending_warn,
                                h->pending_crit,   "",          NAG_OK};
    struct check rec_dead = {"records_dead", rc->dead, true,  h->dead_warn,
                             h->dead_crit,   "",       NAG_OK};
    rec_pending.state = against(rec_pending.value, rec_pending.warn, rec_pending.crit);
    rec_dead.state = against(rec_dead.value, rec_dead.warn, rec_dead.crit);

    pending.state = against(pending.value, pending.warn, pending.crit);
    invalid.state = against(invalid.value, invalid.warn, invalid.crit);
    dead.state = against(dead.value, dead.warn, dead.crit);
    oldest.state = against(oldest.value, oldest.warn, oldest.crit);
    const char *no_success = NULL;
    if (s.has_success) {
        success.state = against(success.value, success.warn, success.crit);
    } else if (s.total == 0 && !has_records) {
        success.state = NAG_UNKNOWN;
        no_success = s.has_run ? "no successful run yet, nothing staged" : "no run yet";
    } else if (s.has_run && strcmp(s.last_result, "RUNNING") == 0 &&
               s.now_ms - s.last_run_started_ms < h->last_success_warn_ms) {
        success.state = NAG_UNKNOWN;
        no_success = "first run in progress";
    } else {
        success.state = NAG_CRITICAL;
        no_success = "orders staged but no run has succeeded yet";
    }
    bool last_failed = s.has_run && strcmp(s.last_result, "FAILED") == 0;
    int last_state = last_failed ? NAG_WARNING : NAG_OK;

    state = nag_worse(state, pending.state);
    state = nag_worse(state, invalid.state);
    state = nag_worse(state, dead.state);
    state = nag_worse(state, oldest.state);
    state = nag_worse(state, success.state);
    state = nag_worse(state, last_state);
    if (has_records) {
        state = nag_worse(state, rec_pending.state);
        state = nag_worse(state, rec_dead.state);
    }
    struct receiver rv;
    receiver_check(op, s.now_ms, &rv);
    if (rv.known) {
        state = nag_worse(state, rv.state);
    }
    struct drift_seen dr;
    drift_check(op, &dr);
    if (dr.known) {
        state = nag_worse(state, dr.state);
    }

    /* The plugin line. */
    buf_addf(&line, "CPBRIDGE %s", nag_names[state]);
    mark_count(&line, " - ", &pending, " pending");
    mark_count(&line, ", ", &dead, " dead");
    mark_count(&line, ", ", &invalid, " invalid");
    if (oldest.state != NAG_OK) {
        buf_addf(&line, ", oldest pending %s", ops_fmt_age(oldest.value * 1000, a, sizeof a));
        text_format_duration(h->oldest_pending_warn_ms, w, sizeof w);
        text_format_duration(h->oldest_pending_crit_ms, c, sizeof c);
        mark(&line, oldest.state, w, c);
    }
    if (s.has_success) {
        buf_addf(&line, ", last success %s ago", ops_fmt_age(success.value * 1000, a, sizeof a));
        text_format_duration(h->last_success_warn_ms, w, sizeof w);
        text_format_duration(h->last_success_crit_ms, c, sizeof c);
        mark(&line, success.state, w, c);
    } else {
        buf_addf(&line, ", %s", no_success);
    }
    if (last_failed) {
        buf_adds(&line, ", last run FAILED");
    }
    if (has_records) {
        mark_count(&line, ", records ", &rec_pending, " pending");
        mark_count(&line, ", ", &rec_dead, " dead");
    }
    if (rv.known) {
        if (rv.state != NAG_OK) {
            buf_addf(&line, ", receiver %s", rv.why);
        } else if (rv.last_delivery_ms > 0) {
            buf_addf(&line, ", receiver up, last delivery %s ago",
                     ops_fmt_age(s.now_ms - rv.last_delivery_ms, a, sizeof a));
        } else {
            buf_adds(&line, ", receiver up, no delivery yet");
        }
    }
    if (dr.known && dr.left > 0) {
        buf_addf(&line, ", inventory drift: %lld difference%s (checked %s ago)", (long long)dr.left,
                 dr.left == 1 ? "" : "s", ops_fmt_age(s.now_ms - dr.checked_ms, a, sizeof a));
    }
    perf(&perfdata, &pending, true);
    perf(&perfdata, &due, false);
    perf(&perfdata, &invalid, true);
    perf(&perfdata, &dead, true);
    perf(&perfdata, &oldest, true);
    perf(&perfdata, &success, true);
    perf(&perfdata, &after_failed, false);
    perf(&perfdata, &changed, false);
    if (has_records) {
        perf(&perfdata, &rec_pending, true);
        perf(&perfdata, &rec_dead, true);
    }
    if (rv.known) {
        buf_addf(&perfdata, " deliveries=%lldc bad_signatures=%lldc deliveries_per_minute=%.1f",
                 (long long)rv.deliveries, (long long)rv.bad_signatures, rv.per_minute);
    }

    if ((op->o.given & OPT_JSON) != 0) {
        json_t *j = json_object();
        json_t *counts = json_object();
        json_t *checks = json_array();
        for (int i = 0; i < METRICS_N_STATES; i++) {
            json_object_set_new(counts, metrics_states[i], json_integer((json_int_t)s.by_state[i]));
        }
        const struct check *all[] = {&pending, &invalid, &dead, &oldest, &success};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            json_array_append_new(checks, check_json(all[i]));
        }
        json_object_set_new(j, "status", json_string(nag_names[state]));
        json_object_set_new(j, "code", json_integer(state));
        json_object_set_new(j, "summary", json_string(buf_str(&line) + strlen("CPBRIDGE ")));
        json_object_set_new(j, "pipeline", ops_jtext(op->cfg->name, false));
        json_object_set_new(j, "database_reachable", json_true());
        json_object_set_new(j, "dialect", json_string(op->cfg->database.dialect));
        json_object_set_new(j, "time", ops_jwhen(s.now_ms, true));
        json_object_set_new(j, "orders", counts);
        json_object_set_new(j, "total", json_integer((json_int_t)s.total));
        json_object_set_new(j, "pending", json_integer((json_int_t)pending.value));
        json_object_set_new(j, "pending_due", json_integer((json_int_t)s.pending_due));
        json_object_set_new(j, "invalid", json_integer((json_int_t)invalid.value));
        json_object_set_new(j, "dead", json_integer((json_int_t)dead.value));
        json_object_set_new(j, "after_due", json_integer((json_int_t)s.after_due));
        json_object_set_new(j, "after_failed", json_integer((json_int_t)s.after_gave_up));
        json_object_set_new(j, "changed_after_apply",
                            json_integer((json_int_t)s.changed_after_apply));
        json_object_set_new(j, "oldest_pending", ops_jwhen(s.oldest_pending_ms, s.has_pending));
        json_object_set_new(j, "oldest_pending_age_seconds",
                            s.has_pending ? json_integer((json_int_t)oldest.value) : json_null());
        json_object_set_new(j, "last_success", ops_jwhen(s.last_success_ms, s.has_success));
        json_object_set_new(j, "last_success_age_seconds",
                            s.has_success ? json_integer((json_int_t)success.value) : json_null());
        if (s.has_run) {
            json_object_set_new(
                j, "last_run",
                json_pack("{s:o, s:o, s:o, s:o}", "result", ops_jtext(s.last_result, false),
                          "started", ops_jwhen(s.last_run_started_ms, true), "ended",
                          ops_jwhen(s.last_run_ended_ms, s.last_run_ended), "exit_code",
                          s.last_exit_code >= 0 ? json_integer(s.last_exit_code) : json_null()));
        } else {
            json_object_set_new(j, "last_run", json_null());
        }
        if (rv.known) {
            json_object_set_new(
                j, "receiver",
                json_pack("{s:s, s:b, s:o, s:o, s:o, s:I, s:I, s:f, s:s, s:s}", "status",
                          nag_names[rv.state], "stopped", rv.stopped, "answering",
                          rv.stopped ? json_null() : json_boolean(rv.answering), "heartbeat",
                          ops_jwhen(rv.heartbeat_ms, true), "last_delivery",
                          ops_jwhen(rv.last_delivery_ms, rv.last_delivery_ms > 0), "deliveries",
                          (json_int_t)rv.deliveries, "bad_signatures",
                          (json_int_t)rv.bad_signatures, "deliveries_per_minute", rv.per_minute,
                          "url", rv.url, "problem", rv.why));
        } else {
            json_object_set_new(j, "receiver", json_null());
        }
        json_object_set_new(
            j, "drift",
            dr.known ? json_pack("{s:s, s:o, s:I, s:I, s:I}", "status", nag_names[dr.state],
                                 "checked", ops_jwhen(dr.checked_ms, true), "age_seconds",
                                 (json_int_t)((s.now_ms - dr.checked_ms) / 1000), "found",
                                 (json_int_t)dr.found, "left", (json_int_t)dr.left)
                     : json_null());
        if (has_records) {
            json_array_append_new(checks, check_json(&rec_pending));
            json_array_append_new(checks, check_json(&rec_dead));
            json_object_set_new(j, "records",
                                json_pack("{s:I, s:I, s:I}", "pending", (json_int_t)rc->pending,
                                          "done", (json_int_t)rc->done, "dead",
                                          (json_int_t)rc->dead));
        }
        json_object_set_new(j, "checks", checks);
        json_object_set_new(j, "perfdata", json_string(buf_str(&perfdata) + 1));
        ops_print_json(j);
        json_decref(j);
        goto out;
    }

    printf("%s |%s\n", buf_str(&line), buf_str(&perfdata));
    printf("pipeline %s, database reachable (%s)\n", op->cfg->name, op->cfg->database.dialect);
    printf("pending: %lld (%lld due now) - %s\n", (long long)pending.value,
           (long long)s.pending_due, nag_names[pending.state]);
    if (s.has_pending) {
        printf("oldest pending: received %s ago - %s\n",
               ops_fmt_age(oldest.value * 1000, a, sizeof a), nag_names[oldest.state]);
    } else {
        printf("oldest pending: none - OK\n");
    }
    printf("invalid: %lld - %s\n", (long long)invalid.value, nag_names[invalid.state]);
    printf("dead: %lld - %s\n", (long long)dead.value, nag_names[dead.state]);
    printf("after-commit steps given up: %lld; changed in the store after apply: %lld\n",
           (long long)s.after_gave_up, (long long)s.changed_after_apply);
    if (s.has_success) {
        printf("last success: %s (%s ago) - %s\n",
               ops_fmt_when(s.last_success_ms, true, w, sizeof w),
               ops_fmt_age(success.value * 1000, a, sizeof a), nag_names[success.state]);
    } else {
        printf("last success: never (%s) - %s\n", no_success, nag_names[success.state]);
    }
    if (s.has_run) {
        printf("last run: %s, started %s\n", s.last_result,
               ops_fmt_when(s.last_run_started_ms, true, w, sizeof w));
    }
    if (rv.known) {
        printf("receiver (cpbridge serve): %s, %lld deliveries (%.1f a minute lately), %lld bad"
               " signatures, last delivery %s - %s\n",
               rv.state == NAG_OK ? "up" : rv.why, (long long)rv.deliveries, rv.per_minute,
               (long long)rv.bad_signatures,
               rv.last_delivery_ms > 0 ? ops_fmt_when(rv.last_delivery_ms, true, w, sizeof w)
                                       : "none",
               nag_names[rv.state]);
    }
    if (dr.known) {
        printf("inventory drift: last check %s ago, %lld found, %lld left - %s\n",
               ops_fmt_age(s.now_ms - dr.checked_ms, a, sizeof a), (long long)dr.found,
               (long long)dr.left, nag_names[dr.state]);
    } else {
        printf("inventory drift: never checked (`cpbridge drift %s`)\n", op->path);
    }
    if (has_records) {
        printf("records (not orders): %lld pending - %s; %lld done; %lld dead - %s\n",
               (long long)rc->pending, nag_names[rec_pending.state], (long long)rc->done,
               (long long)rc->dead, nag_names[rec_dead.state]);
    }
    if (invalid.value + dead.value > 0) {
        printf("next: cpbridge dlq %s list\n", op->path);
    } else if (has_records && rc->dead > 0) {
        printf("next: cpbridge records %s list --state DEAD (then: records ... retry)\n", op->path);
    }
out:
    buf_free(&line);
    buf_free(&perfdata);
    return state;
}

const struct verb ops_verb_health = {"health", usage_health, OPT_HELP | OPT_JSON, cmd_health};
