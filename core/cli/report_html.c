/*
 * report_html.c — draws the page of `cpbridge report` (see report.h) from
 * the aggregates cmd_report.c reads: a summary, three SVG charts drawn
 * here (outcomes per hour stacked, order placed to applied per day, per-
 * stage latency) with labelled axes, and the tables behind them. One file:
 * inline CSS, no script, nothing fetched, and a Content-Security-Policy
 * that forbids scripts anyway. The charts scale with the page (viewBox),
 * so they read at phone width and in print. Every string goes through
 * esc(); numbers come from the JSON tree as integers.
 */
#include "cli/report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/text.h"

#define HOUR_MS INT64_C(3600000)
#define DAY_MS  INT64_C(86400000)

/* Chart geometry, in viewBox units. */
#define CW 960.0
#define CL 64.0
#define CR 16.0
#define CT 16.0
#define CB 48.0

static const char css[] =
    "body{font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232a;"
    "margin:0 auto;max-width:1040px;padding:12px}"
    "h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;"
    "border-bottom:1px solid #ccd;padding-bottom:.2em}"
    ".meta{color:#555}.cards{display:flex;flex-wrap:wrap;gap:8px}"
    ".card{border:1px solid #ccd;border-radius:6px;padding:6px 10px;min-width:110px}"
    ".card b{display:block;font-size:1.4em}.card.bad b{color:#a4161a}"
    "svg{width:100%;height:auto;display:block}svg text{font-size:13px;fill:#333}"
    ".grid{stroke:#ddd;stroke-width:1}.axis{stroke:#555;stroke-width:1}"
    ".applied{fill:#2b7a3d}.invalid{fill:#e09f1f}.dead{fill:#a4161a}"
    ".median{fill:#1f5f99}.p95{fill:#8fb8de}.max{stroke:#1d232a;stroke-width:2}"
    ".legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;"
    "width:12px;height:12px;margin-right:4px;vertical-align:-1px}"
    ".legend .applied,.legend .invalid,.legend .dead,.legend .median,.legend .p95{"
    "background:currentColor}.legend .applied{color:#2b7a3d}.legend .invalid{color:#e09f1f}"
    ".legend .dead{color:#a4161a}.legend .median{color:#1f5f99}.legend .p95{color:#8fb8de}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.92em;width:100%}"
    "th,td{border-bottom:1px solid #e3e3ea;padding:4px 6px;text-align:left;vertical-align:top}"
    "td.n,th.n{text-align:right;white-space:nowrap}code{font-size:.92em;background:#f2f3f7;"
    "padding:1px 4px;border-radius:3px;word-break:break-all}"
    ".empty{color:#555;font-style:italic}"
    "@media print{body{max-width:none;font-size:11pt}.card{break-inside:avoid}"
    "section{break-inside:avoid-page}*{-webkit-print-color-adjust:exact;"
    "print-color-adjust:exact}}";

/* ---- small helpers ---------------------------------------------------------- */

void report_escape(struct buf *b, const char *s)
{
    if (s == NULL) {
        return;
    }
    for (const char *p = s; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            buf_adds(b, "&amp;");
            break;
        case '<':
            buf_adds(b, "&lt;");
            break;
        case '>':
            buf_adds(b, "&gt;");
            break;
        case '"':
            buf_adds(b, "&quot;");
            break;
        case '\'':
            buf_adds(b, "&#39;");
            break;
        default:
            buf_add(b, p, 1);
        }
    }
}

/* This file's short name for report_escape. */
static void esc(struct buf *b, const char *s)
{
    report_escape(b, s);
}

