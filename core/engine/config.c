/*
 * config.c — reading a pipeline file (see config.h): libconfig parsing with
 * @include relative to the file, a guard against libconfig's silent integer
 * wrap-around, ${...} interpolation of every string, the top-level keys,
 * the engine blocks filled from declared option tables (options_fill, the
 * same mechanism stages use) and the list of stages.
 */
#include "engine/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/options.h"
#include "lib/buf.h"
#include "lib/text.h"

/* Deepest ${...} nesting inside defaults and messages. */
#define INTERP_MAX_DEPTH 8
/* Longest environment variable name accepted in ${...}. */
#define VAR_NAME_MAX 128
/* Deepest nesting of groups and lists walked. */
#define TREE_MAX_DEPTH 64
/* libconfig's own @include nesting limit. */
#define INCLUDE_MAX_DEPTH 10
/* Largest pipeline or included file scanned. */
#define CONFIG_FILE_MAX (16 * 1024 * 1024)
/* Longest pipeline name and stage id. */
#define NAME_MAX_LEN 64

static const char *const dialect_choices[] = {"sqlite", "postgresql", "mssql", NULL};
static const char *const level_choices[] = {"error", "warn", "info", "debug", NULL};
static const char *const format_choices[] = {"text", "json", NULL};
static const char *const store_cancel_choices[] = {"flag", "rollback", NULL};

/* Milliseconds in a second, minute, hour and day, for the tables. */
#define MS_S 1000LL
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * MS_H)

