/*
 * validate.c — the "validate" step stage: checks a staged WooCommerce order
 * against Counterpoint's master data before anything is written, and hands
 * create-order what it resolved (customer, stock location, item numbers).
 *
 * Every check runs and every failure is collected; the first failure's code
 * is the reason code and the message lists them all (cut to about 480
 * characters), each part naming the line or field and what to do:
 *   payload.malformed   the normalizer listed problems (checked alone: the
 *                       other checks would only repeat them)
 *   field.missing       no lines, no total, neither billing name nor email
 *   field.too_long      the order number does not fit ref_column
 *   customer.missing    nothing identifies a customer
 *   customer.unknown    the web customer or email matches no AR_CUST row
 *   item.unknown        a line without a SKU, or a SKU no item matches
 *   item.inactive       IM_ITEM.STAT is not 'A'
 *   qty.invalid         a quantity that is not positive
 *   qty.too_large       a quantity above max_qty
 *   date.missing / date.future / date.too_old
 *   currency.mismatch   the order is not in the store's currency (`currency`)
 *   totals.mismatch     lines + shipping + fees + tax differ from the total
 *   price.mismatch      (price_check = fail) a line's price is off the
 *                       catalogue price by more than price_tolerance
 *   duplicate.document  (on_existing_document = fail) the order already has
 *                       a Counterpoint document
 *
 * Matching follows Counterpoint's case-insensitive, trailing-space-blind
 * collations: values are trimmed and upper-cased (ASCII) in C, and compared
 * with UPPER(LTRIM(RTRIM(column))) in SQL (LTRIM/RTRIM rather than TRIM, which
 * SQL Server has only since 2017). Items are first looked up by exact key
 * (an index seek on every database), and only on a miss by the normalized
 * comparison. The exact lookups of all an order's lines are batched: one
 * USER_ITEM_MAP query for the SKUs and one IM_ITEM query for the item
 * numbers (SKU IN (...), ITEM_NO IN (...), padded with NULLs to a few fixed
 * sizes), rows matched back to lines in C (byte for byte first, else after
 * folding, which is what a case-insensitive collation returned); a line
 * still missed gets its own normalized query, as before.
 *
 * The price check compares the line's price before discounts (subtotal /
 * quantity) with the catalogue price: WooCommerce's line total is after
 * coupons, so comparing it would flag every discounted order.
 *
 * Results put into rec->result on success: "cp_cust_no" (string),
 * "cp_stk_loc_id" (string), "cp_items" (array of ITEM_NO, one per line, in
 * line order) and, when the order already has a document and
 * on_existing_document = adopt, "cp_adopt_doc_id" (integer).
 *
 * All SQL is portable (SQLite, PostgreSQL, SQL Server) with every value
 * bound; no statement differs by dialect.
 */
#include <cpbridge/stage.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_util.h"

/* Longest message handed to host->reason (LAST_ERROR holds 500 with the
 * stage prefix the runner adds). */
#define VALIDATE_MSG_MAX 480
/* Characters of untrusted text quoted in a message. */
#define VALIDATE_QUOTE_CHARS 40
/* Counterpoint column lengths (bytes). */
#define LEN_ITEM_NO    20
#define LEN_CUST_NO    15
#define LEN_LOC_ID     10
#define LEN_STR_ID     10
#define LEN_REF        50
#define LEN_CUST_PO_NO 20
#define LEN_MAP_SKU    100
/* The IN-list sizes of the batched item lookups (ascending; the largest,
 * IN_MAX, plus IN_FIXED_MAX other parameters stays under SQLite's oldest
 * limit of 999 bound parameters, and SQL Server's 2100). */
#define IN_SIZES     4
#define IN_MAX       512
#define IN_FIXED_MAX 4
static const unsigned in_sizes[IN_SIZES] = {8, 32, 128, IN_MAX};
/* Room for the longest IN-list statement text. */
#define VALIDATE_SQL_MAX 2048
/* Ten-thousandths per unit. */
#define SCALE 10000
/* Largest |amount| in ten-thousandths accepted from the order (9e14). */
#define MONEY_LIMIT INT64_C(900000000000000)

enum price_check { PRICE_OFF = 0, PRICE_WARN = 1, PRICE_FAIL = 2 };
enum on_existing { EXISTING_ADOPT = 0, EXISTING_FAIL = 1 };
enum ref_column { REF_REF = 0, REF_CUST_PO_NO = 1 };

struct validate_options {
    const char *store;
    const char *location;
    const char *walk_in_customer;
    bool allow_walk_in;
    int64_t max_qty; /* ten-thousandths */
    int64_t future_tolerance_ms;
    const char *date_floor;   /* "YYYY-MM-DD" UTC */
    int price_check;          /* enum price_check */
    int64_t price_tolerance;  /* ten-thousandths per unit */
    int on_existing_document; /* enum on_existing */
    int ref_column;           /* enum ref_column */
    const char *currency;     /* ISO 4217 code the store's prices are in */
};

static const char *const price_check_choices[] = {"off", "warn", "fail", NULL};
static const char *const on_existing_choices[] = {"adopt", "fail", NULL};
static const char *const ref_column_choices[] = {"REF", "CUST_PO_NO", NULL};