static const char *str_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t int_of(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

/* A text value, or "-" for null. */
static void esc_or_dash(struct buf *b, const json_t *o, const char *key)
{
    const char *s = str_of(o, key);
    esc(b, s != NULL ? s : "-");
}

/* A duration for people: "850 ms", "12.3 s", "4.5 min", "2.1 h", "3.2 d". */
static void add_ms(struct buf *b, int64_t ms)
{
    double v = (double)ms;
    if (ms > -1000 && ms < 1000) {
        buf_addf(b, "%" PRId64 " ms", ms);
    } else if (ms > -60000 && ms < 60000) {
        buf_addf(b, "%.1f s", v / 1000.0);
    } else if (ms > -HOUR_MS && ms < HOUR_MS) {
        buf_addf(b, "%.1f min", v / 60000.0);
    } else if (ms > -DAY_MS && ms < DAY_MS) {
        buf_addf(b, "%.1f h", v / 3600000.0);
    } else {
        buf_addf(b, "%.1f d", v / 86400000.0);
    }
}

/* Microseconds as milliseconds with one decimal. */
static void add_us(struct buf *b, const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        buf_adds(b, "-");
        return;
    }
    int64_t us = (int64_t)json_integer_value(v);
    buf_addf(b, "%" PRId64 ".%" PRId64 " ms", us / 1000, (us % 1000) / 100);
}

/* The tick step for an axis from 0 to max: 1, 2 or 5 times a power of ten,
 * about five ticks. */
static double nice_step(double max)
{
    double raw = max / 5.0;
    double p = 1.0;
    if (raw <= 0) {
        return 1.0;
    }
    while (p * 10.0 <= raw) {
        p *= 10.0;
    }
    while (p > raw) {
        p /= 10.0;
    }
    if (raw <= p) {
        return p;
    }
    if (raw <= 2 * p) {
        return 2 * p;
    }
    if (raw <= 5 * p) {
        return 5 * p;
    }
    return 10 * p;
}

/* The value axis of a vertical chart: grid lines, tick labels, title.
 * Returns the axis maximum. */
static double y_axis(struct buf *b, double max, double h, bool integers, const char *title)
{
    double step = nice_step(max);
    if (integers && step < 1.0) {
        step = 1.0;
    }
    double top = step;
    while (top < max) {
        top += step;
    }
    double ph = h - CT - CB;
    for (double v = 0; v <= top + step / 2; v += step) {
        double y = CT + ph - v / top * ph;
        buf_addf(b,
                 "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>",
                 CL, y, CW - CR, y, CL - 6, y + 4, v);
    }
    buf_addf(b,
             "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
             "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
             CL, CT, CL, CT + ph, CL, CT + ph, CW - CR, CT + ph);
    buf_addf(b,
             "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">",
             CT + ph / 2, CT + ph / 2);
    esc(b, title);
    buf_adds(b, "</text>");
    return top;
}

static void x_title(struct buf *b, double h, const char *title)
{
    buf_addf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", CL + (CW - CL - CR) / 2,
             h - 6);
    esc(b, title);
    buf_adds(b, "</text>");
}

static void svg_open(struct buf *b, const char *id, double h, const char *label)
{
    buf_addf(b, "<svg id=\"%s\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", id, CW, h);
    esc(b, label);
    buf_adds(b, "\" xmlns=\"http://www.w3.org/2000/svg\"><title>");
    esc(b, label);
    buf_adds(b, "</title>");
}

/* "MM-DD" of a time text "YYYY-MM-DDT..." into out[8]. */
static void month_day(const char *when, char out[8])
{
    snprintf(out, 8, "%.5s", when != NULL && strlen(when) >= 10 ? when + 5 : "?");
}

/* ---- the charts --------------------------------------------------------------- */

