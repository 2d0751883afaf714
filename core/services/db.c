/*
 * db.c — the database layer over unixODBC (see db.h): one connection,
 * explicit transactions, a per-connection cache of prepared statements, bound
 * parameters copied into statement-owned buffers, whole-row text reads, and
 * SQLSTATE / native-code classification into CPB_RETRY and CPB_FAIL.
 *
 * Reading: after each successful fetch every column of the row is read as
 * text (SQLGetData in a loop, any length) into per-column buffers the
 * statement owns until the next fetch, execute or finalize. Integers,
 * decimals and times are parsed from that text exactly (core/lib/text.h), which
 * works the same on every driver and allows any column order.
 */
#include "services/db.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <sql.h>
#include <sqlext.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/text.h"

/* Most idle prepared statements a connection keeps. */
#define DB_CACHE_MAX 128
/* Texts longer than this are bound as SQL_LONGVARCHAR (nvarchar(4000) and
 * varchar(8000) are SQL Server's limits for non-max types). */
#define DB_LONG_TEXT 4000
/* A column value larger than this is refused rather than read. */
#define DB_MAX_VALUE ((size_t)1 << 30)
/* Most parameters a statement may bind. */
#define DB_MAX_PARAMS 4096
/* Most password values redacted from messages. */
#define DB_MAX_SECRETS 4

enum param_kind { P_UNSET = 0, P_NULL, P_TEXT, P_INT, P_DECIMAL, P_TIME };

/* One bound parameter; the value lives here until the statement is reset. */
struct param {
    enum param_kind kind;
    char *text;              /* P_TEXT: owned copy */
    char dec[32];            /* P_DECIMAL: "123.4500" */
    SQLBIGINT i;             /* P_INT */
    SQL_TIMESTAMP_STRUCT ts; /* P_TIME */
    SQLLEN len;              /* length or SQL_NULL_DATA, as the driver reads it */
};

/* One column of the current row, as text. */
struct column {
    char *data; /* NUL-terminated; owned */
    size_t len;
    size_t cap;
    bool is_null;
};

struct cpb_stmt {
    struct db *db;
    SQLHSTMT h;
    char *sql;            /* the cache key; owned */
    bool in_use;          /* handed out by db_prepare, not yet finalized */
    uint64_t last_used;   /* db->tick at the last db_prepare */
    struct param *params; /* params[0] is parameter 1 */
    unsigned nparams;     /* highest index bound */
    unsigned params_cap;
    struct column *cols;   /* cols[0] is column 1 */
    SQLSMALLINT ncols;     /* result columns of the last execute */
    bool executed;         /* executed since the last reset */
    bool have_row;         /* a row is fetched and read into cols */
    void *owner;           /* the caller's tag while in use (borrowed) */
    struct cpb_stmt *next; /* the connection's list */
};

struct db {
    SQLHENV env;
    SQLHDBC dbc;
    bool connected;
    enum db_dialect dialect;
    bool in_txn;
    bool broken;
    struct cpb_stmt *stmts; /* every statement of the connection */
    unsigned nstmts;
    uint64_t tick;
    char *secrets[DB_MAX_SECRETS]; /* password values to mask in messages */
    char last_state[6];
    char last_error[1024];
};

/* ---- small helpers ---------------------------------------------------- */

static bool ok(SQLRETURN rc)
{
    return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Case-insensitive search for an ASCII needle. */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p != '\0'; p++) {
        size_t i = 0;
        while (i < n && p[i] != '\0' &&
               tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i])) {
            i++;
        }
        if (i == n) {
            return true;
        }
    }
    return false;
}

/* Replace every occurrence of each secret in msg (size n) with "***" and
 * control characters with spaces, keeping the message one line. */
static void scrub(const struct db *db, char *msg, size_t n)
{
    for (size_t k = 0; db != NULL && k < DB_MAX_SECRETS; k++) {
        const char *sec = db->secrets[k];
        if (sec == NULL || sec[0] == '\0') {
            continue;
        }
        size_t sl = strlen(sec);
        char *hit = strstr(msg, sec);
        while (hit != NULL) {
            size_t before = (size_t)(hit - msg);
            const char *after = hit + sl;
            size_t alen = strlen(after);
            if (before + 3 >= n) {
                hit[0] = '\0'; /* no room for the mask: cut the message here */
                break;
            }
            if (before + 3 + alen >= n) {
                alen = n - 1 - before - 3;
            }
            memmove(hit + 3, after, alen);
            memcpy(hit, "***", 3);
            hit[3 + alen] = '\0';
            hit = strstr(hit + 3, sec);
        }
    }
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            *p = ' ';
        }
    }
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == ' ') {
        msg[--len] = '\0';
    }
}

/* Record a failure that did not come from the driver (a misuse, memory). */
static enum cpb_status fail_msg(struct db *db, const char *fmt, ...) CPB_PRINTF(2, 3);
static enum cpb_status fail_msg(struct db *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->last_error, sizeof db->last_error, fmt, ap);
    va_end(ap);
    scrub(db, db->last_error, sizeof db->last_error);
    db->last_state[0] = '\0';
    return CPB_FAIL;
}

/*
 * Read the diagnostics of a failed call on `handle`, record the first one on
 * db as "SQLSTATE X (native N): text" (prefixed with `what`), mark the
 * connection broken on a connection-class SQLSTATE, and classify.
 */
static enum cpb_status diag(struct db *db, SQLSMALLINT type, SQLHANDLE handle, const char *what)
{
    SQLCHAR state[6] = "";
    SQLINTEGER native = 0;
    SQLCHAR text[1024] = "";
    SQLSMALLINT tlen = 0;
    bool found = false;

