/*
 * ops.c — the operations commands (see ops.h): `health` (a Nagios plugin),
 * `status`, `orders`, `dlq` and `rollback`. Each reads the pipeline file
 * with config_load (no stage is loaded), connects with db_connect, and
 * prints for a person, or JSON with --json. The figures health and status
 * show come from metrics_snapshot (metrics.c), the same place the metrics
 * file reads them from.
 *
 * Every text read from the database is untrusted: it is printed with
 * control bytes and invalid UTF-8 escaped (\xNN) and cut to a fixed size.
 * Every value goes into SQL as a bound parameter; the only identifiers
 * chosen at run time are IM_INV quantity columns, taken from a fixed list.
 */
#include "cli/ops.h"

#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/host.h"
#include "engine/metrics.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

/* ---- command lines ------------------------------------------------------ */

static const char usage_health[] =
    "usage: cpbridge health PIPELINE [--json]\n"
    "\n"
    "Business health of the pipeline, as a Nagios/Icinga plugin: database\n"
    "reachable, pending orders (and how many are due), invalid and dead orders,\n"
    "the oldest pending order's age, the time since the last successful run and\n"
    "the last run's result, each against the pipeline's `health` thresholds.\n"
    "The first line is the plugin output (with performance data), details follow.\n"
    "\n"
    "  --json   print every figure and the status as JSON\n"
    "\n"
    "Exit: 0 OK, 1 WARNING, 2 CRITICAL (also: database unreachable), 3 UNKNOWN\n"
    "(pipeline file unreadable, schema missing, no run yet); 64 usage.\n";

static const char usage_status[] =
    "usage: cpbridge status PIPELINE [--json]\n"
    "\n"
    "Orders per state, the last 10 runs (start, duration, result, counts,\n"
    "orders/s), the dead-letter orders at a glance and the orders changed in the\n"
    "store after they were applied.\n"
    "\n"
    "  --json   print the same as JSON\n"
    "\n"
    "Exit: 0 ok; 64 usage; 66 no such pipeline file; 69 database unreachable;\n"
    "78 configuration error or schema missing.\n";

static const char usage_orders[] =
    "usage: cpbridge orders PIPELINE list [--state STATE] [--changed] [--limit N] [--json]\n"
    "       cpbridge orders PIPELINE show ID [--json]\n"
    "\n"
    "list   the newest orders first (default limit 50): id, source:external id,\n"
    "       order number, state, attempts, received, last error, document\n"
    "show   an order's whole story: header, lines, state, attempts, last error,\n"
    "       the Counterpoint document, after-commit steps done, inventory\n"
    "       changes, and every event in order\n"
    "\n"
    "ID is the staging id (a number) or SOURCE:EXTERNAL_ID (e.g. woo:1234).\n"
    "\n"
    "  --state STATE  only PENDING, APPLIED, INVALID, DEAD, CANCELLED or ROLLED_BACK\n"
    "  --changed      only orders the store changed after they were applied\n"
    "  --limit N      at most N orders (1..100000)\n"
    "  --json         print JSON\n"
    "\n"
    "Exit: 0 ok; 64 usage; 66 no such order; 69 database unreachable.\n";

static const char usage_dlq[] =
    "usage: cpbridge dlq PIPELINE list [--json]\n"
    "       cpbridge dlq PIPELINE show ID [--json]\n"
    "       cpbridge dlq PIPELINE retry ID... [--why TEXT]\n"
    "       cpbridge dlq PIPELINE retry --all [--reason CODE] [--why TEXT]\n"
    "       cpbridge dlq PIPELINE cancel ID... --why TEXT\n"
    "\n"
    "The dead-letter queue: DEAD orders (retries exhausted) and INVALID orders\n"
    "(held for review).\n"
    "\n"
    "list    the DEAD and INVALID orders with their last error\n"
    "show    one order's whole story (as `orders show`)\n"
    "retry   put DEAD, INVALID or ROLLED_BACK orders back to PENDING, due now,\n"
    "        attempts 0, error cleared (fix the cause first); for an APPLIED\n"
    "        order whose after-commit steps were given up, queue those steps\n"
    "        again (the order is never created twice)\n"
    "cancel  mark DEAD, INVALID, PENDING or ROLLED_BACK orders CANCELLED: they\n"
    "        are never processed again\n"
    "\n"
    "Each order changes in its own transaction together with its audit event\n"
    "(who: $SUDO_USER, $USER or the login name; why: --why).\n"
    "\n"
    "  --all          retry every DEAD and INVALID order\n"
    "  --reason CODE  with --all: only those whose last error code is CODE\n"
    "  --why TEXT     why, for the audit trail (required for cancel)\n"
    "  --json         list/show: print JSON\n"
    "\n"
    "Exit: 0 done; 64 usage; 65 an order's state does not allow it (nothing\n"
    "done to that order); 66 no such order (nothing done); 69 database\n"
    "unreachable.\n";

static const char usage_rollback[] =
    "usage: cpbridge rollback PIPELINE ID [--dry-run] [--force] [--why TEXT]\n"
    "\n"
    "Undo an APPLIED order in Counterpoint, in one transaction: delete the\n"
    "document cpbridge wrote (PS_DOC_NOTE, PS_DOC_PMT, PS_DOC_CONTACT,\n"
    "PS_DOC_HDR_MISC_CHRG, PS_DOC_HDR_TOT, PS_DOC_LIN, PS_DOC_HDR), subtract\n"
    "exactly the quantities it added to IM_INV, and mark the order ROLLED_BACK\n"
    "(`cpbridge dlq PIPELINE retry ID` applies it again). Refused for a\n"
    "document that is no longer open (posted or released), that was edited in\n"
    "Counterpoint since, or that cpbridge adopted instead of writing.\n"
    "docs/ROLLBACK.md explains when to use it.\n"
    "\n"
    "  --dry-run   print exactly what would change, and change nothing\n"
    "  --force     roll back a document edited in Counterpoint since (the edits\n"
    "              are lost), or whose inventory would go below zero\n"
    "  --why TEXT  why, for the audit trail\n"
    "\n"
    "Exit: 0 done; 64 usage; 65 refused (the message says why and what to do);\n"
    "66 no such order; 69 database unreachable.\n";

enum opt_bit {
    OPT_HELP = 1u << 0,
    OPT_JSON = 1u << 1,
    OPT_STATE = 1u << 2,
    OPT_CHANGED = 1u << 3,
    OPT_LIMIT = 1u << 4,
    OPT_ALL = 1u << 5,
    OPT_REASON = 1u << 6,
    OPT_WHY = 1u << 7,
    OPT_DRY_RUN = 1u << 8,
    OPT_FORCE = 1u << 9
};

struct verb;

struct opts {
    unsigned given; /* enum opt_bit */
    const char *state;
    const char *limit;
    const char *reason;
    const char *why;
    char **args; /* positional arguments after the verb (borrowed argv) */
    int nargs;
};

/* One command's state. */
struct ops {
    const struct verb *v;
    struct opts o;
    const char *path; /* the pipeline file as given */
    struct config *cfg;
    struct db *db;
    int64_t now;
};

struct verb {
    const char *name;
    const char *usage;
    unsigned allowed; /* enum opt_bit */
    int (*run)(struct ops *op);
};

static const struct option long_opts[] = {{"help", no_argument, NULL, 'h'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"state", required_argument, NULL, 's'},
                                          {"changed", no_argument, NULL, 'c'},
                                          {"limit", required_argument, NULL, 'l'},
                                          {"all", no_argument, NULL, 'a'},
                                          {"reason", required_argument, NULL, 'r'},
                                          {"why", required_argument, NULL, 'w'},
                                          {"dry-run", no_argument, NULL, 'n'},
                                          {"force", no_argument, NULL, 'f'},
                                          {NULL, 0, NULL, 0}};

static int usage_error(const struct verb *v, const char *fmt, ...) CPB_PRINTF(2, 3);
static int usage_error(const struct verb *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge %s: ", v->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", v->usage);
    va_end(ap);
    return CPB_EXIT_USAGE;
}

/* Print "cpbridge VERB: message" on stderr and return `code`. */
static int fail(const struct ops *op, int code, const char *fmt, ...) CPB_PRINTF(3, 4);
static int fail(const struct ops *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge %s: ", op->v->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static int parse_opts(const struct verb *v, int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    optind = 0; /* GNU: start over (ops_main may run more than once) */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", long_opts, NULL);
        unsigned bit = 0;
        if (c == -1) {
            break;
        }
        switch (c) {
        case 'h':
            bit = OPT_HELP;
            break;
        case 'j':
            bit = OPT_JSON;
            break;
        case 's':
            bit = OPT_STATE;
            o->state = optarg;
            break;
        case 'c':
            bit = OPT_CHANGED;
            break;
        case 'l':
            bit = OPT_LIMIT;
            o->limit = optarg;
            break;
        case 'a':
            bit = OPT_ALL;
            break;
        case 'r':
            bit = OPT_REASON;
            o->reason = optarg;
            break;
        case 'w':
            bit = OPT_WHY;
            o->why = optarg;
            break;
        case 'n':
            bit = OPT_DRY_RUN;
            break;
        case 'f':
            bit = OPT_FORCE;
            break;
        case ':':
            return usage_error(v, "option %s needs a value", argv[optind - 1]);
        default:
            return usage_error(v, "unknown option %s", argv[optind - 1]);
        }
        if ((v->allowed & bit) == 0) {
            return usage_error(v, "option %s does not apply to `cpbridge %s`", argv[optind - 1],
                               v->name);
        }
        o->given |= bit;
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    return 0;
}

/* ---- text from the database -------------------------------------------- */

/* Length of the valid UTF-8 character at p (2..4 bytes), 0 when invalid. */
static size_t utf8_char(const unsigned char *p)
{
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
    for (size_t i = 1; i < len; i++) {
        if (p[i] == '\0') {
            return 0;
        }
    }
    return len > 0 && text_utf8_valid((const char *)p, len) ? len : 0;
}

/*
 * Copy untrusted text `s` into out[n] so a terminal shows it as text:
 * control bytes (C0, DEL and C1) and bytes that are not valid UTF-8 become
 * "\xNN"; the copy is cut between characters to fit. NULL gives "".
 */
static void clean(const char *s, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0) {
        return;
    }
    out[0] = '\0';
    if (s == NULL) {
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        char piece[8];
        size_t plen = 0;
        size_t adv = 1;
        size_t clen = *p >= 0x80 ? utf8_char(p) : 0;
        bool c1 = clen == 2 && p[0] == 0xc2 && p[1] < 0xa0;
        if (*p >= 0x20 && *p < 0x7f) {
            piece[0] = (char)*p;
            plen = 1;
        } else if (clen > 0 && !c1) {
            memcpy(piece, p, clen);
            plen = clen;
            adv = clen;
        } else {
            snprintf(piece, sizeof piece, "\\x%02x", (unsigned)*p);
            plen = 4;
        }
        if (o + plen >= n) {
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        p += adv;
    }
    out[o] = '\0';
}

/* A JSON string of cleaned text, or null. New reference. */
static json_t *jtext(const char *cleaned, bool is_null)
{
    if (is_null || cleaned == NULL) {
        return json_null();
    }
    json_t *s = json_string(cleaned);
    return s != NULL ? s : json_string("");
}

/* A UTC time as "YYYY-MM-DDTHH:MM:SSZ", or "-" when there is none. */
static const char *fmt_when(int64_t ms, bool has, char *out, size_t n)
{
    if (!has || text_format_time(ms, out, n > 1 ? n - 1 : n) < 0) {
        snprintf(out, n, "-");
        return out;
    }
    size_t len = strlen(out);
    if (len + 1 < n) {
        out[len] = 'Z';
        out[len + 1] = '\0';
    }
    return out;
}

static json_t *jwhen(int64_t ms, bool has)
{
    char t[40];
    if (!has) {
        return json_null();
    }
    return json_string(fmt_when(ms, true, t, sizeof t));
}

/* A duration for people: "45s", "12m", "5h", "3d". */
static const char *fmt_age(int64_t ms, char *out, size_t n)
{
    int64_t s = ms > 0 ? ms / 1000 : 0;
    if (s < 120) {
        snprintf(out, n, "%llds", (long long)s);
    } else if (s < 120 * 60) {
        snprintf(out, n, "%lldm", (long long)(s / 60));
    } else if (s < 48 * 3600) {
        snprintf(out, n, "%lldh", (long long)(s / 3600));
    } else {
        snprintf(out, n, "%lldd", (long long)(s / 86400));
    }
    return out;
}

/* Ten-thousandths with `decimals` places. */
static const char *fmt_dec(int64_t v, int decimals, char *out, size_t n)
{
    if (text_format_decimal(v, decimals, out, n) < 0) {
        snprintf(out, n, "?");
    }
    return out;
}

static json_t *jdec(int64_t v, bool is_null)
{
    char t[48];
    if (is_null) {
        return json_null();
    }
    return json_string(fmt_dec(v, 4, t, sizeof t));
}

/* Row reader: reads columns in order; after the first failure it does
 * nothing and keeps the status. */
struct rd {
    struct cpb_stmt *st;
    enum cpb_status rc;
    unsigned col;
};

static void rd_text(struct rd *r, char *out, size_t n, bool *is_null)
{
    const char *v = NULL;
    unsigned col = ++r->col;
    out[0] = '\0';
    if (is_null != NULL) {
        *is_null = true;
    }
    if (r->rc != CPB_OK) {
        return;
    }
    r->rc = db_col_text(r->st, col, &v);
    if (r->rc == CPB_OK && v != NULL) {
        clean(v, out, n);
        if (is_null != NULL) {
            *is_null = false;
        }
    }
}

/* The raw text (new, free()) for values that go back into SQL. */
static void rd_raw(struct rd *r, char **out)
{
    const char *v = NULL;
    unsigned col = ++r->col;
    *out = NULL;
    if (r->rc != CPB_OK) {
        return;
    }
    r->rc = db_col_text(r->st, col, &v);
    if (r->rc == CPB_OK) {
        *out = strdup(v != NULL ? v : "");
        if (*out == NULL) {
            r->rc = CPB_FAIL;
        }
    }
}

static void rd_int(struct rd *r, int64_t *v, bool *is_null)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_int(r->st, col, v, &null);
    }
    if (null) {
        *v = 0;
    }
    if (is_null != NULL) {
        *is_null = null;
    }
}

