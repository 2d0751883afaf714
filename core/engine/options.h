/*
 * options.h — declared option tables (struct cpb_option) applied to a
 * libconfig group: type checks without silent conversion, ranges, required
 * keys, defaults, unknown keys refused with a did-you-mean, `file:` secrets,
 * and the describe/markdown output that documents a table.
 * The engine's own settings are declared with the same tables (config.c).
 */
#ifndef CPB_OPTIONS_H
#define CPB_OPTIONS_H

#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>

#include "cpbridge/stage.h"
#include "lib/err.h"

/* Owns the memory made while filling options (lists, secrets read from
 * files, copies of strings). Strings in a filled struct point into it or
 * into the libconfig tree, so it lives as long as the config. */
struct opt_store;

/* Check a table for authoring mistakes: NULL-terminated, unique names,
 * offsets + field size within options_size, enum choices present, defaults
 * that parse and fit the range. `what` names the owner in messages
 * ("stage 'validate'"). Returns 0, or -1 with err (CPB_EXIT_CONFIG). */
int options_check_table(const struct cpb_option *table, size_t options_size, const char *what,
                        struct err *err);

/*
 * Fill `out` (options_size bytes, zeroed by the caller) from `group` (a
 * libconfig group, borrowed; NULL means no options given) by `table`.
 * Rules:
 *  - a key not in the table is an error naming file:line and the closest
 *    known key ("did you mean 'price_check'?");
 *  - a value of the wrong libconfig type is an error (an INT option wants an
 *    integer, not "3"; a DURATION wants a string with a unit; a DECIMAL takes
 *    a string or a number; a LIST wants a list or array of strings);
 *  - ranges, enum choices and REQUIRED are enforced; unset keys get their
 *    default; DEPRECATED keys log a warning naming file:line;
 *  - a STRING value "file:/path" of a SECRET option is replaced by the
 *    contents of that file (one trailing newline removed); an unreadable
 *    file is an error naming it. Secret values are registered with the
 *    logger's redaction list.
 * `*store` receives a new store (free with opt_store_free, also on error).
 * Returns 0, or -1 with err (CPB_EXIT_CONFIG) naming `what`, the key and the
 * place in the file.
 */
int options_fill(const struct cpb_option *table, const config_setting_t *group, void *out,
                 struct opt_store **store, const char *what, struct err *err);

/* Release a store; NULL is accepted. */
void opt_store_free(struct opt_store *store);

/* Print a table for `cpbridge stages --describe` (markdown == 0) or as a
 * Markdown table for docs/CONFIGURATION.md (markdown != 0). */
void options_describe(FILE *f, const struct cpb_option *table, int markdown);

/* Print the filled values of `opts` one per line ("  key = value"), secrets
 * shown as "********", for `cpbridge check`. */
void options_print_values(FILE *f, const struct cpb_option *table, const void *opts);

/* Message helpers shared by everything that reports on a libconfig file:
 * "file:line: " of a setting into out ("" when unknown; s may be NULL); what
 * kind of value a setting holds ("an integer", "a string", ...); untrusted
 * text quoted for a message (cut, control bytes escaped; a secret is never
 * shown). All write at most n bytes and always terminate. */
void options_where(const config_setting_t *s, char *out, size_t n);
const char *options_setting_kind(const config_setting_t *s);
void options_quote(const char *s, bool secret, char *out, size_t n);

#endif
