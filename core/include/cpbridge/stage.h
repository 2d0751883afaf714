/*
 * cpbridge/stage.h — the one public header for cpbridge stage authors.
 *
 * A stage is a shared object exporting exactly one symbol, cpb_stage_entry(),
 * which returns a constant descriptor. The engine loads it with dlopen, checks
 * the ABI version and the descriptor's size, validates the stage's declared
 * options from the pipeline file, and then calls init / process / fini.
 *
 * Stages never call the engine by linker symbol: everything they need comes
 * through the host services table (struct cpb_host) handed to init. This
 * header depends on jansson and the C standard headers only.
 *
 * Ownership words used below:
 *   borrowed       the caller keeps ownership; valid for the call only
 *                  (or for the stated lifetime); do not free.
 *   new reference  the callee hands over ownership; the receiver releases it.
 *   takes ownership the callee will release it, even on failure.
 *
 * Threading: the engine calls a stage instance from one thread at a time.
 * Stages keep no global state: two instances of one stage may run in the
 * same process side by side, each with its own state pointer.
 *
 * ABI rules: values of every enum here are fixed and never renumbered or
 * reused; structs only grow at the end; the host rejects a stage whose
 * abi_major differs from its own or whose abi_minor is newer than its own.
 */
#ifndef CPBRIDGE_STAGE_H
#define CPBRIDGE_STAGE_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI major version: the host refuses a stage built for another major. */
#define CPB_ABI_MAJOR 1
/** The ABI minor version: the host accepts a stage whose minor is <= its own. */
#define CPB_ABI_MINOR 5

/** Marks the one exported symbol of a stage (build with -fvisibility=hidden). */
#if defined(__GNUC__)
#define CPB_EXPORT __attribute__((visibility("default")))
#define CPB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CPB_EXPORT
#define CPB_PRINTF(f, a)
#endif

/** Name of the exported entry point, for dlsym. */
#define CPB_STAGE_ENTRY_SYMBOL "cpb_stage_entry"

/**
 * The outcome of a stage call. The values are ABI: never renumbered.
 * - CPB_OK: done; go on.
 * - CPB_SKIP: nothing to do for this record (not an error); for db_fetch,
 *   "no more rows"; for emit, "unchanged, already staged".
 * - CPB_RETRY: a transient failure (deadlock, dropped connection, HTTP
 *   408/429/5xx, timeout); the order's transaction rolls back and the order
 *   is tried again after a backoff, up to max_attempts.
 * - CPB_FAIL: a permanent failure (validation, 4xx, broken constraint); the
 *   order is held for review with the reason set through cpb_host.reason.
 */
enum cpb_status { CPB_OK = 0, CPB_SKIP = 1, CPB_RETRY = -1, CPB_FAIL = -2 };

/**
 * What a stage is for, which decides when the runner calls it.
 * - CPB_SOURCE: produces orders through cpb_host.emit, once per run.
 * - CPB_STEP: runs for each claimed order inside the order's database
 *   transaction (validate, create-order, update-qty).
 * - CPB_AFTER_COMMIT: runs for each applied order after the commit, at most
 *   once successfully per order (sync-status).
 * - CPB_NOTIFY: receives the events it subscribes to (notify-email, ...).
 * - CPB_RECORD (ABI 1.5): handles claimed keyed records that are not orders
 *   (a source stages them with cpb_host.emit_records), in batches through
 *   process_batch or one by one through process: push-woo-stock.
 */
enum cpb_kind {
    CPB_SOURCE = 1,
    CPB_STEP = 2,
    CPB_AFTER_COMMIT = 3,
    CPB_NOTIFY = 4,
    CPB_RECORD = 5
};

/**
 * The type of a declared option and the C type the host stores at its offset:
 * - CPB_OPT_STRING   const char *       (NULL when unset without default)
 * - CPB_OPT_INT      int64_t
 * - CPB_OPT_BOOL     bool
 * - CPB_OPT_DECIMAL  int64_t, in ten-thousandths ("0.01" is 100); the config
 *                    value is a string such as "0.01" or a number
 * - CPB_OPT_DURATION int64_t, in milliseconds; the config value is a string
 *                    with a unit: "250ms", "30s", "5m", "1h", "2d"
 * - CPB_OPT_ENUM     int, the index of the value in cpb_option.choices
 * - CPB_OPT_LIST     const char *const *, a NULL-terminated array of strings
 *                    (the config value is a list or array of strings)
 * Strings and lists stay valid and unchanged until after fini.
 */
