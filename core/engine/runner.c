/*
 * runner.c — one run of a pipeline (see runner.h and DESIGN §3).
 *
 * Outcomes, in one place:
 *  - every transactional step OK (or SKIP): the order's document, its
 *    inventory change and the APPLIED mark commit together;
 *  - a step RETRY: roll back; the attempt (counted at claim) is due again
 *    after a backoff with full jitter, or DEAD after max_attempts;
 *  - a step FAIL: roll back; INVALID with the step's reason;
 *  - after-commit steps run after the commit, each at most once
 *    successfully per order (recorded), retried on RETRY with the same
 *    policy, given up (sync.failed) when attempts run out or on FAIL —
 *    never undoing the applied order.
 */
#include "engine/runner.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/alerts.h"
#include "engine/metrics.h"
#include "engine/records.h"
#include "engine/schema.h"
#include "lib/buf.h"
#include "lib/order.h"
#include "lib/retry.h"
#include "lib/text.h"
#include "services/lock.h"
#include "services/log.h"
#include "services/sql.h"

#define MAX_BATCH 1000
/* After-commit stages get the applied orders of claim batches together,
 * until at least this many are queued (a claim batch of more is one call):
 * a batch-capable stage then pays its fixed cost per call (a status read, a
 * batch write) once per 100 orders, not once per claim batch of 50. */
#define AFTER_GATHER 100

struct stage_time {
    unsigned long calls;
    int64_t us;
};

/* An applied order whose after-commit steps run with the rest of its claim
 * batch, so a stage with process_batch handles them in one call. Owns the
 * order and its JSON; the record points into them. */
struct after_item {
    struct staged_order so;
    json_t *raw;
    json_t *norm;
    json_t *result;
    struct cpb_record rec;
    bool stopped;   /* a step did not finish: later steps wait for the retry */
    bool abandoned; /* the database failed: the order stays due, untouched */
    bool removed;   /* rolled back for its store: only takes_rollbacks stages */
    enum after_state state;
    int64_t next;
    char code[64];
    char msg[1200];
};

struct runner {
    struct pipeline *p;
    const struct run_options *o;
    struct run_result *res;
    struct db *db;
    char token[37];
    const char *lease; /* token, or NULL in a dry run */
    char owner[200];
    struct retry_policy policy;
    uint64_t rng;
    json_t *events;           /* name -> event object, in raising order */
    struct stage_time *times; /* parallel to p->st */
    bool attention;
    bool fatal_db;
    bool recover_after_source; /* emit_records failed: reconnect once the
                                  source (which may hold statements) returns */
    unsigned long processed;
    int64_t started_ms;       /* when the run started */
    int64_t due_by;           /* claims take orders due by this time, when claiming
                                 began: an order retried during the run waits for
                                 the next one */
    char alert_file[1100];    /* alert state when the database is down */
    struct after_item *after; /* applied orders waiting for their after-commit
                                 steps: MAX_BATCH at most */
    size_t n_after;
    unsigned long backlog; /* due when claiming began (only with o->progress) */
    int64_t claiming_us;   /* mono_us when claiming began */
    int64_t progress_us;   /* mono_us of the last progress report */
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- events ------------------------------------------------------------ */

static const char *severity_of(const char *name)
{
    if (strcmp(name, "order.dead") == 0 || strcmp(name, "db.unreachable") == 0 ||
        strcmp(name, "run.failed") == 0 || strcmp(name, "scheduler.missed") == 0) {
        return "critical";
    }
    if (strcmp(name, "run.summary") == 0 || strcmp(name, "order.applied") == 0) {
        return "info";
    }
    return "warning";
}

/* The event object for `name`, created on first use (borrowed). */
static json_t *event_obj(struct runner *r, const char *name)
{
    json_t *ev = json_object_get(r->events, name);
    if (ev != NULL) {
        return ev;
    }
    char when[32];
    text_format_time(host_now_ms(), when, sizeof when);
    ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[], s:[]}", "event", name, "severity",
                   severity_of(name), "pipeline", r->p->cfg->name, "run_id", r->res->run_id, "time",
                   when, "orders", "details");
    if (ev == NULL || json_object_set_new(r->events, name, ev) != 0) {
        return NULL;
    }
    return ev;
}

/* Add an order to event `name` (summary filled at the end of the run). */
static void event_order(struct runner *r, const char *name, const struct staged_order *so,
                        const char *code, const char *msg)
{
    json_t *ev = event_obj(r, name);
    if (ev == NULL) {
        return;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cpbridge orders %s show %lld", r->o->pipeline_path,
             (long long)so->id);
    json_array_append_new(json_object_get(ev, "orders"),
                          json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)so->id,
                                    "source", so->source, "external_id", so->ext_id, "reason",
                                    code != NULL ? code : "", "message", msg != NULL ? msg : "",
                                    "command", cmd));
}

/* Add free-form details to event `name`; `details` is borrowed. */
static void event_details(struct runner *r, const char *name, json_t *details)
{
    json_t *ev = event_obj(r, name);
    if (ev != NULL && details != NULL) {
        json_array_append_new(json_object_get(ev, "details"), json_deep_copy(details));
    }
}

static void event_message(struct runner *r, const char *name, const char *stage, const char *code,
                          const char *msg)
{
    json_t *d = json_pack("{s:s?, s:s?, s:s?}", "stage", stage, "reason", code, "message", msg);
    event_details(r, name, d);
    json_decref(d);
}

static void on_stage_event(void *owner, struct cpb_ctx *ctx, const char *name, json_t *details)
{
    struct runner *r = owner;
    json_t *d = json_is_object(details) ? json_deep_copy(details) : json_object();
    if (d != NULL) {
        json_object_set_new(d, "stage", json_string(host_services()->stage_id(ctx)));
        event_details(r, name, d);
        json_decref(d);
    }
}

/* The command a person runs first for each event, and its summary. */
static void finish_event(struct runner *r, const char *name, json_t *ev)
{
    const char *path = r->o->pipeline_path;
    size_t n = json_array_size(json_object_get(ev, "orders"));
    char summary[300];
    char cmd[600];
    if (strcmp(name, "order.invalid") == 0) {
        snprintf(summary, sizeof summary, "%zu order(s) failed validation and are held for review",
                 n);
        snprintf(cmd, sizeof cmd, "cpbridge orders %s list --state INVALID", path);
    } else if (strcmp(name, "order.dead") == 0) {
        snprintf(summary, sizeof summary,
                 "%zu order(s) exhausted their retries and are in the dead-letter queue", n);
        snprintf(cmd, sizeof cmd, "cpbridge dlq %s list", path);
    } else if (strcmp(name, "sync.failed") == 0) {
        snprintf(summary, sizeof summary,
                 "%zu applied order(s) could not be written back to the store", n);
        snprintf(cmd, sizeof cmd, "cpbridge orders %s list --state APPLIED", path);
    } else if (strcmp(name, "order.changed") == 0) {
        snprintf(summary, sizeof summary,
                 "%zu order(s) changed in the store after they were applied", n);
        snprintf(cmd, sizeof cmd, "cpbridge orders %s list --changed", path);
    } else if (strcmp(name, "order.rolled_back") == 0) {
        snprintf(summary, sizeof summary,
                 "%zu order(s) the store cancelled were removed from Counterpoint, their"
                 " inventory restored (run.store_cancel = rollback)",
                 n);
        snprintf(cmd, sizeof cmd, "cpbridge orders %s list --state ROLLED_BACK", path);
    } else if (strcmp(name, "record.dead") == 0) {
        snprintf(summary, sizeof summary,
                 "%zu record(s) could not be pushed and are DEAD (see details); each is queued"
                 " again when its source stages a changed payload",
                 json_array_size(json_object_get(ev, "details")));
        snprintf(cmd, sizeof cmd, "cpbridge status %s", path);
    } else if (strcmp(name, "source.unreachable") == 0) {
        snprintf(summary, sizeof summary,
                 "a source could not be reached; its cursor did not move and it is tried again"
                 " next run");
        snprintf(cmd, sizeof cmd, "cpbridge check %s --connect", path);
    } else if (strcmp(name, "source.failed") == 0) {
        snprintf(summary, sizeof summary,
                 "a source reported input it could not use (see details); the rest was read");
        snprintf(cmd, sizeof cmd, "cpbridge check %s", path);
    } else if (strcmp(name, "db.unreachable") == 0) {
        snprintf(summary, sizeof summary, "the database could not be reached");
        snprintf(cmd, sizeof cmd, "cpbridge check %s --connect", path);
    } else if (strcmp(name, "orders.stale") == 0) {
        snprintf(summary, sizeof summary, "orders have been pending for longer than expected");
        snprintf(cmd, sizeof cmd, "cpbridge orders %s list --state PENDING", path);
    } else if (strcmp(name, "scheduler.missed") == 0) {
        snprintf(summary, sizeof summary,
                 "no successful run for longer than expected: is the scheduler running?");
        snprintf(cmd, sizeof cmd, "cpbridge status %s", path);
    } else if (strcmp(name, "run.failed") == 0) {
        snprintf(summary, sizeof summary, "the run failed before it could process orders");
        snprintf(cmd, sizeof cmd, "cpbridge check %s --connect", path);
    } else if (strcmp(name, "run.summary") == 0) {
        const struct run_counts *c = &r->res->counts;
        snprintf(summary, sizeof summary,
                 "staged %u, applied %u, invalid %u, retrying %u, dead %u, after-commit done %u,"
                 " failed %u; records queued %u, done %u, retrying %u, dead %u",
                 c->staged, c->applied, c->invalid, c->retry, c->dead, c->after_done,
                 c->after_failed, c->rec_queued, c->rec_done, c->rec_retry, c->rec_dead);
        snprintf(cmd, sizeof cmd, "cpbridge status %s", path);
    } else {
        snprintf(summary, sizeof summary, "%s", name);
        snprintf(cmd, sizeof cmd, "cpbridge status %s", path);
    }
    json_object_set_new(ev, "summary", json_string(summary));
    json_object_set_new(ev, "command", json_string(cmd));
}

/* Notifier deliveries retried for this long, then dropped with an error. */
#define OUTBOX_MAX_ATTEMPTS 50

