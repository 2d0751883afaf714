/*
 * notify-email — a notifier stage that mails cpbridge events (order.dead,
 * order.invalid, run.failed, ...) to people over SMTP, with libcurl.
 *
 * One message per event: RFC 5322 headers with CRLF line ends, a Subject
 * written as RFC 2047 encoded-words when it is not plain ASCII, and a
 * text/plain UTF-8 body in base64 that says what happened, lists the orders
 * (up to max_orders) with the command that inspects each, the details, and
 * the command to run first.
 *
 * Transport: smtp:// with STARTTLS required (unless turned off, which warns
 * on every run), or smtps:// with implicit TLS; certificates are verified
 * unless tls_no_verify (which warns). With a username and password the
 * stage refuses to send when the server's last EHLO offered no AUTH, since
 * libcurl would otherwise skip the login silently and mail unauthenticated.
 * A recipient the server refuses fails the whole message (libcurl's
 * ALLOWFAILS is not used): an alert reaches every recipient or none, and the
 * failure names the refused address.
 *
 * Outcomes: CPB_OK when the server accepted the message; CPB_RETRY for an
 * unreachable server, a timeout or a 4xx reply ("email.unreachable",
 * "email.temporary"); CPB_FAIL for a refused login, a 5xx reply, TLS
 * trouble or the AUTH refusal above ("email.auth", "email.rejected",
 * "email.recipient_rejected", "email.tls_verify", "email.tls",
 * "email.no_starttls", "email.no_auth").
 *
 * Everything in the event is untrusted text: control bytes are blanked,
 * values are cut on UTF-8 boundaries, and nothing from it reaches a header
 * unencoded. The password is registered for redaction and never written to
 * a log line or a reason; the SMTP conversation is never logged (AUTH
 * carries the credentials in base64, which redaction would not catch).
 */
#include <cpbridge/stage.h>

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "stage_util.h"

#define EMAIL_ADDR_MAX    254 /* RFC 5321 forward-path limit */
#define EMAIL_NAME_MAX    128 /* display name of a from/to entry */
#define EMAIL_HELO_MAX    253 /* a domain name */
#define EMAIL_FIELD_MAX   600 /* bytes of one event value in the body */
#define EMAIL_SUBJECT_MAX 400 /* bytes of the subject before encoding */
#define EMAIL_WORD_BYTES                                                                           \
    39                            /* raw bytes per encoded-word: 52 base64                         \
                                     characters, a 64-character word, so a                         \
                                     line stays within 76 characters */
#define EMAIL_LINE_MAX  78        /* RFC 5322 recommended line length */
#define EMAIL_B64_LINE  76        /* RFC 2045 base64 line length */
#define EMAIL_REPLY_MAX 240       /* bytes of a server reply kept for messages */
#define EMAIL_BODY_MAX  (8 << 20) /* a body larger than this is a bug */

enum { STARTTLS_REQUIRED = 0, STARTTLS_OFF = 1 };

static const char *const notify_email_starttls_choices[] = {"required", "off", NULL};

struct notify_email_options {
    const char *url;
    const char *helo;
    const char *from;
    const char *const *to;
    const char *username;
    const char *password;
    int starttls;
    const char *ca_file;
    bool tls_no_verify;
    int64_t timeout_ms;
    const char *subject_prefix;
    int64_t max_orders;
};

static const struct cpb_option notify_email_options_table[] = {
    {.name = "url",
     .type = CPB_OPT_STRING,
     .flags = CPB_OPT_REQUIRED,
     .min = 1,
     .max = 2048,
     .offset = offsetof(struct notify_email_options, url),
     .help = "The SMTP server: smtp://host:port (STARTTLS, usually port 587) or "
             "smtps://host:port (implicit TLS, usually 465); no path, no credentials."},
    {.name = "helo",
     .type = CPB_OPT_STRING,
     .min = 0,
     .max = EMAIL_HELO_MAX,
     .offset = offsetof(struct notify_email_options, helo),
     .help = "The domain name sent in EHLO and used in Message-ID; default: this machine's "
             "host name."},
    {.name = "from",
     .type = CPB_OPT_STRING,
     .flags = CPB_OPT_REQUIRED,
     .min = 3,
     .max = EMAIL_ADDR_MAX + EMAIL_NAME_MAX + 4,
     .offset = offsetof(struct notify_email_options, from),
     .help = "The sender: \"alerts@example.com\" or \"cpbridge alerts <alerts@example.com>\"."},
    {.name = "to",
     .type = CPB_OPT_LIST,
     .flags = CPB_OPT_REQUIRED,
     .min = 1,
     .max = 100,
     .offset = offsetof(struct notify_email_options, to),
     .help = "The recipients; the server must accept every one, or no one is mailed."},
    {.name = "username",
     .type = CPB_OPT_STRING,
     .min = 0,
     .max = 256,
     .offset = offsetof(struct notify_email_options, username),
     .help = "SMTP AUTH user, set together with password; the stage then refuses to send "
             "when the server offers no AUTH."},
    {.name = "password",
     .type = CPB_OPT_STRING,
     .flags = CPB_OPT_SECRET,
     .min = 0,
     .max = 1024,
     .offset = offsetof(struct notify_email_options, password),
     .help = "SMTP AUTH password; \"file:/path\" reads it from a file. Never logged."},
    {.name = "starttls",
     .type = CPB_OPT_ENUM,
     .default_value = "required",
     .choices = notify_email_starttls_choices,
     .offset = offsetof(struct notify_email_options, starttls),
     .help = "smtp:// only: required (STARTTLS or no mail) or off (plain text, warned about "
             "on every run); smtps:// is always TLS."},
    {.name = "ca_file",
     .type = CPB_OPT_STRING,
     .min = 0,
     .max = 4096,
     .offset = offsetof(struct notify_email_options, ca_file),
     .help = "CA bundle (PEM) that signed the server's certificate; default: the system's."},
    {.name = "tls_no_verify",
     .type = CPB_OPT_BOOL,
     .default_value = "false",
     .offset = offsetof(struct notify_email_options, tls_no_verify),
     .help = "Do not verify the server's certificate (test relays only; warned about on "
             "every run)."},
    {.name = "timeout",
     .type = CPB_OPT_DURATION,
     .default_value = "30s",
     .min = 1000,
     .max = 600000,
     .offset = offsetof(struct notify_email_options, timeout_ms),
     .help = "Time allowed for one message, connecting included."},
    {.name = "subject_prefix",
     .type = CPB_OPT_STRING,
     .default_value = "[cpbridge]",
     .min = 0,
     .max = 64,
     .offset = offsetof(struct notify_email_options, subject_prefix),
     .help = "Text put before every subject, for mail filters."},
    {.name = "max_orders",
     .type = CPB_OPT_INT,
     .default_value = "50",
     .min = 0,
     .max = 1000,
     .offset = offsetof(struct notify_email_options, max_orders),
     .help = "How many orders (and details) one message lists before \"... and N more\"."},
    {.name = NULL},
};

