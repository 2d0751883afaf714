/*
 * test_runner.c — the runner end to end on a real SQLite database through
 * its ODBC driver, with fixture stages (tests/fixtures/runner-stages) whose
 * outcome each test chooses: applied orders and their after-commit steps,
 * FAIL held INVALID with its reason, RETRY counted across runs (in the
 * database) up to DEAD, after-commit resumption without re-applying, events
 * delivered to notifiers, dry runs that write nothing, the host lock, and a
 * database that cannot be reached.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "lib/order.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

static char conn[1024];
static char logfile[1024];
static unsigned case_no;

/* A complete order in the WooCommerce REST shape. */
static json_t *make_order(const char *id)
{
    json_error_t e;
    char text[2048];
    snprintf(text, sizeof text,
             "{\"id\": %s, \"number\": \"%s\", \"status\": \"processing\", \"currency\": \"USD\","
             " \"date_created_gmt\": \"2026-11-28T10:00:00\","
             " \"date_modified_gmt\": \"2026-11-28T10:05:00\", \"date_paid_gmt\": null,"
             " \"customer_id\": 0, \"total\": \"25.00\", \"total_tax\": \"0.00\","
             " \"cart_tax\": \"0.00\", \"shipping_total\": \"5.00\", \"shipping_tax\": \"0.00\","
             " \"discount_total\": \"0.00\", \"discount_tax\": \"0.00\","
             " \"payment_method\": \"card\", \"payment_method_title\": \"Card\","
             " \"billing\": {\"first_name\": \"Ann\", \"last_name\": \"Lee\","
             " \"email\": \"ann@example.com\"}, \"shipping\": {},"
             " \"line_items\": [{\"id\": 1, \"sku\": \"MUG-LOGO\", \"name\": \"Mug\","
             " \"quantity\": 2, \"subtotal\": \"20.00\", \"subtotal_tax\": \"0.00\","
             " \"total\": \"20.00\", \"total_tax\": \"0.00\", \"price\": 10}],"
             " \"shipping_lines\": [], \"fee_lines\": [], \"coupon_lines\": []}",
             id, id);
    json_t *o = json_loads(text, 0, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    return o;
}

static struct db *open_db(void)
{
    struct db *db = NULL;
    struct err e = {0};
    int from = 0;
    int to = 0;
    CU_ASSERT_EQUAL_FATAL(db_connect(conn, DB_SQLITE, 5000, &db, &e), 0);
    CU_ASSERT_EQUAL_FATAL(schema_init(db, false, 0, &from, &to, &e), 0);
    return db;
}

static void stage(struct db *db, const char *id)
{
    json_t *raw = make_order(id);
    json_t *norm = NULL;
    char msg[200];
    char hash[65];
    enum upsert_outcome outcome;
    int64_t sid = 0;
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(norm, "problems")), 0);
    CU_ASSERT_EQUAL_FATAL(order_hash(norm, hash), 0);
    char *payload = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_EQUAL(staging_upsert(db, "files", norm, payload, hash, 1000, "test", &outcome, &sid),
                    CPB_OK);
    free(payload);
    json_decref(norm);
    json_decref(raw);
}

/* Write a pipeline with the fixture stages; `step`, `after`, `notify` are
 * option lines for each ("" keeps the stage with defaults, NULL leaves it
 * out). Returns the path (static rotation). */
static const char *pipeline_ex(const char *extra, const char *source, const char *step,
                               const char *after, const char *notify);

static const char *pipeline(const char *step, const char *after, const char *notify)
{
    return pipeline_ex("", NULL, step, after, notify);
}

/* As pipeline(), with extra keys of the `run` block and an optional
 * source-file stage reading `source` (a path). */
static const char *pipeline_ex(const char *extra, const char *source, const char *step,
                               const char *after, const char *notify)
{
    char name[64];
    char text[4096];
    int n;
    snprintf(name, sizeof name, "p%u.cfg", ++case_no);
    n = snprintf(text, sizeof text,
                 "name = \"runner-test\";\n"
                 "stage_dirs = [\"%s\"];\n"
                 "database = { dialect = \"sqlite\"; connection = \"%s\"; };\n"
                 "run = { lock_file = \"%s\"; batch = 2; %s };\n"
                 "retry = { max_attempts = 3; base = \"1s\"; cap = \"1m\"; };\n"
                 "stages = (\n",
                 cpbtest_build("fixture-stages"), conn, cpbtest_path("run.lock"), extra);
    if (source != NULL) {
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  { stage = \"source-file\"; id = \"files\"; options = { path = \"%s\"; };"
                      " },\n",
                      source);
    }
    if (step != NULL) {
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  { stage = \"test-step\"; options = { log_file = \"%s\"; %s }; },\n",
                      logfile, step);
    }
    if (after != NULL) {
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  { stage = \"test-after\"; options = { log_file = \"%s\"; %s }; },\n",
                      logfile, after);
    }
    if (notify != NULL) {
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  { stage = \"test-notify\"; on = [\"*\"];"
                      " options = { log_file = \"%s\"; %s }; },\n",
                      logfile, notify);
    }
    /* libconfig lists take no trailing comma. */
    if (n >= 2 && text[n - 2] == ',') {
        text[n - 2] = '\n';
        n--;
    }
    snprintf(text + n, sizeof text - (size_t)n, ");\n");
    const char *path = cpbtest_path(name);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

static int run_pipeline(const char *path, bool dry_run, struct run_result *res)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.dry_run = dry_run, .pipeline_path = path};
    struct run_result local;
    if (res == NULL) {
        res = &local;
    }
    if (pipeline_open(path, &p, &e) != 0) {
        fprintf(stderr, "pipeline_open: %s\n", e.msg);
        CU_FAIL("pipeline_open failed");
        return -1;
    }
    if (pipeline_init(p, &e) != 0) {
        fprintf(stderr, "pipeline_init: %s\n", e.msg);
        pipeline_close(p);
        CU_FAIL("pipeline_init failed");
        return -1;
    }
    int code = runner_run(p, &o, res, &e);
    pipeline_close(p);
    return code;
}