static struct stage_inst *notifier_by_id(struct runner *r, const char *id)
{
    for (size_t i = 0; i < r->p->n; i++) {
        struct stage_inst *s = &r->p->st[i];
        if (s->ls.desc->kind == CPB_NOTIFY && strcmp(s->cs->id, id) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Call one notifier with one event; returns its status. */
static enum cpb_status notify_one(struct stage_inst *s, const char *name, json_t *ev)
{
    struct cpb_record rec = {.size = sizeof rec, .event = name, .payload = ev};
    host_reason_clear(s->ctx);
    return s->ls.desc->process(s->state, &rec);
}

/* Queue an event a notifier could not deliver, for a later run. */
static bool outbox_add(struct runner *r, const struct stage_inst *s, const char *name, json_t *ev)
{
    char *payload = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    bool ok = false;
    if (payload != NULL && r->db != NULL) {
        struct sql_arg a[] = {sql_text(r->p->cfg->name), sql_text(s->cs->id), sql_text(name),
                              sql_text(payload), sql_time(host_now_ms())};
        ok = sql_exec(r->db,
                      "INSERT INTO USER_ALERT_OUTBOX (PIPELINE, STAGE_ID, EVENT, PAYLOAD,"
                      " CREATED_DT, ATTEMPTS) VALUES (?, ?, ?, ?, ?, 1)",
                      a, SQL_NARGS(a), NULL) == CPB_OK;
        if (!ok) {
            log_msg(CPB_LOG_ERROR, s->cs->id, 0, "could not queue %s for a later run: %s", name,
                    db_last_error(r->db));
        }
    }
    free(payload);
    return ok;
}

struct outbox_row {
    int64_t id;
    char *stage_id;
    char *event;
    char *payload;
    int64_t attempts;
};

/* Deliver what earlier runs could not, oldest first, each to the notifier
 * that failed it: at least once per notifier. */
static void deliver_outbox(struct runner *r)
{
    struct cpb_stmt *st = NULL;
    struct outbox_row rows[64];
    size_t n = 0;
    struct sql_arg a[] = {sql_text(r->p->cfg->name)};
    enum cpb_status rc = sql_query(r->db,
                                   "SELECT OUTBOX_ID, STAGE_ID, EVENT, PAYLOAD, ATTEMPTS FROM"
                                   " USER_ALERT_OUTBOX WHERE PIPELINE = ? ORDER BY OUTBOX_ID",
                                   a, SQL_NARGS(a), &st);
    while (rc == CPB_OK && n < sizeof rows / sizeof rows[0]) {
        const char *sid = NULL;
        const char *ev = NULL;
        const char *pl = NULL;
        struct outbox_row *row = &rows[n];
        rc = db_fetch(st);
        if (rc != CPB_OK || db_col_int(st, 1, &row->id, NULL) != CPB_OK ||
            db_col_text(st, 2, &sid) != CPB_OK || db_col_text(st, 3, &ev) != CPB_OK ||
            db_col_text(st, 4, &pl) != CPB_OK ||
            db_col_int(st, 5, &row->attempts, NULL) != CPB_OK) {
            break;
        }
        row->stage_id = strdup(sid != NULL ? sid : "");
        row->event = strdup(ev != NULL ? ev : "");
        row->payload = strdup(pl != NULL ? pl : "");
        n++;
    }
    db_finalize(st);
    for (size_t i = 0; i < n; i++) {
        struct outbox_row *row = &rows[i];
        struct stage_inst *s = row->stage_id != NULL ? notifier_by_id(r, row->stage_id) : NULL;
        json_t *ev = row->payload != NULL ? json_loads(row->payload, 0, NULL) : NULL;
        bool drop = false;
        if (s == NULL || ev == NULL || row->event == NULL) {
            log_msg(CPB_LOG_ERROR, row->stage_id, 0,
                    "dropping a queued %s alert: its notifier is no longer in the pipeline",
                    row->event != NULL ? row->event : "?");
            drop = true;
        } else if (notify_one(s, row->event, ev) == CPB_OK) {
            log_msg(CPB_LOG_INFO, s->cs->id, 0, "delivered a queued %s alert", row->event);
            drop = true;
        } else if (row->attempts + 1 >= OUTBOX_MAX_ATTEMPTS) {
            r->res->notify_failed++;
            r->attention = true;
            log_msg(CPB_LOG_ERROR, s->cs->id, 0,
                    "dropping a queued %s alert after %d attempts: %s: %s", row->event,
                    OUTBOX_MAX_ATTEMPTS, host_reason_code(s->ctx), host_reason_message(s->ctx));
            drop = true;
        } else {
            r->res->notify_failed++;
            r->attention = true;
            struct sql_arg u[] = {sql_text(host_reason_message(s->ctx)), sql_int(row->id)};
            (void)sql_exec(r->db,
                           "UPDATE USER_ALERT_OUTBOX SET ATTEMPTS = ATTEMPTS + 1, LAST_ERROR = ?"
                           " WHERE OUTBOX_ID = ?",
                           u, SQL_NARGS(u), NULL);
        }
        if (drop) {
            (void)sql_exec(r->db, "DELETE FROM USER_ALERT_OUTBOX WHERE OUTBOX_ID = ?",
                           (struct sql_arg[]){sql_int(row->id)}, 1, NULL);
        }
        json_decref(ev);
        free(row->stage_id);
        free(row->event);
        free(row->payload);
    }
}

static void deliver_events(struct runner *r)
{
    const char *name;
    json_t *ev;
    int64_t now = host_now_ms();
    struct alert_store as = {r->db, r->alert_file, r->p->cfg->name, r->p->cfg->alerts.throttle_ms};
    json_t *keys = alerts_filter(&as, r->events, now);
    if (r->db != NULL) {
        deliver_outbox(r);
    }
    json_object_foreach(r->events, name, ev)
    {
        /* Delivered, or queued for a later run: either way not raised again
         * within the throttle window. */
        bool handled = false;
        finish_event(r, name, ev);
        for (size_t i = 0; i < r->p->n; i++) {
            struct stage_inst *s = &r->p->st[i];
            if (s->ls.desc->kind != CPB_NOTIFY || !pipeline_subscribed(s, name)) {
                continue;
            }
            enum cpb_status st = notify_one(s, name, ev);
            if (st == CPB_OK || st == CPB_SKIP) {
                handled = true;
                continue;
            }
            r->res->notify_failed++;
            r->attention = true;
            log_msg(CPB_LOG_WARN, s->cs->id, 0, "could not deliver %s: %s%s%s", name,
                    host_reason_code(s->ctx), host_reason_code(s->ctx)[0] != '\0' ? ": " : "",
                    host_reason_message(s->ctx));
            if (strcmp(name, "run.summary") != 0 && outbox_add(r, s, name, ev)) {
                handled = true;
            }
        }
        if (handled && keys != NULL) {
            alerts_record(&as, json_object_get(keys, name), now);
        }
    }
    alerts_prune(&as, now - 7 * as.throttle_ms);
    json_decref(keys);
}

/* orders.stale: pending orders received longer ago than run.stale_after. */
static void check_stale(struct runner *r)
{
    struct cpb_stmt *st = NULL;
    int64_t now = host_now_ms();
    int64_t count = 0;
    int64_t oldest = 0;
    bool none = true;
    struct sql_arg a[] = {sql_time(now - r->p->cfg->run.stale_after_ms)};
    enum cpb_status rc = sql_query(r->db,
                                   "SELECT COUNT(*), MIN(RECEIVED_DT) FROM USER_ORDER_STAGING"
                                   " WHERE STATUS = 'PENDING' AND RECEIVED_DT < ?",
                                   a, SQL_NARGS(a), &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 1, &count, NULL);
    }
    if (rc == CPB_OK && count > 0) {
        rc = db_col_time(st, 2, &oldest, &none);
    }
    db_finalize(st);
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_WARN, NULL, 0, "could not check for stale orders: %s",
                db_last_error(r->db));
        return;
    }
    if (count == 0) {
        return;
    }
    char since[32] = "?";
    char limit[32];
    char msg[200];
    if (!none) {
        text_format_time(oldest, since, sizeof since);
    }
    text_format_duration(r->p->cfg->run.stale_after_ms, limit, sizeof limit);
    snprintf(msg, sizeof msg, "%lld order(s) pending for longer than %s; the oldest since %s UTC",
             (long long)count, limit, since);
    json_t *d = json_pack("{s:s, s:s, s:I, s:s}", "reason", "orders.stale", "message", msg, "count",
                          (json_int_t)count, "oldest", since);
    event_details(r, "orders.stale", d);
    json_decref(d);
    log_msg(CPB_LOG_WARN, NULL, 0, "%s", msg);
}

/* scheduler.missed: the previous successful run is older than
 * run.expect_every (the dead-man's switch; `cpbridge health` checks it too). */
static void check_schedule(struct runner *r)
{
    struct cpb_stmt *st = NULL;
    int64_t last = 0;
    bool none = true;
    struct sql_arg a[] = {sql_text(r->p->cfg->name)};
    enum cpb_status rc = sql_query(r->db,
                                   "SELECT MAX(ENDED_DT) FROM USER_SYNC_LOG WHERE PIPELINE = ?"
                                   " AND RESULT IN ('OK', 'ATTENTION')",
                                   a, SQL_NARGS(a), &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        rc = db_col_time(st, 1, &last, &none);
    }
    db_finalize(st);
    if (rc != CPB_OK || none) {
        return;
    }
    int64_t gap = r->started_ms - last;
    if (gap <= r->p->cfg->run.expect_every_ms) {
        return;
    }
    char ago[32];
    char every[32];
    char when[32];
    char msg[200];
    text_format_duration(gap / 1000 * 1000, ago, sizeof ago);
    text_format_duration(r->p->cfg->run.expect_every_ms, every, sizeof every);
    text_format_time(last, when, sizeof when);
    snprintf(msg, sizeof msg,
             "the last successful run ended %s ago (%s UTC); runs are expected every %s", ago, when,
             every);
    json_t *d = json_pack("{s:s, s:s, s:s}", "reason", "scheduler.missed", "message", msg,
                          "last_success", when);
    event_details(r, "scheduler.missed", d);
    json_decref(d);
    log_msg(CPB_LOG_WARN, NULL, 0, "%s", msg);
}

/* ---- database trouble ---------------------------------------------------- */

/* After a database failure: reconnect when the connection is gone. Returns
 * false when the database cannot be reached any more (the run stops). */
static bool db_recover(struct runner *r)
{
    if (!db_broken(r->db)) {
        return true;
    }
    struct err e = {0};
    struct db *fresh = NULL;
    const struct config_database *c = &r->p->cfg->database;
    enum db_dialect d = db_get_dialect(r->db);
    log_msg(CPB_LOG_WARN, NULL, 0, "the database connection was lost: %s; reconnecting",
            db_last_error(r->db));
    if (db_connect(c->connection, d, c->login_timeout_ms, &fresh, &e) != 0) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "%s", e.msg);
        event_message(r, "db.unreachable", NULL, "db.unreachable", e.msg);
        r->fatal_db = true;
        return false;
    }
    db_close(r->db);
    r->db = fresh;
    r->p->env.db = fresh;
    return true;
}

/* ---- sources ------------------------------------------------------------- */

/* An emitted order made ready to stage: normalized, its payload text and
 * hash. Returns CPB_OK, CPB_FAIL (rejected and reported: it has no usable
 * shape) or CPB_RETRY (out of memory). *norm and *payload are new. */