static const struct cpb_option validate_options_table[] = {
    {.name = "store",
     .type = CPB_OPT_STRING,
     .default_value = "WEB",
     .min = 1,
     .max = LEN_STR_ID,
     .offset = offsetof(struct validate_options, store),
     .help = "Counterpoint store (PS_STR_CFG_PS.STR_ID) whose configuration gives the"
             " defaults."},
    {.name = "location",
     .type = CPB_OPT_STRING,
     .min = 1,
     .max = LEN_LOC_ID,
     .offset = offsetof(struct validate_options, location),
     .help = "Stock and price location (IM_LOC.LOC_ID); default: the store's"
             " PS_STR_CFG_PS.STK_LOC_ID."},
    {.name = "walk_in_customer",
     .type = CPB_OPT_STRING,
     .min = 1,
     .max = LEN_CUST_NO,
     .offset = offsetof(struct validate_options, walk_in_customer),
     .help = "Customer for orders no customer matches, when allow_walk_in is on; default: the"
             " store's PS_STR_CFG_PS.WALK_IN_CUST_NO."},
    {.name = "allow_walk_in",
     .type = CPB_OPT_BOOL,
     .default_value = "false",
     .offset = offsetof(struct validate_options, allow_walk_in),
     .help = "Book orders whose customer is not found on the walk-in customer instead of"
             " holding them."},
    {.name = "max_qty",
     .type = CPB_OPT_DECIMAL,
     .default_value = "1000",
     .min = 1,
     .max = INT64_C(10000000000000),
     .offset = offsetof(struct validate_options, max_qty),
     .help = "Largest quantity accepted on one line."},
    {.name = "future_tolerance",
     .type = CPB_OPT_DURATION,
     .default_value = "1h",
     .min = 0,
     .max = INT64_C(2592000000),
     .offset = offsetof(struct validate_options, future_tolerance_ms),
     .help = "How far an order's creation time may be ahead of the engine's clock."},
    {.name = "date_floor",
     .type = CPB_OPT_STRING,
     .default_value = "2015-01-01",
     .min = 10,
     .max = 10,
     .offset = offsetof(struct validate_options, date_floor),
     .help = "Orders created before this UTC date (YYYY-MM-DD) are refused."},
    {.name = "price_check",
     .type = CPB_OPT_ENUM,
     .default_value = "warn",
     .choices = price_check_choices,
     .offset = offsetof(struct validate_options, price_check),
     .help = "Compare each line's price before discounts with the catalogue price (IM_PRC"
             " PRC_1 at the location, else IM_ITEM.PRC_1): off, warn (log and raise"
             " order.warning) or fail."},
    {.name = "price_tolerance",
     .type = CPB_OPT_DECIMAL,
     .default_value = "0.01",
     .min = 0,
     .max = INT64_C(10000000000),
     .offset = offsetof(struct validate_options, price_tolerance),
     .help = "Largest accepted difference per unit between the order's and the catalogue's"
             " price."},
    {.name = "on_existing_document",
     .type = CPB_OPT_ENUM,
     .default_value = "adopt",
     .choices = on_existing_choices,
     .offset = offsetof(struct validate_options, on_existing_document),
     .help = "When Counterpoint already has an order document for the order number: adopt it"
             " (nothing is written) or fail."},
    {.name = "ref_column",
     .type = CPB_OPT_ENUM,
     .default_value = "REF",
     .choices = ref_column_choices,
     .offset = offsetof(struct validate_options, ref_column),
     .help = "PS_DOC_HDR column holding the web order number; must match create-order's."},
    {.name = "currency",
     .type = CPB_OPT_STRING,
     .default_value = "USD",
     .min = 3,
     .max = 3,
     .offset = offsetof(struct validate_options, currency),
     .help = "Currency (ISO 4217 code) of Counterpoint's prices: an order in another currency"
             " is held (currency.mismatch), never booked as if it were this one."},
    {.name = NULL},
};

/* The duplicate lookup, by ref_column (a fixed list: never config text). */
static const char *const duplicate_sql[] = {
    [REF_REF] = "SELECT DOC_ID FROM PS_DOC_HDR WHERE REF = ? AND DOC_TYP = ? ORDER BY DOC_ID",
    [REF_CUST_PO_NO] =
        "SELECT DOC_ID FROM PS_DOC_HDR WHERE CUST_PO_NO = ? AND DOC_TYP = ? ORDER BY DOC_ID",
};

static const char store_sql[] =
    "SELECT STK_LOC_ID, WALK_IN_CUST_NO FROM PS_STR_CFG_PS WHERE STR_ID = ?";
static const char customer_map_sql[] =
    "SELECT m.CUST_NO, c.CUST_NO FROM USER_CUSTOMER_MAP m LEFT JOIN AR_CUST c"
    " ON c.CUST_NO = m.CUST_NO WHERE m.SOURCE = ? AND m.WOO_CUSTOMER_ID = ? AND m.IS_ACTIVE = ?";
static const char customer_email_sql[] =
    "SELECT CUST_NO FROM AR_CUST WHERE UPPER(LTRIM(RTRIM(EMAIL_ADRS_1))) = ?"
    " ORDER BY CASE WHEN IS_ECOMM_CUST = ? THEN 0 ELSE 1 END, CUST_NO";
/* The IN-list statements are built at init, one text per size in in_sizes
 * (the unused places bound to NULL), so the host's statement cache keeps
 * few texts. Map: SKU, ITEM_NO by folded SKU. */
static const char item_map_head[] = "SELECT SKU, ITEM_NO FROM USER_ITEM_MAP WHERE SKU IN (";
/* Item, status and both catalogue prices; parameters: location, the three
 * grid dimensions ('*'), then the item numbers. */
static const char item_in_head[] =
    "SELECT i.ITEM_NO, i.STAT, p.PRC_1, i.PRC_1 FROM IM_ITEM i LEFT JOIN IM_PRC p"
    " ON p.ITEM_NO = i.ITEM_NO AND p.LOC_ID = ? AND p.DIM_1_UPR = ? AND p.DIM_2_UPR = ?"
    " AND p.DIM_3_UPR = ? WHERE i.ITEM_NO IN (";
/* The fallback for a line the exact lookup missed; parameters as above,
 * then the folded item number. */
static const char item_folded_sql[] =
    "SELECT i.ITEM_NO, i.STAT, p.PRC_1, i.PRC_1 FROM IM_ITEM i LEFT JOIN IM_PRC p"
    " ON p.ITEM_NO = i.ITEM_NO AND p.LOC_ID = ? AND p.DIM_1_UPR = ? AND p.DIM_2_UPR = ?"
    " AND p.DIM_3_UPR = ? WHERE UPPER(LTRIM(RTRIM(i.ITEM_NO))) = ? ORDER BY i.ITEM_NO";

struct validate_state {
    const struct cpb_host *host;               /* borrowed until fini */
    struct cpb_ctx *ctx;                       /* borrowed until fini */
    const struct validate_options *opt;        /* borrowed until fini */
    int64_t floor_ms;                          /* date_floor as UTC ms */
    bool store_loaded;                         /* the two below are known */
    char location[LEN_LOC_ID + 1];             /* the stock location in use */
    char walk_in[LEN_CUST_NO + 1];             /* "" when none is configured */
    char map_sql[IN_SIZES][VALIDATE_SQL_MAX];  /* item_map_head + IN list */
    char item_sql[IN_SIZES][VALIDATE_SQL_MAX]; /* item_in_head + IN list */
};

/* The failures of one order: the first code, and the parts listed so far. */
struct failures {
    char code[48];
    char msg[VALIDATE_MSG_MAX + 1];
    size_t len;
    unsigned count;  /* failures found */
    unsigned listed; /* failures in msg */
    bool full;       /* msg has no room for more */
};