/* One stage instance. */
struct notify_email {
    const struct cpb_host *host;             /* borrowed until fini */
    struct cpb_ctx *ctx;                     /* borrowed until fini */
    const struct notify_email_options *opts; /* borrowed until fini */
    CURL *curl;                              /* owned; connects only in process */
    char *url;                               /* owned (curl_free): the URL with the
                                                EHLO name as its path */
    char server[300];                        /* "host:port" for messages */
    bool smtps;
    bool credentials; /* username and password are set */
    char helo[EMAIL_HELO_MAX + 1];
    char mail_from[EMAIL_ADDR_MAX + 3]; /* "<address>" for MAIL FROM */
    char from_header[EMAIL_ADDR_MAX + EMAIL_NAME_MAX + 8];
    struct curl_slist *rcpt;      /* owned: "<address>" per recipient */
    struct curl_slist *to_header; /* owned: header form per recipient */
    size_t n_rcpt;
};

/* What one transfer saw of the SMTP conversation (through the debug
 * callback) and the message it uploads. Lives on process()'s stack. */
struct session {
    struct notify_email *s;
    const char *data; /* the message; borrowed */
    size_t len;
    size_t pos;
    bool in_ehlo;      /* reading the reply to the last EHLO */
    bool auth_offered; /* the last EHLO reply listed AUTH */
    bool auth_sent;    /* an AUTH command followed the last EHLO */
    bool refused;      /* credentials set but the login did not happen */
    bool quitting;     /* QUIT sent: keep what the failure left behind */
    char last_cmd[12]; /* verb of the last command sent ("RCPT") */
    char last_rcpt[EMAIL_ADDR_MAX + 1];
    char last_reply[EMAIL_REPLY_MAX + 4];
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- text helpers -------------------------------------------------------- */

static bool is_blank(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/*
 * Copy untrusted `in` into out (n bytes, n >= 8): control bytes become
 * spaces, and text longer than n - 4 bytes is cut on a UTF-8 character
 * boundary and marked with "...". Returns out (borrowed from the caller).
 */
static const char *clean_text(const char *in, char *out, size_t n)
{
    size_t max = n - 4;
    size_t len = strlen(in);
    bool cut = false;
    if (len > max) {
        len = stage_utf8_floor(in, max);
        cut = true;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (cut) {
        memcpy(out + len, "...", 3);
        len += 3;
    }
    out[len] = '\0';
    return out;
}

static bool printable_ascii(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Copy `in` into out (n bytes) keeping only printable ASCII (others become
 * '?'), for server replies and config values in log lines and reasons. */
static const char *ascii_text(const char *in, size_t in_len, char *out, size_t n)
{
    size_t len = in_len < n - 1 ? in_len : n - 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[len] = '\0';
    return out;
}

/* Copy `in` into out (n bytes) as a header token: letters, digits, '.',
 * '_' and '-' kept, anything else becomes '_'. */
static const char *token_text(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < n; i++) {
        char c = in[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
    return out;
}

/* A JSON value as message text into out (n bytes): strings cleaned and cut,
 * numbers and booleans written out, objects and arrays as compact JSON, ""
 * when absent or null. `v` is borrowed. Returns out. */
static const char *value_text(json_t *v, char *out, size_t n)
{
    out[0] = '\0';
    if (json_is_string(v)) {
        clean_text(json_string_value(v), out, n);
    } else if (json_is_integer(v)) {
        snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(out, n, "%g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, n, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_object(v) || json_is_array(v)) {
        char *dump = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        if (dump != NULL) {
            clean_text(dump, out, n);
        }
        free(dump);
    }
    return out;
}

/* obj[key] as message text (see value_text); obj may be anything. */
static const char *field_text(json_t *obj, const char *key, char *out, size_t n)
{
    return value_text(json_is_object(obj) ? json_object_get(obj, key) : NULL, out, n);
}

static const char *or_unknown(const char *s)
{
    return s[0] != '\0' ? s : "(unknown)";
}

/* ---- configuration checks ------------------------------------------------ */

static bool addr_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("<>()[],;:\\\"", c) == NULL;
}

/*
 * Split `text` ("user@example.com" or "Display Name <user@example.com>")
 * into the bare address (addr, an bytes) and its header form (hdr, hn
 * bytes: the address, or "\"Display Name\" <address>"). Returns 0, or -1
 * with why (wn bytes).
 */
static int parse_address(const char *text, char *addr, size_t an, char *hdr, size_t hn, char *why,
                         size_t wn)
{
    const char *lt = strchr(text, '<');
    const char *a = text;
    const char *d = text;
    size_t alen = 0;
    size_t dlen = 0;
    const char *at = NULL;

    for (const char *p = text; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f) {
            snprintf(why, wn, "must be plain ASCII without control characters");
            return -1;
        }
    }
    if (lt != NULL) {
        const char *gt = strchr(lt, '>');
        if (gt == NULL || gt[1 + strspn(gt + 1, " ")] != '\0') {
            snprintf(why, wn, "has '<' without a closing '>' at the end");
            return -1;
        }
        a = lt + 1;
        alen = (size_t)(gt - a);
        d += strspn(d, " ");
        dlen = (size_t)(lt - d);
        while (dlen > 0 && d[dlen - 1] == ' ') {
            dlen--;
        }
        if (dlen > EMAIL_NAME_MAX) {
            snprintf(why, wn, "has a display name longer than %d bytes", EMAIL_NAME_MAX);
            return -1;
        }
        for (size_t i = 0; i < dlen; i++) {
            if (d[i] == '"' || d[i] == '\\' || d[i] == '>') {
                snprintf(why, wn, "has a display name with '\"', '\\' or '>'");
                return -1;
            }
        }
    } else {
        a += strspn(a, " ");
        alen = strlen(a);
        while (alen > 0 && a[alen - 1] == ' ') {
            alen--;
        }
    }
    for (size_t i = 0; i < alen; i++) {
        if (!addr_char((unsigned char)a[i])) {
            snprintf(why, wn,
                     "must be an address such as alerts@example.com (no spaces or any of "
                     "<>()[],;:\\\")");
            return -1;
        }
        if (a[i] == '@') {
            at = a + i;
        }
    }
    if (alen < 3 || alen > EMAIL_ADDR_MAX || at == NULL || at == a || at == a + alen - 1) {
        snprintf(why, wn, "must be an address such as alerts@example.com (3 to %d bytes)",
                 EMAIL_ADDR_MAX);
        return -1;
    }
    snprintf(addr, an, "%.*s", (int)alen, a);
    if (dlen > 0) {
        snprintf(hdr, hn, "\"%.*s\" <%s>", (int)dlen, d, addr);
    } else {
        snprintf(hdr, hn, "%s", addr);
    }
    return 0;
}

/* A domain name usable in EHLO, the URL path and Message-ID. */
static bool valid_helo(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > EMAIL_HELO_MAX || s[0] == '.' || s[0] == '-' || s[n - 1] == '.' ||
        s[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
        if (!ok || (c == '.' && s[i + 1] == '.')) {
            return false;
        }
    }
    return true;
}

static int set_helo(struct notify_email *s)
{
    char q[80];
    if (!is_blank(s->opts->helo)) {
        if (!valid_helo(s->opts->helo)) {
            s->host->log(s->ctx, CPB_LOG_ERROR,
                         "option 'helo' must be a domain name (letters, digits, '-' and '.'), "
                         "not \"%s\"",
                         ascii_text(s->opts->helo, strlen(s->opts->helo), q, sizeof q));
            return -1;
        }
        snprintf(s->helo, sizeof s->helo, "%s", s->opts->helo);
        return 0;
    }
    char name[EMAIL_HELO_MAX + 2];
    memset(name, 0, sizeof name);
    if (gethostname(name, sizeof name - 1) == 0 && valid_helo(name)) {
        snprintf(s->helo, sizeof s->helo, "%.*s", EMAIL_HELO_MAX, name);
        return 0;
    }
    snprintf(s->helo, sizeof s->helo, "localhost");
    s->host->log(s->ctx, CPB_LOG_WARN,
                 "this machine's host name is not usable in EHLO; sending \"localhost\" (set the "
                 "option helo to this machine's domain name; some servers refuse \"localhost\")");
    return 0;
}

/* Check the url option and build the URL handed to curl (EHLO name as path). */
static int build_url(struct notify_email *s)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *part = NULL;
    char *host = NULL;
    char *port = NULL;
    char path[EMAIL_HELO_MAX + 2];
    const char *why = NULL;
    char msg[200];
    CURLUcode uc;
    int rc = -1;

    if (u == NULL) {
        why = "could not be parsed: out of memory";
        goto out;
    }
    uc = curl_url_set(u, CURLUPART_URL, s->opts->url, 0);
    if (uc != CURLUE_OK) {
        snprintf(msg, sizeof msg, "is not a URL (%s); write smtp://host:port or smtps://host:port",
                 curl_url_strerror(uc));
        why = msg;
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)) {
        why = "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)";
        goto out;
    }
    s->smtps = strcmp(scheme, "smtps") == 0;
    if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
        why = "must not contain a user name or password: use the options username and password";
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PATH, &part, 0) == CURLUE_OK && strcmp(part, "/") != 0 &&
        part[0] != '\0') {
        why = "must not have a path: the EHLO name comes from the option helo";
        goto out;
    }
    curl_free(part);
    part = NULL;
    if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
        why = "must not have a query or a fragment";
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        why = "must name a host, as in smtp://mail.example.com:587";
        goto out;
    }
    snprintf(s->server, sizeof s->server, "%s:%s", host, port);
    snprintf(path, sizeof path, "/%s", s->helo);
    if (curl_url_set(u, CURLUPART_PATH, path, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &s->url, 0) != CURLUE_OK) {
        why = "could not be completed with the EHLO name";
        goto out;
    }
    rc = 0;
