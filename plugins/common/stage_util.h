/*
 * stage_util.h — small helpers that several stages share: reading members of
 * the (untrusted) order JSON, money rounding, UTF-8-safe cutting and quoting
 * of untrusted text, UTC date parsing, typed bound arguments and short
 * statement helpers over the host's db_* services, and the init/fini
 * boilerplate of a stage's state.
 *
 * Stages never link the engine: each stage that uses these lists
 * plugins/common/stage_util.c among its sources, so its module carries its
 * own copy, hidden like everything else in a stage but its entry point.
 * Pure functions and functions of the arguments only: no globals, no
 * allocation unless stated.
 */
#ifndef STAGE_UTIL_H
#define STAGE_UTIL_H

#include <cpbridge/stage.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- JSON ------------------------------------------------------------------ */

/* The integer at obj[key], or `dflt` when obj is no object, the member is
 * missing or not an integer. `obj` and `key` are borrowed. */
int64_t stage_json_int(const json_t *obj, const char *key, int64_t dflt);

/* The string at obj[key], or "" when obj is no object, the member is
 * missing or not a string. Borrowed from obj (valid while obj holds it). */
const char *stage_json_str(const json_t *obj, const char *key);

/* ---- money ----------------------------------------------------------------- */

/* num / den rounded half away from zero, for den > 0 (0 when den <= 0).
 * Never overflows. */
int64_t stage_div_round(int64_t num, int64_t den);

/* An amount in ten-thousandths rounded to cents (half away from zero),
 * still in ten-thousandths: 12345 -> 12300, 12350 -> 12400, -50 -> -100. */
int64_t stage_cents(int64_t v);

/* ---- text ------------------------------------------------------------------ */

/* The largest n <= len such that s[0..n) ends on a UTF-8 character boundary
 * (s[n] is not a continuation byte). Reads s[0..len], so s must hold at
 * least len + 1 bytes (a NUL-terminated string with len <= strlen(s)).
 * `s` is borrowed. */
size_t stage_utf8_floor(const char *s, size_t len);

/* Copy at most max_chars characters of the UTF-8 text s into out (outlen
 * bytes, always NUL-terminated when outlen > 0), never splitting a
 * character; a character cut short by the end of s is dropped. NULL reads
 * as "". `s` is borrowed; `out` is the caller's. */
void stage_utf8_cut(const char *s, size_t max_chars, char *out, size_t outlen);

/* Untrusted text made fit to be quoted in a message: at most max_chars
 * characters of s, control characters and the quote ' as '?', cut on a
 * character boundary with "..." when longer. NULL reads as "". Give out at
 * least 4 * max_chars + 8 bytes to never lose a character to the buffer.
 * `s` is borrowed; `out` is the caller's. */
void stage_quote(const char *s, size_t max_chars, char *out, size_t outlen);

/* Copy v (borrowed; NULL reads as "") into out (outlen bytes). Returns 0,
 * or -1 when it does not fit (out then holds a cut copy). */
int stage_copy(const char *v, char *out, size_t outlen);

/* ---- time ------------------------------------------------------------------ */

/* Parse a UTC time "YYYY-MM-DDTHH:MM:SS" (with_time) or "YYYY-MM-DD" into
 * ms since the epoch. Nothing may follow; a time that does not exist as
 * written (February 30th, 24:00:00, a 60th second) is refused. Returns 0,
 * or -1 (NULL, junk) with *ms untouched. `s` is borrowed. */
int stage_parse_utc(const char *s, bool with_time, int64_t *ms);

/* ---- database ---------------------------------------------------------------- */

/* The type of one bound argument. */
enum stage_arg_type { STAGE_ARG_TEXT, STAGE_ARG_INT, STAGE_ARG_DECIMAL, STAGE_ARG_TIME };

/* One value to bind: build it with the stage_arg_* functions. */
struct stage_arg {
    enum stage_arg_type type;
    const char *text; /* STAGE_ARG_TEXT (borrowed); NULL binds SQL NULL */
    int64_t value;    /* the others: decimal in ten-thousandths, time in ms */
};

/* Text `s` (borrowed until bound; NULL binds SQL NULL). */
struct stage_arg stage_arg_text(const char *s);
/* A 64-bit integer. */
struct stage_arg stage_arg_int(int64_t v);
/* An exact decimal in ten-thousandths. */
struct stage_arg stage_arg_dec(int64_t v);
/* A UTC time in ms since the epoch. */
struct stage_arg stage_arg_time(int64_t ms);

/* The number of elements of an array of arguments. */
#define STAGE_NARGS(a) ((unsigned)(sizeof(a) / sizeof((a)[0])))

/* Bind args[0..n) (borrowed) to the parameters 1..n of stmt. Returns
 * CPB_OK or the first failing bind's status (the host set the reason). */
enum cpb_status stage_db_bind(const struct cpb_host *host, struct cpb_stmt *stmt,
                              const struct stage_arg *args, unsigned n);

/* Bind args[0..n) (borrowed) to the parameters first..first+n-1 of stmt
 * (first is 1-based), e.g. one row of a multi-row INSERT. Returns CPB_OK
 * or the first failing bind's status (the host set the reason). */
enum cpb_status stage_db_bind_at(const struct cpb_host *host, struct cpb_stmt *stmt, unsigned first,
                                 const struct stage_arg *args, unsigned n);

/* Prepare `sql` (borrowed) when *stmt is NULL, else reuse *stmt, and bind
 * args (borrowed). *stmt belongs to the caller, who releases it with
 * host->db_finalize whatever the outcome. */
enum cpb_status stage_db_prepare(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                                 const struct stage_arg *args, unsigned n, struct cpb_stmt **stmt);

/* Prepare, bind, execute and release one statement. *rows (may be NULL)
 * receives the affected row count. `sql` and `args` are borrowed. */
enum cpb_status stage_db_exec(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                              const struct stage_arg *args, unsigned n, int64_t *rows);

/* stage_db_prepare, then execute and fetch the first row: CPB_OK (read its
 * columns from *stmt), CPB_SKIP (no row), or an error status (the host set
 * the reason). *stmt belongs to the caller as with stage_db_prepare. */
enum cpb_status stage_db_query(const struct cpb_host *host, struct cpb_ctx *ctx, const char *sql,
                               const struct stage_arg *args, unsigned n, struct cpb_stmt **stmt);

/* ---- init / fini ------------------------------------------------------------- */

/* A new zeroed state of `size` bytes for init: also stored in *state (so
 * fini gets it even when init fails later). NULL, logged as "out of
 * memory", when it cannot be had. The state is new, owned by the stage;
 * release it with stage_state_free (or the stage's own fini). */
void *stage_state_new(const struct cpb_host *host, struct cpb_ctx *ctx, size_t size, void **state);

/* A fini for a state that owns nothing but itself: takes ownership of
 * state and frees it; NULL is accepted. */
void stage_state_free(void *state);

/* Report why init failed, as the reason "config.invalid" (the engine shows
 * it with the stage's file:line), from a printf format. Returns -1. */
int stage_init_fail(const struct cpb_host *host, struct cpb_ctx *ctx, const char *fmt, ...)
    CPB_PRINTF(3, 4);

#endif