enum cpb_opt_type {
    CPB_OPT_STRING = 1,
    CPB_OPT_INT = 2,
    CPB_OPT_BOOL = 3,
    CPB_OPT_DECIMAL = 4,
    CPB_OPT_DURATION = 5,
    CPB_OPT_ENUM = 6,
    CPB_OPT_LIST = 7
};

/** Option flags (bits). */
enum cpb_opt_flag {
    CPB_OPT_REQUIRED = 1u << 0,  /**< the pipeline file must set it */
    CPB_OPT_SECRET = 1u << 1,    /**< masked in logs, check and describe output */
    CPB_OPT_DEPRECATED = 1u << 2 /**< accepted, with a warning naming file:line */
};

/**
 * One declared option. A stage's table ends with an entry whose name is NULL.
 * The host validates the pipeline file against the table, refuses unknown
 * keys (with a did-you-mean), and fills the stage's options struct.
 */
struct cpb_option {
    const char *name;            /**< key in the stage's `options` group */
    enum cpb_opt_type type;      /**< see enum cpb_opt_type */
    unsigned flags;              /**< enum cpb_opt_flag bits */
    const char *default_value;   /**< text, parsed as a config value would
                                      be ("30s", "3", "true", "0.01", an enum
                                      choice, a comma list); NULL: no default */
    int64_t min, max;            /**< inclusive range when min < max, in the
                                      stored unit (INT value, DECIMAL
                                      ten-thousandths, DURATION ms, STRING
                                      length in bytes, LIST element count) */
    const char *const *choices;  /**< CPB_OPT_ENUM: NULL-terminated values */
    size_t offset;               /**< offsetof() into the options struct */
    const char *help;            /**< one sentence for describe and docs */
};

/** Log levels for cpb_host.log. */
enum cpb_log_level { CPB_LOG_ERROR = 0, CPB_LOG_WARN = 1, CPB_LOG_INFO = 2, CPB_LOG_DEBUG = 3 };

/** Opaque: the host's context for one stage instance. */
struct cpb_ctx;
/** Opaque: a prepared statement on the order's connection. */
struct cpb_stmt;

/**
 * The record a stage's process() is called with. Borrowed for the call:
 * a stage that keeps any json_t beyond the call increfs it.
 *
 * - For CPB_STEP and CPB_AFTER_COMMIT: one staged order. `payload` is the
 *   order exactly as the source emitted it (WooCommerce REST shape), `order`
 *   is the engine's normalized view of it (docs/STAGE_AUTHORING.md lists its
 *   keys; money and quantities are integers in ten-thousandths, strings are
 *   cut to Counterpoint's lengths), and `result` is an object the steps add
 *   their outputs to ("cp_doc_id" integer, "cp_tkt_no" string are read by the
 *   engine after the last step; after-commit stages find them there).
 * - Since ABI 1.4, a CPB_AFTER_COMMIT stage built for 1.4 or later is also
 *   called for an order the engine rolled back because the store cancelled
 *   it (run.store_cancel = "rollback"): its `result` then holds
 *   "rolled_back": {"reason": "store cancelled order N", "cp_doc_id": D,
 *   "cp_tkt_no": "T"}, the document is gone from Counterpoint, and the
 *   stage tells the store (sync-status adds a note) or returns CPB_SKIP.
 *   `attempt` is then always > 1: check the world first. A stage built for
 *   an older minor is never called for such an order.
 * - For CPB_SOURCE: called once per run; `payload` holds the run's
 *   parameters ({"since": "...", "limit": N} when given), the rest is empty.
 * - For CPB_NOTIFY: `event` names the event and `payload` is the event
 *   object ({"event", "time", "pipeline", "severity", "summary", "orders":
 *   [...], "command", ...}).
 * - For CPB_RECORD (ABI 1.5): one claimed record. `id` is its record id,
 *   `source` the source stage that staged it, `external_id` its key,
 *   `record_kind` its kind, `payload` what the source staged (the stage
 *   makes the world match it), `order` is NULL, and `result` starts as the
 *   object this record's stages left in it the last time it was processed
 *   (empty the first time): the host stores it back after every call, so a
 *   stage keeps what it learned about the record there (a resolved id).
 *   `attempt` is 1 on the first try of this payload.
 */