static char *col_text(struct db *db, const char *sql, const char *ext)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char *out = NULL;
    if (sql_query(db, sql, (struct sql_arg[]){sql_text(ext)}, 1, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        out = strdup(v);
    }
    db_finalize(st);
    return out;
}

static int64_t col_int(struct db *db, const char *sql, const char *ext)
{
    int64_t v = -1;
    if (sql_query_int(db, sql, (struct sql_arg[]){sql_text(ext)}, 1, &v, NULL) != CPB_OK) {
        return -1;
    }
    return v;
}

static void assert_status(struct db *db, const char *ext, const char *want)
{
    char *got = col_text(db, "SELECT STATUS FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", ext);
    CU_ASSERT_PTR_NOT_NULL(got);
    if (got != NULL) {
        CU_ASSERT_STRING_EQUAL(got, want);
    }
    free(got);
}

static int64_t attempts(struct db *db, const char *ext)
{
    return col_int(db, "SELECT ATTEMPTS FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", ext);
}

/* Make every waiting order due now (instead of waiting out the backoff). */
static void make_due(struct db *db)
{
    CU_ASSERT_EQUAL(sql_exec(db, "UPDATE USER_ORDER_STAGING SET NEXT_ATTEMPT_DT = ?",
                             (struct sql_arg[]){sql_time(0)}, 1, NULL),
                    CPB_OK);
}

/* Lines of the call log that start with `prefix`. */
static int calls(const char *prefix)
{
    char *text = cpbtest_slurp(logfile, NULL);
    int n = 0;
    size_t len = strlen(prefix);
    if (text == NULL) {
        return 0;
    }
    for (char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, prefix, len) == 0) {
            n++;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    free(text);
    return n;
}

static int fresh(void)
{
    snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
    snprintf(logfile, sizeof logfile, "%s", cpbtest_path("calls.log"));
    unlink(logfile);
    return 0;
}

static void test_applied_and_after_commit_once(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "1");
    stage(db, "2");
    stage(db, "3");
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "", NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.applied, 3);
    CU_ASSERT_EQUAL(res.counts.after_done, 3);
    assert_status(db, "1", "APPLIED");
    assert_status(db, "3", "APPLIED");
    CU_ASSERT_EQUAL(col_int(db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                            "2"),
                    1002);
    char *tkt = col_text(db, "SELECT CP_TKT_NO FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "2");
    CU_ASSERT_PTR_NOT_NULL(tkt);
    if (tkt != NULL) {
        CU_ASSERT_STRING_EQUAL(tkt, "T2");
    }
    free(tkt);
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT AFTER_PENDING FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                            "1"),
                    AFTER_NONE);
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT COUNT(*) FROM USER_ORDER_STEP WHERE STAGE_ID = ?",
                            "test-after"),
                    3);
    /* A second run finds nothing to do: nothing is applied or synced twice. */
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "", NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    CU_ASSERT_EQUAL(calls("test-step 1 "), 1);
    CU_ASSERT_EQUAL(calls("test-after 1 "), 1);
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_SYNC_LOG WHERE RESULT = ?", "OK"), 2);
    db_close(db);
}

static void test_fail_is_invalid_with_reason(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "7");
    stage(db, "8");
    int code = run_pipeline(pipeline("fail = [\"7\"];", "", NULL), false, &res);
    CU_ASSERT_EQUAL(code, CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.invalid, 1);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    assert_status(db, "7", "INVALID");
    assert_status(db, "8", "APPLIED");
    char *c = col_text(db, "SELECT LAST_ERROR_CODE FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                       "7");
    char *m = col_text(db, "SELECT LAST_ERROR FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "7");
    CU_ASSERT_PTR_NOT_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(m);
    if (c != NULL && m != NULL) {
        CU_ASSERT_STRING_EQUAL(c, "test.fail");
        CU_ASSERT_PTR_NOT_NULL(strstr(m, "fails on purpose"));
        CU_ASSERT_PTR_NOT_NULL(strstr(m, "test-step"));
    }
    free(c);
    free(m);
    /* FAIL is permanent: no retry, and the after-commit step never ran. */
    make_due(db);
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "", NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    CU_ASSERT_EQUAL(calls("test-step 7 "), 1);
    CU_ASSERT_EQUAL(calls("test-after 7 "), 0);
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT COUNT(*) FROM USER_ORDER_EVENT E JOIN USER_ORDER_STAGING S"
                            " ON S.STAGING_ID = E.STAGING_ID WHERE E.KIND = 'invalid'"
                            " AND S.EXT_ORDER_ID = ?",
                            "7"),
                    1);
    db_close(db);
}

