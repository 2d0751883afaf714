/*
 * notify-webhook — a notifier stage that POSTs each event it subscribes to
 * to one HTTP(S) endpoint, in one of four formats: generic JSON (your own
 * receiver or a relay), Slack (Block Kit), Microsoft Teams (an Adaptive
 * Card) or plain text (SMS gateways and push services). With a secret, the
 * exact body bytes are signed with HMAC-SHA256 (OpenSSL) and the signature
 * is sent as "<signature_header>: sha256=<lowercase hex>". HTTP goes through
 * the host's http service: TLS verification, timeouts, retries of 408, 429,
 * 5xx and transport errors with backoff, Retry-After honoured.
 * docs/ALERTS_WEBHOOK.md documents the formats and how to verify signatures.
 */
#include <cpbridge/stage.h>

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "stage_util.h"

/* Orders listed per message, by format (the rest is counted). */
#define WEBHOOK_GENERIC_MAX_ORDERS 1000
#define WEBHOOK_CHAT_MAX_ORDERS    20
#define WEBHOOK_TEXT_MAX_ORDERS    10
/* Free-form details listed per message (generic, then the others). */
#define WEBHOOK_GENERIC_MAX_DETAILS 100
#define WEBHOOK_CHAT_MAX_DETAILS    5
#define WEBHOOK_TEXT_MAX_DETAILS    3
/* Longest text kept from one field, in bytes (cut at a UTF-8 boundary). */
#define WEBHOOK_MAX_FIELD      1024
#define WEBHOOK_MAX_CHAT_FIELD 500
#define WEBHOOK_MAX_TEXT_FIELD 200
/* Slack caps a header block's text at 150 characters. */
#define WEBHOOK_SLACK_HEADER_MAX 140
/* A URL as shown in messages, and the response text quoted in them. */
#define WEBHOOK_SAFE_URL 256
#define WEBHOOK_SNIPPET  200
/* Longest custom header line and header name. */
#define WEBHOOK_MAX_HEADER      8192
#define WEBHOOK_MAX_HEADER_NAME 128
/* Connect timeout per try, at most (the total timeout is the option). */
#define WEBHOOK_CONNECT_TIMEOUT_MS 10000
/* Secrets shorter than this are accepted with a warning. */
#define WEBHOOK_MIN_SECRET 16
/* Credentials in headers or the URL shorter than this are not masked. */
#define WEBHOOK_MIN_REDACT 4

enum notify_webhook_format {
    WEBHOOK_GENERIC = 0,
    WEBHOOK_SLACK = 1,
    WEBHOOK_TEAMS = 2,
    WEBHOOK_TEXT = 3
};

static const char *const notify_webhook_formats[] = {"generic", "slack", "teams", "text", NULL};

struct notify_webhook_opts {
    const char *url;
    int format;
    const char *secret;
    const char *signature_header;
    const char *const *headers;
    int64_t timeout_ms;
    int64_t max_tries;
    const char *ca_file;
    bool tls_no_verify;
};

static const struct cpb_option notify_webhook_options[] = {
    {"url", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 8, 2048, NULL,
     offsetof(struct notify_webhook_opts, url),
     "The endpoint events are POSTed to: an http:// or https:// URL."},
    {"format", CPB_OPT_ENUM, 0, "generic", 0, 0, notify_webhook_formats,
     offsetof(struct notify_webhook_opts, format),
     "Body format: generic (JSON event), slack, teams (Adaptive Card) or text (plain text)."},
    {"secret", CPB_OPT_STRING, CPB_OPT_SECRET, NULL, 1, 4096, NULL,
     offsetof(struct notify_webhook_opts, secret),
     "When set, the body is signed with HMAC-SHA256 under this key (\"file:/path\" reads it)."},
    {"signature_header", CPB_OPT_STRING, 0, "X-Cpbridge-Signature", 1, WEBHOOK_MAX_HEADER_NAME,
     NULL, offsetof(struct notify_webhook_opts, signature_header),
     "The header carrying the signature, as \"sha256=<lowercase hex>\"."},
    {"headers", CPB_OPT_LIST, 0, NULL, 0, 32, NULL, offsetof(struct notify_webhook_opts, headers),
     "Extra request headers, each one \"Name: value\" line."},
    {"timeout", CPB_OPT_DURATION, 0, "10s", 100, 300000, NULL,
     offsetof(struct notify_webhook_opts, timeout_ms), "Time allowed for each try."},
    {"max_tries", CPB_OPT_INT, 0, "3", 1, 10, NULL, offsetof(struct notify_webhook_opts, max_tries),
     "Tries per event; 408, 429, 5xx and network errors are retried with backoff."},
    {"ca_file", CPB_OPT_STRING, 0, NULL, 1, 4096, NULL,
     offsetof(struct notify_webhook_opts, ca_file),
     "A PEM CA bundle to verify the server with, instead of the system's."},
    {"tls_no_verify", CPB_OPT_BOOL, 0, "false", 0, 0, NULL,
     offsetof(struct notify_webhook_opts, tls_no_verify),
     "Turn TLS verification off (logged as a warning on every use)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct notify_webhook {
    const struct cpb_host *host;
    struct cpb_ctx *ctx;
    const struct notify_webhook_opts *opts;
    char safe_url[WEBHOOK_SAFE_URL];
    size_t n_headers;         /* custom headers */
    const char **req_headers; /* room for all headers of one request */
};

/* ---- text helpers ------------------------------------------------------- */

/* How text is written by put_text. */
enum put_mode {
    PUT_PLAIN = 0,  /* as is, control characters as spaces */
    PUT_MRKDWN = 1, /* Slack mrkdwn: & < > escaped */
    PUT_CODE = 2    /* Slack inline code: as mrkdwn, backticks as quotes */
};

/* Write s to f: at most max bytes of it (cut at a UTF-8 boundary, "..."
 * added when cut), control characters as spaces, escaped per mode. */
static void put_text(FILE *f, const char *s, size_t max, enum put_mode mode)
{
    size_t n = strlen(s);
    bool cut = false;
    if (n > max) {
        n = stage_utf8_floor(s, max);
        cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            fputc(' ', f);
        } else if (mode != PUT_PLAIN && ch == '&') {
            fputs("&amp;", f);
        } else if (mode != PUT_PLAIN && ch == '<') {
            fputs("&lt;", f);
        } else if (mode != PUT_PLAIN && ch == '>') {
            fputs("&gt;", f);
        } else if (mode == PUT_CODE && ch == '`') {
            fputc('\'', f);
        } else {
            fputc((int)ch, f);
        }
    }
    if (cut) {
        fputs("...", f);
    }
}