/* ---- small helpers ------------------------------------------------------ */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim ASCII space and upper-case ASCII letters of s into out. Returns 0,
 * or -1 when the result does not fit into outlen bytes. */
static int fold(const char *s, char *out, size_t outlen)
{
    size_t start = 0;
    size_t end = 0;
    if (s == NULL) {
        s = "";
    }
    end = strlen(s);
    while (start < end && is_space(s[start])) {
        start++;
    }
    while (end > start && is_space(s[end - 1])) {
        end--;
    }
    if (end - start + 1 > outlen) {
        return -1;
    }
    for (size_t i = start; i < end; i++) {
        char c = s[i];
        out[i - start] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    out[end - start] = '\0';
    return 0;
}

/* An amount in ten-thousandths as text: "12.34", or "12.3456" when it has
 * more than two decimals. */
static void money_text(int64_t v, char *out, size_t outlen)
{
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t frac = a % SCALE;
    if (frac % 100 == 0) {
        snprintf(out, outlen, "%s%" PRIu64 ".%02" PRIu64, v < 0 ? "-" : "", a / SCALE, frac / 100);
    } else {
        snprintf(out, outlen, "%s%" PRIu64 ".%04" PRIu64, v < 0 ? "-" : "", a / SCALE, frac);
    }
}

/* A quantity in ten-thousandths as text, without trailing zero decimals. */
static void qty_text(int64_t v, char *out, size_t outlen)
{
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t frac = a % SCALE;
    if (frac == 0) {
        snprintf(out, outlen, "%s%" PRIu64, v < 0 ? "-" : "", a / SCALE);
        return;
    }
    char f[8];
    snprintf(f, sizeof f, "%04" PRIu64, frac);
    for (size_t n = strlen(f); n > 0 && f[n - 1] == '0'; n--) {
        f[n - 1] = '\0';
    }
    snprintf(out, outlen, "%s%" PRIu64 ".%s", v < 0 ? "-" : "", a / SCALE, f);
}

/* round_half_away(num * SCALE / den) for den > 0; -1 on overflow. */
static int per_unit(int64_t num, int64_t den, int64_t *out)
{
    int64_t scaled = 0;
    if (den <= 0 || __builtin_mul_overflow(num, (int64_t)SCALE, &scaled)) {
        return -1;
    }
    *out = stage_div_round(scaled, den);
    return 0;
}

/* ---- failures ----------------------------------------------------------- */

static void fail_add(struct failures *f, const char *code, const char *fmt, ...) CPB_PRINTF(3, 4);

/* Record one failure: the first one's code wins; the text is appended when
 * it fits (the message keeps room for the "(and N more)" tail). */
static void fail_add(struct failures *f, const char *code, const char *fmt, ...)
{
    char part[VALIDATE_MSG_MAX + 1];
    const size_t room = VALIDATE_MSG_MAX - 24;
    va_list ap;

    if (f->count == 0) {
        snprintf(f->code, sizeof f->code, "%s", code);
    }
    f->count++;
    if (f->full) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(part, sizeof part, fmt, ap);
    va_end(ap);
    size_t sep = f->len > 0 ? 2 : 0;
    size_t plen = strlen(part);
    if (f->len + sep + plen > room) {
        if (f->listed > 0) {
            f->full = true;
            return;
        }
        /* The first part alone is too long: cut it on a character. */
        plen = stage_utf8_floor(part, room - 3);
        memcpy(part + plen, "...", 4);
        plen += 3;
        f->full = true;
    }
    if (sep > 0) {
        memcpy(f->msg + f->len, "; ", 2);
        f->len += 2;
    }
    memcpy(f->msg + f->len, part, plen);
    f->len += plen;
    f->msg[f->len] = '\0';
    f->listed++;
}

/* Hand the collected failures to the host as the reason. */
static void fail_report(struct validate_state *st, const struct failures *f)
{
    if (f->count > f->listed) {
        st->host->reason(st->ctx, f->code, "%s (and %u more)", f->msg, f->count - f->listed);
    } else {
        st->host->reason(st->ctx, f->code, "%s", f->msg);
    }
}

/* ---- the store ---------------------------------------------------------- */

/* Learn the location and walk-in customer from the options or, where they
 * are not set, from PS_STR_CFG_PS (once per instance). */
static enum cpb_status load_store(struct validate_state *st)
{
    const struct validate_options *o = st->opt;
    struct cpb_stmt *stmt = NULL;
    const char *loc = NULL;
    const char *walk = NULL;
    char q[VALIDATE_QUOTE_CHARS * 4 + 8];
    enum cpb_status rc = CPB_OK;

    if (st->store_loaded) {
        return CPB_OK;
    }
    if (o->location != NULL && (o->walk_in_customer != NULL || !o->allow_walk_in)) {
        snprintf(st->location, sizeof st->location, "%s", o->location);
        snprintf(st->walk_in, sizeof st->walk_in, "%s",
                 o->walk_in_customer != NULL ? o->walk_in_customer : "");
        st->store_loaded = true;
        return CPB_OK;
    }
    const struct stage_arg key[] = {stage_arg_text(o->store)};
    rc = stage_db_query(st->host, st->ctx, store_sql, key, STAGE_NARGS(key), &stmt);
    if (rc == CPB_SKIP) {
        st->host->reason(st->ctx, "store.unknown",
                         "store '%s' has no row in PS_STR_CFG_PS: fix validate's store option,"
                         " or set its location and walk_in_customer options",
                         o->store);
        rc = CPB_FAIL;
        goto out;
    }
    if (rc == CPB_OK) {
        rc = st->host->db_col_text(stmt, 1, &loc);
    }
    if (rc == CPB_OK && o->location == NULL) {
        if (loc == NULL || loc[0] == '\0' || stage_copy(loc, st->location, sizeof st->location)) {
            stage_quote(loc, VALIDATE_QUOTE_CHARS, q, sizeof q);
            st->host->reason(st->ctx, "store.no_location",
                             "store '%s' has no usable PS_STR_CFG_PS.STK_LOC_ID ('%s'): set it,"
                             " or set validate's location option",
                             o->store, q);
            rc = CPB_FAIL;
            goto out;
        }
    } else if (rc == CPB_OK) {
        snprintf(st->location, sizeof st->location, "%s", o->location);
    }
    if (rc == CPB_OK) {
        rc = st->host->db_col_text(stmt, 2, &walk);
    }
    if (rc == CPB_OK) {
        if (o->walk_in_customer != NULL) {
            snprintf(st->walk_in, sizeof st->walk_in, "%s", o->walk_in_customer);
        } else if (stage_copy(walk, st->walk_in, sizeof st->walk_in) != 0) {
            st->walk_in[0] = '\0';
        }
        st->store_loaded = true;
    }
out:
    st->host->db_finalize(stmt);
    return rc;
}

/* ---- the checks --------------------------------------------------------- */

static void check_required(json_t *order, struct failures *f)
{
    json_t *billing = json_object_get(order, "billing");
    if (json_array_size(json_object_get(order, "lines")) == 0) {
        fail_add(f, "field.missing", "the order has no line items: complete it in the store");
    }
    if (!json_is_integer(json_object_get(json_object_get(order, "totals"), "total"))) {
        fail_add(f, "field.missing", "the order has no total: check the store's export");
    }
    if (stage_json_str(billing, "name")[0] == '\0' && stage_json_str(billing, "email")[0] == '\0') {
        fail_add(f, "field.missing",
                 "billing has neither a name nor an email: add one to the order in the store");
    }
}

/* The order must be in the store's currency: amounts are booked as they are. */
static void check_currency(const struct validate_state *st, json_t *order, struct failures *f)
{
    const char *cur = stage_json_str(order, "currency");
    char q[VALIDATE_QUOTE_CHARS * 4 + 8];
    if (strcmp(cur, st->opt->currency) == 0) {
        return;
    }
    if (cur[0] == '\0') {
        fail_add(f, "currency.mismatch",
                 "the order names no currency; Counterpoint's prices are in %s: check the"
                 " store's export",
                 st->opt->currency);
        return;
    }
    stage_quote(cur, VALIDATE_QUOTE_CHARS, q, sizeof q);
    fail_add(f, "currency.mismatch",
             "the order is in '%s', Counterpoint's prices are in %s: book it by hand or convert"
             " it in the store",
             q, st->opt->currency);
}

/* Resolve the customer into cust (LEN_CUST_NO + 1 bytes; "" on failure). */
static enum cpb_status check_customer(struct validate_state *st, struct cpb_record *rec,
                                      json_t *order, struct failures *f, char *cust)
{
    struct cpb_stmt *stmt = NULL;
    int64_t web_id = stage_json_int(order, "customer_id", 0);
    const char *email = stage_json_str(order, "email");
    char folded[4 * 50 + 1];
    char q[VALIDATE_QUOTE_CHARS * 4 + 8];
    const char *mapped = NULL;
    const char *found = NULL;
    enum cpb_status rc = CPB_OK;

    cust[0] = '\0';
    if (web_id > 0) {
        const struct stage_arg a[] = {stage_arg_text(rec->source != NULL ? rec->source : ""),
                                      stage_arg_int(web_id), stage_arg_int(1)};
        rc = stage_db_query(st->host, st->ctx, customer_map_sql, a, STAGE_NARGS(a), &stmt);
        if (rc == CPB_OK) {
            rc = st->host->db_col_text(stmt, 1, &mapped);
        }
        if (rc == CPB_OK) {
            rc = st->host->db_col_text(stmt, 2, &found);
        }
        if (rc == CPB_OK) {
            if (found == NULL || stage_copy(found, cust, LEN_CUST_NO + 1) != 0) {
                stage_quote(mapped, VALIDATE_QUOTE_CHARS, q, sizeof q);
                cust[0] = '\0';
                fail_add(f, "customer.unknown",
                         "USER_CUSTOMER_MAP maps web customer %" PRId64
                         " to '%s', which is not in AR_CUST: fix the map or add the customer",
                         web_id, q);
            }
            goto out;
        }
        if (rc != CPB_SKIP) {
            goto out;
        }
        rc = CPB_OK;
    }
    if (email[0] != '\0') {
        if (fold(email, folded, sizeof folded) == 0) {
            st->host->db_finalize(stmt);
            stmt = NULL;
            const struct stage_arg v[] = {stage_arg_text(folded), stage_arg_text("Y")};
            rc = stage_db_query(st->host, st->ctx, customer_email_sql, v, STAGE_NARGS(v), &stmt);
            if (rc == CPB_OK) {
                rc = st->host->db_col_text(stmt, 1, &found);
            }
            if (rc == CPB_OK && found != NULL && stage_copy(found, cust, LEN_CUST_NO + 1) == 0) {
                goto out;
            }
            if (rc != CPB_OK && rc != CPB_SKIP) {
                goto out;
            }
            rc = CPB_OK;
            cust[0] = '\0';
        }
    }
    if (st->opt->allow_walk_in) {
        if (st->walk_in[0] == '\0') {
            fail_add(f, "customer.missing",
                     "allow_walk_in is on but store '%s' has no walk-in customer: set"
                     " PS_STR_CFG_PS.WALK_IN_CUST_NO or validate's walk_in_customer option",
                     st->opt->store);
        } else {
            snprintf(cust, LEN_CUST_NO + 1, "%s", st->walk_in);
        }
        goto out;
    }
    stage_quote(email, VALIDATE_QUOTE_CHARS, q, sizeof q);
    if (email[0] == '\0' && web_id == 0) {
        fail_add(f, "customer.missing",
                 "the order has neither a billing email nor a customer account: add the email"
                 " in the store, or set validate's allow_walk_in");
    } else if (email[0] == '\0') {
        fail_add(f, "customer.missing",
                 "web customer %" PRId64 " is not in USER_CUSTOMER_MAP and the order has no"
                 " billing email: map the customer",
                 web_id);
    } else if (web_id > 0) {
        fail_add(f, "customer.unknown",
                 "no AR_CUST customer has email '%s' and web customer %" PRId64
                 " is not mapped: add the customer or map it in USER_CUSTOMER_MAP",
                 q, web_id);
    } else {
        fail_add(f, "customer.unknown",
                 "no AR_CUST customer has email '%s': add the customer in Counterpoint, or set"
                 " validate's allow_walk_in",
                 q);
    }
out:
    st->host->db_finalize(stmt);
    return rc;
}

/* What an item lookup found. */
struct item_row {
    char item_no[LEN_ITEM_NO + 1];
    char stat[8];
    bool has_price;
    int64_t price; /* IM_PRC.PRC_1 at the location, else IM_ITEM.PRC_1 */
};

/* How a row returned by an IN list matches a line's value: not at all, only
 * after folding the row's value (what a case-insensitive or pad-blind
 * collation calls equal), or byte for byte. A better match replaces a worse
 * one; among equal ones the first row wins, as with one query per line. */
enum match { MATCH_NONE = 0, MATCH_FOLDED = 1, MATCH_EXACT = 2 };

/* One line of the order while its items are resolved. */
struct line_item {
    char key[4 * LEN_MAP_SKU + 1]; /* the folded SKU; "" when none or too long */
    char cand[LEN_ITEM_NO + 1];    /* the item number looked up; "" when none */
    int map_match;                 /* enum match of the USER_ITEM_MAP row */
    bool map_usable;               /* that row's ITEM_NO folds into map_item */
    char map_item[LEN_ITEM_NO + 1];
    int item_match; /* enum match of the IM_ITEM row */
    struct item_row row;
};

/* The match of `value` (borrowed; NULL matches nothing) with the folded
 * `want`. */
static int match_of(const char *value, const char *want)
{
    char folded[4 * LEN_MAP_SKU + 1];
    if (value == NULL || want[0] == '\0') {
        return MATCH_NONE;
    }
    if (strcmp(value, want) == 0) {
        return MATCH_EXACT;
    }
    if (fold(value, folded, sizeof folded) == 0 && strcmp(folded, want) == 0) {
        return MATCH_FOLDED;
    }
    return MATCH_NONE;
}

/* Build "<head>?, ?, ... ?<tail>" with n placeholders into out. Returns 0,
 * or -1 when it does not fit. */
static int build_in_sql(char *out, size_t outlen, const char *head, unsigned n, const char *tail)
{
    int w = snprintf(out, outlen, "%s", head);
    size_t len = 0;
    if (w < 0 || (size_t)w >= outlen) {
        return -1;
    }
    len = (size_t)w;
    for (unsigned i = 0; i < n; i++) {
        w = snprintf(out + len, outlen - len, "%s?", i > 0 ? ", " : "");
        if (w < 0 || (size_t)w >= outlen - len) {
            return -1;
        }
        len += (size_t)w;
    }
    w = snprintf(out + len, outlen - len, "%s", tail);
    if (w < 0 || (size_t)w >= outlen - len) {
        return -1;
    }
    return 0;
}

/* Called for each row of an IN-list query, with the lines to match it to. */
typedef enum cpb_status (*in_row_fn)(struct validate_state *st, struct cpb_stmt *stmt,
                                     struct line_item *lines, size_t nlines);

/* Run the IN-list statement family `sqls` (one text per IN_SIZES entry)
 * for the values vals[0..n) (borrowed), in chunks of at most IN_MAX padded
 * with NULLs to the next fixed size, after the nfixed arguments `fixed`
 * (borrowed); on_row sees every row. Returns CPB_OK or a database status. */
static enum cpb_status run_in(struct validate_state *st, char (*sqls)[VALIDATE_SQL_MAX],
                              const struct stage_arg *fixed, unsigned nfixed,
                              const char *const *vals, size_t n, in_row_fn on_row,
                              struct line_item *lines, size_t nlines)
{
    struct stage_arg args[IN_FIXED_MAX + IN_MAX];
    struct cpb_stmt *stmt = NULL;
    enum cpb_status rc = CPB_OK;

    for (size_t off = 0; off < n; off += IN_MAX) {
        size_t m = n - off < IN_MAX ? n - off : IN_MAX;
        unsigned size_idx = 0;
        while (in_sizes[size_idx] < m) {
            size_idx++;
        }
        unsigned size = in_sizes[size_idx];
        for (unsigned i = 0; i < nfixed; i++) {
            args[i] = fixed[i];
        }
        for (unsigned i = 0; i < size; i++) {
            args[nfixed + i] = stage_arg_text(i < m ? vals[off + i] : NULL);
        }
        rc = stage_db_query(st->host, st->ctx, sqls[size_idx], args, nfixed + size, &stmt);
        while (rc == CPB_OK) {
            rc = on_row(st, stmt, lines, nlines);
            if (rc == CPB_OK) {
                rc = st->host->db_fetch(stmt);
            }
        }
        st->host->db_finalize(stmt);
        stmt = NULL;
        if (rc != CPB_SKIP) {
            goto out;
        }
        rc = CPB_OK;
    }
out:
    return rc;
}

/* One USER_ITEM_MAP row (SKU, ITEM_NO): given to the lines whose key it
 * matches. */
static enum cpb_status map_row(struct validate_state *st, struct cpb_stmt *stmt,
                               struct line_item *lines, size_t nlines)
{
    const char *sku = NULL;
    const char *item = NULL;
    char folded[LEN_ITEM_NO + 1];
    enum cpb_status rc = st->host->db_col_text(stmt, 1, &sku);
    if (rc == CPB_OK) {
        rc = st->host->db_col_text(stmt, 2, &item);
    }
    if (rc != CPB_OK) {
        return rc;
    }
    bool usable = item != NULL && fold(item, folded, sizeof folded) == 0 && folded[0] != '\0';
    for (size_t i = 0; i < nlines; i++) {
        int m = match_of(sku, lines[i].key);
        if (m > lines[i].map_match) {
            lines[i].map_match = m;
            lines[i].map_usable = usable;
            if (usable) {
                memcpy(lines[i].map_item, folded, sizeof folded);
            }
        }
    }
    return CPB_OK;
}

/* Read the current row of an item statement (ITEM_NO, STAT, IM_PRC.PRC_1,
 * IM_ITEM.PRC_1) into row: CPB_OK, CPB_SKIP when its item number does not
 * fit Counterpoint's (not ours), or an error. */
static enum cpb_status read_item(struct validate_state *st, struct cpb_stmt *stmt,
                                 struct item_row *row)
{
    const char *v = NULL;
    int64_t price = 0;
    bool null = true;
    enum cpb_status rc = st->host->db_col_text(stmt, 1, &v);

    if (rc == CPB_OK && stage_copy(v, row->item_no, sizeof row->item_no) != 0) {
        rc = CPB_SKIP; /* an item number longer than Counterpoint's: not ours */
    }
    if (rc == CPB_OK) {
        rc = st->host->db_col_text(stmt, 2, &v);
    }
    if (rc == CPB_OK) {
        snprintf(row->stat, sizeof row->stat, "%s", v != NULL ? v : "");
        rc = st->host->db_col_decimal(stmt, 3, &price, &null);
    }
    if (rc == CPB_OK && null) {
        rc = st->host->db_col_decimal(stmt, 4, &price, &null);
    }
    if (rc == CPB_OK) {
        row->has_price = !null;
        row->price = price;
    }
    return rc;
}

/* One IM_ITEM row: given to the lines whose item number it matches. */
static enum cpb_status item_row_cb(struct validate_state *st, struct cpb_stmt *stmt,
                                   struct line_item *lines, size_t nlines)
{
    struct item_row row;
    memset(&row, 0, sizeof row);
    enum cpb_status rc = read_item(st, stmt, &row);
    if (rc == CPB_SKIP) {
        return CPB_OK; /* as a miss: the folded lookup decides */
    }
    if (rc != CPB_OK) {
        return rc;
    }
    for (size_t i = 0; i < nlines; i++) {
        int m = match_of(row.item_no, lines[i].cand);
        if (m > lines[i].item_match) {
            lines[i].item_match = m;
            lines[i].row = row;
        }
    }
    return CPB_OK;
}

/* The distinct non-empty keys (use_key) or item numbers of lines[0..n)
 * into out (room for n; borrowed from lines); returns how many. */
static size_t distinct(const struct line_item *lines, size_t n, bool use_key, const char **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = use_key ? lines[i].key : lines[i].cand;
        bool seen = v[0] == '\0';
        for (size_t j = 0; j < k && !seen; j++) {
            seen = strcmp(out[j], v) == 0;
        }
        if (!seen) {
            out[k++] = v;
        }
    }
    return k;
}