out:
    if (why != NULL) {
        s->host->log(s->ctx, CPB_LOG_ERROR, "option 'url' %s", why);
    }
    curl_free(port);
    curl_free(host);
    curl_free(part);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

static int set_addresses(struct notify_email *s)
{
    char addr[EMAIL_ADDR_MAX + 1];
    char hdr[EMAIL_ADDR_MAX + EMAIL_NAME_MAX + 8];
    char why[200];
    char q[120];
    if (parse_address(s->opts->from, addr, sizeof addr, s->from_header, sizeof s->from_header, why,
                      sizeof why) != 0) {
        s->host->log(s->ctx, CPB_LOG_ERROR, "option 'from' %s, not \"%s\"", why,
                     ascii_text(s->opts->from, strlen(s->opts->from), q, sizeof q));
        return -1;
    }
    snprintf(s->mail_from, sizeof s->mail_from, "<%s>", addr);
    for (size_t i = 0; s->opts->to != NULL && s->opts->to[i] != NULL; i++) {
        const char *t = s->opts->to[i];
        char angle[EMAIL_ADDR_MAX + 3];
        struct curl_slist *grown = NULL;
        if (parse_address(t, addr, sizeof addr, hdr, sizeof hdr, why, sizeof why) != 0) {
            s->host->log(s->ctx, CPB_LOG_ERROR, "option 'to' entry %zu %s, not \"%s\"", i + 1, why,
                         ascii_text(t, strlen(t), q, sizeof q));
            return -1;
        }
        snprintf(angle, sizeof angle, "<%s>", addr);
        grown = curl_slist_append(s->rcpt, angle);
        if (grown == NULL) {
            return -1;
        }
        s->rcpt = grown;
        grown = curl_slist_append(s->to_header, hdr);
        if (grown == NULL) {
            return -1;
        }
        s->to_header = grown;
        s->n_rcpt++;
    }
    if (s->n_rcpt == 0) {
        s->host->log(s->ctx, CPB_LOG_ERROR, "option 'to' must list at least one recipient");
        return -1;
    }
    return 0;
}