static enum cpb_status emit_prepare(struct runner *r, const char *source, json_t *order,
                                    json_t **norm, char **payload, char hash[65])
{
    char msg[300];
    *norm = NULL;
    *payload = NULL;
    if (order_normalize(order, norm, msg, sizeof msg) != 0) {
        log_msg(CPB_LOG_WARN, source, 0, "order rejected, it cannot be staged: %s", msg);
        event_message(r, "order.rejected", source, "payload.unusable", msg);
        r->attention = true;
        return CPB_FAIL;
    }
    *payload = json_dumps(order, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (*payload == NULL || order_hash(*norm, hash) != 0) {
        log_msg(CPB_LOG_ERROR, source, 0, "out of memory staging an order");
        return CPB_RETRY;
    }
    return CPB_OK;
}

/* After the staging transaction committed: count, log and raise the
 * events of one order's outcome. Returns what emit returns for it. */
static enum cpb_status emit_report(struct runner *r, const char *source, json_t *norm,
                                   enum upsert_outcome outcome, int64_t id)
{
    const char *ext = json_string_value(json_object_get(norm, "id"));
    size_t problems = json_array_size(json_object_get(norm, "problems"));
    struct staged_order so = {.id = id, .source = (char *)source, .ext_id = (char *)ext};
    switch (outcome) {
    case UPSERT_NEW:
    case UPSERT_UPDATED:
        r->res->counts.staged++;
        log_msg(CPB_LOG_INFO, source, id, "staged order %s%s%s", ext,
                outcome == UPSERT_UPDATED ? " (changed in the store; replaces the old version)"
                                          : "",
                problems > 0 ? ": INVALID, its payload has unreadable fields" : "");
        if (problems > 0) {
            json_t *p0 = json_array_get(json_object_get(norm, "problems"), 0);
            r->res->counts.invalid++;
            r->attention = true;
            event_order(r, "order.invalid", &so, "payload.malformed",
                        json_string_value(json_object_get(p0, "message")));
        }
        return CPB_OK;
    case UPSERT_STORE_CANCELLED:
        log_msg(CPB_LOG_WARN, source, id,
                "order %s was cancelled in the store after it was applied to Counterpoint;"
                " run.store_cancel decides what happens (flag it, or roll it back)",
                ext);
        return CPB_OK;
    case UPSERT_CHANGED_AFTER:
        log_msg(CPB_LOG_WARN, source, id,
                "order %s changed in the store after it was applied; flagged for review, not"
                " applied again",
                ext);
        event_order(r, "order.changed", &so, "order.changed",
                    "changed in the store after it was applied to Counterpoint");
        r->attention = true;
        return CPB_OK;
    case UPSERT_UNCHANGED:
    case UPSERT_IGNORED:
        break;
    }
    return CPB_SKIP;
}

/* Stage one prepared order in its own transaction. */
static enum cpb_status emit_alone(struct runner *r, const char *source, json_t *norm,
                                  const char *payload, const char *hash)
{
    enum upsert_outcome outcome = UPSERT_UNCHANGED;
    int64_t id = 0;
    enum cpb_status rc = staging_upsert(r->db, source, norm, payload, hash, host_now_ms(),
                                        r->res->run_id, &outcome, &id);
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, source, 0, "could not stage order %s: %s",
                json_string_value(json_object_get(norm, "id")), db_last_error(r->db));
        (void)db_recover(r);
        return CPB_RETRY;
    }
    return emit_report(r, source, norm, outcome, id);
}

static enum cpb_status on_emit(void *owner, struct cpb_ctx *ctx, json_t *order)
{
    struct runner *r = owner;
    const char *source = host_services()->stage_id(ctx);
    char hash[65];
    json_t *norm = NULL;
    char *payload = NULL;
    enum cpb_status rc = emit_prepare(r, source, order, &norm, &payload, hash);
    if (rc == CPB_OK) {
        rc = emit_alone(r, source, norm, payload, hash);
    }
    free(payload);
    json_decref(norm);
    return rc;
}

/* A source's page: every order prepared, then all staged in one
 * transaction; when that fails, one by one, so one order that cannot be
 * stored does not hold back the others. */
static enum cpb_status on_emit_many(void *owner, struct cpb_ctx *ctx, json_t *const *orders,
                                    size_t n, enum cpb_status *out)
{
    struct runner *r = owner;
    const char *source = host_services()->stage_id(ctx);
    struct staging_item *items = calloc(n > 0 ? n : 1, sizeof *items);
    char(*hashes)[65] = calloc(n > 0 ? n : 1, sizeof *hashes);
    size_t *at = calloc(n > 0 ? n : 1, sizeof *at); /* items[k] is orders[at[k]] */
    size_t k = 0;
    enum cpb_status ret = CPB_OK;

    if (items == NULL || hashes == NULL || at == NULL) {
        log_msg(CPB_LOG_ERROR, source, 0, "out of memory staging %zu orders", n);
        for (size_t i = 0; i < n; i++) {
            out[i] = CPB_RETRY;
        }
        ret = CPB_RETRY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *norm = NULL;
        char *payload = NULL;
        out[i] = emit_prepare(r, source, orders[i], &norm, &payload, hashes[k]);
        if (out[i] != CPB_OK) {
            free(payload);
            json_decref(norm);
            continue;
        }
        items[k] = (struct staging_item){norm, payload, hashes[k], UPSERT_UNCHANGED, 0};
        at[k++] = i;
        out[i] = CPB_RETRY; /* until it is stored */
    }
    if (k > 0 &&
        staging_upsert_many(r->db, source, items, k, host_now_ms(), r->res->run_id) == CPB_OK) {
        for (size_t j = 0; j < k; j++) {
            out[at[j]] = emit_report(r, source, items[j].norm, items[j].outcome, items[j].id);
        }
    } else if (k > 0) {
        log_msg(CPB_LOG_WARN, source, 0,
                "could not stage %zu orders in one transaction (%s); staging them one by one", k,
                db_last_error(r->db));
        for (size_t j = 0; j < k && db_recover(r); j++) {
            out[at[j]] = emit_alone(r, source, items[j].norm, items[j].payload, items[j].hash);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i] == CPB_RETRY) {
            ret = CPB_RETRY;
        }
    }
out:
    for (size_t j = 0; j < k; j++) {
        json_decref(items[j].norm);
        free((char *)items[j].payload);
    }
    free(items);
    free(hashes);
    free(at);
    return ret;
}

static void run_sources(struct runner *r)
{
    for (size_t i = 0; i < r->p->n && !r->fatal_db; i++) {
        struct stage_inst *s = &r->p->st[i];
        if (s->ls.desc->kind != CPB_SOURCE) {
            continue;
        }
        json_t *params = json_object();
        if (r->o->since != NULL) {
            json_object_set_new(params, "since", json_string(r->o->since));
        }
        if (r->o->limit > 0) {
            json_object_set_new(params, "limit", json_integer((json_int_t)r->o->limit));
        }
        struct cpb_record rec = {.size = sizeof rec, .payload = params};
        int64_t t0 = mono_us();
        host_reason_clear(s->ctx);
        r->p->env.in_source = true;
        enum cpb_status st = s->ls.desc->process(s->state, &rec);
        r->p->env.in_source = false;
        if (r->recover_after_source) {
            r->recover_after_source = false;
            (void)db_recover(r);
        }
        r->times[i].calls++;
        r->times[i].us += mono_us() - t0;
        json_decref(params);
        if (st == CPB_OK || st == CPB_SKIP) {
            continue;
        }
        r->res->source_failed = true;
        r->attention = true;
        log_msg(CPB_LOG_ERROR, s->cs->id, 0, "source failed (%s): %s%s%s",
                st == CPB_RETRY ? "will try again next run" : "needs a person",
                host_reason_code(s->ctx), host_reason_code(s->ctx)[0] != '\0' ? ": " : "",
                host_reason_message(s->ctx));
        event_message(r, st == CPB_RETRY ? "source.unreachable" : "source.failed", s->cs->id,
                      host_reason_code(s->ctx), host_reason_message(s->ctx));
    }
}

/* ---- orders -------------------------------------------------------------- */

static bool has_kind(const struct pipeline *p, enum cpb_kind kind)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->st[i].ls.desc->kind == kind) {
            return true;
        }
    }
    return false;
}

/* The reason a failed call left, or a default naming the stage. */
/* The reason code and message a stage gave (c, m: "" when none) as the
 * order records them. */
static void reason_text(const struct stage_inst *s, enum cpb_status st, const char *c,
                        const char *m, char *code, size_t ncode, char *msg, size_t nmsg)
{
    snprintf(code, ncode, "%s", c[0] != '\0' ? c : "stage.failed");
    if (m[0] != '\0') {
        snprintf(msg, nmsg, "%s: %s", s->cs->id, m);
    } else {
        snprintf(msg, nmsg, "%s returned %s without a reason", s->cs->id,
                 st == CPB_RETRY ? "RETRY" : "FAIL");
    }
}

static void reason_of(const struct stage_inst *s, enum cpb_status st, char *code, size_t ncode,
                      char *msg, size_t nmsg)
{
    reason_text(s, st, host_reason_code(s->ctx), host_reason_message(s->ctx), code, ncode, msg,
                nmsg);
}

struct failure {
    const struct staged_order *so;
    const char *token;
    const char *from;
    const char *to;
    int64_t next;
    const char *kind;
    const char *stage_id;
    const char *code;
    const char *msg;
    const char *run_id;
};

static enum cpb_status mark_failed_in_tx(struct db *db, void *arg)
{
    struct failure *f = arg;
    int64_t now = host_now_ms();
    enum cpb_status rc =
        staging_mark_failed(db, f->so->id, f->token, f->to, f->next, f->code, f->msg, now);
    if (rc != CPB_OK) {
        return rc;
    }
    struct staging_event ev = {f->so->id, f->run_id, f->kind, f->stage_id, f->from,
                               f->to,     f->code,   f->msg,  NULL,        -1};
    return staging_event(db, &ev, now);
}

/* Record a failed attempt of the transactional steps. */
static void order_failed(struct runner *r, const struct staged_order *so,
                         const struct stage_inst *s, enum cpb_status st, const char *code,
                         const char *msg, long retry_after)
{
    struct failure f = {so,
                        r->token,
                        so->status,
                        ST_INVALID,
                        host_now_ms(),
                        "invalid",
                        s != NULL ? s->cs->id : NULL,
                        code,
                        msg,
                        r->res->run_id};
    const char *event = "order.invalid";
    if (st == CPB_RETRY) {
        if (retry_exhausted(&r->policy, so->attempts)) {
            f.to = ST_DEAD;
            f.kind = "dead";
            event = "order.dead";
        } else {
            /* At least 1 ms: claims take orders due by the time claiming
             * began, so an order retried in this run waits for a later run. */
            int64_t delay = retry_delay_ms(&r->policy, so->attempts, &r->rng) + 1;
            if (retry_after > delay) {
                delay = retry_after;
            }
            f.to = ST_PENDING;
            f.kind = "retry";
            f.next += delay;
            event = NULL;
            char when[32];
            text_format_time(f.next, when, sizeof when);
            log_msg(CPB_LOG_WARN, f.stage_id, so->id,
                    "order %s: attempt %u of %u failed (%s: %s); next try at %s UTC", so->ext_id,
                    so->attempts, r->policy.max_attempts, code, msg, when);
        }
    }
    if (r->o->dry_run) {
        log_msg(CPB_LOG_WARN, f.stage_id, so->id, "dry run: order %s would be %s: %s: %s",
                so->ext_id, f.to, code, msg);
        if (strcmp(f.to, ST_INVALID) == 0) {
            r->res->counts.invalid++;
            r->attention = true;
        } else if (strcmp(f.to, ST_DEAD) == 0) {
            r->res->counts.dead++;
            r->attention = true;
        } else {
            r->res->counts.retry++;
        }
        return;
    }
    enum cpb_status rc = sql_tx(r->db, mark_failed_in_tx, &f);
    if (rc == CPB_SKIP) {
        log_msg(CPB_LOG_WARN, NULL, so->id, "lease lost before the outcome was recorded");
        return;
    }
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, NULL, so->id, "could not record the outcome: %s",
                db_last_error(r->db));
        (void)db_recover(r);
        return;
    }
    if (strcmp(f.to, ST_PENDING) == 0) {
        r->res->counts.retry++;
        return;
    }
    if (strcmp(f.to, ST_DEAD) == 0) {
        r->res->counts.dead++;
    } else {
        r->res->counts.invalid++;
    }
    r->attention = true;
    log_msg(CPB_LOG_WARN, f.stage_id, so->id, "order %s is %s: %s: %s", so->ext_id, f.to, code,
            msg);
    event_order(r, event, so, code, msg);
}