/* The folded lookup of one line missed by the exact one: CPB_OK with row
 * filled, CPB_SKIP when no item matches, or an error. */
static enum cpb_status item_folded(struct validate_state *st, struct cpb_stmt **stmt,
                                   const char *item_no, struct item_row *row)
{
    const struct stage_arg a[] = {stage_arg_text(st->location), stage_arg_text("*"),
                                  stage_arg_text("*"), stage_arg_text("*"),
                                  stage_arg_text(item_no)};
    enum cpb_status rc =
        stage_db_query(st->host, st->ctx, item_folded_sql, a, STAGE_NARGS(a), stmt);
    if (rc == CPB_OK) {
        rc = read_item(st, *stmt, row);
    }
    return rc;
}

/* The price check of one resolved line. */
static void check_price(struct validate_state *st, struct cpb_record *rec, json_t *line,
                        int64_t seq, const struct item_row *row, struct failures *f)
{
    int64_t qty = stage_json_int(line, "qty", 0);
    int64_t subtotal = stage_json_int(line, "subtotal", 0);
    int64_t price = 0;
    char a[32];
    char b[32];
    char msg[300];

    if (st->opt->price_check == PRICE_OFF || !row->has_price || qty <= 0) {
        return;
    }
    if (per_unit(subtotal, qty, &price) != 0) {
        return; /* out of range: the totals check reports the amounts */
    }
    int64_t diff = price - row->price;
    if (diff < 0) {
        diff = -diff;
    }
    if (diff <= st->opt->price_tolerance) {
        return;
    }
    money_text(price, a, sizeof a);
    money_text(row->price, b, sizeof b);
    snprintf(msg, sizeof msg,
             "line %" PRId64 " item %s is priced %s in the order but %s in the catalogue at %s:"
             " correct the price in the store or in Counterpoint",
             seq, row->item_no, a, b, st->location);
    if (st->opt->price_check == PRICE_FAIL) {
        fail_add(f, "price.mismatch", "%s", msg);
        return;
    }
    st->host->log(st->ctx, CPB_LOG_WARN, "order %s: %s",
                  rec->external_id != NULL ? rec->external_id : "?", msg);
    json_t *details = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "order",
                                rec->external_id != NULL ? rec->external_id : "", "code",
                                "price.mismatch", "line", (json_int_t)seq, "item", row->item_no,
                                "order_price", a, "catalogue_price", b);
    if (details != NULL) {
        json_object_set_new(details, "message", json_string(msg));
    }
    st->host->event(st->ctx, "order.warning", details);
    json_decref(details);
}