static void rd_dec(struct rd *r, int64_t *v, bool *is_null)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_decimal(r->st, col, v, &null);
    }
    if (null) {
        *v = 0;
    }
    if (is_null != NULL) {
        *is_null = null;
    }
}

static void rd_time(struct rd *r, int64_t *v, bool *has)
{
    bool null = true;
    unsigned col = ++r->col;
    *v = 0;
    if (r->rc == CPB_OK) {
        r->rc = db_col_time(r->st, col, v, &null);
    }
    *has = r->rc == CPB_OK && !null;
}

/*
 * "SELECT cols rest" with at most `limit` rows, the dialect's way: LIMIT ?
 * at the end, or TOP (?) on SQL Server. `args` (n <= 7) are bound in order
 * around the limit. On CPB_OK *st is ready for db_fetch.
 */
static enum cpb_status query_limited(struct db *db, const char *cols, const char *rest,
                                     const struct sql_arg *args, size_t n, int64_t limit,
                                     struct cpb_stmt **st)
{
    struct buf sql = BUF_INIT;
    struct sql_arg a[8];
    enum cpb_status rc = CPB_FAIL;
    *st = NULL;
    if (n + 1 > sizeof a / sizeof a[0]) {
        return CPB_FAIL;
    }
    if (db_get_dialect(db) == DB_MSSQL) {
        buf_addf(&sql, "SELECT TOP (?) %s %s", cols, rest);
        a[0] = sql_int(limit);
        if (n > 0) {
            memcpy(a + 1, args, n * sizeof a[0]);
        }
    } else {
        buf_addf(&sql, "SELECT %s %s LIMIT ?", cols, rest);
        if (n > 0) {
            memcpy(a, args, n * sizeof a[0]);
        }
        a[n] = sql_int(limit);
    }
    if (!sql.oom) {
        rc = sql_query(db, buf_str(&sql), a, n + 1, st);
    }
    buf_free(&sql);
    return rc;
}

/* ---- connecting ---------------------------------------------------------- */

/* Read the pipeline file and connect to its database with the schema
 * checked. Returns 0, or -1 with err (CPB_EXIT_NOINPUT, CPB_EXIT_CONFIG,
 * CPB_EXIT_UNAVAILABLE); *schema_old tells a missing or old schema. */
static int ops_connect(struct ops *op, bool *schema_old, struct err *err)
{
    enum db_dialect d;
    int version = 0;
    *schema_old = false;
    if (config_load(op->path, &op->cfg, err) != 0) {
        return -1;
    }
    if (db_dialect_parse(op->cfg->database.dialect, &d) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: unknown database dialect", op->path);
    }
    if (db_connect(op->cfg->database.connection, d, op->cfg->database.login_timeout_ms, &op->db,
                   err) != 0) {
        return -1;
    }
    if (schema_current(op->db, &version, err) != 0) {
        return -1;
    }
    if (version < schema_latest(d)) {
        *schema_old = true;
        return err_set(err, CPB_EXIT_CONFIG,
                       "the database's cpbridge schema is at version %d, this cpbridge needs %d:"
                       " run `cpbridge db init %s` first",
                       version, schema_latest(d), op->path);
    }
    op->now = host_now_ms();
    return 0;
}

/* Connect for the commands other than health; prints the failure. */
static int open_or_fail(struct ops *op)
{
    struct err e = {0};
    bool old = false;
    if (ops_connect(op, &old, &e) != 0) {
        char msg[sizeof e.msg];
        clean(e.msg, msg, sizeof msg);
        return fail(op, e.code != 0 ? e.code : CPB_EXIT_SOFTWARE, "%s", msg);
    }
    return 0;
}

/* A failed statement: CPB_EXIT_UNAVAILABLE with the database's message. */
static int db_failed(const struct ops *op, const char *what)
{
    char msg[1024];
    clean(db_last_error(op->db), msg, sizeof msg);
    return fail(op, CPB_EXIT_UNAVAILABLE, "%s: %s", what, msg[0] != '\0' ? msg : "failed");
}

static void print_json(json_t *j)
{
    if (j != NULL) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    }
}

/* ---- one order ----------------------------------------------------------- */

#define ORDER_COLS                                                                                 \
    "STAGING_ID, SOURCE, EXT_ORDER_ID, ORDER_NO, STATUS, STORE_STATUS, CUST_EMAIL,"                \
    " WOO_CUSTOMER_ID, BILL_NAM, CURRENCY, ORDER_TOTAL, ORDER_DT, MODIFIED_DT, ATTEMPTS,"          \
    " NEXT_ATTEMPT_DT, LEASE_OWNER, LEASE_UNTIL, LAST_ERROR_CODE, LAST_ERROR, CP_DOC_ID,"          \
    " CP_TKT_NO, CP_ADOPTED, AFTER_PENDING, AFTER_ATTEMPTS, CHANGED_AFTER_APPLY, RECEIVED_DT,"     \
    " UPDATED_DT, APPLIED_DT"

/* A staging row, cleaned for printing. */
struct order_row {
    int64_t id;
    char source[200];
    char ext[200];
    char order_no[200];
    bool order_no_null;
    char status[64];
    char store_status[200];
    bool store_status_null;
    char email[300];
    bool email_null;
    int64_t customer;
    bool customer_null;
    char bill_nam[300];
    bool bill_nam_null;
    char currency[32];
    bool currency_null;
    int64_t total;
    bool total_null;
    int64_t order_dt, modified_dt;
    bool has_order_dt, has_modified_dt;
    int64_t attempts;
    int64_t next_attempt;
    bool has_next_attempt;
    char lease_owner[300];
    int64_t lease_until;
    bool has_lease;
    char err_code[200];
    bool err_code_null;
    char err_msg[2100];
    bool err_msg_null;
    int64_t doc_id; /* 0: none */
    char tkt_no[100];
    bool tkt_no_null;
    int64_t adopted;
    int64_t after_pending;
    int64_t after_attempts;
    int64_t changed;
    int64_t received, updated, applied;
    bool has_received, has_updated, has_applied;
};

static enum cpb_status read_order(struct cpb_stmt *st, struct order_row *o)
{
    struct rd r = {st, CPB_OK, 0};
    bool null = false;
    rd_int(&r, &o->id, NULL);
    rd_text(&r, o->source, sizeof o->source, NULL);
    rd_text(&r, o->ext, sizeof o->ext, NULL);
    rd_text(&r, o->order_no, sizeof o->order_no, &o->order_no_null);
    rd_text(&r, o->status, sizeof o->status, NULL);
    rd_text(&r, o->store_status, sizeof o->store_status, &o->store_status_null);
    rd_text(&r, o->email, sizeof o->email, &o->email_null);
    rd_int(&r, &o->customer, &o->customer_null);
    rd_text(&r, o->bill_nam, sizeof o->bill_nam, &o->bill_nam_null);
    rd_text(&r, o->currency, sizeof o->currency, &o->currency_null);
    rd_dec(&r, &o->total, &o->total_null);
    rd_time(&r, &o->order_dt, &o->has_order_dt);
    rd_time(&r, &o->modified_dt, &o->has_modified_dt);
    rd_int(&r, &o->attempts, NULL);
    rd_time(&r, &o->next_attempt, &o->has_next_attempt);
    rd_text(&r, o->lease_owner, sizeof o->lease_owner, NULL);
    rd_time(&r, &o->lease_until, &o->has_lease);
    rd_text(&r, o->err_code, sizeof o->err_code, &o->err_code_null);
    rd_text(&r, o->err_msg, sizeof o->err_msg, &o->err_msg_null);
    rd_int(&r, &o->doc_id, &null);
    rd_text(&r, o->tkt_no, sizeof o->tkt_no, &o->tkt_no_null);
    rd_int(&r, &o->adopted, NULL);
    rd_int(&r, &o->after_pending, NULL);
    rd_int(&r, &o->after_attempts, NULL);
    rd_int(&r, &o->changed, NULL);
    rd_time(&r, &o->received, &o->has_received);
    rd_time(&r, &o->updated, &o->has_updated);
    rd_time(&r, &o->applied, &o->has_applied);
    return r.rc;
}

/* Load one staging row: CPB_SKIP when it does not exist. */
static enum cpb_status load_order(struct db *db, int64_t id, struct order_row *o)
{
    struct cpb_stmt *st = NULL;
    memset(o, 0, sizeof *o);
    enum cpb_status rc =
        sql_query(db, "SELECT " ORDER_COLS " FROM USER_ORDER_STAGING WHERE STAGING_ID = ?",
                  (struct sql_arg[]){sql_int(id)}, 1, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_OK) {
        rc = read_order(st, o);
    }
    db_finalize(st);
    return rc;
}

/* True while a runner holds the order's lease. */
static bool lease_live(const struct order_row *o, int64_t now)
{
    return o->has_lease && o->lease_until > now;
}

/* "12 (woo:1234)" */
static const char *order_label(const struct order_row *o, char *out, size_t n)
{
    snprintf(out, n, "%lld (%s:%s)", (long long)o->id, o->source, o->ext);
    return out;
}

static json_t *order_json(const struct order_row *o, int64_t now)
{
    json_t *j = json_object();
    if (j == NULL) {
        return NULL;
    }
    json_object_set_new(j, "id", json_integer((json_int_t)o->id));
    json_object_set_new(j, "source", jtext(o->source, false));
    json_object_set_new(j, "external_id", jtext(o->ext, false));
    json_object_set_new(j, "order_no", jtext(o->order_no, o->order_no_null));
    json_object_set_new(j, "state", jtext(o->status, false));
    json_object_set_new(j, "store_status", jtext(o->store_status, o->store_status_null));
    json_object_set_new(j, "email", jtext(o->email, o->email_null));
    json_object_set_new(j, "store_customer_id",
                        o->customer_null ? json_null() : json_integer((json_int_t)o->customer));
    json_object_set_new(j, "bill_name", jtext(o->bill_nam, o->bill_nam_null));
    json_object_set_new(j, "currency", jtext(o->currency, o->currency_null));
    json_object_set_new(j, "total", jdec(o->total, o->total_null));
    json_object_set_new(j, "ordered", jwhen(o->order_dt, o->has_order_dt));
    json_object_set_new(j, "modified", jwhen(o->modified_dt, o->has_modified_dt));
    json_object_set_new(j, "attempts", json_integer((json_int_t)o->attempts));
    json_object_set_new(j, "next_attempt", jwhen(o->next_attempt, o->has_next_attempt));
    json_object_set_new(j, "lease_owner",
                        lease_live(o, now) ? jtext(o->lease_owner, false) : json_null());
    json_object_set_new(j, "lease_until", jwhen(o->lease_until, lease_live(o, now)));
    json_object_set_new(j, "last_error_code", jtext(o->err_code, o->err_code_null));
    json_object_set_new(j, "last_error", jtext(o->err_msg, o->err_msg_null));
    json_object_set_new(j, "cp_doc_id",
                        o->doc_id != 0 ? json_integer((json_int_t)o->doc_id) : json_null());
    json_object_set_new(j, "cp_tkt_no", jtext(o->tkt_no, o->tkt_no_null));
    json_object_set_new(j, "cp_adopted", json_boolean(o->adopted != 0));
    json_object_set_new(j, "after_pending", json_integer((json_int_t)o->after_pending));
    json_object_set_new(j, "after_attempts", json_integer((json_int_t)o->after_attempts));
    json_object_set_new(j, "changed_after_apply", json_boolean(o->changed != 0));
    json_object_set_new(j, "received", jwhen(o->received, o->has_received));
    json_object_set_new(j, "updated", jwhen(o->updated, o->has_updated));
    json_object_set_new(j, "applied", jwhen(o->applied, o->has_applied));
    return j;
}

/*
 * Resolve ID (a staging id, or SOURCE:EXTERNAL_ID) to a staging id.
 * Returns 0, CPB_EXIT_USAGE, CPB_EXIT_NOINPUT or CPB_EXIT_UNAVAILABLE
 * (message printed).
 */
static int resolve_id(struct ops *op, const char *text, int64_t *id)
{
    int64_t v = 0;
    char shown[200];
    enum cpb_status rc;
    clean(text, shown, sizeof shown);
    if (!text_utf8_valid(text, strlen(text))) {
        return usage_error(op->v, "order id '%s' is not valid UTF-8", shown);
    }
    const char *colon = strchr(text, ':');
    if (text_parse_int(text, &v) == 0) {
        if (v <= 0) {
            return usage_error(op->v, "order id '%s': a staging id is a positive number", shown);
        }
        rc = sql_query_int(op->db, "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STAGING_ID = ?",
                           (struct sql_arg[]){sql_int(v)}, 1, id, NULL);
    } else if (colon != NULL && colon != text && colon[1] != '\0') {
        size_t slen = (size_t)(colon - text);
        char *source = malloc(slen + 1);
        if (source == NULL) {
            return fail(op, CPB_EXIT_SOFTWARE, "out of memory");
        }
        memcpy(source, text, slen);
        source[slen] = '\0';
        rc = sql_query_int(op->db,
                           "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE SOURCE = ?"
                           " AND EXT_ORDER_ID = ?",
                           (struct sql_arg[]){sql_text(source), sql_text(colon + 1)}, 2, id, NULL);
        free(source);
    } else {
        return usage_error(op->v,
                           "order id '%s': give the staging id (a number) or"
                           " SOURCE:EXTERNAL_ID (e.g. woo:1234)",
                           shown);
    }
    if (rc == CPB_SKIP) {
        return fail(op, CPB_EXIT_NOINPUT,
                    "no order '%s' in this database (see `cpbridge orders %s list`)", shown,
                    op->path);
    }
    if (rc != CPB_OK) {
        return db_failed(op, "looking up the order");
    }
    return 0;
}

/* ---- health ---------------------------------------------------------------- */