/* "validate 3 ms, create-order 5 ms" for the applied event. */
static void timing_text(struct runner *r, const int64_t *us, struct buf *out)
{
    for (size_t i = 0; i < r->p->n; i++) {
        if (us[i] >= 0) {
            buf_addf(out, "%s%s %.1f ms", out->len > 0 ? ", " : "", r->p->st[i].cs->id,
                     (double)us[i] / 1000.0);
        }
    }
}

/* Run the transactional steps of one order. Returns true when it was
 * applied (and committed, unless dry run). */
static bool run_steps(struct runner *r, struct staged_order *so, struct cpb_record *rec)
{
    struct pipeline *p = r->p;
    int64_t *us = calloc(p->n, sizeof *us);
    struct buf timing = BUF_INIT;
    bool applied = false;
    const struct stage_inst *failed = NULL;
    enum cpb_status st = CPB_OK;
    long retry_after = -1;
    char code[64] = "";
    char msg[1200] = "";
    int64_t t_start = mono_us();

    if (us == NULL) {
        goto out;
    }
    for (size_t i = 0; i < p->n; i++) {
        us[i] = -1;
    }
    st = db_begin(r->db);
    if (st == CPB_OK) {
        st = staging_lock(r->db, so->id, r->lease, host_now_ms());
    }
    if (st == CPB_SKIP) {
        (void)db_rollback(r->db);
        log_msg(CPB_LOG_WARN, NULL, so->id, "lease lost; another runner has this order");
        goto out;
    }
    if (st != CPB_OK) {
        snprintf(code, sizeof code, "db.retryable");
        snprintf(msg, sizeof msg, "starting the order's transaction: %s", db_last_error(r->db));
        (void)db_rollback(r->db);
        st = CPB_RETRY;
        goto failed;
    }
    p->env.in_order_tx = true;
    for (size_t i = 0; i < p->n; i++) {
        struct stage_inst *s = &p->st[i];
        if (s->ls.desc->kind != CPB_STEP) {
            continue;
        }
        int64_t t0 = mono_us();
        host_reason_clear(s->ctx);
        st = s->ls.desc->process(s->state, rec);
        us[i] = mono_us() - t0;
        r->times[i].calls++;
        r->times[i].us += us[i];
        if (st != CPB_OK && st != CPB_SKIP) {
            failed = s;
            reason_of(s, st, code, sizeof code, msg, sizeof msg);
            retry_after = host_retry_after_ms(s->ctx);
            break;
        }
    }
    p->env.in_order_tx = false;
    if (failed != NULL) {
        (void)db_rollback(r->db);
        if (st != CPB_RETRY && st != CPB_FAIL) {
            /* An unknown status from a stage is a bug there: never apply. */
            snprintf(msg, sizeof msg, "%s returned an unknown status %d", failed->cs->id, st);
            snprintf(code, sizeof code, "stage.bad_status");
            st = CPB_FAIL;
        }
        goto failed;
    }

    json_t *doc = json_object_get(rec->result, "cp_doc_id");
    const char *tkt = json_string_value(json_object_get(rec->result, "cp_tkt_no"));
    int64_t doc_id = json_is_integer(doc) ? (int64_t)json_integer_value(doc) : 0;
    bool after = has_kind(p, CPB_AFTER_COMMIT) && !r->o->dry_run;
    timing_text(r, us, &timing);
    bool adopted = json_is_true(json_object_get(rec->result, "cp_adopted"));
    st = staging_mark_applied(r->db, so->id, r->lease, doc_id, tkt, adopted, after, host_now_ms());
    if (st == CPB_OK) {
        struct staging_event ev = {
            so->id,     r->res->run_id, "applied",        NULL, so->status,
            ST_APPLIED, NULL,           buf_str(&timing), NULL, (mono_us() - t_start) / 1000};
        st = staging_event(r->db, &ev, host_now_ms());
    }
    if (st == CPB_SKIP) {
        (void)db_rollback(r->db);
        log_msg(CPB_LOG_WARN, NULL, so->id, "lease lost before commit; rolled back");
        goto out;
    }
    if (st == CPB_OK && r->o->dry_run) {
        (void)db_rollback(r->db);
        log_msg(CPB_LOG_INFO, NULL, so->id,
                "dry run: order %s would be applied (document %lld, ticket %s); rolled back",
                so->ext_id, (long long)doc_id, tkt != NULL ? tkt : "-");
        r->res->counts.applied++;
        goto out;
    }
    if (st == CPB_OK) {
        st = db_commit(r->db);
    }
    if (st != CPB_OK) {
        snprintf(code, sizeof code, "db.retryable");
        snprintf(msg, sizeof msg, "committing the order: %s", db_last_error(r->db));
        (void)db_rollback(r->db);
        st = CPB_RETRY;
        goto failed;
    }
    applied = true;
    r->res->counts.applied++;
    free(so->status);
    so->status = strdup(ST_APPLIED);
    log_msg(CPB_LOG_INFO, NULL, so->id, "order %s from %s applied: document %lld, ticket %s (%s)",
            so->ext_id, so->source, (long long)doc_id, tkt != NULL ? tkt : "-", buf_str(&timing));
    goto out;

failed:
    if (!db_recover(r)) {
        goto out;
    }
    order_failed(r, so, failed, st, code, msg, retry_after);
out:
    p->env.in_order_tx = false;
    buf_free(&timing);
    free(us);
    return applied;
}

static void after_record(struct runner *r, const struct staged_order *so, const char *kind,
                         const char *stage_id, const char *code, const char *msg)
{
    struct staging_event ev = {so->id, r->res->run_id, kind, stage_id, NULL,
                               NULL,   code,           msg,  NULL,     -1};
    if (staging_event(r->db, &ev, host_now_ms()) != CPB_OK) {
        log_msg(CPB_LOG_ERROR, stage_id, so->id, "could not record %s: %s", kind,
                db_last_error(r->db));
    }
}

/* Record what after-commit stage `s` did for one queued order. */
static void after_outcome(struct runner *r, const struct stage_inst *s, struct after_item *it,
                          enum cpb_status st, const char *code, const char *msg)
{
    const struct staged_order *so = &it->so;
    if (st == CPB_OK || st == CPB_SKIP) {
        if (staging_after_done(r->db, so->id, s->cs->id, host_now_ms()) != CPB_OK) {
            /* Done in the world but not recorded: it will run again. */
            log_msg(CPB_LOG_ERROR, s->cs->id, so->id, "could not record completion: %s",
                    db_last_error(r->db));
            (void)db_recover(r);
            it->abandoned = true;
            return;
        }
        after_record(r, so, "after.done", s->cs->id, NULL, NULL);
        r->res->counts.after_done++;
        return;
    }
    it->stopped = true;
    snprintf(it->code, sizeof it->code, "%s", code);
    snprintf(it->msg, sizeof it->msg, "%s", msg);
    if (st == CPB_RETRY && !retry_exhausted(&r->policy, so->after_attempts)) {
        int64_t delay = retry_delay_ms(&r->policy, so->after_attempts, &r->rng) + 1;
        long ra = host_retry_after_ms(s->ctx);
        it->state = AFTER_DUE;
        it->next = host_now_ms() + (ra > delay ? ra : delay);
        after_record(r, so, "after.retry", s->cs->id, code, msg);
        log_msg(CPB_LOG_WARN, s->cs->id, so->id,
                "order %s: after-commit attempt %u of %u failed (%s: %s); will retry", so->ext_id,
                so->after_attempts, r->policy.max_attempts, code, msg);
    } else {
        it->state = AFTER_GAVE_UP;
        r->res->counts.after_failed++;
        r->attention = true;
        after_record(r, so, "after.failed", s->cs->id, code, msg);
        event_order(r, "sync.failed", so, code, msg);
        log_msg(CPB_LOG_ERROR, s->cs->id, so->id,
                "order %s: gave up (%s: %s); the order stays applied in Counterpoint", so->ext_id,
                code, msg);
    }
}

/* Run after-commit stage `s` for the queued orders at idx[0..k-1]: in one
 * process_batch call when the stage has it, else one process call each. */
static void after_stage(struct runner *r, size_t si, const size_t *idx, size_t k)
{
    struct stage_inst *s = &r->p->st[si];
    loader_batch_fn batch = loader_process_batch(s->ls.desc);
    struct cpb_record **recs = NULL;
    enum cpb_status *out = NULL;
    char code[64];
    char msg[1200];

    if (batch != NULL) {
        recs = calloc(k, sizeof *recs);
        out = calloc(k, sizeof *out);
        if (recs == NULL || out == NULL || host_batch_begin(s->ctx, k) != 0) {
            log_msg(CPB_LOG_WARN, s->cs->id, 0, "out of memory for a batch; one order at a time");
            batch = NULL;
        }
    }
    int64_t t0 = mono_us();
    if (batch != NULL) {
        for (size_t j = 0; j < k; j++) {
            recs[j] = &r->after[idx[j]].rec;
            out[j] = CPB_FAIL;
        }
        host_reason_clear(s->ctx);
        batch(s->state, recs, k, out);
        r->times[si].calls += k;
        r->times[si].us += mono_us() - t0;
        for (size_t j = 0; j < k && !r->fatal_db; j++) {
            reason_text(s, out[j], host_batch_reason_code(s->ctx, j),
                        host_batch_reason_message(s->ctx, j), code, sizeof code, msg, sizeof msg);
            after_outcome(r, s, &r->after[idx[j]], out[j], code, msg);
        }
        host_batch_end(s->ctx);
    } else {
        for (size_t j = 0; j < k && !r->fatal_db; j++) {
            struct after_item *it = &r->after[idx[j]];
            t0 = mono_us();
            r->p->env.order_id = it->so.id;
            host_reason_clear(s->ctx);
            enum cpb_status st = s->ls.desc->process(s->state, &it->rec);
            r->p->env.order_id = 0;
            r->times[si].calls++;
            r->times[si].us += mono_us() - t0;
            reason_of(s, st, code, sizeof code, msg, sizeof msg);
            after_outcome(r, s, it, st, code, msg);
        }
    }
    free(recs);
    free(out);
}

/* An after-commit stage built for ABI 1.4 or later is told of an order
 * rolled back for its store (result.rolled_back); older ones never see it. */
static bool takes_rollbacks(const struct stage_inst *s)
{
    return s->ls.desc->kind == CPB_AFTER_COMMIT && s->ls.desc->abi_minor >= 4;
}

