/*
 * floor.c — the benchmark's lower bound: writes the rows cpbridge writes for
 * the same generated orders, with the fewest statements, on the same kind of
 * database (a fresh one made by `cpbridge db init --demo`), linking only
 * unixODBC. tests/load/bench.py prints cpbridge's time as a ratio to this.
 *
 *   floor --conn ODBC-CONNECTION-STRING --in FLOOR-FILE
 *
 * Per order, in one transaction, with every statement prepared once and
 * reused for all orders: the staging row in its final state and its lines;
 * for a valid order also PS_DOC_HDR, a PS_DOC_LIN per line, PS_DOC_HDR_TOT,
 * PS_DOC_HDR_MISC_CHRG for shipping and fees, the two PS_DOC_CONTACT rows,
 * PS_DOC_PMT, PS_DOC_NOTE when there is a note, and one IM_INV update per
 * line. What it leaves out on purpose (the engine's own work, priced by the
 * ratio): parsing and normalizing JSON, the payload hash, every read
 * (validation lookups, claims, re-reading the order), the separate staging
 * transaction, leases, counters, USER_ORDER_EVENT and USER_ORDER_INV rows
 * and the run log. Document ids, ticket numbers and staging ids come from
 * counters in memory (a fresh database, one writer).
 *
 * The input is written by gen_orders.py --floor: a first line
 * "# cpbridge load floor v1", then per order one O record, its L records
 * (one per line) and two C records (bill-to, ship-to); fields are separated
 * by TABs:
 *   O id status email woo_customer_id bill_name total created cust_no
 *     nlines shipping fees tax subtotal lines_total note payment_title payload
 *   L seq ext_line_id sku item_no name qty unit_price subtotal total tax
 *   C contact_id name first_name last_name address_1 city state postcode
 *     country phone email
 * status is APPLIED or INVALID, created "YYYY-MM-DD HH:MM:SS" (UTC), money
 * and quantities decimal text. The file is checked as untrusted input:
 * field counts, numbers, lengths; an error names the line and stops.
 *
 * Prints one JSON line: orders, applied, invalid, statements, seconds.
 * Exit status: 0 done, 1 input or database error, 64 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <sql.h>
#include <sqlext.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLOOR_MAGIC      "# cpbridge load floor v1"
#define MAX_RECORD_BYTES ((size_t)16 << 20)
#define MAX_FIELDS       24
#define MAX_ORDER_LINES  1000
#define MAX_PARAMS       24
#define LONG_TEXT        4000
#define O_FIELDS         18
#define L_FIELDS         11
#define C_FIELDS         12
#define SOURCE           "samples"
#define STORE            "WEB"
#define STATION          "WEB-01"
#define LOCATION         "MAIN"
#define USER             "CPBRIDGE"
#define PAY_CODE         "EC_WOOCOMM"
#define FIRST_DOC_ID     INT64_C(100000000001)

enum pkind { P_NULL, P_TEXT, P_INT, P_DEC, P_TIME };

/* One bound value; text is borrowed until the statement ran. */
struct param {
    enum pkind kind;
    const char *text;
    SQLBIGINT i;
    SQL_TIMESTAMP_STRUCT ts;
    SQLLEN len;
};

/* A prepared statement and the values of its next execution. */
struct stmt {
    const char *name;
    const char *sql;
    SQLHSTMT h;
    struct param p[MAX_PARAMS];
    unsigned n;
    bool no_rows; /* the last execution changed no row */
};

/* One input record, split in place: f[0] is the record type. */
struct record {
    char *buf; /* owned */
    char *f[MAX_FIELDS];
    unsigned nf;
    unsigned long lineno;
};

/* The input reader. */
struct input {
    FILE *fp;
    const char *path;
    unsigned long lineno;
};

enum {
    S_STAGING,
    S_STAGING_LIN,
    S_HDR,
    S_LIN,
    S_TOT,
    S_MISC,
    S_CONTACT,
    S_PMT,
    S_NOTE,
    S_INV,
    S_COUNT
};

struct floor {
    SQLHENV env;
    SQLHDBC dbc;
    bool connected;
    struct stmt st[S_COUNT];
    unsigned long statements;
    unsigned long orders, applied, invalid;
    int64_t staging_id;
    int64_t doc_id;
    unsigned long ticket;
    SQL_TIMESTAMP_STRUCT now;
};