enum nagios { NAG_OK = 0, NAG_WARNING = 1, NAG_CRITICAL = 2, NAG_UNKNOWN = 3 };
static const char *const nag_names[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

/* CRITICAL > WARNING > UNKNOWN > OK. */
static int nag_worse(int a, int b)
{
    static const int rank[] = {0, 2, 3, 1};
    return rank[b] > rank[a] ? b : a;
}

/* A value against warn/crit thresholds (0: that threshold is off). */
static int against(int64_t v, int64_t warn, int64_t crit)
{
    if (crit > 0 && v >= crit) {
        return NAG_CRITICAL;
    }
    if (warn > 0 && v >= warn) {
        return NAG_WARNING;
    }
    return NAG_OK;
}

/* " (>= warn 50)" after a figure that is not OK. */
static void mark(struct buf *b, int state, const char *warn, const char *crit)
{
    if (state == NAG_WARNING) {
        buf_addf(b, " (>= warn %s)", warn);
    } else if (state == NAG_CRITICAL) {
        buf_addf(b, " (>= crit %s)", crit);
    }
}

/* Output of a health check that stopped early: one plugin line. */
static int health_early(const struct ops *op, int state, const char *what, const char *msg)
{
    char m[1100];
    clean(msg, m, sizeof m);
    if ((op->o.given & OPT_JSON) != 0) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:s}", "status", nag_names[state], "code", state,
                              "problem", what, "message", m);
        if (j != NULL && op->cfg != NULL) {
            json_object_set_new(j, "pipeline", jtext(op->cfg->name, false));
        }
        if (j != NULL) {
            json_object_set_new(j, "database_reachable",
                                state == NAG_CRITICAL ? json_false() : json_null());
        }
        print_json(j);
        json_decref(j);
    } else {
        printf("CPBRIDGE %s - %s: %s\n", nag_names[state], what, m);
    }
    return state;
}

struct check {
    const char *name;
    int64_t value;
    bool known;
    int64_t warn, crit;
    const char *unit; /* "" or "s" */
    int state;
};

static void perf(struct buf *b, const struct check *c, bool thresholds)
{
    buf_addf(b, " %s=", c->name);
    if (c->known) {
        buf_addf(b, "%lld%s", (long long)c->value, c->unit);
    } else {
        buf_adds(b, "U");
    }
    if (thresholds) {
        buf_adds(b, ";");
        if (c->warn > 0) {
            buf_addf(b, "%lld", (long long)c->warn);
        }
        buf_adds(b, ";");
        if (c->crit > 0) {
            buf_addf(b, "%lld", (long long)c->crit);
        }
    }
}

static json_t *check_json(const struct check *c)
{
    return json_pack("{s:s, s:o, s:o, s:o, s:s}", "name", c->name, "value",
                     c->known ? json_integer((json_int_t)c->value) : json_null(), "warn",
                     c->warn > 0 ? json_integer((json_int_t)c->warn) : json_null(), "crit",
                     c->crit > 0 ? json_integer((json_int_t)c->crit) : json_null(), "status",
                     nag_names[c->state]);
}

static int cmd_health(struct ops *op)
{
    struct err e = {0};
    bool schema_old = false;
    struct metrics_snapshot s;
    struct buf line = BUF_INIT;
    struct buf perfdata = BUF_INIT;
    char a[64];
    char w[64];
    char c[64];
    int state = NAG_OK;

    if (op->o.nargs != 1) {
        return usage_error(op->v, "give exactly one pipeline file");
    }
    op->path = op->o.args[0];
    if (ops_connect(op, &schema_old, &e) != 0) {
        if (op->cfg == NULL) {
            return health_early(op, NAG_UNKNOWN, "cannot read the pipeline file", e.msg);
        }
        if (op->db == NULL) {
            if (e.code == CPB_EXIT_UNAVAILABLE) {
                return health_early(op, NAG_CRITICAL, "database unreachable", e.msg);
            }
            return health_early(op, NAG_UNKNOWN, "pipeline file", e.msg);
        }
        if (schema_old) {
            return health_early(op, NAG_UNKNOWN, "schema not ready", e.msg);
        }
        return health_early(op, NAG_CRITICAL, "database failing", e.msg);
    }
    if (metrics_snapshot(op->db, op->cfg->name, op->now, &s, &e) != 0) {
        return health_early(op, NAG_CRITICAL, "database failing", e.msg);
    }

    const struct config_health *h = &op->cfg->health;
    struct check pending = {"pending", s.by_state[0], true, h->pending_warn, h->pending_crit,
                            "",        NAG_OK};
    struct check due = {"due", s.pending_due, true, 0, 0, "", NAG_OK};
    struct check invalid = {"invalid", s.by_state[2], true, h->invalid_warn, h->invalid_crit,
                            "",        NAG_OK};
    struct check dead = {"dead", s.by_state[3], true, h->dead_warn, h->dead_crit, "", NAG_OK};
    struct check oldest = {"oldest_pending",
                           s.has_pending && s.now_ms > s.oldest_pending_ms
                               ? (s.now_ms - s.oldest_pending_ms) / 1000
                               : 0,
                           true,
                           h->oldest_pending_warn_ms / 1000,
                           h->oldest_pending_crit_ms / 1000,
                           "s",
                           NAG_OK};
    struct check success = {
        "last_success",
        s.has_success && s.now_ms > s.last_success_ms ? (s.now_ms - s.last_success_ms) / 1000 : 0,
        s.has_success,
        h->last_success_warn_ms / 1000,
        h->last_success_crit_ms / 1000,
        "s",
        NAG_OK};
    struct check after_failed = {"after_failed", s.after_gave_up, true, 0, 0, "", NAG_OK};
    struct check changed = {"changed", s.changed_after_apply, true, 0, 0, "", NAG_OK};

    pending.state = against(pending.value, pending.warn, pending.crit);
    invalid.state = against(invalid.value, invalid.warn, invalid.crit);
    dead.state = against(dead.value, dead.warn, dead.crit);
    oldest.state = against(oldest.value, oldest.warn, oldest.crit);
    const char *no_success = NULL;
    if (s.has_success) {
        success.state = against(success.value, success.warn, success.crit);
    } else if (s.total == 0) {
        success.state = NAG_UNKNOWN;
        no_success = s.has_run ? "no successful run yet, nothing staged" : "no run yet";
    } else if (s.has_run && strcmp(s.last_result, "RUNNING") == 0 &&
               s.now_ms - s.last_run_started_ms < h->last_success_warn_ms) {
        success.state = NAG_UNKNOWN;
        no_success = "first run in progress";
    } else {
        success.state = NAG_CRITICAL;
        no_success = "orders staged but no run has succeeded yet";
    }
    bool last_failed = s.has_run && strcmp(s.last_result, "FAILED") == 0;
    int last_state = last_failed ? NAG_WARNING : NAG_OK;

    state = nag_worse(state, pending.state);
    state = nag_worse(state, invalid.state);
    state = nag_worse(state, dead.state);
    state = nag_worse(state, oldest.state);
    state = nag_worse(state, success.state);
    state = nag_worse(state, last_state);

    /* The plugin line. */
    buf_addf(&line, "CPBRIDGE %s - %lld pending", nag_names[state], (long long)pending.value);
    snprintf(w, sizeof w, "%lld", (long long)pending.warn);
    snprintf(c, sizeof c, "%lld", (long long)pending.crit);
    mark(&line, pending.state, w, c);
    buf_addf(&line, ", %lld dead", (long long)dead.value);
    snprintf(w, sizeof w, "%lld", (long long)dead.warn);
    snprintf(c, sizeof c, "%lld", (long long)dead.crit);
    mark(&line, dead.state, w, c);
    buf_addf(&line, ", %lld invalid", (long long)invalid.value);
    snprintf(w, sizeof w, "%lld", (long long)invalid.warn);
    snprintf(c, sizeof c, "%lld", (long long)invalid.crit);
    mark(&line, invalid.state, w, c);
    if (oldest.state != NAG_OK) {
        buf_addf(&line, ", oldest pending %s", fmt_age(oldest.value * 1000, a, sizeof a));
        text_format_duration(h->oldest_pending_warn_ms, w, sizeof w);
        text_format_duration(h->oldest_pending_crit_ms, c, sizeof c);
        mark(&line, oldest.state, w, c);
    }
    if (s.has_success) {
        buf_addf(&line, ", last success %s ago", fmt_age(success.value * 1000, a, sizeof a));
        text_format_duration(h->last_success_warn_ms, w, sizeof w);
        text_format_duration(h->last_success_crit_ms, c, sizeof c);
        mark(&line, success.state, w, c);
    } else {
        buf_addf(&line, ", %s", no_success);
    }
    if (last_failed) {
        buf_adds(&line, ", last run FAILED");
    }
    perf(&perfdata, &pending, true);
    perf(&perfdata, &due, false);
    perf(&perfdata, &invalid, true);
    perf(&perfdata, &dead, true);
    perf(&perfdata, &oldest, true);
    perf(&perfdata, &success, true);
    perf(&perfdata, &after_failed, false);
    perf(&perfdata, &changed, false);

    if ((op->o.given & OPT_JSON) != 0) {
        json_t *j = json_object();
        json_t *counts = json_object();
        json_t *checks = json_array();
        for (int i = 0; i < METRICS_N_STATES; i++) {
            json_object_set_new(counts, metrics_states[i], json_integer((json_int_t)s.by_state[i]));
        }
        const struct check *all[] = {&pending, &invalid, &dead, &oldest, &success};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            json_array_append_new(checks, check_json(all[i]));
        }
        json_object_set_new(j, "status", json_string(nag_names[state]));
        json_object_set_new(j, "code", json_integer(state));
        json_object_set_new(j, "summary", json_string(buf_str(&line) + strlen("CPBRIDGE ")));
        json_object_set_new(j, "pipeline", jtext(op->cfg->name, false));
        json_object_set_new(j, "database_reachable", json_true());
        json_object_set_new(j, "dialect", json_string(op->cfg->database.dialect));
        json_object_set_new(j, "time", jwhen(s.now_ms, true));
        json_object_set_new(j, "orders", counts);
        json_object_set_new(j, "total", json_integer((json_int_t)s.total));
        json_object_set_new(j, "pending", json_integer((json_int_t)pending.value));
        json_object_set_new(j, "pending_due", json_integer((json_int_t)s.pending_due));
        json_object_set_new(j, "invalid", json_integer((json_int_t)invalid.value));
        json_object_set_new(j, "dead", json_integer((json_int_t)dead.value));
        json_object_set_new(j, "after_due", json_integer((json_int_t)s.after_due));
        json_object_set_new(j, "after_failed", json_integer((json_int_t)s.after_gave_up));
        json_object_set_new(j, "changed_after_apply",
                            json_integer((json_int_t)s.changed_after_apply));
        json_object_set_new(j, "oldest_pending", jwhen(s.oldest_pending_ms, s.has_pending));
        json_object_set_new(j, "oldest_pending_age_seconds",
                            s.has_pending ? json_integer((json_int_t)oldest.value) : json_null());
        json_object_set_new(j, "last_success", jwhen(s.last_success_ms, s.has_success));
        json_object_set_new(j, "last_success_age_seconds",
                            s.has_success ? json_integer((json_int_t)success.value) : json_null());
        if (s.has_run) {
            json_object_set_new(
                j, "last_run",
                json_pack("{s:o, s:o, s:o, s:o}", "result", jtext(s.last_result, false), "started",
                          jwhen(s.last_run_started_ms, true), "ended",
                          jwhen(s.last_run_ended_ms, s.last_run_ended), "exit_code",
                          s.last_exit_code >= 0 ? json_integer(s.last_exit_code) : json_null()));
        } else {
            json_object_set_new(j, "last_run", json_null());
        }
        json_object_set_new(j, "checks", checks);
        json_object_set_new(j, "perfdata", json_string(buf_str(&perfdata) + 1));
        print_json(j);
        json_decref(j);
        goto out;
    }

    printf("%s |%s\n", buf_str(&line), buf_str(&perfdata));
    printf("pipeline %s, database reachable (%s)\n", op->cfg->name, op->cfg->database.dialect);
    printf("pending: %lld (%lld due now) - %s\n", (long long)pending.value,
           (long long)s.pending_due, nag_names[pending.state]);
    if (s.has_pending) {
        printf("oldest pending: received %s ago - %s\n", fmt_age(oldest.value * 1000, a, sizeof a),
               nag_names[oldest.state]);
    } else {
        printf("oldest pending: none - OK\n");
    }
    printf("invalid: %lld - %s\n", (long long)invalid.value, nag_names[invalid.state]);
    printf("dead: %lld - %s\n", (long long)dead.value, nag_names[dead.state]);
    printf("after-commit steps given up: %lld; changed in the store after apply: %lld\n",
           (long long)s.after_gave_up, (long long)s.changed_after_apply);
    if (s.has_success) {
        printf("last success: %s (%s ago) - %s\n", fmt_when(s.last_success_ms, true, w, sizeof w),
               fmt_age(success.value * 1000, a, sizeof a), nag_names[success.state]);
    } else {
        printf("last success: never (%s) - %s\n", no_success, nag_names[success.state]);
    }
    if (s.has_run) {
        printf("last run: %s, started %s\n", s.last_result,
               fmt_when(s.last_run_started_ms, true, w, sizeof w));
    }
    if (invalid.value + dead.value > 0) {
        printf("next: cpbridge dlq %s list\n", op->path);
    }
out:
    buf_free(&line);
    buf_free(&perfdata);
    return state;
}

/* ---- status ---------------------------------------------------------------- */

#define RUN_COLS                                                                                   \
    "STARTED_DT, ENDED_DT, DURATION_MS, RESULT, EXIT_CODE, N_STAGED, N_CLAIMED, N_APPLIED,"        \
    " N_RETRY, N_INVALID, N_DEAD, N_AFTER_DONE, N_AFTER_FAILED, HOST_NAM, RUN_ID"

struct run_row {
    int64_t started, ended, duration;
    bool has_started, has_ended, duration_null;
    char result[32];
    int64_t exit_code;
    bool exit_null;
    int64_t n[8]; /* staged, claimed, applied, retry, invalid, dead, after_done, after_failed */
    char host[200];
    char run_id[100];
};

static enum cpb_status read_run(struct cpb_stmt *st, struct run_row *r)
{
    struct rd d = {st, CPB_OK, 0};
    rd_time(&d, &r->started, &r->has_started);
    rd_time(&d, &r->ended, &r->has_ended);
    rd_int(&d, &r->duration, &r->duration_null);
    rd_text(&d, r->result, sizeof r->result, NULL);
    rd_int(&d, &r->exit_code, &r->exit_null);
    for (int i = 0; i < 8; i++) {
        rd_int(&d, &r->n[i], NULL);
    }
    rd_text(&d, r->host, sizeof r->host, NULL);
    rd_text(&d, r->run_id, sizeof r->run_id, NULL);
    return d.rc;
}

