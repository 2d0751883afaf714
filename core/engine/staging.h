/*
 * staging.h — the engine's SQL over its own USER_ tables: staging orders
 * idempotently, claiming due orders with leases, recording outcomes, the
 * audit trail, source state and the run log. This file's .c is the one
 * place where the engine's SQL differs by dialect (the claim query); every
 * other statement is portable and every value is bound.
 *
 * All times are the engine's clock (UTC ms) bound from C: one clock.
 */
#ifndef CPB_STAGING_H
#define CPB_STAGING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpbridge/stage.h"
#include "services/db.h"

/* Staging states (USER_ORDER_STAGING.STATUS). */
#define ST_PENDING "PENDING"
#define ST_APPLIED "APPLIED"
#define ST_INVALID "INVALID"
#define ST_DEAD "DEAD"
#define ST_CANCELLED "CANCELLED"
#define ST_ROLLED_BACK "ROLLED_BACK"

/* AFTER_PENDING values. */
enum after_state { AFTER_NONE = 0, AFTER_DUE = 1, AFTER_GAVE_UP = 2 };

/* What staging_upsert did. */
enum upsert_outcome {
    UPSERT_NEW = 0,            /* a new row */
    UPSERT_UNCHANGED = 1,      /* same payload hash: nothing written */
    UPSERT_UPDATED = 2,        /* changed before it was applied: payload
                                  replaced, due again with attempts reset */
    UPSERT_CHANGED_AFTER = 3,  /* changed after it was applied: flagged for a
                                  person (CHANGED_AFTER_APPLY=1), not re-created */
    UPSERT_IGNORED = 4,        /* changed, but the order is CANCELLED */
    UPSERT_STORE_CANCELLED = 5 /* applied, and the store cancelled or fully
                                refunded it: flagged, and STORE_CANCELLED=1
                                for run.store_cancel */
};

/* One staged order as the runner needs it. Strings are new (free with
 * staging_order_clear). */
struct staged_order {
    int64_t id;
    char *source;
    char *ext_id;
    char *status;
    char *payload;
    unsigned attempts;
    unsigned after_attempts;
    int after_pending;
    int64_t cp_doc_id;     /* 0 when none */
    char *cp_tkt_no;       /* NULL when none */
};
void staging_order_clear(struct staged_order *o);

/*
 * Stage one normalized order (borrowed) with its raw payload text (borrowed)
 * and hash, in its own transaction. An order whose "problems" list is not
 * empty is staged INVALID with reason payload.malformed (never dropped).
 * *id receives the staging id. Returns CPB_OK / a database status; *outcome
 * says what happened.
 */
enum cpb_status staging_upsert(struct db *db, const char *source, json_t *normalized,
                               const char *payload, const char *hash, int64_t now,
                               const char *run_id, enum upsert_outcome *outcome, int64_t *id);

/* One order of staging_upsert_many: the caller fills norm, payload and hash
 * (borrowed), staging fills outcome and id. */
struct staging_item {
    json_t *norm;
    const char *payload;
    const char *hash;
    enum upsert_outcome outcome;
    int64_t id;
};

/*
 * Stage items[0..n-1] of `source` as staging_upsert stages each, all in one
 * transaction (group commit): every item is recorded, or, when a database
 * status is returned, none is (their outcome and id are then meaningless).
 * An order that appears twice is staged, then found unchanged or updated.
 */
enum cpb_status staging_upsert_many(struct db *db, const char *source, struct staging_item *items,
                                    size_t n, int64_t now, const char *run_id);

/* What staging_withdraw did. */
enum withdraw_outcome {
    WITHDRAW_UNKNOWN = 0,   /* no such order of this source: nothing done */
    WITHDRAW_CANCELLED = 1, /* staged, not applied: now CANCELLED */
    WITHDRAW_FLAGGED = 2,   /* applied: flagged, STORE_CANCELLED=1 for run.store_cancel */
    WITHDRAW_ALREADY = 3    /* already cancelled, rolled back or flagged so */
};

/*
 * The store removed order `ext_id` of `source` (e.g. moved it to the
 * trash): in one transaction, an order not yet applied (PENDING, INVALID,
 * DEAD) becomes CANCELLED, its lease dropped, and an applied one is flagged
 * (CHANGED_AFTER_APPLY) and marked STORE_CANCELLED for the run's
 * store_cancel policy; each with an audit event carrying `why` (borrowed) and the
 * run. *id (may be NULL) receives the staging id, 0 when unknown.
 */
enum cpb_status staging_withdraw(struct db *db, const char *source, const char *ext_id,
                                 const char *why, const char *run_id, int64_t now,
                                 enum withdraw_outcome *outcome, int64_t *id);

