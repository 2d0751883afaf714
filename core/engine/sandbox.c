/*
 * sandbox.c — the throwaway copy of a pipeline's database (see sandbox.h).
 * Every value is bound; the only identifiers written into SQL text are the
 * copy's schema name, made here from a random UUID ([a-z0-9_] only), and
 * names PostgreSQL itself quotes with format('%I').
 */
#include "engine/sandbox.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/host.h"
#include "lib/buf.h"
#include "services/db.h"
#include "services/sql.h"

const char *const sandbox_state_tables[] = {"USER_ORDER_STAGING_LIN",
                                            "USER_ORDER_STEP",
                                            "USER_ORDER_INV",
                                            "USER_ORDER_EVENT",
                                            "USER_ORDER_STAGING",
                                            "USER_SYNC_LOG",
                                            "USER_SYNC_STATE",
                                            "USER_ALERT_OUTBOX",
                                            "USER_RECORD_EVENT",
                                            "USER_RECORD_STAGING",
                                            NULL};
#define SANDBOX_N_STATE 10
_Static_assert(sizeof sandbox_state_tables / sizeof sandbox_state_tables[0] == SANDBOX_N_STATE + 1,
               "SANDBOX_N_STATE counts sandbox_state_tables");

struct sandbox {
    enum db_dialect dialect;
    char *connection; /* the copy's */
    char *where;
    char *file;      /* sqlite: the copy */
    char schema[64]; /* postgresql: the copy */
    char *real;      /* the real database's connection string */
    int64_t login_timeout_ms;
};

/* Append the attributes of connection string `conn` to `out`, leaving out
 * those whose key is one of `drop` (case-insensitive); *dropped tells
 * whether one was. A value may be braced: {a;b}. */
static void conn_strip(const char *conn, const char *const *drop, struct buf *out, bool *dropped)
{
    const char *p = conn;
    *dropped = false;
    while (*p != '\0') {
        const char *start = p;
        const char *eq = NULL;
        while (*p != '\0' && *p != ';') {
            if (*p == '=' && eq == NULL) {
                eq = p;
                if (p[1] == '{') {
                    const char *close = strchr(p + 2, '}');
                    p = close != NULL ? close : p + strlen(p) - 1;
                }
            }
            p++;
        }
        size_t klen = eq != NULL ? (size_t)(eq - start) : (size_t)(p - start);
        while (klen > 0 && (*start == ' ' || *start == '\t')) {
            start++;
            klen--;
        }
        while (klen > 0 && (start[klen - 1] == ' ' || start[klen - 1] == '\t')) {
            klen--;
        }
        bool skip = klen == 0;
        for (const char *const *k = drop; !skip && *k != NULL; k++) {
            skip = strlen(*k) == klen && strncasecmp(start, *k, klen) == 0;
            *dropped = *dropped || skip;
        }
        if (!skip) {
            buf_addf(out, "%s%.*s", out->len > 0 ? ";" : "", (int)(p - start), start);
        }
        if (*p == ';') {
            p++;
        }
    }
}

static int db_failed(struct db *db, const char *what, struct err *err)
{
    return err_set(err, CPB_EXIT_UNAVAILABLE, "making the test copy of the database: %s: %s", what,
                   db_last_error(db));
}

/* Empty the order-state tables of the copy, in one transaction. */
static int empty_state(struct db *db, struct err *err)
{
    if (db_begin(db) != CPB_OK) {
        return db_failed(db, "starting a transaction", err);
    }
    for (size_t i = 0; i < SANDBOX_N_STATE; i++) {
        char del[80]; /* the engine's own table names: no input */
        snprintf(del, sizeof del, "DELETE FROM %s", sandbox_state_tables[i]);
        if (db_exec(db, del) != CPB_OK) {
            return db_failed(db, del, err);
        }
    }
    return db_commit(db) == CPB_OK ? 0 : db_failed(db, "committing", err);
}