    for (SQLSMALLINT rec = 1; rec <= 20; rec++) {
        SQLCHAR s[6] = "";
        SQLINTEGER nat = 0;
        SQLCHAR t[1024] = "";
        SQLRETURN rc = SQLGetDiagRec(type, handle, rec, s, &nat, t, (SQLSMALLINT)sizeof t, &tlen);
        if (!ok(rc)) {
            break;
        }
        if (has_prefix((const char *)s, "08")) {
            db->broken = true;
        }
        /* The first record that is not a warning or a notice is the cause. */
        if (!found && !has_prefix((const char *)s, "01") && !has_prefix((const char *)s, "00")) {
            memcpy(state, s, sizeof state);
            native = nat;
            memcpy(text, t, sizeof text);
            found = true;
        } else if (rec == 1) {
            memcpy(state, s, sizeof state);
            native = nat;
            memcpy(text, t, sizeof text);
        }
    }
    state[5] = '\0';
    text[sizeof text - 1] = '\0';
    if (state[0] == '\0') {
        snprintf((char *)state, sizeof state, "HY000");
        snprintf((char *)text, sizeof text, "the driver reported an error without a diagnostic");
    }
    snprintf(db->last_state, sizeof db->last_state, "%s", (const char *)state);
    snprintf(db->last_error, sizeof db->last_error, "%s%sSQLSTATE %s (native %ld): %.900s",
             what != NULL ? what : "", what != NULL ? ": " : "", (const char *)state, (long)native,
             (const char *)text);
    scrub(db, db->last_error, sizeof db->last_error);
    if (db->dialect == DB_POSTGRESQL &&
        (strcmp(db->last_state, "57P01") == 0 || strcmp(db->last_state, "57P02") == 0 ||
         strcmp(db->last_state, "57P03") == 0)) {
        db->broken = true;
    }
    return db_classify(db->dialect, db->last_state, (long)native, (const char *)text);
}

/* ---- dialects and classification -------------------------------------- */

static const char *const dialect_names[] = {"sqlite", "postgresql", "mssql"};

int db_dialect_parse(const char *name, enum db_dialect *out)
{
    if (name == NULL || out == NULL) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, dialect_names[i]) == 0) {
            *out = (enum db_dialect)i;
            return 0;
        }
    }
    return -1;
}

const char *db_dialect_name(enum db_dialect d)
{
    if ((int)d < 0 || (int)d > 2) {
        return "unknown";
    }
    return dialect_names[d];
}

static bool state_is(const char *s, const char *want)
{
    return strcmp(s, want) == 0;
}

static enum cpb_status classify_sqlite(const char *state, long native, const char *message)
{
    /* Every SQLite error is HY000 (S1000): the SQLite result code is the
     * native code, possibly an extended one (261, 517, 262: primary & 0xff). */
    long primary = native & 0xff;
    if (primary == 5 || primary == 6) {
        return CPB_RETRY;
    }
    if (contains_ci(message, "database is locked") ||
        contains_ci(message, "database table is locked")) {
        return CPB_RETRY;
    }
    if (has_prefix(state, "08") || state_is(state, "HYT00") || state_is(state, "HYT01")) {
        return CPB_RETRY;
    }
    return CPB_FAIL;
}

static enum cpb_status classify_pg(const char *state)
{
    static const char *const retry[] = {"40001", "40P01", "55P03", "57014", "57P01",
                                        "57P02", "57P03", "HYT00", "HYT01"};
    for (size_t i = 0; i < sizeof retry / sizeof retry[0]; i++) {
        if (state_is(state, retry[i])) {
            return CPB_RETRY;
        }
    }
    if (has_prefix(state, "53") || has_prefix(state, "08")) {
        return CPB_RETRY;
    }
    return CPB_FAIL;
}

static enum cpb_status classify_mssql(const char *state, long native)
{
    /* 1205 deadlock victim, 1222 lock request timeout, 1204 out of locks,
     * 3960 snapshot isolation update conflict. */
    if (native == 1205 || native == 1222 || native == 1204 || native == 3960) {
        return CPB_RETRY;
    }
    if (state_is(state, "40001") || state_is(state, "HYT00") || state_is(state, "HYT01") ||
        has_prefix(state, "08")) {
        return CPB_RETRY;
    }
    return CPB_FAIL;
}

enum cpb_status db_classify(enum db_dialect dialect, const char *sqlstate, long native,
                            const char *message)
{
    const char *state = sqlstate != NULL ? sqlstate : "";
    const char *msg = message != NULL ? message : "";
    switch (dialect) {
    case DB_SQLITE:
        return classify_sqlite(state, native, msg);
    case DB_POSTGRESQL:
        return classify_pg(state);
    case DB_MSSQL:
        return classify_mssql(state, native);
    }
    return CPB_FAIL;
}

/* ---- connection ------------------------------------------------------- */

/*
 * Collect the values of PWD= and PASSWORD= from an ODBC connection string
 * (plain or {braced}, "}}" escaping "}") so messages can mask them.
 */
static void collect_secrets(struct db *db, const char *conn)
{
    size_t nsec = 0;
    const char *p = conn;
    while (*p != '\0' && nsec < DB_MAX_SECRETS) {
        while (*p == ';' || *p == ' ') {
            p++;
        }
        const char *key = p;
        while (*p != '\0' && *p != '=' && *p != ';') {
            p++;
        }
        size_t klen = (size_t)(p - key);
        while (klen > 0 && key[klen - 1] == ' ') {
            klen--;
        }
        if (*p != '=') {
            continue;
        }
        p++;
        char *val = malloc(strlen(p) + 1);
        size_t vn = 0;
        if (val == NULL) {
            return;
        }
        if (*p == '{') {
            p++;
            while (*p != '\0') {
                if (p[0] == '}' && p[1] == '}') {
                    val[vn++] = '}';
                    p += 2;
                } else if (p[0] == '}') {
                    p++;
                    break;
                } else {
                    val[vn++] = *p++;
                }
            }
            while (*p != '\0' && *p != ';') {
                p++;
            }
        } else {
            while (*p != '\0' && *p != ';') {
                val[vn++] = *p++;
            }
        }
        val[vn] = '\0';
        bool is_pw = (klen == 3 && strncasecmp(key, "pwd", 3) == 0) ||
                     (klen == 8 && strncasecmp(key, "password", 8) == 0);
        if (is_pw && vn > 0) {
            db->secrets[nsec++] = val;
        } else {
            free(val);
        }
    }
}

