/*
 * pipeline.h — a pipeline made ready to run: its file read and checked,
 * every enabled stage located, loaded and ABI-checked, its options filled
 * from the declared table, and a host context made for each instance.
 * Used by run, check and the operations commands alike.
 */
#ifndef CPB_PIPELINE_H
#define CPB_PIPELINE_H

#include <stdbool.h>

#include "engine/config.h"
#include "engine/host.h"
#include "engine/loader.h"
#include "lib/err.h"

struct stage_inst {
    const struct config_stage *cs; /* borrowed from the config */
    struct loaded_stage ls;
    void *opts;                    /* the filled options struct (new) */
    struct opt_store *store;
    struct cpb_ctx *ctx;
    void *state;                   /* from init */
    bool inited;
};

struct pipeline {
    struct config *cfg;
    struct stage_inst *st;
    size_t n;
    struct host_env env; /* shared by every context */
};

/*
 * Read `path`, load and check every enabled stage and its options. Does not
 * call init (see pipeline_init). On success *out is new (pipeline_close).
 * Returns 0 or -1 with err (CPB_EXIT_NOINPUT / CPB_EXIT_CONFIG) naming the
 * file:line of the stage entry and the stage.
 */
int pipeline_open(const char *path, struct pipeline **out, struct err *err);

/* Call every stage's init in declared order; the first failure stops with
 * CPB_EXIT_CONFIG naming the stage. */
int pipeline_init(struct pipeline *p, struct err *err);

/* Before pipeline_init: unload stage instance `i` (< p->n) and remove it
 * from p->st (the later ones move down). Used by `cpbridge test`, which
 * runs a pipeline without its sources, after-commit steps and notifiers. */
void pipeline_remove(struct pipeline *p, size_t i);

/* Before pipeline_init: load the stage of entry `cs` (borrowed; it must
 * outlive `p`, as the config's own entries do) as instance `at` (<= p->n),
 * its options checked like the file's. Returns 0, or -1 with err as
 * pipeline_open's (nothing added). */
int pipeline_insert(struct pipeline *p, size_t at, const struct config_stage *cs, struct err *err);

/* fini every initialised stage, unload, free. NULL is accepted. */
void pipeline_close(struct pipeline *p);

/* True when event `name` matches one of a notifier's `on` patterns:
 * an exact name, "prefix.*", or "*". */
bool pipeline_subscribed(const struct stage_inst *s, const char *name);

#endif