/* ---- the message ----------------------------------------------------------- */

static void put_date(FILE *f, int64_t ms)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    fprintf(f, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
            months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Whether a (cleaned) subject must be encoded: any byte outside ASCII, or
 * text a reader would take for an encoded-word. */
static bool needs_encoding(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80) {
            return true;
        }
    }
    return strstr(s, "=?") != NULL;
}

/* Subject as ASCII, folded at spaces to keep lines within 78 characters. */
static void put_subject_ascii(FILE *f, const char *subject)
{
    const char *p = subject;
    size_t col = strlen("Subject: ");
    fputs("Subject: ", f);
    while (*p != '\0') {
        size_t sp = strspn(p, " ");
        size_t w = strcspn(p + sp, " ");
        if (sp > 0 && col > strlen("Subject: ") && col + sp + w > EMAIL_LINE_MAX) {
            fputs("\r\n", f);
            col = 0;
        }
        fwrite(p, 1, sp + w, f);
        col += sp + w;
        p += sp + w;
    }
    fputs("\r\n", f);
}

/* Subject as RFC 2047 "B" encoded-words of at most EMAIL_WORD_BYTES bytes
 * each, split on whole UTF-8 characters, one word per line. */
static void put_subject_encoded(FILE *f, const char *subject)
{
    unsigned char word[4 * ((EMAIL_WORD_BYTES + 2) / 3) + 1];
    size_t len = strlen(subject);
    size_t pos = 0;
    fputs("Subject:", f);
    while (pos < len) {
        size_t end = pos + EMAIL_WORD_BYTES;
        if (end >= len) {
            end = len;
        } else {
            end = pos + stage_utf8_floor(subject + pos, end - pos);
            if (end == pos) {
                end = pos + EMAIL_WORD_BYTES; /* not UTF-8: cut anyway */
            }
        }
        EVP_EncodeBlock(word, (const unsigned char *)subject + pos, (int)(end - pos));
        fprintf(f, "%s=?UTF-8?B?%s?=", pos == 0 ? " " : "\r\n ", (const char *)word);
        pos = end;
    }
    fputs("\r\n", f);
}

static void put_to(FILE *f, const struct curl_slist *to)
{
    size_t col = strlen("To: ");
    fputs("To: ", f);
    for (const struct curl_slist *l = to; l != NULL; l = l->next) {
        size_t n = strlen(l->data);
        if (l != to) {
            fputc(',', f);
            col++;
            if (col + 1 + n > EMAIL_LINE_MAX) {
                fputs("\r\n ", f);
                col = 1;
            } else {
                fputc(' ', f);
                col++;
            }
        }
        fputs(l->data, f);
        col += n;
    }
    fputs("\r\n", f);
}

static void put_orders(struct notify_email *s, FILE *f, json_t *orders)
{
    size_t n = json_array_size(orders);
    size_t max = (size_t)s->opts->max_orders;
    char ext[EMAIL_FIELD_MAX];
    char id[64];
    char src[EMAIL_FIELD_MAX];
    char text[EMAIL_FIELD_MAX];
    if (n == 0) {
        return;
    }
    fprintf(f, "\r\nOrders (%zu):\r\n", n);
    for (size_t i = 0; i < n && i < max; i++) {
        json_t *o = json_array_get(orders, i);
        field_text(o, "external_id", ext, sizeof ext);
        field_text(o, "id", id, sizeof id);
        field_text(o, "source", src, sizeof src);
        fprintf(f, "  %zu. Order %s (staging id %s, source %s)\r\n", i + 1, or_unknown(ext),
                or_unknown(id), or_unknown(src));
        fprintf(f, "     Reason:  %s\r\n", or_unknown(field_text(o, "reason", text, sizeof text)));
        fprintf(f, "     Message: %s\r\n", or_unknown(field_text(o, "message", text, sizeof text)));
        if (field_text(o, "command", text, sizeof text)[0] != '\0') {
            fprintf(f, "     Inspect: %s\r\n", text);
        }
    }
    if (n > max) {
        fprintf(f, "  ... and %zu more; run the command above to see them all.\r\n", n - max);
    }
}