static void free_secrets(struct db *db)
{
    for (size_t k = 0; k < DB_MAX_SECRETS; k++) {
        if (db->secrets[k] != NULL) {
            size_t n = strlen(db->secrets[k]);
            volatile char *v = db->secrets[k];
            for (size_t i = 0; i < n; i++) {
                v[i] = '\0';
            }
            free(db->secrets[k]);
            db->secrets[k] = NULL;
        }
    }
}

static void stmt_free(struct cpb_stmt *st);

/* Free every statement, roll back, disconnect and free the handles. */
static void db_teardown(struct db *db)
{
    if (db->connected && db->in_txn) {
        (void)db_rollback(db);
    }
    while (db->stmts != NULL) {
        struct cpb_stmt *st = db->stmts;
        db->stmts = st->next;
        stmt_free(st);
    }
    db->nstmts = 0;
    if (db->connected) {
        SQLRETURN rc = SQLDisconnect(db->dbc);
        if (!ok(rc)) {
            /* SQLite refuses to disconnect inside a transaction someone
             * opened with db_exec: end it and try again. */
            if (db->dialect == DB_SQLITE) {
                SQLHSTMT h = SQL_NULL_HSTMT;
                if (ok(SQLAllocHandle(SQL_HANDLE_STMT, db->dbc, &h))) {
                    (void)SQLExecDirect(h, (SQLCHAR *)"ROLLBACK", SQL_NTS);
                    SQLFreeHandle(SQL_HANDLE_STMT, h);
                }
            }
            (void)SQLEndTran(SQL_HANDLE_DBC, db->dbc, SQL_ROLLBACK);
            (void)SQLDisconnect(db->dbc);
        }
        db->connected = false;
    }
    if (db->dbc != SQL_NULL_HDBC) {
        SQLFreeHandle(SQL_HANDLE_DBC, db->dbc);
        db->dbc = SQL_NULL_HDBC;
    }
    if (db->env != SQL_NULL_HENV) {
        SQLFreeHandle(SQL_HANDLE_ENV, db->env);
        db->env = SQL_NULL_HENV;
    }
    free_secrets(db);
}

/* Serialises SQLDriverConnect across threads: see db_connect. */
static pthread_mutex_t connect_lock = PTHREAD_MUTEX_INITIALIZER;

int db_connect(const char *connection, enum db_dialect dialect, int64_t login_timeout_ms,
               struct db **out, struct err *err)
{
    struct db *db = NULL;
    int ret = -1;
    SQLRETURN rc;
    const char *dname = db_dialect_name(dialect);

    if (out != NULL) {
        *out = NULL;
    }
    if (connection == NULL || out == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "db_connect: no connection string");
        goto out;
    }
    if (strlen(connection) > SHRT_MAX) {
        err_set(err, CPB_EXIT_CONFIG, "the %s connection string is too long", dname);
        goto out;
    }
    db = calloc(1, sizeof *db);
    if (db == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    db->dialect = dialect;
    db->env = SQL_NULL_HENV;
    db->dbc = SQL_NULL_HDBC;
    collect_secrets(db, connection);

    rc = SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &db->env);
    if (!ok(rc)) {
        db->env = SQL_NULL_HENV;
        err_set(err, CPB_EXIT_UNAVAILABLE, "cannot set up ODBC (is unixODBC installed?)");
        goto out;
    }
    rc = SQLSetEnvAttr(db->env, SQL_ATTR_ODBC_VERSION, (SQLPOINTER)SQL_OV_ODBC3, 0);
    if (!ok(rc)) {
        (void)diag(db, SQL_HANDLE_ENV, db->env, NULL);
        err_set(err, CPB_EXIT_UNAVAILABLE, "cannot set up ODBC 3: %s", db->last_error);
        goto out;
    }
    rc = SQLAllocHandle(SQL_HANDLE_DBC, db->env, &db->dbc);
    if (!ok(rc)) {
        db->dbc = SQL_NULL_HDBC;
        (void)diag(db, SQL_HANDLE_ENV, db->env, NULL);
        err_set(err, CPB_EXIT_UNAVAILABLE, "cannot set up an ODBC connection: %s", db->last_error);
        goto out;
    }
    if (login_timeout_ms > 0) {
        int64_t secs = (login_timeout_ms + 999) / 1000;
        if (secs > INT_MAX) {
            secs = INT_MAX;
        }
        /* Not every driver supports it; a refusal is not an error. */
        (void)SQLSetConnectAttr(db->dbc, SQL_ATTR_LOGIN_TIMEOUT, (SQLPOINTER)(uintptr_t)secs, 0);
    }
    /* One connect at a time in the process: psqlodbc calls setlocale() while
     * it connects, which is not safe while another thread does the same
     * (ThreadSanitizer caught it in test_parallel). Connects are rare, so
     * serialising them costs nothing measurable. */
    (void)pthread_mutex_lock(&connect_lock);
    rc = SQLDriverConnect(db->dbc, NULL, (SQLCHAR *)connection, SQL_NTS, NULL, 0, NULL,
                          SQL_DRIVER_NOPROMPT);
    (void)pthread_mutex_unlock(&connect_lock);
    if (!ok(rc)) {
        (void)diag(db, SQL_HANDLE_DBC, db->dbc, NULL);
        err_set(err, CPB_EXIT_UNAVAILABLE, "cannot connect to the %s database: %s", dname,
                db->last_error);
        goto out;
    }
    db->connected = true;
    db->broken = false;
    db->last_state[0] = '\0';
    db->last_error[0] = '\0';
    *out = db;
    db = NULL;
    ret = 0;
out:
    if (db != NULL) {
        db_teardown(db);
        free(db);
    }
    return ret;
}

void db_close(struct db *db)
{
    if (db == NULL) {
        return;
    }
    db_teardown(db);
    free(db);
}

enum db_dialect db_get_dialect(const struct db *db)
{
    return db->dialect;
}

