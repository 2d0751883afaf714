/*
 * cpbtest.c — the CUnit runner and scratch-space helpers shared by every
 * test program (see cpbtest.h).
 */
#include "cpbtest.h"

#include "engine/schema.h"
#include "services/sql.h"

#include <CUnit/Basic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[512];
static int run_failed;

static void remove_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        return;
    }
    if (run_failed && getenv("CPB_TEST_KEEP") != NULL) {
        fprintf(stderr, "cpbtest: kept %s\n", tmpdir);
        return;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cpbtest: could not remove %s\n", tmpdir);
    }
}

const char *cpbtest_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/cpbtest.XXXXXX", base != NULL ? base : "/tmp");
        if (mkdtemp(tmpdir) == NULL) {
            perror("cpbtest: mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

static char *rotation(void)
{
    static char bufs[8][1024];
    static unsigned next;
    return bufs[next++ % 8];
}

const char *cpbtest_path(const char *name)
{
    char *b = rotation();
    snprintf(b, 1024, "%s/%s", cpbtest_tmpdir(), name);
    return b;
}

static const char *env_path(const char *var, const char *fallback, const char *rel)
{
    const char *base = getenv(var);
    char *b = rotation();
    snprintf(b, 1024, "%s/%s", base != NULL ? base : fallback, rel);
    return b;
}

const char *cpbtest_src(const char *rel)
{
    return env_path("CPB_TEST_SRC", ".", rel);
}

const char *cpbtest_build(const char *rel)
{
    return env_path("CPB_TEST_BUILD", ".", rel);
}

const char *cpbtest_sqlite_conn(void)
{
    static unsigned n;
    char *b = rotation();
    snprintf(b, 1024, "Driver=SQLite3;Database=%s/db%u.sqlite;Timeout=1000;JournalMode=WAL",
             cpbtest_tmpdir(), n++);
    return b;
}

const char *cpbtest_pg_conn(void)
{
    const char *c = getenv("CPB_TEST_PG");
    if (c == NULL || c[0] == '\0') {
        CU_FAIL("CPB_TEST_PG is not set: run the tests through scripts/test.sh, which starts "
                "PostgreSQL (tests/services/pg.sh)");
        return NULL;
    }
    return c;
}

char *cpbtest_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t n = 0;
    size_t cap = 0;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *grown = realloc(data, cap);
            if (grown == NULL) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = grown;
        }
        size_t got = fread(data + n, 1, 4096, f);
        n += got;
        if (got < 4096) {
            break;
        }
    }
    fclose(f);
    data[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return data;
}

int cpbtest_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0) {
        rc = -1;
    }
    return rc;
}

int cpbtest_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd) {
        return -1;
    }
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

int cpbtest_run(int argc, char **argv, const struct cpbtest_suite *const *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "cpbtest: %s\n", CU_get_error_msg());
        return 1;
    }
    for (size_t i = 0; suites[i] != NULL; i++) {
        const struct cpbtest_suite *s = suites[i];
        if (argc > 1 && strcmp(argv[1], s->name) != 0) {
            continue;
        }
        CU_pSuite cs = CU_add_suite(s->name, s->setup, s->teardown);
        if (cs == NULL) {
            fprintf(stderr, "cpbtest: %s\n", CU_get_error_msg());
            CU_cleanup_registry();
            return 1;
        }
        for (size_t j = 0; s->cases[j].name != NULL; j++) {
            if (CU_add_test(cs, s->cases[j].name, s->cases[j].fn) == NULL) {
                fprintf(stderr, "cpbtest: %s\n", CU_get_error_msg());
                CU_cleanup_registry();
                return 1;
            }
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned bad = CU_get_number_of_suites_failed() + CU_get_number_of_tests_failed() +
                   CU_get_number_of_failures();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "cpbtest: no test ran\n");
        return 1;
    }
    run_failed = bad != 0;
    return bad != 0 ? 1 : (int)CU_get_error();
}