static int open_sqlite(struct sandbox *sb, const char *dir, const char *tag, struct err *err)
{
    static const char *const drop[] = {"Database", NULL};
    static const char *const nocreat[] = {"NoCreat", NULL};
    struct buf src = BUF_INIT;
    struct buf conn = BUF_INIT;
    struct buf file = BUF_INIT;
    struct db *real = NULL;
    struct db *copy = NULL;
    bool dropped = false;
    int rc = -1;

    buf_addf(&file, "%s/%s.db", dir, tag);
    if (strchr(buf_str(&file), ';') != NULL || strchr(buf_str(&file), '}') != NULL) {
        err_set(err, CPB_EXIT_CONFIG, "the temporary directory %s has ';' or '}' in its name", dir);
        goto out;
    }
    conn_strip(sb->real, drop, &conn, &dropped);
    buf_addf(&conn, ";Database=%s", buf_str(&file));
    if (file.oom || conn.oom) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    /* NoCreat=1: a missing database file is an error, not a new file. */
    conn_strip(sb->real, nocreat, &src, &dropped);
    buf_adds(&src, ";NoCreat=1");
    if (src.oom) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    if (db_connect(buf_str(&src), DB_SQLITE, sb->login_timeout_ms, &real, err) != 0) {
        err_prefix(err, "%s", "the database to copy (does its file exist?): ");
        goto out;
    }
    /* A consistent snapshot through SQLite itself; the source is only read. */
    struct sql_arg a[] = {sql_text(buf_str(&file))};
    if (sql_exec(real, "VACUUM INTO ?", a, SQL_NARGS(a), NULL) != CPB_OK) {
        db_failed(real, "VACUUM INTO the copy", err);
        goto out;
    }
    sb->file = buf_take(&file);
    if (db_connect(buf_str(&conn), DB_SQLITE, sb->login_timeout_ms, &copy, err) != 0 ||
        empty_state(copy, err) != 0) {
        goto out;
    }
    sb->where = strdup(sb->file);
    sb->connection = buf_take(&conn);
    if (sb->where == NULL || sb->connection == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    rc = 0;
out:
    db_close(copy);
    db_close(real);
    buf_free(&src);
    buf_free(&conn);
    buf_free(&file);
    return rc;
}

/* The statements that copy the current schema's tables into sb->schema:
 * CREATE TABLE ... (LIKE ...), then INSERT ... SELECT for the tables that
 * are not order state (generated columns left out). PG_PLAN_IN stands for
 * the IN list of the state tables, one ? each (pg_plan writes it). */
#define PG_PLAN_IN "(?)"
static const char pg_plan_sql[] =
    "SELECT format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL)', CAST(? AS TEXT), c.relname,"
    " n.nspname, c.relname),"
    " CASE WHEN upper(c.relname) IN " PG_PLAN_IN " THEN NULL ELSE"
    " format('INSERT INTO %I.%I (%s) SELECT %s FROM %I.%I', CAST(? AS TEXT), c.relname, x.cols,"
    " x.cols, n.nspname, c.relname) END"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " CROSS JOIN LATERAL (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)"
    " AS cols FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
    " AND NOT a.attisdropped AND a.attgenerated = '') x"
    " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname";

/* Read the plan into create[] and insert[] (new strings; insert[i] NULL
 * for a table copied empty). */
static int pg_plan(struct db *db, const char *schema, char ***create, char ***insert, size_t *n,
                   struct err *err)
{
    struct sql_arg a[2 + SANDBOX_N_STATE];
    struct cpb_stmt *st = NULL;
    size_t cap = 0;
    enum cpb_status rc;
    a[0] = sql_text(schema);
    for (size_t i = 0; i < SANDBOX_N_STATE; i++) {
        a[1 + i] = sql_text(sandbox_state_tables[i]);
    }
    a[1 + SANDBOX_N_STATE] = sql_text(schema);
    *n = 0;
    /* The IN list: as many ? as there are state tables. */
    struct buf sql = BUF_INIT;
    const char *in = strstr(pg_plan_sql, PG_PLAN_IN);
    buf_addf(&sql, "%.*s(?", (int)(in - pg_plan_sql), pg_plan_sql);
    for (size_t i = 1; i < SANDBOX_N_STATE; i++) {
        buf_adds(&sql, ", ?");
    }
    buf_addf(&sql, ")%s", in + strlen(PG_PLAN_IN));
    rc = sql.oom ? CPB_FAIL : sql_query(db, buf_str(&sql), a, SQL_NARGS(a), &st);
    buf_free(&sql);
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        const char *c = NULL;
        const char *i = NULL;
        if (*n == cap) {
            size_t ncap = cap == 0 ? 32 : cap * 2;
            char **gc = realloc(*create, ncap * sizeof *gc);
            if (gc != NULL) {
                *create = gc;
            }
            char **gi = gc != NULL ? realloc(*insert, ncap * sizeof *gi) : NULL;
            if (gi == NULL) {
                db_finalize(st);
                return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
            }
            *insert = gi;
            cap = ncap;
        }
        rc = db_col_text(st, 1, &c);
        if (rc == CPB_OK) {
            rc = db_col_text(st, 2, &i);
        }
        if (rc != CPB_OK || c == NULL) {
            break;
        }
        (*create)[*n] = strdup(c);
        (*insert)[*n] = i != NULL ? strdup(i) : NULL;
        (*n)++;
        if ((*create)[*n - 1] == NULL || (i != NULL && (*insert)[*n - 1] == NULL)) {
            db_finalize(st);
            return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        }
    }
    db_finalize(st);
    if (rc != CPB_SKIP) {
        return db_failed(db, "listing the tables of the current schema", err);
    }
    return 0;
}