const char *db_last_error(const struct db *db)
{
    return db != NULL ? db->last_error : "";
}

const char *db_last_sqlstate(const struct db *db)
{
    return db != NULL ? db->last_state : "";
}

bool db_broken(const struct db *db)
{
    return db != NULL && db->broken;
}

bool db_in_transaction(const struct db *db)
{
    return db != NULL && db->in_txn;
}

/* ---- statements without parameters and transactions ------------------- */

/* Run `sql` directly; `what` prefixes a failure message (may be NULL). */
static enum cpb_status exec_direct(struct db *db, const char *sql, const char *what)
{
    SQLHSTMT h = SQL_NULL_HSTMT;
    enum cpb_status st = CPB_OK;
    SQLRETURN rc = SQLAllocHandle(SQL_HANDLE_STMT, db->dbc, &h);
    if (!ok(rc)) {
        st = diag(db, SQL_HANDLE_DBC, db->dbc, what);
        goto out;
    }
    rc = SQLExecDirect(h, (SQLCHAR *)sql, SQL_NTS);
    if (!ok(rc) && rc != SQL_NO_DATA) {
        st = diag(db, SQL_HANDLE_STMT, h, what);
        goto out;
    }
out:
    if (h != SQL_NULL_HSTMT) {
        SQLFreeHandle(SQL_HANDLE_STMT, h);
    }
    return st;
}

enum cpb_status db_exec(struct db *db, const char *sql)
{
    if (db == NULL || sql == NULL) {
        return CPB_FAIL;
    }
    return exec_direct(db, sql, NULL);
}

/* Turn autocommit on or off (PostgreSQL, SQL Server). */
static enum cpb_status set_autocommit(struct db *db, bool on, const char *what)
{
    SQLRETURN rc = SQLSetConnectAttr(
        db->dbc, SQL_ATTR_AUTOCOMMIT,
        (SQLPOINTER)(uintptr_t)(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF), SQL_IS_UINTEGER);
    if (!ok(rc)) {
        return diag(db, SQL_HANDLE_DBC, db->dbc, what);
    }
    return CPB_OK;
}

enum cpb_status db_begin(struct db *db)
{
    enum cpb_status st;
    if (db == NULL) {
        return CPB_FAIL;
    }
    if (db->in_txn) {
        return fail_msg(db, "begin: a transaction is already open");
    }
    if (db->dialect == DB_SQLITE) {
        st = exec_direct(db, "BEGIN IMMEDIATE", "begin");
    } else {
        st = set_autocommit(db, false, "begin");
    }
    if (st == CPB_OK) {
        db->in_txn = true;
    }
    return st;
}

enum cpb_status db_commit(struct db *db)
{
    enum cpb_status st;
    if (db == NULL) {
        return CPB_FAIL;
    }
    if (!db->in_txn) {
        return fail_msg(db, "commit: no transaction is open");
    }
    if (db->dialect == DB_SQLITE) {
        st = exec_direct(db, "COMMIT", "commit");
    } else {
        SQLRETURN rc = SQLEndTran(SQL_HANDLE_DBC, db->dbc, SQL_COMMIT);
        st = ok(rc) ? CPB_OK : diag(db, SQL_HANDLE_DBC, db->dbc, "commit");
        if (st == CPB_OK) {
            st = set_autocommit(db, true, "commit");
        }
    }
    /* A failed commit leaves the transaction open: the caller rolls back. */
    if (st == CPB_OK) {
        db->in_txn = false;
    }
    return st;
}

enum cpb_status db_rollback(struct db *db)
{
    enum cpb_status st;
    if (db == NULL) {
        return CPB_FAIL;
    }
    if (!db->in_txn) {
        return CPB_OK;
    }
    if (db->dialect == DB_SQLITE) {
        st = exec_direct(db, "ROLLBACK", "rollback");
        /* SQLite may already have rolled back by itself (after a disk-full
         * or an interrupted statement): nothing is left to undo. */
        if (st != CPB_OK && contains_ci(db->last_error, "no transaction is active")) {
            st = CPB_OK;
        }
    } else {
        SQLRETURN rc = SQLEndTran(SQL_HANDLE_DBC, db->dbc, SQL_ROLLBACK);
        st = ok(rc) ? CPB_OK : diag(db, SQL_HANDLE_DBC, db->dbc, "rollback");
        enum cpb_status st2 = set_autocommit(db, true, "rollback");
        if (st == CPB_OK) {
            st = st2;
        }
    }
    /* Whatever happened, the transaction is over for the caller: a server
     * rolls back what it could not finish, and a broken connection is
     * reported through db_broken. */
    db->in_txn = false;
    return st;
}

/* ---- prepared statements ---------------------------------------------- */

static void params_clear(struct cpb_stmt *st)
{
    for (unsigned i = 0; i < st->nparams; i++) {
        free(st->params[i].text);
        st->params[i].text = NULL;
        st->params[i].kind = P_UNSET;
    }
    st->nparams = 0;
}

static void row_clear(struct cpb_stmt *st)
{
    st->have_row = false;
    for (SQLSMALLINT i = 0; i < st->ncols && st->cols != NULL; i++) {
        st->cols[i].len = 0;
        st->cols[i].is_null = true;
    }
}

static void cols_free(struct cpb_stmt *st)
{
    for (SQLSMALLINT i = 0; i < st->ncols && st->cols != NULL; i++) {
        free(st->cols[i].data);
    }
    free(st->cols);
    st->cols = NULL;
    st->ncols = 0;
    st->have_row = false;
}

/* Close the cursor and forget parameters and results: ready for reuse. */
static void stmt_reset(struct cpb_stmt *st)
{
    (void)SQLFreeStmt(st->h, SQL_CLOSE);
    (void)SQLFreeStmt(st->h, SQL_RESET_PARAMS);
    params_clear(st);
    cols_free(st);
    st->executed = false;
}

static void stmt_free(struct cpb_stmt *st)
{
    if (st == NULL) {
        return;
    }
    params_clear(st);
    cols_free(st);
    if (st->h != SQL_NULL_HSTMT) {
        SQLFreeHandle(SQL_HANDLE_STMT, st->h);
    }
    free(st->params);
    free(st->sql);
    free(st);
}