static const struct cpb_option database_table[] = {
    {"dialect", CPB_OPT_ENUM, 0, "sqlite", 0, 0, dialect_choices,
     offsetof(struct config_database, dialect_index),
     "SQL dialect of the database: sqlite (embedded), postgresql, or mssql (Counterpoint)."},
    {"connection", CPB_OPT_STRING, CPB_OPT_REQUIRED | CPB_OPT_SECRET, NULL, 1, 8192, NULL,
     offsetof(struct config_database, connection),
     "ODBC connection string or DSN=...; \"file:/path\" reads it from a file."},
    {"login_timeout", CPB_OPT_DURATION, 0, "10s", 1 * MS_S, 5 * MS_M, NULL,
     offsetof(struct config_database, login_timeout_ms),
     "How long to wait for the database to accept a connection."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option run_table[] = {
    {"batch", CPB_OPT_INT, 0, "50", 1, 1000, NULL, offsetof(struct config_run, batch),
     "Orders claimed per round."},
    {"lease", CPB_OPT_DURATION, 0, "2m", 10 * MS_S, MS_D, NULL,
     offsetof(struct config_run, lease_ms),
     "How long a claim holds an order before another runner may take it over."},
    {"lock_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL, offsetof(struct config_run, lock_file),
     "Host lock file; unset: $TMPDIR/cpbridge-<name>.lock."},
    {"stale_after", CPB_OPT_DURATION, 0, "1h", MS_M, 30 * MS_D, NULL,
     offsetof(struct config_run, stale_after_ms),
     "Orders pending longer than this raise orders.stale."},
    {"expect_every", CPB_OPT_DURATION, 0, "15m", MS_M, 30 * MS_D, NULL,
     offsetof(struct config_run, expect_every_ms),
     "No successful run for longer than this raises scheduler.missed."},
    {"store_cancel", CPB_OPT_ENUM, 0, "flag", 0, 0, store_cancel_choices,
     offsetof(struct config_run, store_cancel),
     "An applied order the store cancels, refunds in full or trashes: \"flag\" it for a"
     " person, or \"rollback\" (undo its open, unedited Counterpoint document as"
     " `cpbridge rollback` does; flagged with the reason when that is refused)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option retry_table[] = {
    {"max_attempts", CPB_OPT_INT, 0, "3", 1, 100, NULL, offsetof(struct config_retry, max_attempts),
     "Attempts before an order that keeps failing with RETRY becomes DEAD."},
    {"base", CPB_OPT_DURATION, 0, "30s", MS_S, MS_D, NULL, offsetof(struct config_retry, base_ms),
     "First backoff; each later one doubles, with full jitter."},
    {"cap", CPB_OPT_DURATION, 0, "1h", MS_S, 30 * MS_D, NULL, offsetof(struct config_retry, cap_ms),
     "Longest backoff; not below base."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option log_table[] = {
    {"level", CPB_OPT_ENUM, 0, "info", 0, 0, level_choices, offsetof(struct config_log, level),
     "Messages above this level are dropped."},
    {"format", CPB_OPT_ENUM, 0, "text", 0, 0, format_choices, offsetof(struct config_log, format),
     "Log line format: text for people, json for collectors."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option metrics_table[] = {
    {"file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL, offsetof(struct config_metrics, file),
     "Prometheus textfile rewritten after each run; unset: no metrics file."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option health_table[] = {
    {"pending_warn", CPB_OPT_INT, 0, "50", 0, 1000000000, NULL,
     offsetof(struct config_health, pending_warn), "Pending orders that make health WARNING."},
    {"pending_crit", CPB_OPT_INT, 0, "500", 0, 1000000000, NULL,
     offsetof(struct config_health, pending_crit), "Pending orders that make health CRITICAL."},
    {"dead_warn", CPB_OPT_INT, 0, "1", 0, 1000000000, NULL,
     offsetof(struct config_health, dead_warn), "Dead orders that make health WARNING."},
    {"dead_crit", CPB_OPT_INT, 0, "10", 0, 1000000000, NULL,
     offsetof(struct config_health, dead_crit), "Dead orders that make health CRITICAL."},
    {"invalid_warn", CPB_OPT_INT, 0, "1", 0, 1000000000, NULL,
     offsetof(struct config_health, invalid_warn), "Invalid orders that make health WARNING."},
    {"invalid_crit", CPB_OPT_INT, 0, "25", 0, 1000000000, NULL,
     offsetof(struct config_health, invalid_crit), "Invalid orders that make health CRITICAL."},
    {"oldest_pending_warn", CPB_OPT_DURATION, 0, "30m", MS_M, 365 * MS_D, NULL,
     offsetof(struct config_health, oldest_pending_warn_ms),
     "Age of the oldest pending order that makes health WARNING."},
    {"oldest_pending_crit", CPB_OPT_DURATION, 0, "2h", MS_M, 365 * MS_D, NULL,
     offsetof(struct config_health, oldest_pending_crit_ms),
     "Age of the oldest pending order that makes health CRITICAL."},
    {"last_success_warn", CPB_OPT_DURATION, 0, "30m", MS_M, 365 * MS_D, NULL,
     offsetof(struct config_health, last_success_warn_ms),
     "Time since the last successful run that makes health WARNING."},
    {"last_success_crit", CPB_OPT_DURATION, 0, "2h", MS_M, 365 * MS_D, NULL,
     offsetof(struct config_health, last_success_crit_ms),
     "Time since the last successful run that makes health CRITICAL."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option serve_table[] = {
    {"listen", CPB_OPT_STRING, 0, "127.0.0.1", 1, 64, NULL, offsetof(struct config_serve, listen),
     "`cpbridge serve`: the IPv4 or IPv6 address to listen on (a reverse proxy or the firewall"
     " forwards the store's deliveries here)."},
    {"port", CPB_OPT_INT, 0, "8787", 0, 65535, NULL, offsetof(struct config_serve, port),
     "`cpbridge serve`: the TCP port; 0 takes any free one."},
    {"tls_cert", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL, offsetof(struct config_serve, tls_cert),
     "`cpbridge serve`: a PEM certificate (chain) file to answer over HTTPS; needs tls_key."},
    {"tls_key", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL, offsetof(struct config_serve, tls_key),
     "`cpbridge serve`: the PEM private key file of tls_cert."},
    {"workers", CPB_OPT_INT, 0, "2", 1, 16, NULL, offsetof(struct config_serve, workers),
     "`cpbridge serve`: threads that claim and apply staged orders, each with its own database"
     " connection."},
    {"coalesce", CPB_OPT_DURATION, 0, "250ms", 0, 10 * MS_S, NULL,
     offsetof(struct config_serve, coalesce_ms),
     "`cpbridge serve`: after a delivery, wait this long for more before applying, so a burst is"
     " applied in a few claims instead of a transaction storm."},
    {"sweep", CPB_OPT_DURATION, 0, "1m", MS_S, MS_H, NULL, offsetof(struct config_serve, sweep_ms),
     "`cpbridge serve`: apply at least this often without a delivery (retries that came due)."},
    {"max_body", CPB_OPT_INT, 0, "4194304", 1024, 67108864, NULL,
     offsetof(struct config_serve, max_body),
     "`cpbridge serve`: the largest delivery body in bytes; a larger one gets 413."},
    {"metrics_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL,
     offsetof(struct config_serve, metrics_file),
     "`cpbridge serve`: Prometheus textfile with the receiver's counters, rewritten every 15 s;"
     " unset: none."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

static const struct cpb_option alerts_table[] = {
    {"throttle", CPB_OPT_DURATION, 0, "1h", MS_M, 30 * MS_D, NULL,
     offsetof(struct config_alerts, throttle_ms),
     "An alert already sent for the same event, order and reason is not sent again within this"
     " time (one digest per event and run either way)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

const char *const config_engine_blocks[] = {"database", "run",    "retry", "log", "metrics",
                                            "health",   "alerts", "serve", NULL};

static const char *const top_keys[] = {"name",    "stage_dirs", "database", "run",   "retry", "log",
                                       "metrics", "health",     "alerts",   "serve", "stages"};

static const char *const stage_keys[] = {"stage", "id", "on", "enabled", "options"};

const struct cpb_option *config_engine_table(const char *block)
{
    if (block == NULL) {
        return NULL;
    }
    if (strcmp(block, "database") == 0) {
        return database_table;
    }
    if (strcmp(block, "run") == 0) {
        return run_table;
    }
    if (strcmp(block, "retry") == 0) {
        return retry_table;
    }
    if (strcmp(block, "log") == 0) {
        return log_table;
    }
    if (strcmp(block, "metrics") == 0) {
        return metrics_table;
    }
    if (strcmp(block, "health") == 0) {
        return health_table;
    }
    if (strcmp(block, "alerts") == 0) {
        return alerts_table;
    }
    if (strcmp(block, "serve") == 0) {
        return serve_table;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Interpolation                                                       */

struct interp {
    const char *where;        /* "file:line" for messages */
    const char *pipeline_dir; /* PIPELINE_DIR unless the environment sets it; may be NULL */
    struct err *err;
};

static const char *lookup(const struct interp *ip, const char *name)
{
    const char *value = getenv(name);
    if ((value == NULL || value[0] == '\0') && ip->pipeline_dir != NULL &&
        strcmp(name, "PIPELINE_DIR") == 0) {
        value = ip->pipeline_dir;
    }
    return value;
}

/*
 * Expand text from *pp until its end (depth 0) or an unmatched '}' (depth >
 * 0, left unconsumed for the caller). Appends to `out` when `emit`; without
 * it only the syntax is checked (the unused default of a set variable).
 */
static int expand(const struct interp *ip, const char **pp, int depth, bool emit, struct buf *out)
{
    const char *p = *pp;
    while (*p != '\0') {
        if (*p == '}' && depth > 0) {
            break;
        }
        if (*p != '$') {
            if (emit) {
                buf_add(out, p, 1);
            }
            p++;
            continue;
        }
        if (p[1] == '$') {
            if (emit) {
                buf_adds(out, "$");
            }
            p += 2;
            continue;
        }
        if (p[1] != '{') {
            return err_set(ip->err, CPB_EXIT_CONFIG,
                           "%s: a '$' must start ${VAR}, ${VAR:-default} or ${VAR:?message}; "
                           "write '$$' for a literal '$'",
                           ip->where);
        }
        if (depth >= INTERP_MAX_DEPTH) {
            return err_set(ip->err, CPB_EXIT_CONFIG, "%s: '${...}' nested more than %d levels deep",
                           ip->where, INTERP_MAX_DEPTH);
        }
        p += 2;
        const char *start = p;
        while (isalnum((unsigned char)*p) || *p == '_') {
            p++;
        }
        size_t len = (size_t)(p - start);
        if (*p == '\0') {
            return err_set(ip->err, CPB_EXIT_CONFIG, "%s: unterminated '${' (missing '}')",
                           ip->where);
        }
        if (len == 0 || isdigit((unsigned char)start[0])) {
            return err_set(ip->err, CPB_EXIT_CONFIG,
                           "%s: bad variable name in '${...}': use letters, digits and '_', not "
                           "starting with a digit",
                           ip->where);
        }
        if (len > VAR_NAME_MAX) {
            return err_set(ip->err, CPB_EXIT_CONFIG, "%s: variable name longer than %d bytes",
                           ip->where, VAR_NAME_MAX);
        }
        char name[VAR_NAME_MAX + 1];
        memcpy(name, start, len);
        name[len] = '\0';
        const char *value = lookup(ip, name);
        bool set = value != NULL && value[0] != '\0';
        if (*p == '}') {
            p++;
            if (!emit) {
                continue;
            }
            if (!set) {
                return err_set(ip->err, CPB_EXIT_CONFIG,
                               "%s: environment variable '%s' is not set or empty (write "
                               "${%s:-default} to give a default)",
                               ip->where, name, name);
            }
            buf_adds(out, value);
            continue;
        }
        if (p[0] != ':' || (p[1] != '-' && p[1] != '?')) {
            if (*p == '\0') {
                return err_set(ip->err, CPB_EXIT_CONFIG, "%s: unterminated '${' (missing '}')",
                               ip->where);
            }
            return err_set(ip->err, CPB_EXIT_CONFIG,
                           "%s: unsupported form '${%s%c...}': use ${VAR}, ${VAR:-default} or "
                           "${VAR:?message}",
                           ip->where, name, *p);
        }
        char op = p[1];
        p += 2;
        struct buf inner = BUF_INIT;
        bool inner_emit = emit && !set;
        if (expand(ip, &p, depth + 1, inner_emit, &inner) != 0) {
            buf_free(&inner);
            return -1;
        }
        if (*p != '}') {
            buf_free(&inner);
            return err_set(ip->err, CPB_EXIT_CONFIG, "%s: unterminated '${' (missing '}')",
                           ip->where);
        }
        p++;
        if (emit && op == '-') {
            buf_adds(out, set ? value : buf_str(&inner));
        } else if (emit && !set) {
            int rc;
            if (inner.len > 0) {
                rc = err_set(ip->err, CPB_EXIT_CONFIG,
                             "%s: environment variable '%s' is not set or empty: %s", ip->where,
                             name, buf_str(&inner));
            } else {
                rc = err_set(ip->err, CPB_EXIT_CONFIG,
                             "%s: environment variable '%s' is not set or empty", ip->where, name);
            }
            buf_free(&inner);
            return rc;
        } else if (emit) {
            buf_adds(out, value);
        }
        buf_free(&inner);
    }
    *pp = p;
    if (out->oom) {
        return err_set(ip->err, CPB_EXIT_SOFTWARE, "%s: out of memory", ip->where);
    }
    return 0;
}

static int interpolate(const char *in, const char *where_text, const char *pipeline_dir, char **out,
                       struct err *err)
{
    struct interp ip = {where_text != NULL ? where_text : "config", pipeline_dir, err};
    struct buf b = BUF_INIT;
    const char *p = in;
    *out = NULL;
    if (expand(&ip, &p, 0, true, &b) != 0) {
        buf_free(&b);
        return -1;
    }
    *out = buf_take(&b);
    if (*out == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory", ip.where);
    }
    return 0;
}

int config_interpolate(const char *in, const char *where_text, char **out, struct err *err)
{
    return interpolate(in, where_text, NULL, out, err);
}

/* Interpolate every string in the tree under `s`, in place. */
static int interpolate_tree(config_setting_t *s, const char *pipeline_dir, int depth,
                            struct err *err)
{
    char loc[512];
    if (depth > TREE_MAX_DEPTH) {
        options_where(s, loc, sizeof loc);
        return err_set(err, CPB_EXIT_CONFIG, "%sgroups and lists nested more than %d levels deep",
                       loc, TREE_MAX_DEPTH);
    }
    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        const char *text = config_setting_get_string(s);
        char *expanded = NULL;
        if (text == NULL || strchr(text, '$') == NULL) {
            return 0;
        }
        options_where(s, loc, sizeof loc);
        size_t n = strlen(loc);
        if (n >= 2) {
            loc[n - 2] = '\0'; /* drop the ": " */
        }
        if (interpolate(text, loc, pipeline_dir, &expanded, err) != 0) {
            return -1;
        }
        int ok = config_setting_set_string(s, expanded);
        free(expanded);
        if (ok != CONFIG_TRUE) {
            return err_set(err, CPB_EXIT_SOFTWARE, "%s: could not store an interpolated string",
                           loc);
        }
        return 0;
    }
    if (config_setting_is_aggregate(s)) {
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (e != NULL && interpolate_tree(e, pipeline_dir, depth + 1, err) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* libconfig 1.5 integer guard                                         */

/* Read a whole file (new, NUL-terminated) of at most CONFIG_FILE_MAX. */
static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = BUF_INIT;
    char chunk[8192];
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (got > 0 && buf_add(&b, chunk, got) != 0) {
            break;
        }
        if (b.len > CONFIG_FILE_MAX) {
            b.oom = 1;
            break;
        }
        if (got < sizeof chunk) {
            if (ferror(f)) {
                b.oom = 1;
            }
            break;
        }
    }
    fclose(f);
    *len = b.len;
    return buf_take(&b);
}

static int word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '+' || c == '-' || c == '*';
}

/* Check one word of the file: an integer literal must fit its type. */
static int check_number(const char *word, size_t len, const char *shown, int line, struct err *err)
{
    char text[72];
    const char *p = word;
    size_t suffix = 0;
    bool hex = false;
    if (len == 0 || len > 64) {
        return 0; /* no integer libconfig accepts is this long... */
    }
    memcpy(text, word, len);
    text[len] = '\0';
    if (!(isdigit((unsigned char)p[0]) ||
          ((p[0] == '-' || p[0] == '+') && len > 1 && isdigit((unsigned char)p[1])))) {
        return 0; /* a name, a boolean, or a float like .5 */
    }
    while (suffix < len && (text[len - 1 - suffix] == 'L' || text[len - 1 - suffix] == 'l')) {
        suffix++;
    }
    text[len - suffix] = '\0';
    const char *digits = text;
    if (*digits == '-' || *digits == '+') {
        digits++;
    }
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        hex = true;
        digits += 2;
        if (*digits == '\0') {
            return 0;
        }
        for (const char *c = digits; *c != '\0'; c++) {
            if (!isxdigit((unsigned char)*c)) {
                return 0;
            }
        }
    } else {
        for (const char *c = digits; *c != '\0'; c++) {
            if (!isdigit((unsigned char)*c)) {
                return 0; /* a float (1.5, 1e5) */
            }
        }
    }
    errno = 0;
    char *end = NULL;
    long long v = 0;
    if (hex) {
        unsigned long long u = strtoull(digits, &end, 16);
        v = u > (unsigned long long)LLONG_MAX ? LLONG_MAX : (long long)u;
        if (u > (unsigned long long)LLONG_MAX) {
            errno = ERANGE;
        }
    } else {
        v = strtoll(text, &end, 10);
    }
    bool fits = errno == 0 && (suffix > 0 || (v >= INT_MIN && v <= INT_MAX));
    if (fits) {
        return 0;
    }
    if (suffix > 0 || errno != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "%s:%d: the integer %.*s does not fit in 64 bits",
                       shown, line, (int)len, word);
    }
    return err_set(err, CPB_EXIT_CONFIG,
                   "%s:%d: the integer %.*s does not fit in 32 bits (libconfig would change it "
                   "silently); write %sL for a 64-bit integer",
                   shown, line, (int)len, word, text);
}

/* What scan_file looks for. */
enum scan_mode {
    /* Before libconfig reads the file: every @include names a regular file.
     * libconfig 1.5's scanner ends the whole process when an include names a
     * directory (`@include ""`), so such a file must never reach it. */
    SCAN_INCLUDES,
    /* After libconfig accepted the file: libconfig 1.5 wraps integer
     * literals silently (9999999999 becomes 1410065407;
     * 99999999999999999999L becomes INT64_MAX), so every literal that does
     * not fit is refused and no wrapped value is ever used. */
    SCAN_INTEGERS
};

/* An @include target, before libconfig opens it. */
static int check_include(const char *full, const char *name, const char *shown, int line,
                         struct err *err)
{
    struct stat st;
    if (stat(full, &st) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "%s:%d: cannot open include file \"%s\": %s", shown,
                       line, name, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s:%d: cannot include \"%s\": it is not a regular file", shown, line, name);
    }
    return 0;
}

/*
 * Scan the text of a pipeline file and, recursively, its @includes (see
 * enum scan_mode), skipping comments and strings as libconfig does.
 */
static int scan_file(const char *path, const char *shown, const char *include_dir, int depth,
                     enum scan_mode mode, struct err *err)
{
    size_t len = 0;
    char *t = NULL;
    int line = 1;
    int rc = -1;
    if (depth > INCLUDE_MAX_DEPTH) {
        if (mode == SCAN_INTEGERS) {
            return 0; /* libconfig refused deeper nesting already */
        }
        return err_set(err, CPB_EXIT_CONFIG, "%s: @include nested deeper than %d files", shown,
                       INCLUDE_MAX_DEPTH);
    }
    t = read_text(path, &len);
    if (t == NULL) {
        err_set(err, CPB_EXIT_IOERR, "%s: cannot read it again (or it is larger than 16 MiB)",
                shown);
        goto out;
    }
    size_t i = 0;
    while (i < len) {
        char c = t[i];
        if (c == '\n') {
            line++;
            i++;
        } else if (c == '#' || (c == '/' && i + 1 < len && t[i + 1] == '/')) {
            while (i < len && t[i] != '\n') {
                i++;
            }
        } else if (c == '/' && i + 1 < len && t[i + 1] == '*') {
            i += 2;
            while (i < len && !(t[i] == '*' && i + 1 < len && t[i + 1] == '/')) {
                line += t[i] == '\n';
                i++;
            }
            i += 2;
        } else if (c == '"') {
            i++;
            while (i < len && t[i] != '"') {
                if (t[i] == '\\' && i + 1 < len) {
                    i++;
                }
                line += t[i] == '\n';
                i++;
            }
            i++;
        } else if (c == '@' && len - i > 8 && strncmp(t + i, "@include", 8) == 0) {
            i += 8;
            while (i < len && (t[i] == ' ' || t[i] == '\t')) {
                i++;
            }
            if (i < len && t[i] == '"') {
                size_t start = ++i;
                /* libconfig reads the name up to the next quote, line
                 * breaks included: so must this scan. */
                while (i < len && t[i] != '"') {
                    line += t[i] == '\n';
                    i++;
                }
                if (mode == SCAN_INCLUDES &&
                    (memchr(t + start, '\n', i - start) != NULL ||
                     memchr(t + start, '\\', i - start) != NULL || i >= len)) {
                    err_set(err, CPB_EXIT_CONFIG,
                            "%s:%d: an @include file name must be one quoted line without"
                            " backslashes",
                            shown, line);
                    goto out;
                }
                struct buf name = BUF_INIT;
                struct buf full = BUF_INIT;
                buf_add(&name, t + start, i - start);
                buf_addf(&full, "%s/%s", include_dir, buf_str(&name));
                int sub = 0;
                if (name.oom || full.oom) {
                    sub = err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory", shown);
                } else if (mode == SCAN_INCLUDES) {
                    sub = check_include(buf_str(&full), buf_str(&name), shown, line, err);
                }
                if (sub == 0) {
                    sub = scan_file(buf_str(&full), buf_str(&name), include_dir, depth + 1, mode,
                                    err);
                }
                buf_free(&name);
                buf_free(&full);
                if (sub != 0) {
                    goto out;
                }
                i++;
            }
        } else if (word_char(c)) {
            size_t start = i;
            while (i < len && word_char(t[i])) {
                i++;
            }
            if (mode == SCAN_INTEGERS &&
                check_number(t + start, i - start, shown, line, err) != 0) {
                goto out;
            }
        } else {
            i++;
        }
    }
    rc = 0;
out:
    free(t);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Keys and values                                                     */

static bool valid_pipeline_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

static bool valid_stage_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok =
            (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || (s[i] == '-' && i > 0);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Refuse a member of `group` not in `keys`, with a did-you-mean. */
static int check_keys(const config_setting_t *group, const char *const *keys, size_t n_keys,
                      const char *what, struct err *err)
{
    char loc[512];
    int members = config_setting_length(group);
    for (int m = 0; m < members; m++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)m);
        const char *key = config_setting_name(s);
        bool known = false;
        for (size_t i = 0; i < n_keys && key != NULL; i++) {
            if (strcmp(keys[i], key) == 0) {
                known = true;
                break;
            }
        }
        if (known) {
            continue;
        }
        options_where(s, loc, sizeof loc);
        int hint = key != NULL ? text_suggest(key, keys, n_keys) : -1;
        struct buf all = BUF_INIT;
        for (size_t i = 0; i < n_keys; i++) {
            buf_addf(&all, "%s%s", i > 0 ? ", " : "", keys[i]);
        }
        if (hint >= 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s%sunknown key '%s' (did you mean '%s'?)", loc, what,
                    key, keys[hint]);
        } else {
            err_set(err, CPB_EXIT_CONFIG, "%s%sunknown key '%s' (known keys: %s)", loc, what,
                    key != NULL ? key : "?", buf_str(&all));
        }
        buf_free(&all);
        return -1;
    }
    return 0;
}

/* A list or array of non-empty strings as a new NULL-terminated array of
 * pointers into the tree. `label` names the key in messages. */
static int string_list(const config_setting_t *s, const char *label, const char ***out,
                       struct err *err)
{
    char loc[512];
    options_where(s, loc, sizeof loc);
    *out = NULL;
    if (config_setting_type(s) != CONFIG_TYPE_LIST && config_setting_type(s) != CONFIG_TYPE_ARRAY) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s%s must be a list of strings such as [\"a\", \"b\"], not %s", loc, label,
                       options_setting_kind(s));
    }
    int n = config_setting_length(s);
    const char **list = calloc((size_t)n + 1, sizeof *list);
    if (list == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "%sout of memory", loc);
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (e == NULL || config_setting_type(e) != CONFIG_TYPE_STRING) {
            free(list);
            return err_set(err, CPB_EXIT_CONFIG, "%s%s must be a list of strings; element %d is %s",
                           loc, label, i + 1, e != NULL ? options_setting_kind(e) : "missing");
        }
        const char *v = config_setting_get_string(e);
        if (v == NULL || v[0] == '\0') {
            free(list);
            return err_set(err, CPB_EXIT_CONFIG, "%s%s: element %d is an empty string", loc, label,
                           i + 1);
        }
        list[i] = v;
    }
    *out = list;
    return 0;
}

static int load_name(struct config *cfg, const config_setting_t *root, struct err *err)
{
    char loc[512];
    char q[300];
    const config_setting_t *s = config_setting_get_member(root, "name");
    if (s == NULL) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s: missing required key 'name' (the pipeline's name: 1 to 64 letters, "
                       "digits, '_', '.' or '-')",
                       cfg->path);
    }
    options_where(s, loc, sizeof loc);
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return err_set(err, CPB_EXIT_CONFIG, "%s'name' must be a string, not %s", loc,
                       options_setting_kind(s));
    }
    const char *name = config_setting_get_string(s);
    if (!valid_pipeline_name(name)) {
        options_quote(name, false, q, sizeof q);
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s'name' must be 1 to 64 letters, digits, '_', '.' or '-', not %s", loc, q);
    }
    cfg->name = name;
    return 0;
}

/* The opt_store slot of each engine block in cfg->stores. */
enum {
    STORE_DATABASE,
    STORE_RUN,
    STORE_RETRY,
    STORE_LOG,
    STORE_METRICS,
    STORE_HEALTH,
    STORE_ALERTS,
    STORE_SERVE
};

static int fill_block(struct config *cfg, const config_setting_t *root, const char *block,
                      const struct cpb_option *table, void *out, int slot, struct err *err)
{
    char loc[512];
    char what[64];
    const config_setting_t *s = config_setting_get_member(root, block);
    snprintf(what, sizeof what, "block '%s'", block);
    if (s != NULL && config_setting_type(s) != CONFIG_TYPE_GROUP) {
        options_where(s, loc, sizeof loc);
        return err_set(err, CPB_EXIT_CONFIG, "%s'%s' must be a group { key = value; ... }, not %s",
                       loc, block, options_setting_kind(s));
    }
    if (options_fill(table, s, out, &cfg->stores[slot], what, err) != 0) {
        if (s == NULL) {
            err_prefix(err, "%s: ", cfg->path);
        }
        return -1;
    }
    return 0;
}

/* warn must not be above crit. */
static int check_pair(const config_setting_t *block, const char *file, const char *warn,
                      int64_t warn_value, const char *crit, int64_t crit_value, bool duration,
                      struct err *err)
{
    char loc[512];
    char a[64];
    char b[64];
    if (warn_value <= crit_value) {
        return 0;
    }
    if (block != NULL) {
        options_where(block, loc, sizeof loc);
    } else {
        snprintf(loc, sizeof loc, "%s: ", file);
    }
    if (duration) {
        text_format_duration(warn_value, a, sizeof a);
        text_format_duration(crit_value, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%lld", (long long)warn_value);
        snprintf(b, sizeof b, "%lld", (long long)crit_value);
    }
    return err_set(err, CPB_EXIT_CONFIG, "%sblock '%s': %s (%s) must not be above %s (%s)", loc,
                   block != NULL ? config_setting_name(block) : "?", warn, a, crit, b);
}

static int load_engine(struct config *cfg, const config_setting_t *root, struct err *err)
{
    if (fill_block(cfg, root, "database", database_table, &cfg->database, STORE_DATABASE, err) !=
            0 ||
        fill_block(cfg, root, "run", run_table, &cfg->run, STORE_RUN, err) != 0 ||
        fill_block(cfg, root, "retry", retry_table, &cfg->retry, STORE_RETRY, err) != 0 ||
        fill_block(cfg, root, "log", log_table, &cfg->log, STORE_LOG, err) != 0 ||
        fill_block(cfg, root, "metrics", metrics_table, &cfg->metrics, STORE_METRICS, err) != 0 ||
        fill_block(cfg, root, "health", health_table, &cfg->health, STORE_HEALTH, err) != 0 ||
        fill_block(cfg, root, "alerts", alerts_table, &cfg->alerts, STORE_ALERTS, err) != 0 ||
        fill_block(cfg, root, "serve", serve_table, &cfg->serve, STORE_SERVE, err) != 0) {
        return -1;
    }
    cfg->database.dialect = dialect_choices[cfg->database.dialect_index];
    if ((cfg->serve.tls_cert == NULL) != (cfg->serve.tls_key == NULL)) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "block 'serve': tls_cert and tls_key go together: set both, or neither");
    }

    const config_setting_t *retry = config_setting_get_member(root, "retry");
    const config_setting_t *health = config_setting_get_member(root, "health");
    const struct config_health *h = &cfg->health;
    if (cfg->retry.cap_ms < cfg->retry.base_ms) {
        char loc[512];
        char a[64];
        char b[64];
        if (retry != NULL) {
            options_where(retry, loc, sizeof loc);
        } else {
            snprintf(loc, sizeof loc, "%s: ", cfg->path);
        }
        text_format_duration(cfg->retry.cap_ms, a, sizeof a);
        text_format_duration(cfg->retry.base_ms, b, sizeof b);
        return err_set(err, CPB_EXIT_CONFIG,
                       "%sblock 'retry': cap (%s) must not be below base (%s)", loc, a, b);
    }
    if (check_pair(health, cfg->path, "pending_warn", h->pending_warn, "pending_crit",
                   h->pending_crit, false, err) != 0 ||
        check_pair(health, cfg->path, "dead_warn", h->dead_warn, "dead_crit", h->dead_crit, false,
                   err) != 0 ||
        check_pair(health, cfg->path, "invalid_warn", h->invalid_warn, "invalid_crit",
                   h->invalid_crit, false, err) != 0 ||
        check_pair(health, cfg->path, "oldest_pending_warn", h->oldest_pending_warn_ms,
                   "oldest_pending_crit", h->oldest_pending_crit_ms, true, err) != 0 ||
        check_pair(health, cfg->path, "last_success_warn", h->last_success_warn_ms,
                   "last_success_crit", h->last_success_crit_ms, true, err) != 0) {
        return -1;
    }
    return 0;
}

/* One entry of `stages`. */
static int load_stage(struct config *cfg, const config_setting_t *e, int index,
                      struct config_stage *st, struct err *err)
{
    char loc[512];
    char what[64];
    char q[300];
    options_where(e, loc, sizeof loc);
    snprintf(what, sizeof what, "stage entry %d: ", index);
    st->file = config_setting_source_file(e) != NULL ? config_setting_source_file(e) : cfg->path;
    st->line = (int)config_setting_source_line(e);
    st->enabled = true;
    if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
        return err_set(err, CPB_EXIT_CONFIG, "%s%smust be a group { stage = \"...\"; ... }, not %s",
                       loc, what, options_setting_kind(e));
    }
    if (check_keys(e, stage_keys, sizeof stage_keys / sizeof stage_keys[0], what, err) != 0) {
        return -1;
    }
    const config_setting_t *s = config_setting_get_member(e, "stage");
    if (s == NULL) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s%smissing required key 'stage' (the stage name, such as \"validate\")",
                       loc, what);
    }
    options_where(s, loc, sizeof loc);
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return err_set(err, CPB_EXIT_CONFIG, "%s%s'stage' must be a string, not %s", loc, what,
                       options_setting_kind(s));
    }
    st->stage = config_setting_get_string(s);
    if (!valid_stage_name(st->stage)) {
        options_quote(st->stage, false, q, sizeof q);
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s%s'stage' must be a stage name (lower-case letters, digits and '-', "
                       "such as \"create-order\"), not %s",
                       loc, what, q);
    }
    st->id = st->stage;
    s = config_setting_get_member(e, "id");
    if (s != NULL) {
        options_where(s, loc, sizeof loc);
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
            return err_set(err, CPB_EXIT_CONFIG, "%s%s'id' must be a string, not %s", loc, what,
                           options_setting_kind(s));
        }
        st->id = config_setting_get_string(s);
        if (!valid_pipeline_name(st->id)) {
            options_quote(st->id, false, q, sizeof q);
            return err_set(err, CPB_EXIT_CONFIG,
                           "%s%s'id' must be 1 to 64 letters, digits, '_', '.' or '-', not %s", loc,
                           what, q);
        }
    }
    s = config_setting_get_member(e, "on");
    if (s != NULL) {
        const char **on = NULL;
        char label[96];
        snprintf(label, sizeof label, "%s'on'", what);
        if (string_list(s, label, &on, err) != 0) {
            return -1;
        }
        st->on = on;
    }
    s = config_setting_get_member(e, "enabled");
    if (s != NULL) {
        options_where(s, loc, sizeof loc);
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
            return err_set(err, CPB_EXIT_CONFIG,
                           "%s%s'enabled' must be a boolean (true or false), not %s", loc, what,
                           options_setting_kind(s));
        }
        st->enabled = config_setting_get_bool(s) != 0;
    }
    s = config_setting_get_member(e, "options");
    if (s != NULL) {
        options_where(s, loc, sizeof loc);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            return err_set(err, CPB_EXIT_CONFIG,
                           "%s%s'options' must be a group { key = value; ... }, not %s", loc, what,
                           options_setting_kind(s));
        }
        st->options = s;
    }
    return 0;
}

static int load_stages(struct config *cfg, const config_setting_t *root, struct err *err)
{
    char loc[512];
    const config_setting_t *s = config_setting_get_member(root, "stages");
    if (s == NULL) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s: missing required key 'stages' (the list of stages: stages = ( { "
                       "stage = \"...\"; }, ... );)",
                       cfg->path);
    }
    options_where(s, loc, sizeof loc);
    if (config_setting_type(s) != CONFIG_TYPE_LIST) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s'stages' must be a list of groups: stages = ( { stage = \"...\"; }, ... "
                       "); not %s",
                       loc, options_setting_kind(s));
    }
    int n = config_setting_length(s);
    if (n <= 0) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s'stages' is empty: a pipeline needs at least one stage", loc);
    }
    cfg->stages = calloc((size_t)n, sizeof *cfg->stages);
    if (cfg->stages == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "%sout of memory", loc);
    }
    for (int i = 0; i < n; i++) {
        struct config_stage *st = &cfg->stages[i];
        cfg->n_stages = (size_t)i + 1;
        if (load_stage(cfg, config_setting_get_elem(s, (unsigned)i), i + 1, st, err) != 0) {
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(cfg->stages[j].id, st->id) == 0) {
                return err_set(err, CPB_EXIT_CONFIG,
                               "%s:%d: stage id '%s' is used twice (first at %s:%d); give one "
                               "of them another id = \"...\"",
                               st->file, st->line, st->id, cfg->stages[j].file,
                               cfg->stages[j].line);
            }
        }
    }
    return 0;
}

