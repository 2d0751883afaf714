/*
 * source-cp-stock — a source stage (ABI 1.5) that reads the quantities
 * Counterpoint has available for the web store and stages one keyed record
 * of kind "stock" per SKU (cpb_host.emit_records), for a record stage such
 * as push-woo-stock to make the store match.
 *
 * What is available: for the configured `locations`, the sum over those
 * IM_INV rows of the quantity `formula` (QTY_ON_HND - QTY_COMMIT -
 * QTY_ON_SO by default: the orders pipeline's update-qty raises QTY_ON_SO,
 * so a sale it applied lowers it), minus `safety_stock`, floored at 0 and
 * rounded down to a whole unit. An item with no IM_INV row at those
 * locations has 0. A configured location Counterpoint does not have
 * (IM_LOC) fails the run before anything is staged: it would read as 0
 * for every item.
 *
 * Which items: those with IM_ITEM.IS_ECOMM_ITEM = 'Y' (all of them with
 * include_all_items). Their SKU is the item number (trailing blanks cut),
 * or, when the item has USER_ITEM_MAP rows, each of those rows' SKU (one
 * record per SKU, all with the item's quantity). When an unmapped item's
 * number is also another item's mapped SKU, the mapped SKU wins and the
 * unmapped one is left out with a warning (one SKU, one quantity).
 *
 * Record payload: {"sku": S, "stock_quantity": N, "item_no": I,
 * "manage_stock": true}, keyed by S. The host leaves a record whose payload
 * did not change alone, so a run in which nothing changed queues nothing.
 *
 * One statement reads everything (IM_ITEM left-joined to USER_ITEM_MAP and
 * IM_INV, grouped by item and SKU); its text is built at init from fixed
 * pieces (the formula chosen from a fixed list, one placeholder per
 * location), every value bound, and it is the same in every dialect.
 */
#include <cpbridge/stage.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_util.h"

/* The record kind staged (push-woo-stock handles it). */
#define STOCK_KIND "stock"
/* Records per emit_records call: one transaction each. */
#define STOCK_CHUNK 500
/* Column sizes of Counterpoint and the engine (cp_subset.sql, 001_engine.sql). */
#define LEN_LOC_ID  10
#define LEN_ITEM_NO 20
#define LEN_SKU     100
/* Locations a pipeline may list. */
#define MAX_LOCATIONS 50
/* One unit in ten-thousandths. */
#define UNIT 10000

enum stock_formula { F_ON_HAND_COMMITTED_ON_SO = 0, F_ON_HAND_COMMITTED = 1, F_ON_HAND = 2 };

static const char *const formula_choices[] = {"on_hand-committed-on_so", "on_hand-committed",
                                              "on_hand", NULL};

/* The SQL expression of each formula, over IM_INV v (fixed text). */
static const char *const formula_sql[] = {
    [F_ON_HAND_COMMITTED_ON_SO] = "v.QTY_ON_HND - v.QTY_COMMIT - v.QTY_ON_SO",
    [F_ON_HAND_COMMITTED] = "v.QTY_ON_HND - v.QTY_COMMIT",
    [F_ON_HAND] = "v.QTY_ON_HND",
};

struct source_cp_stock_opts {
    const char *const *locations;
    int formula;
    int64_t safety_stock; /* ten-thousandths */
    bool include_all_items;
};