/* Resolve and check every line; items receives one ITEM_NO per line ("" for
 * lines that failed). All the lines' SKUs go to USER_ITEM_MAP in one query
 * and all their item numbers to IM_ITEM in one more (per IN_MAX distinct
 * values); only a line the exact lookup missed costs a query of its own. */
static enum cpb_status check_lines(struct validate_state *st, struct cpb_record *rec, json_t *order,
                                   struct failures *f, json_t *items)
{
    struct cpb_stmt *folded = NULL;
    json_t *lines = json_object_get(order, "lines");
    size_t n = json_array_size(lines);
    struct line_item *li = NULL;
    const char **vals = NULL;
    enum cpb_status rc = CPB_OK;
    size_t i;
    json_t *line;

    if (n == 0) {
        goto out; /* check_required reports it */
    }
    li = calloc(n, sizeof *li);
    vals = calloc(n, sizeof *vals);
    if (li == NULL || vals == NULL) {
        st->host->reason(st->ctx, "validate.oom", "out of memory");
        rc = CPB_RETRY;
        goto out;
    }

    /* The SKU map first (legacy SKUs may be longer than an item number). */
    json_array_foreach(lines, i, line)
    {
        if (fold(stage_json_str(line, "sku"), li[i].key, sizeof li[i].key) != 0) {
            li[i].key[0] = '\0';
        }
    }
    const struct stage_arg none[1] = {stage_arg_text(NULL)};
    rc = run_in(st, st->map_sql, none, 0, vals, distinct(li, n, true, vals), map_row, li, n);
    if (rc != CPB_OK) {
        goto out;
    }
    json_array_foreach(lines, i, line)
    {
        const char *item_no = json_string_value(json_object_get(line, "item_no"));
        if (li[i].map_match != MATCH_NONE && li[i].map_usable) {
            memcpy(li[i].cand, li[i].map_item, sizeof li[i].cand);
        } else if (item_no == NULL || fold(item_no, li[i].cand, sizeof li[i].cand) != 0) {
            li[i].cand[0] = '\0';
        }
    }
    const struct stage_arg dims[] = {stage_arg_text(st->location), stage_arg_text("*"),
                                     stage_arg_text("*"), stage_arg_text("*")};
    rc = run_in(st, st->item_sql, dims, STAGE_NARGS(dims), vals, distinct(li, n, false, vals),
                item_row_cb, li, n);
    if (rc != CPB_OK) {
        goto out;
    }