static void put_details(struct notify_email *s, FILE *f, json_t *details)
{
    size_t n = json_array_size(details);
    size_t max = (size_t)s->opts->max_orders;
    char text[EMAIL_FIELD_MAX];
    char key[64];
    if (n == 0) {
        return;
    }
    fprintf(f, "\r\nDetails (%zu):\r\n", n);
    for (size_t i = 0; i < n && i < max; i++) {
        json_t *d = json_array_get(details, i);
        const char *k;
        json_t *v;
        if (!json_is_object(d)) {
            fprintf(f, "  - %s\r\n", or_unknown(value_text(d, text, sizeof text)));
            continue;
        }
        fprintf(f, "  - Stage:   %s\r\n", or_unknown(field_text(d, "stage", text, sizeof text)));
        fprintf(f, "    Reason:  %s\r\n", or_unknown(field_text(d, "reason", text, sizeof text)));
        fprintf(f, "    Message: %s\r\n", or_unknown(field_text(d, "message", text, sizeof text)));
        json_object_foreach(d, k, v)
        {
            if (strcmp(k, "stage") == 0 || strcmp(k, "reason") == 0 || strcmp(k, "message") == 0) {
                continue;
            }
            fprintf(f, "    %s: %s\r\n", clean_text(k, key, sizeof key),
                    value_text(v, text, sizeof text));
        }
    }
    if (n > max) {
        fprintf(f, "  ... and %zu more.\r\n", n - max);
    }
}

/* The event's name: the record's, else the payload's. Into out. */
static const char *event_name(const struct cpb_record *rec, char *out, size_t n)
{
    if (rec->event != NULL && rec->event[0] != '\0') {
        return clean_text(rec->event, out, n);
    }
    field_text(rec->payload, "event", out, n);
    if (out[0] == '\0') {
        snprintf(out, n, "event");
    }
    return out;
}

/* The body text (CRLF line ends; base64-encoded by the caller). */
static void put_body(struct notify_email *s, FILE *f, const struct cpb_record *rec,
                     const char *event, const char *pipeline)
{
    json_t *ev = rec->payload;
    char text[EMAIL_FIELD_MAX];
    char run[128];
    fprintf(f, "What happened: %s\r\n\r\n",
            or_unknown(field_text(ev, "summary", text, sizeof text)));
    fprintf(f, "Event:    %s\r\n", event);
    fprintf(f, "Severity: %s\r\n", or_unknown(field_text(ev, "severity", text, sizeof text)));
    fprintf(f, "Pipeline: %s\r\n", pipeline);
    field_text(ev, "run_id", run, sizeof run);
    if (run[0] != '\0') {
        fprintf(f, "Run:      %s\r\n", run);
    }
    if (field_text(ev, "time", text, sizeof text)[0] != '\0') {
        /* The engine's times are UTC without a zone suffix: say so. */
        size_t tl = strlen(text);
        bool bare = text[tl - 1] >= '0' && text[tl - 1] <= '9';
        fprintf(f, "Time:     %s%s\r\n", text, bare ? " UTC" : "");
    }
    if (field_text(ev, "command", text, sizeof text)[0] != '\0') {
        fprintf(f, "\r\nRun this first:\r\n    %s\r\n", text);
    }
    put_orders(s, f, json_is_object(ev) ? json_object_get(ev, "orders") : NULL);
    put_details(s, f, json_is_object(ev) ? json_object_get(ev, "details") : NULL);
    fprintf(f, "\r\n-- \r\nSent by cpbridge (notifier '%s') for pipeline \"%s\"%s%s.\r\n",
            s->host->stage_id(s->ctx), pipeline, run[0] != '\0' ? ", run " : "", run);
}

/*
 * Build the whole message into *out (new, free()) and *out_len. Returns 0,
 * or -1 when out of memory (or the body would be absurdly large).
 */
