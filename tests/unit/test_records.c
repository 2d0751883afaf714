/*
 * test_records.c — records that are not orders (ABI 1.5) through the real
 * runner, on SQLite and PostgreSQL: a fixture source (test-records) stages
 * keyed records with emit_records and a fixture record stage (test-push)
 * pushes them. Staged once, pushed once; unchanged ones are not queued
 * again; a change is pushed with what the stage kept (result); FAIL is DEAD
 * at once and reported once; RETRY backs off and ends DEAD after
 * retry.max_attempts; a lease held by another run is respected; a payload
 * staged while its record is being pushed is not lost; pipelines keep their
 * records apart; status figures, health and the metrics file show them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ops.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/metrics.h"
#include "engine/pipeline.h"
#include "engine/records.h"
#include "engine/runner.h"
#include "services/db.h"
#include "services/sql.h"

static enum db_dialect dialect;
static char conn[1024];
static char logfile[1024];

/* The text column `sql` selects for `arg` equals `want` (NULL: SQL NULL). */
static void expect_text(struct db *db, const char *sql, const char *arg, const char *want)
{
    char *got = cpbtest_q_text(db, sql, arg);
    if (want == NULL) {
        CU_ASSERT_PTR_NULL(got);
    } else {
        CU_ASSERT_PTR_NOT_NULL(got);
        if (got != NULL) {
            CU_ASSERT_STRING_EQUAL(got, want);
            if (strcmp(got, want) != 0) {
                fprintf(stderr, "%s [%s]: got %s, want %s\n", sql, arg, got, want);
            }
        }
    }
    free(got);
}

static const char *state_of(struct db *db, const char *pipeline, const char *key, char *out,
                            size_t n)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    snprintf(out, n, "(none)");
    struct sql_arg a[] = {sql_text(pipeline), sql_text(key)};
    if (sql_query(db,
                  "SELECT STATUS FROM USER_RECORD_STAGING WHERE PIPELINE = ? AND KIND = 'probe'"
                  " AND REC_KEY = ?",
                  a, 2, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        snprintf(out, n, "%s", v);
    }
    db_finalize(st);
    return out;
}

#define STATE(db, p, k) state_of((db), (p), (k), (char[16]){0}, 16)

/* Lines of the call log that start with `prefix`. */
static int calls(const char *prefix)
{
    char *text = cpbtest_slurp(logfile, NULL);
    int n = 0;
    size_t len = strlen(prefix);
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, len) == 0) {
            n++;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);
    return n;
}

static const char *write_records(const char *name, const char *json)
{
    const char *path = cpbtest_path(name);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, json), 0);
    return path;
}

/* A pipeline `name` of test-records (reading records_file) and test-push
 * (with `push` option lines). Returns its path (static rotation). */
static const char *pipeline(const char *name, const char *records_file, const char *push)
{
    char text[4096];
    char file[80];
    snprintf(text, sizeof text,
             "name = \"%s\";\n"
             "stage_dirs = [\"%s\"];\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s.lock\"; batch = 2; };\n"
             "retry = { max_attempts = 2; base = \"1m\"; cap = \"1h\"; };\n"
             "metrics = { file = \"%s.prom\"; };\n"
             "stages = (\n"
             "  { stage = \"test-records\"; options = { log_file = \"%s\"; records_file = \"%s\";"
             " }; },\n"
             "  { stage = \"test-push\"; options = { log_file = \"%s\"; %s }; }\n"
             ");\n",
             name, cpbtest_build("fixture-stages"), dialect == DB_SQLITE ? "sqlite" : "postgresql",
             conn, cpbtest_path(name), cpbtest_path(name), logfile, records_file, logfile, push);
    snprintf(file, sizeof file, "%s.cfg", name);
    const char *path = cpbtest_path(file);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

/* Run `path` with a fresh call log; the exit code, counts in *res. */
static int run(const char *path, struct run_result *res)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = path};
    CU_ASSERT_EQUAL(cpbtest_write(logfile, ""), 0);
    if (pipeline_open(path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        fprintf(stderr, "%s: %s\n", path, e.msg);
        pipeline_close(p);
        CU_FAIL("the pipeline did not open");
        return -1;
    }
    int code = runner_run(p, &o, res, &e);
    pipeline_close(p);
    return code;
}