    json_array_foreach(lines, i, line)
    {
        int64_t seq = stage_json_int(line, "seq", (int64_t)i + 1);
        const char *sku = stage_json_str(line, "sku");
        int64_t qty = stage_json_int(line, "qty", 0);
        char q[VALIDATE_QUOTE_CHARS * 4 + 8];
        char qa[32];
        char qb[32];
        struct item_row *row = &li[i].row;

        stage_quote(sku, VALIDATE_QUOTE_CHARS, q, sizeof q);
        if (qty <= 0) {
            qty_text(qty, qa, sizeof qa);
            fail_add(f, "qty.invalid",
                     "line %" PRId64 " quantity %s is not positive: correct the order", seq, qa);
        } else if (qty > st->opt->max_qty) {
            qty_text(qty, qa, sizeof qa);
            qty_text(st->opt->max_qty, qb, sizeof qb);
            fail_add(f, "qty.too_large",
                     "line %" PRId64 " quantity %s is above max_qty %s: check the order, or"
                     " raise validate's max_qty",
                     seq, qa, qb);
        }

        if (li[i].cand[0] == '\0') {
            if (li[i].key[0] == '\0' || sku[0] == '\0') {
                fail_add(f, "item.unknown",
                         "line %" PRId64 " has no SKU: give the product a SKU that is a"
                         " Counterpoint item number",
                         seq);
            } else {
                fail_add(f, "item.unknown",
                         "line %" PRId64 " SKU '%s' is longer than an item number (20) and"
                         " not in USER_ITEM_MAP: map it",
                         seq, q);
            }
            json_array_append_new(items, json_string(""));
            continue;
        }

        if (li[i].item_match == MATCH_NONE) {
            memset(row, 0, sizeof *row);
            rc = item_folded(st, &folded, li[i].cand, row);
            if (rc == CPB_SKIP) {
                fail_add(f, "item.unknown",
                         "line %" PRId64 " SKU '%s' matches no item in IM_ITEM: add item %s or"
                         " map the SKU in USER_ITEM_MAP",
                         seq, q, li[i].cand);
                json_array_append_new(items, json_string(""));
                rc = CPB_OK;
                continue;
            }
            if (rc != CPB_OK) {
                goto out;
            }
        }
        if (strcmp(row->stat, "A") != 0) {
            char qs[VALIDATE_QUOTE_CHARS + 8];
            stage_quote(row->stat, VALIDATE_QUOTE_CHARS, qs, sizeof qs);
            fail_add(f, "item.inactive",
                     "line %" PRId64 " item %s is not active (STAT '%s'): reactivate it in"
                     " Counterpoint or change the order",
                     seq, row->item_no, qs);
        } else {
            check_price(st, rec, line, seq, row, f);
        }
        json_array_append_new(items, json_string(row->item_no));
    }
out:
    st->host->db_finalize(folded);
    free(vals);
    free(li);
    return rc;
}