static void stmt_unlink(struct db *db, struct cpb_stmt *victim)
{
    for (struct cpb_stmt **pp = &db->stmts; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == victim) {
            *pp = victim->next;
            db->nstmts--;
            return;
        }
    }
}

/* Drop least recently used idle statements until there is room for one. */
static void cache_trim(struct db *db)
{
    while (db->nstmts >= DB_CACHE_MAX) {
        struct cpb_stmt *lru = NULL;
        for (struct cpb_stmt *s = db->stmts; s != NULL; s = s->next) {
            if (!s->in_use && (lru == NULL || s->last_used < lru->last_used)) {
                lru = s;
            }
        }
        if (lru == NULL) {
            return; /* all in use: the caller's statements are not ours to drop */
        }
        stmt_unlink(db, lru);
        stmt_free(lru);
    }
}

enum cpb_status db_prepare(struct db *db, const char *sql, struct cpb_stmt **stmt)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status ret = CPB_FAIL;
    SQLRETURN rc;

    if (stmt == NULL) {
        return CPB_FAIL;
    }
    *stmt = NULL;
    if (db == NULL) {
        return CPB_FAIL;
    }
    if (sql == NULL || sql[0] == '\0') {
        return fail_msg(db, "prepare: empty SQL");
    }
    if (strlen(sql) > INT_MAX) {
        return fail_msg(db, "prepare: SQL text too long");
    }
    db->tick++;
    /* The most recently used idle statement with the same text. */
    struct cpb_stmt *best = NULL;
    for (struct cpb_stmt *s = db->stmts; s != NULL; s = s->next) {
        if (!s->in_use && strcmp(s->sql, sql) == 0 &&
            (best == NULL || s->last_used > best->last_used)) {
            best = s;
        }
    }
    if (best != NULL) {
        stmt_reset(best);
        best->in_use = true;
        best->last_used = db->tick;
        *stmt = best;
        return CPB_OK;
    }

    cache_trim(db);
    st = calloc(1, sizeof *st);
    if (st == NULL) {
        ret = fail_msg(db, "prepare: out of memory");
        goto out;
    }
    st->db = db;
    st->h = SQL_NULL_HSTMT;
    st->sql = strdup(sql);
    if (st->sql == NULL) {
        ret = fail_msg(db, "prepare: out of memory");
        goto out;
    }
    rc = SQLAllocHandle(SQL_HANDLE_STMT, db->dbc, &st->h);
    if (!ok(rc)) {
        st->h = SQL_NULL_HSTMT;
        ret = diag(db, SQL_HANDLE_DBC, db->dbc, "prepare");
        goto out;
    }
    rc = SQLPrepare(st->h, (SQLCHAR *)st->sql, SQL_NTS);
    if (!ok(rc)) {
        ret = diag(db, SQL_HANDLE_STMT, st->h, "prepare");
        goto out;
    }
    st->in_use = true;
    st->last_used = db->tick;
    st->next = db->stmts;
    db->stmts = st;
    db->nstmts++;
    *stmt = st;
    st = NULL;
    ret = CPB_OK;
out:
    stmt_free(st);
    return ret;
}

void db_finalize(struct cpb_stmt *stmt)
{
    if (stmt == NULL) {
        return;
    }
    struct db *db = stmt->db;
    stmt_reset(stmt);
    stmt->in_use = false;
    stmt->owner = NULL;
    /* Over the cap (several copies were in use at once): do not keep it. */
    if (db->nstmts > DB_CACHE_MAX) {
        stmt_unlink(db, stmt);
        stmt_free(stmt);
    }
}

struct db *db_stmt_db(struct cpb_stmt *stmt)
{
    return stmt != NULL ? stmt->db : NULL;
}

void db_stmt_set_owner(struct cpb_stmt *stmt, void *owner)
{
    if (stmt != NULL) {
        stmt->owner = owner;
    }
}

void *db_stmt_owner(const struct cpb_stmt *stmt)
{
    return stmt != NULL ? stmt->owner : NULL;
}

/* The slot for parameter idx, growing the array; NULL after recording why. */
static struct param *param_slot(struct cpb_stmt *st, unsigned idx)
{
    if (idx == 0 || idx > DB_MAX_PARAMS) {
        (void)fail_msg(st->db, "bind: parameter index %u out of range (1..%d)", idx, DB_MAX_PARAMS);
        return NULL;
    }
    if (idx > st->params_cap) {
        unsigned cap = st->params_cap != 0 ? st->params_cap : 8;
        while (cap < idx) {
            cap *= 2;
        }
        struct param *p = realloc(st->params, cap * sizeof *p);
        if (p == NULL) {
            (void)fail_msg(st->db, "bind: out of memory");
            return NULL;
        }
        memset(p + st->params_cap, 0, (cap - st->params_cap) * sizeof *p);
        st->params = p;
        st->params_cap = cap;
    }
    if (idx > st->nparams) {
        for (unsigned i = st->nparams; i < idx; i++) {
            st->params[i].kind = P_UNSET;
            st->params[i].text = NULL;
        }
        st->nparams = idx;
    }
    struct param *p = &st->params[idx - 1];
    free(p->text);
    p->text = NULL;
    p->kind = P_UNSET;
    return p;
}

enum cpb_status db_bind_null(struct cpb_stmt *stmt, unsigned idx)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    struct param *p = param_slot(stmt, idx);
    if (p == NULL) {
        return CPB_FAIL;
    }
    p->kind = P_NULL;
    p->len = SQL_NULL_DATA;
    return CPB_OK;
}

