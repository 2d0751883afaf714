/*
 * test_db.c — tests of core/services/db.c against real databases: SQLite through its
 * ODBC driver (suite "sqlite", a fresh file per test) and the throwaway
 * PostgreSQL started by tests/services/pg.sh (suite "postgresql", from
 * CPB_TEST_PG), plus the pure error classification (suite "classify").
 * The same checks run on both drivers; each suite's setup picks the dialect.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpbtest.h"
#include "services/db.h"

static enum db_dialect dialect;

/* A connection string for the current suite: for SQLite a new database file
 * (copied into buf so a second connection can open the same file). */
static const char *new_target(char *buf, size_t n)
{
    const char *c = dialect == DB_SQLITE ? cpbtest_sqlite_conn() : cpbtest_pg_conn();
    if (c == NULL) {
        return NULL;
    }
    snprintf(buf, n, "%s", c);
    return buf;
}

static struct db *open_db(const char *conn)
{
    struct db *db = NULL;
    struct err err = {0};
    if (conn == NULL) {
        return NULL;
    }
    if (db_connect(conn, dialect, 5000, &db, &err) != 0) {
        fprintf(stderr, "connect failed: %s\n", err.msg);
        return NULL;
    }
    return db;
}

static enum cpb_status exec_sql(struct db *db, const char *sql)
{
    enum cpb_status st = db_exec(db, sql);
    if (st != CPB_OK) {
        fprintf(stderr, "exec '%s': %s\n", sql, db_last_error(db));
    }
    return st;
}

/* The first column of the first row of `sql` as an integer; -999 on error. */
static int64_t query_int(struct db *db, const char *sql)
{
    struct cpb_stmt *st = NULL;
    int64_t v = -999;
    bool is_null = true;
    if (db_prepare(db, sql, &st) != CPB_OK || db_execute(st, NULL) != CPB_OK ||
        db_fetch(st) != CPB_OK || db_col_int(st, 1, &v, &is_null) != CPB_OK || is_null) {
        fprintf(stderr, "query '%s': %s\n", sql, db_last_error(db));
        v = -999;
    }
    db_finalize(st);
    return v;
}

/* The one table most tests use, created fresh. */
static void make_table(struct db *db)
{
    CU_ASSERT_EQUAL_FATAL(exec_sql(db, "DROP TABLE IF EXISTS t_db"), CPB_OK);
    CU_ASSERT_EQUAL_FATAL(exec_sql(db, "CREATE TABLE t_db (id BIGINT PRIMARY KEY, i BIGINT, "
                                       "d NUMERIC(19,4), s TEXT, ts TIMESTAMP)"),
                          CPB_OK);
}

static enum cpb_status insert_id(struct db *db, int64_t id)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = db_prepare(db, "INSERT INTO t_db (id) VALUES (?)", &st);
    if (rc == CPB_OK) {
        rc = db_bind_int(st, 1, id);
    }
    if (rc == CPB_OK) {
        rc = db_execute(st, NULL);
    }
    db_finalize(st);
    return rc;
}

/* ---- tests shared by both drivers -------------------------------------- */

static void t_connect_close(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    CU_ASSERT_EQUAL(db_get_dialect(db), dialect);
    CU_ASSERT_FALSE(db_in_transaction(db));
    CU_ASSERT_FALSE(db_broken(db));
    CU_ASSERT_STRING_EQUAL(db_last_error(db), "");
    CU_ASSERT_EQUAL(query_int(db, "SELECT 41 + 1"), 42);
    db_close(db);
    db_close(NULL);
}

static void t_connect_failure(void)
{
    struct db *db = (struct db *)&db; /* must be reset to NULL */
    struct err err = {0};
    char conn[1024];

    /* The driver manager echoes the library name: the password must not
     * survive into the message even when a driver repeats it. */
    CU_ASSERT_EQUAL(
        db_connect("Driver=/nonexistent/Xq7SecretPw.so;Pwd=Xq7SecretPw", dialect, 1000, &db, &err),
        -1);
    CU_ASSERT_PTR_NULL(db);
    CU_ASSERT_EQUAL(err.code, CPB_EXIT_UNAVAILABLE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "SQLSTATE"));
    CU_ASSERT_PTR_NULL(strstr(err.msg, "Xq7SecretPw"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "***"));

    if (dialect == DB_SQLITE) {
        /* A missing file with NoCreat=1. */
        struct err e2 = {0};
        CU_ASSERT_EQUAL(db_connect("Driver=SQLite3;Database=/nonexistent/dir/x.db;NoCreat=1;"
                                   "Timeout=100;Pwd=pw_Zk93",
                                   dialect, 1000, &db, &e2),
                        -1);
        CU_ASSERT_EQUAL(e2.code, CPB_EXIT_UNAVAILABLE);
        CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "SQLSTATE"));
        CU_ASSERT_PTR_NULL(strstr(e2.msg, "pw_Zk93"));
        return;
    }
    /* PostgreSQL: a wrong password. */
    const char *good = new_target(conn, sizeof conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(good);
    char bad[1200];
    const char *pw = strstr(good, "Pwd=");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
    snprintf(bad, sizeof bad, "%.*sPwd={Wr0ng;Pass}", (int)(pw - good), good);
    struct err e3 = {0};
    CU_ASSERT_EQUAL(db_connect(bad, dialect, 5000, &db, &e3), -1);
    CU_ASSERT_EQUAL(e3.code, CPB_EXIT_UNAVAILABLE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, "SQLSTATE 08"));
    CU_ASSERT_PTR_NULL(strstr(e3.msg, "Wr0ng;Pass"));
    CU_ASSERT_PTR_NULL(strstr(e3.msg, pw + 4));
    fprintf(stderr, "[%s] ", e3.msg);
}