static bool any_takes_rollbacks(const struct pipeline *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (takes_rollbacks(&p->st[i])) {
            return true;
        }
    }
    return false;
}

static void after_item_clear(struct after_item *it)
{
    json_decref(it->result);
    json_decref(it->norm);
    json_decref(it->raw);
    staging_order_clear(&it->so);
    memset(it, 0, sizeof *it);
}

/*
 * Run the after-commit steps of the queued orders, stage by stage in the
 * pipeline's order; an order whose step did not finish waits for its retry
 * before later steps. Each order's outcome is recorded on its own, exactly
 * as for one order: a crash here leaves the orders applied with their
 * after-commit steps due, and the next run resumes them.
 */
static void after_flush(struct runner *r)
{
    struct pipeline *p = r->p;
    size_t *idx = NULL;
    if (r->n_after == 0) {
        return;
    }
    idx = calloc(r->n_after, sizeof *idx);
    if (idx == NULL) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "out of memory; after-commit steps wait for the next run");
        goto out;
    }
    for (size_t i = 0; i < p->n && !r->fatal_db; i++) {
        struct stage_inst *s = &p->st[i];
        size_t k = 0;
        if (s->ls.desc->kind != CPB_AFTER_COMMIT) {
            continue;
        }
        for (size_t j = 0; j < r->n_after; j++) {
            struct after_item *it = &r->after[j];
            bool done = false;
            if (it->stopped || it->abandoned || (it->removed && !takes_rollbacks(s))) {
                continue;
            }
            if (staging_after_is_done(r->db, it->so.id, s->cs->id, &done) != CPB_OK) {
                log_msg(CPB_LOG_ERROR, s->cs->id, it->so.id, "reading after-commit state: %s",
                        db_last_error(r->db));
                (void)db_recover(r);
                it->abandoned = true;
                continue;
            }
            if (!done) {
                idx[k++] = j;
            }
        }
        if (k > 0) {
            after_stage(r, i, idx, k);
        }
    }
    for (size_t j = 0; j < r->n_after && !r->fatal_db; j++) {
        struct after_item *it = &r->after[j];
        if (it->abandoned) {
            continue;
        }
        bool none = it->state == AFTER_NONE;
        enum cpb_status rc = staging_after_finish(
            r->db, it->so.id, r->token, it->state, none ? host_now_ms() : it->next,
            none ? NULL : it->code, none ? NULL : it->msg, host_now_ms());
        if (rc != CPB_OK && rc != CPB_SKIP) {
            log_msg(CPB_LOG_ERROR, NULL, it->so.id, "could not record after-commit state: %s",
                    db_last_error(r->db));
            (void)db_recover(r);
        }
    }
out:
    for (size_t j = 0; j < r->n_after; j++) {
        after_item_clear(&r->after[j]);
    }
    r->n_after = 0;
    free(idx);
}

static void process_order(struct runner *r, int64_t id)
{
    struct staged_order so;
    json_error_t jerr;
    json_t *raw = NULL;
    json_t *norm = NULL;
    json_t *result = NULL;
    bool removed = false;
    char msg[300];

    enum cpb_status rc = staging_load(r->db, id, r->lease, &so);
    if (rc == CPB_SKIP) {
        log_msg(CPB_LOG_WARN, NULL, id, "lease lost before the order was read");
        return;
    }
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, NULL, id, "could not read the order: %s", db_last_error(r->db));
        (void)db_recover(r);
        return;
    }
    r->p->env.order_id = id;
    raw = json_loads(so.payload, 0, &jerr);
    if (raw != NULL && order_normalize(raw, &norm, msg, sizeof msg) != 0) {
        norm = NULL;
    } else if (raw == NULL) {
        snprintf(msg, sizeof msg, "stored payload is not JSON: %s (line %d)", jerr.text, jerr.line);
    }
    if (norm == NULL) {
        order_failed(r, &so, NULL, CPB_FAIL, "payload.corrupt", msg, -1);
        goto out;
    }
    result = json_object();
    if (so.cp_doc_id != 0) {
        json_object_set_new(result, "cp_doc_id", json_integer((json_int_t)so.cp_doc_id));
    }
    if (so.cp_tkt_no != NULL) {
        json_object_set_new(result, "cp_tkt_no", json_string(so.cp_tkt_no));
    }
    struct cpb_record rec = {
        .size = sizeof rec,
        .id = id,
        .source = so.source,
        .external_id = so.ext_id,
        .attempt = so.attempts,
        .payload = raw,
        .order = norm,
        .result = result,
    };
    if (strcmp(so.status, ST_PENDING) == 0) {
        if (!run_steps(r, &so, &rec) || r->o->dry_run) {
            goto out;
        }
        so.after_attempts = 1;
        rec.attempt = 1;
        if (!has_kind(r->p, CPB_AFTER_COMMIT)) {
            goto out;
        }
    } else if (strcmp(so.status, ST_ROLLED_BACK) == 0 && so.after_pending == AFTER_DUE) {
        /* Rolled back for its store (run.store_cancel): the after-commit
         * stages that take it tell the store, once. */
        char why[120];
        const char *number = json_string_value(json_object_get(norm, "number"));
        snprintf(why, sizeof why, "store cancelled order %s", number != NULL ? number : so.ext_id);
        json_object_set_new(result, "rolled_back",
                            json_pack("{s:s, s:I, s:s?}", "reason", why, "cp_doc_id",
                                      (json_int_t)so.cp_doc_id, "cp_tkt_no", so.cp_tkt_no));
        rec.attempt = so.after_attempts > 1 ? so.after_attempts : 2;
        removed = true;
    } else if (!(strcmp(so.status, ST_APPLIED) == 0 && so.after_pending == AFTER_DUE)) {
        goto out;
    } else {
        /* Resumed (after a crash, a failure, or `dlq retry`, which counts
         * from 0 again): never attempt 1, which tells a stage that nothing
         * of its step can have happened yet. */
        rec.attempt = so.after_attempts > 1 ? so.after_attempts : 2;
    }
    /* Queue it for after_flush, which takes over the order and its JSON. */
    struct after_item *it = &r->after[r->n_after++];
    memset(it, 0, sizeof *it);
    it->so = so;
    it->raw = raw;
    it->norm = norm;
    it->result = result;
    it->rec = rec;
    it->removed = removed;
    it->state = AFTER_NONE;
    memset(&so, 0, sizeof so);
    raw = NULL;
    norm = NULL;
    result = NULL;
out:
    r->p->env.order_id = 0;
    json_decref(result);
    json_decref(norm);
    json_decref(raw);
    staging_order_clear(&so);
}

/* Dry run: the due orders, read without a lease; every order's steps run in
 * a transaction that is rolled back, and no outcome is written. */
static void dry_run_orders(struct runner *r)
{
    struct cpb_stmt *st = NULL;
    int64_t now = r->due_by;
    unsigned long left = r->o->limit > 0 && r->o->limit < MAX_BATCH ? r->o->limit : MAX_BATCH;
    struct sql_arg a[] = {sql_time(now), sql_time(now)};
    int64_t ids[MAX_BATCH];
    unsigned n = 0;
    enum cpb_status rc = sql_query(r->db,
                                   "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE"
                                   " STATUS = 'PENDING' AND NEXT_ATTEMPT_DT <= ?"
                                   " AND (LEASE_UNTIL IS NULL OR LEASE_UNTIL < ?)"
                                   " ORDER BY STAGING_ID",
                                   a, SQL_NARGS(a), &st);
    while (rc == CPB_OK && n < left) {
        rc = db_fetch(st);
        if (rc == CPB_OK) {
            rc = db_col_int(st, 1, &ids[n], NULL);
            n++;
        }
    }
    db_finalize(st);
    if (rc != CPB_OK && rc != CPB_SKIP) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "could not list due orders: %s", db_last_error(r->db));
        r->attention = true;
        return;
    }
    r->res->counts.claimed = n;
    for (unsigned i = 0; i < n; i++) {
        process_order(r, ids[i]);
    }
}

/* Tell o->progress how the run is going: always when `done`, else at most
 * every RUN_PROGRESS_MS. */
static void report_progress(struct runner *r, bool done)
{
    if (r->o->progress == NULL) {
        return;
    }
    int64_t now = mono_us();
    if (!done && now - r->progress_us < RUN_PROGRESS_MS * 1000) {
        return;
    }
    r->progress_us = now;
    struct run_progress p = {&r->res->counts, r->backlog, r->processed,
                             r->claiming_us > 0 ? (now - r->claiming_us) / 1000 : 0, done};
    r->o->progress(r->o->progress_arg, &p);
}

static void run_orders(struct runner *r)
{
    const struct config_run *rc = &r->p->cfg->run;
    int64_t ids[MAX_BATCH];
    r->claiming_us = mono_us();
    if (r->o->progress != NULL) {
        int64_t due = 0;
        if (staging_count_due(r->db, r->due_by, host_now_ms(), &due) == CPB_OK) {
            r->backlog = (unsigned long)due;
        }
        report_progress(r, false);
    }
    for (;;) {
        if (r->o->stop != NULL && atomic_load(r->o->stop)) {
            break; /* stopping: what is still due waits for the next run */
        }
        unsigned limit = rc->batch > 0 && rc->batch <= MAX_BATCH ? (unsigned)rc->batch : 50;
        if (r->o->limit > 0) {
            if (r->processed >= r->o->limit) {
                break;
            }
            if (r->o->limit - r->processed < limit) {
                limit = (unsigned)(r->o->limit - r->processed);
            }
        }
        unsigned n = 0;
        char claim_token[37];
        host_services()->uuid(NULL, claim_token);
        int64_t claimed_at = host_now_ms();
        if (r->n_after > 0) {
            /* The queued orders' leases run as long as the new ones. */
            (void)staging_renew(r->db, r->token, claimed_at + rc->lease_ms);
        }
        enum cpb_status st = staging_claim(r->db, r->token, claim_token, r->owner, claimed_at,
                                           r->due_by, rc->lease_ms, limit, ids, &n);
        if (st != CPB_OK) {
            log_msg(CPB_LOG_WARN, NULL, 0, "could not claim orders: %s", db_last_error(r->db));
            if (!db_recover(r) || st == CPB_FAIL) {
                r->attention = true;
            }
            break;
        }
        if (n == 0) {
            break;
        }
        r->res->counts.claimed += n;
        for (unsigned i = 0; i < n && !r->fatal_db; i++) {
            int64_t now = host_now_ms();
            if (now - claimed_at > rc->lease_ms / 3) {
                if (staging_renew(r->db, r->token, now + rc->lease_ms) == CPB_OK) {
                    claimed_at = now;
                }
            }
            process_order(r, ids[i]);
            r->processed++;
            report_progress(r, false);
        }
        int64_t now = host_now_ms();
        if (!r->fatal_db && now - claimed_at > rc->lease_ms / 3) {
            (void)staging_renew(r->db, r->token, now + rc->lease_ms);
        }
        /* Applied orders keep their lease until their after-commit steps
         * are recorded, so the next claim does not take them again; they
         * are gathered until AFTER_GATHER, or until the next claim batch
         * might not fit in r->after. */
        if (r->n_after >= AFTER_GATHER || r->n_after + limit > MAX_BATCH || r->fatal_db) {
            after_flush(r);
        }
        if (r->fatal_db) {
            return;
        }
    }
    after_flush(r);
}

