/*
 * ops_common.h — what the operations commands (cmd_health.c, cmd_status.c,
 * cmd_orders.c, cmd_dlq.c, cmd_rollback.c) share: the command line and its
 * options, connecting, reading rows, printing untrusted text for a person
 * or as JSON, and the queries over one order or a list of orders. Internal
 * to core/cli; ops.h is the face main.c sees.
 *
 * Ownership: every `struct ops` member is owned by ops_main (it closes the
 * database and frees the configuration after the command); json_t results
 * are new references the caller owns; out[n] buffers are the caller's.
 */
#ifndef CPB_OPS_COMMON_H
#define CPB_OPS_COMMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "services/db.h"
#include "services/sql.h"

struct config;
struct buf;

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
    OPT_FORCE = 1u << 9,
    OPT_FIX = 1u << 10,
    OPT_NAGIOS = 1u << 11,
    OPT_SINCE = 1u << 12,
    OPT_OUTPUT = 1u << 13
};

struct verb;

struct opts {
    unsigned given; /* enum opt_bit */
    const char *state;
    const char *limit;
    const char *reason;
    const char *why;
    const char *since;
    const char *output;
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
    struct buf *quiet; /* not NULL: ops_fail writes its message here, not on
                          stderr (a run's automatic rollback; borrowed) */
};

struct verb {
    const char *name;
    const char *usage;
    unsigned allowed; /* enum opt_bit */
    int (*run)(struct ops *op);
};

/* The commands; ops.c holds the table of them. */
extern const struct verb ops_verb_health, ops_verb_status, ops_verb_orders, ops_verb_dlq,
    ops_verb_rollback, ops_verb_drift, ops_verb_report, ops_verb_records;

/* ---- messages ------------------------------------------------------------- */

/* Print "cpbridge VERB: message", a blank line and the usage on stderr;
 * returns CPB_EXIT_USAGE. */
int ops_usage_error(const struct verb *v, const char *fmt, ...) CPB_PRINTF(2, 3);

/* Print "cpbridge VERB: message" on stderr (into op->quiet instead, when
 * set) and return `code`. */
int ops_fail(const struct ops *op, int code, const char *fmt, ...) CPB_PRINTF(3, 4);

/* ---- text from the database ------------------------------------------------ */

/* Copy untrusted text `s` into out[n] for a terminal: control bytes and
 * invalid UTF-8 become "\xNN", cut between characters. NULL gives "". */
void ops_clean(const char *s, char *out, size_t n);
/* A JSON string of cleaned text, or JSON null. */
json_t *ops_jtext(const char *cleaned, bool is_null);
/* A UTC time as "YYYY-MM-DDTHH:MM:SSZ" in out[n], "-" without one. */
const char *ops_fmt_when(int64_t ms, bool has, char *out, size_t n);
json_t *ops_jwhen(int64_t ms, bool has);
/* A duration for people: "45s", "12m", "5h", "3d". */
const char *ops_fmt_age(int64_t ms, char *out, size_t n);
/* Ten-thousandths `v` with `decimals` places. */
const char *ops_fmt_dec(int64_t v, int decimals, char *out, size_t n);
json_t *ops_jdec(int64_t v, bool is_null);
/* Pretty JSON on stdout; the reference stays the caller's. */
void ops_print_json(json_t *j);

/* Row reader: reads columns in order; after the first failure it does
 * nothing and keeps the status. */
struct rd {
    struct cpb_stmt *st;
    enum cpb_status rc;
    unsigned col;
};

/* Each reads the next column (cleaned text, raw text the caller frees, an
 * integer, ten-thousandths, a time in ms); is_null/has may be NULL. */
void ops_rd_text(struct rd *r, char *out, size_t n, bool *is_null);
void ops_rd_raw(struct rd *r, char **out);
void ops_rd_int(struct rd *r, int64_t *v, bool *is_null);
void ops_rd_dec(struct rd *r, int64_t *v, bool *is_null);
void ops_rd_time(struct rd *r, int64_t *v, bool *has);

