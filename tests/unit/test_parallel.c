/*
 * test_parallel.c — several pipelines in one process, each run on its own
 * thread through the real engine and stages (source-file, validate,
 * create-order, update-qty, sync-status in dry run) and the demo
 * Counterpoint data:
 *   - two pipelines on two SQLite databases at once end exactly as one
 *     pipeline run alone (same states, reasons, tickets and commitments), and
 *     every log line carries its own thread's run id and pipeline name;
 *   - two pipelines on one PostgreSQL database at once, in rounds, apply each
 *     order exactly once (the database claims share the work) and commit the
 *     same inventory as the run alone.
 * Nothing in the host may be process-global for this to hold (the stage's
 * context travels with its statements); the CI also runs it under
 * ThreadSanitizer (scripts/test.sh).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "lib/buf.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

/* What the demo samples give: 12 orders, 8 applied and 4 held. */
#define SAMPLES         12
#define SAMPLES_APPLIED 8

struct job {
    const char *path; /* the pipeline file (borrowed) */
    struct run_result res;
    int code;
    char error[2048];
};

static char pg_schema[64];

/* ---- databases ------------------------------------------------------------ */

/* A fresh SQLite database with the engine schema and the demo data; the
 * connection string goes to `conn`. */
static int fresh_sqlite(char *conn, size_t n)
{
    snprintf(conn, n, "%s", cpbtest_sqlite_conn());
    return cpbtest_db_init_demo(conn, DB_SQLITE);
}

static int pg_exec(const char *sql)
{
    struct db *db = NULL;
    struct err e = {0};
    const char *pg = getenv("CPB_TEST_PG");
    if (pg == NULL || pg[0] == '\0') {
        fprintf(stderr, "CPB_TEST_PG is not set: run the tests through scripts/test.sh\n");
        return -1;
    }
    if (db_connect(pg, DB_POSTGRESQL, 10000, &db, &e) != 0) {
        fprintf(stderr, "connect: %s\n", e.msg);
        return -1;
    }
    enum cpb_status rc = db_begin(db);
    if (rc == CPB_OK) {
        rc = db_exec(db, sql);
    }
    if (rc == CPB_OK) {
        rc = db_commit(db);
    }
    if (rc != CPB_OK) {
        fprintf(stderr, "%s: %s\n", sql, db_last_error(db));
    }
    db_close(db);
    return rc == CPB_OK ? 0 : -1;
}

/* A fresh PostgreSQL schema of its own with the engine and demo tables. */
static int fresh_pg(char *conn, size_t n)
{
    char sql[256];
    snprintf(pg_schema, sizeof pg_schema, "parallel_%ld", (long)getpid());
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", pg_schema,
             pg_schema);
    if (pg_exec(sql) != 0) {
        return -1;
    }
    snprintf(conn, n, "%s;ConnSettings=SET search_path TO %s", getenv("CPB_TEST_PG"), pg_schema);
    return cpbtest_db_init_demo(conn, DB_POSTGRESQL);
}

/* The rows of `sql` as text, one line a row, columns joined by '|' (new
 * string, free()); NULL on error. */
static char *rows_text(const char *conn, enum db_dialect dialect, const char *sql)
{
    struct db *db = NULL;
    struct cpb_stmt *st = NULL;
    struct err e = {0};
    struct buf out = BUF_INIT;
    char *ret = NULL;
    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "connect: %s\n", e.msg);
        goto out;
    }
    if (sql_query(db, sql, NULL, 0, &st) != CPB_OK) {
        fprintf(stderr, "%s: %s\n", sql, db_last_error(db));
        goto out;
    }
    enum cpb_status rc;
    while ((rc = db_fetch(st)) == CPB_OK) {
        for (unsigned c = 1;; c++) {
            const char *v = NULL;
            if (db_col_text(st, c, &v) != CPB_OK) {
                break;
            }
            buf_addf(&out, "%s%s", c > 1 ? "|" : "", v != NULL ? v : "NULL");
        }
        buf_adds(&out, "\n");
    }
    if (rc != CPB_SKIP) {
        fprintf(stderr, "%s: %s\n", sql, db_last_error(db));
        goto out;
    }
    ret = strdup(buf_str(&out));