/* ---- store cancellations (run.store_cancel) ------------------------------ */

/* Orders the policy handles per run, at most: the rest wait for the next. */
#define STORE_CANCEL_BATCH 100

/* Column `col` as a new string (NULL for SQL NULL). */
static enum cpb_status dup_text(struct cpb_stmt *st, unsigned col, char **out)
{
    const char *v = NULL;
    enum cpb_status rc = db_col_text(st, col, &v);
    *out = NULL;
    if (rc == CPB_OK && v != NULL && (*out = strdup(v)) == NULL) {
        rc = CPB_FAIL;
    }
    return rc;
}

/* Leave a store-cancelled order flagged for a person, saying why. */
static void store_cancel_flag(struct runner *r, const struct staged_order *so, const char *number,
                              const char *why)
{
    char msg[1400];
    snprintf(msg, sizeof msg,
             "the store cancelled order %s after it was applied; it stays in Counterpoint,"
             " flagged for a person: %s",
             number, why);
    struct sql_arg a[] = {sql_time(host_now_ms()), sql_int(so->id)};
    int64_t rows = 0;
    enum cpb_status rc = sql_exec(r->db,
                                  "UPDATE USER_ORDER_STAGING SET STORE_CANCELLED = 0,"
                                  " UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = 'APPLIED'"
                                  " AND STORE_CANCELLED = 1",
                                  a, SQL_NARGS(a), &rows);
    if (rc == CPB_OK && rows == 0) {
        return; /* another runner (a serve worker) decided it meanwhile */
    }
    if (rc == CPB_OK) {
        struct staging_event ev = {so->id,
                                   r->res->run_id,
                                   "store_cancel.flagged",
                                   NULL,
                                   ST_APPLIED,
                                   ST_APPLIED,
                                   "order.changed",
                                   msg,
                                   NULL,
                                   -1};
        rc = staging_event(r->db, &ev, host_now_ms());
    }
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, NULL, so->id, "could not flag order %s: %s", so->ext_id,
                db_last_error(r->db));
        (void)db_recover(r);
        return;
    }
    log_msg(CPB_LOG_WARN, so->source, so->id, "%s", msg);
    event_order(r, "order.changed", so, "order.cancelled", msg);
    r->attention = true;
}

/*
 * The applied orders the store cancelled, fully refunded or removed since
 * they were applied (STORE_CANCELLED = 1): under run.store_cancel =
 * "rollback" each is undone through `cpbridge rollback`'s code (o->undo),
 * which refuses a document no longer open or edited since, and then the
 * order is flagged with that reason; under "flag" each is flagged. A crash
 * leaves the mark set, so the next run decides again.
 */
static void store_cancels(struct runner *r)
{
    struct cpb_stmt *st = NULL;
    struct staged_order v[STORE_CANCEL_BATCH];
    char number[STORE_CANCEL_BATCH][40];
    size_t n = 0;
    int64_t now = host_now_ms();
    struct sql_arg a[] = {sql_time(now)};
    enum cpb_status rc = sql_query(r->db,
                                   "SELECT STAGING_ID, SOURCE, EXT_ORDER_ID, ORDER_NO"
                                   " FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                                   " AND STORE_CANCELLED = 1"
                                   " AND (LEASE_UNTIL IS NULL OR LEASE_UNTIL < ?)"
                                   " ORDER BY STAGING_ID",
                                   a, SQL_NARGS(a), &st);
    memset(v, 0, sizeof v);
    while (rc == CPB_OK && n < STORE_CANCEL_BATCH && (rc = db_fetch(st)) == CPB_OK) {
        const char *no = NULL;
        struct staged_order *so = &v[n];
        rc = db_col_int(st, 1, &so->id, NULL);
        if (rc == CPB_OK) {
            rc = dup_text(st, 2, &so->source);
        }
        if (rc == CPB_OK) {
            rc = dup_text(st, 3, &so->ext_id);
        }
        if (rc == CPB_OK) {
            rc = db_col_text(st, 4, &no);
        }
        n++;
        if (rc == CPB_OK) {
            snprintf(number[n - 1], sizeof number[0], "%s",
                     no != NULL           ? no
                     : so->ext_id != NULL ? so->ext_id
                                          : "?");
        }
    }
    db_finalize(st);
    if (rc != CPB_OK && rc != CPB_SKIP) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "could not list the orders the store cancelled: %s",
                db_last_error(r->db));
        (void)db_recover(r);
        r->attention = true;
        goto out;
    }
    bool rollback = r->p->cfg->run.store_cancel == STORE_CANCEL_ROLLBACK;
    bool note_due = any_takes_rollbacks(r->p);
    for (size_t i = 0; i < n && !r->fatal_db; i++) {
        struct staged_order *so = &v[i];
        char why[120];
        char msg[1000] = "";
        if (so->source == NULL || so->ext_id == NULL) {
            continue;
        }
        if (!rollback) {
            store_cancel_flag(r, so, number[i],
                              "run.store_cancel is \"flag\": roll it back by hand"
                              " (`cpbridge rollback`) or fix it in Counterpoint");
            continue;
        }
        if (r->o->undo == NULL) {
            store_cancel_flag(r, so, number[i],
                              "this program cannot roll orders back on its own here");
            continue;
        }
        snprintf(why, sizeof why, "store cancelled order %.39s", number[i]);
        int got = r->o->undo(r->o->undo_arg, r->db, so->id, why, note_due, msg, sizeof msg);
        if (got == 0) {
            char text[1200];
            snprintf(text, sizeof text, "%s: removed from Counterpoint, its inventory restored",
                     why);
            log_msg(CPB_LOG_WARN, so->source, so->id, "%s", text);
            event_order(r, "order.rolled_back", so, "store.rollback", text);
        } else if (got == 1) {
            char text[1200];
            snprintf(text, sizeof text, "it could not be rolled back: %s", msg);
            store_cancel_flag(r, so, number[i], text);
        } else if (got == 2) {
            log_msg(CPB_LOG_INFO, so->source, so->id,
                    "order %s: the store cancelled it; a run holds it, so the next run rolls it"
                    " back",
                    so->ext_id);
        } else {
            log_msg(CPB_LOG_ERROR, so->source, so->id,
                    "order %s: rolling it back failed (%s); the next run tries again", so->ext_id,
                    msg);
            (void)db_recover(r);
            r->attention = true;
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        staging_order_clear(&v[i]);
    }
}

/* ---- records that are not orders (ABI 1.5) -------------------------------- */

static enum cpb_status on_emit_records(void *owner, struct cpb_ctx *ctx, const char *kind,
                                       const char *const *keys, json_t *const *payloads, size_t n,
                                       enum cpb_status *out)
{
    struct runner *r = owner;
    const char *source = host_services()->stage_id(ctx);
    char msg[300];
    size_t queued = 0;
    if (!records_kind_ok(kind)) {
        log_msg(CPB_LOG_ERROR, source, 0,
                "emit_records: the kind must be 1 to 32 of a-z, 0-9, '-' and '_'");
        for (size_t i = 0; i < n; i++) {
            out[i] = CPB_FAIL;
        }
        return CPB_FAIL;
    }
    if (n == 0) {
        return CPB_OK;
    }
    enum cpb_status rc = records_stage(r->db, r->p->cfg->name, source, kind, keys, payloads, n,
                                       host_now_ms(), out, &queued, msg, sizeof msg);
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, source, 0, "could not stage %zu %s record(s): %s", n, kind,
                db_last_error(r->db));
        for (size_t i = 0; i < n; i++) {
            out[i] = CPB_RETRY;
        }
        /* Not db_recover here: the source may hold statements on this
         * connection. run_sources recovers once it has returned. */
        r->recover_after_source = true;
        return CPB_RETRY;
    }
    if (msg[0] != '\0') {
        log_msg(CPB_LOG_WARN, source, 0, "a %s record was refused: %s", kind, msg);
    }
    r->res->counts.rec_queued += (unsigned)queued;
    return CPB_OK;
}

/* One claimed record on its way through the CPB_RECORD stages. */
struct rec_item {
    struct cpb_record rec;
    enum cpb_status st; /* CPB_OK while it goes on */
    const char *stage;  /* the stage that stopped it */
    long retry_after;
    char code[64];
    char msg[1000];
};

static void rec_reason(struct rec_item *it, const struct stage_inst *s, enum cpb_status st,
                       const char *code, const char *msg, long retry_after)
{
    it->st = st;
    it->stage = s->cs->id;
    it->retry_after = retry_after;
    reason_of(s, st, it->code, sizeof it->code, it->msg, sizeof it->msg);
    if (code != NULL && code[0] != '\0') {
        snprintf(it->code, sizeof it->code, "%s", code);
        snprintf(it->msg, sizeof it->msg, "%s", msg != NULL ? msg : "");
    }
}

/* Hand the records still going (it[i].st == CPB_OK) to stage si, their
 * lease (`token`) renewed for it first. */
static void record_stage(struct runner *r, size_t si, const char *token, struct rec_item *it,
                         size_t n)
{
    struct stage_inst *s = &r->p->st[si];
    struct cpb_record **batch = calloc(n, sizeof *batch);
    size_t *idx = calloc(n, sizeof *idx);
    enum cpb_status *out = calloc(n, sizeof *out);
    size_t k = 0;
    loader_batch_fn pb = loader_process_batch(s->ls.desc);
    if (batch == NULL || idx == NULL || out == NULL) {
        for (size_t i = 0; i < n; i++) {
            if (it[i].st == CPB_OK) {
                it[i].st = CPB_RETRY;
                it[i].stage = s->cs->id;
                snprintf(it[i].code, sizeof it[i].code, "host.oom");
                snprintf(it[i].msg, sizeof it[i].msg, "out of memory");
            }
        }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (it[i].st == CPB_OK) {
            idx[k] = i;
            batch[k++] = &it[i].rec;
        }
    }
    if (k == 0) {
        goto out;
    }
    if (records_renew(r->db, token, host_now_ms() + r->p->cfg->run.lease_ms) != CPB_OK) {
        log_msg(CPB_LOG_WARN, s->cs->id, 0, "could not renew the lease of %zu record(s): %s", k,
                db_last_error(r->db));
    }
    int64_t t0 = mono_us();
    if (pb != NULL && host_batch_begin(s->ctx, k) == 0) {
        host_reason_clear(s->ctx);
        for (size_t j = 0; j < k; j++) {
            out[j] = CPB_RETRY;
        }
        pb(s->state, batch, k, out);
        long ra = host_retry_after_ms(s->ctx);
        for (size_t j = 0; j < k; j++) {
            if (out[j] != CPB_OK && out[j] != CPB_SKIP) {
                rec_reason(&it[idx[j]], s, out[j], host_batch_reason_code(s->ctx, j),
                           host_batch_reason_message(s->ctx, j), ra);
            }
        }
        host_batch_end(s->ctx);
    } else {
        for (size_t j = 0; j < k; j++) {
            host_reason_clear(s->ctx);
            enum cpb_status st = s->ls.desc->process(s->state, batch[j]);
            if (st != CPB_OK && st != CPB_SKIP) {
                rec_reason(&it[idx[j]], s, st, host_reason_code(s->ctx),
                           host_reason_message(s->ctx), host_retry_after_ms(s->ctx));
            }
        }
    }
    r->times[si].calls++;
    r->times[si].us += mono_us() - t0;
out:
    free(batch);
    free(idx);
    free(out);
}