static void chart_outcomes(struct buf *b, const json_t *r)
{
    const json_t *arr = json_object_get(r, "per_bucket");
    bool hourly = strcmp(str_of(r, "bucket") != NULL ? str_of(r, "bucket") : "", "day") != 0;
    int64_t bucket_ms = hourly ? HOUR_MS : DAY_MS;
    int64_t since = 0;
    int64_t now = 0;
    double h = 320;
    size_t i;
    const json_t *o;

    if (text_parse_time(str_of(r, "since"), &since) != 0 ||
        text_parse_time(str_of(r, "generated"), &now) != 0) {
        return;
    }
    int64_t first = since / bucket_ms;
    int64_t n = now / bucket_ms - first + 1;
    int64_t max = 0;
    json_array_foreach(arr, i, o)
    {
        int64_t sum = int_of(o, "applied") + int_of(o, "invalid") + int_of(o, "dead");
        max = sum > max ? sum : max;
    }
    svg_open(b, "chart-outcomes", h,
             hourly ? "Orders per hour: applied, invalid, dead"
                    : "Orders per day: applied, invalid, dead");
    double top = y_axis(b, (double)(max > 0 ? max : 1), h, true,
                        hourly ? "orders per hour" : "orders per day");
    double pw = CW - CL - CR;
    double ph = h - CT - CB;
    double bw = pw / (double)n;
    /* Day labels: every midnight (hourly), or about ten days (daily). */
    int64_t every = hourly ? (n > 24 * 16 ? 2 : 1) : (n + 9) / 10;
    for (int64_t k = 0; k < n; k++) {
        int64_t start = (first + k) * bucket_ms;
        int64_t day_no = start / DAY_MS;
        if ((hourly && start % DAY_MS != 0) || day_no % every != 0) {
            continue;
        }
        char when[32];
        char md[8];
        double x = CL + (double)k * bw;
        text_format_time(start, when, sizeof when);
        month_day(when, md);
        buf_addf(b,
                 "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
                 x, CT + ph, x, CT + ph + 5, x, CT + ph + 19, md);
    }
    x_title(b, h, hourly ? "day (UTC), one bar per hour" : "day (UTC), one bar per day");
    json_array_foreach(arr, i, o)
    {
        int64_t start = 0;
        static const char *const keys[] = {"applied", "invalid", "dead"};
        if (text_parse_time(str_of(o, "start"), &start) != 0) {
            continue;
        }
        int64_t k = start / bucket_ms - first;
        if (k < 0 || k >= n) {
            continue;
        }
        double x = CL + (double)k * bw + (bw > 3 ? bw * 0.1 : 0);
        double w = bw > 3 ? bw * 0.8 : bw;
        double y = CT + ph;
        buf_addf(b,
                 "<g class=\"bucket\" data-start=\"%s\" data-applied=\"%" PRId64
                 "\" data-invalid=\"%" PRId64 "\" data-dead=\"%" PRId64 "\"><title>%s UTC: %" PRId64
                 " applied, %" PRId64 " invalid, %" PRId64 " dead</title>",
                 str_of(o, "start"), int_of(o, "applied"), int_of(o, "invalid"), int_of(o, "dead"),
                 str_of(o, "start"), int_of(o, "applied"), int_of(o, "invalid"), int_of(o, "dead"));
        for (int s = 0; s < 3; s++) {
            int64_t v = int_of(o, keys[s]);
            if (v <= 0) {
                continue;
            }
            double hh = (double)v / top * ph;
            y -= hh;
            buf_addf(b, "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>",
                     keys[s], x, y, w, hh);
        }
        buf_adds(b, "</g>");
    }
    buf_adds(b, "</svg>");
    buf_adds(b, "<p class=\"legend\"><span><i class=\"applied\"></i>applied</span>"
                "<span><i class=\"invalid\"></i>invalid</span>"
                "<span><i class=\"dead\"></i>dead</span></p>");
}

/* The unit for durations up to max_ms: divisor and name. */
static void pick_unit(int64_t max_ms, double *div, const char **name)
{
    if (max_ms <= 2 * 60000) {
        *div = 1000.0;
        *name = "seconds";
    } else if (max_ms <= 2 * HOUR_MS) {
        *div = 60000.0;
        *name = "minutes";
    } else if (max_ms <= 3 * DAY_MS) {
        *div = 3600000.0;
        *name = "hours";
    } else {
        *div = 86400000.0;
        *name = "days";
    }
}