static int open_postgresql(struct sandbox *sb, struct err *err)
{
    static const char *const settings[] = {"ConnSettings", "A6", "pqopt", NULL};
    struct buf conn = BUF_INIT;
    struct buf sql = BUF_INIT;
    struct db *db = NULL;
    char uuid[37];
    char **create = NULL;
    char **insert = NULL;
    size_t n = 0;
    size_t k = 0;
    bool dropped = false;
    int rc = -1;

    host_services()->uuid(NULL, uuid);
    memcpy(sb->schema, "cpb_test_", 9);
    for (const char *u = uuid; *u != '\0'; u++) {
        if (*u != '-') {
            sb->schema[9 + k++] = *u;
        }
    }
    sb->schema[9 + k] = '\0';
    conn_strip(sb->real, settings, &conn, &dropped);
    if (dropped) {
        err_set(err, CPB_EXIT_CONFIG,
                "cpbridge test sets the copy's search_path through ConnSettings: the pipeline's"
                " connection string must not set ConnSettings or pqopt itself");
        goto out;
    }
    buf_addf(&conn, ";ConnSettings=SET search_path TO %s", sb->schema);
    buf_addf(&sql, "schema %s", sb->schema);
    if (conn.oom || sql.oom) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    sb->where = buf_take(&sql);
    if (db_connect(sb->real, DB_POSTGRESQL, sb->login_timeout_ms, &db, err) != 0) {
        err_prefix(err, "%s", "the database to copy: ");
        goto out;
    }
    if (pg_plan(db, sb->schema, &create, &insert, &n, err) != 0) {
        goto out;
    }
    if (n == 0) {
        err_set(err, CPB_EXIT_CONFIG,
                "the database's current schema has no tables: run `cpbridge db init` first");
        goto out;
    }
    /* All of it in one transaction: a failure leaves no schema behind. */
    if (db_begin(db) != CPB_OK) {
        db_failed(db, "starting a transaction", err);
        goto out;
    }
    buf_addf(&sql, "CREATE SCHEMA %s", sb->schema);
    if (sql.oom || db_exec(db, buf_str(&sql)) != CPB_OK) {
        db_failed(db, "creating the schema", err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (db_exec(db, create[i]) != CPB_OK) {
            db_failed(db, create[i], err);
            goto out;
        }
        if (insert[i] != NULL && db_exec(db, insert[i]) != CPB_OK) {
            db_failed(db, insert[i], err);
            goto out;
        }
    }
    if (db_commit(db) != CPB_OK) {
        db_failed(db, "committing", err);
        goto out;
    }
    sb->connection = buf_take(&conn);
    if (sb->connection == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        free(create[i]);
        free(insert[i]);
    }
    free(create);
    free(insert);
    db_close(db); /* rolls back a transaction left open */
    buf_free(&conn);
    buf_free(&sql);
    return rc;
}

int sandbox_check(const struct config_database *c, struct err *err)
{
    enum db_dialect d;
    if (db_dialect_parse(c->dialect, &d) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "unknown database dialect '%s'", c->dialect);
    }
    if (d == DB_MSSQL) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "cpbridge test does not support SQL Server yet: it runs every case"
                       " against a throwaway copy of the database, made today only for sqlite"
                       " and postgresql (docs/CLI.md)");
    }
    return 0;
}

/* Connect as the run will (sb->connection) and check that the connection
 * lands in the copy: SQLite's main database is the copy's file, or
 * PostgreSQL's current schema is the copy's. A connection string the
 * editing did not take (a DSN setting that wins, say) is refused. */