static int build_message(struct notify_email *s, const struct cpb_record *rec, const char *event,
                         char **out, size_t *out_len)
{
    FILE *f = NULL;
    char *body = NULL;
    size_t body_len = 0;
    unsigned char *b64 = NULL;
    size_t b64_len = 0;
    char pipeline[128];
    char prefix[128];
    char summary[EMAIL_FIELD_MAX];
    char raw[EMAIL_FIELD_MAX + 300];
    char subject[EMAIL_SUBJECT_MAX + 4];
    char uuid[37];
    char token[80];
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    field_text(rec->payload, "pipeline", pipeline, sizeof pipeline);
    if (pipeline[0] == '\0') {
        const char *p = s->host->pipeline_name(s->ctx);
        clean_text(p != NULL ? p : "(unknown)", pipeline, sizeof pipeline);
    }

    /* The body first: it is base64-encoded into the message. */
    f = open_memstream(&body, &body_len);
    if (f == NULL) {
        goto out;
    }
    put_body(s, f, rec, event, pipeline);
    if (ferror(f) != 0) {
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    if (body_len > EMAIL_BODY_MAX) {
        goto out;
    }
    b64_len = 4 * ((body_len + 2) / 3);
    b64 = malloc(b64_len + 1);
    if (b64 == NULL) {
        goto out;
    }
    EVP_EncodeBlock(b64, (const unsigned char *)body, (int)body_len);

    /* Subject: "<prefix> <pipeline>: <summary>". */
    clean_text(s->opts->subject_prefix != NULL ? s->opts->subject_prefix : "", prefix,
               sizeof prefix);
    field_text(rec->payload, "summary", summary, sizeof summary);
    snprintf(raw, sizeof raw, "%s%s%s: %s", prefix, prefix[0] != '\0' ? " " : "", pipeline,
             summary[0] != '\0' ? summary : event);
    clean_text(raw, subject, sizeof subject);
    for (size_t len = strlen(subject); len > 0 && subject[len - 1] == ' '; len--) {
        subject[len - 1] = '\0'; /* no blank folded line at the end */
    }

    f = open_memstream(out, out_len);
    if (f == NULL) {
        goto out;
    }
    put_date(f, s->host->now_ms(s->ctx));
    fprintf(f, "From: %s\r\n", s->from_header);
    put_to(f, s->to_header);
    if (needs_encoding(subject)) {
        put_subject_encoded(f, subject);
    } else {
        put_subject_ascii(f, subject);
    }
    s->host->uuid(s->ctx, uuid);
    fprintf(f, "Message-ID: <%s@%s>\r\n", uuid, s->helo);
    fputs("MIME-Version: 1.0\r\n", f);
    fputs("Content-Type: text/plain; charset=UTF-8\r\n", f);
    fputs("Content-Transfer-Encoding: base64\r\n", f);
    fputs("Auto-Submitted: auto-generated\r\n", f);
    fprintf(f, "X-Cpbridge-Event: %s\r\n", token_text(event, token, sizeof token));
    field_text(rec->payload, "severity", raw, sizeof raw);
    if (raw[0] != '\0') {
        fprintf(f, "X-Cpbridge-Severity: %s\r\n", token_text(raw, token, sizeof token));
    }
    fputs("\r\n", f);
    for (size_t i = 0; i < b64_len; i += EMAIL_B64_LINE) {
        size_t n = b64_len - i < EMAIL_B64_LINE ? b64_len - i : EMAIL_B64_LINE;
        fwrite(b64 + i, 1, n, f);
        fputs("\r\n", f);
    }
    if (ferror(f) != 0) {
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f != NULL) {
        fclose(f);
    }
    if (rc != 0) {
        free(*out);
        *out = NULL;
        *out_len = 0;
    }
    free(b64);
    free(body);
    return rc;
}

/* ---- the SMTP conversation ------------------------------------------------- */

static bool starts_ci(const char *data, size_t size, const char *word)
{
    size_t n = strlen(word);
    return size >= n && strncasecmp(data, word, n) == 0;
}

/* A command curl sent. AUTH's arguments (credentials) are never kept. */
static void on_command(struct session *ss, const char *data, size_t size)
{
    size_t n = 0;
    if (ss->quitting) {
        return;
    }
    if (starts_ci(data, size, "QUIT")) {
        ss->quitting = true;
        return;
    }
    while (n < size && n + 1 < sizeof ss->last_cmd &&
           ((data[n] >= 'A' && data[n] <= 'Z') || (data[n] >= 'a' && data[n] <= 'z'))) {
        ss->last_cmd[n] = data[n];
        n++;
    }
    ss->last_cmd[n] = '\0';
    if (starts_ci(data, size, "EHLO ") || starts_ci(data, size, "HELO ")) {
        ss->in_ehlo = starts_ci(data, size, "EHLO ");
        ss->auth_offered = false;
        ss->auth_sent = false;
    } else if (starts_ci(data, size, "AUTH ")) {
        ss->auth_sent = true;
    } else if (starts_ci(data, size, "MAIL FROM:")) {
        if (ss->s->credentials && (!ss->auth_offered || !ss->auth_sent)) {
            ss->refused = true;
        }
    } else if (starts_ci(data, size, "RCPT TO:")) {
        const char *lt = memchr(data, '<', size);
        const char *gt = lt != NULL ? memchr(lt, '>', size - (size_t)(lt - data)) : NULL;
        if (lt != NULL && gt != NULL) {
            ascii_text(lt + 1, (size_t)(gt - lt - 1), ss->last_rcpt, sizeof ss->last_rcpt);
        }
    }
}

/* One reply line from the server (with or without its CRLF). */
static void on_reply_line(struct session *ss, const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        len--;
    }
    if (len == 0 || ss->quitting) {
        return;
    }
    ascii_text(line, len > EMAIL_REPLY_MAX ? EMAIL_REPLY_MAX : len, ss->last_reply,
               sizeof ss->last_reply);
    if (!ss->in_ehlo) {
        return;
    }
    if (len >= 9 && line[0] == '2' && strncasecmp(line + 4, "AUTH", 4) == 0 &&
        (line[8] == ' ' || line[8] == '=')) {
        ss->auth_offered = true;
    }
    if (len < 4 || line[3] != '-') {
        ss->in_ehlo = false;
    }
}

static int on_debug(CURL *handle, curl_infotype type, char *data, size_t size, void *userp)
{
    struct session *ss = userp;
    (void)handle;
    if (type == CURLINFO_HEADER_OUT) {
        on_command(ss, data, size);
    } else if (type == CURLINFO_HEADER_IN) {
        size_t start = 0;
        for (size_t i = 0; i < size; i++) {
            if (data[i] == '\n') {
                on_reply_line(ss, data + start, i + 1 - start);
                start = i + 1;
            }
        }
        if (start < size) {
            on_reply_line(ss, data + start, size - start);
        }
    }
    return 0;
}

/* Stops the transfer as soon as the refusal is known (after MAIL FROM). */
static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct session *ss = userp;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return ss->refused ? 1 : 0;
}

/* Feeds the message after DATA; aborts it when the login did not happen. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *userp)
{
    struct session *ss = userp;
    size_t room = size * nitems;
    size_t left = ss->len - ss->pos;
    if (ss->s->credentials && (!ss->auth_offered || !ss->auth_sent)) {
        ss->refused = true;
    }
    if (ss->refused) {
        return CURL_READFUNC_ABORT;
    }
    if (left > room) {
        left = room;
    }
    memcpy(buf, ss->data + ss->pos, left);
    ss->pos += left;
    return left;
}

/* The reply code of the last reply line, or 0. */
static long reply_code(const struct session *ss)
{
    const char *r = ss->last_reply;
    if (r[0] >= '1' && r[0] <= '5' && r[1] >= '0' && r[1] <= '9' && r[2] >= '0' && r[2] <= '9') {
        return (r[0] - '0') * 100 + (r[1] - '0') * 10 + (r[2] - '0');
    }
    return 0;
}

/* What went wrong, in the server's words if it said something. */
static const char *said(const struct session *ss, CURLcode rc)
{
    if (ss->last_reply[0] != '\0') {
        return ss->last_reply;
    }
    return ss->errbuf[0] != '\0' ? ss->errbuf : curl_easy_strerror(rc);
}