/* 100 KB of mixed ASCII and multi-byte UTF-8, so chunked reads split
 * characters somewhere. */
static char *long_text(void)
{
    const char *piece = "Grüße aus Zürich – 東京 🚀 ";
    size_t pl = strlen(piece);
    size_t want = 100 * 1024;
    char *s = malloc(want + pl + 1);
    size_t n = 0;
    if (s == NULL) {
        return NULL;
    }
    while (n < want) {
        memcpy(s + n, piece, pl);
        n += pl;
    }
    s[n] = '\0';
    return s;
}

static void t_types_roundtrip(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    make_table(db);
    char *big = long_text();
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);

    static const struct {
        int64_t i;
        int64_t d;
        const char *s;
        int64_t ts;
        int64_t ts_back;
    } rows[] = {
        {INT64_MAX, 123456789012345, "plain", 1700000000123, 1700000000123},
        {INT64_MIN, -1, "Grüße – 東京 🚀", -86400000, -86400000},
        {0, 0, "", 4102444800000, 4102444800000},
        {-7, 1234500, "quote ' and \" and ; --", 951782400000, 951782400000},
        {1, 9000000000, NULL, 1, 1},
    };
    size_t nrows = sizeof rows / sizeof rows[0];
    struct cpb_stmt *st = NULL;
    CU_ASSERT_EQUAL_FATAL(
        db_prepare(db, "INSERT INTO t_db (id, i, d, s, ts) VALUES (?, ?, ?, ?, ?)", &st), CPB_OK);
    for (size_t r = 0; r < nrows; r++) {
        int64_t rows_hit = -1;
        CU_ASSERT_EQUAL(db_bind_int(st, 1, (int64_t)r + 1), CPB_OK);
        CU_ASSERT_EQUAL(db_bind_int(st, 2, rows[r].i), CPB_OK);
        CU_ASSERT_EQUAL(db_bind_decimal(st, 3, rows[r].d), CPB_OK);
        CU_ASSERT_EQUAL(db_bind_text(st, 4, rows[r].s), CPB_OK);
        CU_ASSERT_EQUAL(db_bind_time(st, 5, rows[r].ts), CPB_OK);
        CU_ASSERT_EQUAL(db_execute(st, &rows_hit), CPB_OK);
        CU_ASSERT_EQUAL(rows_hit, 1);
    }
    /* Row 6: every value NULL but the key, through both NULL binds. */
    CU_ASSERT_EQUAL(db_bind_int(st, 1, 6), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_null(st, 2), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_null(st, 3), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_text(st, 4, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_null(st, 5), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    /* Row 7: the long text. */
    CU_ASSERT_EQUAL(db_bind_int(st, 1, 7), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_int(st, 2, 7), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_decimal(st, 3, 70000), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_text(st, 4, big), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_time(st, 5, 0), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    db_finalize(st);

    st = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "SELECT id, i, d, s, ts FROM t_db ORDER BY id", &st),
                          CPB_OK);
    CU_ASSERT_EQUAL_FATAL(db_execute(st, NULL), CPB_OK);
    for (size_t r = 0; r < nrows; r++) {
        int64_t id = 0;
        int64_t i = 0;
        int64_t d = 0;
        int64_t ts = 0;
        bool null_i = true;
        bool null_d = true;
        bool null_ts = true;
        const char *s = "unset";
        CU_ASSERT_EQUAL_FATAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_int(st, 1, &id, NULL), CPB_OK);
        CU_ASSERT_EQUAL(id, (int64_t)r + 1);
        CU_ASSERT_EQUAL(db_col_int(st, 2, &i, &null_i), CPB_OK);
        CU_ASSERT_FALSE(null_i);
        CU_ASSERT_EQUAL(i, rows[r].i);
        CU_ASSERT_EQUAL(db_col_decimal(st, 3, &d, &null_d), CPB_OK);
        CU_ASSERT_FALSE(null_d);
        CU_ASSERT_EQUAL(d, rows[r].d);
        if (d != rows[r].d) {
            const char *raw = NULL;
            (void)db_col_text(st, 3, &raw);
            fprintf(stderr, "decimal row %zu: got %lld from '%s'\n", r, (long long)d,
                    raw != NULL ? raw : "(null)");
        }
        CU_ASSERT_EQUAL(db_col_text(st, 4, &s), CPB_OK);
        if (rows[r].s == NULL) {
            CU_ASSERT_PTR_NULL(s);
        } else {
            CU_ASSERT_PTR_NOT_NULL(s);
            CU_ASSERT(s != NULL && strcmp(s, rows[r].s) == 0);
        }
        CU_ASSERT_EQUAL(db_col_time(st, 5, &ts, &null_ts), CPB_OK);
        CU_ASSERT_FALSE(null_ts);
        CU_ASSERT_EQUAL(ts, rows[r].ts_back);
        if (ts != rows[r].ts_back) {
            const char *raw = NULL;
            (void)db_col_text(st, 5, &raw);
            fprintf(stderr, "time row %zu: got %lld from '%s'\n", r, (long long)ts,
                    raw != NULL ? raw : "(null)");
        }
    }
    /* The NULL row. */
    {
        int64_t v = 5;
        bool is_null = false;
        const char *s = "unset";
        CU_ASSERT_EQUAL_FATAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_int(st, 2, &v, &is_null), CPB_OK);
        CU_ASSERT_TRUE(is_null);
        is_null = false;
        CU_ASSERT_EQUAL(db_col_decimal(st, 3, &v, &is_null), CPB_OK);
        CU_ASSERT_TRUE(is_null);
        CU_ASSERT_EQUAL(db_col_text(st, 4, &s), CPB_OK);
        CU_ASSERT_PTR_NULL(s);
        is_null = false;
        CU_ASSERT_EQUAL(db_col_time(st, 5, &v, &is_null), CPB_OK);
        CU_ASSERT_TRUE(is_null);
        /* Any column order, read twice. */
        CU_ASSERT_EQUAL(db_col_int(st, 1, &v, NULL), CPB_OK);
        CU_ASSERT_EQUAL(v, 6);
        CU_ASSERT_EQUAL(db_col_int(st, 1, &v, NULL), CPB_OK);
        CU_ASSERT_EQUAL(v, 6);
    }
    /* The long text, byte for byte. */
    {
        const char *s = NULL;
        CU_ASSERT_EQUAL_FATAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_text(st, 4, &s), CPB_OK);
        CU_ASSERT_PTR_NOT_NULL(s);
        CU_ASSERT(s != NULL && strlen(s) == strlen(big));
        CU_ASSERT(s != NULL && strcmp(s, big) == 0);
    }
    CU_ASSERT_EQUAL(db_fetch(st), CPB_SKIP);
    db_finalize(st);
    free(big);
    db_close(db);
}

