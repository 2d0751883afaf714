/*
 * log.h — the engine's log: one line per message on stderr (or a stream set
 * for tests), as text or JSON, with time, level, run id, stage and order id.
 * Every registered secret is masked ("********") before a line is written.
 * The sink, level and secrets are the process's (set up by main; safe to
 * call from several threads); the run label is per thread. Stages reach it
 * through the host's log service.
 */
#ifndef CPB_LOG_H
#define CPB_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "cpbridge/stage.h"
#include "lib/buf.h"

enum log_format { LOG_TEXT = 0, LOG_JSON = 1 };

/* Messages above `level` are dropped. Defaults: CPB_LOG_INFO, LOG_TEXT. */
void log_configure(enum cpb_log_level level, enum log_format format);
/* Parse "error", "warn", "info", "debug"; returns 0 or -1. */
int log_level_parse(const char *name, enum cpb_log_level *out);
/* Where lines go (default stderr). Borrowed; NULL restores stderr. */
void log_set_stream(FILE *stream);
/* Run id and pipeline name put on every line the calling thread writes
 * (copied, cut at 63 and 127 bytes; NULL clears). */
void log_set_run(const char *run_id, const char *pipeline);
/* Register a secret to mask (copied). Empty strings are ignored. Returns 0,
 * or -1 when out of memory. */
int log_redact_add(const char *secret);
/* Append `in` to `out` with every registered secret masked. */
void log_redact_into(const char *in, struct buf *out);
/*
 * Write one message. `stage` (may be NULL) is the stage instance id and
 * `order_id` the staging id (0: none). Newlines inside the message are
 * written as "\n" escapes so one message is always one line.
 */
void log_msg(enum cpb_log_level level, const char *stage, int64_t order_id, const char *fmt, ...)
    CPB_PRINTF(4, 5);
void log_vmsg(enum cpb_log_level level, const char *stage, int64_t order_id, const char *fmt,
              va_list ap) CPB_PRINTF(4, 0);
/* Forget the calling thread's run, the secrets, the stream, the level and
 * the format (end of main, and tests). */
void log_reset(void);

/* A terminal's status line: `text` (borrowed; one line, no newline, cut to
 * LOG_STATUS_MAX - 1 bytes) replaces the line the cursor is on, and every
 * log line written while it is set first erases it and then draws it again
 * below itself, so the two never mix. NULL or "" erases it (at the end of
 * the run). For a terminal only: the caller decides that stderr is one. */
#define LOG_STATUS_MAX 200
void log_status(const char *text);

#endif