out:
    db_finalize(st);
    db_close(db);
    buf_free(&out);
    return ret;
}

static int64_t count_of(const char *conn, enum db_dialect dialect, const char *sql)
{
    char *text = rows_text(conn, dialect, sql);
    int64_t v = -1;
    if (text != NULL) {
        char *end = NULL;
        v = strtoll(text, &end, 10);
        if (end == text) {
            v = -1;
        }
    }
    free(text);
    return v;
}

/* What a pipeline's run leaves: each order's state, reason and ticket. */
#define ORDERS_SQL                                                                                 \
    "SELECT EXT_ORDER_ID, STATUS, COALESCE(LAST_ERROR_CODE, ''), COALESCE(CP_TKT_NO, '')"          \
    " FROM USER_ORDER_STAGING ORDER BY EXT_ORDER_ID"
/* ... and what it committed in Counterpoint. */
#define INVENTORY_SQL                                                                              \
    "SELECT ITEM_NO, LOC_ID, CAST(QTY_ON_SO AS INTEGER) FROM IM_INV"                               \
    " WHERE QTY_ON_SO <> 0 ORDER BY ITEM_NO, LOC_ID"

/* ---- pipelines -------------------------------------------------------------- */

static const char *write_pipeline(const char *name, const char *dialect, const char *conn,
                                  unsigned batch)
{
    char text[4096];
    char file[96];
    char lock[96];
    snprintf(file, sizeof file, "%s.cfg", name);
    snprintf(lock, sizeof lock, "%s.lock", name);
    const char *lock_path = cpbtest_path(lock);
    snprintf(text, sizeof text,
             "name = \"%s\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; };\n"
             "run = { lock_file = \"%s\"; batch = %u; };\n"
             "retry = { max_attempts = 3; base = \"1s\"; cap = \"1m\"; };\n"
             "stages = (\n"
             "  { stage = \"source-file\"; id = \"samples\"; options = { path = \"%s\"; }; },\n"
             "  { stage = \"validate\"; options = { store = \"WEB\"; allow_walk_in = true;\n"
             "      price_check = \"warn\"; }; },\n"
             "  { stage = \"create-order\"; options = { store = \"WEB\"; station = \"WEB-01\";\n"
             "      pay_code = \"EC_WOOCOMM\"; }; },\n"
             "  { stage = \"update-qty\"; options = { column = \"QTY_ON_SO\"; }; },\n"
             "  { stage = \"sync-status\"; options = { url = \"https://shop.example\";\n"
             "      consumer_key = \"ck_demo\"; consumer_secret = \"cs_demo_%s\";\n"
             "      status = \"completed\"; dry_run = true; }; }\n"
             ");\n",
             name, dialect, conn, lock_path, batch, cpbtest_src("pipelines/samples"), name);
    const char *path = cpbtest_path(file);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

static void *run_job(void *arg)
{
    struct job *j = arg;
    struct pipeline *p = NULL;
    struct err e = {0};
    struct run_options o = {.pipeline_path = j->path};
    j->code = -1;
    if (pipeline_open(j->path, &p, &e) != 0 || pipeline_init(p, &e) != 0) {
        snprintf(j->error, sizeof j->error, "pipeline %s: %s", j->path, e.msg);
        goto out;
    }
    j->code = runner_run(p, &o, &j->res, &e);
    if (j->code != CPB_EXIT_OK && j->code != CPB_EXIT_ATTENTION) {
        snprintf(j->error, sizeof j->error, "run %s: %s", j->path, e.msg);
    }
out:
    pipeline_close(p);
    return NULL;
}

/* Run the jobs, each on its own thread, all at once. */
static void run_together(struct job *jobs, size_t n)
{
    pthread_t tid[8];
    CU_ASSERT_FATAL(n <= 8);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tid[i], NULL, run_job, &jobs[i]), 0);
    }
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(pthread_join(tid[i], NULL), 0);
        if (jobs[i].error[0] != '\0') {
            fprintf(stderr, "%s\n", jobs[i].error);
        }
        CU_ASSERT(jobs[i].code == CPB_EXIT_OK || jobs[i].code == CPB_EXIT_ATTENTION);
    }
}

