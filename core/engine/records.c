/*
 * records.c — keyed records that are not orders (see records.h).
 */
#include "engine/records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/order.h"
#include "lib/text.h"
#include "services/sql.h"

#define REC_KEY_MAX     100
#define REC_MESSAGE_MAX 1000
#define REC_ERROR_MAX   500

void records_clear(struct staged_record *r)
{
    free(r->kind);
    free(r->key);
    free(r->source);
    free(r->payload);
    free(r->hash);
    free(r->result);
    memset(r, 0, sizeof *r);
}

bool records_kind_ok(const char *kind)
{
    size_t n = kind != NULL ? strlen(kind) : 0;
    if (n == 0 || n > 32) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = kind[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

/* A key: 1 to 100 bytes of UTF-8 with no control characters. */
static bool key_ok(const char *key)
{
    size_t n = key != NULL ? strlen(key) : 0;
    if (n == 0 || n > REC_KEY_MAX || !text_utf8_valid(key, n)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

struct stage_args {
    const char *pipeline, *source, *kind;
    const char *const *keys;
    json_t *const *payloads;
    size_t n;
    int64_t now;
    enum cpb_status *out;
    size_t queued;
    char *msg;
    size_t msglen;
};

/* Stage one valid record: CPB_OK (queued), CPB_SKIP (unchanged) or the
 * database's status. */
static enum cpb_status stage_one(struct db *db, const struct stage_args *s, const char *key,
                                 const char *text, const char *hash)
{
    struct cpb_stmt *st = NULL;
    int64_t id = 0;
    const char *old = NULL;
    struct sql_arg k[] = {sql_text(s->pipeline), sql_text(s->kind), sql_text(key)};
    enum cpb_status rc = sql_query(db,
                                   "SELECT RECORD_ID, PAYLOAD_HASH FROM USER_RECORD_STAGING"
                                   " WHERE PIPELINE = ? AND KIND = ? AND REC_KEY = ?",
                                   k, SQL_NARGS(k), &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_SKIP) {
        struct sql_arg a[] = {sql_text(s->pipeline), sql_text(s->kind), sql_text(key),
                              sql_text(s->source),   sql_text(text),    sql_text(hash),
                              sql_time(s->now),      sql_time(s->now),  sql_time(s->now)};
        rc = sql_exec(db,
                      "INSERT INTO USER_RECORD_STAGING (PIPELINE, KIND, REC_KEY, SOURCE, PAYLOAD,"
                      " PAYLOAD_HASH, STATUS, ATTEMPTS, NEXT_ATTEMPT_DT, CREATED_DT, UPDATED_DT)"
                      " VALUES (?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?)",
                      a, SQL_NARGS(a), NULL);
        goto out;
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 1, &id, NULL);
    }
    if (rc == CPB_OK) {
        rc = db_col_text(st, 2, &old);
    }
    if (rc != CPB_OK) {
        goto out;
    }
    if (old != NULL && strcmp(old, hash) == 0) {
        rc = CPB_SKIP;
        goto out;
    }
    struct sql_arg u[] = {sql_text(s->source), sql_text(text),   sql_text(hash),
                          sql_time(s->now),    sql_time(s->now), sql_int(id)};
    rc = sql_exec(db,
                  "UPDATE USER_RECORD_STAGING SET SOURCE = ?, PAYLOAD = ?, PAYLOAD_HASH = ?,"
                  " STATUS = 'PENDING', ATTEMPTS = 0, NEXT_ATTEMPT_DT = ?, UPDATED_DT = ?,"
                  " LAST_ERROR_CODE = NULL, LAST_ERROR = NULL WHERE RECORD_ID = ?",
                  u, SQL_NARGS(u), NULL);
out:
    db_finalize(st);
    return rc;
}

static void first_problem(struct stage_args *s, size_t i, const char *what)
{
    if (s->msg != NULL && s->msglen > 0 && s->msg[0] == '\0') {
        snprintf(s->msg, s->msglen, "record %zu of %zu: %s", i + 1, s->n, what);
    }
}

static enum cpb_status stage_in_tx(struct db *db, void *arg)
{
    struct stage_args *s = arg;
    enum cpb_status rc = CPB_OK;
    s->queued = 0;
    for (size_t i = 0; i < s->n && rc == CPB_OK; i++) {
        char hash[65];
        char *text = NULL;
        s->out[i] = CPB_FAIL;
        if (!key_ok(s->keys[i])) {
            first_problem(s, i, "its key is not 1 to 100 bytes of printable UTF-8");
            continue;
        }
        if (!json_is_object(s->payloads[i])) {
            first_problem(s, i, "its payload is not a JSON object");
            continue;
        }
        text = json_dumps(s->payloads[i], JSON_COMPACT | JSON_SORT_KEYS);
        if (text == NULL || json_hash(s->payloads[i], hash) != 0) {
            free(text);
            first_problem(s, i, "out of memory");
            continue;
        }
        rc = stage_one(db, s, s->keys[i], text, hash);
        free(text);
        if (rc == CPB_OK || rc == CPB_SKIP) {
            s->out[i] = rc;
            s->queued += rc == CPB_OK;
            rc = CPB_OK;
        }
    }
    return rc;
}

enum cpb_status records_stage(struct db *db, const char *pipeline, const char *source,
                              const char *kind, const char *const *keys, json_t *const *payloads,
                              size_t n, int64_t now, enum cpb_status *out, size_t *queued,
                              char *msg, size_t msglen)
{
    struct stage_args s = {pipeline, source, kind, keys, payloads, n, now, out, 0, msg, msglen};
    if (msg != NULL && msglen > 0) {
        msg[0] = '\0';
    }
    enum cpb_status rc = sql_tx(db, stage_in_tx, &s);
    *queued = rc == CPB_OK ? s.queued : 0;
    return rc;
}

/* ---- claims -------------------------------------------------------------- */

#define REC_DUE                                                                                    \
    "PIPELINE = ? AND STATUS = 'PENDING' AND NEXT_ATTEMPT_DT <= ?"                                 \
    " AND (LEASE_UNTIL IS NULL OR LEASE_UNTIL < ?)"
#define REC_SET " SET LEASE_TOKEN = ?, LEASE_OWNER = ?, LEASE_UNTIL = ?, ATTEMPTS = ATTEMPTS + 1"

/*
 * The claim, per dialect, as staging.c claims orders (and for the same
 * reasons): parameters are the three REC_SET values, then the three REC_DUE
 * ones and the limit, except on SQL Server, where TOP comes first.
 */
static const struct {
    const char *sql;
    int limit_first;
} claim_sql[] = {
    [DB_SQLITE] = {"UPDATE USER_RECORD_STAGING" REC_SET " WHERE RECORD_ID IN"
                   " (SELECT RECORD_ID FROM USER_RECORD_STAGING WHERE " REC_DUE
                   " ORDER BY NEXT_ATTEMPT_DT, RECORD_ID LIMIT ?)",
                   0},
    [DB_POSTGRESQL] = {"UPDATE USER_RECORD_STAGING" REC_SET " WHERE RECORD_ID IN"
                       " (SELECT RECORD_ID FROM USER_RECORD_STAGING WHERE " REC_DUE
                       " ORDER BY NEXT_ATTEMPT_DT, RECORD_ID LIMIT ? FOR UPDATE SKIP LOCKED)",
                       0},
    [DB_MSSQL] = {"UPDATE USER_RECORD_STAGING" REC_SET " WHERE RECORD_ID IN"
                  " (SELECT TOP (?) RECORD_ID FROM USER_RECORD_STAGING"
                  " WITH (UPDLOCK, READPAST, ROWLOCK) WHERE " REC_DUE
                  " ORDER BY NEXT_ATTEMPT_DT, RECORD_ID)",
                  1},
};

struct claim_args {
    const char *pipeline, *token, *owner;
    int64_t now, due_by, lease_ms;
    unsigned limit;
    struct staged_record *v;
    unsigned n;
};

static enum cpb_status dup_col(struct cpb_stmt *st, unsigned col, char **out)
{
    const char *v = NULL;
    enum cpb_status rc = db_col_text(st, col, &v);
    if (rc == CPB_OK && v != NULL && (*out = strdup(v)) == NULL) {
        rc = CPB_FAIL;
    }
    return rc;
}

static enum cpb_status claim_in_tx(struct db *db, void *arg)
{
    struct claim_args *c = arg;
    enum db_dialect d = db_get_dialect(db);
    struct cpb_stmt *st = NULL;
    struct sql_arg lim = sql_int(c->limit);
    struct sql_arg a[7] = {sql_text(c->token), sql_text(c->owner), sql_time(c->now + c->lease_ms)};
    struct sql_arg due[] = {sql_text(c->pipeline), sql_time(c->due_by), sql_time(c->now)};
    size_t k = 3;
    if (claim_sql[d].limit_first) {
        a[k++] = lim;
    }
    for (size_t i = 0; i < SQL_NARGS(due); i++) {
        a[k++] = due[i];
    }
    if (!claim_sql[d].limit_first) {
        a[k++] = lim;
    }
    enum cpb_status rc = sql_exec(db, claim_sql[d].sql, a, k, NULL);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = sql_query(db,
                   "SELECT RECORD_ID, KIND, REC_KEY, SOURCE, PAYLOAD, PAYLOAD_HASH, RESULT,"
                   " ATTEMPTS FROM USER_RECORD_STAGING WHERE LEASE_TOKEN = ? ORDER BY RECORD_ID",
                   (struct sql_arg[]){sql_text(c->token)}, 1, &st);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        if (c->n >= c->limit) {
            continue;
        }
        struct staged_record *r = &c->v[c->n++];
        int64_t attempts = 0;
        rc = db_col_int(st, 1, &r->id, NULL);
        if (rc == CPB_OK) {
            rc = dup_col(st, 2, &r->kind);
        }
        if (rc == CPB_OK) {
            rc = dup_col(st, 3, &r->key);
        }
        if (rc == CPB_OK) {
            rc = dup_col(st, 4, &r->source);
        }
        if (rc == CPB_OK) {
            rc = dup_col(st, 5, &r->payload);
        }
        if (rc == CPB_OK) {
            rc = dup_col(st, 6, &r->hash);
        }
        if (rc == CPB_OK) {
            rc = dup_col(st, 7, &r->result);
        }
        if (rc == CPB_OK) {
            rc = db_col_int(st, 8, &attempts, NULL);
        }
        r->attempts = attempts > 0 ? (unsigned)attempts : 1;
    }
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
    }
out:
    db_finalize(st);
    return rc;
}

enum cpb_status records_claim(struct db *db, const char *pipeline, const char *token,
                              const char *owner, int64_t now, int64_t due_by, int64_t lease_ms,
                              unsigned limit, struct staged_record *v, unsigned *n)
{
    struct claim_args c = {pipeline, token, owner, now, due_by, lease_ms, limit, v, 0};
    enum cpb_status rc = sql_tx(db, claim_in_tx, &c);
    if (rc != CPB_OK) {
        for (unsigned i = 0; i < c.n; i++) {
            records_clear(&v[i]);
        }
        c.n = 0;
    }
    *n = c.n;
    return rc;
}

/* ---- outcomes ------------------------------------------------------------ */

struct finish_args {
    const char *token, *run_id;
    const struct record_outcome *o;
    size_t n;
    int64_t now;
    bool *lost;
};

/* Release the claim of a record whose outcome is not written as asked:
 * its lease only (what the stage learned kept), or also its next attempt
 * and error (a retry). *rows: 0 when the claim was lost. */
static enum cpb_status release(struct db *db, const struct finish_args *f,
                               const struct record_outcome *o, bool retry, const char *err,
                               int64_t *rows)
{
    if (retry) {
        struct sql_arg a[] = {sql_time(o->next),     sql_text(o->code),   sql_text(err),
                              sql_text(o->result),   sql_int(o->rec->id), sql_text(f->token),
                              sql_text(o->rec->hash)};
        enum cpb_status rc = sql_exec(
            db,
            "UPDATE USER_RECORD_STAGING SET NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = ?,"
            " LAST_ERROR = ?, RESULT = ?, LEASE_TOKEN = NULL, LEASE_OWNER = NULL,"
            " LEASE_UNTIL = NULL WHERE RECORD_ID = ? AND LEASE_TOKEN = ? AND PAYLOAD_HASH = ?",
            a, SQL_NARGS(a), rows);
        if (rc != CPB_OK || *rows > 0) {
            return rc;
        }
    }
    /* Its payload changed since the claim: the new one stays PENDING, due
     * as it was staged, with its attempts; what the stage learned is kept. */
    struct sql_arg a[] = {sql_text(o->result), sql_int(o->rec->id), sql_text(f->token)};
    return sql_exec(db,
                    "UPDATE USER_RECORD_STAGING SET RESULT = ?, LEASE_TOKEN = NULL,"
                    " LEASE_OWNER = NULL, LEASE_UNTIL = NULL"
                    " WHERE RECORD_ID = ? AND LEASE_TOKEN = ?",
                    a, SQL_NARGS(a), rows);
}

static enum cpb_status finish_one(struct db *db, const struct finish_args *f,
                                  const struct record_outcome *o, bool *lost)
{
    int64_t rows = 0;
    bool pending = strcmp(o->to, REC_PENDING) == 0;
    bool done = strcmp(o->to, REC_DONE) == 0;
    char *err = done ? NULL : text_utf8_cut(o->message, REC_ERROR_MAX);
    char *msg = text_utf8_cut(o->message, REC_MESSAGE_MAX);
    enum cpb_status rc = CPB_OK;
    *lost = false;
    if (!pending) {
        /* DONE or DEAD, for the payload that was pushed only. */
        struct sql_arg a[] = {sql_text(o->to),       sql_text(done ? NULL : o->code),
                              sql_text(err),         sql_text(o->result),
                              sql_time(f->now),      done ? sql_time(f->now) : sql_null(),
                              sql_int(o->rec->id),   sql_text(f->token),
                              sql_text(o->rec->hash)};
        rc = sql_exec(db,
                      "UPDATE USER_RECORD_STAGING SET STATUS = ?, LAST_ERROR_CODE = ?,"
                      " LAST_ERROR = ?, RESULT = ?, UPDATED_DT = ?, DONE_DT = ?,"
                      " LEASE_TOKEN = NULL, LEASE_OWNER = NULL, LEASE_UNTIL = NULL"
                      " WHERE RECORD_ID = ? AND LEASE_TOKEN = ? AND PAYLOAD_HASH = ?",
                      a, SQL_NARGS(a), &rows);
    }
    if (rc == CPB_OK && rows == 0) {
        rc = release(db, f, o, pending, err, &rows);
    }
    if (rc == CPB_OK && rows == 0) {
        /* The lease ran out and another run took the record over. When the
         * stage did push it, what it pushed may be older than what the other
         * run pushes: due again now, so the newest payload is pushed last. */
        *lost = true;
        if (done) {
            struct sql_arg a[] = {sql_time(f->now), sql_int(o->rec->id)};
            rc = sql_exec(db,
                          "UPDATE USER_RECORD_STAGING SET STATUS = 'PENDING', NEXT_ATTEMPT_DT = ?"
                          " WHERE RECORD_ID = ?",
                          a, SQL_NARGS(a), NULL);
        }
        goto out;
    }
    if (rc != CPB_OK) {
        goto out;
    }
    struct sql_arg ev[] = {
        sql_int(o->rec->id),   sql_text(f->run_id),
        sql_time(f->now),      sql_text(done ? "done" : pending ? "retry" : "dead"),
        sql_text(o->stage_id), sql_text(o->code),
        sql_text(msg)};
    rc = sql_exec(db,
                  "INSERT INTO USER_RECORD_EVENT (RECORD_ID, RUN_ID, EVENT_DT, KIND, STAGE_ID,"
                  " CODE, MESSAGE) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  ev, SQL_NARGS(ev), NULL);
out:
    free(err);
    free(msg);
    return rc;
}

enum cpb_status records_renew(struct db *db, const char *token, int64_t until)
{
    struct sql_arg a[] = {sql_time(until), sql_text(token)};
    return sql_exec(db, "UPDATE USER_RECORD_STAGING SET LEASE_UNTIL = ? WHERE LEASE_TOKEN = ?", a,
                    SQL_NARGS(a), NULL);
}

static enum cpb_status finish_in_tx(struct db *db, void *arg)
{
    struct finish_args *f = arg;
    enum cpb_status rc = CPB_OK;
    for (size_t i = 0; i < f->n && rc == CPB_OK; i++) {
        rc = finish_one(db, f, &f->o[i], &f->lost[i]);
    }
    return rc;
}

enum cpb_status records_finish(struct db *db, const char *token, const char *run_id,
                               const struct record_outcome *o, size_t n, int64_t now, bool *lost)
{
    struct finish_args f = {token, run_id, o, n, now, lost};
    return sql_tx(db, finish_in_tx, &f);
}

enum cpb_status records_count(struct db *db, const char *pipeline, struct record_counts *c)
{
    struct cpb_stmt *st = NULL;
    memset(c, 0, sizeof *c);
    struct sql_arg a[] = {sql_text(pipeline), sql_int(pipeline == NULL ? 1 : 0)};
    enum cpb_status rc = sql_query(db,
                                   "SELECT STATUS, COUNT(*), MIN(UPDATED_DT) FROM"
                                   " USER_RECORD_STAGING WHERE (PIPELINE = ? OR 1 = ?)"
                                   " GROUP BY STATUS",
                                   a, SQL_NARGS(a), &st);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        const char *status = NULL;
        int64_t count = 0, oldest = 0;
        bool null = true;
        rc = db_col_text(st, 1, &status);
        if (rc == CPB_OK) {
            rc = db_col_int(st, 2, &count, NULL);
        }
        if (rc == CPB_OK) {
            rc = db_col_time(st, 3, &oldest, &null);
        }
        if (rc != CPB_OK || status == NULL) {
            continue;
        }
        if (strcmp(status, REC_PENDING) == 0) {
            c->pending = count;
            c->oldest_pending_ms = null ? 0 : oldest;
        } else if (strcmp(status, REC_DONE) == 0) {
            c->done = count;
        } else if (strcmp(status, REC_DEAD) == 0) {
            c->dead = count;
        }
    }
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
    }
    db_finalize(st);
    return rc;
}