static void chart_latency(struct buf *b, const json_t *r)
{
    const json_t *arr = json_object_get(r, "placed_to_applied");
    size_t n = json_array_size(arr);
    double h = 300;
    int64_t max = 0;
    size_t i;
    const json_t *o;
    double div;
    const char *unit;
    char title[64];

    json_array_foreach(arr, i, o)
    {
        int64_t v = int_of(o, "p95_ms");
        max = v > max ? v : max;
    }
    pick_unit(max, &div, &unit);
    svg_open(b, "chart-latency", h, "Order placed to applied per day: median and p95");
    snprintf(title, sizeof title, "%s, placed to applied", unit);
    double top = y_axis(b, max > 0 ? (double)max / div : 1.0, h, false, title);
    double pw = CW - CL - CR;
    double ph = h - CT - CB;
    double gw = pw / (double)n;
    gw = gw > 90 ? 90 : gw; /* a few days: narrow groups from the left */
    x_title(b, h, "day (UTC)");
    json_array_foreach(arr, i, o)
    {
        char md[8];
        double x = CL + (double)i * gw;
        double bw = gw * 0.35;
        double hm = (double)int_of(o, "median_ms") / div / top * ph;
        double hp = (double)int_of(o, "p95_ms") / div / top * ph;
        hm = hm < 0 ? 0 : hm;
        hp = hp < 0 ? 0 : hp;
        month_day(str_of(o, "day"), md);
        buf_addf(b, "<g class=\"day\" data-day=\"");
        esc(b, str_of(o, "day"));
        buf_addf(b, "\" data-median-ms=\"%" PRId64 "\" data-p95-ms=\"%" PRId64 "\"><title>",
                 int_of(o, "median_ms"), int_of(o, "p95_ms"));
        esc(b, str_of(o, "day"));
        buf_adds(b, ": median ");
        add_ms(b, int_of(o, "median_ms"));
        buf_adds(b, ", p95 ");
        add_ms(b, int_of(o, "p95_ms"));
        buf_addf(b,
                 "</title><rect class=\"median\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\""
                 " height=\"%.2f\"/><rect class=\"p95\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\""
                 " height=\"%.2f\"/></g><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s"
                 "</text>",
                 x + gw * 0.15, CT + ph - hm, bw, hm, x + gw * 0.5, CT + ph - hp, bw, hp,
                 x + gw / 2, CT + ph + 19, md);
    }
    buf_adds(b, "</svg><p class=\"legend\"><span><i class=\"median\"></i>median</span>"
                "<span><i class=\"p95\"></i>95th percentile</span></p>");
}

static void chart_stages(struct buf *b, const json_t *r)
{
    const json_t *arr = json_object_get(r, "stages");
    size_t n = json_array_size(arr);
    double row = 40;
    double left = 150;
    double h = CT + row * (double)n + CB;
    int64_t max = 0;
    size_t i;
    const json_t *o;

    json_array_foreach(arr, i, o)
    {
        int64_t v = int_of(o, "p95_us");
        max = v > max ? v : max;
    }
    svg_open(b, "chart-stages", h, "Per-stage latency: median and p95");
    double maxv = max > 0 ? (double)max / 1000.0 : 1.0;
    double step = nice_step(maxv);
    double top = step;
    while (top < maxv) {
        top += step;
    }
    double pw = CW - left - CR;
    double base = CT + row * (double)n;
    for (double v = 0; v <= top + step / 2; v += step) {
        double x = left + v / top * pw;
        buf_addf(b,
                 "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>",
                 x, CT, x, base, x, base + 18, v);
    }
    buf_addf(b, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, CT,
             left, base);
    buf_addf(b,
             "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">milliseconds per order"
             "</text>",
             left + pw / 2, h - 6);
    json_array_foreach(arr, i, o)
    {
        double y = CT + row * (double)i;
        double wm = (double)int_of(o, "median_us") / 1000.0 / top * pw;
        double wp = (double)int_of(o, "p95_us") / 1000.0 / top * pw;
        buf_addf(b, "<g class=\"stage\" data-stage=\"");
        esc(b, str_of(o, "stage"));
        buf_addf(b, "\" data-median-us=\"%" PRId64 "\" data-p95-us=\"%" PRId64 "\"><title>",
                 int_of(o, "median_us"), int_of(o, "p95_us"));
        esc(b, str_of(o, "stage"));
        buf_adds(b, ": median ");
        add_us(b, o, "median_us");
        buf_adds(b, ", p95 ");
        add_us(b, o, "p95_us");
        buf_addf(b, "</title><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", left - 8,
                 y + row / 2 + 4);
        esc(b, str_of(o, "stage"));
        buf_addf(b,
                 "</text><rect class=\"median\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\""
                 " height=\"%.1f\"/><rect class=\"p95\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\""
                 " height=\"%.1f\"/></g>",
                 left, y + 6, wm, row * 0.35, left, y + 6 + row * 0.4, wp, row * 0.35);
    }
    buf_adds(b, "</svg><p class=\"legend\"><span><i class=\"median\"></i>median</span>"
                "<span><i class=\"p95\"></i>95th percentile</span></p>");
}

