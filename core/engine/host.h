/*
 * host.h — the host services table handed to stages (struct cpb_host) and
 * the per-instance context behind it (struct cpb_ctx). The runner fills a
 * host_env that every context of a pipeline shares: the connection, whether
 * an order transaction is open, the current order, and where emitted orders
 * and raised events go.
 */
#ifndef CPB_HOST_H
#define CPB_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpbridge/stage.h"
#include "services/db.h"

struct host_env {
    struct db *db;        /* borrowed; NULL while not connected */
    bool in_order_tx;     /* the db_* services are allowed then, */
    bool in_source;       /* and while a source's process runs (ABI 1.5) */
    int64_t order_id;     /* current staging id for log lines; 0: none */
    const char *pipeline; /* borrowed */
    /* Where emit and event go (the runner); NULL: refused / dropped.
     * emit_many NULL: emit_many calls emit once per order. */
    enum cpb_status (*emit)(void *owner, struct cpb_ctx *ctx, json_t *order);
    enum cpb_status (*emit_many)(void *owner, struct cpb_ctx *ctx, json_t *const *orders, size_t n,
                                 enum cpb_status *out);
    /* The store removed an order (serve's intake only; NULL elsewhere). */
    enum cpb_status (*withdraw)(void *owner, struct cpb_ctx *ctx, const char *external_id,
                                const char *why);
    /* A source staged keyed records (ABI 1.5; NULL: refused). */
    enum cpb_status (*emit_records)(void *owner, struct cpb_ctx *ctx, const char *kind,
                                    const char *const *keys, json_t *const *payloads, size_t n,
                                    enum cpb_status *out);
    void (*event)(void *owner, struct cpb_ctx *ctx, const char *name, json_t *details);
    void *owner;
};

/* The services table (static; borrowed). */
const struct cpb_host *host_services(void);

/* A context for stage instance `stage_id` (borrowed; must outlive the ctx)
 * sharing `env` (borrowed). New; free with host_ctx_free. NULL on OOM. */
struct cpb_ctx *host_ctx_new(const char *stage_id, struct host_env *env);
void host_ctx_free(struct cpb_ctx *ctx);

/* The reason the last process() call gave (host->reason, or the database
 * or HTTP failure the host recorded): "" when none. Borrowed. */
const char *host_reason_code(const struct cpb_ctx *ctx);
const char *host_reason_message(const struct cpb_ctx *ctx);
/* Around a process_batch call of n records: slots for host->reason_at.
 * begin returns 0 or -1 (out of memory); end frees them (safe without a
 * begin). The reason of record i is its reason_at, or else the call's
 * (host->reason, or the failed database or HTTP call); the strings are
 * borrowed until host_batch_end or the next call. */
int host_batch_begin(struct cpb_ctx *ctx, size_t n);
const char *host_batch_reason_code(const struct cpb_ctx *ctx, size_t i);
const char *host_batch_reason_message(const struct cpb_ctx *ctx, size_t i);
void host_batch_end(struct cpb_ctx *ctx);
/* Forget the reason and the last Retry-After (before each call). */
void host_reason_clear(struct cpb_ctx *ctx);
/* The longest Retry-After (ms) an HTTP response gave during the last call,
 * or -1: the runner does not retry the order before it. */
long host_retry_after_ms(const struct cpb_ctx *ctx);

/* What the stage added with metric_add (name -> number), borrowed; NULL
 * when nothing was added. */
json_t *host_ctx_metrics(const struct cpb_ctx *ctx);

/* The engine's clock: UTC ms since the epoch. */
int64_t host_now_ms(void);

#endif