static void test_retry_counts_across_runs_until_dead(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *p = pipeline("retry = [\"5\"];", NULL, NULL);
    stage(db, "5");

    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.retry, 1);
    assert_status(db, "5", "PENDING");
    CU_ASSERT_EQUAL(attempts(db, "5"), 1);
    /* Not due yet: the backoff holds it back. */
    CU_ASSERT(col_int(db,
                      "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?"
                      " AND LEASE_TOKEN IS NULL AND LAST_ERROR_CODE = 'test.retry'",
                      "5") == 1);

    make_due(db);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(attempts(db, "5"), 2);
    assert_status(db, "5", "PENDING");

    make_due(db);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.dead, 1);
    CU_ASSERT_EQUAL(attempts(db, "5"), 3);
    assert_status(db, "5", "DEAD");
    CU_ASSERT_EQUAL(calls("test-step 5 1"), 1);
    CU_ASSERT_EQUAL(calls("test-step 5 2"), 1);
    CU_ASSERT_EQUAL(calls("test-step 5 3"), 1);

    /* Dead orders are never claimed again by a run. */
    make_due(db);
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    db_close(db);
}

static void test_retry_waits_for_backoff(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *p = pipeline("retry = [\"6\"];", NULL, NULL);
    stage(db, "6");
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    /* Move the next attempt well into the future: the next run skips it. */
    CU_ASSERT_EQUAL(sql_exec(db, "UPDATE USER_ORDER_STAGING SET NEXT_ATTEMPT_DT = ?",
                             (struct sql_arg[]){sql_time(host_now_ms() + 3600000)}, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    CU_ASSERT_EQUAL(attempts(db, "6"), 1);
    db_close(db);
}

static void test_after_commit_resumes_without_reapplying(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "9");
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "retry = [\"9\"];", NULL), false, &res),
                    CPB_EXIT_OK);
    assert_status(db, "9", "APPLIED");
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT AFTER_PENDING FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                            "9"),
                    AFTER_DUE);
    make_due(db);
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "", NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.after_done, 1);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    CU_ASSERT_EQUAL(calls("test-step 9 "), 1);
    CU_ASSERT_EQUAL(calls("test-after 9 "), 2);
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT AFTER_PENDING FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                            "9"),
                    AFTER_NONE);
    db_close(db);
}

static void test_after_commit_gives_up_and_notifies(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *p = pipeline("", "fail = [\"4\"];", "");
    stage(db, "4");
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.after_failed, 1);
    assert_status(db, "4", "APPLIED");
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT AFTER_PENDING FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?",
                            "4"),
                    AFTER_GAVE_UP);
    CU_ASSERT_EQUAL(calls("test-notify sync.failed"), 1);
    char *log = cpbtest_slurp(logfile, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"external_id\":\"4\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"reason\":\"test.fail\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "cpbridge orders "));
    free(log);
    db_close(db);
}

static void test_events_digest_and_failing_notifier(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "11");
    stage(db, "12");
    stage(db, "13");
    const char *p = pipeline("fail = [\"11\", \"12\"];", NULL, "fail = [\"order.invalid\"];");
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    /* Two invalid orders become one event (a digest) for the notifier. */
    CU_ASSERT_EQUAL(calls("test-notify order.invalid"), 1);
    CU_ASSERT_EQUAL(res.notify_failed, 1);
    char *log = cpbtest_slurp(logfile, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "2 order(s) failed validation"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"external_id\":\"11\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"external_id\":\"12\""));
    free(log);
    /* The failing notifier did not stop the pipeline. */
    assert_status(db, "13", "APPLIED");
    db_close(db);
}

static void test_dry_run_writes_nothing(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "21");
    stage(db, "22");
    int64_t events_before = col_int(db, "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE 1 = 1 OR ? IS NULL", "x");
    CU_ASSERT_EQUAL(run_pipeline(pipeline("fail = [\"22\"];", "", ""), true, &res),
                    CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    assert_status(db, "21", "PENDING");
    assert_status(db, "22", "PENDING");
    CU_ASSERT_EQUAL(attempts(db, "21"), 0);
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE 1 = 1 OR ? IS NULL",
                            "x"),
                    events_before);
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_SYNC_LOG WHERE 1 = 1 OR ? IS NULL",
                            "x"),
                    0);
    CU_ASSERT_EQUAL(calls("test-after"), 0);
    CU_ASSERT_EQUAL(calls("test-notify"), 0);
    db_close(db);
}

static void test_lock_held_exits_quietly(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *p = pipeline("", NULL, NULL);
    stage(db, "31");
    int fd = open(cpbtest_path("run.lock"), O_RDWR | O_CREAT, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(flock(fd, LOCK_EX | LOCK_NB), 0);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_TEMPFAIL);
    assert_status(db, "31", "PENDING");
    close(fd);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    assert_status(db, "31", "APPLIED");
    db_close(db);
}

static void test_database_unreachable(void)
{
    struct run_result res;
    snprintf(conn, sizeof conn,
             "Driver=SQLite3;Database=%s/no/such/dir/x.db;NoCreat=1;Timeout=100",
             cpbtest_tmpdir());
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, ""), false, &res), CPB_EXIT_UNAVAILABLE);
}