/* Every JSON log line of the file names the pipeline of its run id; returns
 * how many lines run `run_id` wrote that contain `needle`. */
static int lines_of_run(const char *log_path, const struct job *jobs, size_t n,
                        const char *const *names, const char *run_id, const char *needle)
{
    char *text = cpbtest_slurp(log_path, NULL);
    int found = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        CU_ASSERT_PTR_NOT_NULL(o);
        if (o == NULL) {
            continue;
        }
        const char *run = json_string_value(json_object_get(o, "run"));
        const char *pipe = json_string_value(json_object_get(o, "pipeline"));
        const char *msg = json_string_value(json_object_get(o, "msg"));
        if (run != NULL) {
            bool known = false;
            for (size_t i = 0; i < n; i++) {
                if (strcmp(run, jobs[i].res.run_id) == 0) {
                    known = true;
                    CU_ASSERT_PTR_NOT_NULL(pipe);
                    CU_ASSERT(pipe != NULL && strcmp(pipe, names[i]) == 0);
                }
            }
            CU_ASSERT(known);
            if (strcmp(run, run_id) == 0 && msg != NULL && strstr(msg, needle) != NULL) {
                found++;
            }
        }
        json_decref(o);
    }
    free(text);
    return found;
}

/* ---- tests -------------------------------------------------------------------- */

/* Two pipelines, two SQLite databases, two threads: each ends exactly as the
 * same pipeline run alone, and the log lines do not mix. */
static void test_two_pipelines_sqlite(void)
{
    char conn_ref[1024];
    char conn_a[1024];
    char conn_b[1024];
    CU_ASSERT_EQUAL_FATAL(fresh_sqlite(conn_ref, sizeof conn_ref), 0);
    CU_ASSERT_EQUAL_FATAL(fresh_sqlite(conn_a, sizeof conn_a), 0);
    CU_ASSERT_EQUAL_FATAL(fresh_sqlite(conn_b, sizeof conn_b), 0);

    struct job ref = {.path = write_pipeline("alone", "sqlite", conn_ref, 50)};
    run_job(&ref);
    CU_ASSERT_EQUAL_FATAL(ref.code, CPB_EXIT_ATTENTION);
    CU_ASSERT_EQUAL(ref.res.counts.applied, SAMPLES_APPLIED);

    const char *log_path = cpbtest_path("parallel.log");
    FILE *logf = fopen(log_path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(logf);
    log_configure(CPB_LOG_INFO, LOG_JSON);
    log_set_stream(logf);
    const char *names[2] = {"north", "south"};
    struct job jobs[2] = {{.path = write_pipeline(names[0], "sqlite", conn_a, 2)},
                          {.path = write_pipeline(names[1], "sqlite", conn_b, 5)}};
    run_together(jobs, 2);
    log_set_stream(NULL);
    log_configure(CPB_LOG_INFO, LOG_TEXT);
    fclose(logf);

    char *want_orders = rows_text(conn_ref, DB_SQLITE, ORDERS_SQL);
    char *want_inv = rows_text(conn_ref, DB_SQLITE, INVENTORY_SQL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_orders);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_inv);
    CU_ASSERT(strlen(want_inv) > 0);
    const char *conns[2] = {conn_a, conn_b};
    for (size_t i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(jobs[i].res.counts.applied, SAMPLES_APPLIED);
        CU_ASSERT_EQUAL(jobs[i].res.counts.invalid, SAMPLES - SAMPLES_APPLIED);
        char *orders = rows_text(conns[i], DB_SQLITE, ORDERS_SQL);
        char *inv = rows_text(conns[i], DB_SQLITE, INVENTORY_SQL);
        CU_ASSERT(orders != NULL && strcmp(orders, want_orders) == 0);
        CU_ASSERT(inv != NULL && strcmp(inv, want_inv) == 0);
        if (orders != NULL && strcmp(orders, want_orders) != 0) {
            fprintf(stderr, "%s:\n%s\nalone:\n%s\n", names[i], orders, want_orders);
        }
        free(orders);
        free(inv);
        /* Each run's own lines: it staged and applied the samples itself. */
        CU_ASSERT_EQUAL(lines_of_run(log_path, jobs, 2, names, jobs[i].res.run_id, "staged order"),
                        SAMPLES);
        CU_ASSERT_EQUAL(lines_of_run(log_path, jobs, 2, names, jobs[i].res.run_id, "applied:"),
                        SAMPLES_APPLIED);
    }
    CU_ASSERT(strcmp(jobs[0].res.run_id, jobs[1].res.run_id) != 0);
    free(want_orders);
    free(want_inv);
}