enum cpb_status db_bind_text(struct cpb_stmt *stmt, unsigned idx, const char *value)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    if (value == NULL) {
        return db_bind_null(stmt, idx);
    }
    size_t n = strlen(value);
    if (n >= (size_t)INT32_MAX) {
        return fail_msg(stmt->db, "bind: text for parameter %u too long", idx);
    }
    struct param *p = param_slot(stmt, idx);
    if (p == NULL) {
        return CPB_FAIL;
    }
    p->text = malloc(n + 1);
    if (p->text == NULL) {
        return fail_msg(stmt->db, "bind: out of memory");
    }
    memcpy(p->text, value, n + 1);
    p->kind = P_TEXT;
    p->len = (SQLLEN)n;
    return CPB_OK;
}

enum cpb_status db_bind_int(struct cpb_stmt *stmt, unsigned idx, int64_t value)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    struct param *p = param_slot(stmt, idx);
    if (p == NULL) {
        return CPB_FAIL;
    }
    p->kind = P_INT;
    p->i = (SQLBIGINT)value;
    p->len = (SQLLEN)sizeof p->i;
    return CPB_OK;
}

enum cpb_status db_bind_decimal(struct cpb_stmt *stmt, unsigned idx, int64_t value)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    struct param *p = param_slot(stmt, idx);
    if (p == NULL) {
        return CPB_FAIL;
    }
    int n = text_format_decimal(value, 4, p->dec, sizeof p->dec);
    if (n < 0) {
        return fail_msg(stmt->db, "bind: cannot format decimal for parameter %u", idx);
    }
    p->kind = P_DECIMAL;
    p->len = (SQLLEN)n;
    return CPB_OK;
}

enum cpb_status db_bind_time(struct cpb_stmt *stmt, unsigned idx, int64_t ms)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    /* Seconds rounding toward minus infinity, and the milliseconds kept as
     * the fraction: the runner compares times at millisecond precision. */
    int64_t secs = ms / 1000;
    int64_t frac_ms = ms % 1000;
    if (frac_ms < 0) {
        secs--;
        frac_ms += 1000;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if ((int64_t)t != secs || gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 1 ||
        tm.tm_year + 1900 > 9999) {
        return fail_msg(stmt->db, "bind: time %lld ms for parameter %u is out of range",
                        (long long)ms, idx);
    }
    struct param *p = param_slot(stmt, idx);
    if (p == NULL) {
        return CPB_FAIL;
    }
    p->ts.year = (SQLSMALLINT)(tm.tm_year + 1900);
    p->ts.month = (SQLUSMALLINT)(tm.tm_mon + 1);
    p->ts.day = (SQLUSMALLINT)tm.tm_mday;
    p->ts.hour = (SQLUSMALLINT)tm.tm_hour;
    p->ts.minute = (SQLUSMALLINT)tm.tm_min;
    p->ts.second = (SQLUSMALLINT)(tm.tm_sec > 59 ? 59 : tm.tm_sec);
    p->ts.fraction = (SQLUINTEGER)(frac_ms * 1000000);
    p->kind = P_TIME;
    p->len = (SQLLEN)sizeof p->ts;
    return CPB_OK;
}

/* Hand every parameter to the driver; the values stay in st->params. */
static enum cpb_status bind_all(struct cpb_stmt *st)
{
    struct db *db = st->db;
    SQLSMALLINT expected = 0;
    if (ok(SQLNumParams(st->h, &expected)) && expected > 0 && (unsigned)expected > st->nparams) {
        return fail_msg(db, "execute: the statement has %d parameters but only %u are bound",
                        (int)expected, st->nparams);
    }
    for (unsigned i = 0; i < st->nparams; i++) {
        struct param *p = &st->params[i];
        SQLUSMALLINT num = (SQLUSMALLINT)(i + 1);
        SQLRETURN rc = SQL_ERROR;
        switch (p->kind) {
        case P_UNSET:
            return fail_msg(db, "execute: parameter %u is not bound", i + 1);
        case P_NULL:
            rc = SQLBindParameter(st->h, num, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_VARCHAR, 1, 0, NULL,
                                  0, &p->len);
            break;
        case P_TEXT: {
            SQLSMALLINT type = p->len > DB_LONG_TEXT ? SQL_LONGVARCHAR : SQL_VARCHAR;
            SQLULEN size = p->len > 0 ? (SQLULEN)p->len : 1;
            rc = SQLBindParameter(st->h, num, SQL_PARAM_INPUT, SQL_C_CHAR, type, size, 0, p->text,
                                  p->len + 1, &p->len);
            break;
        }
        case P_INT:
            rc = SQLBindParameter(st->h, num, SQL_PARAM_INPUT, SQL_C_SBIGINT, SQL_BIGINT, 0, 0,
                                  &p->i, 0, &p->len);
            break;
        case P_DECIMAL:
            rc = SQLBindParameter(st->h, num, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_DECIMAL, 19, 4,
                                  p->dec, (SQLLEN)sizeof p->dec, &p->len);
            break;
        case P_TIME:
            rc = SQLBindParameter(st->h, num, SQL_PARAM_INPUT, SQL_C_TYPE_TIMESTAMP,
                                  SQL_TYPE_TIMESTAMP, 23, 3, &p->ts, (SQLLEN)sizeof p->ts, &p->len);
            break;
        }
        if (!ok(rc)) {
            char what[48];
            snprintf(what, sizeof what, "bind parameter %u", i + 1);
            return diag(db, SQL_HANDLE_STMT, st->h, what);
        }
    }
    return CPB_OK;
}

enum cpb_status db_execute(struct cpb_stmt *stmt, int64_t *rows)
{
    enum cpb_status ret;
    SQLRETURN rc;
    SQLLEN count = 0;
    SQLSMALLINT ncols = 0;

    if (rows != NULL) {
        *rows = 0;
    }
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    struct db *db = stmt->db;
    (void)SQLFreeStmt(stmt->h, SQL_CLOSE);
    (void)SQLFreeStmt(stmt->h, SQL_RESET_PARAMS);
    cols_free(stmt);
    stmt->executed = false;

