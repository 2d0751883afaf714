/*
 * sql.c — one-call statements with typed, bound arguments (see sql.h).
 */
#include "services/sql.h"

struct sql_arg sql_text(const char *s)
{
    struct sql_arg a = {s != NULL ? SQL_ARG_TEXT : SQL_ARG_NULL, s, 0};
    return a;
}

struct sql_arg sql_int(int64_t v)
{
    struct sql_arg a = {SQL_ARG_INT, NULL, v};
    return a;
}

struct sql_arg sql_int_or_null(int64_t v)
{
    struct sql_arg a = {v != 0 ? SQL_ARG_INT : SQL_ARG_NULL, NULL, v};
    return a;
}

struct sql_arg sql_decimal(int64_t ten_thousandths)
{
    struct sql_arg a = {SQL_ARG_DECIMAL, NULL, ten_thousandths};
    return a;
}

struct sql_arg sql_time(int64_t ms)
{
    struct sql_arg a = {SQL_ARG_TIME, NULL, ms};
    return a;
}

struct sql_arg sql_null(void)
{
    struct sql_arg a = {SQL_ARG_NULL, NULL, 0};
    return a;
}

enum cpb_status sql_bind(struct cpb_stmt *st, const struct sql_arg *args, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned idx = (unsigned)i + 1;
        enum cpb_status rc = CPB_OK;
        switch (args[i].type) {
        case SQL_ARG_NULL:
            rc = db_bind_null(st, idx);
            break;
        case SQL_ARG_TEXT:
            rc = db_bind_text(st, idx, args[i].text);
            break;
        case SQL_ARG_INT:
            rc = db_bind_int(st, idx, args[i].value);
            break;
        case SQL_ARG_DECIMAL:
            rc = db_bind_decimal(st, idx, args[i].value);
            break;
        case SQL_ARG_TIME:
            rc = db_bind_time(st, idx, args[i].value);
            break;
        }
        if (rc != CPB_OK) {
            return rc;
        }
    }
    return CPB_OK;
}

/* Prepare `sql` and bind `args`; on CPB_OK *stmt is ready to execute. */
static enum cpb_status prepare_bound(struct db *db, const char *sql, const struct sql_arg *args,
                                     size_t n, struct cpb_stmt **stmt)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = db_prepare(db, sql, &st);
    if (rc == CPB_OK) {
        rc = sql_bind(st, args, n);
    }
    if (rc != CPB_OK) {
        db_finalize(st);
        st = NULL;
    }
    *stmt = st;
    return rc;
}

enum cpb_status sql_query(struct db *db, const char *sql, const struct sql_arg *args, size_t n,
                          struct cpb_stmt **stmt)
{
    enum cpb_status rc = prepare_bound(db, sql, args, n, stmt);
    if (rc == CPB_OK) {
        rc = db_execute(*stmt, NULL);
        if (rc != CPB_OK) {
            db_finalize(*stmt);
            *stmt = NULL;
        }
    }
    return rc;
}

enum cpb_status sql_exec(struct db *db, const char *sql, const struct sql_arg *args, size_t n,
                         int64_t *rows)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = prepare_bound(db, sql, args, n, &st);
    if (rc == CPB_OK) {
        rc = db_execute(st, rows);
    }
    db_finalize(st);
    return rc;
}

enum cpb_status sql_query_int(struct db *db, const char *sql, const struct sql_arg *args, size_t n,
                              int64_t *value, bool *is_null)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = sql_query(db, sql, args, n, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_col_int(st, 1, value, is_null);
out:
    db_finalize(st);
    return rc;
}

enum cpb_status sql_tx(struct db *db, enum cpb_status (*fn)(struct db *db, void *arg), void *arg)
{
    enum cpb_status rc = db_begin(db);
    if (rc != CPB_OK) {
        return rc;
    }
    rc = fn(db, arg);
    if (rc == CPB_OK) {
        rc = db_commit(db);
    }
    if (rc != CPB_OK) {
        (void)db_rollback(db);
    }
    return rc;
}