/* Decimal text as the drivers really hand it back, including REAL text. */
static void t_decimal_text(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    static const struct {
        const char *expr;
        int64_t want;
    } ok_cases[] = {
        {"'12.5'", 125000},   {"'1.0e-05'", 0},
        {"'-2.5e-1'", -2500}, {"'1.5E+3'", 15000000},
        {"'2.89855'", 28986}, {"'6.0e-05'", 1},
        {"'-6.0e-05'", -1},   {"'12345678901.2345'", 123456789012345},
        {"'-0.0001'", -1},    {"'0.00012e2'", 120},
    };
    for (size_t k = 0; k < sizeof ok_cases / sizeof ok_cases[0]; k++) {
        char sql[128];
        struct cpb_stmt *st = NULL;
        int64_t v = 0;
        snprintf(sql, sizeof sql, "SELECT %s", ok_cases[k].expr);
        CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &st), CPB_OK);
        CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
        CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_decimal(st, 1, &v, NULL), CPB_OK);
        CU_ASSERT_EQUAL(v, ok_cases[k].want);
        if (v != ok_cases[k].want) {
            fprintf(stderr, "decimal %s: got %lld\n", ok_cases[k].expr, (long long)v);
        }
        db_finalize(st);
    }
    /* Floating point values computed by the database itself. */
    const char *real_sql = dialect == DB_SQLITE
                               ? "SELECT CAST(0.00001 AS REAL), 12.5e0, 1e300"
                               : "SELECT 0.00001::float8, 12.5::float8, 1e300::float8";
    struct cpb_stmt *st = NULL;
    int64_t v = -1;
    const char *raw = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, real_sql, &st), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
    (void)db_col_text(st, 1, &raw);
    fprintf(stderr, "[REAL 0.00001 comes back as '%s'] ", raw != NULL ? raw : "(null)");
    CU_ASSERT_EQUAL(db_col_decimal(st, 1, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(db_col_decimal(st, 2, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 125000);
    /* Out of range: a clear failure, not a wrapped value. */
    CU_ASSERT_EQUAL(db_col_decimal(st, 3, &v, NULL), CPB_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(db_last_error(db), "column 3"));
    db_finalize(st);

    /* Junk is refused with a message naming the column. */
    static const char *const junk[] = {"'abc'", "'inf'", "'1e'", "'1.2.3'", "'e5'", "' 1'"};
    for (size_t k = 0; k < sizeof junk / sizeof junk[0]; k++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT %s", junk[k]);
        st = NULL;
        CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &st), CPB_OK);
        CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
        CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_decimal(st, 1, &v, NULL), CPB_FAIL);
        CU_ASSERT_EQUAL(db_col_int(st, 1, &v, NULL), CPB_FAIL);
        CU_ASSERT_EQUAL(db_col_time(st, 1, &v, NULL), CPB_FAIL);
        db_finalize(st);
    }
    /* A whole number in decimal form is an integer; a fraction is not. */
    st = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "SELECT '5.0000', '5.5'", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
    CU_ASSERT_EQUAL(db_col_int(st, 1, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 5);
    CU_ASSERT_EQUAL(db_col_int(st, 2, &v, NULL), CPB_FAIL);
    db_finalize(st);
    db_close(db);
}