static void test_schema_missing_is_config_error(void)
{
    struct run_result res;
    /* A fresh database without `cpbridge db init`. */
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, NULL), false, &res), CPB_EXIT_CONFIG);
}

/* Orders a source stages are processed in the same run. */
static void test_source_orders_applied_same_run(void)
{
    struct db *db = open_db();
    struct run_result res;
    json_t *a = make_order("51");
    json_t *b = make_order("52");
    json_t *both = json_pack("[oo]", a, b);
    CU_ASSERT_EQUAL_FATAL(cpbtest_sh("mkdir -p '%s'", cpbtest_path("in")), 0);
    CU_ASSERT_EQUAL_FATAL(json_dump_file(both, cpbtest_path("in/orders.json"), 0), 0);
    json_decref(both);
    const char *p = pipeline_ex("", cpbtest_path("in"), "", "", NULL);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.staged, 2);
    CU_ASSERT_EQUAL(res.counts.applied, 2);
    CU_ASSERT_EQUAL(res.counts.after_done, 2);
    assert_status(db, "51", "APPLIED");
    /* Read again: unchanged, so nothing is staged or applied twice. */
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.staged, 0);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    CU_ASSERT_EQUAL(calls("test-step 51 "), 1);
    db_close(db);
}

/* A source's page is staged in one transaction (group commit): all of it
 * or, when that fails, order by order, so one order the database refuses
 * holds back only itself. */
static void test_source_page_one_transaction(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *ids[] = {"61", "62", "63", "64", "65"};
    struct staging_item items[5];
    json_t *raw[5];
    char hashes[5][65];
    char msg[200];
    json_t *page = json_array();
    for (size_t i = 0; i < 5; i++) {
        raw[i] = make_order(ids[i]);
        json_array_append(page, raw[i]);
        items[i] = (struct staging_item){NULL, NULL, hashes[i], UPSERT_UNCHANGED, 0};
        CU_ASSERT_EQUAL_FATAL(order_normalize(raw[i], &items[i].norm, msg, sizeof msg), 0);
        CU_ASSERT_EQUAL_FATAL(order_hash(items[i].norm, hashes[i]), 0);
        items[i].payload = json_dumps(raw[i], JSON_COMPACT);
    }
    /* The database refuses order 63 (a trigger stands in for any failure). */
    CU_ASSERT_EQUAL_FATAL(db_exec(db, "CREATE TRIGGER REFUSE_63 BEFORE INSERT ON"
                                      " USER_ORDER_STAGING WHEN NEW.EXT_ORDER_ID = '63'"
                                      " BEGIN SELECT RAISE(ABORT, 'order 63 refused'); END"),
                          CPB_OK);
    /* All or nothing: 61 and 62 were written before 63 failed, and are
     * gone with it. */
    CU_ASSERT_NOT_EQUAL(staging_upsert_many(db, "files", items, 5, 1000, "test"), CPB_OK);
    CU_ASSERT_EQUAL(
        col_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE SOURCE = ?", "files"), 0);
    /* Through the runner: the page fails as one, then the others are
     * staged one by one and applied; the source stops (its cursor stays). */
    CU_ASSERT_EQUAL_FATAL(cpbtest_sh("mkdir -p '%s'", cpbtest_path("in-page")), 0);
    CU_ASSERT_EQUAL_FATAL(json_dump_file(page, cpbtest_path("in-page/page.json"), 0), 0);
    const char *p = pipeline_ex("", cpbtest_path("in-page"), "", "", NULL);
    run_pipeline(p, false, &res);
    CU_ASSERT_TRUE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.staged, 4);
    CU_ASSERT_EQUAL(res.counts.applied, 4);
    assert_status(db, "61", "APPLIED");
    assert_status(db, "65", "APPLIED");
    CU_ASSERT_EQUAL(
        col_int(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = ?", "63"), 0);
    /* The database takes 63 again: the next run stages only it. */
    CU_ASSERT_EQUAL(db_exec(db, "DROP TRIGGER REFUSE_63"), CPB_OK);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    CU_ASSERT_FALSE(res.source_failed);
    CU_ASSERT_EQUAL(res.counts.staged, 1);
    CU_ASSERT_EQUAL(res.counts.applied, 1);
    assert_status(db, "63", "APPLIED");
    CU_ASSERT_EQUAL(calls("test-step 61 "), 1);
    CU_ASSERT_EQUAL(calls("test-step 63 "), 1);
    /* Each order staged once: nothing of the failed group remained. */
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = ?", "staged"),
                    5);
    for (size_t i = 0; i < 5; i++) {
        json_decref(items[i].norm);
        free((char *)items[i].payload);
        json_decref(raw[i]);
    }
    json_decref(page);
    db_close(db);
}

/* An order with n lines: line i (1-based) sells i units of SKU-i at 1.00. */
static json_t *order_with_lines(const char *id, unsigned n)
{
    json_t *o = make_order(id);
    json_t *lines = json_array();
    char sku[16];
    for (unsigned i = 1; i <= n; i++) {
        snprintf(sku, sizeof sku, "SKU-%u", i);
        json_array_append_new(lines, json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:i}",
                                               "id", (json_int_t)i, "sku", sku, "name", sku,
                                               "quantity", (json_int_t)i, "subtotal", "1.00",
                                               "subtotal_tax", "0.00", "total", "1.00",
                                               "total_tax", "0.00", "price", 1));
    }
    json_object_set_new(o, "line_items", lines);
    return o;
}

