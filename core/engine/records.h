/*
 * records.h — keyed records that are not orders (ABI 1.5): what a source
 * stages with emit_records and the pipeline's CPB_RECORD stages push, kept
 * in USER_RECORD_STAGING (migration 004) with their audit trail in
 * USER_RECORD_EVENT.
 *
 * A record is one row per (pipeline, kind, key). Staging a payload whose
 * canonical JSON hashes as the one last staged leaves the row alone: a run
 * where nothing changed queues nothing. A new or changed payload is
 * PENDING, due now, its attempts reset. Runs claim due records with a lease
 * (as orders are claimed), and the outcome of each is written only while
 * the claim's token still holds it; a record DONE is DONE for the payload
 * that was pushed (a payload staged meanwhile stays PENDING).
 */
#ifndef CPB_RECORDS_H
#define CPB_RECORDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpbridge/stage.h"
#include "services/db.h"

#define REC_PENDING "PENDING"
#define REC_DONE    "DONE"
#define REC_DEAD    "DEAD"

/* One claimed record; the strings are owned (records_clear). */
struct staged_record {
    int64_t id;
    char *kind;
    char *key;
    char *source;
    char *payload; /* JSON text */
    char *hash;
    char *result;      /* JSON text, or NULL */
    unsigned attempts; /* this one included */
};

void records_clear(struct staged_record *r);

/* True when `kind` (borrowed) is a valid record kind: 1 to 32 of a-z, 0-9,
 * '-' and '_'. */
bool records_kind_ok(const char *kind);

/*
 * Stage the n records (kind, keys[i], payloads[i]) of `pipeline` from
 * source stage `source` (all borrowed) in one transaction. out[i] gets
 * CPB_OK (queued), CPB_SKIP (unchanged) or CPB_FAIL (a bad key or payload:
 * msg says which, the first one only). Returns CPB_OK, or the database's
 * status (nothing staged). *queued counts the CPB_OK ones.
 */
enum cpb_status records_stage(struct db *db, const char *pipeline, const char *source,
                              const char *kind, const char *const *keys, json_t *const *payloads,
                              size_t n, int64_t now, enum cpb_status *out, size_t *queued,
                              char *msg, size_t msglen);

/*
 * Claim up to `limit` records of `pipeline` due by `due_by` and not leased
 * at `now`, with `token` and `owner` (borrowed) until now + lease_ms, and
 * load them into v (the caller's array of `limit`; records_clear each).
 * Attempts count this claim. *n receives how many. Returns CPB_OK or the
 * database's status.
 */
enum cpb_status records_claim(struct db *db, const char *pipeline, const char *token,
                              const char *owner, int64_t now, int64_t due_by, int64_t lease_ms,
                              unsigned limit, struct staged_record *v, unsigned *n);

/* What becomes of one claimed record. */
struct record_outcome {
    const struct staged_record *rec; /* borrowed */
    const char *to;                  /* REC_DONE, REC_PENDING (retry) or REC_DEAD */
    int64_t next;                    /* REC_PENDING: when it is due again */
    const char *stage_id;            /* the stage that decided; borrowed */
    const char *code;                /* reason code, or NULL for DONE */
    const char *message;             /* reason, or what was made true for DONE */
    const char *result;              /* the record's result JSON to keep, or NULL */
};

/*
 * Write the outcomes o[0..n-1] of records claimed with `token`, and their
 * events (run `run_id`), in one transaction. A record whose claim was lost
 * is lost[i]: left alone, except that one the stage pushed is made due
 * again (what it pushed may be older than what the run that took the
 * record over pushed);
 * one whose payload changed since the claim stays PENDING, due as staged. Returns CPB_OK or the
 * database's status (nothing written).
 */
enum cpb_status records_finish(struct db *db, const char *token, const char *run_id,
                               const struct record_outcome *o, size_t n, int64_t now, bool *lost);

/* Keep the records claimed with `token` (borrowed) leased until `until`,
 * while their stages work. Returns CPB_OK or the database's status. */
enum cpb_status records_renew(struct db *db, const char *token, int64_t until);

/* Counts of one pipeline's records by state (pipeline NULL: all). */
struct record_counts {
    int64_t pending;
    int64_t done;
    int64_t dead;
    int64_t oldest_pending_ms; /* UPDATED_DT of the oldest pending; 0 none */
};

/* Fill *c (the caller's). Returns CPB_OK or the database's status. */
enum cpb_status records_count(struct db *db, const char *pipeline, struct record_counts *c);

#endif