/* ---- the sections ------------------------------------------------------------- */

static void card(struct buf *b, const char *id, const char *label, const char *value, bool bad)
{
    buf_addf(b, "<div class=\"card%s\" id=\"%s\">", bad ? " bad" : "", id);
    esc(b, label);
    buf_adds(b, "<b>");
    esc(b, value);
    buf_adds(b, "</b></div>");
}

static void summary(struct buf *b, const json_t *r)
{
    const json_t *orders = json_object_get(r, "orders");
    const json_t *outcomes = json_object_get(r, "outcomes");
    const char *key;
    const json_t *v;
    char n[32];
    char id[48];

    buf_adds(b, "<section id=\"summary\"><h2>Now</h2><div class=\"cards\">");
    json_object_foreach((json_t *)orders, key, v)
    {
        bool bad =
            (strcmp(key, "DEAD") == 0 || strcmp(key, "INVALID") == 0) && json_integer_value(v) > 0;
        snprintf(n, sizeof n, "%" PRId64, (int64_t)json_integer_value(v));
        snprintf(id, sizeof id, "state-%s", key);
        card(b, id, key, n, bad);
    }
    card(b, "oldest-pending", "oldest pending since",
         str_of(r, "oldest_pending") != NULL ? str_of(r, "oldest_pending") : "none", false);
    card(b, "last-success", "last successful run",
         str_of(r, "last_success") != NULL ? str_of(r, "last_success") : "never",
         str_of(r, "last_success") == NULL);
    buf_adds(b, "</div><h2>In the period</h2><div class=\"cards\">");
    static const char *const keys[] = {"applied", "invalid", "dead"};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "%" PRId64, int_of(outcomes, keys[i]));
        snprintf(id, sizeof id, "period-%s", keys[i]);
        card(b, id, keys[i], n, i > 0 && int_of(outcomes, keys[i]) > 0);
    }
    const json_t *runs = json_object_get(r, "runs");
    snprintf(n, sizeof n, "%" PRId64, int_of(runs, "total"));
    card(b, "period-runs", "runs", n, false);
    snprintf(n, sizeof n, "%" PRId64, int_of(json_object_get(runs, "by_result"), "FAILED"));
    card(b, "period-runs-failed", "runs failed", n,
         int_of(json_object_get(runs, "by_result"), "FAILED") > 0);
    buf_adds(b, "</div></section>");
}

/* A section's heading; with an empty `arr`, also the `none` line and the
 * section's end: returns false then. */
static bool section_open(struct buf *b, const char *id, const char *title, const json_t *arr,
                         const char *none)
{
    buf_addf(b, "<section id=\"%s\"><h2>", id);
    esc(b, title);
    buf_adds(b, "</h2>");
    if (json_array_size(arr) > 0) {
        return true;
    }
    buf_adds(b, "<p class=\"empty\">");
    esc(b, none);
    buf_adds(b, "</p></section>");
    return false;
}

/* The head of a table of counts, medians, p95 and maxima. */
static void stat_head(struct buf *b, const char *id, const char *first)
{
    buf_addf(b,
             "<div class=\"scroll\"><table id=\"%s\"><thead><tr><th>%s</th>"
             "<th class=\"n\">orders</th><th class=\"n\">median</th><th class=\"n\">p95</th>"
             "<th class=\"n\">max</th></tr></thead><tbody>",
             id, first);
}