/* Time text forms: plain, DATE, and PostgreSQL timestamptz in UTC. */
static void t_time_text(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    const char *sql = "SELECT '2024-05-01 10:20:30', '2024-05-01', '2024-05-01 10:20:30.500'";
    if (dialect == DB_POSTGRESQL) {
        CU_ASSERT_EQUAL(exec_sql(db, "SET TIME ZONE 'UTC'"), CPB_OK);
        sql = "SELECT TIMESTAMP '2024-05-01 10:20:30', DATE '2024-05-01', "
              "TIMESTAMPTZ '2024-05-01 10:20:30.5+00'";
    }
    struct cpb_stmt *st = NULL;
    int64_t ms = 0;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &st), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
    CU_ASSERT_EQUAL(db_col_time(st, 1, &ms, NULL), CPB_OK);
    CU_ASSERT_EQUAL(ms, 1714558830000);
    CU_ASSERT_EQUAL(db_col_time(st, 2, &ms, NULL), CPB_OK);
    CU_ASSERT_EQUAL(ms, 1714521600000);
    CU_ASSERT_EQUAL(db_col_time(st, 3, &ms, NULL), CPB_OK);
    CU_ASSERT_EQUAL(ms, 1714558830500);
    db_finalize(st);
    db_close(db);
}

static void t_update_rows(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    make_table(db);
    CU_ASSERT_EQUAL(insert_id(db, 1), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(db, 2), CPB_OK);

    struct cpb_stmt *st = NULL;
    int64_t rows = -1;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "UPDATE t_db SET i = ? WHERE id >= ?", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_int(st, 1, 9), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_int(st, 2, 100), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, &rows), CPB_OK);
    CU_ASSERT_EQUAL(rows, 0);
    CU_ASSERT_EQUAL(db_bind_int(st, 2, 1), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, &rows), CPB_OK);
    CU_ASSERT_EQUAL(rows, 2);
    db_finalize(st);
    CU_ASSERT_EQUAL(query_int(db, "SELECT SUM(i) FROM t_db"), 18);
    /* The same through db_exec (no row count). */
    CU_ASSERT_EQUAL(db_exec(db, "DELETE FROM t_db WHERE id < 0"), CPB_OK);
    db_close(db);
}

static void t_unique_violation(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    make_table(db);
    CU_ASSERT_EQUAL(insert_id(db, 1), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(db, 1), CPB_FAIL);
    const char *msg = db_last_error(db);
    fprintf(stderr, "[%s] ", msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "SQLSTATE "));
    CU_ASSERT_PTR_NULL(strchr(msg, '\n'));
    if (dialect == DB_SQLITE) {
        CU_ASSERT_STRING_EQUAL(db_last_sqlstate(db), "HY000");
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "(native 19)"));
    } else {
        CU_ASSERT_STRING_EQUAL(db_last_sqlstate(db), "23505");
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "SQLSTATE 23505"));
    }
    CU_ASSERT_FALSE(db_broken(db));
    /* The connection still works. */
    CU_ASSERT_EQUAL(query_int(db, "SELECT COUNT(*) FROM t_db"), 1);
    db_close(db);
}