/* Applied orders per second, as text with two decimals ("-" without a
 * duration). Integer arithmetic: exact and without double. */
static const char *fmt_rate(int64_t applied, int64_t duration_ms, char *out, size_t n)
{
    if (duration_ms <= 0) {
        snprintf(out, n, "-");
        return out;
    }
    int64_t centi = applied * 100000 / duration_ms;
    snprintf(out, n, "%lld.%02lld", (long long)(centi / 100), (long long)(centi % 100));
    return out;
}

/* The DEAD/INVALID list (dlq list) or the changed-after-apply list;
 * limit < 0: all. Prints or appends to `arr`. Returns 0 or an exit code. */
static int order_list(struct ops *op, const char *where, const struct sql_arg *args, size_t n,
                      int64_t limit, json_t *arr, const char *empty)
{
    struct cpb_stmt *st = NULL;
    struct order_row o;
    struct buf rest = BUF_INIT;
    int code = 0;
    int rows = 0;
    enum cpb_status rc;
    buf_addf(&rest, "FROM USER_ORDER_STAGING %s ORDER BY STAGING_ID", where);
    if (limit > 0) {
        rc = query_limited(op->db, ORDER_COLS, buf_str(&rest), args, n, limit, &st);
    } else {
        struct buf sql = BUF_INIT;
        buf_addf(&sql, "SELECT " ORDER_COLS " %s", buf_str(&rest));
        rc = sql_query(op->db, buf_str(&sql), args, n, &st);
        buf_free(&sql);
    }
    if (rc != CPB_OK) {
        code = db_failed(op, "listing orders");
        goto out;
    }
    for (;;) {
        char when[40];
        rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            break;
        }
        if (rc == CPB_OK) {
            rc = read_order(st, &o);
        }
        if (rc != CPB_OK) {
            code = db_failed(op, "reading orders");
            goto out;
        }
        if (arr != NULL) {
            json_array_append_new(arr, order_json(&o, op->now));
            continue;
        }
        if (rows == 0) {
            printf("  %-8s %-28s %-11s %8s  %-20s %s\n", "ID", "SOURCE:ORDER", "STATE", "ATTEMPTS",
                   "UPDATED", "LAST ERROR / DOCUMENT");
        }
        char who[420];
        snprintf(who, sizeof who, "%s:%s", o.source, o.ext);
        printf("  %-8lld %-28s %-11s %8lld  %-20s ", (long long)o.id, who, o.status,
               (long long)o.attempts, fmt_when(o.updated, o.has_updated, when, sizeof when));
        if (!o.err_code_null || !o.err_msg_null) {
            printf("%s: %s\n", o.err_code_null ? "-" : o.err_code, o.err_msg);
        } else if (o.doc_id != 0) {
            printf("document %lld, ticket %s\n", (long long)o.doc_id, o.tkt_no);
        } else {
            printf("-\n");
        }
        rows++;
    }
    if (arr == NULL && rows == 0 && empty != NULL) {
        printf("  %s\n", empty);
    }
out:
    db_finalize(st);
    buf_free(&rest);
    return code;
}

static int cmd_status(struct ops *op)
{
    struct metrics_snapshot s;
    struct err e = {0};
    struct cpb_stmt *st = NULL;
    struct run_row r;
    json_t *j = NULL;
    json_t *runs = NULL;
    bool json = (op->o.given & OPT_JSON) != 0;
    char a[64];
    char b[64];
    int code;

    if (op->o.nargs != 1) {
        return usage_error(op->v, "give exactly one pipeline file");
    }
    op->path = op->o.args[0];
    code = open_or_fail(op);
    if (code != 0) {
        return code;
    }
    if (metrics_snapshot(op->db, op->cfg->name, op->now, &s, &e) != 0) {
        return fail(op, CPB_EXIT_UNAVAILABLE, "%s", e.msg);
    }
    if (json) {
        json_t *counts = json_object();
        j = json_object();
        runs = json_array();
        for (int i = 0; i < METRICS_N_STATES; i++) {
            json_object_set_new(counts, metrics_states[i], json_integer((json_int_t)s.by_state[i]));
        }
        json_object_set_new(j, "pipeline", jtext(op->cfg->name, false));
        json_object_set_new(j, "time", jwhen(s.now_ms, true));
        json_object_set_new(j, "orders", counts);
        json_object_set_new(j, "pending_due", json_integer((json_int_t)s.pending_due));
        json_object_set_new(j, "oldest_pending", jwhen(s.oldest_pending_ms, s.has_pending));
        json_object_set_new(j, "after_due", json_integer((json_int_t)s.after_due));
        json_object_set_new(j, "after_failed", json_integer((json_int_t)s.after_gave_up));
        json_object_set_new(j, "changed_after_apply",
                            json_integer((json_int_t)s.changed_after_apply));
        json_object_set_new(j, "last_success", jwhen(s.last_success_ms, s.has_success));
        json_object_set_new(j, "runs", runs);
    } else {
        printf("Pipeline %s (%s), %s\n\n", op->cfg->name, op->cfg->database.dialect,
               fmt_when(s.now_ms, true, a, sizeof a));
        printf("Orders by state:\n");
        for (int i = 0; i < METRICS_N_STATES; i++) {
            printf("  %-12s %8lld", metrics_states[i], (long long)s.by_state[i]);
            if (i == 0 && s.by_state[0] > 0) {
                printf("  (%lld due now, oldest received %s ago)", (long long)s.pending_due,
                       fmt_age(s.now_ms - s.oldest_pending_ms, a, sizeof a));
            } else if (i == 1 && (s.after_due > 0 || s.after_gave_up > 0)) {
                printf("  (after-commit steps: %lld due, %lld given up)", (long long)s.after_due,
                       (long long)s.after_gave_up);
            }
            printf("\n");
        }
        printf("  last success: %s\n\n",
               s.has_success ? fmt_when(s.last_success_ms, true, a, sizeof a) : "never");
        printf("Last runs:\n");
    }

    struct sql_arg pa[] = {sql_text(op->cfg->name)};
    if (query_limited(op->db, RUN_COLS,
                      "FROM USER_SYNC_LOG WHERE PIPELINE = ? ORDER BY STARTED_DT DESC, LOG_ID DESC",
                      pa, 1, 10, &st) != CPB_OK) {
        code = db_failed(op, "reading the run log");
        goto out;
    }
    for (int row = 0;; row++) {
        enum cpb_status rc = db_fetch(st);
        char rate[32];
        if (rc == CPB_SKIP) {
            if (row == 0 && !json) {
                printf("  no run yet\n");
            }
            break;
        }
        if (rc == CPB_OK) {
            rc = read_run(st, &r);
        }
        if (rc != CPB_OK) {
            code = db_failed(op, "reading the run log");
            goto out;
        }
        fmt_rate(r.n[2], r.duration, rate, sizeof rate);
        if (json) {
            json_t *o = json_pack(
                "{s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:s,"
                " s:o, s:o}",
                "started", jwhen(r.started, r.has_started), "ended", jwhen(r.ended, r.has_ended),
                "duration_ms", r.duration_null ? json_null() : json_integer(r.duration), "result",
                jtext(r.result, false), "exit_code",
                r.exit_null ? json_null() : json_integer(r.exit_code), "counts", "staged",
                (json_int_t)r.n[0], "claimed", (json_int_t)r.n[1], "applied", (json_int_t)r.n[2],
                "retry", (json_int_t)r.n[3], "invalid", (json_int_t)r.n[4], "dead",
                (json_int_t)r.n[5], "after_done", (json_int_t)r.n[6], "after_failed",
                (json_int_t)r.n[7], "orders_per_second", rate, "host", jtext(r.host, false),
                "run_id", jtext(r.run_id, false));
            json_array_append_new(runs, o);
            continue;
        }
        if (row == 0) {
            printf("  %-21s %9s  %-9s %6s %7s %7s %5s %4s %6s %8s\n", "STARTED", "DURATION",
                   "RESULT", "STAGED", "APPLIED", "INVALID", "RETRY", "DEAD", "AFTER", "ORDERS/S");
        }
        if (r.duration_null) {
            snprintf(b, sizeof b, "-");
        } else {
            fmt_dec(r.duration * 10, 3, b, sizeof b); /* ms -> seconds with 3 decimals */
            size_t bl = strlen(b);
            if (bl + 1 < sizeof b) {
                b[bl] = 's';
                b[bl + 1] = '\0';
            }
        }
        printf("  %-21s %9s  %-9s %6lld %7lld %7lld %5lld %4lld %6lld %8s\n",
               fmt_when(r.started, r.has_started, a, sizeof a), b, r.result, (long long)r.n[0],
               (long long)r.n[2], (long long)r.n[4], (long long)r.n[3], (long long)r.n[5],
               (long long)r.n[6], rate);
    }
    db_finalize(st);
    st = NULL;

    /* The dead letters at a glance, and the orders changed after apply. */
    json_t *dlq = json ? json_array() : NULL;
    json_t *changed = json ? json_array() : NULL;
    if (json) {
        json_object_set_new(j, "dead_letters", dlq);
        json_object_set_new(j, "changed", changed);
    } else {
        printf("\nDead letters (DEAD %lld, INVALID %lld):\n", (long long)s.by_state[3],
               (long long)s.by_state[2]);
    }
    code = order_list(op, "WHERE STATUS IN ('DEAD', 'INVALID')", NULL, 0, 20, dlq, "none");
    if (code != 0) {
        goto out;
    }
    if (!json && s.by_state[2] + s.by_state[3] > 20) {
        printf("  ... the first 20 shown; all: cpbridge dlq %s list\n", op->path);
    }
    if (!json) {
        printf("\nChanged in the store after they were applied (%lld):\n",
               (long long)s.changed_after_apply);
    }
    code = order_list(op, "WHERE STATUS = 'APPLIED' AND CHANGED_AFTER_APPLY = 1", NULL, 0, 20,
                      changed, "none");
    if (code != 0) {
        goto out;
    }
    if (json) {
        print_json(j);
    }
out:
    db_finalize(st);
    json_decref(j);
    return code;
}

/* ---- orders ---------------------------------------------------------------- */

/* The order's lines (USER_ORDER_STAGING_LIN). */
static int show_lines(struct ops *op, int64_t id, json_t *arr, int64_t *count)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    *count = 0;
    if (sql_query(op->db,
                  "SELECT LIN_SEQ_NO, SKU, ITEM_NO, NAME, QTY, PRC, LINE_TOTAL FROM"
                  " USER_ORDER_STAGING_LIN WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = db_failed(op, "reading the order's lines");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        int64_t seq, qty, prc, tot;
        bool prc_null, tot_null, item_null;
        char sku[200], item[200], name[400];
        char q[48], p[48], t[48];
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        rd_int(&r, &seq, NULL);
        rd_text(&r, sku, sizeof sku, NULL);
        rd_text(&r, item, sizeof item, &item_null);
        rd_text(&r, name, sizeof name, NULL);
        rd_dec(&r, &qty, NULL);
        rd_dec(&r, &prc, &prc_null);
        rd_dec(&r, &tot, &tot_null);
        if (r.rc != CPB_OK) {
            code = db_failed(op, "reading the order's lines");
            goto out;
        }
        (*count)++;
        if (arr != NULL) {
            json_array_append_new(
                arr, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "seq", (json_int_t)seq, "sku",
                               jtext(sku, false), "item_no", jtext(item, item_null), "name",
                               jtext(name, false), "qty", jdec(qty, false), "price",
                               jdec(prc, prc_null), "total", jdec(tot, tot_null)));
            continue;
        }
        if (*count == 1) {
            printf("  %-4s %-20s %-20s %10s %10s %10s  %s\n", "SEQ", "SKU", "ITEM", "QTY", "PRICE",
                   "TOTAL", "NAME");
        }
        printf("  %-4lld %-20s %-20s %10s %10s %10s  %s\n", (long long)seq, sku,
               item_null ? "-" : item, fmt_dec(qty, 4, q, sizeof q),
               prc_null ? "-" : fmt_dec(prc, 2, p, sizeof p),
               tot_null ? "-" : fmt_dec(tot, 2, t, sizeof t), name);
    }
    if (arr == NULL && *count == 0) {
        printf("  no lines stored\n");
    }
out:
    db_finalize(st);
    return code;
}

/* USER_ORDER_STEP and USER_ORDER_INV of the order. */
static int show_steps_and_inventory(struct ops *op, int64_t id, json_t *steps, json_t *inv)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    int n = 0;
    if (steps == NULL) {
        printf("After-commit steps done:\n");
    }
    if (sql_query(op->db,
                  "SELECT STAGE_ID, DONE_DT FROM USER_ORDER_STEP WHERE STAGING_ID = ?"
                  " ORDER BY DONE_DT, STAGE_ID",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = db_failed(op, "reading the after-commit steps");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char stage[200];
        char when[40];
        int64_t done;
        bool has;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        rd_text(&r, stage, sizeof stage, NULL);
        rd_time(&r, &done, &has);
        if (r.rc != CPB_OK) {
            code = db_failed(op, "reading the after-commit steps");
            goto out;
        }
        n++;
        if (steps != NULL) {
            json_array_append_new(steps, json_pack("{s:o, s:o}", "stage", jtext(stage, false),
                                                   "done", jwhen(done, has)));
        } else {
            printf("  %-24s %s\n", stage, fmt_when(done, has, when, sizeof when));
        }
    }
    if (steps == NULL && n == 0) {
        printf("  none\n");
    }
    db_finalize(st);
    st = NULL;

    n = 0;
    if (inv == NULL) {
        printf("Inventory changes (USER_ORDER_INV):\n");
    }
    if (sql_query(op->db,
                  "SELECT LIN_SEQ_NO, ITEM_NO, LOC_ID, QTY_COLUMN, QTY, CREATED_ROW, DOC_ID"
                  " FROM USER_ORDER_INV WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = db_failed(op, "reading the inventory changes");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char item[200], loc[200], column[100], q[48];
        int64_t seq, qty, created, doc;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        rd_int(&r, &seq, NULL);
        rd_text(&r, item, sizeof item, NULL);
        rd_text(&r, loc, sizeof loc, NULL);
        rd_text(&r, column, sizeof column, NULL);
        rd_dec(&r, &qty, NULL);
        rd_int(&r, &created, NULL);
        rd_int(&r, &doc, NULL);
        if (r.rc != CPB_OK) {
            code = db_failed(op, "reading the inventory changes");
            goto out;
        }
        n++;
        if (inv != NULL) {
            json_array_append_new(
                inv, json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:I}", "seq", (json_int_t)seq,
                               "item_no", jtext(item, false), "loc_id", jtext(loc, false), "column",
                               jtext(column, false), "qty", jdec(qty, false), "created_row",
                               created != 0, "doc_id", (json_int_t)doc));
        } else {
            printf("  line %lld: IM_INV %s @ %s %s +%s%s\n", (long long)seq, item, loc, column,
                   fmt_dec(qty, 4, q, sizeof q), created != 0 ? " (row created by cpbridge)" : "");
        }
    }
    if (inv == NULL && n == 0) {
        printf("  none\n");
    }