static void latency_section(struct buf *b, const json_t *r)
{
    const json_t *arr = json_object_get(r, "placed_to_applied");
    size_t i;
    const json_t *o;
    if (!section_open(b, "latency", "Order placed in the store to applied, per day", arr,
                      "No order was applied in the period.")) {
        return;
    }
    chart_latency(b, r);
    stat_head(b, "latency-table", "day (UTC)");
    json_array_foreach(arr, i, o)
    {
        static const char *const keys[] = {"median_ms", "p95_ms", "max_ms"};
        buf_adds(b, "<tr><td>");
        esc(b, str_of(o, "day"));
        buf_addf(b, "</td><td class=\"n\" data-v=\"%" PRId64 "\">%" PRId64 "</td>",
                 int_of(o, "orders"), int_of(o, "orders"));
        for (int k = 0; k < 3; k++) {
            buf_addf(b, "<td class=\"n\" data-ms=\"%" PRId64 "\">", int_of(o, keys[k]));
            add_ms(b, int_of(o, keys[k]));
            buf_adds(b, "</td>");
        }
        buf_adds(b, "</tr>");
    }
    buf_adds(b, "</tbody></table></div></section>");
}

static void stage_row(struct buf *b, const json_t *o)
{
    static const char *const keys[] = {"median_us", "p95_us", "max_us"};
    buf_adds(b, "<tr><td>");
    esc(b, str_of(o, "stage"));
    buf_addf(b, "</td><td class=\"n\" data-v=\"%" PRId64 "\">%" PRId64 "</td>", int_of(o, "orders"),
             int_of(o, "orders"));
    for (int k = 0; k < 3; k++) {
        buf_addf(b, "<td class=\"n\" data-us=\"%" PRId64 "\">", int_of(o, keys[k]));
        add_us(b, o, keys[k]);
        buf_adds(b, "</td>");
    }
    buf_adds(b, "</tr>");
}

static void stage_section(struct buf *b, const json_t *r)
{
    const json_t *arr = json_object_get(r, "stages");
    size_t i;
    const json_t *o;
    if (!section_open(b, "stages", "Per-stage latency of applied orders", arr,
                      "No step timings were recorded in the period.")) {
        return;
    }
    chart_stages(b, r);
    stat_head(b, "stage-table", "stage");
    json_array_foreach(arr, i, o)
    {
        stage_row(b, o);
    }
    const json_t *t = json_object_get(r, "transaction");
    if (t != NULL && int_of(t, "orders") > 0) {
        stage_row(b, t);
    }
    buf_adds(b, "</tbody></table></div><p class=\"meta\">From the per-step timings of each"
                " applied order; <q>transaction</q> is all the steps of one order together with"
                " its commit.</p></section>");
}

/* A table of orders (dead letters or changed ones) with their commands. */
static void orders_section(struct buf *b, const json_t *r, const char *key, const char *title,
                           const char *none, const char *more_verb, const char *more_args)
{
    const json_t *part = json_object_get(r, key);
    const json_t *arr = json_object_get(part, "shown");
    size_t i;
    const json_t *o;
    buf_addf(b, "<section id=\"%s\"><h2>", key);
    esc(b, title);
    buf_addf(b, " (%" PRId64 ")</h2>", int_of(part, "count"));
    if (json_array_size(arr) == 0) {
        buf_adds(b, "<p class=\"empty\">");
        esc(b, none);
        buf_adds(b, "</p></section>");
        return;
    }
    buf_addf(b,
             "<div class=\"scroll\"><table id=\"%s-table\"><thead><tr><th>id</th>"
             "<th>order</th><th>customer</th><th>state</th><th class=\"n\">attempts</th>"
             "<th>updated (UTC)</th><th>reason</th><th>message</th><th>command</th></tr>"
             "</thead><tbody>",
             key);
    json_array_foreach(arr, i, o)
    {
        buf_addf(b, "<tr data-id=\"%" PRId64 "\"><td>%" PRId64 "</td><td>", int_of(o, "id"),
                 int_of(o, "id"));
        esc(b, str_of(o, "source"));
        buf_adds(b, ":");
        esc(b, str_of(o, "external_id"));
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "bill_name");
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "state");
        buf_addf(b, "</td><td class=\"n\">%" PRId64 "</td><td>", int_of(o, "attempts"));
        esc_or_dash(b, o, "updated");
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "last_error_code");
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "last_error");
        buf_adds(b, "</td><td><code>");
        esc(b, str_of(o, "command"));
        buf_adds(b, "</code></td></tr>");
    }
    buf_adds(b, "</tbody></table></div>");
    if ((int64_t)json_array_size(arr) < int_of(part, "count")) {
        buf_addf(b, "<p class=\"meta\">The first %zu shown; all of them: <code>",
                 json_array_size(arr));
        buf_adds(b, "cpbridge ");
        esc(b, more_verb);
        buf_adds(b, " ");
        esc(b, str_of(r, "pipeline_file"));
        buf_adds(b, " ");
        esc(b, more_args);
        buf_adds(b, "</code></p>");
    }
    buf_adds(b, "</section>");
}