static enum cpb_status classify(struct notify_email *s, const struct session *ss, CURLcode rc,
                                long code)
{
    const struct cpb_host *h = s->host;
    const char *curl_msg = ss->errbuf[0] != '\0' ? ss->errbuf : curl_easy_strerror(rc);
    char user[80];

    if (reply_code(ss) != 0) {
        code = reply_code(ss); /* the reply that ended the exchange */
    }
    if (ss->refused) {
        h->reason(s->ctx, "email.no_auth",
                  "refused to send: a username and password are configured but %s offered no "
                  "AUTH after %s, so the mail would go out unauthenticated; check url and "
                  "starttls (most servers offer AUTH only after STARTTLS or on smtps://), or "
                  "remove username and password for a relay that needs no login",
                  s->server, s->smtps ? "connecting" : "its last EHLO");
        return CPB_FAIL;
    }
    switch (rc) {
    case CURLE_OK:
        return CPB_OK;
    case CURLE_LOGIN_DENIED:
        ascii_text(s->opts->username, strlen(s->opts->username), user, sizeof user);
        if (code >= 400 && code < 500) {
            h->reason(s->ctx, "email.temporary",
                      "%s could not log in user \"%s\" for now: %s; tried again later", s->server,
                      user, said(ss, rc));
            return CPB_RETRY;
        }
        h->reason(s->ctx, "email.auth",
                  "%s refused the login of user \"%s\": %s; check username and password", s->server,
                  user, said(ss, rc));
        return CPB_FAIL;
    case CURLE_PEER_FAILED_VERIFICATION:
        h->reason(s->ctx, "email.tls_verify",
                  "TLS certificate verification of %s failed: %s; set ca_file to the CA that "
                  "signed the server's certificate (tls_no_verify = true only for a test relay)",
                  s->server, curl_msg);
        return CPB_FAIL;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        h->reason(s->ctx, "email.tls_verify",
                  "cannot verify %s: the CA file could not be used (%s); check ca_file", s->server,
                  curl_msg);
        return CPB_FAIL;
    case CURLE_USE_SSL_FAILED:
        h->reason(s->ctx, "email.no_starttls",
                  "%s does not offer STARTTLS, and starttls is required: use smtps:// if the port "
                  "speaks implicit TLS, or starttls = \"off\" only for a relay on a trusted "
                  "network",
                  s->server);
        return CPB_FAIL;
    case CURLE_SSL_CONNECT_ERROR:
        h->reason(s->ctx, "email.tls",
                  "the TLS handshake with %s failed: %s; check that the port matches the scheme "
                  "(smtps:// is implicit TLS, usually 465; smtp:// with STARTTLS, usually 587)",
                  s->server, curl_msg);
        return CPB_FAIL;
    case CURLE_OPERATION_TIMEDOUT:
        h->reason(s->ctx, "email.unreachable",
                  "%s did not answer within %lld ms (%s); tried again later", s->server,
                  (long long)s->opts->timeout_ms, curl_msg);
        return CPB_RETRY;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        h->reason(s->ctx, "email.unreachable", "cannot reach %s: %s; tried again later", s->server,
                  curl_msg);
        return CPB_RETRY;
    default:
        break;
    }
    if (code >= 400 && code < 500) {
        if (strcasecmp(ss->last_cmd, "RCPT") == 0) {
            h->reason(s->ctx, "email.temporary",
                      "%s deferred recipient <%s>: %s; no one was mailed, tried again later",
                      s->server, ss->last_rcpt, said(ss, rc));
        } else {
            h->reason(s->ctx, "email.temporary",
                      "%s answered %s with a temporary failure: %s; tried again later", s->server,
                      ss->last_cmd[0] != '\0' ? ss->last_cmd : "the connection", said(ss, rc));
        }
        return CPB_RETRY;
    }
    if (code >= 500 && code < 600) {
        if (strcasecmp(ss->last_cmd, "RCPT") == 0) {
            h->reason(s->ctx, "email.recipient_rejected",
                      "%s refused recipient <%s>: %s; no one was mailed (a message goes to every "
                      "recipient or to none): fix or remove that address in 'to'",
                      s->server, ss->last_rcpt, said(ss, rc));
        } else {
            h->reason(s->ctx, "email.rejected", "%s refused %s: %s%s", s->server,
                      ss->last_cmd[0] != '\0' ? ss->last_cmd : "the message", said(ss, rc),
                      code == 530 ? " (the server wants STARTTLS or a login first: see starttls, "
                                    "username and password)"
                                  : "");
        }
        return CPB_FAIL;
    }
    if (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
        rc == CURLE_WEIRD_SERVER_REPLY) {
        h->reason(s->ctx, "email.unreachable", "the connection to %s failed: %s; tried again later",
                  s->server, curl_msg);
        return CPB_RETRY;
    }
    h->reason(s->ctx, "email.failed", "mail to %s failed: %s (libcurl error %d)", s->server,
              curl_msg, (int)rc);
    return CPB_FAIL;
}

/* ---- the stage --------------------------------------------------------------- */

/* Set up one instance: check the options, build the URL and the address
 * lists, create the curl handle (no connection yet). `host`, `ctx` and
 * `options` are borrowed until fini; *state is new (released by fini, also
 * after a failed init). */