struct cpb_record {
    uint32_t size;           /**< sizeof(struct cpb_record) as the host built it */
    int64_t id;              /**< staging id; 0 when the record is no order */
    const char *source;      /**< the source instance that emitted the order */
    const char *external_id; /**< the store's order id, as text */
    unsigned attempt;        /**< 1 on the first attempt of this step; for
                                  CPB_AFTER_COMMIT, 1 only right after the
                                  order was applied in this run, so a step
                                  whose write is not idempotent checks the
                                  world first when attempt > 1 */
    const char *event;       /**< CPB_NOTIFY: the event name; else NULL */
    json_t *payload;         /**< borrowed; see above */
    json_t *order;           /**< borrowed; normalized order, or NULL */
    json_t *result;          /**< borrowed; host-owned object stages add to */
    /* ---- added in ABI 1.5 (read it only when `size` covers it) ---- */
    const char *record_kind; /**< CPB_RECORD: the record's kind; else NULL */
};

/** An HTTP request for cpb_host.http. All pointers are borrowed for the call. */
struct cpb_http_request {
    uint32_t size;                /**< sizeof(struct cpb_http_request) */
    const char *method;           /**< "GET", "POST", "PUT", ... */
    const char *url;              /**< absolute http:// or https:// URL */
    const char *const *headers;   /**< NULL-terminated "Name: value" lines, or NULL */
    const char *body;             /**< request body, or NULL */
    size_t body_len;              /**< bytes of body */
    const char *user;             /**< HTTP basic user, or NULL */
    const char *password;         /**< HTTP basic password (redacted), or NULL */
    long timeout_ms;              /**< total time per try; 0: the host default */
    long connect_timeout_ms;      /**< connect time per try; 0: the host default */
    unsigned max_tries;           /**< 0 or 1: one try; more: the host retries
                                       retryable outcomes with backoff and
                                       honours Retry-After within timeout */
    bool tls_no_verify;           /**< turn TLS verification off (logged as a
                                       warning on every use); default false */
    const char *ca_file;          /**< CA bundle for TLS, or NULL for the system's */
    /* ---- added in ABI 1.1 (the host reads only the fields `size` covers) ---- */
    bool retry_unsent_only;       /**< with max_tries > 1, retry only when the
                                       server certainly did not act on the
                                       request (it answered 429 or 503, or no
                                       connection was made): for a request that
                                       must not be repeated, such as a POST
                                       that creates something */
};

/**
 * An HTTP response filled by cpb_host.http. The host owns the memory behind
 * it until cpb_host.http_free; the stage declares it on its stack.
 */
struct cpb_http_response {
    long status;          /**< HTTP status; 0 when no response arrived */
    char *body;           /**< NUL-terminated body (may contain NULs before) */
    size_t body_len;      /**< bytes of body */
    const char *content_type; /**< Content-Type, or NULL */
    long retry_after_ms;  /**< Retry-After in ms, or -1 when absent */
    char error[256];      /**< transport error or classification message */
    void *priv;           /**< host data (headers); do not touch */
};

/**
 * An HTTP request `cpbridge serve` received for a source stage (ABI 1.3),
 * borrowed for the receive call. Every byte of it is untrusted.
 */
struct cpb_delivery {
    uint32_t size;      /**< sizeof(struct cpb_delivery) in the host */
    const char *method; /**< "POST", ... */
    const char *path;   /**< the request path, e.g. "/webhooks/shop" */
    const char *body;   /**< the raw body, NUL-terminated (may hold NULs) */
    size_t body_len;    /**< its length in bytes, without the terminator */
    const char *remote; /**< the peer's address, for log lines */
    void *priv;         /**< host data (headers); do not touch */
};

/** What the stage answers a delivery with: set by receive. */
struct cpb_answer {
    uint32_t size;     /**< sizeof(struct cpb_answer) in the host */
    int status;        /**< the HTTP status: 200, 400, 401, 503, ... */
    char message[200]; /**< a short plain-text body (no secrets, no store text) */
};