/* A text being built in memory (open_memstream). */
struct mtext {
    FILE *f;
    char *buf;
    size_t len;
};

static int mt_open(struct mtext *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    return m->f != NULL ? 0 : -1;
}

/* Close m and hand its text over: new string in *out (free()), or -1. */
static int mt_take(struct mtext *m, char **out, size_t *len)
{
    int bad = ferror(m->f);
    bad |= fclose(m->f) != 0;
    m->f = NULL;
    if (bad || m->buf == NULL) {
        free(m->buf);
        m->buf = NULL;
        return -1;
    }
    *out = m->buf;
    *len = m->len;
    m->buf = NULL;
    return 0;
}

/* Close m and return its text as a new JSON string, or NULL. */
static json_t *mt_json(struct mtext *m)
{
    char *text = NULL;
    size_t len = 0;
    if (mt_take(m, &text, &len) != 0) {
        return NULL;
    }
    json_t *j = json_stringn(text, len);
    free(text);
    return j;
}

/* One JSON string of s, cut to max bytes as put_text does (new, or NULL). */
static json_t *jcut(const char *s, size_t max, enum put_mode mode)
{
    struct mtext m;
    if (mt_open(&m) != 0) {
        return NULL;
    }
    put_text(m.f, s, max, mode);
    return mt_json(&m);
}

/* Upper-case severity for titles ("CRITICAL"); unknown ones as "NOTICE". */
static const char *severity_label(const char *sev)
{
    if (strcmp(sev, "critical") == 0) {
        return "CRITICAL";
    }
    if (strcmp(sev, "warning") == 0) {
        return "WARNING";
    }
    if (strcmp(sev, "info") == 0) {
        return "INFO";
    }
    return "NOTICE";
}

