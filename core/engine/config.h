/*
 * config.h — the pipeline file: libconfig syntax with @include, ${VAR},
 * ${VAR:-default} and ${VAR:?message} interpolation inside strings, the
 * engine's own keys (declared as option tables) and the list of stages.
 *
 * File layout (docs/CONFIGURATION.md has every key):
 *
 *   name = "demo";                          # required, [A-Za-z0-9_.-]+
 *   stage_dirs = [ "/opt/cpbridge/stages" ];
 *   database = { dialect = "sqlite"; connection = "Driver=SQLite3;...";
 *                login_timeout = "5s"; };
 *   run = { batch = 50; lease = "2m"; lock_file = "..."; stale_after = "1h";
 *           expect_every = "15m"; };
 *   retry = { max_attempts = 3; base = "30s"; cap = "1h"; };
 *   log = { level = "info"; format = "text"; };
 *   metrics = { file = "/var/lib/node_exporter/cpbridge.prom"; };
 *   health = { pending_warn = 50; ... };
 *   alerts = { throttle = "1h"; };
 *   stages = ( { stage = "source-file"; id = "samples";
 *                options = { path = "..."; }; }, ... );
 *
 * Interpolation: ${VAR} is the environment variable VAR (an error when unset
 * or empty), ${VAR:-text} uses text when VAR is unset or empty (text may
 * itself contain ${...}, up to 8 levels), ${VAR:?message} fails with the
 * message when VAR is unset or empty, and $$ is a literal $. The engine
 * provides PIPELINE_DIR, the absolute directory of the pipeline file, unless
 * the environment sets it.
 */
#ifndef CPB_CONFIG_H
#define CPB_CONFIG_H

#include <libconfig.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/err.h"

struct opt_store;

/* One entry of `stages`. Strings are owned by the config. */
struct config_stage {
    const char *stage;               /* stage name: "create-order" */
    const char *id;                  /* instance id; defaults to the stage name */
    const char *const *on;           /* notify: event names (NULL-terminated), or NULL */
    bool enabled;                    /* `enabled = false` keeps it out of the run */
    const config_setting_t *options; /* the `options` group, or NULL */
    const char *file;                /* where the entry is declared */
    int line;
};

/* Engine settings. Each block is filled from a declared option table. */
struct config_database {
    const char *dialect;     /* "sqlite", "postgresql" or "mssql" */
    const char *connection;  /* ODBC connection string or DSN=...; secret */
    int64_t login_timeout_ms;
    int dialect_index;       /* index of dialect in the table's choices (the
                                ENUM field options_fill writes) */
};

struct config_run {
    int64_t batch;           /* orders claimed per round */
    int64_t lease_ms;        /* lease length of a claim */
    const char *lock_file;   /* host lock; default: $TMPDIR/cpbridge-<name>.lock */
    int64_t stale_after_ms;  /* pending longer than this raises orders.stale */
    int64_t expect_every_ms; /* dead-man: no successful run for longer raises scheduler.missed */
    int store_cancel;        /* enum store_cancel: an applied order the store cancelled */
};

/* run.store_cancel: the index of its choice. */
enum store_cancel { STORE_CANCEL_FLAG = 0, STORE_CANCEL_ROLLBACK = 1 };

struct config_retry {
    int64_t max_attempts;
    int64_t base_ms;
    int64_t cap_ms;
};

struct config_log {
    int level;               /* enum cpb_log_level */
    int format;              /* 0 text, 1 json */
};

struct config_metrics {
    const char *file;        /* Prometheus textfile path, or NULL */
};

struct config_serve {
    const char *listen;       /* address to bind */
    int64_t port;             /* 0: any free port */
    const char *tls_cert;     /* PEM certificate chain file, or NULL */
    const char *tls_key;      /* PEM private key file, or NULL */
    int64_t workers;          /* threads that apply staged orders */
    int64_t coalesce_ms;      /* wait after a delivery before applying */
    int64_t sweep_ms;         /* apply at least this often (retries coming due) */
    int64_t max_body;         /* bytes; larger deliveries get 413 */
    const char *metrics_file; /* the receiver's Prometheus textfile, or NULL */
};

struct config_health {
    int64_t pending_warn, pending_crit;
    int64_t dead_warn, dead_crit;
    int64_t invalid_warn, invalid_crit;
    int64_t oldest_pending_warn_ms, oldest_pending_crit_ms;
    int64_t last_success_warn_ms, last_success_crit_ms;
};

struct config_alerts {
    int64_t throttle_ms;     /* the same alert is not resent within this */
};

struct config {
    const char *path;          /* the pipeline file as given */
    const char *dir;           /* its absolute directory */
    const char *name;
    const char *const *stage_dirs; /* NULL-terminated; may be empty */
    struct config_database database;
    struct config_run run;
    struct config_retry retry;
    struct config_log log;
    struct config_metrics metrics;
    struct config_health health;
    struct config_alerts alerts;
    struct config_serve serve;
    struct config_stage *stages;
    size_t n_stages;
    /* private */
    config_t lc;
    struct opt_store *stores[8];
};

/* Read and check a pipeline file. On success *out is a new config (free
 * with config_free). On failure returns -1 with err: CPB_EXIT_NOINPUT when
 * the file cannot be read, CPB_EXIT_CONFIG otherwise, the message naming
 * file:line. Stage option groups are not checked here (that needs the
 * loaded stage): see options_fill. */
int config_load(const char *path, struct config **out, struct err *err);

/* Release a config; NULL is accepted. */
void config_free(struct config *cfg);

/* The engine's option tables, for `cpbridge stages --describe engine` and
 * docs: returns the table for a block name ("database", "run", ...) or
 * NULL. `names` lists the blocks, NULL-terminated. */
const struct cpb_option *config_engine_table(const char *block);
extern const char *const config_engine_blocks[];

/* Expand ${...} in `in` (borrowed) into a new string (*out, free()). `where`
 * names the place for messages ("demo.cfg:12"). Returns 0 or -1 with err. */
int config_interpolate(const char *in, const char *where, char **out, struct err *err);

#endif