static void stage_raw(struct db *db, json_t *raw, enum upsert_outcome *outcome)
{
    json_t *norm = NULL;
    char msg[200];
    char hash[65];
    int64_t sid = 0;
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    CU_ASSERT_EQUAL_FATAL(order_hash(norm, hash), 0);
    char *payload = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_EQUAL(staging_upsert(db, "files", norm, payload, hash, 1000, "test", outcome, &sid),
                    CPB_OK);
    free(payload);
    json_decref(norm);
}

/* Lines go in several rows per INSERT: 19 lines (8 + 8 + 3) and, when
 * the store changes the order, 9 (8 + 1) replace them, each row whole. */
static void test_staged_lines_in_multirow_inserts(void)
{
    struct db *db = open_db();
    enum upsert_outcome outcome;
    const char *count_sql = "SELECT COUNT(*) FROM USER_ORDER_STAGING_LIN L JOIN USER_ORDER_STAGING"
                            " S ON S.STAGING_ID = L.STAGING_ID WHERE S.EXT_ORDER_ID = ?";
    const char *qty_sql = "SELECT SUM(L.LIN_SEQ_NO * 1000 + L.QTY) FROM USER_ORDER_STAGING_LIN L"
                          " JOIN USER_ORDER_STAGING S ON S.STAGING_ID = L.STAGING_ID"
                          " WHERE S.EXT_ORDER_ID = ? AND L.SKU = 'SKU-' || L.LIN_SEQ_NO";
    json_t *o = order_with_lines("71", 19);
    stage_raw(db, o, &outcome);
    CU_ASSERT_EQUAL(outcome, UPSERT_NEW);
    CU_ASSERT_EQUAL(col_int(db, count_sql, "71"), 19);
    /* Each row holds its own line: seq i, SKU-i, quantity i. */
    CU_ASSERT_EQUAL(col_int(db, qty_sql, "71"), 1001 * (19 * 20 / 2));
    json_decref(o);
    o = order_with_lines("71", 9);
    json_object_set_new(o, "date_modified_gmt", json_string("2026-11-28T11:00:00"));
    stage_raw(db, o, &outcome);
    CU_ASSERT_EQUAL(outcome, UPSERT_UPDATED);
    CU_ASSERT_EQUAL(col_int(db, count_sql, "71"), 9);
    CU_ASSERT_EQUAL(col_int(db, qty_sql, "71"), 1001 * (9 * 10 / 2));
    json_decref(o);
    db_close(db);
}

/* The applied orders of several claim batches reach an after-commit stage
 * in one call (up to 100), and the claims in between do not take them
 * again although the runner still holds their lease. */
static void test_after_commit_gathered_across_claims(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *ids[] = {"81", "82", "83", "84", "85"};
    char line[40];
    for (size_t i = 0; i < 5; i++) {
        stage(db, ids[i]);
    }
    /* batch = 2: three claims (2, 2, 1), one after-commit call. */
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", "", NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.claimed, 5);
    CU_ASSERT_EQUAL(res.counts.applied, 5);
    CU_ASSERT_EQUAL(res.counts.after_done, 5);
    CU_ASSERT_EQUAL(calls("test-after batch 5"), 1);
    CU_ASSERT_EQUAL(calls("test-after batch "), 1);
    for (size_t i = 0; i < 5; i++) {
        snprintf(line, sizeof line, "test-step %s ", ids[i]);
        CU_ASSERT_EQUAL(calls(line), 1);
        snprintf(line, sizeof line, "test-after %s 1", ids[i]);
        CU_ASSERT_EQUAL(calls(line), 1);
        assert_status(db, ids[i], "APPLIED");
    }
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE AFTER_PENDING <> 0 OR"
                            " LEASE_TOKEN IS NOT NULL OR ATTEMPTS <> 1 OR STATUS <> ?",
                            "APPLIED"),
                    0);
    db_close(db);
}

/* A pipeline without step stages only stages: it never marks an order
 * APPLIED (with no document). */
static void test_no_steps_only_stages(void)
{
    struct db *db = open_db();
    struct run_result res;
    json_t *a = make_order("95");
    CU_ASSERT_EQUAL_FATAL(cpbtest_sh("mkdir -p '%s'", cpbtest_path("in95")), 0);
    CU_ASSERT_EQUAL_FATAL(json_dump_file(a, cpbtest_path("in95/o.json"), 0), 0);
    json_decref(a);
    CU_ASSERT_EQUAL(run_pipeline(pipeline_ex("", cpbtest_path("in95"), NULL, "", NULL), false,
                                 &res),
                    CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.counts.staged, 1);
    CU_ASSERT_EQUAL(res.counts.claimed, 0);
    CU_ASSERT_EQUAL(res.counts.applied, 0);
    assert_status(db, "95", "PENDING");
    CU_ASSERT_EQUAL(attempts(db, "95"), 0);
    /* The pipeline with steps applies it. */
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, NULL), false, &res), CPB_EXIT_OK);
    assert_status(db, "95", "APPLIED");
    db_close(db);
}