/* Work one claimed batch v[0..n-1] through the record stages and record
 * each one's outcome. Returns false when the outcomes could not be
 * written (the run stops claiming records). */
static bool record_batch(struct runner *r, const char *token, struct staged_record *v, size_t n)
{
    bool ok = false;
    struct rec_item *it = calloc(n, sizeof *it);
    struct record_outcome *o = calloc(n, sizeof *o);
    char **results = calloc(n, sizeof *results);
    bool *lost = calloc(n, sizeof *lost);
    int64_t now = 0;
    if (it == NULL || o == NULL || results == NULL || lost == NULL) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "out of memory: %zu record(s) wait for their lease", n);
        r->attention = true;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        struct cpb_record *rec = &it[i].rec;
        *rec = (struct cpb_record){.size = sizeof *rec,
                                   .id = v[i].id,
                                   .source = v[i].source,
                                   .external_id = v[i].key,
                                   .attempt = v[i].attempts,
                                   .record_kind = v[i].kind};
        rec->payload = json_loads(v[i].payload != NULL ? v[i].payload : "", 0, &je);
        rec->result = v[i].result != NULL ? json_loads(v[i].result, 0, &je) : NULL;
        if (!json_is_object(rec->result)) {
            json_decref(rec->result);
            rec->result = json_object();
        }
        it[i].st = CPB_OK;
        if (!json_is_object(rec->payload)) {
            it[i].st = CPB_FAIL;
            snprintf(it[i].code, sizeof it[i].code, "record.payload");
            snprintf(it[i].msg, sizeof it[i].msg, "its stored payload is not a JSON object");
        } else if (rec->result == NULL) {
            it[i].st = CPB_RETRY;
            snprintf(it[i].code, sizeof it[i].code, "host.oom");
            snprintf(it[i].msg, sizeof it[i].msg, "out of memory");
        }
    }
    for (size_t si = 0; si < r->p->n; si++) {
        if (r->p->st[si].ls.desc->kind == CPB_RECORD) {
            record_stage(r, si, token, it, n);
        }
    }
    now = host_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct rec_item *x = &it[i];
        o[i] = (struct record_outcome){.rec = &v[i], .to = REC_DONE, .stage_id = x->stage};
        if (json_object_size(x->rec.result) > 0) {
            results[i] = json_dumps(x->rec.result, JSON_COMPACT | JSON_SORT_KEYS);
        }
        o[i].result = results[i];
        if (x->st == CPB_OK || x->st == CPB_SKIP) {
            o[i].message = v[i].payload; /* what is now true in the world */
            continue;
        }
        o[i].code = x->code;
        o[i].message = x->msg;
        if (x->st == CPB_RETRY && !retry_exhausted(&r->policy, v[i].attempts)) {
            int64_t delay = retry_delay_ms(&r->policy, v[i].attempts, &r->rng) + 1;
            o[i].to = REC_PENDING;
            o[i].next = now + (x->retry_after > delay ? x->retry_after : delay);
        } else {
            o[i].to = REC_DEAD;
        }
    }
    if (records_finish(r->db, token, r->res->run_id, o, n, now, lost) != CPB_OK) {
        log_msg(CPB_LOG_ERROR, NULL, 0,
                "could not record the outcome of %zu record(s): %s; they are tried again when"
                " their lease ends",
                n, db_last_error(r->db));
        r->attention = true;
        (void)db_recover(r);
        goto out;
    }
    ok = true;
    for (size_t i = 0; i < n; i++) {
        if (lost[i]) {
            log_msg(CPB_LOG_WARN, o[i].stage_id, 0,
                    "%s record %s: the lease ran out before its outcome was recorded; another run"
                    " has it%s",
                    v[i].kind, v[i].key,
                    strcmp(o[i].to, REC_DONE) == 0 ? " (due again, so its newest payload is pushed"
                                                     " last)"
                                                   : "");
        } else if (strcmp(o[i].to, REC_DONE) == 0) {
            r->res->counts.rec_done++;
        } else if (strcmp(o[i].to, REC_PENDING) == 0) {
            r->res->counts.rec_retry++;
            log_msg(CPB_LOG_WARN, o[i].stage_id, 0,
                    "%s record %s: attempt %u of %u failed (%s: %s)", v[i].kind, v[i].key,
                    v[i].attempts, r->policy.max_attempts, o[i].code, o[i].message);
        } else {
            r->res->counts.rec_dead++;
            r->attention = true;
            log_msg(CPB_LOG_WARN, o[i].stage_id, 0, "%s record %s is DEAD: %s: %s", v[i].kind,
                    v[i].key, o[i].code, o[i].message);
            json_t *d =
                json_pack("{s:s, s:s, s:s?, s:s, s:s}", "kind", v[i].kind, "key", v[i].key, "stage",
                          o[i].stage_id, "reason", o[i].code, "message", o[i].message);
            event_details(r, "record.dead", d);
            json_decref(d);
        }
    }
out:
    for (size_t i = 0; it != NULL && i < n; i++) {
        json_decref(it[i].rec.payload);
        json_decref(it[i].rec.result);
        if (results != NULL) {
            free(results[i]);
        }
    }
    free(it);
    free(o);
    free(results);
    free(lost);
    return ok;
}

/* Claim and work the pipeline's due records, a batch (run.batch) at a time. */
static void run_records(struct runner *r)
{
    const struct config_run *rc = &r->p->cfg->run;
    unsigned limit = rc->batch > 0 && rc->batch <= MAX_BATCH ? (unsigned)rc->batch : 50;
    struct staged_record *v = calloc(limit, sizeof *v);
    if (v == NULL) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "out of memory: no records handled");
        r->attention = true;
        return;
    }
    while (!r->fatal_db && (r->o->stop == NULL || !atomic_load(r->o->stop))) {
        char token[37];
        unsigned n = 0;
        host_services()->uuid(NULL, token);
        int64_t now = host_now_ms();
        if (records_claim(r->db, r->p->cfg->name, token, r->owner, now, r->due_by, rc->lease_ms,
                          limit, v, &n) != CPB_OK) {
            log_msg(CPB_LOG_ERROR, NULL, 0, "could not claim records: %s", db_last_error(r->db));
            (void)db_recover(r);
            r->attention = true;
            break;
        }
        if (n == 0) {
            break;
        }
        r->res->counts.rec_claimed += n;
        bool ok = record_batch(r, token, v, n);
        for (unsigned i = 0; i < n; i++) {
            records_clear(&v[i]);
        }
        if (!ok) {
            break;
        }
    }
    free(v);
}

/* ---- the run ------------------------------------------------------------- */

static char *stage_timings_json(struct runner *r)
{
    json_t *o = json_object();
    for (size_t i = 0; i < r->p->n; i++) {
        if (r->times[i].calls == 0) {
            continue;
        }
        json_object_set_new(o, r->p->st[i].cs->id,
                            json_pack("{s:I, s:f}", "calls", (json_int_t)r->times[i].calls, "ms",
                                      (double)r->times[i].us / 1000.0));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* The Prometheus textfile (metrics.file): this run and the gauges. A
 * failure is logged, never fatal: the orders are already safe. */
static void write_metrics(struct runner *r, struct db *db, int64_t started, int code)
{
    struct metrics_stage *stages = calloc(r->p->n > 0 ? r->p->n : 1, sizeof *stages);
    struct err e = {0};
    if (stages == NULL) {
        return;
    }
    for (size_t i = 0; i < r->p->n; i++) {
        stages[i].id = r->p->st[i].cs->id;
        stages[i].kind = loader_kind_name(r->p->st[i].ls.desc->kind);
        stages[i].calls = r->times[i].calls;
        stages[i].seconds = (double)r->times[i].us / 1e6;
        stages[i].custom = host_ctx_metrics(r->p->st[i].ctx);
    }
    struct metrics_run m = {
        .pipeline = r->p->cfg->name,
        .exit_code = code,
        .started_ms = started,
        .duration_ms = host_now_ms() - started,
        .counts = &r->res->counts,
        .notify_failed = r->res->notify_failed,
        .stages = stages,
        .n_stages = r->p->n,
    };
    if (metrics_write(r->p->cfg->metrics.file, db, &m, &e) != 0) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "%s", e.msg);
    }
    free(stages);
}

static int connect_db(struct runner *r, struct err *err)
{
    const struct config_database *c = &r->p->cfg->database;
    enum db_dialect d;
    int version = 0;
    if (db_dialect_parse(c->dialect, &d) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "unknown database dialect '%s'", c->dialect);
    }
    if (db_connect(c->connection, d, c->login_timeout_ms, &r->db, err) != 0) {
        return -1;
    }
    r->p->env.db = r->db;
    if (schema_current(r->db, &version, err) != 0) {
        return -1;
    }
    if (version < schema_latest(d)) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "the database's cpbridge schema is at version %d, this cpbridge needs %d:"
                       " run `cpbridge db init %s` first",
                       version, schema_latest(d), r->o->pipeline_path);
    }
    return 0;
}

static enum cpb_status on_withdraw(void *owner, struct cpb_ctx *ctx, const char *ext,
                                   const char *why);

int runner_run(struct pipeline *p, const struct run_options *o, struct run_result *res,
               struct err *err)
{
    struct runner r = {.p = p, .o = o, .res = res};
    char lock_path[1024];
    char host[100] = "localhost";
    int lock_fd = -1;
    int64_t t0 = host_now_ms();
    int code = CPB_EXIT_OK;

    r.started_ms = t0;

    memset(res, 0, sizeof *res);
    host_services()->uuid(NULL, res->run_id);
    host_services()->uuid(NULL, r.token);
    r.lease = o->dry_run ? NULL : r.token;
    (void)gethostname(host, sizeof host - 1);
    snprintf(r.owner, sizeof r.owner, "%s:%ld", host, (long)getpid());
    r.policy.base_ms = p->cfg->retry.base_ms;
    r.policy.cap_ms = p->cfg->retry.cap_ms;
    r.policy.max_attempts = (unsigned)p->cfg->retry.max_attempts;
    r.rng = retry_rng_seed();
    r.events = json_object();
    r.times = calloc(p->n > 0 ? p->n : 1, sizeof *r.times);
    r.after = calloc(MAX_BATCH, sizeof *r.after);
    if (r.events == NULL || r.times == NULL || r.after == NULL) {
        code = err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        code = CPB_EXIT_SOFTWARE;
        goto out;
    }
    log_set_run(res->run_id, p->cfg->name);

    if (p->cfg->run.lock_file != NULL) {
        snprintf(lock_path, sizeof lock_path, "%s", p->cfg->run.lock_file);
    } else if (lock_default_path(p->cfg->name, lock_path, sizeof lock_path) != 0) {
        err_set(err, CPB_EXIT_CONFIG, "the lock file path is too long");
        code = CPB_EXIT_CONFIG;
        goto out;
    }
    snprintf(r.alert_file, sizeof r.alert_file, "%s.alerts.json", lock_path);
    int got = o->apply_only ? 0 : lock_acquire(lock_path, &lock_fd, err);
    if (got != 0) {
        if (got == 1) {
            err_set(err, CPB_EXIT_TEMPFAIL, "another run of pipeline '%s' holds %s; nothing done",
                    p->cfg->name, lock_path);
        }
        code = err->code;
        goto out;
    }