    ret = bind_all(stmt);
    if (ret != CPB_OK) {
        goto out;
    }
    rc = SQLExecute(stmt->h);
    if (rc == SQL_NO_DATA) {
        /* An UPDATE or DELETE that hit nothing. */
        stmt->executed = true;
        ret = CPB_OK;
        goto out;
    }
    if (!ok(rc)) {
        ret = diag(db, SQL_HANDLE_STMT, stmt->h, NULL);
        goto out;
    }
    stmt->executed = true;
    if (ok(SQLRowCount(stmt->h, &count)) && count > 0 && rows != NULL) {
        *rows = (int64_t)count;
    }
    rc = SQLNumResultCols(stmt->h, &ncols);
    if (!ok(rc)) {
        ret = diag(db, SQL_HANDLE_STMT, stmt->h, "execute");
        goto out;
    }
    if (ncols > 0) {
        stmt->cols = calloc((size_t)ncols, sizeof *stmt->cols);
        if (stmt->cols == NULL) {
            ret = fail_msg(db, "execute: out of memory");
            goto out;
        }
        stmt->ncols = ncols;
    }
    ret = CPB_OK;
out:
    return ret;
}

/* Make room for `need` bytes plus a NUL in column c. */
static int col_reserve(struct column *c, size_t need)
{
    if (need + 1 <= c->cap) {
        return 0;
    }
    if (need >= DB_MAX_VALUE) {
        return -1;
    }
    size_t cap = c->cap != 0 ? c->cap : 256;
    while (cap < need + 1) {
        cap *= 2;
    }
    char *d = realloc(c->data, cap);
    if (d == NULL) {
        return -1;
    }
    c->data = d;
    c->cap = cap;
    return 0;
}

/* Read column `col` (1-based) of the fetched row as text, any length. */
static enum cpb_status read_column(struct cpb_stmt *st, SQLUSMALLINT col)
{
    struct column *c = &st->cols[col - 1];
    c->len = 0;
    c->is_null = false;
    if (col_reserve(c, 255) != 0) {
        return fail_msg(st->db, "fetch: out of memory");
    }
    c->data[0] = '\0';
    for (;;) {
        SQLLEN ind = 0;
        SQLLEN room = (SQLLEN)(c->cap - c->len);
        SQLRETURN rc = SQLGetData(st->h, col, SQL_C_CHAR, c->data + c->len, room, &ind);
        if (rc == SQL_NO_DATA) {
            break; /* everything was read by the previous call */
        }
        if (!ok(rc)) {
            char what[48];
            snprintf(what, sizeof what, "read column %u", (unsigned)col);
            return diag(st->db, SQL_HANDLE_STMT, st->h, what);
        }
        if (ind == SQL_NULL_DATA) {
            c->is_null = true;
            c->len = 0;
            c->data[0] = '\0';
            return CPB_OK;
        }
        if (ind != SQL_NO_TOTAL && ind < 0) {
            return fail_msg(st->db, "read column %u: the driver gave length %ld", (unsigned)col,
                            (long)ind);
        }
        bool more = false;
        if (rc == SQL_SUCCESS_WITH_INFO && (ind == SQL_NO_TOTAL || ind >= room)) {
            more = true; /* 01004: truncated; room - 1 bytes and a NUL were written */
        }
        if (!more) {
            c->len += (size_t)ind;
            c->data[c->len] = '\0';
            break;
        }
        c->len += (size_t)room - 1;
        size_t want = c->cap * 2;
        if (ind != SQL_NO_TOTAL) {
            want = c->len + (size_t)ind - ((size_t)room - 1);
        }
        if (col_reserve(c, want > c->len + 255 ? want : c->len + 255) != 0) {
            return fail_msg(st->db, "read column %u: value too large or out of memory",
                            (unsigned)col);
        }
    }
    return CPB_OK;
}

enum cpb_status db_fetch(struct cpb_stmt *stmt)
{
    if (stmt == NULL) {
        return CPB_FAIL;
    }
    struct db *db = stmt->db;
    row_clear(stmt);
    if (!stmt->executed) {
        return fail_msg(db, "fetch: the statement was not executed");
    }
    if (stmt->ncols <= 0) {
        return fail_msg(db, "fetch: the statement returned no result set%s",
                        db->dialect == DB_SQLITE
                            ? " (SQLite returns no rows from INSERT/UPDATE ... RETURNING)"
                            : "");
    }
    SQLRETURN rc = SQLFetch(stmt->h);
    if (rc == SQL_NO_DATA) {
        return CPB_SKIP;
    }
    if (!ok(rc)) {
        return diag(db, SQL_HANDLE_STMT, stmt->h, "fetch");
    }
    for (SQLSMALLINT i = 1; i <= stmt->ncols; i++) {
        enum cpb_status st = read_column(stmt, (SQLUSMALLINT)i);
        if (st != CPB_OK) {
            return st;
        }
    }
    stmt->have_row = true;
    return CPB_OK;
}

/* The column of the current row, or NULL after recording why. */
static struct column *current_col(struct cpb_stmt *st, unsigned col)
{
    if (!st->have_row) {
        (void)fail_msg(st->db, "column %u: no current row", col);
        return NULL;
    }
    if (col == 0 || col > (unsigned)st->ncols) {
        (void)fail_msg(st->db, "column %u out of range (the result has %d columns)", col,
                       (int)st->ncols);
        return NULL;
    }
    return &st->cols[col - 1];
}

enum cpb_status db_col_text(struct cpb_stmt *stmt, unsigned col, const char **value)
{
    if (value != NULL) {
        *value = NULL;
    }
    if (stmt == NULL || value == NULL) {
        return CPB_FAIL;
    }
    struct column *c = current_col(stmt, col);
    if (c == NULL) {
        return CPB_FAIL;
    }
    *value = c->is_null ? NULL : c->data;
    return CPB_OK;
}

/*
 * Rewrite a number in exponent form ("1.0e-05", "-1.5E+3", as SQLite and
 * PostgreSQL print floating point values) as plain decimal text into out, so
 * text_parse_decimal can round it exactly. Returns 0, or -1 when s is not
 * such a number or does not fit.
 */