/* A wrong option names its place in the file once, and the stage. */
static void test_option_error_names_place_once(void)
{
    struct pipeline *p = NULL;
    struct err e = {0};
    const char *path = pipeline("retyr = [\"1\"];", NULL, NULL);
    CU_ASSERT_NOT_EQUAL(pipeline_open(path, &p, &e), 0);
    CU_ASSERT_EQUAL(e.code, CPB_EXIT_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "stage 'test-step'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "did you mean 'retry'"));
    const char *first = strstr(e.msg, ".cfg:");
    CU_ASSERT_PTR_NOT_NULL_FATAL(first);
    CU_ASSERT_PTR_NULL(strstr(first + 1, ".cfg:"));
    /* A required option missing: no options group, so the entry's place. */
    snprintf(e.msg, sizeof e.msg, "%s", "");
    e.code = 0;
    char text[1024];
    snprintf(text, sizeof text,
             "name = \"x\";\nstage_dirs = [\"%s\"];\n"
             "database = { connection = \"Driver=SQLite3;Database=/nonexistent\"; };\n"
             "stages = (\n  { stage = \"test-step\"; }\n);\n",
             cpbtest_build("fixture-stages"));
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(cpbtest_path("req.cfg"), text), 0);
    CU_ASSERT_NOT_EQUAL(pipeline_open(cpbtest_path("req.cfg"), &p, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "req.cfg:5: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "log_file"));
}


/* A source that fails every run alerts once per throttle window. */
static void test_alert_throttled_across_runs(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *p = pipeline_ex("", cpbtest_path("no-such-dir"), "", NULL, "");
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_TRUE(res.source_failed);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(calls("test-notify source.failed"), 1);
    CU_ASSERT_EQUAL(calls("test-notify run.summary"), 2);
    /* Once the window has passed (forget the record), it is sent again. */
    CU_ASSERT_EQUAL(sql_exec(db, "DELETE FROM USER_SYNC_STATE WHERE STATE_KEY LIKE ?",
                             (struct sql_arg[]){sql_text("alert/%")}, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(calls("test-notify source.failed"), 2);
    db_close(db);
}

/* A delivery that failed is not recorded: the next run sends it. */
static void test_failed_delivery_is_retried(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *src = cpbtest_path("no-such-dir");
    CU_ASSERT_EQUAL(run_pipeline(pipeline_ex("", src, "", NULL, "fail = [\"source.failed\"];"),
                                 false, &res),
                    CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.notify_failed, 1);
    CU_ASSERT_EQUAL(run_pipeline(pipeline_ex("", src, "", NULL, ""), false, &res),
                    CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.notify_failed, 0);
    CU_ASSERT_EQUAL(calls("test-notify source.failed"), 2);
    db_close(db);
}

/* An order alert a notifier failed to deliver is queued and delivered to
 * that notifier by a later run: order events are raised only once. */
static void test_failed_order_alert_queued(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "61");
    CU_ASSERT_EQUAL(
        run_pipeline(pipeline("fail = [\"61\"];", NULL, "fail = [\"order.invalid\"];"), false,
                     &res),
        CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(res.notify_failed, 1);
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_ALERT_OUTBOX WHERE EVENT = ?",
                            "order.invalid"),
                    1);
    /* Still failing: kept, attempts counted. */
    CU_ASSERT_EQUAL(
        run_pipeline(pipeline("", NULL, "fail = [\"order.invalid\"];"), false, &res),
        CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(col_int(db, "SELECT ATTEMPTS FROM USER_ALERT_OUTBOX WHERE EVENT = ?",
                            "order.invalid"),
                    2);
    /* The notifier works again: the queued alert arrives, once. */
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, ""), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(res.notify_failed, 0);
    CU_ASSERT_EQUAL(calls("test-notify order.invalid"), 3);
    CU_ASSERT_EQUAL(col_int(db, "SELECT COUNT(*) FROM USER_ALERT_OUTBOX WHERE EVENT = ?",
                            "order.invalid"),
                    0);
    char *log = cpbtest_slurp(logfile, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"external_id\":\"61\""));
    free(log);
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, ""), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(calls("test-notify order.invalid"), 3);
    db_close(db);
}

/* A rolled-back order the store changes stays ROLLED_BACK (a person decided
 * so); its new version is kept for `dlq retry`. */
static void test_rolled_back_stays_on_change(void)
{
    struct db *db = open_db();
    stage(db, "71");
    CU_ASSERT_EQUAL(sql_exec(db, "UPDATE USER_ORDER_STAGING SET STATUS = 'ROLLED_BACK'", NULL, 0,
                             NULL),
                    CPB_OK);
    json_t *raw = make_order("71");
    json_object_set_new(raw, "customer_note", json_string("changed in the store"));
    json_t *line = json_array_get(json_object_get(raw, "line_items"), 0);
    json_object_set_new(line, "quantity", json_integer(3));
    json_t *norm = NULL;
    char msg[200];
    char hash[65];
    enum upsert_outcome outcome;
    int64_t sid = 0;
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    CU_ASSERT_EQUAL_FATAL(order_hash(norm, hash), 0);
    char *payload = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_EQUAL(staging_upsert(db, "files", norm, payload, hash, 2000, "test", &outcome, &sid),
                    CPB_OK);
    CU_ASSERT_EQUAL(outcome, UPSERT_UPDATED);
    assert_status(db, "71", "ROLLED_BACK");
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT COUNT(*) FROM USER_ORDER_STAGING_LIN L JOIN USER_ORDER_STAGING S"
                            " ON S.STAGING_ID = L.STAGING_ID WHERE L.QTY = 3"
                            " AND S.EXT_ORDER_ID = ?",
                            "71"),
                    1);
    free(payload);
    json_decref(norm);
    json_decref(raw);
    db_close(db);
}

