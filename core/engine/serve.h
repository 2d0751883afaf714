/*
 * serve.h — `cpbridge serve`: a long-running receiver for a pipeline. An
 * embedded HTTP server hands each delivery on /webhooks/<source id> to that
 * source stage's receive (which stages it durably before it is answered),
 * and a few worker threads, each with its own instance of the pipeline,
 * claim and apply the staged orders through the same runner path as
 * `cpbridge run` (claims, leases, one transaction per order, after-commit
 * steps, retries, DEAD), shortly after a delivery and at least every
 * serve.sweep. Scheduled runs keep working beside it: the database's
 * claims keep them apart.
 */
#ifndef CPB_SERVE_H
#define CPB_SERVE_H

#include "engine/runner.h"
#include "lib/err.h"

struct serve_options {
    const char *pipeline_path; /* borrowed until serve_stop */
    const char *port_file;     /* write the bound port here once listening, or NULL */
    run_undo_fn undo;          /* for the workers' runs (run_options.undo) */
    void *undo_arg;
};

struct server;

/* Serve pipeline `p` (opened from o->pipeline_path, not yet initialised;
 * the server owns it from here, also on failure): initialise it as the
 * intake, open it once more per worker, connect, listen, start the
 * workers. Returns 0 with *out (new; serve_stop frees it), or -1 with err
 * set (an exit code of enum cpb_exit). */
struct pipeline;
int serve_start(const struct serve_options *o, struct pipeline *p, struct server **out,
                struct err *err);

/* Housekeeping, called about once a second from the main thread: notifier
 * events raised while receiving, the receiver's state (health) and its
 * metrics file. */
void serve_tick(struct server *s);

/* Graceful stop: stop accepting, answer the deliveries in flight, let each
 * worker finish the orders it has claimed (it claims no more), record the
 * receiver as stopped, free. NULL is accepted. */
void serve_stop(struct server *s);

/* The key in USER_SYNC_STATE under which a server of pipeline `name` (borrowed)
 * records its state (JSON: pid, listen, port, started, heartbeat, stopped,
 * deliveries, bad_signatures, last_delivery, per_minute), written to out. */
void serve_state_key(const char *name, char *out, size_t n);

#endif