/* Two pipelines on one PostgreSQL database at once, in rounds: the database
 * claims share the work, each order is applied exactly once, and the
 * inventory committed is what one pipeline alone commits. */
static void test_two_pipelines_one_pg_database(void)
{
    char conn_ref[1024];
    char conn[1024];
    CU_ASSERT_EQUAL_FATAL(fresh_sqlite(conn_ref, sizeof conn_ref), 0);
    struct job ref = {.path = write_pipeline("pg-alone", "sqlite", conn_ref, 50)};
    run_job(&ref);
    CU_ASSERT_EQUAL_FATAL(ref.code, CPB_EXIT_ATTENTION);
    char *want_inv = rows_text(conn_ref, DB_SQLITE, INVENTORY_SQL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_inv);

    CU_ASSERT_EQUAL_FATAL(fresh_pg(conn, sizeof conn), 0);
    const char *a = write_pipeline("east", "postgresql", conn, 1);
    const char *b = write_pipeline("west", "postgresql", conn, 1);
    unsigned applied = 0;
    for (int round = 0; round < 3; round++) {
        struct job jobs[2] = {{.path = a}, {.path = b}};
        run_together(jobs, 2);
        applied += (unsigned)(jobs[0].res.counts.applied + jobs[1].res.counts.applied);
    }
    CU_ASSERT_EQUAL(applied, SAMPLES_APPLIED);
    CU_ASSERT_EQUAL(count_of(conn, DB_POSTGRESQL, "SELECT COUNT(*) FROM USER_ORDER_STAGING"),
                    SAMPLES);
    CU_ASSERT_EQUAL(count_of(conn, DB_POSTGRESQL,
                             "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"),
                    SAMPLES_APPLIED);
    CU_ASSERT_EQUAL(count_of(conn, DB_POSTGRESQL, "SELECT COUNT(*) FROM PS_DOC_HDR"),
                    SAMPLES_APPLIED);
    CU_ASSERT_EQUAL(count_of(conn, DB_POSTGRESQL, "SELECT COUNT(DISTINCT TKT_NO) FROM PS_DOC_HDR"),
                    SAMPLES_APPLIED);
    char *inv = rows_text(conn, DB_POSTGRESQL, INVENTORY_SQL);
    CU_ASSERT(inv != NULL && strcmp(inv, want_inv) == 0);
    if (inv != NULL && strcmp(inv, want_inv) != 0) {
        fprintf(stderr, "postgresql:\n%s\nalone (sqlite):\n%s\n", inv, want_inv);
    }
    free(inv);
    free(want_inv);
}

static int teardown_pg(void)
{
    if (pg_schema[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", pg_schema);
        (void)pg_exec(sql);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct cpbtest_case sqlite_cases[] = {
        {"two pipelines, two databases, two threads", test_two_pipelines_sqlite},
        {NULL, NULL},
    };
    static const struct cpbtest_case pg_cases[] = {
        {"two pipelines, one database, two threads", test_two_pipelines_one_pg_database},
        {NULL, NULL},
    };
    static const struct cpbtest_suite sqlite = {"sqlite", NULL, NULL, sqlite_cases};
    static const struct cpbtest_suite pg = {"postgresql", NULL, teardown_pg, pg_cases};
    static const struct cpbtest_suite *const suites[] = {&sqlite, &pg, NULL};
    return cpbtest_run(argc, argv, suites);
}
