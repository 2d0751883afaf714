/*
 * metrics.c — the business figures read in one place (metrics_snapshot,
 * shared by health, status and the metrics file) and the Prometheus
 * textfile written atomically at the end of a run (see metrics.h).
 */
#include "engine/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/text.h"
#include "services/sql.h"

const char *const metrics_states[METRICS_N_STATES + 1] = {
    ST_PENDING, ST_APPLIED, ST_INVALID, ST_DEAD, ST_CANCELLED, ST_ROLLED_BACK, NULL};

int metrics_state_index(const char *state)
{
    if (state == NULL) {
        return -1;
    }
    for (int i = 0; i < METRICS_N_STATES; i++) {
        if (strcmp(state, metrics_states[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* One integer figure; a missing row or NULL reads as 0. */
static enum cpb_status count_of(struct db *db, const char *sql, const struct sql_arg *a, size_t n,
                                int64_t *out)
{
    bool null = false;
    enum cpb_status rc = sql_query_int(db, sql, a, n, out, &null);
    if (rc == CPB_SKIP || (rc == CPB_OK && null)) {
        *out = 0;
        rc = CPB_OK;
    }
    return rc;
}

/* One time figure (first column of the first row); *has false for none. */
static enum cpb_status time_of(struct db *db, const char *sql, const struct sql_arg *a, size_t n,
                               bool *has, int64_t *out)
{
    struct cpb_stmt *st = NULL;
    bool null = true;
    *has = false;
    *out = 0;
    enum cpb_status rc = sql_query(db, sql, a, n, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
        goto out;
    }
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_col_time(st, 1, out, &null);
    if (rc == CPB_OK) {
        *has = !null;
    }
out:
    db_finalize(st);
    return rc;
}

static enum cpb_status state_counts(struct db *db, struct metrics_snapshot *s)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = sql_query(
        db, "SELECT STATUS, COUNT(*) FROM USER_ORDER_STAGING GROUP BY STATUS", NULL, 0, &st);
    if (rc != CPB_OK) {
        goto out;
    }
    for (;;) {
        const char *state = NULL;
        int64_t n = 0;
        rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            rc = CPB_OK;
            break;
        }
        if (rc == CPB_OK) {
            rc = db_col_text(st, 1, &state);
        }
        if (rc == CPB_OK) {
            rc = db_col_int(st, 2, &n, NULL);
        }
        if (rc != CPB_OK) {
            goto out;
        }
        int i = metrics_state_index(state);
        if (i >= 0) {
            s->by_state[i] = n;
        }
        s->total += n;
    }
out:
    db_finalize(st);
    return rc;
}

/* The pipeline's latest run: result, start, end, exit code. */
static enum cpb_status last_run(struct db *db, const char *name, struct metrics_snapshot *s)
{
    struct cpb_stmt *st = NULL;
    const char *result = NULL;
    bool null = false;
    int64_t code = 0;
    /* Portable "latest row" without LIMIT/TOP: the newest start, then the
     * highest LOG_ID among equal starts (the first row fetched). */
    struct sql_arg a[] = {sql_text(name), sql_text(name)};
    enum cpb_status rc =
        sql_query(db,
                  "SELECT RESULT, STARTED_DT, ENDED_DT, EXIT_CODE FROM USER_SYNC_LOG"
                  " WHERE PIPELINE = ? AND STARTED_DT ="
                  " (SELECT MAX(STARTED_DT) FROM USER_SYNC_LOG WHERE PIPELINE = ?)"
                  " ORDER BY LOG_ID DESC",
                  a, SQL_NARGS(a), &st);
    if (rc != CPB_OK) {
        goto out;
    }
    rc = db_fetch(st);
    if (rc == CPB_SKIP) {
        rc = CPB_OK;
        goto out;
    }
    if (rc == CPB_OK) {
        rc = db_col_text(st, 1, &result);
    }
    if (rc != CPB_OK) {
        goto out;
    }
    s->has_run = true;
    snprintf(s->last_result, sizeof s->last_result, "%s", result != NULL ? result : "");
    rc = db_col_time(st, 2, &s->last_run_started_ms, &null);
    if (rc == CPB_OK) {
        rc = db_col_time(st, 3, &s->last_run_ended_ms, &null);
        s->last_run_ended = !null;
    }
    if (rc == CPB_OK) {
        rc = db_col_int(st, 4, &code, &null);
        s->last_exit_code = null || code < 0 || code > 255 ? -1 : (int)code;
    }
out:
    db_finalize(st);
    return rc;
}

int metrics_snapshot(struct db *db, const char *name, int64_t now_ms, struct metrics_snapshot *out,
                     struct err *err)
{
    struct sql_arg now[] = {sql_time(now_ms)};
    struct sql_arg pipe[] = {sql_text(name)};
    enum cpb_status rc;

    memset(out, 0, sizeof *out);
    out->now_ms = now_ms;
    out->last_exit_code = -1;
    rc = state_counts(db, out);
    if (rc == CPB_OK) {
        rc = count_of(db,
                      "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'PENDING'"
                      " AND NEXT_ATTEMPT_DT <= ?",
                      now, 1, &out->pending_due);
    }
    if (rc == CPB_OK) {
        rc = count_of(db,
                      "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                      " AND AFTER_PENDING = 1",
                      NULL, 0, &out->after_due);
    }
    if (rc == CPB_OK) {
        rc = count_of(db,
                      "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                      " AND AFTER_PENDING = 2",
                      NULL, 0, &out->after_gave_up);
    }
    if (rc == CPB_OK) {
        rc = count_of(db,
                      "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STATUS = 'APPLIED'"
                      " AND CHANGED_AFTER_APPLY = 1",
                      NULL, 0, &out->changed_after_apply);
    }
    if (rc == CPB_OK) {
        rc = time_of(db, "SELECT MIN(RECEIVED_DT) FROM USER_ORDER_STAGING WHERE STATUS = 'PENDING'",
                     NULL, 0, &out->has_pending, &out->oldest_pending_ms);
    }
    if (rc == CPB_OK) {
        rc = time_of(db,
                     "SELECT MAX(ENDED_DT) FROM USER_SYNC_LOG WHERE PIPELINE = ?"
                     " AND RESULT IN ('OK', 'ATTENTION')",
                     pipe, 1, &out->has_success, &out->last_success_ms);
    }
    if (rc == CPB_OK) {
        rc = last_run(db, name, out);
    }
    if (rc == CPB_OK) {
        rc = records_count(db, name, &out->records);
    }
    if (rc != CPB_OK) {
        return err_set(err, CPB_EXIT_UNAVAILABLE, "reading the figures from the database: %s",
                       db_last_error(db)[0] != '\0' ? db_last_error(db) : "failed");
    }
    return 0;
}

/* ---- the textfile ------------------------------------------------------ */

/* Append a label value escaped per the exposition format: backslash,
 * double quote and newline escaped; bytes that are not valid UTF-8 and
 * other control bytes become '?' (the format requires UTF-8). */
static void add_label_value(struct buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        if (*p == '\\') {
            buf_adds(b, "\\\\");
            p++;
        } else if (*p == '"') {
            buf_adds(b, "\\\"");
            p++;
        } else if (*p == '\n') {
            buf_adds(b, "\\n");
            p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            buf_adds(b, "?");
            p++;
        } else if (*p < 0x80) {
            buf_add(b, p, 1);
            p++;
        } else {
            size_t len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;
            size_t have = 0;
            while (have < len && p[have] != '\0') {
                have++;
            }
            if (have == len && len > 1 && text_utf8_valid((const char *)p, len)) {
                buf_add(b, p, len);
                p += len;
            } else {
                buf_adds(b, "?");
                p++;
            }
        }
    }
}

/* "# HELP" and "# TYPE" lines (help text is ours: no escaping needed). */
static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: name{pipeline="...",k1="v1",k2="v2"} value. k1/k2 may be NULL. */
static void sample(struct buf *b, const char *name, const char *pipeline, const char *k1,
                   const char *v1, const char *k2, const char *v2, const char *value)
{
    buf_addf(b, "%s{pipeline=\"", name);
    add_label_value(b, pipeline);
    buf_adds(b, "\"");
    if (k1 != NULL) {
        buf_addf(b, ",%s=\"", k1);
        add_label_value(b, v1);
        buf_adds(b, "\"");
    }
    if (k2 != NULL) {
        buf_addf(b, ",%s=\"", k2);
        add_label_value(b, v2);
        buf_adds(b, "\"");
    }
    buf_addf(b, "} %s\n", value);
}

static const char *fmt_int(int64_t v, char *out, size_t n)
{
    snprintf(out, n, "%lld", (long long)v);
    return out;
}

/* Milliseconds as seconds with three decimals, exactly (no double). */
static const char *fmt_ms(int64_t ms, char *out, size_t n)
{
    const char *sign = ms < 0 ? "-" : "";
    uint64_t m = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    snprintf(out, n, "%s%llu.%03llu", sign, (unsigned long long)(m / 1000),
             (unsigned long long)(m % 1000));
    return out;
}

/*
 * The last success value of a previous file at `path`, for a run that did
 * not succeed and could not read the database: the number after the first
 * "cpbridge_last_success_timestamp_seconds{" sample. Returns true and fills
 * `out` with the value text (checked: digits and at most one '.').
 */
static bool previous_success(const char *path, char *out, size_t n)
{
    static const char key[] = "cpbridge_last_success_timestamp_seconds{";
    char line[1024];
    bool found = false;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, sizeof key - 1) != 0) {
            continue;
        }
        char *v = strrchr(line, ' ');
        if (v == NULL) {
            continue;
        }
        v++;
        v[strcspn(v, "\r\n")] = '\0';
        size_t len = strlen(v);
        size_t dots = 0;
        bool ok = len > 0 && len < n;
        for (size_t i = 0; ok && i < len; i++) {
            if (v[i] == '.') {
                dots++;
            } else if (v[i] < '0' || v[i] > '9') {
                ok = false;
            }
        }
        if (ok && dots <= 1 && v[0] != '.') {
            snprintf(out, n, "%s", v);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The whole file's text into b. */
static void render(struct buf *b, const char *path, const struct metrics_run *run,
                   const struct metrics_snapshot *snap)
{
    static const char *const results[] = {"staged", "applied",    "invalid",     "retry",
                                          "dead",   "after_done", "after_failed"};
    const struct run_counts zero = {0};
    const struct run_counts *c = run->counts != NULL ? run->counts : &zero;
    const unsigned values[] = {c->staged, c->applied,    c->invalid,     c->retry,
                               c->dead,   c->after_done, c->after_failed};
    const char *p = run->pipeline;
    char v[64];
    bool success = run->exit_code == CPB_EXIT_OK || run->exit_code == CPB_EXIT_ATTENTION;

    buf_adds(b, "# cpbridge metrics (Prometheus text format), rewritten after every run.\n");
    family(b, "cpbridge_last_run_timestamp_seconds", "gauge",
           "Start of the last run, seconds since the epoch.");
    sample(b, "cpbridge_last_run_timestamp_seconds", p, NULL, NULL, NULL, NULL,
           fmt_ms(run->started_ms, v, sizeof v));
    family(b, "cpbridge_last_run_duration_seconds", "gauge", "Duration of the last run.");
    sample(b, "cpbridge_last_run_duration_seconds", p, NULL, NULL, NULL, NULL,
           fmt_ms(run->duration_ms, v, sizeof v));
    family(b, "cpbridge_last_run_exit_code", "gauge",
           "Exit code of the last run (0 ok, 1 attention, others failed).");
    sample(b, "cpbridge_last_run_exit_code", p, NULL, NULL, NULL, NULL,
           fmt_int(run->exit_code, v, sizeof v));

    bool have_success = false;
    if (success) {
        fmt_ms(run->started_ms + run->duration_ms, v, sizeof v);
        have_success = true;
    } else if (snap != NULL) {
        if (snap->has_success) {
            fmt_ms(snap->last_success_ms, v, sizeof v);
            have_success = true;
        }
    } else {
        have_success = previous_success(path, v, sizeof v);
    }
    if (have_success) {
        family(b, "cpbridge_last_success_timestamp_seconds", "gauge",
               "End of the last successful run (exit 0 or 1), seconds since the epoch.");
        sample(b, "cpbridge_last_success_timestamp_seconds", p, NULL, NULL, NULL, NULL, v);
    }

    family(b, "cpbridge_run_orders", "gauge", "Orders of the last run by result.");
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        sample(b, "cpbridge_run_orders", p, "result", results[i], NULL, NULL,
               fmt_int(values[i], v, sizeof v));
    }

    if (run->n_stages > 0 && run->stages != NULL) {
        family(b, "cpbridge_stage_seconds", "gauge",
               "Time spent in each stage during the last run.");
        for (size_t i = 0; i < run->n_stages; i++) {
            const struct metrics_stage *s = &run->stages[i];
            int64_t ms = (int64_t)(s->seconds * 1000.0 + 0.5);
            sample(b, "cpbridge_stage_seconds", p, "stage", s->id, "kind", s->kind,
                   fmt_ms(ms, v, sizeof v));
        }
        family(b, "cpbridge_stage_calls", "gauge", "Calls of each stage during the last run.");
        for (size_t i = 0; i < run->n_stages; i++) {
            const struct metrics_stage *s = &run->stages[i];
            snprintf(v, sizeof v, "%lu", s->calls);
            sample(b, "cpbridge_stage_calls", p, "stage", s->id, "kind", s->kind, v);
        }
        bool any = false;
        for (size_t i = 0; i < run->n_stages; i++) {
            const struct metrics_stage *s = &run->stages[i];
            const char *key;
            json_t *val;
            json_object_foreach(s->custom, key, val)
            {
                if (!any) {
                    family(b, "cpbridge_stage_metric", "gauge",
                           "Values the stages added with metric_add during the last run.");
                    any = true;
                }
                snprintf(v, sizeof v, "%.17g", json_number_value(val));
                sample(b, "cpbridge_stage_metric", p, "stage", s->id, "name", key, v);
            }
        }
    }

    if (snap != NULL) {
        family(b, "cpbridge_orders", "gauge", "Staged orders by state (the whole database).");
        for (int i = 0; i < METRICS_N_STATES; i++) {
            sample(b, "cpbridge_orders", p, "state", metrics_states[i], NULL, NULL,
                   fmt_int(snap->by_state[i], v, sizeof v));
        }
        family(b, "cpbridge_oldest_pending_age_seconds", "gauge",
               "Age of the oldest pending order (0 when none).");
        int64_t age = snap->has_pending ? snap->now_ms - snap->oldest_pending_ms : 0;
        sample(b, "cpbridge_oldest_pending_age_seconds", p, NULL, NULL, NULL, NULL,
               fmt_ms(age > 0 ? age : 0, v, sizeof v));
    }

    const struct record_counts *rc = snap != NULL ? &snap->records : NULL;
    if (c->rec_queued + c->rec_claimed > 0 ||
        (rc != NULL && rc->pending + rc->done + rc->dead > 0)) {
        static const char *const rec_results[] = {"queued", "done", "retry", "dead"};
        const unsigned rec_values[] = {c->rec_queued, c->rec_done, c->rec_retry, c->rec_dead};
        family(b, "cpbridge_run_records", "gauge",
               "Records (not orders) of the last run by result: queued by the sources, done,"
               " retrying, dead.");
        for (size_t i = 0; i < sizeof rec_results / sizeof rec_results[0]; i++) {
            sample(b, "cpbridge_run_records", p, "result", rec_results[i], NULL, NULL,
                   fmt_int(rec_values[i], v, sizeof v));
        }
    }
    if (rc != NULL && rc->pending + rc->done + rc->dead > 0) {
        static const char *const states[] = {"PENDING", "DONE", "DEAD"};
        const int64_t n[] = {rc->pending, rc->done, rc->dead};
        family(b, "cpbridge_records", "gauge", "This pipeline's records (not orders) by state.");
        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
            sample(b, "cpbridge_records", p, "state", states[i], NULL, NULL,
                   fmt_int(n[i], v, sizeof v));
        }
        int64_t age = rc->oldest_pending_ms > 0 ? snap->now_ms - rc->oldest_pending_ms : 0;
        family(b, "cpbridge_oldest_pending_record_age_seconds", "gauge",
               "Age of this pipeline's oldest pending record (0 when none).");
        sample(b, "cpbridge_oldest_pending_record_age_seconds", p, NULL, NULL, NULL, NULL,
               fmt_ms(age > 0 ? age : 0, v, sizeof v));
    }

    family(b, "cpbridge_notify_failures", "gauge",
           "Notifier deliveries that failed in the last run.");
    sample(b, "cpbridge_notify_failures", p, NULL, NULL, NULL, NULL,
           fmt_int(run->notify_failed, v, sizeof v));
}