static int verify_copy(const struct sandbox *sb, struct err *err)
{
    struct db *db = NULL;
    struct cpb_stmt *st = NULL;
    const char *got = NULL;
    char real_copy[PATH_MAX];
    char real_got[PATH_MAX];
    int rc = -1;
    if (db_connect(sb->connection, sb->dialect, sb->login_timeout_ms, &db, err) != 0) {
        goto out;
    }
    enum cpb_status q = sql_query(db,
                                  sb->dialect == DB_SQLITE
                                      ? "SELECT file FROM pragma_database_list WHERE name = 'main'"
                                      : "SELECT current_schema()",
                                  NULL, 0, &st);
    if (q == CPB_OK) {
        q = db_fetch(st);
    }
    if (q == CPB_OK) {
        q = db_col_text(st, 1, &got);
    }
    if (q != CPB_OK) {
        rc = db_failed(db, "checking where the copy's connection lands", err);
        goto out;
    }
    bool same = false;
    if (got != NULL && sb->dialect == DB_SQLITE) {
        same = realpath(sb->file, real_copy) != NULL && realpath(got, real_got) != NULL &&
               strcmp(real_copy, real_got) == 0;
    } else if (got != NULL) {
        same = strcmp(got, sb->schema) == 0;
    }
    if (!same) {
        err_set(err, CPB_EXIT_CONFIG,
                "the test copy's connection lands in %s, not in the copy (%s): refusing to run"
                " (does the pipeline's connection string name a DSN whose settings win?)",
                got != NULL ? got : "(nothing)", sb->where != NULL ? sb->where : "?");
        goto out;
    }
    rc = 0;
out:
    db_finalize(st);
    db_close(db);
    return rc;
}

int sandbox_open(const struct config_database *c, const char *dir, const char *tag,
                 struct sandbox **out, struct err *err)
{
    struct sandbox *sb = calloc(1, sizeof *sb);
    int rc = -1;
    *out = NULL;
    if (sb == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    sb->login_timeout_ms = c->login_timeout_ms;
    sb->real = strdup(c->connection);
    if (sb->real == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    if (sandbox_check(c, err) != 0) {
        goto out;
    }
    (void)db_dialect_parse(c->dialect, &sb->dialect);
    switch (sb->dialect) {
    case DB_SQLITE:
        rc = open_sqlite(sb, dir, tag, err);
        break;
    case DB_POSTGRESQL:
        rc = open_postgresql(sb, err);
        break;
    case DB_MSSQL:
        break; /* refused by sandbox_check */
    }
    if (rc == 0) {
        rc = verify_copy(sb, err);
    }
out:
    if (rc != 0) {
        struct err ignored = {0};
        (void)sandbox_close(sb, false, &ignored);
        sb = NULL;
    }
    *out = sb;
    return rc;
}

const char *sandbox_connection(const struct sandbox *sb)
{
    return sb->connection;
}

const char *sandbox_where(const struct sandbox *sb)
{
    return sb->where != NULL ? sb->where : "";
}

/* Remove the SQLite copy and the files SQLite keeps beside it. */
static int drop_sqlite(const struct sandbox *sb, struct err *err)
{
    static const char *const suffix[] = {"-wal", "-shm", "-journal", ""};
    int rc = 0;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s%s", sb->file, suffix[i]);
        if (remove(path) != 0 && i == 3) {
            rc = err_set(err, CPB_EXIT_IOERR, "cannot remove the test copy %s", sb->file);
        }
    }
    return rc;
}

static int drop_postgresql(const struct sandbox *sb, struct err *err)
{
    struct db *db = NULL;
    char sql[128];
    int rc = 0;
    if (db_connect(sb->real, DB_POSTGRESQL, sb->login_timeout_ms, &db, err) != 0) {
        err_prefix(err, "cannot drop the test schema %s: ", sb->schema);
        return -1;
    }
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", sb->schema);
    if (db_exec(db, sql) != CPB_OK) {
        rc = err_set(err, CPB_EXIT_UNAVAILABLE, "cannot drop the test schema %s: %s", sb->schema,
                     db_last_error(db));
    }
    db_close(db);
    return rc;
}

int sandbox_close(struct sandbox *sb, bool keep, struct err *err)
{
    int rc = 0;
    if (sb == NULL) {
        return 0;
    }
    if (!keep && sb->file != NULL) {
        rc = drop_sqlite(sb, err);
    } else if (!keep && sb->schema[0] != '\0' && sb->dialect == DB_POSTGRESQL) {
        rc = drop_postgresql(sb, err);
    }
    free(sb->connection);
    free(sb->where);
    free(sb->file);
    free(sb->real);
    free(sb);
    return rc;
}