static int notify_email_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                             void **state)
{
    struct notify_email *s = stage_state_new(host, ctx, sizeof *s, state);
    const struct notify_email_options *o = options;
    if (s == NULL) {
        return -1;
    }
    s->host = host;
    s->ctx = ctx;
    s->opts = o;
    if (!is_blank(o->password)) {
        host->redact(ctx, o->password);
    }
    if (is_blank(o->username) != is_blank(o->password)) {
        host->log(ctx, CPB_LOG_ERROR,
                  "options username and password go together: set both (SMTP AUTH) or neither "
                  "(a relay that needs no login)");
        return -1;
    }
    s->credentials = !is_blank(o->username);
    if (s->credentials && !printable_ascii(o->username)) {
        host->log(ctx, CPB_LOG_ERROR, "option 'username' must be printable ASCII");
        return -1;
    }
    if (set_helo(s) != 0 || build_url(s) != 0 || set_addresses(s) != 0) {
        return -1;
    }
    if (!is_blank(o->ca_file) && access(o->ca_file, R_OK) != 0) {
        char q[300];
        host->log(ctx, CPB_LOG_ERROR, "option 'ca_file': cannot read %s: %s",
                  ascii_text(o->ca_file, strlen(o->ca_file), q, sizeof q), strerror(errno));
        return -1;
    }
    if (!s->smtps && o->starttls == STARTTLS_OFF) {
        host->log(ctx, CPB_LOG_WARN,
                  "starttls = \"off\": mail to %s travels unencrypted%s; use this only for a "
                  "relay on this machine or a trusted network",
                  s->server, s->credentials ? ", and so would the password" : "");
    }
    if (o->tls_no_verify) {
        host->log(ctx, CPB_LOG_WARN,
                  "tls_no_verify = true: the certificate of %s is not verified; anyone on the "
                  "path could read the alerts%s",
                  s->server, s->credentials ? " and the password" : "");
    }
    s->curl = curl_easy_init();
    if (s->curl == NULL) {
        host->log(ctx, CPB_LOG_ERROR, "could not create a libcurl handle (out of memory?)");
        return -1;
    }
    return 0;
}

/* Mail one event. `state` is borrowed; `rec` is borrowed for the call. */
static enum cpb_status notify_email_process(void *state, struct cpb_record *rec)
{
    struct notify_email *s = state;
    const struct notify_email_options *o = s->opts;
    struct session ss;
    char event[128];
    char *msg = NULL;
    size_t msg_len = 0;
    enum cpb_status st = CPB_RETRY;
    CURLcode rc;
    long code = 0;
    int bad = 0;

    memset(&ss, 0, sizeof ss);
    ss.s = s;
    event_name(rec, event, sizeof event);
    if (build_message(s, rec, event, &msg, &msg_len) != 0) {
        s->host->reason(s->ctx, "email.internal",
                        "could not build the message for %s (out of "
                        "memory)",
                        event);
        goto out;
    }
    ss.data = msg;
    ss.len = msg_len;

    curl_easy_reset(s->curl);
    bad += curl_easy_setopt(s->curl, CURLOPT_URL, s->url) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad += curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps") != CURLE_OK;
#else
    bad += curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS)) !=
           CURLE_OK;
#endif
    bad += curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, ss.errbuf) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_MAIL_FROM, s->mail_from) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, s->rcpt) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_UPLOAD, 1L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg_len) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_READFUNCTION, on_read) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_READDATA, &ss) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_VERBOSE, 1L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_DEBUGFUNCTION, on_debug) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_DEBUGDATA, &ss) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK;
    bad += curl_easy_setopt(s->curl, CURLOPT_XFERINFODATA, &ss) != CURLE_OK;
    if (!s->smtps) {
        long use_ssl = o->starttls == STARTTLS_OFF ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL;
        bad += curl_easy_setopt(s->curl, CURLOPT_USE_SSL, use_ssl) != CURLE_OK;
    }
    if (!is_blank(o->ca_file)) {
        bad += curl_easy_setopt(s->curl, CURLOPT_CAINFO, o->ca_file) != CURLE_OK;
    }
    if (o->tls_no_verify) {
        bad += curl_easy_setopt(s->curl, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad += curl_easy_setopt(s->curl, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (s->credentials) {
        bad += curl_easy_setopt(s->curl, CURLOPT_USERNAME, o->username) != CURLE_OK;
        bad += curl_easy_setopt(s->curl, CURLOPT_PASSWORD, o->password) != CURLE_OK;
    }
    if (bad != 0) {
        s->host->reason(s->ctx, "email.internal",
                        "libcurl %s refused %d of the options this stage sets", curl_version(),
                        bad);
        st = CPB_FAIL;
        goto out;
    }

    rc = curl_easy_perform(s->curl);
    if (curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) {
        code = 0;
    }
    st = classify(s, &ss, rc, code);
    if (st == CPB_OK) {
        s->host->log(s->ctx, CPB_LOG_INFO, "mailed %s to %zu recipient(s) through %s", event,
                     s->n_rcpt, s->server);
    }
out:
    if (s->curl != NULL) {
        /* Drop the pointers into this stack frame. */
        curl_easy_reset(s->curl);
    }
    free(msg);
    return st;
}

/* Release an instance; accepts NULL and a half-built state (takes
 * ownership of `state`). */
static void notify_email_fini(void *state)
{
    struct notify_email *s = state;
    if (s == NULL) {
        return;
    }
    if (s->curl != NULL) {
        curl_easy_cleanup(s->curl);
    }
    curl_slist_free_all(s->rcpt);
    curl_slist_free_all(s->to_header);
    curl_free(s->url);
    free(s);
}

/* The descriptor (static; borrowed by the loader and by static builds). */
extern const struct cpb_stage notify_email_stage;
const struct cpb_stage notify_email_stage = {
    CPB_STAGE_HEADER,
    .name = "notify-email",
    .version = "1.0.0",
    .summary = "Mail events to people over SMTP (STARTTLS, SMTPS, AUTH) with the commands to "
               "run.",
    .kind = CPB_NOTIFY,
    .options = notify_email_options_table,
    .options_size = sizeof(struct notify_email_options),
    .init = notify_email_init,
    .process = notify_email_process,
    .fini = notify_email_fini,
};

CPB_STAGE_ENTRY(notify_email_stage);