/* "SELECT cols rest" with at most `limit` rows, the dialect's way (LIMIT ?
 * or TOP (?)); `args` (n <= 7) bound in order. On CPB_OK *st (the caller's,
 * db_finalize) is ready for db_fetch. */
enum cpb_status ops_query_limited(struct db *db, const char *cols, const char *rest,
                                  const struct sql_arg *args, size_t n, int64_t limit,
                                  struct cpb_stmt **st);

/* ---- connecting -------------------------------------------------------------- */

/* Load op->path into op->cfg and connect op->db with the schema checked.
 * Returns 0, or -1 with err; *schema_old tells a missing or old schema. */
int ops_connect(struct ops *op, bool *schema_old, struct err *err);
/* ops_connect for the commands other than health; prints the failure and
 * returns its exit code, or 0. */
int ops_open_or_fail(struct ops *op);
/* A failed statement: prints the database's message, returns
 * CPB_EXIT_UNAVAILABLE. */
int ops_db_failed(const struct ops *op, const char *what);

/* ---- orders ------------------------------------------------------------------- */

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

/* Read a row of ORDER_COLS. */
enum cpb_status ops_read_order(struct cpb_stmt *st, struct order_row *o);
/* Load one staging row: CPB_SKIP when it does not exist. */
enum cpb_status ops_load_order(struct db *db, int64_t id, struct order_row *o);
/* The next row of an ORDER_COLS query into *o; *done at the end. Returns
 * 0, or CPB_EXIT_UNAVAILABLE with the message printed. */
int ops_next_order(const struct ops *op, struct cpb_stmt *st, struct order_row *o, bool *done);
/* Inside the caller's transaction: lock staging row `id` (staging_lock)
 * and load it into *o. Returns 0, or CPB_EXIT_NOINPUT (it disappeared) or
 * CPB_EXIT_UNAVAILABLE with the message printed. */
int ops_lock_order(const struct ops *op, int64_t id, int64_t now, struct order_row *o);
/* True while a runner holds the order's lease. */
bool ops_lease_live(const struct order_row *o, int64_t now);
/* "12 (woo:1234)" in out[n]. */
const char *ops_order_label(const struct order_row *o, char *out, size_t n);
json_t *ops_order_json(const struct order_row *o, int64_t now);
/* ID (a staging id, or SOURCE:EXTERNAL_ID) to a staging id: 0, or an exit
 * code with the message printed. */
int ops_resolve_id(struct ops *op, const char *text, int64_t *id);
/* The orders matching `where` (with `args`), oldest first; limit < 0: all.
 * Prints a table (or `empty` when there are none), or appends to `arr`.
 * Returns 0 or an exit code. */
int ops_order_list(struct ops *op, const char *where, const struct sql_arg *args, size_t n,
                   int64_t limit, json_t *arr, const char *empty);
/* An order's whole story (`orders show`, `dlq show`). Returns an exit code. */
int ops_show_order(struct ops *op, const char *id_text);
/* The IM_INV quantity columns update-qty may write (rollback and drift
 * change them): a column name recorded in USER_ORDER_INV must be one of
 * these before any SQL is chosen by it. */
struct ops_inv_column {
    const char *column;
    const char *subtract_sql; /* quantity, item, location */
    const char *read_sql;     /* item, location */
};
#define OPS_N_INV_COLUMNS 2
extern const struct ops_inv_column ops_inv_columns[OPS_N_INV_COLUMNS];
/* The index of column `name` in ops_inv_columns, or -1. */
int ops_inv_column_index(const char *name);

/* The USER_SYNC_STATE key of pipeline `name`'s last drift check (a JSON
 * object: checked (ms), found, left), in out[n]. */
void ops_drift_state_key(const char *name, char *out, size_t n);

/* Who is acting, for the audit trail: $SUDO_USER, $USER, the login name or
 * "unknown", cleaned and cut to 100 characters, in out[n]. */
void ops_actor_of(char *out, size_t n);

#endif