static void check_dates(struct validate_state *st, json_t *order, struct failures *f)
{
    json_t *created = json_object_get(order, "created");
    int64_t ms = 0;
    char q[VALIDATE_QUOTE_CHARS * 4 + 8];

    if (!json_is_string(created)) {
        fail_add(f, "date.missing",
                 "the order has no creation date (date_created_gmt): check the store's export");
        return;
    }
    if (stage_parse_utc(json_string_value(created), true, &ms) != 0) {
        stage_quote(json_string_value(created), VALIDATE_QUOTE_CHARS, q, sizeof q);
        fail_add(f, "date.missing", "the creation date '%s' is not readable", q);
        return;
    }
    int64_t now = st->host->now_ms(st->ctx);
    if (ms > now && ms - now > st->opt->future_tolerance_ms) {
        fail_add(f, "date.future",
                 "the order was created at %s UTC, %" PRId64
                 " minutes in the future: check the store's and this host's clocks",
                 json_string_value(created), (ms - now) / 60000);
    }
    if (ms < st->floor_ms) {
        fail_add(f, "date.too_old",
                 "the order was created at %s UTC, before date_floor %s: import it by hand, or"
                 " lower validate's date_floor",
                 json_string_value(created), st->opt->date_floor);
    }
}

static void check_totals(json_t *order, struct failures *f)
{
    json_t *t = json_object_get(order, "totals");
    int64_t lines = stage_json_int(t, "lines_total", 0);
    int64_t ship = stage_json_int(t, "shipping", 0);
    int64_t fees = stage_json_int(t, "fees", 0);
    int64_t tax = stage_json_int(t, "tax", 0);
    int64_t total = stage_json_int(t, "total", 0);
    int64_t sum = 0;
    char a[32], b[32], c[32], d[32], e[32], g[32];

    if (!json_is_integer(json_object_get(t, "total"))) {
        return; /* reported by check_required */
    }
    if (lines > MONEY_LIMIT || lines < -MONEY_LIMIT || ship > MONEY_LIMIT || ship < -MONEY_LIMIT ||
        fees > MONEY_LIMIT || fees < -MONEY_LIMIT || tax > MONEY_LIMIT || tax < -MONEY_LIMIT ||
        total > MONEY_LIMIT || total < -MONEY_LIMIT) {
        fail_add(f, "totals.mismatch", "the order's amounts are out of range");
        return;
    }
    sum = lines + ship + fees + tax;
    int64_t diff = total - sum;
    if (diff <= 100 && diff >= -100) {
        return;
    }
    money_text(lines, a, sizeof a);
    money_text(ship, b, sizeof b);
    money_text(fees, c, sizeof c);
    money_text(tax, d, sizeof d);
    money_text(sum, e, sizeof e);
    money_text(total, g, sizeof g);
    fail_add(f, "totals.mismatch",
             "lines %s + shipping %s + fees %s + tax %s = %s, but the order total is %s:"
             " correct the order in the store",
             a, b, c, d, e, g);
}