static void test_push_once(void)
{
    struct run_result res;
    struct db *db = cpbtest_connect(conn, dialect);
    char recs[1024]; /* cpbtest_path's buffers rotate: keep a copy */
    snprintf(recs, sizeof recs, "%s",
             write_records("once.json", "{\"a\": {\"q\": 1}, \"b\": {\"q\": 2},"
                                        " \"c\": {\"q\": 3}, \"d\": {\"x\": 1, \"y\": 2}}"));
    const char *path = pipeline("rec-once", recs, "");

    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 4);
    CU_ASSERT_EQUAL(res.counts.rec_claimed, 4);
    CU_ASSERT_EQUAL(res.counts.rec_done, 4);
    CU_ASSERT_EQUAL(calls("test-push batch 2"), 2); /* run.batch = 2 */
    CU_ASSERT_EQUAL(calls("test-push a 1 probe {\"q\":1}"), 1);
    CU_ASSERT_EQUAL(calls("test-records a ok"), 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-once", "c"), REC_DONE);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_RECORD_EVENT E JOIN USER_RECORD_STAGING S"
                      " ON S.RECORD_ID = E.RECORD_ID WHERE S.PIPELINE = ? AND E.KIND = 'done'",
                      "rec-once"),
        4);
    expect_text(db,
                "SELECT E.MESSAGE FROM USER_RECORD_EVENT E JOIN USER_RECORD_STAGING S"
                " ON S.RECORD_ID = E.RECORD_ID WHERE S.REC_KEY = ? AND S.PIPELINE = 'rec-once'",
                "b", "{\"q\":2}");

    /* Nothing changed: nothing queued, nothing pushed. The same payload
     * with its keys in another order is the same payload. */
    write_records("once.json", "{\"a\": {\"q\": 1}, \"b\": {\"q\": 2}, \"c\": {\"q\": 3},"
                               " \"d\": {\"y\": 2, \"x\": 1}}");
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 0);
    CU_ASSERT_EQUAL(res.counts.rec_claimed, 0);
    CU_ASSERT_EQUAL(calls("test-push"), 0);
    CU_ASSERT_EQUAL(calls("test-records d skip"), 1);

    /* One change: that record alone, with the result its stage kept. */
    write_records("once.json", "{\"a\": {\"q\": 1}, \"b\": {\"q\": 5}, \"c\": {\"q\": 3},"
                               " \"d\": {\"x\": 1, \"y\": 2}}");
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 1);
    CU_ASSERT_EQUAL(res.counts.rec_done, 1);
    CU_ASSERT_EQUAL(calls("test-push b 1 probe {\"q\":5}"), 1);
    CU_ASSERT_EQUAL(calls("test-push a "), 0);
    expect_text(
        db, "SELECT RESULT FROM USER_RECORD_STAGING WHERE REC_KEY = ? AND PIPELINE = 'rec-once'",
        "b", "{\"pushes\":2}");
    expect_text(
        db, "SELECT RESULT FROM USER_RECORD_STAGING WHERE REC_KEY = ? AND PIPELINE = 'rec-once'",
        "a", "{\"pushes\":1}");

    /* A second pipeline on the same database has records of its own. */
    const char *other = pipeline("rec-other", recs, "");
    CU_ASSERT_EQUAL(run(other, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 4);
    CU_ASSERT_EQUAL(res.counts.rec_done, 4);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_RECORD_STAGING WHERE REC_KEY = ?", "a"), 2);

    /* The metrics file shows them. */
    char *prom = cpbtest_slurp(cpbtest_path("rec-once.prom"), NULL);
    CU_ASSERT_PTR_NOT_NULL(prom);
    if (prom != NULL) {
        CU_ASSERT_PTR_NOT_NULL(
            strstr(prom, "cpbridge_records{pipeline=\"rec-once\",state=\"DONE\"} 4"));
        CU_ASSERT_PTR_NOT_NULL(
            strstr(prom, "cpbridge_run_records{pipeline=\"rec-once\",result=\"done\"} 1"));
    }
    free(prom);
    db_close(db);
}