out:
    db_finalize(st);
    return code;
}

static int show_events(struct ops *op, int64_t id, json_t *arr)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    int n = 0;
    if (sql_query(op->db,
                  "SELECT EVENT_DT, KIND, STAGE_ID, STATUS_FROM, STATUS_TO, CODE, MESSAGE, ACTOR,"
                  " DURATION_MS, RUN_ID FROM USER_ORDER_EVENT WHERE STAGING_ID = ?"
                  " ORDER BY EVENT_ID",
                  (struct sql_arg[]){sql_int(id)}, 1, &st) != CPB_OK) {
        code = db_failed(op, "reading the order's events");
        goto out;
    }
    if (arr == NULL) {
        printf("Events:\n");
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        int64_t when, ms;
        bool has_when, stage_null, from_null, to_null, code_null, msg_null, actor_null, ms_null,
            run_null;
        char kind[100], stage[200], from[64], to[64], ecode[200], msg[2100], actor[300], run[100];
        char t[40];
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        rd_time(&r, &when, &has_when);
        rd_text(&r, kind, sizeof kind, NULL);
        rd_text(&r, stage, sizeof stage, &stage_null);
        rd_text(&r, from, sizeof from, &from_null);
        rd_text(&r, to, sizeof to, &to_null);
        rd_text(&r, ecode, sizeof ecode, &code_null);
        rd_text(&r, msg, sizeof msg, &msg_null);
        rd_text(&r, actor, sizeof actor, &actor_null);
        rd_int(&r, &ms, &ms_null);
        rd_text(&r, run, sizeof run, &run_null);
        if (r.rc != CPB_OK) {
            code = db_failed(op, "reading the order's events");
            goto out;
        }
        n++;
        if (arr != NULL) {
            json_array_append_new(
                arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "time",
                               jwhen(when, has_when), "kind", jtext(kind, false), "stage",
                               jtext(stage, stage_null), "from", jtext(from, from_null), "to",
                               jtext(to, to_null), "code", jtext(ecode, code_null), "message",
                               jtext(msg, msg_null), "actor", jtext(actor, actor_null),
                               "duration_ms", ms_null ? json_null() : json_integer(ms), "run_id",
                               jtext(run, run_null)));
            continue;
        }
        printf("  %s  %-20s", fmt_when(when, has_when, t, sizeof t), kind);
        if (!stage_null) {
            printf(" [%s]", stage);
        }
        if (!from_null || !to_null) {
            printf(" %s->%s", from_null ? "" : from, to_null ? "" : to);
        }
        if (!code_null) {
            printf(" %s", ecode);
        }
        if (!msg_null && msg[0] != '\0') {
            printf(": %s", msg);
        }
        if (!actor_null) {
            printf(" (by %s)", actor);
        }
        if (!ms_null) {
            printf(" %lldms", (long long)ms);
        }
        printf("\n");
    }
    if (arr == NULL && n == 0) {
        printf("  none\n");
    }
out:
    db_finalize(st);
    return code;
}

/* Is the document still in PS_DOC_HDR? 1 yes, 0 no, -1 unknown. */
static int doc_present(struct ops *op, int64_t doc_id)
{
    int64_t n = 0;
    if (sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE DOC_ID = ?",
                      (struct sql_arg[]){sql_int(doc_id)}, 1, &n, NULL) != CPB_OK) {
        return -1;
    }
    return n > 0 ? 1 : 0;
}

/* What a person can do next with an order in this state. */
static void next_steps(const struct ops *op, const struct order_row *o)
{
    const char *p = op->path;
    long long id = (long long)o->id;
    if (strcmp(o->status, ST_DEAD) == 0 || strcmp(o->status, ST_INVALID) == 0) {
        printf("Next: fix the cause (the last error says what), then `cpbridge dlq %s retry %lld`;"
               " or `cpbridge dlq %s cancel %lld --why TEXT`\n",
               p, id, p, id);
    } else if (strcmp(o->status, ST_APPLIED) == 0) {
        if (o->after_pending == AFTER_GAVE_UP) {
            printf("Next: the after-commit steps were given up; fix the cause, then"
                   " `cpbridge dlq %s retry %lld` runs them again\n",
                   p, id);
        }
        if (o->changed != 0) {
            printf("Next: the store changed this order after it was applied; compare and fix the"
                   " Counterpoint document by hand (docs/OPERATIONS_RUNBOOK.md, order.changed)\n");
        }
        if (o->doc_id != 0 && o->adopted == 0) {
            printf("Undo: `cpbridge rollback %s %lld --dry-run` shows what a rollback would do\n",
                   p, id);
        }
    } else if (strcmp(o->status, ST_ROLLED_BACK) == 0) {
        printf("Next: `cpbridge dlq %s retry %lld` applies it again; `cpbridge dlq %s cancel %lld"
               " --why TEXT` drops it\n",
               p, id, p, id);
    } else if (strcmp(o->status, ST_PENDING) == 0) {
        printf("Next: the next run processes it when due; `cpbridge dlq %s cancel %lld --why TEXT`"
               " drops it\n",
               p, id);
    }
}

static int show_order(struct ops *op, const char *id_text)
{
    int64_t id = 0;
    struct order_row o;
    json_t *j = NULL;
    bool json = (op->o.given & OPT_JSON) != 0;
    char a[64], b[64], c[64];
    int64_t nlines = 0;
    int code = resolve_id(op, id_text, &id);
    if (code != 0) {
        return code;
    }
    enum cpb_status rc = load_order(op->db, id, &o);
    if (rc == CPB_SKIP) {
        return fail(op, CPB_EXIT_NOINPUT, "order %lld disappeared", (long long)id);
    }
    if (rc != CPB_OK) {
        return db_failed(op, "reading the order");
    }
    int present = o.doc_id != 0 ? doc_present(op, o.doc_id) : 0;
    if (json) {
        j = order_json(&o, op->now);
        json_t *lines = json_array();
        json_t *steps = json_array();
        json_t *inv = json_array();
        json_t *events = json_array();
        json_object_set_new(j, "lines", lines);
        json_object_set_new(j, "document_open",
                            o.doc_id == 0 || present < 0 ? json_null() : json_boolean(present));
        json_object_set_new(j, "after_steps_done", steps);
        json_object_set_new(j, "inventory", inv);
        json_object_set_new(j, "events", events);
        code = show_lines(op, id, lines, &nlines);
        if (code == 0) {
            code = show_steps_and_inventory(op, id, steps, inv);
        }
        if (code == 0) {
            code = show_events(op, id, events);
        }
        if (code == 0) {
            print_json(j);
        }
        json_decref(j);
        return code;
    }

    printf("Order %lld: %s:%s", (long long)o.id, o.source, o.ext);
    if (!o.order_no_null) {
        printf(" (order number %s)", o.order_no);
    }
    printf("\n");
    printf("  state         %s, %lld attempt%s", o.status, (long long)o.attempts,
           o.attempts == 1 ? "" : "s");
    if (strcmp(o.status, ST_PENDING) == 0) {
        printf(", next attempt %s", fmt_when(o.next_attempt, o.has_next_attempt, a, sizeof a));
    }
    printf("\n");
    if (!o.err_code_null || !o.err_msg_null) {
        printf("  last error    %s: %s\n", o.err_code_null ? "-" : o.err_code, o.err_msg);
    }
    if (lease_live(&o, op->now)) {
        printf("  lease         held by %s until %s\n", o.lease_owner,
               fmt_when(o.lease_until, true, a, sizeof a));
    }
    printf("  store status  %s\n", o.store_status_null ? "-" : o.store_status);
    printf("  customer      %s", o.bill_nam_null ? "-" : o.bill_nam);
    if (!o.email_null) {
        printf(" <%s>", o.email);
    }
    if (!o.customer_null && o.customer != 0) {
        printf(", store customer %lld", (long long)o.customer);
    }
    printf("\n");
    printf("  total         %s %s\n", o.total_null ? "-" : fmt_dec(o.total, 2, a, sizeof a),
           o.currency_null ? "" : o.currency);
    printf("  ordered       %s, modified %s\n", fmt_when(o.order_dt, o.has_order_dt, a, sizeof a),
           fmt_when(o.modified_dt, o.has_modified_dt, b, sizeof b));
    printf("  received      %s, updated %s\n", fmt_when(o.received, o.has_received, a, sizeof a),
           fmt_when(o.updated, o.has_updated, b, sizeof b));
    if (o.changed != 0) {
        printf("  CHANGED       the store changed this order after it was applied\n");
    }
    printf("Lines:\n");
    code = show_lines(op, id, NULL, &nlines);
    if (code != 0) {
        return code;
    }
    printf("Counterpoint:\n");
    if (o.doc_id == 0) {
        printf("  no document\n");
    } else {
        printf("  document %lld, ticket %s, %s; applied %s\n", (long long)o.doc_id,
               o.tkt_no_null ? "-" : o.tkt_no,
               o.adopted != 0 ? "adopted (it existed; cpbridge did not write it)"
                              : "written by cpbridge",
               fmt_when(o.applied, o.has_applied, c, sizeof c));
        printf("  PS_DOC_HDR    %s\n",
               present < 0    ? "unknown (could not read PS_DOC_HDR)"
               : present == 1 ? "open (still in PS_DOC_HDR)"
               : strcmp(o.status, ST_ROLLED_BACK) == 0
                   ? "gone (rolled back by cpbridge)"
                   : "gone (posted or released in Counterpoint, or removed)");
    }
    if (strcmp(o.status, ST_APPLIED) == 0) {
        printf("  after-commit  %s, %lld attempt%s\n",
               o.after_pending == AFTER_DUE       ? "due"
               : o.after_pending == AFTER_GAVE_UP ? "GIVEN UP"
                                                  : "done",
               (long long)o.after_attempts, o.after_attempts == 1 ? "" : "s");
    }
    code = show_steps_and_inventory(op, id, NULL, NULL);
    if (code == 0) {
        code = show_events(op, id, NULL);
    }
    if (code == 0) {
        next_steps(op, &o);
    }
    return code;
}

/* --limit N: 1..100000. Returns 0 or CPB_EXIT_USAGE. */
static int parse_limit(const struct ops *op, int64_t def, int64_t *out)
{
    *out = def;
    if ((op->o.given & OPT_LIMIT) == 0) {
        return 0;
    }
    if (text_parse_int(op->o.limit, out) != 0 || *out < 1 || *out > 100000) {
        char shown[64];
        clean(op->o.limit, shown, sizeof shown);
        return usage_error(op->v, "--limit wants a number from 1 to 100000, not '%s'", shown);
    }
    return 0;
}

static int orders_list(struct ops *op)
{
    int64_t limit = 0;
    struct buf where = BUF_INIT;
    struct sql_arg args[1];
    size_t n = 0;
    char state[16] = "";
    bool json = (op->o.given & OPT_JSON) != 0;
    int code = parse_limit(op, 50, &limit);
    if (code != 0) {
        return code;
    }
    if ((op->o.given & OPT_STATE) != 0) {
        size_t len = strlen(op->o.state);
        for (size_t i = 0; i < len && i + 1 < sizeof state; i++) {
            char ch = op->o.state[i];
            state[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
            state[i + 1] = '\0';
        }
        if (len >= sizeof state || metrics_state_index(state) < 0) {
            char shown[64];
            clean(op->o.state, shown, sizeof shown);
            return usage_error(op->v,
                               "--state '%s': one of PENDING, APPLIED, INVALID, DEAD, CANCELLED,"
                               " ROLLED_BACK",
                               shown);
        }
    }
    code = open_or_fail(op);
    if (code != 0) {
        return code;
    }
    buf_adds(&where, "WHERE 1 = 1");
    if (state[0] != '\0') {
        buf_adds(&where, " AND STATUS = ?");
        args[n++] = sql_text(state);
    }
    if ((op->o.given & OPT_CHANGED) != 0) {
        buf_adds(&where, " AND CHANGED_AFTER_APPLY = 1");
    }
    /* Newest first: order_list sorts ascending, so use its own query. */
    struct cpb_stmt *st = NULL;
    struct buf rest = BUF_INIT;
    json_t *arr = json ? json_array() : NULL;
    int rows = 0;
    buf_addf(&rest, "FROM USER_ORDER_STAGING %s ORDER BY STAGING_ID DESC", buf_str(&where));
    if (query_limited(op->db, ORDER_COLS, buf_str(&rest), args, n, limit, &st) != CPB_OK) {
        code = db_failed(op, "listing orders");
        goto out;
    }
    for (;;) {
        struct order_row o;
        char when[40];
        char who[420];
        enum cpb_status rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            break;
        }
        if (rc == CPB_OK) {
            rc = read_order(st, &o);
        }
        if (rc != CPB_OK) {
            code = db_failed(op, "reading orders");
            goto out;
        }
        rows++;
        if (json) {
            json_array_append_new(arr, order_json(&o, op->now));
            continue;
        }
        if (rows == 1) {
            printf("%-8s %-28s %-14s %-11s %8s  %-20s %s\n", "ID", "SOURCE:ORDER", "NUMBER",
                   "STATE", "ATTEMPTS", "RECEIVED", "LAST ERROR / DOCUMENT");
        }
        snprintf(who, sizeof who, "%s:%s", o.source, o.ext);
        printf("%-8lld %-28s %-14s %-11s %8lld  %-20s ", (long long)o.id, who,
               o.order_no_null ? "-" : o.order_no, o.status, (long long)o.attempts,
               fmt_when(o.received, o.has_received, when, sizeof when));
        if (!o.err_code_null) {
            printf("%s", o.err_code);
        } else if (o.doc_id != 0) {
            printf("document %lld, ticket %s", (long long)o.doc_id, o.tkt_no);
        } else {
            printf("-");
        }
        printf("%s\n", o.changed != 0 ? " [CHANGED after apply]" : "");
    }
    if (json) {
        print_json(arr);
    } else if (rows == 0) {
        printf("no orders\n");
    } else if (rows == limit) {
        printf("(the newest %lld; --limit N for more)\n", (long long)limit);
    }
out:
    db_finalize(st);
    json_decref(arr);
    buf_free(&rest);
    buf_free(&where);
    return code;
}

