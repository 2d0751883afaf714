/*
 * test_schema.c — `cpbridge db init` on real databases (SQLite through its
 * ODBC driver, and PostgreSQL): every migration from an empty database; an
 * upgrade from the previous version that keeps the data; re-running changes
 * nothing; a schema newer than the binary is refused; the demo subset goes
 * only into a database without Counterpoint tables of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/schema.h"
#include "services/db.h"
#include "services/sql.h"

static enum db_dialect dialect;
static char conn[1024];
static char pg_db[64];

/* A fresh, empty database: a new SQLite file, or a new PostgreSQL
 * database created through the test cluster. */
static struct db *fresh(void)
{
    struct db *db = NULL;
    struct err e = {0};
    if (dialect == DB_SQLITE) {
        snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
    } else {
        static unsigned n;
        const char *base = cpbtest_pg_conn();
        CU_ASSERT_PTR_NOT_NULL_FATAL(base);
        struct db *admin = NULL;
        CU_ASSERT_EQUAL_FATAL(db_connect(base, DB_POSTGRESQL, 5000, &admin, &e), 0);
        snprintf(pg_db, sizeof pg_db, "cpbschema_%ld_%u", (long)getpid(), n++);
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", pg_db);
        CU_ASSERT_EQUAL_FATAL(db_exec(admin, sql), CPB_OK);
        db_close(admin);
        /* The same connection string with Database= replaced. */
        const char *d = strstr(base, "Database=");
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        const char *rest = strchr(d, ';');
        snprintf(conn, sizeof conn, "%.*sDatabase=%s%s", (int)(d - base), base, pg_db,
                 rest != NULL ? rest : "");
    }
    CU_ASSERT_EQUAL_FATAL(db_connect(conn, dialect, 5000, &db, &e), 0);
    return db;
}

static void drop_pg(void)
{
    if (dialect != DB_POSTGRESQL || pg_db[0] == '\0') {
        return;
    }
    struct db *admin = NULL;
    struct err e = {0};
    if (db_connect(cpbtest_pg_conn(), DB_POSTGRESQL, 5000, &admin, &e) == 0) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", pg_db);
        (void)db_exec(admin, sql);
        db_close(admin);
    }
    pg_db[0] = '\0';
}

static int64_t count(struct db *db, const char *sql)
{
    int64_t v = -1;
    CU_ASSERT_EQUAL(sql_query_int(db, sql, NULL, 0, &v, NULL), CPB_OK);
    return v;
}

static void test_from_empty(void)
{
    struct db *db = fresh();
    struct err e = {0};
    int from = -1;
    int to = -1;
    int version = -1;
    int latest = schema_latest(dialect);
    CU_ASSERT(latest >= 2);
    CU_ASSERT_EQUAL(schema_current(db, &version, &e), 0);
    CU_ASSERT_EQUAL(version, 0);
    CU_ASSERT_EQUAL(schema_init(db, false, 0, &from, &to, &e), 0);
    CU_ASSERT_EQUAL(from, 0);
    CU_ASSERT_EQUAL(to, latest);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_SCHEMA_VERSION"), latest);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 0);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_ALERT_OUTBOX"), 0);
    CU_ASSERT_EQUAL(count(db, "SELECT NEXT_VAL FROM USER_DOC_COUNTER WHERE COUNTER_ID = 'DOC_ID'"),
                    100000000001);
    /* Again: nothing to do, nothing changed. */
    CU_ASSERT_EQUAL(schema_init(db, false, 0, &from, &to, &e), 0);
    CU_ASSERT_EQUAL(from, latest);
    CU_ASSERT_EQUAL(to, latest);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_SCHEMA_VERSION"), latest);
    if (e.code != 0) {
        fprintf(stderr, "%s\n", e.msg);
    }
    db_close(db);
    drop_pg();
}