static const struct cpb_option source_cp_stock_options[] = {
    {"locations", CPB_OPT_LIST, 0, "MAIN", 1, MAX_LOCATIONS, NULL,
     offsetof(struct source_cp_stock_opts, locations),
     "Counterpoint stock locations (IM_INV.LOC_ID) whose quantities are added up for the store."},
    {"formula", CPB_OPT_ENUM, 0, "on_hand-committed-on_so", 0, 0, formula_choices,
     offsetof(struct source_cp_stock_opts, formula),
     "Available quantity per location: on_hand-committed-on_so (QTY_ON_HND - QTY_COMMIT - "
     "QTY_ON_SO: web orders the orders pipeline applied count as sold), on_hand-committed or "
     "on_hand."},
    {"safety_stock", CPB_OPT_DECIMAL, 0, "0", 0, 1000000000LL * UNIT, NULL,
     offsetof(struct source_cp_stock_opts, safety_stock),
     "Units held back from the store per item (subtracted from the sum; the result is floored "
     "at 0 and rounded down to a whole unit)."},
    {"include_all_items", CPB_OPT_BOOL, 0, "false", 0, 0, NULL,
     offsetof(struct source_cp_stock_opts, include_all_items),
     "Publish every item, not only those with IM_ITEM.IS_ECOMM_ITEM = 'Y'."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* Room for the statement: fixed text plus ", ?" per location. */
#define STOCK_SQL_MAX 1024

struct source_cp_stock {
    const struct cpb_host *host;          /* borrowed until fini */
    struct cpb_ctx *ctx;                  /* borrowed until fini */
    const struct source_cp_stock_opts *o; /* borrowed until fini */
    size_t nloc;                          /* entries of o->locations */
    char sql[STOCK_SQL_MAX];
};

/* One SKU read from Counterpoint. */
struct stock_row {
    char sku[LEN_SKU + 1];
    char item[LEN_ITEM_NO + 1];
    int64_t qty; /* whole units, >= 0 */
    bool mapped; /* the SKU comes from USER_ITEM_MAP */
};

/* A grown array of rows. */
struct stock_rows {
    struct stock_row *v;
    size_t n, cap;
};

static int source_cp_stock_init(const struct cpb_host *host, struct cpb_ctx *ctx,
                                const void *options, void **state)
{
    const struct source_cp_stock_opts *o = options;
    struct source_cp_stock *s = stage_state_new(host, ctx, sizeof *s, state);
    if (s == NULL) {
        return -1;
    }
    s->host = host;
    s->ctx = ctx;
    s->o = o;
    if (!CPB_HOST_HAS(host, emit_records)) {
        return stage_init_fail(host, ctx,
                               "this engine cannot stage records (emit_records, ABI 1.5): "
                               "upgrade cpbridge");
    }
    for (const char *const *l = o->locations; l != NULL && *l != NULL; l++) {
        size_t len = strlen(*l);
        if (len == 0 || len > LEN_LOC_ID) {
            return stage_init_fail(host, ctx,
                                   "locations: \"%.40s\" is not a Counterpoint location id (1 to "
                                   "%d characters)",
                                   *l, LEN_LOC_ID);
        }
        s->nloc++;
    }
    if (s->nloc == 0) {
        return stage_init_fail(host, ctx, "locations: list at least one stock location");
    }
    /* The statement: item, mapped SKU (or NULL), the summed formula. */
    size_t at = 0;
    int w = snprintf(s->sql, sizeof s->sql,
                     "SELECT i.ITEM_NO, m.SKU, SUM(%s) FROM IM_ITEM i"
                     " LEFT JOIN USER_ITEM_MAP m ON m.ITEM_NO = i.ITEM_NO"
                     " LEFT JOIN IM_INV v ON v.ITEM_NO = i.ITEM_NO AND v.LOC_ID IN (",
                     formula_sql[o->formula]);
    for (size_t i = 0; w >= 0 && (size_t)w < sizeof s->sql - at && i < s->nloc; i++) {
        at += (size_t)w;
        w = snprintf(s->sql + at, sizeof s->sql - at, "%s?", i > 0 ? ", " : "");
    }
    if (w >= 0 && (size_t)w < sizeof s->sql - at) {
        at += (size_t)w;
        w = snprintf(s->sql + at, sizeof s->sql - at, ")%s GROUP BY i.ITEM_NO, m.SKU",
                     o->include_all_items ? "" : " WHERE i.IS_ECOMM_ITEM = ?");
    }
    if (w < 0 || (size_t)w >= sizeof s->sql - at) {
        return stage_init_fail(host, ctx, "too many locations for one statement");
    }
    return 0;
}

/* Copy v (borrowed) into out without its leading and trailing blanks.
 * Returns 0, or -1 when it is empty or does not fit. */
static int trimmed(const char *v, char *out, size_t outlen)
{
    size_t len;
    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    len = strlen(v);
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        len--;
    }
    if (len == 0 || len >= outlen) {
        return -1;
    }
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}

/* The whole units the store gets from a sum in ten-thousandths. */
static int64_t units(const struct source_cp_stock *s, int64_t sum)
{
    int64_t safety = s->o->safety_stock;
    if (sum <= safety) {
        return 0;
    }
    return (sum - safety) / UNIT;
}

static int push_row(struct stock_rows *rows, const struct stock_row *r)
{
    if (rows->n == rows->cap) {
        size_t cap = rows->cap > 0 ? rows->cap * 2 : 256;
        struct stock_row *v = realloc(rows->v, cap * sizeof *v);
        if (v == NULL) {
            return -1;
        }
        rows->v = v;
        rows->cap = cap;
    }
    rows->v[rows->n++] = *r;
    return 0;
}

/* By SKU, a mapped SKU before an unmapped one with the same text. */
static int row_cmp(const void *a, const void *b)
{
    const struct stock_row *x = a;
    const struct stock_row *y = b;
    int c = strcmp(x->sku, y->sku);
    if (c != 0) {
        return c;
    }
    return (int)y->mapped - (int)x->mapped;
}

/* Read every SKU with its quantity into rows. */
static enum cpb_status read_rows(struct source_cp_stock *s, struct stock_rows *rows)
{
    const struct cpb_host *h = s->host;
    struct cpb_stmt *stmt = NULL;
    enum cpb_status rc = h->db_prepare(s->ctx, s->sql, &stmt);
    unsigned idx = 1;
    size_t skipped = 0;

    for (size_t i = 0; rc == CPB_OK && i < s->nloc; i++) {
        rc = h->db_bind_text(stmt, idx++, s->o->locations[i]);
    }
    if (rc == CPB_OK && !s->o->include_all_items) {
        rc = h->db_bind_text(stmt, idx++, "Y");
    }
    if (rc == CPB_OK) {
        rc = h->db_execute(stmt, NULL);
    }
    while (rc == CPB_OK) {
        const char *item = NULL;
        const char *sku = NULL;
        int64_t sum = 0;
        bool null_sum = false;
        struct stock_row r;
        rc = h->db_fetch(stmt);
        if (rc != CPB_OK) {
            break;
        }
        rc = h->db_col_text(stmt, 1, &item);
        if (rc == CPB_OK) {
            memset(&r, 0, sizeof r);
            if (trimmed(item, r.item, sizeof r.item) != 0) {
                skipped++;
                continue;
            }
            rc = h->db_col_text(stmt, 2, &sku);
        }
        if (rc == CPB_OK) {
            r.mapped = sku != NULL;
            if (trimmed(r.mapped ? sku : r.item, r.sku, sizeof r.sku) != 0) {
                h->log(s->ctx, CPB_LOG_WARN,
                       "item %s: a USER_ITEM_MAP row has an empty SKU; it is left out", r.item);
                skipped++;
                continue;
            }
            rc = h->db_col_decimal(stmt, 3, &sum, &null_sum);
        }
        if (rc == CPB_OK) {
            r.qty = units(s, null_sum ? 0 : sum);
            if (push_row(rows, &r) != 0) {
                h->reason(s->ctx, "stock.oom", "out of memory reading the stock levels");
                rc = CPB_RETRY;
            }
        }
    }
    h->db_finalize(stmt);
    if (rc == CPB_SKIP) {
        rc = CPB_OK; /* no more rows */
    }
    if (skipped > 0) {
        h->log(s->ctx, CPB_LOG_WARN, "%zu item row(s) without a usable item number or SKU skipped",
               skipped);
    }
    return rc;
}

/* Drop the second of two rows with one SKU (after sorting: the mapped one
 * is kept). Returns the number of rows left. */
static size_t dedupe(struct source_cp_stock *s, struct stock_rows *rows)
{
    size_t k = 0;
    for (size_t i = 0; i < rows->n; i++) {
        if (k > 0 && strcmp(rows->v[k - 1].sku, rows->v[i].sku) == 0) {
            s->host->log(s->ctx, CPB_LOG_WARN,
                         "SKU %s is item %s's and item %s's; the store gets item %s's quantity "
                         "(fix USER_ITEM_MAP)",
                         rows->v[i].sku, rows->v[k - 1].item, rows->v[i].item, rows->v[k - 1].item);
            continue;
        }
        rows->v[k++] = rows->v[i];
    }
    rows->n = k;
    return k;
}

/* Stage rows[at..at+n) in one emit_records call; counts what happened. */
static enum cpb_status emit_chunk(struct source_cp_stock *s, const struct stock_row *r, size_t n,
                                  size_t *queued, size_t *unchanged, size_t *refused)
{
    const char *keys[STOCK_CHUNK];
    json_t *payloads[STOCK_CHUNK];
    enum cpb_status out[STOCK_CHUNK];
    enum cpb_status rc = CPB_OK;
    size_t made = 0;

    for (; made < n; made++) {
        keys[made] = r[made].sku;
        payloads[made] =
            json_pack("{s:s, s:I, s:s, s:b}", "sku", r[made].sku, "stock_quantity",
                      (json_int_t)r[made].qty, "item_no", r[made].item, "manage_stock", 1);
        if (payloads[made] == NULL) {
            s->host->reason(s->ctx, "stock.oom", "out of memory building the stock records");
            rc = CPB_RETRY;
            goto out;
        }
    }
    rc = s->host->emit_records(s->ctx, STOCK_KIND, keys, payloads, n, out);
    if (rc != CPB_OK) {
        if (rc == CPB_RETRY) {
            s->host->reason(s->ctx, "db.unavailable",
                            "the stock records could not be staged (the database failed)");
        }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        *queued += out[i] == CPB_OK;
        *unchanged += out[i] == CPB_SKIP;
        *refused += out[i] == CPB_FAIL;
    }
out:
    for (size_t i = 0; i < made; i++) {
        json_decref(payloads[i]);
    }
    return rc;
}

/* Every configured location is one Counterpoint has (IM_LOC): a location
 * that matches nothing would read as 0 for every item and sell the whole
 * store out. CPB_FAIL (nothing staged) names the first one missing. */
static enum cpb_status check_locations(struct source_cp_stock *s)
{
    const struct cpb_host *h = s->host;
    struct cpb_stmt *stmt = NULL;
    enum cpb_status rc =
        h->db_prepare(s->ctx, "SELECT COUNT(*) FROM IM_LOC WHERE LOC_ID = ?", &stmt);
    for (size_t i = 0; rc == CPB_OK && i < s->nloc; i++) {
        int64_t n = 0;
        rc = h->db_bind_text(stmt, 1, s->o->locations[i]);
        if (rc == CPB_OK) {
            rc = h->db_execute(stmt, NULL);
        }
        if (rc == CPB_OK) {
            rc = h->db_fetch(stmt);
        }
        if (rc == CPB_OK) {
            rc = h->db_col_int(stmt, 1, &n, NULL);
        }
        if (rc == CPB_OK && n == 0) {
            h->reason(s->ctx, "stock.unknown_location",
                      "locations: \"%s\" is no Counterpoint location (IM_LOC, exact case): "
                      "nothing staged, rather than every SKU at 0",
                      s->o->locations[i]);
            rc = CPB_FAIL;
        }
    }
    h->db_finalize(stmt);
    return rc;
}

static enum cpb_status source_cp_stock_process(void *state, struct cpb_record *rec)
{
    struct source_cp_stock *s = state;
    struct stock_rows rows = {NULL, 0, 0};
    size_t queued = 0;
    size_t unchanged = 0;
    size_t refused = 0;
    (void)rec; /* no run parameters apply: every SKU is read each run */

    enum cpb_status rc = check_locations(s);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = read_rows(s, &rows);
    if (rc != CPB_OK) {
        s->host->log(s->ctx, CPB_LOG_ERROR, "reading the stock levels from Counterpoint failed");
        goto out;
    }
    if (rows.n > 0) {
        qsort(rows.v, rows.n, sizeof *rows.v, row_cmp);
    }
    dedupe(s, &rows);
    for (size_t at = 0; at < rows.n; at += STOCK_CHUNK) {
        size_t n = rows.n - at < STOCK_CHUNK ? rows.n - at : STOCK_CHUNK;
        rc = emit_chunk(s, rows.v + at, n, &queued, &unchanged, &refused);
        if (rc != CPB_OK) {
            s->host->log(s->ctx, CPB_LOG_ERROR, "stopped after %zu of %zu SKU(s)", at, rows.n);
            goto out;
        }
    }
    s->host->metric_add(s->ctx, "skus_read", (double)rows.n);
    s->host->metric_add(s->ctx, "skus_queued", (double)queued);
    s->host->log(s->ctx, CPB_LOG_INFO,
                 "%zu SKU(s) read from Counterpoint: %zu new or changed, %zu unchanged%s", rows.n,
                 queued, unchanged, refused > 0 ? ", some refused (see above)" : "");
out:
    free(rows.v);
    return rc;
}

const struct cpb_stage source_cp_stock_stage = {
    CPB_STAGE_HEADER,
    .name = "source-cp-stock",
    .version = "1.0.0",
    .summary = "Read the quantities Counterpoint has available for the web store and stage one "
               "stock record per SKU",
    .kind = CPB_SOURCE,
    .options = source_cp_stock_options,
    .options_size = sizeof(struct source_cp_stock_opts),
    .init = source_cp_stock_init,
    .process = source_cp_stock_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(source_cp_stock_stage);