static void test_bad_input(void)
{
    struct run_result res;
    struct db *db = cpbtest_connect(conn, dialect);
    /* An empty key and a payload that is no object are refused, the rest
     * staged. */
    const char *recs =
        write_records("bad.json", "{\"\": {\"q\": 1}, \"n\": 5, \"ok\": {\"q\": 1}}");
    const char *path = pipeline("rec-bad", recs, "");
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_queued, 1);
    CU_ASSERT_EQUAL(calls("test-records  fail"), 1);
    CU_ASSERT_EQUAL(calls("test-records n fail"), 1);
    CU_ASSERT_EQUAL(calls("test-push ok 1"), 1);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db, "SELECT COUNT(*) FROM USER_RECORD_STAGING WHERE PIPELINE = ?", "rec-bad"),
        1);
    db_close(db);
}

static void test_fail_dead_once(void)
{
    struct run_result res;
    struct db *db = cpbtest_connect(conn, dialect);
    char recs[1024]; /* cpbtest_path's buffers rotate: keep a copy */
    snprintf(recs, sizeof recs, "%s",
             write_records("fail.json", "{\"bad\": {\"q\": 1}, \"good\": {\"q\": 1}}"));
    const char *path = pipeline("rec-fail", recs, "fail = [\"bad\"];");

    CU_ASSERT_EQUAL(run(path, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.rec_dead, 1);
    CU_ASSERT_EQUAL(res.counts.rec_done, 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-fail", "bad"), REC_DEAD);
    expect_text(db,
                "SELECT LAST_ERROR_CODE FROM USER_RECORD_STAGING WHERE REC_KEY = ?"
                " AND PIPELINE = 'rec-fail'",
                "bad", "test.fail");
    expect_text(db,
                "SELECT E.CODE FROM USER_RECORD_EVENT E JOIN USER_RECORD_STAGING S"
                " ON S.RECORD_ID = E.RECORD_ID WHERE S.REC_KEY = ? AND E.KIND = 'dead'"
                " AND S.PIPELINE = 'rec-fail'",
                "bad", "test.fail");

    /* Health says so; the figures count it. */
    char *argv[] = {"health", (char *)path, NULL};
    CU_ASSERT_NOT_EQUAL(ops_main("health", 2, argv), 0);
    char *status[] = {"status", (char *)path, NULL};
    CU_ASSERT_EQUAL(ops_main("status", 2, status), 0); /* lists the dead record */
    char *status_json[] = {"status", (char *)path, "--json", NULL};
    CU_ASSERT_EQUAL(ops_main("status", 3, status_json), 0);
    struct metrics_snapshot s;
    struct err e = {0};
    CU_ASSERT_EQUAL(metrics_snapshot(db, "rec-fail", host_now_ms(), &s, &e), 0);
    CU_ASSERT_EQUAL(s.records.dead, 1);
    CU_ASSERT_EQUAL(s.records.done, 1);
    CU_ASSERT_EQUAL(s.records.pending, 0);

    /* Reported once: the same payload is not tried again. */
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_claimed, 0);
    CU_ASSERT_EQUAL(calls("test-push bad"), 0);

    /* A changed payload is queued again. */
    write_records("fail.json", "{\"bad\": {\"q\": 2}, \"good\": {\"q\": 1}}");
    CU_ASSERT_EQUAL(run(path, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(calls("test-push bad 1 probe {\"q\":2}"), 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-fail", "bad"), REC_DEAD);

    /* The cause fixed (the stage no longer refuses it): a person retries
     * it, with an audit event, and the next run pushes it. */
    char *nodead[] = {"records", (char *)path, "retry", "good", NULL};
    CU_ASSERT_EQUAL(ops_main("records", 4, nodead), CPB_EXIT_DATAERR); /* DONE, not DEAD */
    char *unknown[] = {"records", (char *)path, "retry", "nope", NULL};
    CU_ASSERT_EQUAL(ops_main("records", 4, unknown), CPB_EXIT_NOINPUT);
    char *other[] = {"records", (char *)path, "retry", "--all", "--reason", "other.code", NULL};
    CU_ASSERT_EQUAL(ops_main("records", 6, other), 0);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-fail", "bad"), REC_DEAD);
    char *retry[] = {"records",   (char *)path, "retry",     "--all", "--reason",
                     "test.fail", "--why",      "key fixed", NULL};
    CU_ASSERT_EQUAL(ops_main("records", 8, retry), 0);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-fail", "bad"), REC_PENDING);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_RECORD_EVENT E JOIN"
                                  " USER_RECORD_STAGING S ON S.RECORD_ID = E.RECORD_ID"
                                  " WHERE S.PIPELINE = 'rec-fail' AND E.KIND = 'requeue'"
                                  " AND E.MESSAGE LIKE ?",
                                  "retried by %: key fixed"),
                    1);
    path = pipeline("rec-fail", recs, "");
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(calls("test-push bad 1 probe {\"q\":2}"), 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-fail", "bad"), REC_DONE);
    char *list[] = {"records", (char *)path, "list", "--state", "DONE", "--json", NULL};
    CU_ASSERT_EQUAL(ops_main("records", 6, list), 0);
    db_close(db);
}

static void test_retry_then_dead(void)
{
    struct run_result res;
    struct db *db = cpbtest_connect(conn, dialect);
    const char *recs = write_records("retry.json", "{\"slow\": {\"q\": 1}}");
    const char *path = pipeline("rec-retry", recs, "retry = [\"slow\"];");

    int64_t before = host_now_ms();
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(res.counts.rec_retry, 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-retry", "slow"), REC_PENDING);
    CU_ASSERT_EQUAL(cpbtest_q_int(db, "SELECT ATTEMPTS FROM USER_RECORD_STAGING WHERE PIPELINE = ?",
                                  "rec-retry"),
                    1);
    int64_t later = 0;
    struct sql_arg la[] = {sql_text("rec-retry"), sql_time(before)};
    CU_ASSERT_EQUAL(sql_query_int(db,
                                  "SELECT COUNT(*) FROM USER_RECORD_STAGING WHERE PIPELINE = ?"
                                  " AND NEXT_ATTEMPT_DT > ? AND LEASE_TOKEN IS NULL"
                                  " AND LAST_ERROR_CODE = 'test.retry'",
                                  la, 2, &later, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(later, 1);

    /* Not due yet (an hour from now): the next run leaves it. */
    struct sql_arg ha[] = {sql_time(host_now_ms() + 3600000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE USER_RECORD_STAGING SET NEXT_ATTEMPT_DT = ?"
                             " WHERE PIPELINE = 'rec-retry'",
                             ha, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run(path, &res), 0);
    CU_ASSERT_EQUAL(calls("test-push slow"), 0);

    /* Due: the second attempt is the last (max_attempts = 2). */
    struct sql_arg pa[] = {sql_time(host_now_ms() - 1000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE USER_RECORD_STAGING SET NEXT_ATTEMPT_DT = ?"
                             " WHERE PIPELINE = 'rec-retry'",
                             pa, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run(path, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(calls("test-push slow 2 "), 1);
    CU_ASSERT_EQUAL(res.counts.rec_dead, 1);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-retry", "slow"), REC_DEAD);
    CU_ASSERT_EQUAL(
        cpbtest_q_int(db,
                      "SELECT COUNT(*) FROM USER_RECORD_EVENT E JOIN USER_RECORD_STAGING S"
                      " ON S.RECORD_ID = E.RECORD_ID WHERE S.PIPELINE = ?"
                      " AND E.KIND IN ('retry', 'dead')",
                      "rec-retry"),
        2);
    db_close(db);
}

/* The claim, the race with a new payload and a lease held by another. */
static void test_leases(void)
{
    struct db *db = cpbtest_connect(conn, dialect);
    const char *keys[] = {"k1", "k2"};
    json_t *p1[] = {json_pack("{s:i}", "q", 1), json_pack("{s:i}", "q", 2)};
    json_t *p2[] = {json_pack("{s:i}", "q", 10)};
    enum cpb_status out[2];
    struct staged_record v[4];
    unsigned n = 0;
    size_t queued = 0;
    char msg[200];
    bool lost[2] = {false, false};
    int64_t now = host_now_ms();

    memset(v, 0, sizeof v);
    CU_ASSERT_EQUAL(records_stage(db, "rec-lease", "src", "probe", keys, p1, 2, now, out, &queued,
                                  msg, sizeof msg),
                    CPB_OK);
    CU_ASSERT_EQUAL(queued, 2);
    CU_ASSERT_EQUAL(records_claim(db, "rec-lease", "tok-1", "me", now, now, 60000, 4, v, &n),
                    CPB_OK);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(v[0].attempts, 1);
    /* Held: another claim gets nothing. */
    struct staged_record w[4];
    unsigned m = 9;
    memset(w, 0, sizeof w);
    CU_ASSERT_EQUAL(records_claim(db, "rec-lease", "tok-2", "other", now, now, 60000, 4, w, &m),
                    CPB_OK);
    CU_ASSERT_EQUAL(m, 0);

    /* k1 changes while it is being pushed: its DONE is for the old payload,
     * so the new one stays PENDING and is claimed next. */
    CU_ASSERT_EQUAL(records_stage(db, "rec-lease", "src", "probe", keys, p2, 1, now + 1, out,
                                  &queued, msg, sizeof msg),
                    CPB_OK);
    CU_ASSERT_EQUAL(queued, 1);
    struct record_outcome o[2] = {
        {.rec = &v[0], .to = REC_DONE, .stage_id = "push", .message = "pushed"},
        {.rec = &v[1], .to = REC_DONE, .stage_id = "push", .message = "pushed"},
    };
    CU_ASSERT_EQUAL(records_finish(db, "tok-1", "run", o, 2, now + 2, lost), CPB_OK);
    CU_ASSERT_FALSE(lost[0]);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-lease", "k1"), REC_PENDING);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-lease", "k2"), REC_DONE);
    CU_ASSERT_EQUAL(
        records_claim(db, "rec-lease", "tok-3", "me", now + 3, now + 3, 60000, 4, w, &m), CPB_OK);
    CU_ASSERT_EQUAL_FATAL(m, 1);
    CU_ASSERT_STRING_EQUAL(w[0].key, "k1");
    CU_ASSERT_STRING_EQUAL(w[0].payload, "{\"q\":10}");

    /* A lease that ran out: the old token's outcome is refused (lost). */
    CU_ASSERT_EQUAL(records_claim(db, "rec-lease", "tok-4", "next", now + 70000, now + 70000, 60000,
                                  4, v + 2, &n),
                    CPB_OK);
    CU_ASSERT_EQUAL(n, 1);
    struct record_outcome late = {.rec = &w[0], .to = REC_DONE, .stage_id = "push"};
    CU_ASSERT_EQUAL(records_finish(db, "tok-3", "run", &late, 1, now + 70001, lost), CPB_OK);
    CU_ASSERT_TRUE(lost[0]);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-lease", "k1"), REC_PENDING);

    /* k2 again: a RETRY whose payload changed meanwhile keeps the new one
     * due as staged, with no error of the old one's; and a long message of
     * many-byte characters is cut to the columns, not looped on. */
    json_t *p3[] = {json_pack("{s:i}", "q", 20), json_pack("{s:i}", "q", 30)};
    CU_ASSERT_EQUAL(records_stage(db, "rec-lease", "src", "probe", keys, p3, 2, now + 80000, out,
                                  &queued, msg, sizeof msg),
                    CPB_OK);
    struct staged_record x[4];
    unsigned nx = 0;
    memset(x, 0, sizeof x);
    CU_ASSERT_EQUAL(
        records_claim(db, "rec-lease", "tok-5", "me", now + 200000, now + 200000, 60000, 4, x, &nx),
        CPB_OK);
    CU_ASSERT_EQUAL_FATAL(nx, 2);
    json_t *p4[] = {json_pack("{s:i}", "q", 40)};
    CU_ASSERT_EQUAL(records_stage(db, "rec-lease", "src", "probe", keys + 1, p4, 1, now + 200001,
                                  out, &queued, msg, sizeof msg),
                    CPB_OK);
    char longmsg[3001];
    for (size_t i = 0; i + 2 < sizeof longmsg; i += 2) {
        memcpy(longmsg + i, "\xc3\xa9", 2); /* U+00E9, 1,500 of them */
    }
    longmsg[sizeof longmsg - 1] = '\0';
    struct record_outcome r2[2] = {
        {.rec = &x[0], .to = REC_DEAD, .stage_id = "push", .code = "t.long", .message = longmsg},
        {.rec = &x[1],
         .to = REC_PENDING,
         .next = now + 9999999,
         .stage_id = "push",
         .code = "t.retry",
         .message = longmsg},
    };
    CU_ASSERT_EQUAL(records_finish(db, "tok-5", "run", r2, 2, now + 200002, lost), CPB_OK);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-lease", "k1"), REC_DEAD);
    CU_ASSERT_STRING_EQUAL(STATE(db, "rec-lease", "k2"), REC_PENDING);
    CU_ASSERT_EQUAL(cpbtest_q_int(db,
                                  "SELECT COUNT(*) FROM USER_RECORD_STAGING WHERE REC_KEY = ?"
                                  " AND PIPELINE = 'rec-lease' AND LAST_ERROR_CODE IS NULL"
                                  " AND LEASE_TOKEN IS NULL",
                                  "k2"),
                    1);
    char *kept = cpbtest_q_text(db,
                                "SELECT LAST_ERROR FROM USER_RECORD_STAGING WHERE REC_KEY = ?"
                                " AND PIPELINE = 'rec-lease'",
                                "k1");
    CU_ASSERT_PTR_NOT_NULL(kept);
    CU_ASSERT_EQUAL(kept != NULL ? strlen(kept) : 0, 1000); /* 500 characters of 2 bytes */
    free(kept);
    struct staged_record y[4];
    unsigned ny = 0;
    memset(y, 0, sizeof y);
    CU_ASSERT_EQUAL(
        records_claim(db, "rec-lease", "tok-6", "me", now + 200003, now + 200003, 60000, 4, y, &ny),
        CPB_OK);
    CU_ASSERT_EQUAL(ny, 1); /* the new payload of k2: due as staged, not at +9999 s */
    for (size_t i = 0; i < 4; i++) {
        records_clear(&x[i]);
        records_clear(&y[i]);
    }
    json_decref(p3[0]);
    json_decref(p3[1]);
    json_decref(p4[0]);

    for (size_t i = 0; i < 4; i++) {
        records_clear(&v[i]);
        records_clear(&w[i]);
    }
    json_decref(p1[0]);
    json_decref(p1[1]);
    json_decref(p2[0]);
    db_close(db);
}

static int setup(enum db_dialect d)
{
    dialect = d;
    snprintf(logfile, sizeof logfile, "%s", cpbtest_path("calls.log"));
    return cpbtest_db_fresh(dialect, "records", conn, sizeof conn);
}

static int setup_sqlite(void)
{
    return setup(DB_SQLITE);
}

static int setup_pg(void)
{
    return setup(DB_POSTGRESQL);
}

static int teardown(void)
{
    cpbtest_db_drop();
    return 0;
}

static const struct cpbtest_case cases[] = {
    {"pushed once; unchanged not queued; a change pushed with its result", test_push_once},
    {"bad keys and payloads refused, the rest staged", test_bad_input},
    {"FAIL: DEAD at once, reported once, queued again when changed", test_fail_dead_once},
    {"RETRY: backoff, then DEAD after max_attempts", test_retry_then_dead},
    {"claims: leases held, a payload staged meanwhile kept (done or retried), a late outcome"
     " refused, long many-byte messages cut",
     test_leases},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, teardown, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&sqlite_suite, &pg_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
