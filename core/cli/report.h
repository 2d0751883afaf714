/*
 * report.h — the page `cpbridge report` writes (report_html.c): one
 * self-contained HTML file, inline CSS and SVG charts, no script, drawn
 * from the aggregates cmd_report.c reads from the database (the same JSON
 * tree `--json` prints). Internal to core/cli.
 */
#ifndef CPB_REPORT_H
#define CPB_REPORT_H

#include <jansson.h>

#include "lib/buf.h"

/* Append the HTML page for the aggregates `r` (borrowed; the shape is the
 * one cmd_report.c builds, documented in docs/CLI.md) to `out` (the
 * caller's). Every string of `r` is escaped for HTML. Returns 0, or -1 when
 * out of memory (out->oom). */
int report_html(const json_t *r, struct buf *out);

/* Append `s` (borrowed; NULL appends nothing) to `b` (the caller's) escaped
 * for HTML or XML text and attribute values: & < > " ' as entities. */
void report_escape(struct buf *b, const char *s);

#endif