/*
 * Claim up to `limit` due orders for this runner: PENDING orders whose next
 * attempt time is at or before `due_by` (the runner passes its start time,
 * so an order retried during a run waits for a later run), and APPLIED orders with after-commit work due,
 * whose lease is free or expired. Sets the lease (token, owner, until) and
 * counts the attempt, committed at once. ids (caller array of `limit`)
 * receive the claimed ids in order; *n their number. `claim_token` (a new
 * UUID per call) marks the rows of this claim while they are read back, so
 * rows the runner still holds with `token` from an earlier claim (applied,
 * their after-commit steps queued) are not taken twice.
 */
enum cpb_status staging_claim(struct db *db, const char *token, const char *claim_token,
                              const char *owner, int64_t now, int64_t due_by, int64_t lease_ms,
                              unsigned limit, int64_t *ids, unsigned *n);

/* Extend the lease of every row still held with `token`. */
/* How many orders a claim at `now` would find due (as staging_claim
 * counts them), into *n. */
enum cpb_status staging_count_due(struct db *db, int64_t due_by, int64_t now, int64_t *n);

enum cpb_status staging_renew(struct db *db, const char *token, int64_t until);

/* Read a claimed order (only if it still holds `token`): CPB_SKIP when the
 * lease was lost. A NULL token reads without a lease (dry runs). */
enum cpb_status staging_load(struct db *db, int64_t id, const char *token,
                             struct staged_order *out);

/* Inside the order's transaction: lock the row and check the lease.
 * CPB_SKIP when the lease was lost. NULL token: no lease check (dry runs,
 * which always roll back). */
enum cpb_status staging_lock(struct db *db, int64_t id, const char *token, int64_t now);

/* Inside the order's transaction: mark APPLIED with the Counterpoint
 * document, keep the lease when after-commit work follows. CPB_SKIP when
 * the lease was lost (the caller rolls back). NULL token: as staging_lock.
 * `adopted`: the document existed already and was adopted, not written. */
enum cpb_status staging_mark_applied(struct db *db, int64_t id, const char *token,
                                     int64_t doc_id, const char *tkt_no, bool adopted,
                                     bool after_due, int64_t now);

/* After a failed attempt (own transaction): `status` is ST_PENDING with
 * next_attempt (a retry) or ST_INVALID / ST_DEAD; releases the lease. */
enum cpb_status staging_mark_failed(struct db *db, int64_t id, const char *token,
                                    const char *status, int64_t next_attempt, const char *code,
                                    const char *message, int64_t now);

/* After-commit bookkeeping (own statements, autocommit). */
enum cpb_status staging_after_is_done(struct db *db, int64_t id, const char *stage_id,
                                      bool *done);
enum cpb_status staging_after_done(struct db *db, int64_t id, const char *stage_id, int64_t now);
/* All after-commit steps done (AFTER_NONE), due again at next_attempt
 * (AFTER_DUE), or given up (AFTER_GAVE_UP, with code/message); the lease
 * is released in every case. */
enum cpb_status staging_after_finish(struct db *db, int64_t id, const char *token,
                                     enum after_state state, int64_t next_attempt,
                                     const char *code, const char *message, int64_t now);

/* Append to the audit trail (USER_ORDER_EVENT). NULLs allowed for the
 * optional fields; order_id 0 for none. */
struct staging_event {
    int64_t order_id;
    const char *run_id;
    const char *kind;
    const char *stage_id;
    const char *status_from;
    const char *status_to;
    const char *code;
    const char *message;
    const char *actor;
    int64_t duration_ms; /* < 0: none */
};
enum cpb_status staging_event(struct db *db, const struct staging_event *ev, int64_t now);

/* Source state (USER_SYNC_STATE), own transaction for set. *value is new
 * (free()) or NULL when unset. */
enum cpb_status staging_state_get(struct db *db, const char *key, char **value);
enum cpb_status staging_state_set(struct db *db, const char *key, const char *value, int64_t now);

/* The run log (USER_SYNC_LOG). */
struct run_counts {
    unsigned staged, claimed, applied, retry, invalid, dead, after_done, after_failed;
    /* records that are not orders (ABI 1.5): queued (new or changed) by
     * sources, claimed, done, retrying, dead */
    unsigned rec_queued, rec_claimed, rec_done, rec_retry, rec_dead;
};
enum cpb_status staging_run_start(struct db *db, const char *run_id, const char *pipeline,
                                  const char *host, int64_t now);
enum cpb_status staging_run_end(struct db *db, const char *run_id, const char *result,
                                int exit_code, const struct run_counts *c, int64_t duration_ms,
                                const char *message, const char *stage_timings, int64_t now);

#endif