/* Upsert one version of order `id` with line quantity `qty`. */
static enum upsert_outcome upsert_qty(struct db *db, const char *id, int qty)
{
    json_t *raw = make_order(id);
    json_t *norm = NULL;
    char msg[200];
    char hash[65];
    enum upsert_outcome outcome = UPSERT_IGNORED;
    int64_t sid = 0;
    json_object_set_new(json_array_get(json_object_get(raw, "line_items"), 0), "quantity",
                        json_integer(qty));
    CU_ASSERT_EQUAL_FATAL(order_normalize(raw, &norm, msg, sizeof msg), 0);
    CU_ASSERT_EQUAL_FATAL(order_hash(norm, hash), 0);
    char *payload = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_EQUAL(staging_upsert(db, "files", norm, payload, hash, 3000, "test", &outcome, &sid),
                    CPB_OK);
    free(payload);
    json_decref(norm);
    json_decref(raw);
    return outcome;
}

/* An applied order the store changes is flagged once per changed version,
 * not at every re-read. */
static void test_changed_after_apply_flagged_once(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "91");
    CU_ASSERT_EQUAL(run_pipeline(pipeline("", NULL, NULL), false, &res), CPB_EXIT_OK);
    CU_ASSERT_EQUAL(upsert_qty(db, "91", 5), UPSERT_CHANGED_AFTER);
    CU_ASSERT_EQUAL(upsert_qty(db, "91", 5), UPSERT_UNCHANGED);
    CU_ASSERT_EQUAL(upsert_qty(db, "91", 5), UPSERT_UNCHANGED);
    CU_ASSERT_EQUAL(upsert_qty(db, "91", 6), UPSERT_CHANGED_AFTER);
    assert_status(db, "91", "APPLIED");
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE KIND = ?",
                            "changed.after_apply"),
                    2);
    CU_ASSERT_EQUAL(col_int(db,
                            "SELECT CHANGED_AFTER_APPLY FROM USER_ORDER_STAGING"
                            " WHERE EXT_ORDER_ID = ?",
                            "91"),
                    1);
    db_close(db);
}