/**
 * The host services table, handed to init (borrowed; valid until fini).
 * Append-only: a stage that needs a member added after minor 0 checks it
 * with CPB_HOST_HAS(host, member) first.
 *
 * Functions returning enum cpb_status classify failures themselves: a
 * database deadlock or dropped connection is CPB_RETRY, a constraint
 * violation is CPB_FAIL, and the host records the reason and message, so a
 * stage usually just returns the status it got.
 */
struct cpb_host {
    uint32_t size;       /**< sizeof(struct cpb_host) in the host */
    uint16_t abi_major;  /**< CPB_ABI_MAJOR of the host */
    uint16_t abi_minor;  /**< CPB_ABI_MINOR of the host */

    /** Log one line, prefixed with the stage instance and current order. */
    void (*log)(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
        CPB_PRINTF(3, 4);

    /**
     * Set the reason for the status this process() call is about to return
     * (CPB_FAIL, CPB_RETRY or CPB_SKIP): a stable dotted code such as
     * "item.unknown" and a message a person can act on. The last call wins.
     */
    void (*reason)(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
        CPB_PRINTF(3, 4);

    /**
     * Raise an event (e.g. "order.warning") for notifier stages. `details`
     * is borrowed (the host copies what it keeps); may be NULL.
     */
    void (*event)(struct cpb_ctx *ctx, const char *name, json_t *details);

    /**
     * Add `value` to this stage instance's metric `name` (1 to 64 of a-z,
     * 0-9 and _) for the run; the run's metrics file (metrics.file) shows it
     * as cpbridge_stage_metric{stage="<id>",name="<name>"}.
     */
    void (*metric_add)(struct cpb_ctx *ctx, const char *name, double value);

    /**
     * CPB_SOURCE only: stage one order (WooCommerce REST shape; borrowed).
     * Returns CPB_OK when the order is newly staged or its change recorded,
     * CPB_SKIP when it was already staged unchanged, CPB_FAIL when the order
     * was rejected and reported (no usable id), CPB_RETRY when it could not
     * be stored: the source should stop and leave its cursor where it was.
     */
    enum cpb_status (*emit)(struct cpb_ctx *ctx, json_t *order);

    /**
     * Read this stage instance's persisted value for `key` (e.g. a cursor).
     * *value is borrowed, valid until the next state_get/state_set call, and
     * NULL when the key was never set. Returns CPB_OK or a database status.
     */
    enum cpb_status (*state_get)(struct cpb_ctx *ctx, const char *key, const char **value);
    /** Persist `value` (borrowed) for `key`, durably, at once. */
    enum cpb_status (*state_set)(struct cpb_ctx *ctx, const char *key, const char *value);

    /** The database dialect: "sqlite", "postgresql" or "mssql". */
    const char *(*db_dialect)(struct cpb_ctx *ctx);
    /**
     * Prepare `sql` (borrowed; `?` placeholders) on the connection of the
     * current order's transaction. CPB_STEP stages only. *stmt is released
     * with db_finalize; the host may reuse the prepared statement for the
     * same text later in the run.
     */
    enum cpb_status (*db_prepare)(struct cpb_ctx *ctx, const char *sql, struct cpb_stmt **stmt);
    /** Bind text (copied; NULL binds SQL NULL) to the 1-based parameter idx. */
    enum cpb_status (*db_bind_text)(struct cpb_stmt *stmt, unsigned idx, const char *value);
    /** Bind a 64-bit integer to parameter idx. */
    enum cpb_status (*db_bind_int)(struct cpb_stmt *stmt, unsigned idx, int64_t value);
    /** Bind an exact decimal given in ten-thousandths to parameter idx. */
    enum cpb_status (*db_bind_decimal)(struct cpb_stmt *stmt, unsigned idx, int64_t value);
    /** Bind SQL NULL to parameter idx. */
    enum cpb_status (*db_bind_null)(struct cpb_stmt *stmt, unsigned idx);
    /**
     * Execute with the current bindings (closing any open cursor first).
     * *rows (may be NULL) receives the affected row count; an UPDATE that
     * hits nothing is CPB_OK with *rows == 0.
     */
    enum cpb_status (*db_execute)(struct cpb_stmt *stmt, int64_t *rows);
    /** Fetch the next row: CPB_OK (a row), CPB_SKIP (no more rows), or an error. */
    enum cpb_status (*db_fetch)(struct cpb_stmt *stmt);
    /**
     * Column `col` (1-based) of the current row as text. *value is borrowed
     * until the next fetch, execute or finalize; NULL for SQL NULL.
     */
    enum cpb_status (*db_col_text)(struct cpb_stmt *stmt, unsigned col, const char **value);
    /** Column as a 64-bit integer; *is_null (may be NULL) tells SQL NULL. */
    enum cpb_status (*db_col_int)(struct cpb_stmt *stmt, unsigned col, int64_t *value, bool *is_null);
    /** Column as an exact decimal in ten-thousandths (rounded half away from 0). */
    enum cpb_status (*db_col_decimal)(struct cpb_stmt *stmt, unsigned col, int64_t *value,
                                      bool *is_null);
    /** Release a statement from db_prepare; NULL is accepted. */
    void (*db_finalize)(struct cpb_stmt *stmt);
    /** Bind a UTC time (ms since the epoch) as an SQL timestamp, to the millisecond. */
    enum cpb_status (*db_bind_time)(struct cpb_stmt *stmt, unsigned idx, int64_t ms);
    /** Column as a UTC time in ms since the epoch; *is_null tells SQL NULL. */
    enum cpb_status (*db_col_time)(struct cpb_stmt *stmt, unsigned col, int64_t *ms, bool *is_null);

    /**
     * Perform one HTTP exchange (retrying per req->max_tries). Returns
     * CPB_OK for a 2xx; CPB_RETRY for transport errors, timeouts, 408, 429
     * and 5xx; CPB_FAIL for other statuses. `resp` is filled whenever a
     * response arrived; release it with http_free in every case.
     */
    enum cpb_status (*http)(struct cpb_ctx *ctx, const struct cpb_http_request *req,
                            struct cpb_http_response *resp);
    /** The value of response header `name` (case-insensitive), borrowed, or NULL. */
    const char *(*http_header)(const struct cpb_http_response *resp, const char *name);
    /** Release what http put in `resp`; safe on a zeroed or freed response. */
    void (*http_free)(struct cpb_http_response *resp);

    /** The engine's clock: UTC milliseconds since the epoch (one clock for all). */
    int64_t (*now_ms)(struct cpb_ctx *ctx);
    /** Write a new random (version 4) UUID, lower case, into out[37]. */
    void (*uuid)(struct cpb_ctx *ctx, char out[37]);
    /** Register a secret (borrowed, copied): it is masked in every log line. */
    void (*redact)(struct cpb_ctx *ctx, const char *secret);
    /** This stage instance's id from the pipeline file (borrowed). */
    const char *(*stage_id)(struct cpb_ctx *ctx);
    /** The pipeline's name (borrowed). */
    const char *(*pipeline_name)(struct cpb_ctx *ctx);

    /* ---- added in ABI 1.1: check with CPB_HOST_HAS before use ---- */

    /**
     * Perform the n requests reqs[i] (borrowed) concurrently over at most
     * `max_parallel` connections at once (0: 4; at most 16), reusing
     * connections (keep-alive) across calls. Each request is retried as
     * `http` retries it (req->max_tries, req->retry_unsent_only). A 429 or
     * 503 on any of them holds back every request of the set not yet
     * started for its Retry-After (or a short backoff) and halves the
     * number in flight, remembered for this stage's next calls and won back
     * one per call without one; a Retry-After longer than a run waits
     * leaves the requests not yet sent unsent (CPB_RETRY, "not sent ...",
     * retry_after_ms set). Fills resps[i] (release each with http_free, in
     * every case) and st[i] (classified as `http` does) for every i.
     * Returns CPB_OK when every request was tried or answered (see st[]),
     * CPB_FAIL when none could be (bad arguments, out of memory; the
     * reason is set).
     */
    enum cpb_status (*http_many)(struct cpb_ctx *ctx, const struct cpb_http_request *const *reqs,
                                 struct cpb_http_response *resps, enum cpb_status *st, size_t n,
                                 unsigned max_parallel);
    /**
     * In process_batch: set the reason for item `i` of the batch (the
     * status the stage puts in out[i]), as `reason` does for one record.
     */
    void (*reason_at)(struct cpb_ctx *ctx, size_t i, const char *code, const char *fmt, ...)
        CPB_PRINTF(4, 5);

    /* ---- added in ABI 1.2: check with CPB_HOST_HAS before use ---- */

    /**
     * CPB_SOURCE only: stage the n orders orders[i] (borrowed) together, in
     * one database transaction (a source's page: one commit instead of n).
     * out[i] receives what emit would return for orders[i]. When the
     * transaction fails, the host stages the orders one by one, so one bad
     * order does not hold back the rest. Returns CPB_RETRY when any out[i]
     * is CPB_RETRY (the source should stop and leave its cursor where it
     * was), CPB_FAIL (every out[i] too) when called outside a source's run
     * or with NULL arrays, else CPB_OK.
     */
    enum cpb_status (*emit_many)(struct cpb_ctx *ctx, json_t *const *orders, size_t n,
                                 enum cpb_status *out);

    /* ---- added in ABI 1.3: check with CPB_HOST_HAS before use ---- */

    /** The value of delivery header `name` (case-insensitive), borrowed, or NULL. */
    const char *(*delivery_header)(const struct cpb_delivery *d, const char *name);
    /**
     * CPB_SOURCE only, in receive (and, since ABI 1.4, in process): the
     * store removed or cancelled order `external_id` (borrowed; e.g. moved
     * it to the trash, or set a cancel status). An order staged and not yet
     * applied is CANCELLED (audit row with `why`, borrowed); an applied one
     * is flagged and left to the pipeline's run.store_cancel policy (flag
     * for a person, or roll back), decided by the next run. Returns CPB_OK
     * (cancelled or flagged), CPB_SKIP (unknown here, or already cancelled,
     * rolled back or flagged), CPB_RETRY (the database failed: answer 5xx).
     */
    enum cpb_status (*withdraw)(struct cpb_ctx *ctx, const char *external_id, const char *why);

    /* ---- added in ABI 1.5: check with CPB_HOST_HAS before use ---- */

    /**
     * CPB_SOURCE only, in process: stage n keyed records that are not
     * orders, in one database transaction. Record i is (kind, keys[i],
     * payloads[i]) — kind 1 to 32 of a-z, 0-9, '-' and '_', a key of 1 to
     * 100 bytes, a payload object; all borrowed — and belongs to this
     * pipeline: another pipeline's records of the same kind and key are
     * other records. A record whose payload equals (same canonical JSON)
     * the one last staged for its key is left as it is (CPB_SKIP in
     * out[i]): done, dead or pending, it is not queued again. A new or
     * changed one is queued (CPB_OK): PENDING, its attempts reset, for the
     * pipeline's CPB_RECORD stages in this run. A bad kind, key or payload
     * is CPB_FAIL in out[i] with a log line. Returns CPB_RETRY when the
     * database failed (every out[i] CPB_RETRY: nothing was staged; the
     * source should stop), CPB_FAIL outside a source's process, with NULL
     * arrays or a bad kind (every out[i] CPB_FAIL), else CPB_OK. Needs a
     * 1.5 host: check CPB_HOST_HAS(host, emit_records).
     */
    enum cpb_status (*emit_records)(struct cpb_ctx *ctx, const char *kind, const char *const *keys,
                                    json_t *const *payloads, size_t n, enum cpb_status *out);
    /*
     * Also since ABI 1.5 (a host that has emit_records): a CPB_SOURCE stage
     * may use db_prepare and the statement services in process, to read
     * the database (Counterpoint's tables) on the run's connection, outside
     * any order's transaction. Fetch what you need and db_finalize every
     * statement before calling emit_records or emit_many, which run their
     * own transaction on that connection (an open cursor does not survive
     * it everywhere); do not write.
     */
};

/** True when `host` provides `member` (for members added after minor 0). */
#define CPB_HOST_HAS(host, member)                                                                 \
    ((host)->size >= offsetof(struct cpb_host, member) + sizeof((host)->member) &&                 \
     (host)->member != NULL)

/**
 * The stage descriptor. One constant instance per stage, returned by
 * cpb_stage_entry(); the same descriptor serves static builds and tests.
 */
struct cpb_stage {
    uint16_t abi_major;    /**< CPB_ABI_MAJOR at build time */
    uint16_t abi_minor;    /**< CPB_ABI_MINOR at build time */
    uint32_t size;         /**< sizeof(struct cpb_stage) at build time */
    const char *name;      /**< stage name, e.g. "create-order"; must match the file */
    const char *version;   /**< the stage's own version, e.g. "1.0.0" */
    const char *summary;   /**< one line for `cpbridge stages` */
    enum cpb_kind kind;    /**< when the runner calls it */
    const struct cpb_option *options; /**< declared options; NULL-name terminated */
    size_t options_size;   /**< sizeof the options struct the table fills */

    /**
     * Set up one instance. `host` and `ctx` are borrowed until fini;
     * `options` is the filled struct, borrowed until fini. On success store
     * the instance's state (new, owned by the stage) in *state and return 0;
     * on failure log why and return -1 (fini is still called with *state).
     */
    int (*init)(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                void **state);
    /** Handle one record (borrowed); see enum cpb_status and struct cpb_record. */
    enum cpb_status (*process)(void *state, struct cpb_record *rec);
    /** Release the state; must accept NULL and a half-built state. */
    void (*fini)(void *state);

    /* ---- added in ABI 1.1 (a 1.0 stage is loaded without it) ---- */

    /**
     * Optional, CPB_AFTER_COMMIT only: handle several applied orders at once
     * (recs[0..n-1], borrowed for the call), so a stage can batch its work
     * (one request for many orders). Store each record's outcome in out[i]
     * and, for one that is not CPB_OK or CPB_SKIP, its reason with
     * host->reason_at(ctx, i, ...). The engine still records each order's
     * outcome separately (retry, give up, done). When NULL, process is
     * called once per record.
     * Since ABI 1.5 also for CPB_RECORD stages, with claimed records (up to
     * run.batch of them): CPB_OK or CPB_SKIP makes a record DONE (its
     * payload is now true in the world), CPB_RETRY tries it again after the
     * retry policy's backoff (not before a Retry-After the stage's HTTP
     * calls got) and makes it DEAD after retry.max_attempts, CPB_FAIL makes
     * it DEAD at once (a person looks: `cpbridge status` lists it). A
     * record of several CPB_RECORD stages goes through them in the
     * pipeline's order, as far as each one answers CPB_OK or CPB_SKIP.
     */
    void (*process_batch)(void *state, struct cpb_record *const *recs, size_t n,
                          enum cpb_status *out);

    /* ---- added in ABI 1.3 (an older stage is loaded without it) ---- */

    /**
     * Optional, CPB_SOURCE only: handle one HTTP delivery `cpbridge serve`
     * received for this instance (its route is /webhooks/<stage id>): check
     * it, stage what it carries through host->emit (or host->withdraw) and
     * fill `ans` (borrowed; status 200 only once the order is durably
     * staged). Returns CPB_OK (staged or recorded), CPB_SKIP (nothing to do:
     * a ping, unchanged), CPB_FAIL (refused: bad signature, not an order) or
     * CPB_RETRY (staging failed: answer 5xx so the store sends it again).
     * Called from one thread at a time, like every call of an instance.
     */
    enum cpb_status (*receive)(void *state, const struct cpb_delivery *d, struct cpb_answer *ans);
};

/** Fills a descriptor's version fields; use as the first initializers. */
#define CPB_STAGE_HEADER                                                                           \
    .abi_major = CPB_ABI_MAJOR, .abi_minor = CPB_ABI_MINOR, .size = sizeof(struct cpb_stage)

/** The single symbol a stage exports. Returns a borrowed, static descriptor. */
typedef const struct cpb_stage *(*cpb_stage_entry_fn)(void);

/**
 * Define the exported entry point returning `desc` (an extern const struct
 * cpb_stage); write it once at the end of the stage, followed by a ';'. Built with -DCPB_STAGE_STATIC (static builds and tests that
 * link several stages into one program), no entry point is emitted and the
 * program refers to the descriptor by its name instead.
 */
#ifdef CPB_STAGE_STATIC
#define CPB_STAGE_ENTRY(desc) extern const struct cpb_stage desc
#else
#define CPB_STAGE_ENTRY(desc)                                                                      \
    CPB_EXPORT const struct cpb_stage *cpb_stage_entry(void);                                      \
    CPB_EXPORT const struct cpb_stage *cpb_stage_entry(void) { return &(desc); }                   \
    extern const struct cpb_stage desc
#endif

#ifdef __cplusplus
}
#endif

#endif /* CPBRIDGE_STAGE_H */