static int cmd_orders(struct ops *op)
{
    if (op->o.nargs < 2) {
        return usage_error(op->v, "give the pipeline file and list or show");
    }
    op->path = op->o.args[0];
    const char *sub = op->o.args[1];
    if (strcmp(sub, "list") == 0) {
        if (op->o.nargs != 2) {
            return usage_error(op->v, "list takes no more arguments");
        }
        return orders_list(op);
    }
    if (strcmp(sub, "show") == 0) {
        if (op->o.nargs != 3) {
            return usage_error(op->v, "show takes one order id");
        }
        if ((op->o.given & (OPT_STATE | OPT_CHANGED | OPT_LIMIT)) != 0) {
            return usage_error(op->v, "--state, --changed and --limit apply to list only");
        }
        int code = open_or_fail(op);
        return code != 0 ? code : show_order(op, op->o.args[2]);
    }
    char shown[64];
    clean(sub, shown, sizeof shown);
    return usage_error(op->v, "unknown subcommand '%s' (list, show)", shown);
}

/* ---- dlq ------------------------------------------------------------------- */

/* Who is doing this: $SUDO_USER, $USER, the login name, or "unknown";
 * cut to the ACTOR column (100 characters). */
static void actor_of(char *out, size_t n)
{
    const char *cands[] = {getenv("SUDO_USER"), getenv("USER"), getlogin()};
    const char *who = "unknown";
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (cands[i] != NULL && cands[i][0] != '\0') {
            who = cands[i];
            break;
        }
    }
    char cleaned[512];
    clean(who, cleaned, sizeof cleaned);
    size_t len = text_utf8_prefix(cleaned, 100);
    if (len >= n) {
        len = n - 1;
    }
    memcpy(out, cleaned, len);
    out[len] = '\0';
}

enum dlq_action { DLQ_RETRY, DLQ_CANCEL };

/* Why an action does not fit the order's state (written into why[n] with
 * what to do instead), or NULL when it does. */
static const char *dlq_refusal(const struct ops *op, enum dlq_action act, const struct order_row *o,
                               bool *requeue, char *why, size_t n)
{
    const char *s = o->status;
    long long id = (long long)o->id;
    *requeue = false;
    if (act == DLQ_RETRY) {
        if (strcmp(s, ST_DEAD) == 0 || strcmp(s, ST_INVALID) == 0 ||
            strcmp(s, ST_ROLLED_BACK) == 0) {
            return NULL;
        }
        if (strcmp(s, ST_APPLIED) == 0 && o->after_pending == AFTER_GAVE_UP) {
            *requeue = true;
            return NULL;
        }
        if (strcmp(s, ST_PENDING) == 0) {
            snprintf(why, n, "it is already waiting for the next run (nothing to retry)");
        } else if (strcmp(s, ST_APPLIED) == 0) {
            snprintf(why, n,
                     "it is in Counterpoint already; to undo it: `cpbridge rollback %s %lld"
                     " --dry-run` (docs/ROLLBACK.md)",
                     op->path, id);
        } else if (strcmp(s, ST_CANCELLED) == 0) {
            snprintf(why, n,
                     "it was cancelled by hand and stays cancelled; stage it again from the"
                     " store if it must be processed");
        } else {
            snprintf(why, n, "retry takes DEAD, INVALID or ROLLED_BACK orders only");
        }
        return why;
    }
    if (strcmp(s, ST_DEAD) == 0 || strcmp(s, ST_INVALID) == 0 || strcmp(s, ST_PENDING) == 0 ||
        strcmp(s, ST_ROLLED_BACK) == 0) {
        return NULL;
    }
    if (strcmp(s, ST_APPLIED) == 0) {
        snprintf(why, n,
                 "it is in Counterpoint; roll it back first (`cpbridge rollback %s %lld"
                 " --dry-run`, docs/ROLLBACK.md), then cancel it",
                 op->path, id);
    } else if (strcmp(s, ST_CANCELLED) == 0) {
        snprintf(why, n, "it is cancelled already");
    } else {
        snprintf(why, n, "cancel takes DEAD, INVALID, PENDING or ROLLED_BACK orders only");
    }
    return why;
}

/*
 * Retry or cancel one order in its own transaction with its audit event.
 * Returns 0 (done, printed), CPB_EXIT_DATAERR (refused, printed),
 * CPB_EXIT_NOINPUT, or CPB_EXIT_UNAVAILABLE.
 */
static int dlq_one(struct ops *op, int64_t id, enum dlq_action act, const char *actor)
{
    struct order_row o;
    char label[500];
    char when[40];
    bool requeue = false;
    int64_t rows = 0;
    int64_t now = host_now_ms();
    const char *to = act == DLQ_CANCEL ? ST_CANCELLED : ST_PENDING;
    int code = 0;
    enum cpb_status rc = db_begin(op->db);
    if (rc != CPB_OK) {
        return db_failed(op, "starting a transaction");
    }
    rc = staging_lock(op->db, id, NULL, now);
    if (rc == CPB_OK) {
        rc = load_order(op->db, id, &o);
    }
    if (rc == CPB_SKIP) {
        code = fail(op, CPB_EXIT_NOINPUT, "order %lld disappeared", (long long)id);
        goto out;
    }
    if (rc != CPB_OK) {
        code = db_failed(op, "reading the order");
        goto out;
    }
    order_label(&o, label, sizeof label);
    char why[600];
    const char *why_not = dlq_refusal(op, act, &o, &requeue, why, sizeof why);
    if (why_not != NULL) {
        code = fail(op, CPB_EXIT_DATAERR, "order %s is %s: %s", label, o.status, why_not);
        goto out;
    }
    if (lease_live(&o, now)) {
        code =
            fail(op, CPB_EXIT_DATAERR,
                 "order %s is %s and a run is working on it (lease held by %s until %s):"
                 " try again after that run",
                 label, o.status, o.lease_owner, fmt_when(o.lease_until, true, when, sizeof when));
        goto out;
    }
    /* The status read above is repeated in each WHERE: the row lock makes
     * it exact, the guard keeps it so even without one. */
    if (act == DLQ_CANCEL) {
        struct sql_arg a[] = {sql_time(now), sql_int(id), sql_text(o.status)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'CANCELLED', LEASE_TOKEN = NULL,"
                      " LEASE_OWNER = NULL, LEASE_UNTIL = NULL, UPDATED_DT = ?"
                      " WHERE STAGING_ID = ? AND STATUS = ?",
                      a, SQL_NARGS(a), &rows);
    } else if (requeue) {
        to = ST_APPLIED;
        struct sql_arg a[] = {sql_time(now), sql_time(now), sql_int(id)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET AFTER_PENDING = 1, AFTER_ATTEMPTS = 0,"
                      " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL, LAST_ERROR = NULL,"
                      " UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = 'APPLIED'"
                      " AND AFTER_PENDING = 2",
                      a, SQL_NARGS(a), &rows);
    } else {
        /* Back to PENDING as if new. A rolled-back order also forgets its old
         * document (the rollback event keeps it) and its after-commit steps,
         * so the next run writes and syncs it afresh. */
        struct sql_arg a[] = {sql_time(now), sql_time(now), sql_int(id), sql_text(o.status)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'PENDING', ATTEMPTS = 0,"
                      " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL, LAST_ERROR = NULL,"
                      " LEASE_TOKEN = NULL, LEASE_OWNER = NULL, LEASE_UNTIL = NULL,"
                      " AFTER_PENDING = 0, AFTER_ATTEMPTS = 0, CP_DOC_ID = NULL,"
                      " CP_TKT_NO = NULL, CP_ADOPTED = 0, APPLIED_DT = NULL,"
                      " CHANGED_AFTER_APPLY = 0, UPDATED_DT = ? WHERE STAGING_ID = ?"
                      " AND STATUS = ?",
                      a, SQL_NARGS(a), &rows);
        if (rc == CPB_OK && rows == 1) {
            rc = sql_exec(op->db, "DELETE FROM USER_ORDER_STEP WHERE STAGING_ID = ?",
                          (struct sql_arg[]){sql_int(id)}, 1, NULL);
        }
    }
    if (rc == CPB_OK && rows != 1) {
        code = fail(op, CPB_EXIT_DATAERR, "order %s changed while this ran: look again", label);
        goto out;
    }
    if (rc == CPB_OK) {
        struct staging_event ev = {id,
                                   NULL,
                                   act == DLQ_CANCEL ? "dlq.cancel" : "dlq.retry",
                                   NULL,
                                   o.status,
                                   to,
                                   requeue ? "after.requeue" : NULL,
                                   op->o.why,
                                   actor,
                                   -1};
        rc = staging_event(op->db, &ev, now);
    }
    if (rc == CPB_OK) {
        rc = db_commit(op->db);
    }
    if (rc != CPB_OK) {
        code = db_failed(op, "changing the order");
        goto out;
    }
    if (act == DLQ_CANCEL) {
        printf("order %s: %s -> CANCELLED\n", label, o.status);
    } else if (requeue) {
        printf("order %s: APPLIED, after-commit steps queued again (due now; steps already done"
               " are not repeated)\n",
               label);
    } else {
        printf("order %s: %s -> PENDING, due now, attempts reset%s\n", label, o.status,
               o.changed != 0 ? "; note: the store changed it after it was first applied and"
                                " the stored version is the first one: re-read it from the"
                                " store if the change matters"
                              : "");
    }
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    return code;
}

/* The ids of DEAD and INVALID orders (optionally with one error code). */
static int dlq_all_ids(struct ops *op, int64_t **ids, size_t *n)
{
    struct cpb_stmt *st = NULL;
    size_t cap = 0;
    int code = 0;
    enum cpb_status rc;
    *ids = NULL;
    *n = 0;
    if ((op->o.given & OPT_REASON) != 0) {
        rc = sql_query(op->db,
                       "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS IN ('DEAD',"
                       " 'INVALID') AND LAST_ERROR_CODE = ? ORDER BY STAGING_ID",
                       (struct sql_arg[]){sql_text(op->o.reason)}, 1, &st);
    } else {
        rc = sql_query(op->db,
                       "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS IN ('DEAD',"
                       " 'INVALID') ORDER BY STAGING_ID",
                       NULL, 0, &st);
    }
    if (rc != CPB_OK) {
        code = db_failed(op, "listing the dead letters");
        goto out;
    }
    for (;;) {
        int64_t id = 0;
        rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            break;
        }
        if (rc == CPB_OK) {
            rc = db_col_int(st, 1, &id, NULL);
        }
        if (rc != CPB_OK) {
            code = db_failed(op, "listing the dead letters");
            goto out;
        }
        if (*n == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            int64_t *grown = realloc(*ids, ncap * sizeof **ids);
            if (grown == NULL) {
                code = fail(op, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
            *ids = grown;
            cap = ncap;
        }
        (*ids)[(*n)++] = id;
    }
out:
    db_finalize(st);
    if (code != 0) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return code;
}

static int dlq_act(struct ops *op, enum dlq_action act)
{
    const char *name = act == DLQ_RETRY ? "retry" : "cancel";
    bool all = (op->o.given & OPT_ALL) != 0;
    int64_t *ids = NULL;
    size_t n = 0;
    int code = 0;
    int worst = 0;
    char actor[420];

    if (act == DLQ_CANCEL && all) {
        return usage_error(op->v, "cancel takes order ids, not --all");
    }
    if (act == DLQ_CANCEL && ((op->o.given & OPT_WHY) == 0 || op->o.why[0] == '\0')) {
        return usage_error(op->v, "cancel needs --why TEXT (it goes into the audit trail)");
    }
    if (all && op->o.nargs > 2) {
        return usage_error(op->v, "give order ids or --all, not both");
    }
    if (!all && op->o.nargs < 3) {
        return usage_error(op->v, "%s needs one or more order ids%s", name,
                           act == DLQ_RETRY ? " (or --all)" : "");
    }
    if ((op->o.given & OPT_REASON) != 0 && !all) {
        return usage_error(op->v, "--reason goes with --all");
    }
    if ((op->o.given & OPT_WHY) != 0 && !text_utf8_valid(op->o.why, strlen(op->o.why))) {
        return usage_error(op->v, "--why is not valid UTF-8");
    }
    code = open_or_fail(op);
    if (code != 0) {
        return code;
    }
    if (all) {
        code = dlq_all_ids(op, &ids, &n);
        if (code != 0) {
            return code;
        }
        if (n == 0) {
            printf("nothing to retry: no DEAD or INVALID order%s\n",
                   (op->o.given & OPT_REASON) != 0 ? " with that error code" : "");
        }
    } else {
        /* Resolve every id first: a typo does nothing at all. */
        n = (size_t)(op->o.nargs - 2);
        ids = calloc(n, sizeof *ids);
        if (ids == NULL) {
            return fail(op, CPB_EXIT_SOFTWARE, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            code = resolve_id(op, op->o.args[2 + i], &ids[i]);
            if (code != 0) {
                free(ids);
                return code;
            }
        }
    }
    actor_of(actor, sizeof actor);
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t k = 0; k < i; k++) {
            dup = dup || ids[k] == ids[i];
        }
        if (dup) {
            continue;
        }
        code = dlq_one(op, ids[i], act, actor);
        if (code == 0) {
            done++;
        } else if (code == CPB_EXIT_UNAVAILABLE) {
            worst = code;
            break;
        } else if (worst == 0 || code == CPB_EXIT_DATAERR) {
            worst = code;
        }
    }
    if (n > 1) {
        printf("%s: %zu of %zu order%s done\n", name, done, n, n == 1 ? "" : "s");
    }
    free(ids);
    return worst;
}