    p->env.owner = &r;
    p->env.event = on_stage_event;
    p->env.emit = on_emit;
    p->env.emit_many = on_emit_many;
    p->env.emit_records = on_emit_records;
    p->env.withdraw = on_withdraw;
    if (connect_db(&r, err) != 0) {
        code = err->code;
        if (code == CPB_EXIT_UNAVAILABLE) {
            event_message(&r, "db.unreachable", NULL, "db.unreachable", err->msg);
        }
        event_message(&r, "run.failed", NULL, "run.failed", err->msg);
        if (!o->dry_run) {
            deliver_events(&r);
        }
        goto out;
    }
    if (!o->dry_run && !o->apply_only) {
        check_schedule(&r);
    }
    /* serve's workers log a run only when they claimed something (below). */
    if (!o->dry_run && !o->apply_only &&
        staging_run_start(r.db, res->run_id, p->cfg->name, host, t0) != CPB_OK) {
        err_set(err, CPB_EXIT_UNAVAILABLE, "could not write the run log: %s", db_last_error(r.db));
        code = CPB_EXIT_UNAVAILABLE;
        goto out;
    }

    if (!o->dry_run) {
        if (!o->apply_only) {
            run_sources(&r);
            report_progress(&r, false);
        }
        if (!r.fatal_db && has_kind(p, CPB_STEP)) {
            store_cancels(&r);
        }
        r.due_by = host_now_ms();
        if (!has_kind(p, CPB_STEP)) {
            /* Nothing would apply an order: claiming one would mark it
             * APPLIED with no document. Such a pipeline only stages. */
            if (!has_kind(p, CPB_RECORD)) {
                log_msg(CPB_LOG_INFO, NULL, 0,
                        "no step stages: orders are staged, and processed by a pipeline with"
                        " steps");
            }
        } else if (!r.fatal_db) {
            run_orders(&r);
        }
        /* Records after the orders: a large first push does not hold an
         * order back. */
        if (has_kind(p, CPB_RECORD) && !r.fatal_db) {
            run_records(&r);
        }
    } else {
        r.due_by = host_now_ms();
        dry_run_orders(&r);
        if (has_kind(p, CPB_RECORD)) {
            log_msg(CPB_LOG_INFO, NULL, 0,
                    "dry run: records are neither staged nor pushed (sources and record stages"
                    " do not run); `cpbridge records %s list` shows what is queued",
                    o->pipeline_path != NULL ? o->pipeline_path : p->cfg->name);
        }
    }

    res->duration_ms = host_now_ms() - t0;
    if (r.fatal_db) {
        err_set(err, CPB_EXIT_UNAVAILABLE, "the database became unreachable during the run");
        code = CPB_EXIT_UNAVAILABLE;
        event_message(&r, "run.failed", NULL, "db.unreachable", err->msg);
    } else {
        code = r.attention ? CPB_EXIT_ATTENTION : CPB_EXIT_OK;
    }
    if (o->dry_run) {
        goto out;
    }
    if (o->apply_only && res->counts.claimed == 0 && json_object_size(r.events) == 0) {
        goto out; /* a sweep that found nothing: no run log row, no summary */
    }
    if (o->apply_only && !r.fatal_db &&
        staging_run_start(r.db, res->run_id, p->cfg->name, host, t0) != CPB_OK) {
        log_msg(CPB_LOG_ERROR, NULL, 0, "could not write the run log: %s", db_last_error(r.db));
    }
    if (!r.fatal_db && !o->apply_only) {
        check_stale(&r);
    }
    event_obj(&r, "run.summary");
    deliver_events(&r);
    if (code == CPB_EXIT_OK && r.attention) {
        code = CPB_EXIT_ATTENTION;
    }
    if (!r.fatal_db) {
        char *timings = stage_timings_json(&r);
        const char *result = code == CPB_EXIT_OK ? "OK" : "ATTENTION";
        if (staging_run_end(r.db, res->run_id, result, code, &res->counts, res->duration_ms, NULL,
                            timings, host_now_ms()) != CPB_OK) {
            log_msg(CPB_LOG_ERROR, NULL, 0, "could not write the run summary: %s",
                    db_last_error(r.db));
        }
        free(timings);
    }
out:
    report_progress(&r, true);
    res->exit_code = code;
    if (p->cfg->metrics.file != NULL && !o->dry_run && code != CPB_EXIT_TEMPFAIL &&
        r.times != NULL && (!o->apply_only || res->counts.claimed > 0)) {
        write_metrics(&r, r.fatal_db ? NULL : r.db, t0, code);
    }
    p->env.emit = NULL;
    p->env.emit_many = NULL;
    p->env.emit_records = NULL;
    p->env.withdraw = NULL;
    p->env.event = NULL;
    p->env.owner = NULL;
    p->env.db = NULL;
    db_close(r.db);
    lock_release(lock_fd);
    json_decref(r.events);
    free(r.times);
    free(r.after);
    return code;
}

/* ---- serve's intake --------------------------------------------------------- */

struct runner_intake {
    struct runner r;
    struct run_options o;
    struct run_result res;
    pthread_mutex_t mu; /* one delivery at a time through the stages and r.db */
};

static enum cpb_status on_withdraw(void *owner, struct cpb_ctx *ctx, const char *ext,
                                   const char *why)
{
    struct runner *r = owner;
    const char *source = host_services()->stage_id(ctx);
    enum withdraw_outcome outcome = WITHDRAW_UNKNOWN;
    int64_t id = 0;
    enum cpb_status rc =
        staging_withdraw(r->db, source, ext, why, r->res->run_id, host_now_ms(), &outcome, &id);
    if (rc != CPB_OK) {
        log_msg(CPB_LOG_ERROR, source, 0, "could not record that order %s was removed: %s", ext,
                db_last_error(r->db));
        (void)db_recover(r);
        return CPB_RETRY;
    }
    switch (outcome) {
    case WITHDRAW_CANCELLED:
        log_msg(CPB_LOG_INFO, source, id, "order %s cancelled: %s", ext, why);
        return CPB_OK;
    case WITHDRAW_FLAGGED:
        log_msg(CPB_LOG_WARN, source, id,
                "order %s: %s, after it was applied to Counterpoint; run.store_cancel decides"
                " what happens (flag it, or roll it back)",
                ext, why);
        return CPB_OK;
    case WITHDRAW_UNKNOWN:
        log_msg(CPB_LOG_INFO, source, 0, "order %s was removed in the store; it is not staged here",
                ext);
        break;
    case WITHDRAW_ALREADY:
        break;
    }
    return CPB_SKIP;
}

int runner_intake_open(struct pipeline *p, const char *pipeline_path, struct runner_intake **out,
                       struct err *err)
{
    struct runner_intake *in = calloc(1, sizeof *in);
    char lock_path[1024];
    *out = NULL;
    if (in == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    in->o.pipeline_path = pipeline_path;
    in->r.p = p;
    in->r.o = &in->o;
    in->r.res = &in->res;
    host_services()->uuid(NULL, in->res.run_id);
    in->r.events = json_object();
    in->r.times = calloc(p->n > 0 ? p->n : 1, sizeof *in->r.times);
    if (in->r.events == NULL || in->r.times == NULL || pthread_mutex_init(&in->mu, NULL) != 0) {
        json_decref(in->r.events);
        free(in->r.times);
        free(in);
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    if (p->cfg->run.lock_file != NULL) {
        snprintf(lock_path, sizeof lock_path, "%s", p->cfg->run.lock_file);
    } else if (lock_default_path(p->cfg->name, lock_path, sizeof lock_path) != 0) {
        lock_path[0] = '\0';
    }
    snprintf(in->r.alert_file, sizeof in->r.alert_file, "%s.alerts.json", lock_path);
    p->env.owner = &in->r;
    p->env.event = on_stage_event;
    p->env.emit = on_emit;
    p->env.emit_many = on_emit_many;
    p->env.withdraw = on_withdraw;
    if (connect_db(&in->r, err) != 0) {
        runner_intake_close(in);
        return -1;
    }
    *out = in;
    return 0;
}

enum cpb_status runner_intake_receive(struct runner_intake *in, const char *stage_id,
                                      const struct cpb_delivery *d, struct cpb_answer *ans)
{
    struct pipeline *p = in->r.p;
    enum cpb_status st = CPB_FAIL;
    pthread_mutex_lock(&in->mu);
    log_set_run(in->res.run_id, p->cfg->name);
    ans->status = 404;
    snprintf(ans->message, sizeof ans->message, "no source stage receives here\n");
    for (size_t i = 0; i < p->n; i++) {
        struct stage_inst *s = &p->st[i];
        loader_receive_fn receive = loader_receive(s->ls.desc);
        if (s->ls.desc->kind != CPB_SOURCE || receive == NULL || strcmp(s->cs->id, stage_id) != 0) {
            continue;
        }
        if (in->r.fatal_db || db_broken(in->r.db)) {
            in->r.fatal_db = false;
            if (!db_recover(&in->r)) {
                ans->status = 503;
                snprintf(ans->message, sizeof ans->message, "the database is unreachable\n");
                st = CPB_RETRY;
                break;
            }
        }
        int64_t t0 = mono_us();
        host_reason_clear(s->ctx);
        st = receive(s->state, d, ans);
        in->r.times[i].calls++;
        in->r.times[i].us += mono_us() - t0;
        break;
    }
    pthread_mutex_unlock(&in->mu);
    return st;
}

void runner_intake_flush(struct runner_intake *in)
{
    pthread_mutex_lock(&in->mu);
    if (json_object_size(in->r.events) > 0) {
        log_set_run(in->res.run_id, in->r.p->cfg->name);
        deliver_events(&in->r);
        json_object_clear(in->r.events);
    }
    pthread_mutex_unlock(&in->mu);
}

enum cpb_status runner_intake_state_set(struct runner_intake *in, const char *key,
                                        const char *value)
{
    pthread_mutex_lock(&in->mu);
    enum cpb_status rc = in->r.db != NULL && !db_broken(in->r.db)
                             ? staging_state_set(in->r.db, key, value, host_now_ms())
                             : CPB_RETRY;
    if (rc != CPB_OK && in->r.db != NULL) {
        (void)db_recover(&in->r);
    }
    pthread_mutex_unlock(&in->mu);
    return rc;
}

void runner_intake_close(struct runner_intake *in)
{
    if (in == NULL) {
        return;
    }
    if (in->r.db != NULL) {
        runner_intake_flush(in);
    }
    struct pipeline *p = in->r.p;
    p->env.emit = NULL;
    p->env.emit_many = NULL;
    p->env.emit_records = NULL;
    p->env.withdraw = NULL;
    p->env.event = NULL;
    p->env.owner = NULL;
    p->env.db = NULL;
    db_close(in->r.db);
    json_decref(in->r.events);
    free(in->r.times);
    pthread_mutex_destroy(&in->mu);
    free(in);
}