/* The absolute directory of `path` (new). */
static char *absolute_dir(const char *path)
{
    char *copy = strdup(path);
    char *dir = NULL;
    if (copy == NULL) {
        return NULL;
    }
    char *slash = strrchr(copy, '/');
    if (slash == NULL) {
        dir = realpath(".", NULL);
    } else if (slash == copy) {
        dir = strdup("/");
    } else {
        *slash = '\0';
        dir = realpath(copy, NULL);
    }
    free(copy);
    return dir;
}

int config_load(const char *path, struct config **out, struct err *err)
{
    struct config *cfg = NULL;
    struct stat st;
    int rc = -1;
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return err_set(err, CPB_EXIT_USAGE, "no pipeline file given");
    }
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    config_init(&cfg->lc);
    config_set_options(&cfg->lc, config_get_options(&cfg->lc) & ~CONFIG_OPTION_AUTOCONVERT);
    cfg->path = strdup(path);
    if (cfg->path == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    if (stat(path, &st) != 0) {
        err_set(err, CPB_EXIT_NOINPUT, "cannot read the pipeline file '%s': %s", path,
                strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, CPB_EXIT_NOINPUT, "the pipeline file '%s' is not a regular file", path);
        goto out;
    }
    if (st.st_size > CONFIG_FILE_MAX) {
        err_set(err, CPB_EXIT_CONFIG, "the pipeline file '%s' is larger than 16 MiB", path);
        goto out;
    }
    cfg->dir = absolute_dir(path);
    if (cfg->dir == NULL) {
        err_set(err, CPB_EXIT_NOINPUT, "cannot find the directory of the pipeline file '%s': %s",
                path, strerror(errno));
        goto out;
    }
    config_set_include_dir(&cfg->lc, cfg->dir);
    if (scan_file(path, path, cfg->dir, 0, SCAN_INCLUDES, err) != 0) {
        goto out;
    }
    if (config_read_file(&cfg->lc, path) != CONFIG_TRUE) {
        if (config_error_type(&cfg->lc) == CONFIG_ERR_FILE_IO) {
            err_set(err, CPB_EXIT_NOINPUT, "cannot read the pipeline file '%s'", path);
        } else {
            const char *file = config_error_file(&cfg->lc);
            err_set(err, CPB_EXIT_CONFIG, "%s:%d: %s", file != NULL ? file : path,
                    config_error_line(&cfg->lc),
                    config_error_text(&cfg->lc) != NULL ? config_error_text(&cfg->lc)
                                                        : "syntax error");
        }
        goto out;
    }
    if (scan_file(path, path, cfg->dir, 0, SCAN_INTEGERS, err) != 0) {
        goto out;
    }
    config_setting_t *root = config_root_setting(&cfg->lc);
    if (interpolate_tree(root, cfg->dir, 0, err) != 0) {
        goto out;
    }
    if (check_keys(root, top_keys, sizeof top_keys / sizeof top_keys[0], "", err) != 0) {
        goto out;
    }
    if (load_name(cfg, root, err) != 0) {
        goto out;
    }
    const config_setting_t *dirs = config_setting_get_member(root, "stage_dirs");
    const char **list = NULL;
    if (dirs != NULL) {
        if (string_list(dirs, "'stage_dirs'", &list, err) != 0) {
            goto out;
        }
    } else {
        list = calloc(1, sizeof *list);
        if (list == NULL) {
            err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
            goto out;
        }
    }
    cfg->stage_dirs = list;
    if (load_engine(cfg, root, err) != 0) {
        goto out;
    }
    if (load_stages(cfg, root, err) != 0) {
        goto out;
    }
    *out = cfg;
    cfg = NULL;
    rc = 0;
out:
    config_free(cfg);
    return rc;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_stages; i++) {
        free((void *)cfg->stages[i].on);
    }
    free(cfg->stages);
    free((void *)cfg->stage_dirs);
    for (size_t i = 0; i < sizeof cfg->stores / sizeof cfg->stores[0]; i++) {
        opt_store_free(cfg->stores[i]);
    }
    config_destroy(&cfg->lc);
    free((void *)cfg->dir);
    free((void *)cfg->path);
    free(cfg);
}