static const char *const sql_text[S_COUNT] = {
    [S_STAGING] =
        "INSERT INTO USER_ORDER_STAGING (STAGING_ID, SOURCE, EXT_ORDER_ID, ORDER_NO,"
        " STATUS, STORE_STATUS, PAYLOAD, PAYLOAD_HASH, CUST_EMAIL, WOO_CUSTOMER_ID,"
        " BILL_NAM, CURRENCY, ORDER_TOTAL, ORDER_DT, MODIFIED_DT, ATTEMPTS,"
        " NEXT_ATTEMPT_DT, LAST_ERROR_CODE, LAST_ERROR, CP_DOC_ID, CP_TKT_NO,"
        " RECEIVED_DT, UPDATED_DT, APPLIED_DT)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_STAGING_LIN] =
        "INSERT INTO USER_ORDER_STAGING_LIN (STAGING_ID, LIN_SEQ_NO, EXT_LINE_ID, SKU,"
        " ITEM_NO, NAME, QTY, PRC, LINE_SUBTOTAL, LINE_TOTAL, LINE_TAX)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_HDR] = "INSERT INTO PS_DOC_HDR (DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP, STR_ID, STA_ID, DRW_ID,"
              " TKT_NO, CUST_NO, TKT_DT, USR_ID, STK_LOC_ID, PRC_LOC_ID, BILL_TO_CONTACT_ID,"
              " SHIP_TO_CONTACT_ID, ORD_LINS, SAL_LINS, RET_LINS, SAL_LIN_TOT, IS_DOC_COMMITTED,"
              " LST_MAINT_DT, LST_MAINT_USR_ID, REF)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_LIN] =
        "INSERT INTO PS_DOC_LIN (DOC_ID, LIN_SEQ_NO, STR_ID, STA_ID, TKT_NO, LIN_TYP, ITEM_NO,"
        " DESCR, QTY_SOLD, SELL_UNIT, PRC, EXT_PRC, GROSS_EXT_PRC, CALC_EXT_PRC,"
        " USR_ENTD_PRC, STK_LOC_ID, PRC_LOC_ID, LIN_GUID)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_TOT] = "INSERT INTO PS_DOC_HDR_TOT (DOC_ID, TOT_TYP, LINS, SUB_TOT, TAX_AMT, NORM_TAX_AMT,"
              " TOT_MISC, TOT_HDR_DISC, TOT_LIN_DISC, TOT, AMT_DUE, TOT_TND, INITIAL_MIN_DUE,"
              " TAX_AMT_SHIPPED, TOT_WEIGHT, TOT_CUBE)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_MISC] =
        "INSERT INTO PS_DOC_HDR_MISC_CHRG (DOC_ID, TOT_TYP, MISC_CHRG_NO, MISC_TYP, MISC_AMT,"
        " MISC_PCT) VALUES (?, ?, ?, ?, ?, ?)",
    [S_CONTACT] = "INSERT INTO PS_DOC_CONTACT (DOC_ID, CONTACT_ID, NAM, FST_NAM, LST_NAM, ADRS_1,"
                  " ADRS_2, ADRS_3, CITY, STATE, ZIP_COD, CNTRY, PHONE_1, EMAIL_ADRS_1, NAM_TYP)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_PMT] =
        "INSERT INTO PS_DOC_PMT (DOC_ID, PMT_SEQ_NO, PAY_COD, AMT, HOME_CURNCY_AMT, FINAL_PMT,"
        " PAY_DAT, DESCR, STR_ID, STA_ID, TKT_NO) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_NOTE] = "INSERT INTO PS_DOC_NOTE (DOC_ID, NOTE_ID, NOTE) VALUES (?, ?, ?)",
    [S_INV] = "UPDATE IM_INV SET QTY_ON_SO = QTY_ON_SO + ?, LST_MAINT_DT = ?"
              " WHERE ITEM_NO = ? AND LOC_ID = ?",
};

static const char *const stmt_name[S_COUNT] = {"staging", "staging lines", "header",  "lines",
                                               "totals",  "misc charge",   "contact", "payment",
                                               "note",    "inventory"};

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("floor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Print the diagnostics of handle h after `what` failed. Returns -1. */
static int odbc_error(SQLSMALLINT type, SQLHANDLE h, const char *what)
{
    SQLCHAR state[6];
    SQLCHAR msg[1024];
    SQLINTEGER native = 0;
    SQLSMALLINT len = 0;
    bool any = false;
    for (SQLSMALLINT i = 1; i <= 5; i++) {
        SQLRETURN rc = SQLGetDiagRec(type, h, i, state, &native, msg, sizeof msg, &len);
        if (rc != SQL_SUCCESS && rc != SQL_SUCCESS_WITH_INFO) {
            break;
        }
        errorf("%s: %s (native %ld): %s", what, (const char *)state, (long)native,
               (const char *)msg);
        any = true;
    }
    if (!any) {
        errorf("%s failed (no diagnostics)", what);
    }
    return -1;
}

static bool ok(SQLRETURN rc)
{
    return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO;
}

/* ---- input ---------------------------------------------------------------- */

/* Read the next record into r (r->buf is new, freed by record_free).
 * Returns 1 with a record, 0 at the end of the input, -1 on error. */
static int read_record(struct input *in, struct record *r)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = 0;
    int ret = -1;

    memset(r, 0, sizeof *r);
    for (;;) {
        errno = 0;
        n = getline(&line, &cap, in->fp);
        if (n < 0) {
            int e = errno;
            if (e != 0 || ferror(in->fp)) {
                errorf("%s: read error after line %lu: %s", in->path, in->lineno,
                       strerror(e != 0 ? e : EIO));
                goto out;
            }
            ret = 0; /* the end of the input */
            goto out;
        }
        in->lineno++;
        if ((size_t)n > MAX_RECORD_BYTES) {
            errorf("%s:%lu: record longer than %zu bytes", in->path, in->lineno, MAX_RECORD_BYTES);
            goto out;
        }
        if (memchr(line, '\0', (size_t)n) != NULL) {
            errorf("%s:%lu: the record contains a NUL byte", in->path, in->lineno);
            goto out;
        }
        if (n > 0 && line[n - 1] == '\n') {
            n--;
            line[n] = '\0';
        }
        if (n > 0 && line[0] != '#') {
            break; /* blank lines and comments are skipped */
        }
    }
    r->lineno = in->lineno;
    char *p = line;
    for (;;) {
        if (r->nf == MAX_FIELDS) {
            errorf("%s:%lu: more than %d fields", in->path, in->lineno, MAX_FIELDS);
            r->nf = 0;
            goto out;
        }
        r->f[r->nf++] = p;
        char *tab = strchr(p, '\t');
        if (tab == NULL) {
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    r->buf = line;
    line = NULL;
    ret = 1;
out:
    free(line);
    return ret;
}

static void record_free(struct record *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* Check the record's type and field count. */
static int expect(const struct input *in, const struct record *r, const char *type, unsigned fields)
{
    if (strcmp(r->f[0], type) != 0) {
        errorf("%s:%lu: expected a %s record, found '%.8s'", in->path, r->lineno, type, r->f[0]);
        return -1;
    }
    if (r->nf != fields) {
        errorf("%s:%lu: a %s record has %u fields, expected %u", in->path, r->lineno, type, r->nf,
               fields);
        return -1;
    }
    return 0;
}

/* A whole decimal integer in [min, max]. */
static int parse_int(const struct input *in, const struct record *r, unsigned idx, int64_t min,
                     int64_t max, int64_t *out)
{
    const char *s = r->f[idx];
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || end == NULL || *end != '\0' || errno != 0 || v < min || v > max) {
        errorf("%s:%lu: field %u '%.20s' is not an integer in %" PRId64 "..%" PRId64, in->path,
               r->lineno, idx + 1, s, min, max);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* Decimal text such as "-12.3400": up to 11 integer and 4 fraction digits. */
static int check_decimal(const struct input *in, const struct record *r, unsigned idx)
{
    const char *s = r->f[idx];
    size_t i = s[0] == '-' ? 1 : 0;
    size_t digits = 0;
    size_t frac = 0;
    bool dot = false;
    for (; s[i] != '\0'; i++) {
        if (s[i] == '.' && !dot) {
            dot = true;
        } else if (s[i] >= '0' && s[i] <= '9') {
            if (dot) {
                frac++;
            } else {
                digits++;
            }
        } else {
            digits = 0;
            break;
        }
    }
    if (digits == 0 || digits > 11 || frac > 4 || (dot && frac == 0)) {
        errorf("%s:%lu: field %u '%.20s' is not a decimal amount", in->path, r->lineno, idx + 1, s);
        return -1;
    }
    return 0;
}

/* Text no longer than max bytes. */
static int check_text(const struct input *in, const struct record *r, unsigned idx, size_t max)
{
    size_t n = strlen(r->f[idx]);
    if (n > max) {
        errorf("%s:%lu: field %u is %zu bytes long, at most %zu fit", in->path, r->lineno, idx + 1,
               n, max);
        return -1;
    }
    return 0;
}

/* "YYYY-MM-DD HH:MM:SS" into ts. */
static int parse_time(const struct input *in, const struct record *r, unsigned idx,
                      SQL_TIMESTAMP_STRUCT *ts)
{
    const char *s = r->f[idx];
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    bool good = strlen(s) == sizeof shape - 1;
    for (size_t i = 0; good && shape[i] != '\0'; i++) {
        good = shape[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == shape[i];
    }
    if (good) {
        int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        int mon = (s[5] - '0') * 10 + (s[6] - '0');
        int day = (s[8] - '0') * 10 + (s[9] - '0');
        int hour = (s[11] - '0') * 10 + (s[12] - '0');
        int min = (s[14] - '0') * 10 + (s[15] - '0');
        int sec = (s[17] - '0') * 10 + (s[18] - '0');
        good = year >= 1900 && mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hour <= 23 &&
               min <= 59 && sec <= 59;
        memset(ts, 0, sizeof *ts);
        ts->year = (SQLSMALLINT)year;
        ts->month = (SQLUSMALLINT)mon;
        ts->day = (SQLUSMALLINT)day;
        ts->hour = (SQLUSMALLINT)hour;
        ts->minute = (SQLUSMALLINT)min;
        ts->second = (SQLUSMALLINT)sec;
    }
    if (!good) {
        errorf("%s:%lu: field %u '%.20s' is not a time YYYY-MM-DD HH:MM:SS", in->path, r->lineno,
               idx + 1, s);
        return -1;
    }
    return 0;
}

/* ---- statements ------------------------------------------------------------- */

static void p_text(struct stmt *s, const char *v)
{
    struct param *p = &s->p[s->n++];
    p->kind = v != NULL ? P_TEXT : P_NULL;
    p->text = v;
}

/* Empty text binds SQL NULL, as create-order does. */
static void p_text_or_null(struct stmt *s, const char *v)
{
    p_text(s, v != NULL && v[0] != '\0' ? v : NULL);
}

static void p_int(struct stmt *s, int64_t v)
{
    struct param *p = &s->p[s->n++];
    p->kind = P_INT;
    p->i = (SQLBIGINT)v;
}

static void p_dec(struct stmt *s, const char *v)
{
    struct param *p = &s->p[s->n++];
    p->kind = P_DEC;
    p->text = v;
}

static void p_time(struct stmt *s, const SQL_TIMESTAMP_STRUCT *ts)
{
    struct param *p = &s->p[s->n++];
    p->kind = P_TIME;
    p->ts = *ts;
}

static void p_null(struct stmt *s)
{
    struct param *p = &s->p[s->n++];
    p->kind = P_NULL;
}

/* Bind the collected values, execute, and forget the values. */
static int run(struct floor *fl, struct stmt *s)
{
    int ret = -1;
    for (unsigned i = 0; i < s->n; i++) {
        struct param *p = &s->p[i];
        SQLUSMALLINT num = (SQLUSMALLINT)(i + 1);
        SQLRETURN rc = SQL_ERROR;
        switch (p->kind) {
        case P_NULL:
            p->len = SQL_NULL_DATA;
            rc = SQLBindParameter(s->h, num, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_VARCHAR, 1, 0, NULL,
                                  0, &p->len);
            break;
        case P_TEXT: {
            size_t n = strlen(p->text);
            p->len = (SQLLEN)n;
            rc = SQLBindParameter(s->h, num, SQL_PARAM_INPUT, SQL_C_CHAR,
                                  n > LONG_TEXT ? SQL_LONGVARCHAR : SQL_VARCHAR,
                                  n > 0 ? (SQLULEN)n : 1, 0, (SQLPOINTER)(uintptr_t)p->text,
                                  (SQLLEN)n + 1, &p->len);
            break;
        }
        case P_INT:
            p->len = (SQLLEN)sizeof p->i;
            rc = SQLBindParameter(s->h, num, SQL_PARAM_INPUT, SQL_C_SBIGINT, SQL_BIGINT, 0, 0,
                                  &p->i, 0, &p->len);
            break;
        case P_DEC:
            p->len = (SQLLEN)strlen(p->text);
            rc = SQLBindParameter(s->h, num, SQL_PARAM_INPUT, SQL_C_CHAR, SQL_DECIMAL, 19, 4,
                                  (SQLPOINTER)(uintptr_t)p->text, p->len + 1, &p->len);
            break;
        case P_TIME:
            p->len = (SQLLEN)sizeof p->ts;
            rc = SQLBindParameter(s->h, num, SQL_PARAM_INPUT, SQL_C_TYPE_TIMESTAMP,
                                  SQL_TYPE_TIMESTAMP, 23, 3, &p->ts, (SQLLEN)sizeof p->ts, &p->len);
            break;
        }
        if (!ok(rc)) {
            odbc_error(SQL_HANDLE_STMT, s->h, s->name);
            goto out;
        }
    }
    SQLRETURN rc = SQLExecute(s->h);
    fl->statements++;
    s->no_rows = rc == SQL_NO_DATA;
    if (!ok(rc) && rc != SQL_NO_DATA) {
        odbc_error(SQL_HANDLE_STMT, s->h, s->name);
        goto out;
    }
    ret = 0;
out:
    (void)SQLFreeStmt(s->h, SQL_RESET_PARAMS);
    s->n = 0;
    return ret;
}

static int prepare_all(struct floor *fl)
{
    for (int i = 0; i < S_COUNT; i++) {
        struct stmt *s = &fl->st[i];
        s->name = stmt_name[i];
        s->sql = sql_text[i];
        if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, fl->dbc, &s->h))) {
            s->h = SQL_NULL_HSTMT;
            return odbc_error(SQL_HANDLE_DBC, fl->dbc, "allocate a statement");
        }
        if (!ok(SQLPrepare(s->h, (SQLCHAR *)(uintptr_t)s->sql, SQL_NTS))) {
            return odbc_error(SQL_HANDLE_STMT, s->h, s->name);
        }
    }
    return 0;
}

/* ---- one order ----------------------------------------------------------------- */

/* "00000000-0000-4000-8000-<12 hex digits of n>" into out[37]. */
static void guid(uint64_t n, char out[37])
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012" PRIx64, n & UINT64_C(0xffffffffffff));
}

static int write_order(struct floor *fl, const struct input *in, const struct record *o,
                       const struct record *lines, size_t nlines, const struct record *contacts)
{
    int64_t woo_cust = 0;
    int64_t seq = 0;
    int64_t ext_line = 0;
    SQL_TIMESTAMP_STRUCT created;
    char tkt[16];
    char hdr_guid[37];
    char lin_guid[37];
    bool applied = strcmp(o->f[2], "APPLIED") == 0;
    struct stmt *s;

    if (!applied && strcmp(o->f[2], "INVALID") != 0) {
        errorf("%s:%lu: status '%.12s' is neither APPLIED nor INVALID", in->path, o->lineno,
               o->f[2]);
        return -1;
    }
    if (check_text(in, o, 1, 40) != 0 || check_text(in, o, 3, 50) != 0 ||
        parse_int(in, o, 4, 0, INT64_C(9007199254740992), &woo_cust) != 0 ||
        check_text(in, o, 5, 160) != 0 || check_decimal(in, o, 6) != 0 ||
        parse_time(in, o, 7, &created) != 0 || check_text(in, o, 8, 15) != 0 ||
        check_decimal(in, o, 10) != 0 || check_decimal(in, o, 11) != 0 ||
        check_decimal(in, o, 12) != 0 || check_decimal(in, o, 13) != 0 ||
        check_decimal(in, o, 14) != 0 || check_text(in, o, 16, 160) != 0) {
        return -1;
    }
    if (applied && o->f[8][0] == '\0') {
        errorf("%s:%lu: an APPLIED order needs a customer number", in->path, o->lineno);
        return -1;
    }
    fl->staging_id++;
    int64_t doc_id = fl->doc_id;
    snprintf(tkt, sizeof tkt, "F%s-%06lu", STORE, (fl->ticket + 1) % 1000000);

    s = &fl->st[S_STAGING];
    p_int(s, fl->staging_id);
    p_text(s, SOURCE);
    p_text(s, o->f[1]);
    p_text(s, o->f[1]);
    p_text(s, o->f[2]);
    p_text(s, "processing");
    p_text(s, o->f[17]);
    p_text(s, "0000000000000000000000000000000000000000000000000000000000000000");
    p_text_or_null(s, o->f[3]);
    if (woo_cust > 0) {
        p_int(s, woo_cust);
    } else {
        p_null(s);
    }
    p_text_or_null(s, o->f[5]);
    p_text(s, "USD");
    p_dec(s, o->f[6]);
    p_time(s, &created);
    p_time(s, &created);
    p_int(s, applied ? 1 : 0);
    p_time(s, &fl->now);
    p_text(s, applied ? NULL : "load.invalid");
    p_text(s, applied ? NULL : "invalid on purpose (load generator)");
    if (applied) {
        p_int(s, doc_id);
        p_text(s, tkt);
    } else {
        p_null(s);
        p_null(s);
    }
    p_time(s, &fl->now);
    p_time(s, &fl->now);
    if (applied) {
        p_time(s, &fl->now);
    } else {
        p_null(s);
    }
    if (run(fl, s) != 0) {
        return -1;
    }

    for (size_t i = 0; i < nlines; i++) {
        const struct record *l = &lines[i];
        if (parse_int(in, l, 1, 1, MAX_ORDER_LINES, &seq) != 0 ||
            parse_int(in, l, 2, 0, INT64_C(9007199254740992), &ext_line) != 0 ||
            check_text(in, l, 3, 100) != 0 || check_text(in, l, 4, 20) != 0 ||
            check_text(in, l, 5, 250) != 0 || check_decimal(in, l, 6) != 0 ||
            check_decimal(in, l, 7) != 0 || check_decimal(in, l, 8) != 0 ||
            check_decimal(in, l, 9) != 0 || check_decimal(in, l, 10) != 0) {
            return -1;
        }
        s = &fl->st[S_STAGING_LIN];
        p_int(s, fl->staging_id);
        p_int(s, seq);
        if (ext_line > 0) {
            p_int(s, ext_line);
        } else {
            p_null(s);
        }
        p_text(s, l->f[3]);
        p_text_or_null(s, l->f[4]);
        p_text_or_null(s, l->f[5]);
        p_dec(s, l->f[6]);
        p_dec(s, l->f[7]);
        p_dec(s, l->f[8]);
        p_dec(s, l->f[9]);
        p_dec(s, l->f[10]);
        if (run(fl, s) != 0) {
            return -1;
        }
    }
    if (!applied) {
        fl->invalid++;
        return 0;
    }

    guid((uint64_t)doc_id, hdr_guid);
    s = &fl->st[S_HDR];
    p_int(s, doc_id);
    p_text(s, hdr_guid);
    p_text(s, "O");
    p_text(s, "T");
    p_text(s, STORE);
    p_text(s, STATION);
    p_null(s);
    p_text(s, tkt);
    p_text(s, o->f[8]);
    p_time(s, &created);
    p_text(s, USER);
    p_text(s, LOCATION);
    p_text(s, LOCATION);
    p_int(s, 1);
    p_int(s, 2);
    p_int(s, (int64_t)nlines);
    p_int(s, 0);
    p_int(s, 0);
    p_dec(s, "0");
    p_text(s, "Y");
    p_time(s, &fl->now);
    p_text(s, USER);
    p_text(s, o->f[1]);
    if (run(fl, s) != 0) {
        return -1;
    }

    for (size_t i = 0; i < nlines; i++) {
        const struct record *l = &lines[i];
        guid(((uint64_t)doc_id << 10) + i + 1, lin_guid);
        s = &fl->st[S_LIN];
        p_int(s, doc_id);
        p_int(s, (int64_t)i + 1);
        p_text(s, STORE);
        p_text(s, STATION);
        p_text(s, tkt);
        p_text(s, "O");
        p_text(s, l->f[4]);
        p_text_or_null(s, l->f[5]);
        p_dec(s, l->f[6]);
        p_text(s, "0");
        p_dec(s, l->f[7]);
        p_dec(s, l->f[9]);
        p_dec(s, l->f[8]);
        p_dec(s, l->f[9]);
        p_text(s, "Y");
        p_text(s, LOCATION);
        p_text(s, LOCATION);
        p_text(s, lin_guid);
        if (run(fl, s) != 0) {
            return -1;
        }
    }

    s = &fl->st[S_TOT];
    p_int(s, doc_id);
    p_text(s, "O");
    p_int(s, (int64_t)nlines);
    p_dec(s, o->f[13]);
    p_dec(s, o->f[12]);
    p_dec(s, o->f[12]);
    p_dec(s, o->f[10]); /* shipping (fees are a charge of their own) */
    p_dec(s, "0");
    p_dec(s, "0");
    p_dec(s, o->f[6]);
    p_dec(s, "0");
    p_dec(s, o->f[6]);
    p_dec(s, "0");
    p_dec(s, "0");
    p_dec(s, "0");
    p_dec(s, "0");
    if (run(fl, s) != 0) {
        return -1;
    }
    const char *charges[2] = {o->f[10], o->f[11]};
    for (int c = 0; c < 2; c++) {
        if (strspn(charges[c], "0.") == strlen(charges[c])) {
            continue; /* nothing charged */
        }
        s = &fl->st[S_MISC];
        p_int(s, doc_id);
        p_text(s, "O");
        p_int(s, c + 1);
        p_text(s, "A");
        p_dec(s, charges[c]);
        p_dec(s, "0");
        if (run(fl, s) != 0) {
            return -1;
        }
    }

    for (int c = 0; c < 2; c++) {
        const struct record *r = &contacts[c];
        if (check_text(in, r, 2, 40) != 0 || check_text(in, r, 3, 15) != 0 ||
            check_text(in, r, 4, 25) != 0 || check_text(in, r, 5, 40) != 0 ||
            check_text(in, r, 6, 20) != 0 || check_text(in, r, 7, 10) != 0 ||
            check_text(in, r, 8, 15) != 0 || check_text(in, r, 9, 20) != 0 ||
            check_text(in, r, 10, 25) != 0 || check_text(in, r, 11, 50) != 0) {
            return -1;
        }
        s = &fl->st[S_CONTACT];
        p_int(s, doc_id);
        p_int(s, c + 1);
        for (unsigned k = 2; k <= 5; k++) {
            p_text_or_null(s, r->f[k]);
        }
        p_null(s); /* ADRS_2 */
        p_null(s); /* ADRS_3 */
        for (unsigned k = 6; k <= 11; k++) {
            p_text_or_null(s, r->f[k]);
        }
        p_text(s, "P");
        if (run(fl, s) != 0) {
            return -1;
        }
    }

    s = &fl->st[S_PMT];
    p_int(s, doc_id);
    p_int(s, 1);
    p_text(s, PAY_CODE);
    p_dec(s, o->f[6]);
    p_dec(s, o->f[6]);
    p_text(s, "N");
    p_time(s, &created);
    p_text_or_null(s, o->f[16]);
    p_text(s, STORE);
    p_text(s, STATION);
    p_text(s, tkt);
    if (run(fl, s) != 0) {
        return -1;
    }
    if (o->f[15][0] != '\0') {
        s = &fl->st[S_NOTE];
        p_int(s, doc_id);
        p_text(s, "WEB");
        p_text(s, o->f[15]);
        if (run(fl, s) != 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < nlines; i++) {
        s = &fl->st[S_INV];
        p_dec(s, lines[i].f[6]);
        p_time(s, &fl->now);
        p_text(s, lines[i].f[4]);
        p_text(s, LOCATION);
        if (run(fl, s) != 0) {
            return -1;
        }
        if (s->no_rows) {
            errorf("%s:%lu: item '%.20s' has no IM_INV row at %s", in->path, lines[i].lineno,
                   lines[i].f[4], LOCATION);
            return -1;
        }
    }
    fl->doc_id++;
    fl->ticket++;
    fl->applied++;
    return 0;
}

/* Read one order's records and write it in its own transaction. Returns
 * 1 when an order was written, 0 at the end of the input, -1 on error. */
static int next_order(struct floor *fl, struct input *in)
{
    struct record o;
    struct record *lines = NULL;
    struct record contacts[2];
    size_t nlines = 0;
    size_t got = 0;
    int ncontacts = 0;
    int64_t count = 0;
    int ret = -1;

    memset(contacts, 0, sizeof contacts);
    int rc = read_record(in, &o);
    if (rc <= 0) {
        return rc;
    }
    if (expect(in, &o, "O", O_FIELDS) != 0 || parse_int(in, &o, 9, 1, MAX_ORDER_LINES, &count)) {
        goto out;
    }
    nlines = (size_t)count;
    lines = calloc(nlines, sizeof *lines);
    if (lines == NULL) {
        errorf("out of memory");
        goto out;
    }
    for (got = 0; got < nlines; got++) {
        rc = read_record(in, &lines[got]);
        if (rc <= 0) {
            if (rc == 0) {
                errorf("%s: the input ends inside order %s", in->path, o.f[1]);
            }
            goto out;
        }
        if (expect(in, &lines[got], "L", L_FIELDS) != 0) {
            got++;
            goto out;
        }
    }
    for (ncontacts = 0; ncontacts < 2; ncontacts++) {
        rc = read_record(in, &contacts[ncontacts]);
        if (rc <= 0) {
            if (rc == 0) {
                errorf("%s: the input ends inside order %s", in->path, o.f[1]);
            }
            goto out;
        }
        if (expect(in, &contacts[ncontacts], "C", C_FIELDS) != 0) {
            ncontacts++;
            goto out;
        }
    }
    if (write_order(fl, in, &o, lines, nlines, contacts) != 0) {
        (void)SQLEndTran(SQL_HANDLE_DBC, fl->dbc, SQL_ROLLBACK);
        errorf("%s:%lu: order %s was not written", in->path, o.lineno, o.f[1]);
        goto out;
    }
    SQLRETURN sr = SQLEndTran(SQL_HANDLE_DBC, fl->dbc, SQL_COMMIT);
    fl->statements++;
    if (!ok(sr)) {
        odbc_error(SQL_HANDLE_DBC, fl->dbc, "commit");
        (void)SQLEndTran(SQL_HANDLE_DBC, fl->dbc, SQL_ROLLBACK);
        goto out;
    }
    fl->orders++;
    ret = 1;
out:
    for (int c = 0; c < ncontacts && c < 2; c++) {
        record_free(&contacts[c]);
    }
    for (size_t i = 0; i < got && lines != NULL; i++) {
        record_free(&lines[i]);
    }
    free(lines);
    record_free(&o);
    return ret;
}

/* ---- connection ------------------------------------------------------------------ */

static int connect_db(struct floor *fl, const char *conn)
{
    SQLCHAR out[1024];
    SQLSMALLINT outlen = 0;
    if (!ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &fl->env))) {
        fl->env = SQL_NULL_HENV;
        errorf("cannot allocate an ODBC environment");
        return -1;
    }
    if (!ok(SQLSetEnvAttr(fl->env, SQL_ATTR_ODBC_VERSION, (SQLPOINTER)(uintptr_t)SQL_OV_ODBC3,
                          0))) {
        return odbc_error(SQL_HANDLE_ENV, fl->env, "ODBC version");
    }
    if (!ok(SQLAllocHandle(SQL_HANDLE_DBC, fl->env, &fl->dbc))) {
        fl->dbc = SQL_NULL_HDBC;
        return odbc_error(SQL_HANDLE_ENV, fl->env, "allocate a connection");
    }
    if (!ok(SQLDriverConnect(fl->dbc, NULL, (SQLCHAR *)(uintptr_t)conn, SQL_NTS, out, sizeof out,
                             &outlen, SQL_DRIVER_NOPROMPT))) {
        return odbc_error(SQL_HANDLE_DBC, fl->dbc, "connect");
    }
    fl->connected = true;
    if (!ok(SQLSetConnectAttr(fl->dbc, SQL_ATTR_AUTOCOMMIT,
                              (SQLPOINTER)(uintptr_t)SQL_AUTOCOMMIT_OFF, SQL_IS_UINTEGER))) {
        return odbc_error(SQL_HANDLE_DBC, fl->dbc, "autocommit off");
    }
    return 0;
}

static void disconnect(struct floor *fl)
{
    for (int i = 0; i < S_COUNT; i++) {
        if (fl->st[i].h != SQL_NULL_HSTMT) {
            SQLFreeHandle(SQL_HANDLE_STMT, fl->st[i].h);
        }
    }
    if (fl->connected) {
        (void)SQLEndTran(SQL_HANDLE_DBC, fl->dbc, SQL_ROLLBACK);
        SQLDisconnect(fl->dbc);
    }
    if (fl->dbc != SQL_NULL_HDBC) {
        SQLFreeHandle(SQL_HANDLE_DBC, fl->dbc);
    }
    if (fl->env != SQL_NULL_HENV) {
        SQLFreeHandle(SQL_HANDLE_ENV, fl->env);
    }
}

static void usage(void)
{
    fputs("usage: floor --conn ODBC-CONNECTION-STRING --in FLOOR-FILE\n"
          "Writes the rows of gen_orders.py --floor FILE with the fewest statements;\n"
          "prints orders, statements and seconds as JSON.\n",
          stderr);
}

int main(int argc, char **argv)
{
    struct floor fl;
    struct input in = {NULL, NULL, 0};
    const char *conn = NULL;
    struct timespec t0;
    struct timespec t1;
    char first[64];
    int code = 1;

    memset(&fl, 0, sizeof fl);
    fl.env = SQL_NULL_HENV;
    fl.dbc = SQL_NULL_HDBC;
    for (int i = 0; i < S_COUNT; i++) {
        fl.st[i].h = SQL_NULL_HSTMT;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conn") == 0 && i + 1 < argc) {
            conn = argv[++i];
        } else if (strcmp(argv[i], "--in") == 0 && i + 1 < argc) {
            in.path = argv[++i];
        } else {
            usage();
            return 64;
        }
    }
    if (conn == NULL || in.path == NULL) {
        usage();
        return 64;
    }
    in.fp = fopen(in.path, "r");
    if (in.fp == NULL) {
        errorf("cannot open %s: %s", in.path, strerror(errno));
        return 1;
    }
    if (fgets(first, sizeof first, in.fp) == NULL ||
        strncmp(first, FLOOR_MAGIC, strlen(FLOOR_MAGIC)) != 0) {
        errorf("%s is not a floor file (its first line is not \"%s\")", in.path, FLOOR_MAGIC);
        goto out;
    }
    in.lineno = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        fl.now.year = (SQLSMALLINT)(tm.tm_year + 1900);
        fl.now.month = (SQLUSMALLINT)(tm.tm_mon + 1);
        fl.now.day = (SQLUSMALLINT)tm.tm_mday;
        fl.now.hour = (SQLUSMALLINT)tm.tm_hour;
        fl.now.minute = (SQLUSMALLINT)tm.tm_min;
        fl.now.second = (SQLUSMALLINT)(tm.tm_sec > 59 ? 59 : tm.tm_sec);
    }
    fl.doc_id = FIRST_DOC_ID;
    if (connect_db(&fl, conn) != 0 || prepare_all(&fl) != 0) {
        goto out;
    }
    for (;;) {
        int rc = next_order(&fl, &in);
        if (rc < 0) {
            goto out;
        }
        if (rc == 0) {
            break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"orders\": %lu, \"applied\": %lu, \"invalid\": %lu, \"statements\": %lu,"
           " \"seconds\": %.6f}\n",
           fl.orders, fl.applied, fl.invalid, fl.statements, secs);
    code = 0;
out:
    disconnect(&fl);
    fclose(in.fp);
    return code;
}