static void t_commit_rollback(void)
{
    char conn[1024];
    const char *c = new_target(conn, sizeof conn);
    struct db *a = open_db(c);
    struct db *b = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    make_table(a);

    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_TRUE(db_in_transaction(a));
    CU_ASSERT_EQUAL(db_begin(a), CPB_FAIL);
    CU_ASSERT_EQUAL(insert_id(a, 1), CPB_OK);
    CU_ASSERT_EQUAL(query_int(a, "SELECT COUNT(*) FROM t_db"), 1);
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 0);
    CU_ASSERT_EQUAL(db_commit(a), CPB_OK);
    CU_ASSERT_FALSE(db_in_transaction(a));
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 1);

    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(a, 2), CPB_OK);
    CU_ASSERT_EQUAL(db_rollback(a), CPB_OK);
    CU_ASSERT_FALSE(db_in_transaction(a));
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 1);
    CU_ASSERT_EQUAL(query_int(a, "SELECT COUNT(*) FROM t_db"), 1);

    /* Outside a transaction every statement commits at once. */
    CU_ASSERT_EQUAL(insert_id(a, 3), CPB_OK);
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 2);
    /* Commit without a transaction is a misuse; rollback is harmless. */
    CU_ASSERT_EQUAL(db_commit(a), CPB_FAIL);
    CU_ASSERT_EQUAL(db_rollback(a), CPB_OK);
    db_close(b);
    db_close(a);
}

static void t_failed_statement_rollback(void)
{
    char conn[1024];
    const char *c = new_target(conn, sizeof conn);
    struct db *a = open_db(c);
    struct db *b = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    make_table(a);
    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(a, 1), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(a, 1), CPB_FAIL);
    CU_ASSERT_EQUAL(insert_id(a, 2), CPB_OK);
    CU_ASSERT_EQUAL(db_rollback(a), CPB_OK);
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 0);
    CU_ASSERT_EQUAL(query_int(a, "SELECT COUNT(*) FROM t_db"), 0);
    db_close(b);
    db_close(a);
}

static void t_close_in_transaction(void)
{
    char conn[1024];
    const char *c = new_target(conn, sizeof conn);
    struct db *a = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    make_table(a);
    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(a, 1), CPB_OK);
    /* A statement left in use (not finalized) is released too. */
    struct cpb_stmt *st = NULL;
    CU_ASSERT_EQUAL(db_prepare(a, "SELECT id FROM t_db", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    db_close(a);

    struct db *b = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(query_int(b, "SELECT COUNT(*) FROM t_db"), 0);
    /* The write lock is gone: a new transaction can start at once. */
    CU_ASSERT_EQUAL(db_begin(b), CPB_OK);
    CU_ASSERT_EQUAL(db_commit(b), CPB_OK);
    db_close(b);
}

static void t_stmt_cache(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    const char *sql = "SELECT ? + 1";
    struct cpb_stmt *s1 = NULL;
    struct cpb_stmt *s2 = NULL;
    struct cpb_stmt *s3 = NULL;
    int64_t v = 0;

    CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &s1), CPB_OK);
    CU_ASSERT_PTR_EQUAL(db_stmt_db(s1), db);
    CU_ASSERT_EQUAL(db_bind_int(s1, 1, 1), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(s1, NULL), CPB_OK);
    /* In use: the same text gets a different statement. */
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &s2), CPB_OK);
    CU_ASSERT_PTR_NOT_EQUAL(s1, s2);
    CU_ASSERT_EQUAL(db_bind_int(s2, 1, 10), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(s2, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(s1), CPB_OK);
    CU_ASSERT_EQUAL(db_col_int(s1, 1, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 2);
    CU_ASSERT_EQUAL(db_fetch(s2), CPB_OK);
    CU_ASSERT_EQUAL(db_col_int(s2, 1, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 11);
    db_finalize(s2);
    /* Finalized: the cached statement comes back, bindings cleared. */
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, sql, &s3), CPB_OK);
    CU_ASSERT_PTR_EQUAL(s3, s2);
    CU_ASSERT_EQUAL(db_execute(s3, NULL), CPB_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(db_last_error(db), "parameter"));
    CU_ASSERT_EQUAL(db_bind_int(s3, 1, 41), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(s3, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(s3), CPB_OK);
    CU_ASSERT_EQUAL(db_col_int(s3, 1, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 42);
    /* Re-executing closes the open cursor first. */
    CU_ASSERT_EQUAL(db_execute(s3, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(s3), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(s3), CPB_SKIP);
    /* Values are gone after the next execute. */
    CU_ASSERT_EQUAL(db_col_int(s3, 1, &v, NULL), CPB_FAIL);
    db_finalize(s3);
    db_finalize(s1);
    db_finalize(NULL);

    /* Many distinct texts: the cache stays bounded and keeps working. */
    for (int k = 0; k < 300; k++) {
        char q[64];
        struct cpb_stmt *st = NULL;
        snprintf(q, sizeof q, "SELECT %d", k);
        CU_ASSERT_EQUAL_FATAL(db_prepare(db, q, &st), CPB_OK);
        CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
        CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
        CU_ASSERT_EQUAL(db_col_int(st, 1, &v, NULL), CPB_OK);
        CU_ASSERT_EQUAL(v, k);
        db_finalize(st);
    }
    CU_ASSERT_EQUAL(query_int(db, "SELECT 299"), 299);

    /* A cached statement survives its table being dropped and re-created. */
    make_table(db);
    CU_ASSERT_EQUAL(insert_id(db, 1), CPB_OK);
    CU_ASSERT_EQUAL(query_int(db, "SELECT COUNT(*) FROM t_db"), 1);
    make_table(db);
    CU_ASSERT_EQUAL(insert_id(db, 1), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(db, 2), CPB_OK);
    CU_ASSERT_EQUAL(query_int(db, "SELECT COUNT(*) FROM t_db"), 2);
    db_close(db);
}

static void t_misuse(void)
{
    char conn[1024];
    struct db *db = open_db(new_target(conn, sizeof conn));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    struct cpb_stmt *st = NULL;
    const char *s = NULL;
    int64_t v = 0;

    CU_ASSERT_EQUAL(db_prepare(db, "", &st), CPB_FAIL);
    CU_ASSERT_PTR_NULL(st);
    /* A syntax error fails at prepare or, for drivers that defer the
     * prepare to the server (both here do), at execute. */
    enum cpb_status rc = db_prepare(db, "SELEKT nonsense FROM", &st);
    if (rc == CPB_OK) {
        CU_ASSERT_PTR_NOT_NULL(st);
        rc = db_execute(st, NULL);
        db_finalize(st);
    } else {
        CU_ASSERT_PTR_NULL(st);
    }
    CU_ASSERT_EQUAL(rc, CPB_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(db_last_error(db), "SQLSTATE"));
    st = NULL;

    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "SELECT 1, 2", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(st), CPB_FAIL); /* not executed */
    CU_ASSERT_EQUAL(db_bind_int(st, 0, 1), CPB_FAIL);
    CU_ASSERT_EQUAL(db_bind_int(st, 100000, 1), CPB_FAIL);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_col_text(st, 1, &s), CPB_FAIL); /* no row yet */
    CU_ASSERT_EQUAL(db_fetch(st), CPB_OK);
    CU_ASSERT_EQUAL(db_col_text(st, 3, &s), CPB_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(db_last_error(db), "out of range"));
    CU_ASSERT_EQUAL(db_col_text(st, 0, &s), CPB_FAIL);
    CU_ASSERT_EQUAL(db_col_int(st, 2, &v, NULL), CPB_OK);
    CU_ASSERT_EQUAL(v, 2);
    db_finalize(st);

    /* A statement without a result set cannot be fetched from. */
    make_table(db);
    st = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "DELETE FROM t_db", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    CU_ASSERT_EQUAL(db_fetch(st), CPB_FAIL);
    db_finalize(st);
    /* A time outside what SQL timestamps hold is refused at bind. */
    st = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(db, "SELECT ?", &st), CPB_OK);
    CU_ASSERT_EQUAL(db_bind_time(st, 1, INT64_MAX), CPB_FAIL);
    db_finalize(st);
    db_close(db);
}