/* Append a member; the value is stolen. Returns 0 or -1. */
static int put(json_t *obj, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

/* Append an element; the value is stolen. Returns 0 or -1. */
static int push(json_t *arr, json_t *value)
{
    return value != NULL && json_array_append_new(arr, value) == 0 ? 0 : -1;
}

/* The order's "id" as text (an integer, or whatever string it holds). */
static void order_id_text(const json_t *order, char *out, size_t n)
{
    const json_t *id = json_object_get(order, "id");
    if (json_is_integer(id)) {
        snprintf(out, n, "%lld", (long long)json_integer_value(id));
    } else {
        snprintf(out, n, "%.40s", stage_json_str(order, "id"));
    }
}

/* One line about a free-form detail object: "stage: reason: message", or
 * its compact JSON when it has none of those. */
static void put_detail(FILE *f, const json_t *d, size_t max, enum put_mode mode)
{
    const char *parts[3] = {stage_json_str(d, "stage"), stage_json_str(d, "reason"),
                            stage_json_str(d, "message")};
    bool any = false;
    for (size_t i = 0; i < 3; i++) {
        if (parts[i][0] == '\0') {
            continue;
        }
        if (any) {
            fputs(": ", f);
        }
        put_text(f, parts[i], max, mode);
        any = true;
    }
    if (!any) {
        char *dump = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
        put_text(f, dump != NULL ? dump : "(detail)", max, mode);
        free(dump);
    }
}

/* ---- bodies ------------------------------------------------------------- */

/* The fields every format uses, taken from the event object (borrowed). */
struct event_view {
    const char *name;
    const char *severity;
    const char *pipeline;
    const char *run_id;
    const char *time;
    const char *summary;
    const char *command;
    json_t *orders;  /* borrowed array (may be empty) */
    json_t *details; /* borrowed array (may be empty) */
    size_t n_orders;
    size_t n_details;
};

static void event_view_of(const char *name, json_t *ev, struct event_view *v)
{
    v->name = name;
    v->severity = stage_json_str(ev, "severity");
    v->pipeline = stage_json_str(ev, "pipeline");
    v->run_id = stage_json_str(ev, "run_id");
    v->time = stage_json_str(ev, "time");
    v->summary = stage_json_str(ev, "summary");
    v->command = stage_json_str(ev, "command");
    v->orders = json_object_get(ev, "orders");
    v->details = json_object_get(ev, "details");
    v->n_orders = json_array_size(v->orders); /* 0 when not an array */
    v->n_details = json_array_size(v->details);
    if (v->summary[0] == '\0') {
        v->summary = name;
    }
}

/* generic: the event with stable keys (docs/ALERTS_WEBHOOK.md). New. */
static json_t *generic_body(struct notify_webhook *w, const struct event_view *v)
{
    char uuid[37];
    json_t *body = json_object();
    json_t *orders = json_array();
    json_t *details = json_array();
    int bad = body == NULL || orders == NULL || details == NULL;

    w->host->uuid(w->ctx, uuid);
    for (size_t i = 0; !bad && i < v->n_orders && i < WEBHOOK_GENERIC_MAX_ORDERS; i++) {
        const json_t *o = json_array_get(v->orders, i);
        json_t *item = json_object();
        const json_t *id = json_object_get(o, "id");
        bad |= item == NULL;
        bad |= put(item, "id",
                   json_is_integer(id) ? json_integer(json_integer_value(id))
                                       : jcut(stage_json_str(o, "id"), 64, PUT_PLAIN));
        bad |= put(item, "source", jcut(stage_json_str(o, "source"), WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(item, "external_id",
                   jcut(stage_json_str(o, "external_id"), WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(item, "reason", jcut(stage_json_str(o, "reason"), WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |=
            put(item, "message", jcut(stage_json_str(o, "message"), WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |=
            put(item, "command", jcut(stage_json_str(o, "command"), WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= push(orders, item);
    }
    for (size_t i = 0; !bad && i < v->n_details && i < WEBHOOK_GENERIC_MAX_DETAILS; i++) {
        bad |= push(details, json_deep_copy(json_array_get(v->details, i)));
    }
    if (!bad) {
        int64_t now_s = w->host->now_ms(w->ctx) / 1000;
        bad |= put(body, "source", json_string("cpbridge"));
        bad |= put(body, "version", json_integer(1));
        bad |= put(body, "delivery_id", json_string(uuid));
        bad |= put(body, "timestamp", json_integer((json_int_t)now_s));
        bad |= put(body, "event", jcut(v->name, WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(body, "severity", jcut(v->severity, 32, PUT_PLAIN));
        bad |= put(body, "pipeline", jcut(v->pipeline, WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(body, "run_id", jcut(v->run_id, 64, PUT_PLAIN));
        bad |= put(body, "time", jcut(v->time, 64, PUT_PLAIN));
        bad |= put(body, "summary", jcut(v->summary, WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(body, "command", jcut(v->command, WEBHOOK_MAX_FIELD, PUT_PLAIN));
        bad |= put(body, "orders_total", json_integer((json_int_t)v->n_orders));
        bad |= put(body, "orders", orders);
        orders = NULL;
        bad |= put(body, "details", details);
        details = NULL;
    }
    json_decref(orders);
    json_decref(details);
    if (bad) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* A Slack block {"type": type, "text": {"type": ttype, "text": text}}; the
 * text is stolen. New, or NULL. */
static json_t *slack_text_block(const char *type, const char *ttype, json_t *text)
{
    json_t *t = json_object();
    json_t *b = json_object();
    int bad = t == NULL || b == NULL;
    bad |= put(t, "type", json_string(ttype));
    bad |= put(t, "text", text);
    text = NULL;
    bad |= put(b, "type", json_string(type));
    bad |= put(b, "text", t);
    t = NULL;
    if (bad) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* A Slack context block with one mrkdwn element (stolen). New, or NULL. */
static json_t *slack_context(json_t *text)
{
    json_t *el = json_object();
    json_t *els = json_array();
    json_t *b = json_object();
    int bad = el == NULL || els == NULL || b == NULL;
    bad |= put(el, "type", json_string("mrkdwn"));
    bad |= put(el, "text", text);
    text = NULL;
    bad |= push(els, el);
    el = NULL;
    bad |= put(b, "type", json_string("context"));
    bad |= put(b, "elements", els);
    els = NULL;
    if (bad) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* slack: {"text": summary line, "blocks": [...]}, mrkdwn escaped. New. */
static json_t *slack_body(const struct event_view *v)
{
    json_t *body = json_object();
    json_t *blocks = json_array();
    struct mtext m;
    int bad = body == NULL || blocks == NULL;
    size_t shown = v->n_orders < WEBHOOK_CHAT_MAX_ORDERS ? v->n_orders : WEBHOOK_CHAT_MAX_ORDERS;

    /* Fallback text (notifications, clients without blocks). */
    bad = bad || mt_open(&m) != 0;
    if (!bad) {
        fprintf(m.f, "[%s] ", severity_label(v->severity));
        put_text(m.f, v->pipeline, WEBHOOK_MAX_CHAT_FIELD, PUT_MRKDWN);
        fputs(": ", m.f);
        put_text(m.f, v->summary, WEBHOOK_MAX_CHAT_FIELD, PUT_MRKDWN);
        bad |= put(body, "text", mt_json(&m));
    }

    /* Header: plain text, no markup. */
    bad = bad || mt_open(&m) != 0;
    if (!bad) {
        fputs("cpbridge ", m.f);
        put_text(m.f, v->pipeline, 60, PUT_PLAIN);
        fputs(": ", m.f);
        put_text(m.f, v->name, WEBHOOK_SLACK_HEADER_MAX - 70, PUT_PLAIN);
        bad |= push(blocks, slack_text_block("header", "plain_text", mt_json(&m)));
    }

    bad = bad || mt_open(&m) != 0;
    if (!bad) {
        fprintf(m.f, "*%s* ", severity_label(v->severity));
        put_text(m.f, v->summary, WEBHOOK_MAX_CHAT_FIELD, PUT_MRKDWN);
        bad |= push(blocks, slack_text_block("section", "mrkdwn", mt_json(&m)));
    }

    for (size_t i = 0; !bad && i < shown; i++) {
        const json_t *o = json_array_get(v->orders, i);
        char id[48];
        order_id_text(o, id, sizeof id);
        bad = mt_open(&m) != 0;
        if (bad) {
            break;
        }
        fputs("*Order ", m.f);
        put_text(m.f, id, sizeof id, PUT_MRKDWN);
        fputs("* (", m.f);
        put_text(m.f, stage_json_str(o, "source"), 100, PUT_MRKDWN);
        fputs(" ", m.f);
        put_text(m.f, stage_json_str(o, "external_id"), 100, PUT_MRKDWN);
        fputs(")", m.f);
        if (stage_json_str(o, "reason")[0] != '\0') {
            fputs("\n`", m.f);
            put_text(m.f, stage_json_str(o, "reason"), 100, PUT_CODE);
            fputs("` ", m.f);
        } else {
            fputs("\n", m.f);
        }
        put_text(m.f, stage_json_str(o, "message"), WEBHOOK_MAX_CHAT_FIELD, PUT_MRKDWN);
        if (stage_json_str(o, "command")[0] != '\0') {
            fputs("\n`", m.f);
            put_text(m.f, stage_json_str(o, "command"), WEBHOOK_MAX_CHAT_FIELD, PUT_CODE);
            fputs("`", m.f);
        }
        bad |= push(blocks, slack_text_block("section", "mrkdwn", mt_json(&m)));
    }
    if (!bad && v->n_orders > shown) {
        bad = mt_open(&m) != 0;
        if (!bad) {
            fprintf(m.f, "...and %zu more order(s)", v->n_orders - shown);
            bad |= push(blocks, slack_context(mt_json(&m)));
        }
    }
    for (size_t i = 0; !bad && i < v->n_details && i < WEBHOOK_CHAT_MAX_DETAILS; i++) {
        bad = mt_open(&m) != 0;
        if (!bad) {
            put_detail(m.f, json_array_get(v->details, i), WEBHOOK_MAX_CHAT_FIELD, PUT_MRKDWN);
            bad |= push(blocks, slack_text_block("section", "mrkdwn", mt_json(&m)));
        }
    }
    if (!bad && v->command[0] != '\0') {
        bad = mt_open(&m) != 0;
        if (!bad) {
            fputs("Next step: `", m.f);
            put_text(m.f, v->command, WEBHOOK_MAX_CHAT_FIELD, PUT_CODE);
            fputs("`", m.f);
            bad |= push(blocks, slack_text_block("section", "mrkdwn", mt_json(&m)));
        }
    }
    if (!bad) {
        bad = mt_open(&m) != 0;
        if (!bad) {
            fputs("pipeline ", m.f);
            put_text(m.f, v->pipeline, 100, PUT_MRKDWN);
            fputs(" | run ", m.f);
            put_text(m.f, v->run_id, 64, PUT_MRKDWN);
            fputs(" | ", m.f);
            put_text(m.f, v->time, 64, PUT_MRKDWN);
            bad |= push(blocks, slack_context(mt_json(&m)));
        }
    }
    if (!bad) {
        bad |= put(body, "blocks", blocks);
        blocks = NULL;
    }
    json_decref(blocks);
    if (bad) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* An Adaptive Card TextBlock with `text` (stolen) and optional styling
 * (NULL: none). New, or NULL. */
static json_t *card_text(json_t *text, const char *weight, const char *color, bool subtle,
                         bool mono)
{
    json_t *b = json_object();
    int bad = b == NULL;
    bad |= put(b, "type", json_string("TextBlock"));
    bad |= put(b, "text", text);
    text = NULL;
    bad |= put(b, "wrap", json_true());
    if (weight != NULL) {
        bad |= put(b, "weight", json_string(weight));
    }
    if (color != NULL) {
        bad |= put(b, "color", json_string(color));
    }
    if (subtle) {
        bad |= put(b, "isSubtle", json_true());
    }
    if (mono) {
        bad |= put(b, "fontType", json_string("Monospace"));
    }
    if (bad) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* A FactSet fact {"title", "value"}. New, or NULL. */
static json_t *card_fact(const char *title, const char *value)
{
    json_t *f = json_object();
    int bad = f == NULL;
    bad |= put(f, "title", json_string(title));
    bad |= put(f, "value", jcut(value, WEBHOOK_MAX_CHAT_FIELD, PUT_PLAIN));
    if (bad) {
        json_decref(f);
        return NULL;
    }
    return f;
}

/* The Adaptive Card's body elements. New array, or NULL. */
static json_t *teams_card_body(const struct event_view *v)
{
    json_t *items = json_array();
    json_t *facts = json_array();
    json_t *factset = json_object();
    struct mtext m;
    int bad = items == NULL || facts == NULL || factset == NULL;
    size_t shown = v->n_orders < WEBHOOK_CHAT_MAX_ORDERS ? v->n_orders : WEBHOOK_CHAT_MAX_ORDERS;
    const char *color = strcmp(v->severity, "critical") == 0  ? "Attention"
                        : strcmp(v->severity, "warning") == 0 ? "Warning"
                                                              : "Default";

    bad = bad || mt_open(&m) != 0;
    if (!bad) {
        fputs("cpbridge ", m.f);
        put_text(m.f, v->pipeline, 100, PUT_PLAIN);
        fputs(": ", m.f);
        put_text(m.f, v->name, 100, PUT_PLAIN);
        json_t *title = card_text(mt_json(&m), "Bolder", color, false, false);
        bad |= put(title, "size", json_string("Large"));
        bad |= push(items, title);
    }
    if (!bad) {
        bad |= push(items, card_text(jcut(v->summary, WEBHOOK_MAX_CHAT_FIELD, PUT_PLAIN), NULL,
                                     NULL, false, false));
        bad |= push(facts, card_fact("Severity", severity_label(v->severity)));
        bad |= push(facts, card_fact("Pipeline", v->pipeline));
        bad |= push(facts, card_fact("Event", v->name));
        bad |= push(facts, card_fact("Run", v->run_id));
        bad |= push(facts, card_fact("Time", v->time));
        bad |= put(factset, "type", json_string("FactSet"));
        bad |= put(factset, "facts", facts);
        facts = NULL;
        bad |= push(items, factset);
        factset = NULL;
    }
    for (size_t i = 0; !bad && i < shown; i++) {
        const json_t *o = json_array_get(v->orders, i);
        json_t *box = json_object();
        json_t *lines = json_array();
        char id[48];
        order_id_text(o, id, sizeof id);
        bad |= box == NULL || lines == NULL || mt_open(&m) != 0;
        if (!bad) {
            fputs("Order ", m.f);
            put_text(m.f, id, sizeof id, PUT_PLAIN);
            fputs(" (", m.f);
            put_text(m.f, stage_json_str(o, "source"), 100, PUT_PLAIN);
            fputs(" ", m.f);
            put_text(m.f, stage_json_str(o, "external_id"), 100, PUT_PLAIN);
            fputs(")", m.f);
            bad |= push(lines, card_text(mt_json(&m), "Bolder", NULL, false, false));
        }
        if (!bad) {
            bad = mt_open(&m) != 0;
        }
        if (!bad) {
            if (stage_json_str(o, "reason")[0] != '\0') {
                put_text(m.f, stage_json_str(o, "reason"), 100, PUT_PLAIN);
                fputs(": ", m.f);
            }
            put_text(m.f, stage_json_str(o, "message"), WEBHOOK_MAX_CHAT_FIELD, PUT_PLAIN);
            bad |= push(lines, card_text(mt_json(&m), NULL, NULL, false, false));
        }
        if (!bad && stage_json_str(o, "command")[0] != '\0') {
            bad |= push(lines, card_text(jcut(stage_json_str(o, "command"), WEBHOOK_MAX_CHAT_FIELD,
                                              PUT_PLAIN),
                                         NULL, NULL, true, true));
        }
        if (!bad) {
            bad |= put(box, "type", json_string("Container"));
            bad |= put(box, "separator", json_true());
            bad |= put(box, "items", lines);
            lines = NULL;
            bad |= push(items, box);
            box = NULL;
        }
        json_decref(lines);
        json_decref(box);
    }
    if (!bad && v->n_orders > shown) {
        bad = mt_open(&m) != 0;
        if (!bad) {
            fprintf(m.f, "...and %zu more order(s)", v->n_orders - shown);
            bad |= push(items, card_text(mt_json(&m), NULL, NULL, true, false));
        }
    }
    for (size_t i = 0; !bad && i < v->n_details && i < WEBHOOK_CHAT_MAX_DETAILS; i++) {
        bad = mt_open(&m) != 0;
        if (!bad) {
            put_detail(m.f, json_array_get(v->details, i), WEBHOOK_MAX_CHAT_FIELD, PUT_PLAIN);
            bad |= push(items, card_text(mt_json(&m), NULL, NULL, false, false));
        }
    }
    if (!bad && v->command[0] != '\0') {
        bad |= push(items, card_text(json_string("Next step:"), "Bolder", NULL, false, false));
        bad |= push(items, card_text(jcut(v->command, WEBHOOK_MAX_CHAT_FIELD, PUT_PLAIN), NULL,
                                     NULL, false, true));
    }
    json_decref(facts);
    json_decref(factset);
    if (bad) {
        json_decref(items);
        return NULL;
    }
    return items;
}

/* teams: a message with one Adaptive Card attachment. New, or NULL. */
static json_t *teams_body(const struct event_view *v)
{
    json_t *card_body = teams_card_body(v);
    if (card_body == NULL) {
        return NULL;
    }
    return json_pack("{s:s, s:[{s:s, s:n, s:{s:s, s:s, s:s, s:o, s:{s:s}}}]}", "type", "message",
                     "attachments", "contentType", "application/vnd.microsoft.card.adaptive",
                     "contentUrl", "content", "$schema",
                     "http://adaptivecards.io/schemas/adaptive-card.json", "type", "AdaptiveCard",
                     "version", "1.4", "body", card_body, "msteams", "width", "Full");
}

/* text: summary line, one line per order, next step. New string, or -1. */
static int text_body(const struct event_view *v, char **out, size_t *len)
{
    struct mtext m;
    size_t shown = v->n_orders < WEBHOOK_TEXT_MAX_ORDERS ? v->n_orders : WEBHOOK_TEXT_MAX_ORDERS;
    if (mt_open(&m) != 0) {
        return -1;
    }
    fprintf(m.f, "[%s] ", severity_label(v->severity));
    put_text(m.f, v->pipeline, 100, PUT_PLAIN);
    fputs(" ", m.f);
    put_text(m.f, v->name, 100, PUT_PLAIN);
    fputs(": ", m.f);
    put_text(m.f, v->summary, WEBHOOK_MAX_TEXT_FIELD * 2, PUT_PLAIN);
    for (size_t i = 0; i < shown; i++) {
        const json_t *o = json_array_get(v->orders, i);
        char id[48];
        order_id_text(o, id, sizeof id);
        fputs("\n- order ", m.f);
        put_text(m.f, id, sizeof id, PUT_PLAIN);
        fputs(" (", m.f);
        put_text(m.f, stage_json_str(o, "source"), 60, PUT_PLAIN);
        fputs(" ", m.f);
        put_text(m.f, stage_json_str(o, "external_id"), 60, PUT_PLAIN);
        fputs(")", m.f);
        if (stage_json_str(o, "reason")[0] != '\0') {
            fputs(" ", m.f);
            put_text(m.f, stage_json_str(o, "reason"), 60, PUT_PLAIN);
        }
        if (stage_json_str(o, "message")[0] != '\0') {
            fputs(": ", m.f);
            put_text(m.f, stage_json_str(o, "message"), WEBHOOK_MAX_TEXT_FIELD, PUT_PLAIN);
        }
    }
    if (v->n_orders > shown) {
        fprintf(m.f, "\n- and %zu more order(s)", v->n_orders - shown);
    }
    for (size_t i = 0; i < v->n_details && i < WEBHOOK_TEXT_MAX_DETAILS; i++) {
        fputs("\n- ", m.f);
        put_detail(m.f, json_array_get(v->details, i), WEBHOOK_MAX_TEXT_FIELD, PUT_PLAIN);
    }
    if (v->command[0] != '\0') {
        fputs("\nRun: ", m.f);
        put_text(m.f, v->command, WEBHOOK_MAX_TEXT_FIELD * 2, PUT_PLAIN);
    }
    return mt_take(&m, out, len);
}

/* The request body for the configured format: new string in *out (free()),
 * its length in *len. Returns 0, or -1 when out of memory. */
static int build_body(struct notify_webhook *w, const struct event_view *v, char **out, size_t *len)
{
    json_t *doc = NULL;
    switch (w->opts->format) {
    case WEBHOOK_TEXT:
        return text_body(v, out, len);
    case WEBHOOK_SLACK:
        doc = slack_body(v);
        break;
    case WEBHOOK_TEAMS:
        doc = teams_body(v);
        break;
    default:
        doc = generic_body(w, v);
        break;
    }
    if (doc == NULL) {
        return -1;
    }
    *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (*out == NULL) {
        return -1;
    }
    *len = strlen(*out);
    return 0;
}

/* ---- signing ------------------------------------------------------------ */

/* HMAC-SHA256 of body under key, as 64 lowercase hex digits into hex[65].
 * Returns 0 or -1. */
static int sign_body(const char *key, const char *body, size_t len, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    size_t key_len = strlen(key);
    if (key_len > INT_MAX) {
        return -1;
    }
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)body, len, md, &md_len) ==
            NULL ||
        md_len != 32) {
        return -1;
    }
    for (unsigned int i = 0; i < md_len; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[64] = '\0';
    return 0;
}

/* ---- init: checking the options ---------------------------------------- */

/* Report a setup failure: logged, and set as the reason the engine shows. */
static int init_error(struct notify_webhook *w, const char *fmt, ...) CPB_PRINTF(2, 3);
static int init_error(struct notify_webhook *w, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->host->log(w->ctx, CPB_LOG_ERROR, "%s", msg);
    w->host->reason(w->ctx, "webhook.config", "%s", msg);
    return -1;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* True when s[0..n) is an HTTP header name (RFC 9110 token). */
static bool is_token(const char *s, size_t n)
{
    if (n == 0 || n > WEBHOOK_MAX_HEADER_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Header names the stage sets itself (plus signature_header). */
static const char *const reserved_headers[] = {"Content-Type",
                                               "Content-Length",
                                               "Transfer-Encoding",
                                               "Host",
                                               "Expect",
                                               "X-Cpbridge-Event",
                                               NULL};

/* True when a header of this name likely carries a credential. */
static bool is_sensitive(const char *name, size_t n)
{
    static const char *const words[] = {"auth",   "key",       "token",   "secret", "pass",
                                        "cookie", "signature", "session", NULL};
    char lower[WEBHOOK_MAX_HEADER_NAME + 1];
    for (size_t i = 0; i < n && i < WEBHOOK_MAX_HEADER_NAME; i++) {
        char ch = name[i];
        lower[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    lower[n < WEBHOOK_MAX_HEADER_NAME ? n : WEBHOOK_MAX_HEADER_NAME] = '\0';
    for (size_t i = 0; words[i] != NULL; i++) {
        if (strstr(lower, words[i]) != NULL) {
            return true;
        }
    }
    return false;
}

/* Register a credential for masking in logs. Very short strings are left
 * alone: masking "1" everywhere would ruin every log line. */
static void redact_credential(struct notify_webhook *w, const char *s)
{
    if (strlen(s) >= WEBHOOK_MIN_REDACT) {
        w->host->redact(w->ctx, s);
    }
}

/* Check headers[i]; register credential-like values for redaction. Messages
 * never quote a header's value (it may be a credential). */
static int check_header(struct notify_webhook *w, size_t i, const char *h)
{
    size_t len = strlen(h);
    const char *colon = strchr(h, ':');
    if (len > WEBHOOK_MAX_HEADER) {
        return init_error(w, "headers[%zu] is longer than %d bytes", i, WEBHOOK_MAX_HEADER);
    }
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)h[k];
        if (ch == '\r' || ch == '\n') {
            return init_error(w,
                              "headers[%zu] contains a line break: each entry must be one "
                              "\"Name: value\" line",
                              i);
        }
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return init_error(w, "headers[%zu] contains a control character (byte 0x%02x)", i, ch);
        }
    }
    if (colon == NULL) {
        return init_error(w, "headers[%zu] has no colon: each entry must be a \"Name: value\" line",
                          i);
    }
    size_t name_len = (size_t)(colon - h);
    if (!is_token(h, name_len)) {
        return init_error(w,
                          "headers[%zu] does not start with a header name (letters, digits and "
                          "!#$%%&'*+-.^_`|~, 1 to %d of them, then a colon)",
                          i, WEBHOOK_MAX_HEADER_NAME);
    }
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    if (*value == '\0') {
        return init_error(w, "headers[%zu] (%.*s) has no value after the colon", i, (int)name_len,
                          h);
    }
    for (size_t k = 0; reserved_headers[k] != NULL; k++) {
        if (strlen(reserved_headers[k]) == name_len &&
            strncasecmp(h, reserved_headers[k], name_len) == 0) {
            return init_error(w, "headers[%zu] sets %.*s, which this stage sets itself", i,
                              (int)name_len, h);
        }
    }
    const char *sig = w->opts->signature_header;
    if (strlen(sig) == name_len && strncasecmp(h, sig, name_len) == 0) {
        return init_error(w, "headers[%zu] sets %.*s, the signature_header", i, (int)name_len, h);
    }
    if (is_sensitive(h, name_len)) {
        redact_credential(w, value);
        /* "Bearer abc...": the credential alone may show up too. */
        const char *last = strrchr(value, ' ');
        if (last != NULL) {
            redact_credential(w, last + 1);
        }
    }
    return 0;
}

/* Check the URL and keep its printable form (no user info, no query string,
 * no fragment) in w->safe_url. */
static int check_url(struct notify_webhook *w)
{
    const char *url = w->opts->url;
    const char *rest = NULL;
    if (strncasecmp(url, "https://", 8) == 0) {
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else {
        return init_error(w, "url must start with http:// or https://");
    }
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f) {
            return init_error(w,
                              "url contains a space or a control character (byte 0x%02x at "
                              "offset %zu); percent-encode it",
                              ch, (size_t)(p - url));
        }
    }
    size_t auth_len = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', auth_len);
    const char *host = at != NULL ? at + 1 : rest;
    size_t host_len = auth_len - (size_t)(host - rest);
    if (host_len == 0 || host[0] == ':') {
        return init_error(w, "url names no host");
    }
    if (at != NULL) {
        /* user:password in the URL: never shown. */
        char userinfo[512];
        size_t ui_len = (size_t)(at - rest);
        const char *colon = memchr(rest, ':', ui_len);
        if (colon != NULL && ui_len < sizeof userinfo) {
            size_t pw_len = ui_len - (size_t)(colon + 1 - rest);
            memcpy(userinfo, colon + 1, pw_len);
            userinfo[pw_len] = '\0';
            redact_credential(w, userinfo);
        }
    }
    size_t path_len = strcspn(host + host_len, "?#");
    int n = snprintf(w->safe_url, sizeof w->safe_url, "%.*s%.*s%.*s", (int)(rest - url), url,
                     (int)host_len, host, (int)path_len, host + host_len);
    if (n < 0 || (size_t)n >= sizeof w->safe_url) {
        memcpy(w->safe_url + sizeof w->safe_url - 4, "...", 4);
    }
    return 0;
}

static int notify_webhook_init(const struct cpb_host *host, struct cpb_ctx *ctx,
                               const void *options, void **state)
{
    struct notify_webhook *w = stage_state_new(host, ctx, sizeof *w, state);
    if (w == NULL) {
        return -1;
    }
    w->host = host;
    w->ctx = ctx;
    w->opts = options;
    const struct notify_webhook_opts *o = w->opts;

    if (o->secret != NULL) {
        host->redact(ctx, o->secret);
        if (strlen(o->secret) < WEBHOOK_MIN_SECRET) {
            host->log(ctx, CPB_LOG_WARN,
                      "the secret is shorter than %d bytes: receivers cannot rely on a short "
                      "key; use 32 random bytes (openssl rand -hex 32)",
                      WEBHOOK_MIN_SECRET);
        }
    }
    if (check_url(w) != 0) {
        return -1;
    }
    if (!is_token(o->signature_header, strlen(o->signature_header))) {
        return init_error(w, "signature_header must be a header name (letters, digits and "
                             "!#$%%&'*+-.^_`|~)");
    }
    for (size_t i = 0; o->headers != NULL && o->headers[i] != NULL; i++) {
        if (check_header(w, i, o->headers[i]) != 0) {
            return -1;
        }
        w->n_headers++;
    }
    if (o->ca_file != NULL && access(o->ca_file, R_OK) != 0) {
        return init_error(w, "ca_file %s cannot be read: %s", o->ca_file, strerror(errno));
    }
    /* Content-Type, event, custom headers, signature, NULL. */
    w->req_headers = calloc(w->n_headers + 4, sizeof *w->req_headers);
    if (w->req_headers == NULL) {
        return init_error(w, "out of memory");
    }
    host->log(ctx, CPB_LOG_DEBUG, "posting %s events to %s",
              notify_webhook_formats[o->format >= 0 && o->format <= WEBHOOK_TEXT ? o->format : 0],
              w->safe_url);
    return 0;
}

static void notify_webhook_fini(void *state)
{
    struct notify_webhook *w = state;
    if (w == NULL) {
        return;
    }
    free(w->req_headers);
    free(w);
}

/* ---- process ------------------------------------------------------------ */

/* True when s is safe to put in a header value as is. */
static bool is_plain_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Up to WEBHOOK_SNIPPET printable ASCII bytes of a response body, for the
 * reason message ("" for none, or for an HTML page). A receiver that echoes
 * the secret back does not get it into the message. */
static void body_snippet(const struct cpb_http_response *resp, const char *secret, char *out,
                         size_t n)
{
    size_t j = 0;
    size_t secret_len = secret != NULL ? strlen(secret) : 0;
    out[0] = '\0';
    if (resp->body == NULL || resp->body_len == 0 || n == 0) {
        return;
    }
    size_t start = strspn(resp->body, " \t\r\n");
    if (start < resp->body_len && resp->body[start] == '<') {
        return; /* an HTML error page says nothing useful in one line */
    }
    for (size_t i = start; i < resp->body_len && j + 1 < n; i++) {
        if (secret_len > 0 && resp->body_len - i >= secret_len &&
            memcmp(resp->body + i, secret, secret_len) == 0) {
            int k = snprintf(out + j, n - j, "********");
            if (k < 0 || (size_t)k >= n - j) {
                break;
            }
            j += (size_t)k;
            i += secret_len - 1;
            continue;
        }
        unsigned char ch = (unsigned char)resp->body[i];
        out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
    }
    while (j > 0 && out[j - 1] == ' ') {
        j--;
    }
    out[j] = '\0';
}

static enum cpb_status notify_webhook_process(void *state, struct cpb_record *rec)
{
    struct notify_webhook *w = state;
    const struct notify_webhook_opts *o = w->opts;
    struct cpb_http_response resp;
    struct cpb_http_request req;
    struct event_view v;
    enum cpb_status st = CPB_FAIL;
    char *body = NULL;
    size_t body_len = 0;
    char sig_line[WEBHOOK_MAX_HEADER_NAME + 80];
    char event_line[100];
    size_t nh = 0;
    const char *name = NULL;

    memset(&resp, 0, sizeof resp);
    if (rec == NULL || !json_is_object(rec->payload)) {
        w->host->reason(w->ctx, "webhook.bad_event", "the record holds no event object");
        goto out;
    }
    name = rec->event;
    if (name == NULL || name[0] == '\0') {
        name = stage_json_str(rec->payload, "event");
    }
    if (name[0] == '\0') {
        name = "event";
    }
    event_view_of(name, rec->payload, &v);
    if (build_body(w, &v, &body, &body_len) != 0) {
        w->host->reason(w->ctx, "webhook.oom", "out of memory building the %s message", name);
        st = CPB_RETRY;
        goto out;
    }

    w->req_headers[nh++] = o->format == WEBHOOK_TEXT ? "Content-Type: text/plain; charset=utf-8"
                                                     : "Content-Type: application/json";
    if (is_plain_name(name)) {
        snprintf(event_line, sizeof event_line, "X-Cpbridge-Event: %s", name);
        w->req_headers[nh++] = event_line;
    }
    for (size_t i = 0; i < w->n_headers; i++) {
        w->req_headers[nh++] = o->headers[i];
    }
    if (o->secret != NULL) {
        char hex[65];
        if (sign_body(o->secret, body, body_len, hex) != 0) {
            w->host->reason(w->ctx, "webhook.sign", "HMAC-SHA256 failed (OpenSSL)");
            st = CPB_RETRY;
            goto out;
        }
        snprintf(sig_line, sizeof sig_line, "%s: sha256=%s", o->signature_header, hex);
        w->req_headers[nh++] = sig_line;
    }
    w->req_headers[nh] = NULL;

    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.method = "POST";
    req.url = o->url;
    req.headers = w->req_headers;
    req.body = body;
    req.body_len = body_len;
    req.timeout_ms = (long)o->timeout_ms;
    req.connect_timeout_ms = o->timeout_ms < WEBHOOK_CONNECT_TIMEOUT_MS
                                 ? (long)o->timeout_ms
                                 : WEBHOOK_CONNECT_TIMEOUT_MS;
    req.max_tries = (unsigned)o->max_tries;
    req.tls_no_verify = o->tls_no_verify;
    req.ca_file = o->ca_file;

    st = w->host->http(w->ctx, &req, &resp);
    if (st == CPB_OK) {
        w->host->log(w->ctx, CPB_LOG_INFO, "sent %s to %s (HTTP %ld, %zu bytes)", name, w->safe_url,
                     resp.status, body_len);
        w->host->metric_add(w->ctx, "webhook_sent", 1);
        goto out;
    }
    w->host->metric_add(w->ctx, "webhook_failed", 1);
    const char *why = resp.error[0] != '\0' ? resp.error : "no response";
    if (st == CPB_RETRY || resp.status == 0) {
        w->host->reason(w->ctx, "webhook.unreachable",
                        "could not deliver %s to the webhook %s (max_tries %lld): %s", name,
                        w->safe_url, (long long)o->max_tries, why);
    } else {
        char snippet[WEBHOOK_SNIPPET + 1];
        body_snippet(&resp, o->secret, snippet, sizeof snippet);
        w->host->reason(w->ctx, "webhook.rejected",
                        "the webhook %s rejected %s: %s%s%s%s (check url, format, headers and "
                        "secret; not retried)",
                        w->safe_url, name, why, snippet[0] != '\0' ? "; it said \"" : "", snippet,
                        snippet[0] != '\0' ? "\"" : "");
    }
out:
    w->host->http_free(&resp);
    free(body);
    return st;
}

extern const struct cpb_stage notify_webhook_stage;
const struct cpb_stage notify_webhook_stage = {
    CPB_STAGE_HEADER,
    .name = "notify-webhook",
    .version = "1.0.0",
    .summary = "POST events to a webhook: generic JSON, Slack, Microsoft Teams or plain text "
               "(SMS), optionally signed with HMAC-SHA256.",
    .kind = CPB_NOTIFY,
    .options = notify_webhook_options,
    .options_size = sizeof(struct notify_webhook_opts),
    .init = notify_webhook_init,
    .process = notify_webhook_process,
    .fini = notify_webhook_fini,
};

CPB_STAGE_ENTRY(notify_webhook_stage);