static int dlq_list(struct ops *op)
{
    bool json = (op->o.given & OPT_JSON) != 0;
    json_t *arr = json ? json_array() : NULL;
    int code = open_or_fail(op);
    if (code != 0) {
        json_decref(arr);
        return code;
    }
    if (!json) {
        printf("Dead letters (DEAD: retries exhausted; INVALID: held for review):\n");
    }
    code = order_list(op, "WHERE STATUS IN ('DEAD', 'INVALID')", NULL, 0, -1, arr, "none");
    if (code == 0 && json) {
        print_json(arr);
    } else if (code == 0) {
        printf("Show one: cpbridge dlq %s show ID; after fixing the cause: cpbridge dlq %s retry"
               " ID (or --all)\n",
               op->path, op->path);
    }
    json_decref(arr);
    return code;
}

static int cmd_dlq(struct ops *op)
{
    if (op->o.nargs < 2) {
        return usage_error(op->v, "give the pipeline file and list, show, retry or cancel");
    }
    op->path = op->o.args[0];
    const char *sub = op->o.args[1];
    unsigned actions = OPT_ALL | OPT_REASON | OPT_WHY;
    if (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0) {
        if ((op->o.given & actions) != 0) {
            return usage_error(op->v, "--all, --reason and --why go with retry and cancel");
        }
        if (strcmp(sub, "list") == 0) {
            if (op->o.nargs != 2) {
                return usage_error(op->v, "list takes no more arguments");
            }
            return dlq_list(op);
        }
        if (op->o.nargs != 3) {
            return usage_error(op->v, "show takes one order id");
        }
        int code = open_or_fail(op);
        return code != 0 ? code : show_order(op, op->o.args[2]);
    }
    if ((op->o.given & OPT_JSON) != 0 &&
        (strcmp(sub, "retry") == 0 || strcmp(sub, "cancel") == 0)) {
        return usage_error(op->v, "--json goes with list and show");
    }
    if (strcmp(sub, "retry") == 0) {
        return dlq_act(op, DLQ_RETRY);
    }
    if (strcmp(sub, "cancel") == 0) {
        return dlq_act(op, DLQ_CANCEL);
    }
    char shown[64];
    clean(sub, shown, sizeof shown);
    return usage_error(op->v, "unknown subcommand '%s' (list, show, retry, cancel)", shown);
}

/* ---- rollback -------------------------------------------------------------- */

/* The document tables cpbridge writes, children first: the order a delete
 * must take (PS_DOC_HDR last, as the foreign keys require). */
static const char *const doc_tables[] = {
    "PS_DOC_NOTE",    "PS_DOC_PMT", "PS_DOC_CONTACT", "PS_DOC_HDR_MISC_CHRG",
    "PS_DOC_HDR_TOT", "PS_DOC_LIN", "PS_DOC_HDR"};
static const char *const doc_delete_sql[] = {"DELETE FROM PS_DOC_NOTE WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_PMT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_CONTACT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR_MISC_CHRG WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR_TOT WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_LIN WHERE DOC_ID = ?",
                                             "DELETE FROM PS_DOC_HDR WHERE DOC_ID = ?"};
#define N_DOC_TABLES (sizeof doc_tables / sizeof doc_tables[0])

/* The IM_INV quantity columns update-qty may have written: the recorded
 * column name must be one of these before any SQL is chosen by it. */
static const struct {
    const char *column;
    const char *subtract_sql; /* quantity, item, location */
    const char *read_sql;     /* item, location */
} inv_columns[] = {
    {"QTY_ON_SO", "UPDATE IM_INV SET QTY_ON_SO = QTY_ON_SO - ? WHERE ITEM_NO = ? AND LOC_ID = ?",
     "SELECT QTY_ON_SO FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?"},
    {"QTY_COMMIT", "UPDATE IM_INV SET QTY_COMMIT = QTY_COMMIT - ? WHERE ITEM_NO = ? AND LOC_ID = ?",
     "SELECT QTY_COMMIT FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = ?"},
};
#define N_INV_COLUMNS (sizeof inv_columns / sizeof inv_columns[0])

/* The document header, locked for the transaction where the dialect can. */
static const char *const doc_hdr_sql[] = {
    [DB_SQLITE] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR WHERE DOC_ID = ?",
    [DB_POSTGRESQL] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR"
                      " WHERE DOC_ID = ? FOR UPDATE",
    [DB_MSSQL] = "SELECT TKT_NO, LST_MAINT_USR_ID, LST_MAINT_DT FROM PS_DOC_HDR"
                 " WITH (UPDLOCK, ROWLOCK) WHERE DOC_ID = ?",
};

/* SQL Server's datetime keeps 1/300 s: an edit is a LST_MAINT_DT more than
 * this after APPLIED_DT. */
#define EDIT_TOLERANCE_MS 1000

/* One IM_INV change: every USER_ORDER_INV row of one item, location and
 * column added up. item/loc are the raw values (bound back into SQL). */
struct inv_change {
    char *item;
    char *loc;
    size_t column; /* index into inv_columns */
    int64_t qty;   /* ten-thousandths cpbridge added */
    bool created;  /* cpbridge created the row */
    bool found;    /* the row is still there */
    int64_t old_v, new_v;
};

struct rollback {
    struct ops *op;
    bool dry_run;
    bool force;
    const char *actor;
    struct order_row o;
    char label[500];
    int64_t doc_rows[N_DOC_TABLES];
    struct inv_change *inv;
    size_t n_inv;
    int64_t inv_rows;
    int64_t step_rows;
    struct buf forced; /* the edit findings --force went past */
};

static void rollback_free(struct rollback *rb)
{
    for (size_t i = 0; i < rb->n_inv; i++) {
        free(rb->inv[i].item);
        free(rb->inv[i].loc);
    }
    free(rb->inv);
    buf_free(&rb->forced);
}

/* Is `user` (raw) one of the users the pipeline's create-order stages
 * write documents as (their `user` option; "CPBRIDGE" by default)? */
static bool written_by_us(const struct config *cfg, const char *user)
{
    bool any = false;
    if (user == NULL) {
        return false;
    }
    for (size_t i = 0; i < cfg->n_stages; i++) {
        const char *u = "CPBRIDGE";
        if (cfg->stages[i].stage == NULL || strcmp(cfg->stages[i].stage, "create-order") != 0) {
            continue;
        }
        any = true;
        if (cfg->stages[i].options != NULL) {
            const char *set = NULL;
            if (config_setting_lookup_string(cfg->stages[i].options, "user", &set) == CONFIG_TRUE &&
                set != NULL) {
                u = set;
            }
        }
        if (strcmp(u, user) == 0) {
            return true;
        }
    }
    return !any && strcmp(user, "CPBRIDGE") == 0;
}

/* Refuse: print the reason, return CPB_EXIT_DATAERR. */
static int refuse(const struct rollback *rb, const char *fmt, ...) CPB_PRINTF(2, 3);
static int refuse(const struct rollback *rb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge rollback: order %s: refused: ", rb->label);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CPB_EXIT_DATAERR;
}

/* A database failure inside the rollback: a refusal by the database (a
 * constraint: rows cpbridge does not know about still point at the
 * document) is 65, anything else 69. */
static int rollback_db_failed(struct rollback *rb, enum cpb_status rc, const char *what)
{
    char msg[1024];
    clean(db_last_error(rb->op->db), msg, sizeof msg);
    if (rc == CPB_FAIL && !db_broken(rb->op->db)) {
        return refuse(rb,
                      "the database refused %s: %s (nothing was changed; rows cpbridge did not"
                      " write may refer to the document: remove it in Counterpoint instead)",
                      what, msg);
    }
    return fail(rb->op, CPB_EXIT_UNAVAILABLE, "order %s: %s: %s (nothing was changed)", rb->label,
                what, msg);
}

/* Checks inside the transaction. Returns 0 or an exit code (printed). */
static int rollback_check(struct rollback *rb)
{
    struct ops *op = rb->op;
    struct order_row *o = &rb->o;
    struct cpb_stmt *st = NULL;
    char when[40];
    int code = 0;
    enum cpb_status rc;

    if (strcmp(o->status, ST_ROLLED_BACK) == 0) {
        return refuse(rb,
                      "it is ROLLED_BACK already; `cpbridge dlq %s retry %lld` applies it again",
                      op->path, (long long)o->id);
    }
    if (strcmp(o->status, ST_APPLIED) != 0) {
        return refuse(rb,
                      "it is %s, not APPLIED: it was never written to Counterpoint, so there is"
                      " nothing to roll back%s%s%s",
                      o->status,
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : " (to drop it: `cpbridge dlq ",
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : op->path,
                      strcmp(o->status, ST_CANCELLED) == 0 ? "" : " cancel ID --why TEXT`)");
    }
    if (o->doc_id == 0) {
        return refuse(rb, "it is APPLIED without a Counterpoint document (the pipeline has no"
                          " create-order step): nothing to roll back");
    }
    if (o->adopted != 0) {
        return refuse(rb,
                      "document %lld existed already and cpbridge adopted it instead of writing"
                      " it: cpbridge does not delete what it did not write; change it in"
                      " Counterpoint",
                      (long long)o->doc_id);
    }
    if (lease_live(o, rb->op->now)) {
        return refuse(rb,
                      "a run is working on it (after-commit steps; lease held by %s until %s):"
                      " try again after that run",
                      o->lease_owner, fmt_when(o->lease_until, true, when, sizeof when));
    }

    /* The document header: still open, and as cpbridge left it? */
    rc = sql_query(op->db, doc_hdr_sql[db_get_dialect(op->db)],
                   (struct sql_arg[]){sql_int(o->doc_id)}, 1, &st);
    if (rc == CPB_OK) {
        rc = db_fetch(st);
    }
    if (rc == CPB_SKIP) {
        code = refuse(rb,
                      "document %lld (ticket %s) is no longer open in Counterpoint: it was posted"
                      " or released (it moved to the PS_TKT_HIST tables) or deleted. A rollback"
                      " cannot undo a posted document: void it or enter a return in Counterpoint"
                      " (docs/ROLLBACK.md)",
                      (long long)o->doc_id, o->tkt_no);
        goto out;
    }
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "reading the document header");
        goto out;
    }
    struct rd r = {st, CPB_OK, 0};
    char *tkt = NULL;
    char *user = NULL;
    int64_t maint = 0;
    bool has_maint = false;
    rd_raw(&r, &tkt);
    rd_raw(&r, &user);
    rd_time(&r, &maint, &has_maint);
    if (r.rc != CPB_OK) {
        free(tkt);
        free(user);
        code = rollback_db_failed(rb, r.rc, "reading the document header");
        goto out;
    }
    /* A different ticket number: not the document cpbridge wrote. Never forced. */
    char shown[200];
    clean(tkt, shown, sizeof shown);
    if (!o->tkt_no_null && strcmp(shown, o->tkt_no) != 0) {
        free(tkt);
        free(user);
        code = refuse(rb,
                      "document %lld has ticket %s, but cpbridge wrote ticket %s: it is not the"
                      " document cpbridge wrote; nothing was changed",
                      (long long)o->doc_id, shown, o->tkt_no);
        goto out;
    }
    if (!written_by_us(op->cfg, user)) {
        clean(user, shown, sizeof shown);
        buf_addf(&rb->forced, "%slast changed by user '%s', not the create-order user",
                 rb->forced.len > 0 ? "; " : "", user != NULL ? shown : "(none)");
    }
    if (has_maint && o->has_applied && maint > o->applied + EDIT_TOLERANCE_MS) {
        char t2[40];
        buf_addf(&rb->forced, "%slast changed %s, after cpbridge applied it (%s)",
                 rb->forced.len > 0 ? "; " : "", fmt_when(maint, true, when, sizeof when),
                 fmt_when(o->applied, true, t2, sizeof t2));
    }
    free(tkt);
    free(user);
    db_finalize(st);
    st = NULL;

    int64_t doc_lines = 0;
    int64_t order_lines = 0;
    int64_t tax_rows = 0;
    rc = sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_LIN WHERE DOC_ID = ?",
                       (struct sql_arg[]){sql_int(o->doc_id)}, 1, &doc_lines, NULL);
    if (rc == CPB_OK) {
        rc = sql_query_int(op->db,
                           "SELECT COUNT(*) FROM USER_ORDER_STAGING_LIN WHERE STAGING_ID = ?",
                           (struct sql_arg[]){sql_int(o->id)}, 1, &order_lines, NULL);
    }
    if (rc == CPB_OK) {
        rc = sql_query_int(op->db, "SELECT COUNT(*) FROM PS_DOC_TAX WHERE DOC_ID = ?",
                           (struct sql_arg[]){sql_int(o->doc_id)}, 1, &tax_rows, NULL);
    }
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "counting the document's rows");
        goto out;
    }
    if (doc_lines != order_lines) {
        buf_addf(&rb->forced, "%shas %lld line%s, the order has %lld",
                 rb->forced.len > 0 ? "; " : "", (long long)doc_lines, doc_lines == 1 ? "" : "s",
                 (long long)order_lines);
    }
    if (tax_rows > 0) {
        /* cpbridge never writes PS_DOC_TAX: Counterpoint recalculated the
         * document. Deleting those rows would touch what cpbridge did not
         * write, so not even --force goes past this. */
        code = refuse(rb,
                      "document %lld has %lld PS_DOC_TAX row%s, which cpbridge never writes:"
                      " Counterpoint worked on it since; remove or void the document in"
                      " Counterpoint instead",
                      (long long)o->doc_id, (long long)tax_rows, tax_rows == 1 ? "" : "s");
        goto out;
    }
    if (rb->forced.len > 0 && !rb->force) {
        code = refuse(rb,
                      "document %lld was edited in Counterpoint since cpbridge wrote it (%s)."
                      " Fix it by hand in Counterpoint, or add --force to delete it anyway"
                      " (the edits are lost)",
                      (long long)o->doc_id, buf_str(&rb->forced));
        goto out;
    }
out:
    db_finalize(st);
    return code;
}