/* metrics.file is rewritten by every run. */
static void test_metrics_file_written(void)
{
    struct db *db = open_db();
    struct run_result res;
    const char *path = cpbtest_path("cpbridge.prom");
    unlink(path);
    stage(db, "81");
    /* A metrics block in front of a pipeline file. */
    const char *p = pipeline("", NULL, NULL);
    char *text = cpbtest_slurp(p, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *with = NULL;
    size_t n = strlen(text) + strlen(path) + 64;
    with = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(with);
    snprintf(with, n, "metrics = { file = \"%s\"; };\n%s", path, text);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(p, with), 0);
    free(with);
    free(text);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_OK);
    char *prom = cpbtest_slurp(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(prom);
    CU_ASSERT_PTR_NOT_NULL(strstr(prom, "cpbridge_run_orders{pipeline=\"runner-test\",result=\"applied\"} 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(prom, "cpbridge_last_run_exit_code{pipeline=\"runner-test\"} 0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(prom, "stage=\"test-step\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(
        prom, "cpbridge_stage_metric{pipeline=\"runner-test\",stage=\"test-step\",name=\"calls\"} 1\n"));
    free(prom);
    db_close(db);
}

static void test_orders_stale(void)
{
    struct db *db = open_db();
    struct run_result res;
    stage(db, "41");
    CU_ASSERT_EQUAL(sql_exec(db, "UPDATE USER_ORDER_STAGING SET RECEIVED_DT = ?",
                             (struct sql_arg[]){sql_time(host_now_ms() - 7200000)}, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(
        run_pipeline(pipeline_ex("stale_after = \"1h\";", NULL,
                                 "retry = [\"41\"];", NULL, ""),
                     false, &res),
        CPB_EXIT_OK);
    CU_ASSERT_EQUAL(calls("test-notify orders.stale"), 1);
    char *log = cpbtest_slurp(logfile, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "1 order(s) pending for longer than 1h"));
    free(log);
    db_close(db);
}

static void test_scheduler_missed(void)
{
    struct db *db = open_db();
    struct run_result res;
    int64_t two_hours_ago = host_now_ms() - 7200000;
    struct sql_arg a[] = {sql_time(two_hours_ago), sql_time(two_hours_ago)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, STARTED_DT, ENDED_DT,"
                             " RESULT) VALUES ('old-run', 'runner-test', ?, ?, 'OK')",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(
        run_pipeline(pipeline_ex("expect_every = \"15m\";", NULL, "", NULL, ""), false,
                     &res),
        CPB_EXIT_OK);
    CU_ASSERT_EQUAL(calls("test-notify scheduler.missed"), 1);
    /* The next run follows a successful one: no alert. */
    CU_ASSERT_EQUAL(
        run_pipeline(pipeline_ex("expect_every = \"15m\";", NULL, "", NULL, ""), false,
                     &res),
        CPB_EXIT_OK);
    CU_ASSERT_EQUAL(calls("test-notify scheduler.missed"), 1);
    db_close(db);
}

/* With the database down, db.unreachable is throttled through the state
 * file beside the lock. */
static void test_db_down_alert_throttled(void)
{
    struct run_result res;
    snprintf(conn, sizeof conn,
             "Driver=SQLite3;Database=%s/no/such/dir/x.db;NoCreat=1;Timeout=100",
             cpbtest_tmpdir());
    unlink(cpbtest_path("run.lock.alerts.json"));
    const char *p = pipeline("", NULL, "");
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_UNAVAILABLE);
    CU_ASSERT_EQUAL(run_pipeline(p, false, &res), CPB_EXIT_UNAVAILABLE);
    CU_ASSERT_EQUAL(calls("test-notify db.unreachable"), 1);
    CU_ASSERT_EQUAL(calls("test-notify run.failed"), 1);
    unlink(cpbtest_path("run.lock.alerts.json"));
}

static int setup(void)
{
    /* Keep the runner's log lines out of the test report. */
    log_set_stream(fopen(cpbtest_path("engine.log"), "w"));
    return 0;
}

#define CASE(name, fn) {name, fn}
static void run_fresh(void (*fn)(void))
{
    fresh();
    fn();
}
static void t1(void)
{
    run_fresh(test_applied_and_after_commit_once);
}
static void t2(void)
{
    run_fresh(test_fail_is_invalid_with_reason);
}
static void t3(void)
{
    run_fresh(test_retry_counts_across_runs_until_dead);
}
static void t4(void)
{
    run_fresh(test_retry_waits_for_backoff);
}
static void t5(void)
{
    run_fresh(test_after_commit_resumes_without_reapplying);
}
static void t6(void)
{
    run_fresh(test_after_commit_gives_up_and_notifies);
}
static void t7(void)
{
    run_fresh(test_events_digest_and_failing_notifier);
}
static void t8(void)
{
    run_fresh(test_dry_run_writes_nothing);
}
static void t9(void)
{
    run_fresh(test_lock_held_exits_quietly);
}
static void t10(void)
{
    run_fresh(test_database_unreachable);
}
static void t11(void)
{
    run_fresh(test_schema_missing_is_config_error);
}

static void t12(void)
{
    run_fresh(test_option_error_names_place_once);
}

static void t13(void)
{
    run_fresh(test_alert_throttled_across_runs);
}
static void t14(void)
{
    run_fresh(test_failed_delivery_is_retried);
}
static void t15(void)
{
    run_fresh(test_orders_stale);
}
static void t16(void)
{
    run_fresh(test_scheduler_missed);
}
static void t17(void)
{
    run_fresh(test_db_down_alert_throttled);
}

static void t18(void)
{
    run_fresh(test_source_orders_applied_same_run);
}

static void t19(void)
{
    run_fresh(test_failed_order_alert_queued);
}

static void t20(void)
{
    run_fresh(test_rolled_back_stays_on_change);
}
static void t21(void)
{
    run_fresh(test_metrics_file_written);
}

static void t22(void)
{
    run_fresh(test_changed_after_apply_flagged_once);
}

static void t23(void)
{
    run_fresh(test_no_steps_only_stages);
}

static void t24(void)
{
    run_fresh(test_source_page_one_transaction);
}

static void t25(void)
{
    run_fresh(test_staged_lines_in_multirow_inserts);
}

static void t26(void)
{
    run_fresh(test_after_commit_gathered_across_claims);
}

static const struct cpbtest_case cases[] = {
    CASE("applied, after-commit once, nothing twice", t1),
    CASE("FAIL holds the order INVALID with its reason", t2),
    CASE("RETRY counted across runs until DEAD", t3),
    CASE("RETRY waits for its backoff", t4),
    CASE("after-commit resumes without re-applying", t5),
    CASE("after-commit gives up and notifies sync.failed", t6),
    CASE("events are digested; a failing notifier does not block", t7),
    CASE("dry run writes nothing", t8),
    CASE("a held lock exits quietly with 75", t9),
    CASE("an unreachable database exits 69", t10),
    CASE("a database without the schema exits 78", t11),
    CASE("an option error names its place once", t12),
    CASE("an alert is throttled across runs", t13),
    CASE("a failed delivery is sent again next run", t14),
    CASE("orders.stale", t15),
    CASE("scheduler.missed", t16),
    CASE("db.unreachable throttled without the database", t17),
    CASE("orders a source stages are applied in the same run", t18),
    CASE("a failed order alert is queued and delivered later", t19),
    CASE("a rolled-back order stays so when the store changes it", t20),
    CASE("a run rewrites the metrics file", t21),
    CASE("a change after apply is flagged once per version", t22),
    CASE("a pipeline without steps only stages", t23),
    CASE("a source's page is staged in one transaction, else order by order", t24),
    CASE("staged lines go in multi-row inserts, whole", t25),
    CASE("after-commit work is gathered across claim batches, never re-claimed", t26),
    {NULL, NULL},
};
static const struct cpbtest_suite suite = {"runner", setup, NULL, cases};
static const struct cpbtest_suite *const suites[] = {&suite, NULL};

int main(int argc, char **argv)
{
    return cpbtest_run(argc, argv, suites);
}