/* ---- SQLite only ------------------------------------------------------- */

static void t_sqlite_busy(void)
{
    char conn[1024];
    char conn_b[1100];
    const char *c = new_target(conn, sizeof conn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    /* The same file, but waiting only ~2 x 100 ms for the lock. */
    const char *t = strstr(c, "Timeout=1000");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    snprintf(conn_b, sizeof conn_b, "%.*sTimeout=100%s", (int)(t - c), c,
             t + strlen("Timeout=1000"));
    struct db *a = open_db(c);
    struct db *b = open_db(conn_b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    make_table(a);
    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(a, 1), CPB_OK);

    CU_ASSERT_EQUAL(db_begin(b), CPB_RETRY);
    fprintf(stderr, "[%s] ", db_last_error(b));
    CU_ASSERT_FALSE(db_in_transaction(b));
    CU_ASSERT_PTR_NOT_NULL(strstr(db_last_error(b), "native 5"));
    CU_ASSERT_FALSE(db_broken(b));
    /* A write outside a transaction is busy too. */
    CU_ASSERT_EQUAL(insert_id(b, 2), CPB_RETRY);

    CU_ASSERT_EQUAL(db_commit(a), CPB_OK);
    CU_ASSERT_EQUAL(db_begin(b), CPB_OK);
    CU_ASSERT_EQUAL(insert_id(b, 2), CPB_OK);
    CU_ASSERT_EQUAL(db_commit(b), CPB_OK);
    CU_ASSERT_EQUAL(query_int(a, "SELECT COUNT(*) FROM t_db"), 2);
    db_close(b);
    db_close(a);
}

/* ---- PostgreSQL only --------------------------------------------------- */

static int64_t claim_one(struct db *db)
{
    return query_int(db, "SELECT id FROM t_db WHERE i IS NULL ORDER BY id LIMIT 1 "
                         "FOR UPDATE SKIP LOCKED");
}

static void t_pg_skip_locked(void)
{
    char conn[1024];
    const char *c = new_target(conn, sizeof conn);
    struct db *a = open_db(c);
    struct db *b = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    make_table(a);
    for (int64_t id = 1; id <= 3; id++) {
        CU_ASSERT_EQUAL(insert_id(a, id), CPB_OK);
    }
    CU_ASSERT_EQUAL(db_begin(a), CPB_OK);
    CU_ASSERT_EQUAL(db_begin(b), CPB_OK);
    int64_t ra = claim_one(a);
    int64_t rb = claim_one(b);
    CU_ASSERT_EQUAL(ra, 1);
    CU_ASSERT_EQUAL(rb, 2);
    CU_ASSERT_NOT_EQUAL(ra, rb);
    CU_ASSERT_EQUAL(db_rollback(a), CPB_OK);
    CU_ASSERT_EQUAL(db_rollback(b), CPB_OK);
    /* Released: the first row is free again. */
    CU_ASSERT_EQUAL(claim_one(b), 1);
    db_close(b);
    db_close(a);
}

/* Another session ends ours: the next statement is retryable and the
 * connection is reported broken. */
static void t_pg_broken(void)
{
    char conn[1024];
    const char *c = new_target(conn, sizeof conn);
    struct db *a = open_db(c);
    struct db *b = open_db(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    int64_t pid = query_int(a, "SELECT pg_backend_pid()");
    CU_ASSERT_FATAL(pid > 0);
    struct cpb_stmt *st = NULL;
    CU_ASSERT_EQUAL_FATAL(db_prepare(b, "SELECT pg_terminate_backend(CAST(? AS INTEGER))", &st),
                          CPB_OK);
    CU_ASSERT_EQUAL(db_bind_int(st, 1, pid), CPB_OK);
    CU_ASSERT_EQUAL(db_execute(st, NULL), CPB_OK);
    db_finalize(st);
    CU_ASSERT_EQUAL(db_exec(a, "SELECT 1"), CPB_RETRY);
    fprintf(stderr, "[%s] ", db_last_error(a));
    CU_ASSERT_TRUE(db_broken(a));
    db_close(a);
    db_close(b);
}

/* ---- classification ----------------------------------------------------- */

static void t_classify(void)
{
    static const struct {
        enum db_dialect d;
        const char *state;
        long native;
        const char *msg;
        enum cpb_status want;
    } cases[] = {
        {DB_SQLITE, "HY000", 5, "database is locked (5)", CPB_RETRY},
        {DB_SQLITE, "HY000", 6, "database table is locked", CPB_RETRY},
        {DB_SQLITE, "HY000", 517, "busy snapshot", CPB_RETRY},
        {DB_SQLITE, "S1000", 5, "locked", CPB_RETRY},
        {DB_SQLITE, "HY000", 0, "Database Is Locked", CPB_RETRY},
        {DB_SQLITE, "HY000", 19, "UNIQUE constraint failed: t.id (19)", CPB_FAIL},
        {DB_SQLITE, "HY000", 1, "syntax error", CPB_FAIL},
        {DB_SQLITE, "HY000", 14, "unable to open database file", CPB_FAIL},
        {DB_SQLITE, NULL, 0, NULL, CPB_FAIL},
        {DB_POSTGRESQL, "40001", 1, "serialization", CPB_RETRY},
        {DB_POSTGRESQL, "40P01", 1, "deadlock detected", CPB_RETRY},
        {DB_POSTGRESQL, "55P03", 1, "lock timeout", CPB_RETRY},
        {DB_POSTGRESQL, "57014", 1, "canceling statement", CPB_RETRY},
        {DB_POSTGRESQL, "53300", 1, "too many connections", CPB_RETRY},
        {DB_POSTGRESQL, "53100", 1, "disk full", CPB_RETRY},
        {DB_POSTGRESQL, "08001", 1, "could not connect", CPB_RETRY},
        {DB_POSTGRESQL, "08S01", 1, "communication link failure", CPB_RETRY},
        {DB_POSTGRESQL, "57P01", 1, "admin shutdown", CPB_RETRY},
        {DB_POSTGRESQL, "57P02", 1, "crash shutdown", CPB_RETRY},
        {DB_POSTGRESQL, "57P03", 1, "cannot connect now", CPB_RETRY},
        {DB_POSTGRESQL, "23505", 1, "duplicate key; database is locked", CPB_FAIL},
        {DB_POSTGRESQL, "23502", 1, "not null", CPB_FAIL},
        {DB_POSTGRESQL, "22P02", 1, "invalid input syntax", CPB_FAIL},
        {DB_POSTGRESQL, "42P01", 1, "undefined table", CPB_FAIL},
        {DB_POSTGRESQL, "25P02", 1, "in failed transaction", CPB_FAIL},
        {DB_POSTGRESQL, "HY000", 5, "other", CPB_FAIL},
        {DB_POSTGRESQL, "", 0, "", CPB_FAIL},
        {DB_MSSQL, "40001", 1205, "deadlock victim", CPB_RETRY},
        {DB_MSSQL, "HY000", 1205, "deadlock victim", CPB_RETRY},
        {DB_MSSQL, "HY000", 1222, "lock request time out", CPB_RETRY},
        {DB_MSSQL, "HYT00", 0, "timeout expired", CPB_RETRY},
        {DB_MSSQL, "HYT01", 0, "connection timeout", CPB_RETRY},
        {DB_MSSQL, "08S01", 20009, "unable to connect", CPB_RETRY},
        {DB_MSSQL, "08001", 0, "client unable to establish", CPB_RETRY},
        {DB_MSSQL, "23000", 2627, "violation of primary key", CPB_FAIL},
        {DB_MSSQL, "23000", 2601, "duplicate key row", CPB_FAIL},
        {DB_MSSQL, "23000", 547, "foreign key conflict", CPB_FAIL},
        {DB_MSSQL, "42S02", 208, "invalid object name", CPB_FAIL},
        {DB_MSSQL, "HY000", 5, "database is locked", CPB_FAIL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        enum cpb_status got =
            db_classify(cases[k].d, cases[k].state, cases[k].native, cases[k].msg);
        if (got != cases[k].want) {
            fprintf(stderr, "classify case %zu (%s %s %ld): got %d\n", k,
                    db_dialect_name(cases[k].d), cases[k].state ? cases[k].state : "NULL",
                    cases[k].native, (int)got);
        }
        CU_ASSERT_EQUAL(got, cases[k].want);
    }
}

static void t_dialect_names(void)
{
    enum db_dialect d = DB_SQLITE;
    CU_ASSERT_EQUAL(db_dialect_parse("postgresql", &d), 0);
    CU_ASSERT_EQUAL(d, DB_POSTGRESQL);
    CU_ASSERT_EQUAL(db_dialect_parse("mssql", &d), 0);
    CU_ASSERT_EQUAL(d, DB_MSSQL);
    CU_ASSERT_EQUAL(db_dialect_parse("sqlite", &d), 0);
    CU_ASSERT_EQUAL(d, DB_SQLITE);
    CU_ASSERT_EQUAL(db_dialect_parse("oracle", &d), -1);
    CU_ASSERT_EQUAL(db_dialect_parse("", &d), -1);
    CU_ASSERT_EQUAL(db_dialect_parse(NULL, &d), -1);
    CU_ASSERT_STRING_EQUAL(db_dialect_name(DB_SQLITE), "sqlite");
    CU_ASSERT_STRING_EQUAL(db_dialect_name(DB_POSTGRESQL), "postgresql");
    CU_ASSERT_STRING_EQUAL(db_dialect_name(DB_MSSQL), "mssql");
}

/* ---- suites ------------------------------------------------------------ */

static int setup_sqlite(void)
{
    dialect = DB_SQLITE;
    return 0;
}

static int setup_pg(void)
{
    dialect = DB_POSTGRESQL;
    return 0;
}

static const struct cpbtest_case sqlite_cases[] = {
    {"connect and close", t_connect_close},
    {"connect failure hides the password", t_connect_failure},
    {"every type round trip", t_types_roundtrip},
    {"decimal text", t_decimal_text},
    {"time text", t_time_text},
    {"update row counts", t_update_rows},
    {"unique violation", t_unique_violation},
    {"commit and rollback", t_commit_rollback},
    {"failed statement then rollback", t_failed_statement_rollback},
    {"close inside a transaction", t_close_in_transaction},
    {"statement cache", t_stmt_cache},
    {"misuse", t_misuse},
    {"busy is retryable", t_sqlite_busy},
    {NULL, NULL},
};

static const struct cpbtest_case pg_cases[] = {
    {"connect and close", t_connect_close},
    {"connect failure hides the password", t_connect_failure},
    {"every type round trip", t_types_roundtrip},
    {"decimal text", t_decimal_text},
    {"time text", t_time_text},
    {"update row counts", t_update_rows},
    {"unique violation", t_unique_violation},
    {"commit and rollback", t_commit_rollback},
    {"failed statement then rollback", t_failed_statement_rollback},
    {"close inside a transaction", t_close_in_transaction},
    {"statement cache", t_stmt_cache},
    {"misuse", t_misuse},
    {"FOR UPDATE SKIP LOCKED", t_pg_skip_locked},
    {"terminated session", t_pg_broken},
    {NULL, NULL},
};

static const struct cpbtest_case classify_cases[] = {
    {"classification table", t_classify},
    {"dialect names", t_dialect_names},
    {NULL, NULL},
};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, NULL, sqlite_cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, NULL, pg_cases};
static const struct cpbtest_suite classify_suite = {"classify", NULL, NULL, classify_cases};

int main(int argc, char **argv)
{
    static const struct cpbtest_suite *const suites[] = {&classify_suite, &sqlite_suite, &pg_suite,
                                                         NULL};
    return cpbtest_run(argc, argv, suites);
}