/* Read USER_ORDER_INV and add the rows up per item, location and column. */
static int rollback_load_inventory(struct rollback *rb)
{
    struct cpb_stmt *st = NULL;
    int code = 0;
    size_t cap = 0;
    enum cpb_status rc = sql_query(rb->op->db,
                                   "SELECT ITEM_NO, LOC_ID, QTY_COLUMN, QTY, CREATED_ROW, DOC_ID"
                                   " FROM USER_ORDER_INV WHERE STAGING_ID = ? ORDER BY LIN_SEQ_NO",
                                   (struct sql_arg[]){sql_int(rb->o.id)}, 1, &st);
    if (rc != CPB_OK) {
        code = rollback_db_failed(rb, rc, "reading the inventory changes");
        goto out;
    }
    for (;;) {
        struct rd r = {st, CPB_OK, 0};
        char *item = NULL;
        char *loc = NULL;
        char column[64];
        int64_t qty = 0;
        int64_t created = 0;
        int64_t doc = 0;
        size_t col = N_INV_COLUMNS;
        r.rc = db_fetch(st);
        if (r.rc == CPB_SKIP) {
            break;
        }
        rd_raw(&r, &item);
        rd_raw(&r, &loc);
        rd_text(&r, column, sizeof column, NULL);
        rd_dec(&r, &qty, NULL);
        rd_int(&r, &created, NULL);
        rd_int(&r, &doc, NULL);
        if (r.rc != CPB_OK) {
            free(item);
            free(loc);
            code = rollback_db_failed(rb, r.rc, "reading the inventory changes");
            goto out;
        }
        rb->inv_rows++;
        for (size_t i = 0; i < N_INV_COLUMNS; i++) {
            if (strcmp(column, inv_columns[i].column) == 0) {
                col = i;
            }
        }
        if (col == N_INV_COLUMNS || doc != rb->o.doc_id) {
            free(item);
            free(loc);
            code = refuse(rb,
                          col == N_INV_COLUMNS
                              ? "USER_ORDER_INV names the IM_INV column '%s', which is not one"
                                " cpbridge writes (QTY_ON_SO, QTY_COMMIT): nothing was changed"
                              : "USER_ORDER_INV rows (column %s) belong to another document:"
                                " nothing was changed",
                          column);
            goto out;
        }
        size_t k = 0;
        while (k < rb->n_inv && !(rb->inv[k].column == col && strcmp(rb->inv[k].item, item) == 0 &&
                                  strcmp(rb->inv[k].loc, loc) == 0)) {
            k++;
        }
        if (k < rb->n_inv) {
            rb->inv[k].qty += qty;
            rb->inv[k].created = rb->inv[k].created || created != 0;
            free(item);
            free(loc);
            continue;
        }
        if (rb->n_inv == cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            struct inv_change *grown = realloc(rb->inv, ncap * sizeof *grown);
            if (grown == NULL) {
                free(item);
                free(loc);
                code = fail(rb->op, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
            rb->inv = grown;
            cap = ncap;
        }
        struct inv_change *c = &rb->inv[rb->n_inv++];
        memset(c, 0, sizeof *c);
        c->item = item;
        c->loc = loc;
        c->column = col;
        c->qty = qty;
        c->created = created != 0;
    }
out:
    db_finalize(st);
    return code;
}

/* Subtract each change from IM_INV; the row is locked by the UPDATE, so the
 * value read after it is exact and old = new + quantity. */
static int rollback_inventory(struct rollback *rb)
{
    struct db *db = rb->op->db;
    char q[48], a[48];
    for (size_t i = 0; i < rb->n_inv; i++) {
        struct inv_change *c = &rb->inv[i];
        int64_t rows = 0;
        bool null = false;
        struct sql_arg args[] = {sql_decimal(c->qty), sql_text(c->item), sql_text(c->loc)};
        enum cpb_status rc =
            sql_exec(db, inv_columns[c->column].subtract_sql, args, SQL_NARGS(args), &rows);
        if (rc != CPB_OK) {
            return rollback_db_failed(rb, rc, "updating IM_INV");
        }
        char item[200], loc[200];
        clean(c->item, item, sizeof item);
        clean(c->loc, loc, sizeof loc);
        if (rows == 0) {
            if (!rb->force) {
                return refuse(rb,
                              "IM_INV has no row for item %s at location %s any more, so the %s"
                              " cpbridge added to %s cannot be given back; add --force to roll"
                              " back without it",
                              item, loc, fmt_dec(c->qty, 4, q, sizeof q),
                              inv_columns[c->column].column);
            }
            continue;
        }
        c->found = true;
        struct cpb_stmt *st = NULL;
        rc = sql_query(db, inv_columns[c->column].read_sql, args + 1, 2, &st);
        if (rc == CPB_OK) {
            rc = db_fetch(st);
        }
        if (rc == CPB_OK) {
            rc = db_col_decimal(st, 1, &c->new_v, &null);
        }
        db_finalize(st);
        if (rc != CPB_OK) {
            return rollback_db_failed(rb, rc, "reading IM_INV");
        }
        c->old_v = c->new_v + c->qty;
        if (c->new_v < 0 && !rb->force) {
            return refuse(rb,
                          "IM_INV %s for item %s at location %s is %s, less than the %s cpbridge"
                          " added: Counterpoint has relieved it since (the order was released"
                          " or changed?); check the document, or add --force to subtract anyway",
                          inv_columns[c->column].column, item, loc,
                          fmt_dec(c->old_v, 4, a, sizeof a), fmt_dec(c->qty, 4, q, sizeof q));
        }
    }
    return 0;
}

static int rollback_apply(struct rollback *rb)
{
    struct db *db = rb->op->db;
    struct order_row *o = &rb->o;
    int64_t rows = 0;
    int64_t now = host_now_ms();
    enum cpb_status rc;
    int code = rollback_load_inventory(rb);
    if (code == 0) {
        code = rollback_inventory(rb);
    }
    if (code != 0) {
        return code;
    }
    for (size_t i = 0; i < N_DOC_TABLES; i++) {
        rc = sql_exec(db, doc_delete_sql[i], (struct sql_arg[]){sql_int(o->doc_id)}, 1,
                      &rb->doc_rows[i]);
        if (rc != CPB_OK) {
            char what[80];
            snprintf(what, sizeof what, "deleting from %s", doc_tables[i]);
            return rollback_db_failed(rb, rc, what);
        }
    }
    rc = sql_exec(db, "DELETE FROM USER_ORDER_INV WHERE STAGING_ID = ?",
                  (struct sql_arg[]){sql_int(o->id)}, 1, NULL);
    if (rc == CPB_OK) {
        rc = sql_exec(db, "DELETE FROM USER_ORDER_STEP WHERE STAGING_ID = ?",
                      (struct sql_arg[]){sql_int(o->id)}, 1, &rb->step_rows);
    }
    if (rc == CPB_OK) {
        /* CP_DOC_ID and CP_TKT_NO stay on the row for the record (and in
         * the rollback event); `dlq retry` clears them. */
        struct sql_arg a[] = {sql_time(now), sql_int(o->id)};
        rc = sql_exec(db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'ROLLED_BACK', AFTER_PENDING = 0,"
                      " LEASE_TOKEN = NULL, LEASE_OWNER = NULL, LEASE_UNTIL = NULL,"
                      " UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = 'APPLIED'",
                      a, SQL_NARGS(a), &rows);
    }
    if (rc == CPB_OK && rows != 1) {
        return refuse(rb, "the order changed while this ran: look again");
    }
    if (rc == CPB_OK) {
        struct buf msg = BUF_INIT;
        buf_addf(&msg, "%s (document %lld, ticket %s removed",
                 rb->op->o.why != NULL ? rb->op->o.why : "rolled back by hand",
                 (long long)o->doc_id, o->tkt_no);
        if (rb->forced.len > 0) {
            buf_addf(&msg, "; forced past: %s", buf_str(&rb->forced));
        }
        buf_adds(&msg, ")");
        struct staging_event ev = {o->id,
                                   NULL,
                                   "rollback",
                                   NULL,
                                   ST_APPLIED,
                                   ST_ROLLED_BACK,
                                   rb->forced.len > 0 ? "manual.rollback.forced"
                                                      : "manual.rollback",
                                   msg.oom ? rb->op->o.why : buf_str(&msg),
                                   rb->actor,
                                   -1};
        rc = staging_event(db, &ev, now);
        buf_free(&msg);
    }
    if (rc != CPB_OK) {
        return rollback_db_failed(rb, rc, "marking the order rolled back");
    }
    return 0;
}

static void rollback_print(const struct rollback *rb)
{
    char q[48], a[48], b[48];
    printf("%s order %s: document %lld, ticket %s\n",
           rb->dry_run ? "Dry run: rolling back would change" : "Rolled back", rb->label,
           (long long)rb->o.doc_id, rb->o.tkt_no);
    if (rb->forced.len > 0) {
        char shown[1100];
        clean(buf_str(&rb->forced), shown, sizeof shown);
        printf("  forced past: %s\n", shown);
    }
    for (size_t i = 0; i < N_DOC_TABLES; i++) {
        printf("  %-22s %lld row%s deleted\n", doc_tables[i], (long long)rb->doc_rows[i],
               rb->doc_rows[i] == 1 ? "" : "s");
    }
    for (size_t i = 0; i < rb->n_inv; i++) {
        const struct inv_change *c = &rb->inv[i];
        char item[200], loc[200];
        clean(c->item, item, sizeof item);
        clean(c->loc, loc, sizeof loc);
        if (!c->found) {
            printf("  IM_INV %s @ %s %s: row missing, -%s skipped (--force)\n", item, loc,
                   inv_columns[c->column].column, fmt_dec(c->qty, 4, q, sizeof q));
            continue;
        }
        printf("  IM_INV %s @ %s %s: %s -> %s (-%s)%s\n", item, loc, inv_columns[c->column].column,
               fmt_dec(c->old_v, 4, a, sizeof a), fmt_dec(c->new_v, 4, b, sizeof b),
               fmt_dec(c->qty, 4, q, sizeof q),
               c->created ? "; the row was created by cpbridge and is left in place" : "");
    }
    printf("  %-22s %lld row%s deleted\n", "USER_ORDER_INV", (long long)rb->inv_rows,
           rb->inv_rows == 1 ? "" : "s");
    printf("  %-22s %lld row%s deleted (after-commit steps done)\n", "USER_ORDER_STEP",
           (long long)rb->step_rows, rb->step_rows == 1 ? "" : "s");
    printf("  %-22s APPLIED -> ROLLED_BACK, event 'rollback' by %s\n", "USER_ORDER_STAGING",
           rb->actor);
    if (rb->dry_run) {
        printf("Nothing was changed (dry run). Run without --dry-run to roll back.\n");
    } else {
        printf("Done. The store still has the order: `cpbridge dlq %s retry %lld` applies it again,"
               " `cpbridge dlq %s cancel %lld --why TEXT` drops it.\n",
               rb->op->path, (long long)rb->o.id, rb->op->path, (long long)rb->o.id);
    }
}

static int cmd_rollback(struct ops *op)
{
    struct rollback rb;
    char actor[420];
    int64_t id = 0;
    int code;
    enum cpb_status rc;

    if (op->o.nargs != 2) {
        return usage_error(op->v, "give the pipeline file and one order id");
    }
    op->path = op->o.args[0];
    if ((op->o.given & OPT_WHY) != 0 && !text_utf8_valid(op->o.why, strlen(op->o.why))) {
        return usage_error(op->v, "--why is not valid UTF-8");
    }
    code = open_or_fail(op);
    if (code != 0) {
        return code;
    }
    code = resolve_id(op, op->o.args[1], &id);
    if (code != 0) {
        return code;
    }
    actor_of(actor, sizeof actor);
    memset(&rb, 0, sizeof rb);
    rb.op = op;
    rb.dry_run = (op->o.given & OPT_DRY_RUN) != 0;
    rb.force = (op->o.given & OPT_FORCE) != 0;
    rb.actor = actor;
    snprintf(rb.label, sizeof rb.label, "%lld", (long long)id);

    rc = db_begin(op->db);
    if (rc != CPB_OK) {
        code = db_failed(op, "starting a transaction");
        goto out;
    }
    rc = staging_lock(op->db, id, NULL, host_now_ms());
    if (rc == CPB_OK) {
        rc = load_order(op->db, id, &rb.o);
    }
    if (rc == CPB_SKIP) {
        code = fail(op, CPB_EXIT_NOINPUT, "order %lld disappeared", (long long)id);
        goto out;
    }
    if (rc != CPB_OK) {
        code = db_failed(op, "reading the order");
        goto out;
    }
    order_label(&rb.o, rb.label, sizeof rb.label);
    code = rollback_check(&rb);
    if (code == 0) {
        code = rollback_apply(&rb);
    }
    if (code != 0) {
        goto out;
    }
    if (rb.dry_run) {
        rc = db_rollback(op->db);
    } else {
        rc = db_commit(op->db);
    }
    if (rc != CPB_OK) {
        code = db_failed(op, rb.dry_run ? "rolling the dry run back" : "committing");
        goto out;
    }
    rollback_print(&rb);
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    rollback_free(&rb);
    return code;
}

/* ---- entry ------------------------------------------------------------------- */

static const struct verb verbs[] = {
    {"health", usage_health, OPT_HELP | OPT_JSON, cmd_health},
    {"status", usage_status, OPT_HELP | OPT_JSON, cmd_status},
    {"orders", usage_orders, OPT_HELP | OPT_JSON | OPT_STATE | OPT_CHANGED | OPT_LIMIT, cmd_orders},
    {"dlq", usage_dlq, OPT_HELP | OPT_JSON | OPT_ALL | OPT_REASON | OPT_WHY, cmd_dlq},
    {"rollback", usage_rollback, OPT_HELP | OPT_DRY_RUN | OPT_FORCE | OPT_WHY, cmd_rollback},
};

static const struct verb *find_verb(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(verbs[i].name, name) == 0) {
            return &verbs[i];
        }
    }
    return NULL;
}

bool ops_has(const char *verb)
{
    return find_verb(verb) != NULL;
}

int ops_main(const char *verb, int argc, char **argv)
{
    const struct verb *v = find_verb(verb);
    struct ops op;
    int code;
    if (v == NULL) {
        fprintf(stderr, "cpbridge: '%s' is not an operations command\n", verb != NULL ? verb : "");
        return CPB_EXIT_USAGE;
    }
    memset(&op, 0, sizeof op);
    op.v = v;
    code = parse_opts(v, argc, argv, &op.o);
    if (code != 0) {
        return code;
    }
    if ((op.o.given & OPT_HELP) != 0) {
        fputs(v->usage, stdout);
        return CPB_EXIT_OK;
    }
    op.now = host_now_ms();
    code = v->run(&op);
    fflush(stdout);
    db_close(op.db);
    config_free(op.cfg);
    return code;
}