static void runs_section(struct buf *b, const json_t *r)
{
    const json_t *runs = json_object_get(r, "runs");
    const json_t *arr = json_object_get(runs, "failed");
    size_t i;
    const json_t *o;
    buf_addf(b, "<section id=\"runs\"><h2>Runs that failed (%" PRId64 " of %" PRId64 ")</h2>",
             int_of(json_object_get(runs, "by_result"), "FAILED"), int_of(runs, "total"));
    if (json_array_size(arr) == 0) {
        buf_adds(b, "<p class=\"empty\">No run failed in the period.</p></section>");
        return;
    }
    buf_adds(b, "<div class=\"scroll\"><table id=\"runs-table\"><thead><tr><th>started (UTC)</th>"
                "<th>ended</th><th class=\"n\">exit</th><th>host</th><th>message</th>"
                "<th>run id</th></tr></thead><tbody>");
    json_array_foreach(arr, i, o)
    {
        buf_adds(b, "<tr><td>");
        esc_or_dash(b, o, "started");
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "ended");
        if (json_is_integer(json_object_get(o, "exit_code"))) {
            buf_addf(b, "</td><td class=\"n\">%" PRId64 "</td><td>", int_of(o, "exit_code"));
        } else {
            buf_adds(b, "</td><td class=\"n\">-</td><td>");
        }
        esc_or_dash(b, o, "host");
        buf_adds(b, "</td><td>");
        esc_or_dash(b, o, "message");
        buf_adds(b, "</td><td><code>");
        esc_or_dash(b, o, "run_id");
        buf_adds(b, "</code></td></tr>");
    }
    buf_adds(b, "</tbody></table></div></section>");
}

int report_html(const json_t *r, struct buf *out)
{
    const char *name = str_of(r, "pipeline");
    buf_adds(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"
                  " style-src 'unsafe-inline'\"><title>cpbridge report: ");
    esc(out, name);
    buf_addf(out, "</title><style>%s</style></head>\n<body><header><h1>cpbridge report: ", css);
    esc(out, name);
    buf_adds(out, "</h1><p class=\"meta\">The last ");
    esc(out, str_of(r, "period"));
    buf_adds(out, ", from <time id=\"since\">");
    esc(out, str_of(r, "since"));
    buf_adds(out, "</time> to <time id=\"generated\">");
    esc(out, str_of(r, "generated"));
    buf_adds(out, "</time> (UTC); database ");
    esc(out, str_of(r, "dialect"));
    buf_adds(out, ".</p></header>\n");
    summary(out, r);
    buf_addf(out, "\n<section id=\"outcomes\"><h2>Orders per %s</h2>",
             strcmp(str_of(r, "bucket") != NULL ? str_of(r, "bucket") : "", "day") == 0 ? "day"
                                                                                        : "hour");
    chart_outcomes(out, r);
    buf_adds(out, "</section>\n");
    latency_section(out, r);
    buf_adds(out, "\n");
    stage_section(out, r);
    buf_adds(out, "\n");
    orders_section(out, r, "dead_letters", "Dead-letter and invalid orders",
                   "None: no order waits for a person.", "dlq", "list");
    buf_adds(out, "\n");
    runs_section(out, r);
    buf_adds(out, "\n");
    orders_section(out, r, "changed", "Orders changed in the store after they were applied",
                   "None.", "orders", "list --changed");
    buf_adds(out, "\n<footer><p class=\"meta\">Written by <code>cpbridge report</code>. Fix the"
                  " cause an order's message names (master data, a price, a customer) before"
                  " running its command; <code>cpbridge dlq ");
    esc(out, str_of(r, "pipeline_file"));
    buf_adds(out, " cancel ID --why TEXT</code> drops one for good.</p></footer></body></html>\n");
    return out->oom ? -1 : 0;
}