int cpbtest_db_init_demo(const char *conn, enum db_dialect dialect)
{
    struct db *db = NULL;
    struct err e = {0};
    int from = 0;
    int to = 0;
    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "cpbtest: connect: %s\n", e.msg);
        return -1;
    }
    int rc = schema_init(db, true, 0, &from, &to, &e);
    if (rc != 0) {
        fprintf(stderr, "cpbtest: schema_init: %s\n", e.msg);
    }
    db_close(db);
    return rc;
}

static char fresh_schema[80];

int cpbtest_db_fresh(enum db_dialect dialect, const char *prefix, char *conn, size_t n)
{
    struct db *db = NULL;
    struct err e = {0};
    char sql[200];
    if (dialect == DB_SQLITE) {
        snprintf(conn, n, "%s", cpbtest_sqlite_conn());
        return cpbtest_db_init_demo(conn, dialect);
    }
    const char *pg = getenv("CPB_TEST_PG");
    if (pg == NULL || pg[0] == '\0') {
        fprintf(stderr, "CPB_TEST_PG is not set: run the tests through scripts/test.sh\n");
        return -1;
    }
    snprintf(fresh_schema, sizeof fresh_schema, "%s_%ld", prefix, (long)getpid());
    if (db_connect(pg, DB_POSTGRESQL, 10000, &db, &e) != 0) {
        fprintf(stderr, "cpbtest: connect: %s\n", e.msg);
        return -1;
    }
    enum cpb_status rc = db_begin(db);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fresh_schema);
    if (rc == CPB_OK) {
        rc = db_exec(db, sql);
    }
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", fresh_schema);
    if (rc == CPB_OK) {
        rc = db_exec(db, sql);
    }
    if (rc == CPB_OK) {
        rc = db_commit(db);
    }
    if (rc != CPB_OK) {
        fprintf(stderr, "cpbtest: create schema: %s\n", db_last_error(db));
    }
    db_close(db);
    if (rc != CPB_OK) {
        fresh_schema[0] = '\0';
        return -1;
    }
    snprintf(conn, n, "%s;ConnSettings=SET search_path TO %s", pg, fresh_schema);
    return cpbtest_db_init_demo(conn, dialect);
}

void cpbtest_db_drop(void)
{
    struct db *db = NULL;
    struct err e = {0};
    char sql[200];
    if (fresh_schema[0] == '\0') {
        return;
    }
    if (db_connect(getenv("CPB_TEST_PG"), DB_POSTGRESQL, 10000, &db, &e) == 0) {
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fresh_schema);
        if (db_begin(db) != CPB_OK || db_exec(db, sql) != CPB_OK || db_commit(db) != CPB_OK) {
            fprintf(stderr, "cpbtest: drop schema: %s\n", db_last_error(db));
        }
        db_close(db);
    }
    fresh_schema[0] = '\0';
}

struct db *cpbtest_connect(const char *conn, enum db_dialect dialect)
{
    struct db *db = NULL;
    struct err e = {0};
    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "connect: %s\n", e.msg);
        CU_FAIL_FATAL("cannot connect to the test database");
    }
    return db;
}

int64_t cpbtest_q_int(struct db *db, const char *sql, const char *arg)
{
    int64_t v = -1;
    bool is_null = false;
    struct sql_arg a[] = {sql_text(arg)};
    if (sql_query_int(db, sql, a, arg != NULL ? 1 : 0, &v, &is_null) != CPB_OK) {
        fprintf(stderr, "query '%s': %s\n", sql, db_last_error(db));
        return -1;
    }
    return is_null ? 0 : v;
}

char *cpbtest_q_text(struct db *db, const char *sql, const char *arg)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char *out = NULL;
    struct sql_arg a[] = {sql_text(arg)};
    if (sql_query(db, sql, a, arg != NULL ? 1 : 0, &st) == CPB_OK && db_fetch(st) == CPB_OK &&
        db_col_text(st, 1, &v) == CPB_OK && v != NULL) {
        out = strdup(v);
    }
    db_finalize(st);
    return out;
}