/* Write all of data to fd. Returns 0 or -1 (errno set). */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int metrics_write(const char *path, struct db *db, const struct metrics_run *run, struct err *err)
{
    struct buf text = BUF_INIT;
    struct buf tmp = BUF_INIT;
    struct metrics_snapshot snap;
    struct err snap_err = {0};
    bool have_snap = false;
    int fd = -1;
    int dir_fd = -1;
    int rc = -1;

    if (path == NULL || path[0] == '\0' || run == NULL || run->pipeline == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "metrics_write: no path or run");
    }
    if (db != NULL && metrics_snapshot(db, run->pipeline, run->started_ms + run->duration_ms, &snap,
                                       &snap_err) == 0) {
        have_snap = true;
    }
    render(&text, path, run, have_snap ? &snap : NULL);
    if (db != NULL && !have_snap) {
        buf_adds(&text, "# the database figures could not be read for this run\n");
    }

    /* The temporary file beside the target (rename is atomic only within
     * one file system), hidden and without the .prom suffix so the textfile
     * collector never reads it half-written. mkstemp opens it with O_EXCL:
     * a symlink planted at the name is never followed. */
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        buf_add(&tmp, path, (size_t)(slash - path) + 1);
        buf_addf(&tmp, ".%s.XXXXXX", slash + 1);
    } else {
        buf_addf(&tmp, ".%s.XXXXXX", path);
    }
    if (text.oom || tmp.oom) {
        err_set(err, CPB_EXIT_IOERR, "metrics file %s: out of memory", path);
        goto out;
    }
    fd = mkstemp(tmp.data);
    if (fd < 0) {
        buf_reset(&tmp); /* nothing was created: nothing to remove */
        err_set(err, CPB_EXIT_IOERR,
                "metrics file %s: cannot create a temporary file beside it: %s", path,
                strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0644) != 0 || write_all(fd, buf_str(&text), text.len) != 0 || fsync(fd) != 0) {
        err_set(err, CPB_EXIT_IOERR, "metrics file %s: writing %s: %s", path, tmp.data,
                strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err_set(err, CPB_EXIT_IOERR, "metrics file %s: closing %s: %s", path, tmp.data,
                strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp.data, path) != 0) {
        err_set(err, CPB_EXIT_IOERR, "metrics file %s: renaming %s over it: %s", path, tmp.data,
                strerror(errno));
        goto out;
    }
    buf_reset(&tmp); /* renamed: nothing to remove */
    /* Make the rename itself durable. */
    if (slash != NULL) {
        struct buf dir = BUF_INIT;
        buf_add(&dir, path, slash == path ? 1 : (size_t)(slash - path));
        dir_fd = dir.oom ? -1 : open(buf_str(&dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        buf_free(&dir);
    } else {
        dir_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dir_fd >= 0) {
        (void)fsync(dir_fd);
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (dir_fd >= 0) {
        close(dir_fd);
    }
    if (tmp.len > 0) {
        (void)unlink(tmp.data);
    }
    buf_free(&tmp);
    buf_free(&text);
    return rc;
}