static void test_upgrade_keeps_data(void)
{
    struct db *db = fresh();
    struct err e = {0};
    int from = -1;
    int to = -1;
    int latest = schema_latest(dialect);
    CU_ASSERT_EQUAL_FATAL(schema_init(db, false, latest - 1, &from, &to, &e), 0);
    CU_ASSERT_EQUAL(to, latest - 1);
    /* Data written under the previous version. */
    struct sql_arg a[] = {sql_time(1700000000000), sql_time(1700000000000),
                          sql_time(1700000000000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, PAYLOAD,"
                             " PAYLOAD_HASH, NEXT_ATTEMPT_DT, RECEIVED_DT, UPDATED_DT)"
                             " VALUES ('shop', '42', '{}', 'h', ?, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(schema_init(db, false, 0, &from, &to, &e), 0);
    CU_ASSERT_EQUAL(from, latest - 1);
    CU_ASSERT_EQUAL(to, latest);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE EXT_ORDER_ID = '42'"),
                    1);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_ALERT_OUTBOX"), 0);
    if (e.code != 0) {
        fprintf(stderr, "%s\n", e.msg);
    }
    db_close(db);
    drop_pg();
}

static void test_newer_schema_refused(void)
{
    struct db *db = fresh();
    struct err e = {0};
    int from = -1;
    int to = -1;
    CU_ASSERT_EQUAL_FATAL(schema_init(db, false, 0, &from, &to, &e), 0);
    struct sql_arg a[] = {sql_int(schema_latest(dialect) + 1), sql_time(1700000000000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SCHEMA_VERSION (VERSION, NAME, APPLIED_DT)"
                             " VALUES (?, 'from the future', ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(schema_init(db, false, 0, &from, &to, &e), -1);
    CU_ASSERT_EQUAL(e.code, CPB_EXIT_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "newer than this cpbridge"));
    db_close(db);
    drop_pg();
}

static void test_demo_only_on_empty(void)
{
    struct db *db = fresh();
    struct err e = {0};
    int from = -1;
    int to = -1;
    /* Demo data on a fresh database, then again: present, not doubled. */
    CU_ASSERT_EQUAL_FATAL(schema_init(db, true, 0, &from, &to, &e), 0);
    int64_t items = count(db, "SELECT COUNT(*) FROM IM_ITEM");
    CU_ASSERT(items >= 50);
    CU_ASSERT_EQUAL(schema_init(db, true, 0, &from, &to, &e), 0);
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM IM_ITEM"), items);
    db_close(db);
    drop_pg();

    /* A database with Counterpoint tables cpbridge did not create. */
    db = fresh();
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(db_exec(db, "CREATE TABLE PS_DOC_HDR (DOC_ID BIGINT NOT NULL PRIMARY KEY)"),
                    CPB_OK);
    CU_ASSERT_EQUAL(schema_init(db, true, 0, &from, &to, &e), -1);
    CU_ASSERT_EQUAL(e.code, CPB_EXIT_DATAERR);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "refusing --demo"));
    /* The engine's own tables are still created: only the demo is refused. */
    CU_ASSERT_EQUAL(count(db, "SELECT COUNT(*) FROM USER_ORDER_STAGING"), 0);
    db_close(db);
    drop_pg();
}

static int count_stmt(const char *stmt, void *arg)
{
    unsigned *n = arg;
    (*n)++;
    CU_ASSERT_PTR_NULL(strstr(stmt, "--"));
    CU_ASSERT_PTR_NULL(strchr(stmt, ';'));
    return 0;
}

static void test_splitting(void)
{
    unsigned n = 0;
    const char *sql = "-- a comment; not a statement end\n"
                      "CREATE TABLE A (X INT);\n"
                      "  -- indented comment\n"
                      "INSERT INTO A\n"
                      "VALUES (1);\n"
                      "\n"
                      "SELECT 1";
    CU_ASSERT_EQUAL(schema_each_statement(sql, count_stmt, &n), 0);
    CU_ASSERT_EQUAL(n, 3);
}

static int use_sqlite(void)
{
    dialect = DB_SQLITE;
    return 0;
}

static int use_pg(void)
{
    dialect = DB_POSTGRESQL;
    return 0;
}

static const struct cpbtest_case cases[] = {
    {"migrations from an empty database", test_from_empty},
    {"upgrade from the previous version keeps data", test_upgrade_keeps_data},
    {"a newer schema is refused", test_newer_schema_refused},
    {"demo data only where Counterpoint is not", test_demo_only_on_empty},
    {NULL, NULL},
};
static const struct cpbtest_case split_cases[] = {
    {"statements split at a semicolon ending a line", test_splitting},
    {NULL, NULL},
};
static const struct cpbtest_suite sqlite_suite = {"sqlite", use_sqlite, NULL, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", use_pg, NULL, cases};
static const struct cpbtest_suite split_suite = {"split", NULL, NULL, split_cases};
static const struct cpbtest_suite *const suites[] = {&split_suite, &sqlite_suite, &pg_suite,
                                                     NULL};

int main(int argc, char **argv)
{
    return cpbtest_run(argc, argv, suites);
}