/* Look for an existing order document; *doc_id is 0 when there is none. */
static enum cpb_status check_duplicate(struct validate_state *st, json_t *order, struct failures *f,
                                       int64_t *doc_id)
{
    struct cpb_stmt *stmt = NULL;
    const char *number = stage_json_str(order, "number");
    size_t max = st->opt->ref_column == REF_CUST_PO_NO ? LEN_CUST_PO_NO : LEN_REF;
    const char *column = ref_column_choices[st->opt->ref_column];
    char q[VALIDATE_QUOTE_CHARS * 4 + 8];
    bool null = false;
    enum cpb_status rc = CPB_OK;

    *doc_id = 0;
    if (number[0] == '\0') {
        fail_add(f, "field.missing", "the order has no number");
        return CPB_OK;
    }
    if (strlen(number) > max) {
        stage_quote(number, VALIDATE_QUOTE_CHARS, q, sizeof q);
        fail_add(f, "field.too_long",
                 "the order number '%s' is longer than PS_DOC_HDR.%s (%zu): use ref_column"
                 " REF",
                 q, column, max);
        return CPB_OK;
    }
    const struct stage_arg v[] = {stage_arg_text(number), stage_arg_text("O")};
    rc = stage_db_query(st->host, st->ctx, duplicate_sql[st->opt->ref_column], v, STAGE_NARGS(v),
                        &stmt);
    if (rc == CPB_OK) {
        rc = st->host->db_col_int(stmt, 1, doc_id, &null);
    }
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
        goto out;
    }
    if (rc != CPB_OK) {
        goto out;
    }
    if (st->opt->on_existing_document == EXISTING_FAIL) {
        stage_quote(number, VALIDATE_QUOTE_CHARS, q, sizeof q);
        fail_add(f, "duplicate.document",
                 "Counterpoint already has order document %" PRId64
                 " with %s '%s': cancel this order, or set on_existing_document = adopt",
                 *doc_id, column, q);
    }
out:
    st->host->db_finalize(stmt);
    return rc;
}

/* payload.malformed: list the normalizer's problems. */
static enum cpb_status report_problems(struct validate_state *st, json_t *problems)
{
    struct failures f;
    size_t i;
    json_t *p;
    char qf[VALIDATE_QUOTE_CHARS * 4 + 8];
    char qm[4 * 200 + 8];

    memset(&f, 0, sizeof f);
    json_array_foreach(problems, i, p)
    {
        stage_quote(stage_json_str(p, "field"), VALIDATE_QUOTE_CHARS, qf, sizeof qf);
        snprintf(qm, sizeof qm, "%s", stage_json_str(p, "message"));
        fail_add(&f, "payload.malformed", "%s %s", qf, qm);
    }
    fail_report(st, &f);
    return CPB_FAIL;
}

/* ---- the stage ---------------------------------------------------------- */

/* Keeps host, ctx and options (borrowed until fini); *state is new. */
static int validate_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                         void **state)
{
    struct validate_state *st = stage_state_new(host, ctx, sizeof *st, state);
    if (st == NULL) {
        return -1;
    }
    st->host = host;
    st->ctx = ctx;
    st->opt = options;
    if (stage_parse_utc(st->opt->date_floor, false, &st->floor_ms) != 0) {
        host->log(ctx, CPB_LOG_ERROR,
                  "date_floor '%s' is not a date such as \"2015-01-01\" (YYYY-MM-DD, UTC)",
                  st->opt->date_floor);
        return -1;
    }
    for (unsigned k = 0; k < IN_SIZES; k++) {
        if (build_in_sql(st->map_sql[k], sizeof st->map_sql[k], item_map_head, in_sizes[k], ")") !=
                0 ||
            build_in_sql(st->item_sql[k], sizeof st->item_sql[k], item_in_head, in_sizes[k], ")") !=
                0) {
            host->log(ctx, CPB_LOG_ERROR, "validate: an item lookup statement does not fit");
            return -1;
        }
    }
    return 0;
}

/* `rec` is borrowed; on success adds cp_cust_no, cp_stk_loc_id, cp_items
 * and (adopting) cp_adopt_doc_id to rec->result. */
static enum cpb_status validate_process(void *state, struct cpb_record *rec)
{
    struct validate_state *st = state;
    struct failures f;
    json_t *order = rec->order;
    json_t *items = NULL;
    char cust[LEN_CUST_NO + 1] = "";
    int64_t doc_id = 0;
    enum cpb_status rc = CPB_OK;

    memset(&f, 0, sizeof f);
    if (!json_is_object(order) || !json_is_object(rec->result)) {
        st->host->reason(st->ctx, "validate.no_order", "the record carries no order");
        return CPB_FAIL;
    }
    json_t *problems = json_object_get(order, "problems");
    if (json_array_size(problems) > 0) {
        return report_problems(st, problems);
    }
    rc = load_store(st);
    if (rc != CPB_OK) {
        return rc;
    }
    items = json_array();
    if (items == NULL) {
        st->host->reason(st->ctx, "validate.oom", "out of memory");
        return CPB_RETRY;
    }

    check_required(order, &f);
    check_currency(st, order, &f);
    rc = check_customer(st, rec, order, &f, cust);
    if (rc == CPB_OK) {
        rc = check_lines(st, rec, order, &f, items);
    }
    if (rc == CPB_OK) {
        check_dates(st, order, &f);
        check_totals(order, &f);
        rc = check_duplicate(st, order, &f, &doc_id);
    }
    if (rc != CPB_OK) {
        goto out; /* a database failure: the host recorded the reason */
    }
    if (f.count > 0) {
        fail_report(st, &f);
        rc = CPB_FAIL;
        goto out;
    }
    if (json_object_set_new(rec->result, "cp_cust_no", json_string(cust)) != 0 ||
        json_object_set_new(rec->result, "cp_stk_loc_id", json_string(st->location)) != 0 ||
        json_object_set(rec->result, "cp_items", items) != 0 ||
        (doc_id != 0 &&
         json_object_set_new(rec->result, "cp_adopt_doc_id", json_integer(doc_id)) != 0)) {
        st->host->reason(st->ctx, "validate.oom", "out of memory");
        rc = CPB_RETRY;
        goto out;
    }
    if (doc_id != 0) {
        st->host->log(st->ctx, CPB_LOG_INFO,
                      "order %s already has Counterpoint document %" PRId64 "; adopting it",
                      rec->external_id != NULL ? rec->external_id : "?", doc_id);
    }
out:
    json_decref(items);
    return rc;
}

/* The stage descriptor: the one exported thing (through cpb_stage_entry, or
 * by name in static builds); constant, borrowed by the host. */
extern const struct cpb_stage validate_stage;
const struct cpb_stage validate_stage = {
    CPB_STAGE_HEADER,
    .name = "validate",
    .version = "1.0.0",
    .summary = "Check an order against Counterpoint's customers, items, prices and documents.",
    .kind = CPB_STEP,
    .options = validate_options_table,
    .options_size = sizeof(struct validate_options),
    .init = validate_init,
    .process = validate_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(validate_stage);
