/*
 * alerts.h — alert deduplication and throttling. The runner groups a run's
 * events into one object per event name (a digest: many orders, one alert).
 * Before delivery, alerts_filter drops what was already delivered within the
 * throttle window: per (event, order, reason) for order events, per (event,
 * reason) for the others. Only after a notifier delivered an event are its
 * keys recorded (alerts_record), so a failed delivery is tried again next
 * run. State lives in USER_SYNC_STATE ("alert/<pipeline>/<event>/...", shared
 * by every host running the pipeline); when the database is the thing that
 * is down, in a small JSON file beside the run lock instead.
 */
#ifndef CPB_ALERTS_H
#define CPB_ALERTS_H

#include <jansson.h>
#include <stdint.h>

#include "services/db.h"

struct alert_store {
    struct db *db;          /* borrowed; NULL when not connected */
    const char *file;       /* fallback state file (borrowed) */
    const char *pipeline;   /* borrowed */
    int64_t throttle_ms;
};

/*
 * Filter `events` (borrowed, modified: object of event name -> event) in
 * place and return, as a new reference, an object of event name -> array of
 * the keys to record once that event is delivered. "run.summary" is never
 * throttled. Returns NULL when out of memory (then nothing is filtered).
 */
json_t *alerts_filter(const struct alert_store *s, json_t *events, int64_t now);

/* Record `keys` (borrowed array of strings) as delivered at `now`. Failures
 * are logged: at worst an alert is sent again. */
void alerts_record(const struct alert_store *s, json_t *keys, int64_t now);

/* Forget keys recorded before `before` (keeps the state table small). */
void alerts_prune(const struct alert_store *s, int64_t before);

#endif