static int sci_to_plain(const char *s, char *out, size_t n)
{
    char digits[48];
    size_t nd = 0;
    long intdigits = 0;
    bool seen_point = false;
    bool neg = false;
    bool any_digit = false;
    const char *p = s;

    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.') {
            if (seen_point) {
                return -1;
            }
            seen_point = true;
            continue;
        }
        any_digit = true;
        if (nd == 0 && *p == '0') {
            /* Leading zeros carry no digits; they only move the point. */
            if (seen_point) {
                intdigits--;
            }
            continue;
        }
        if (nd < sizeof digits - 1) {
            digits[nd++] = *p;
            if (!seen_point) {
                intdigits++;
            }
        } else if (!seen_point) {
            return -1; /* far too large */
        }
    }
    if (!any_digit || (*p != 'e' && *p != 'E')) {
        return -1;
    }
    p++;
    char *end = NULL;
    long exp = strtol(p, &end, 10);
    if (end == p || *end != '\0' || exp > 100 || exp < -100) {
        if (end != p && *end == '\0' && exp < -100) {
            return snprintf(out, n, "0") < (int)n ? 0 : -1; /* rounds to zero */
        }
        return -1;
    }
    if (nd == 0) {
        return snprintf(out, n, "0") < (int)n ? 0 : -1;
    }
    long point = intdigits + exp; /* digits before the decimal point */
    size_t o = 0;
    if (neg && o + 1 < n) {
        out[o++] = '-';
    }
    if (point > 20) {
        return -1; /* out of any decimal range */
    }
    if (point <= 0) {
        /* 0.000ddd: beyond 10 places nothing changes the rounding to 4. */
        if (o + 2 >= n) {
            return -1;
        }
        out[o++] = '0';
        out[o++] = '.';
        long zeros = -point;
        for (long z = 0; z < zeros && z < 10 && o + 1 < n; z++) {
            out[o++] = '0';
        }
        for (size_t i = 0; i < nd && zeros + (long)i < 10 && o + 1 < n; i++) {
            out[o++] = digits[i];
        }
    } else {
        for (long i = 0; i < point; i++) {
            if (o + 1 >= n) {
                return -1;
            }
            out[o++] = (size_t)i < nd ? digits[i] : '0';
        }
        if ((size_t)point < nd) {
            if (o + 1 >= n) {
                return -1;
            }
            out[o++] = '.';
            for (size_t i = (size_t)point; i < nd && o + 1 < n; i++) {
                out[o++] = digits[i];
            }
        }
    }
    if (o >= n) {
        return -1;
    }
    out[o] = '\0';
    return 0;
}

/* Parse decimal text, plain or in exponent form, to ten-thousandths. */
static int parse_decimal_text(const char *s, int64_t *out)
{
    char plain[64];
    if (text_parse_decimal(s, out) == 0) {
        return 0;
    }
    if (sci_to_plain(s, plain, sizeof plain) != 0) {
        return -1;
    }
    return text_parse_decimal(plain, out);
}

enum cpb_status db_col_decimal(struct cpb_stmt *stmt, unsigned col, int64_t *value, bool *is_null)
{
    if (value != NULL) {
        *value = 0;
    }
    if (is_null != NULL) {
        *is_null = false;
    }
    if (stmt == NULL || value == NULL) {
        return CPB_FAIL;
    }
    struct column *c = current_col(stmt, col);
    if (c == NULL) {
        return CPB_FAIL;
    }
    if (c->is_null) {
        if (is_null != NULL) {
            *is_null = true;
        }
        return CPB_OK;
    }
    if (parse_decimal_text(c->data, value) != 0) {
        return fail_msg(stmt->db, "column %u: '%.40s' is not a decimal in range", col, c->data);
    }
    return CPB_OK;
}

enum cpb_status db_col_int(struct cpb_stmt *stmt, unsigned col, int64_t *value, bool *is_null)
{
    if (value != NULL) {
        *value = 0;
    }
    if (is_null != NULL) {
        *is_null = false;
    }
    if (stmt == NULL || value == NULL) {
        return CPB_FAIL;
    }
    struct column *c = current_col(stmt, col);
    if (c == NULL) {
        return CPB_FAIL;
    }
    if (c->is_null) {
        if (is_null != NULL) {
            *is_null = true;
        }
        return CPB_OK;
    }
    if (text_parse_int(c->data, value) == 0) {
        return CPB_OK;
    }
    /* A whole number stored as REAL or NUMERIC ("5.0", "5.0000"). */
    int64_t dec = 0;
    if (parse_decimal_text(c->data, &dec) == 0 && dec % TEXT_SCALE == 0) {
        *value = dec / TEXT_SCALE;
        return CPB_OK;
    }
    return fail_msg(stmt->db, "column %u: '%.40s' is not an integer in range", col, c->data);
}

enum cpb_status db_col_time(struct cpb_stmt *stmt, unsigned col, int64_t *ms, bool *is_null)
{
    if (ms != NULL) {
        *ms = 0;
    }
    if (is_null != NULL) {
        *is_null = false;
    }
    if (stmt == NULL || ms == NULL) {
        return CPB_FAIL;
    }
    struct column *c = current_col(stmt, col);
    if (c == NULL) {
        return CPB_FAIL;
    }
    if (c->is_null) {
        if (is_null != NULL) {
            *is_null = true;
        }
        return CPB_OK;
    }
    if (text_parse_time(c->data, ms) == 0) {
        return CPB_OK;
    }
    /* A DATE column ("2024-05-01"), or PostgreSQL's timestamptz in UTC
     * ("... +00"): complete the text and try again. */
    char fixed[48];
    int n = -1;
    if (c->len == 10) {
        n = snprintf(fixed, sizeof fixed, "%s 00:00:00", c->data);
    } else if (c->len > 3 && c->len < 40 && strcmp(c->data + c->len - 3, "+00") == 0) {
        n = snprintf(fixed, sizeof fixed, "%s:00", c->data);
    }
    if (n > 0 && (size_t)n < sizeof fixed && text_parse_time(fixed, ms) == 0) {
        return CPB_OK;
    }
    return fail_msg(stmt->db, "column %u: '%.40s' is not a UTC time", col, c->data);
}
