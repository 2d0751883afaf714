/*
 * test_notify_email.c — the notify-email stage (plugins/notify-email), linked
 * in statically and driven through the real host (host_ctx_new, options
 * filled from libconfig text by options_fill), against real SMTP receivers
 * (tests/servers/smtpd.py on aiosmtpd): the message checked byte by byte
 * and by Python's email parser, STARTTLS with AUTH, SMTPS, the refusals
 * (no STARTTLS, 530 before STARTTLS, a wrong password, no AUTH offered, 550
 * and 451 recipients, a self-signed certificate), a server that is down or
 * silent, truncation of long order lists, hostile event text, option
 * checks, and that the password never reaches a log line or a reason.
 */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cpbserver.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/options.h"
#include "services/log.h"

extern const struct cpb_stage notify_email_stage;

#define PASSWORD "s3cret-Pa55-w0rd"
#define RUN_ID   "7d0c3a52-1f1e-4c55-9a43-2b8e6a1c9f00"
#define CMD      "cpbridge dlq /etc/cpbridge/orders.cfg list"

static struct cpbserver plain_srv;  /* no TLS; 550 and 451 recipients */
static struct cpbserver secure_srv; /* STARTTLS and AUTH required */
static struct cpbserver noauth_srv; /* STARTTLS, never offers AUTH */
static struct cpbserver smtps_srv;  /* implicit TLS, AUTH required */
static char cert[600];
static char pwfile[600];
static FILE *log_file;

/* ---- the stage through the real host ------------------------------------- */

struct run {
    config_t cfg;
    bool cfg_ready;
    void *opts;
    struct opt_store *store;
    struct host_env env;
    struct cpb_ctx *ctx;
    void *state;
    bool inited;
    struct err err;
};

/* Fill options from `fmt` (the inside of an options group) and init the
 * stage. Returns 0, -1 when options_fill refused (r->err), -2 when init
 * refused. Always close with run_close. */
static int run_open(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_open(struct run *r, const char *fmt, ...)
{
    char inner[3000];
    char text[3200];
    va_list ap;
    memset(r, 0, sizeof *r);
    va_start(ap, fmt);
    int n = vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof inner);
    snprintf(text, sizeof text, "options = { %s };", inner);
    config_init(&r->cfg);
    r->cfg_ready = true;
    if (config_read_string(&r->cfg, text) != CONFIG_TRUE) {
        fprintf(stderr, "\n  bad test config: %s: %s\n", text, config_error_text(&r->cfg));
        CU_FAIL_FATAL("test config does not parse");
    }
    r->opts = calloc(1, notify_email_stage.options_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->opts);
    if (options_fill(notify_email_stage.options, config_lookup(&r->cfg, "options"), r->opts,
                     &r->store, "stage 'mail'", &r->err) != 0) {
        return -1;
    }
    r->env.pipeline = "orders";
    r->ctx = host_ctx_new("mail", &r->env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->ctx);
    r->inited = true;
    if (notify_email_stage.init(host_services(), r->ctx, r->opts, &r->state) != 0) {
        return -2;
    }
    return 0;
}

static enum cpb_status run_send(struct run *r, json_t *event)
{
    struct cpb_record rec = {.size = sizeof rec,
                             .event = json_string_value(json_object_get(event, "event")),
                             .payload = event};
    host_reason_clear(r->ctx);
    return notify_email_stage.process(r->state, &rec);
}

static const char *run_code(struct run *r)
{
    return host_reason_code(r->ctx);
}

static const char *run_msg(struct run *r)
{
    return host_reason_message(r->ctx);
}

static void run_close(struct run *r)
{
    if (r->inited) {
        notify_email_stage.fini(r->state);
    }
    host_ctx_free(r->ctx);
    opt_store_free(r->store);
    if (r->cfg_ready) {
        config_destroy(&r->cfg);
    }
    free(r->opts);
    memset(r, 0, sizeof *r);
}

/* Open, send one event, close; returns the status and copies the reason. */
static enum cpb_status send_one(json_t *event, char *code, size_t cn, char *msg, size_t mn,
                                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum cpb_status send_one(json_t *event, char *code, size_t cn, char *msg, size_t mn,
                                const char *fmt, ...)
{
    struct run r;
    char inner[3000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof inner);
    int rc = run_open(&r, "%s", inner);
    if (rc != 0) {
        fprintf(stderr, "\n  run_open: %d %s\n", rc, r.err.msg);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    enum cpb_status st = run_send(&r, event);
    snprintf(code, cn, "%s", run_code(&r));
    snprintf(msg, mn, "%s", run_msg(&r));
    if (st != CPB_OK) {
        fprintf(stderr, "\n  [%d] %s: %s\n", (int)st, code, msg);
    }
    run_close(&r);
    return st;
}

/* ---- events ----------------------------------------------------------------- */

static json_t *make_event(const char *name, const char *summary, int n_orders)
{
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:[]}", "event", name, "severity",
                  "critical", "pipeline", "orders", "run_id", RUN_ID, "time",
                  "2024-05-01T10:00:00Z", "summary", summary, "command", CMD, "orders", "details");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    for (int i = 0; i < n_orders; i++) {
        char ext[32];
        char msg[120];
        char cmd[120];
        snprintf(ext, sizeof ext, "W%d", 5001 + i);
        snprintf(msg, sizeof msg, "line 1: item SKU-%d is not in IM_ITEM", 900 + i);
        snprintf(cmd, sizeof cmd, "cpbridge orders /etc/cpbridge/orders.cfg show %d", 101 + i);
        json_array_append_new(json_object_get(ev, "orders"),
                              json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "id", 101 + i, "source",
                                        "woo", "external_id", ext, "reason", "item.unknown",
                                        "message", msg, "command", cmd));
    }
    json_array_append_new(json_object_get(ev, "details"),
                          json_pack("{s:s, s:s, s:s, s:i}", "stage", "validate", "reason",
                                    "price.mismatch", "message",
                                    "price of SKU-42 differs from IM_PRC", "lines", 3));
    return ev;
}

/* ---- what the receiver saved -------------------------------------------------- */

static int msg_count(const struct cpbserver *srv)
{
    DIR *d = opendir(srv->dir);
    struct dirent *ent;
    int n = 0;
    if (d == NULL) {
        return -1;
    }
    for (ent = readdir(d); ent != NULL; ent = readdir(d)) {
        size_t len = strlen(ent->d_name);
        if (len > 4 && strcmp(ent->d_name + len - 4, ".eml") == 0 && ent->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

static const char *msg_file(const struct cpbserver *srv, int n, const char *ext)
{
    static char path[4][700];
    static unsigned next;
    char *p = path[next++ % 4];
    snprintf(p, 700, "%s/%04d.%s", srv->dir, n, ext);
    return p;
}

/* Message n's envelope (new reference); waits briefly for the file. */
static json_t *envelope(const struct cpbserver *srv, int n)
{
    json_error_t jerr;
    for (int i = 0; i < 150; i++) {
        if (access(msg_file(srv, n, "json"), R_OK) == 0) {
            break;
        }
        usleep(20000);
    }
    json_t *env = json_load_file(msg_file(srv, n, "json"), 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    return env;
}

static bool env_has_rcpt(json_t *env, const char *addr)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(env, "rcpt_tos"), i, v)
    {
        if (strcmp(json_string_value(v), addr) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- parsing a saved message in C ------------------------------------------- */

struct eml {
    char *raw;
    size_t len;
    char *name[64];
    char *value[64]; /* unfolded */
    size_t n;
    size_t longest_header_line;
    const char *body; /* into raw */
};

static void eml_free(struct eml *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->name[i]);
        free(m->value[i]);
    }
    free(m->raw);
    memset(m, 0, sizeof *m);
}

/* Every LF preceded by CR, every CR followed by LF. */
static bool crlf_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
            return false;
        }
        if (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n')) {
            return false;
        }
    }
    return true;
}

static void eml_load(struct eml *m, const char *path)
{
    memset(m, 0, sizeof *m);
    m->raw = cpbtest_slurp(path, &m->len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m->raw);
    CU_ASSERT_EQUAL_FATAL(strlen(m->raw), m->len); /* no NUL bytes */
    char *end = strstr(m->raw, "\r\n\r\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(end);
    m->body = end + 4;
    const char *p = m->raw;
    while (p < end + 2) {
        const char *eol = strstr(p, "\r\n");
        size_t len = (size_t)(eol - p);
        if (len > m->longest_header_line) {
            m->longest_header_line = len;
        }
        if (p[0] == ' ' || p[0] == '\t') {
            CU_ASSERT_FATAL(m->n > 0);
            char *old = m->value[m->n - 1];
            size_t ol = strlen(old);
            char *grown = realloc(old, ol + len + 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(grown);
            memcpy(grown + ol, p, len);
            grown[ol + len] = '\0';
            m->value[m->n - 1] = grown;
        } else {
            const char *colon = memchr(p, ':', len);
            CU_ASSERT_PTR_NOT_NULL_FATAL(colon);
            CU_ASSERT_FATAL(m->n < 64);
            m->name[m->n] = strndup(p, (size_t)(colon - p));
            const char *v = colon + 1;
            v += (*v == ' ');
            m->value[m->n] = strndup(v, (size_t)(eol - v));
            m->n++;
        }
        p = eol + 2;
    }
}

static const char *hdr(const struct eml *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcasecmp(m->name[i], name) == 0) {
            return m->value[i];
        }
    }
    return NULL;
}

static int hdr_count(const struct eml *m, const char *name)
{
    int c = 0;
    for (size_t i = 0; i < m->n; i++) {
        c += strcasecmp(m->name[i], name) == 0;
    }
    return c;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t more;
        if (c < 0x80) {
            more = 0;
        } else if ((c & 0xE0) == 0xC0) {
            more = 1;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3;
        } else {
            return false;
        }
        for (size_t k = 1; k <= more; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) {
                return false;
            }
        }
        i += more + 1;
    }
    return true;
}

/* Decode base64 text (no whitespace) into a new buffer; *n its length. */
static unsigned char *b64_decode(const char *text, size_t len, size_t *n)
{
    CU_ASSERT_FATAL(len % 4 == 0);
    unsigned char *out = malloc(len / 4 * 3 + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    int got = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
    CU_ASSERT_FATAL(got >= 0);
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=') {
        pad++;
    }
    if (len >= 2 && text[len - 2] == '=') {
        pad++;
    }
    *n = (size_t)got - pad;
    out[*n] = '\0';
    return out;
}

/* The Subject decoded: plain text, or RFC 2047 B words each at most 75
 * characters and each holding whole UTF-8 characters. New string. */
static char *decode_subject(const char *value)
{
    if (strncmp(value, "=?", 2) != 0) {
        return strdup(value);
    }
    char *out = calloc(1, strlen(value) + 1);
    size_t used = 0;
    const char *p = value;
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    while (*p != '\0') {
        p += strspn(p, " \t");
        if (*p == '\0') {
            break;
        }
        size_t wl = strcspn(p, " \t");
        CU_ASSERT(wl <= 75);
        CU_ASSERT_FATAL(wl > 12 && strncmp(p, "=?UTF-8?B?", 10) == 0 && p[wl - 2] == '?' &&
                        p[wl - 1] == '=');
        size_t n = 0;
        unsigned char *dec = b64_decode(p + 10, wl - 12, &n);
        CU_ASSERT(utf8_valid(dec, n)); /* whole characters in each word */
        memcpy(out + used, dec, n);
        used += n;
        free(dec);
        p += wl;
    }
    out[used] = '\0';
    return out;
}

/* The body decoded from base64 lines of at most 76 characters. New. */
static char *decode_body(const struct eml *m)
{
    size_t len = strlen(m->body);
    char *joined = malloc(len + 1);
    size_t used = 0;
    const char *p = m->body;
    CU_ASSERT_PTR_NOT_NULL_FATAL(joined);
    while (*p != '\0') {
        const char *eol = strstr(p, "\r\n");
        CU_ASSERT_PTR_NOT_NULL_FATAL(eol);
        size_t ll = (size_t)(eol - p);
        CU_ASSERT(ll <= 76);
        memcpy(joined + used, p, ll);
        used += ll;
        p = eol + 2;
    }
    joined[used] = '\0';
    size_t n = 0;
    unsigned char *dec = b64_decode(joined, used, &n);
    free(joined);
    CU_ASSERT(utf8_valid(dec, n));
    CU_ASSERT_EQUAL(strlen((char *)dec), n);
    return (char *)dec;
}

/* What Python's email package makes of the message (new reference). */
static json_t *python_parse(const char *eml_path)
{
    char out[700];
    json_error_t jerr;
    snprintf(out, sizeof out, "%s.parsed", eml_path);
    int rc = cpbtest_sh("/usr/bin/python3 '%s' --parse '%s' > '%s'",
                        cpbtest_src("tests/servers/smtpd.py"), eml_path, out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_t *j = json_load_file(out, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

static void expect_in(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL) {
        fprintf(stderr, "\n  expected \"%s\" in:\n%s\n", needle, hay != NULL ? hay : "(null)");
        CU_FAIL("text missing");
    }
}

static void expect_not_in(const char *hay, const char *needle)
{
    if (hay != NULL && strstr(hay, needle) != NULL) {
        fprintf(stderr, "\n  did not expect \"%s\" in:\n%s\n", needle, hay);
        CU_FAIL("unexpected text");
    }
}

static char *log_text(void)
{
    fflush(log_file);
    char *t = cpbtest_slurp(cpbtest_path("engine.log"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

/* ---- suite setup ------------------------------------------------------------ */

static int start(struct cpbserver *srv, const char *const *args)
{
    return cpbserver_start(srv, cpbtest_src("tests/servers/smtpd.py"), args);
}

static int setup(void)
{
    char key[600];
    snprintf(cert, sizeof cert, "%s", cpbtest_path("cert.pem"));
    snprintf(key, sizeof key, "%s", cpbtest_path("key.pem"));
    snprintf(pwfile, sizeof pwfile, "%s", cpbtest_path("smtp-password"));
    if (cpbtest_sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
                   "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
                   ">/dev/null 2>&1",
                   key, cert) != 0) {
        fprintf(stderr, "openssl could not make a test certificate\n");
        return -1;
    }
    if (cpbtest_write(pwfile, PASSWORD "\n") != 0) {
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return -1;
    }
    log_file = fopen(cpbtest_path("engine.log"), "w");
    if (log_file == NULL) {
        return -1;
    }
    log_set_stream(log_file);
    const char *const plain[] = {"--reject", "rejected@example.test", "--defer",
                                 "later@example.test", NULL};
    const char *const secure[] = {
        "--tls-cert",  cert,     "--tls-key",       key,      "--require-starttls",
        "--auth-user", "engine", "--auth-password", PASSWORD, NULL};
    const char *const noauth[] = {"--tls-cert",          cert, "--tls-key", key,
                                  "--no-auth-advertise", NULL};
    const char *const implicit[] = {"--smtps", "--tls-cert",  cert,     "--tls-key",
                                    key,       "--auth-user", "engine", "--auth-password",
                                    PASSWORD,  NULL};
    if (start(&plain_srv, plain) != 0 || start(&secure_srv, secure) != 0 ||
        start(&noauth_srv, noauth) != 0 || start(&smtps_srv, implicit) != 0) {
        return -1;
    }
    return 0;
}

static int teardown(void)
{
    cpbserver_stop(&plain_srv);
    cpbserver_stop(&secure_srv);
    cpbserver_stop(&noauth_srv);
    cpbserver_stop(&smtps_srv);
    log_reset();
    if (log_file != NULL) {
        fclose(log_file);
        log_file = NULL;
    }
    curl_global_cleanup();
    return 0;
}

/* ---- helpers for the cases ------------------------------------------------- */

static const char *url(const struct cpbserver *srv, const char *scheme)
{
    static char bufs[4][100];
    static unsigned next;
    char *p = bufs[next++ % 4];
    snprintf(p, 100, "%s://127.0.0.1:%d", scheme, srv->port);
    return p;
}

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define PLAIN_OPTS                                                                                 \
    "url = \"%s\"; helo = \"engine.test\"; from = \"alerts@example.test\"; starttls = \"off\";"

#define SUMMARY_UTF8                                                                                                             \
    "2 Bestellungen hängen – Größe: ÄÖÜ東京店🚨ÄÖÜ東京店🚨ÄÖÜ東京店🚨ÄÖÜ東京店🚨 order(s) " \
    "exhausted their retries and are in the dead-letter queue ✓"

/* ---- cases -------------------------------------------------------------------- */

static void test_descriptor(void)
{
    struct err e = {0};
    CU_ASSERT_STRING_EQUAL(notify_email_stage.name, "notify-email");
    CU_ASSERT_EQUAL(notify_email_stage.kind, CPB_NOTIFY);
    CU_ASSERT_EQUAL(notify_email_stage.abi_major, CPB_ABI_MAJOR);
    int rc = options_check_table(notify_email_stage.options, notify_email_stage.options_size,
                                 "stage 'notify-email'", &e);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", e.msg);
    }
    CU_ASSERT_EQUAL(rc, 0);
}

/* The whole message: envelope, every header, CRLF, the encoded subject, the
 * base64 body; and Python's email parser agrees and finds no defect. */
static void test_message_format(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    struct tm tm;
    json_t *ev = make_event("order.dead", SUMMARY_UTF8, 2);
    int n = msg_count(&plain_srv) + 1;

    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; helo = \"engine.test\";"
                                  " from = \"cpbridge alerts <alerts@example.test>\";"
                                  " to = [\"owner@example.test\", \"Ops Team <ops@example.test>\"];"
                                  " starttls = \"off\";",
                                  url(&plain_srv, "smtp"));
    CU_ASSERT_EQUAL_FATAL(st, CPB_OK);
    CU_ASSERT_EQUAL_FATAL(msg_count(&plain_srv), n);

    json_t *env = envelope(&plain_srv, n);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(env, "mail_from")),
                           "alerts@example.test");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(env, "rcpt_tos")), 2);
    CU_ASSERT(env_has_rcpt(env, "owner@example.test"));
    CU_ASSERT(env_has_rcpt(env, "ops@example.test"));
    CU_ASSERT(json_is_false(json_object_get(env, "tls")));
    CU_ASSERT(json_is_null(json_object_get(env, "auth_user")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(env, "helo")), "engine.test");
    json_decref(env);

    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    CU_ASSERT(crlf_only(m.raw, m.len));
    CU_ASSERT(m.longest_header_line <= 78);
    const char *once[] = {"Date",       "From",         "To",           "Subject",
                          "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
                          NULL};
    for (size_t i = 0; once[i] != NULL; i++) {
        if (hdr_count(&m, once[i]) != 1) {
            fprintf(stderr, "\n  header %s appears %d times\n", once[i], hdr_count(&m, once[i]));
            CU_FAIL("header count");
        }
    }
    CU_ASSERT_EQUAL(hdr_count(&m, "Bcc"), 0);

    /* Date: RFC 5322, UTC, now. */
    const char *date = hdr(&m, "Date");
    char wday[8];
    char mon[8];
    char zone[8];
    int consumed = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(date);
    memset(&tm, 0, sizeof tm);
    CU_ASSERT_EQUAL_FATAL(sscanf(date, "%3s, %d %3s %d %d:%d:%d %5s%n", wday, &tm.tm_mday, mon,
                                 &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, zone, &consumed),
                          8);
    CU_ASSERT_EQUAL((size_t)consumed, strlen(date));
    CU_ASSERT_STRING_EQUAL(zone, "+0000");
    CU_ASSERT_EQUAL(date[3], ',');
    CU_ASSERT_EQUAL(date[7], ' '); /* two-digit day */
    const char *months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *mp = strstr(months, mon);
    CU_ASSERT_FATAL(strlen(mon) == 3 && mp != NULL && (mp - months) % 3 == 0);
    tm.tm_mon = (int)((mp - months) / 3);
    tm.tm_year -= 1900;
    time_t when = timegm(&tm);
    CU_ASSERT(when > time(NULL) - 300 && when < time(NULL) + 300);
    struct tm check;
    gmtime_r(&when, &check);
    CU_ASSERT_NSTRING_EQUAL(wday, &"SunMonTueWedThuFriSat"[check.tm_wday * 3], 3);

    /* Message-ID: <uuid-v4@helo>. */
    const char *mid = hdr(&m, "Message-ID");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mid);
    CU_ASSERT_EQUAL_FATAL(strlen(mid), 1 + 36 + strlen("@engine.test>"));
    CU_ASSERT_EQUAL(mid[0], '<');
    CU_ASSERT_STRING_EQUAL(mid + 37, "@engine.test>");
    CU_ASSERT_EQUAL(mid[15], '4');
    for (size_t i = 1; i <= 36; i++) {
        bool dash = (i == 9 || i == 14 || i == 19 || i == 24);
        CU_ASSERT(dash ? mid[i] == '-' : strchr("0123456789abcdef", mid[i]) != NULL);
    }

    CU_ASSERT_STRING_EQUAL(hdr(&m, "From"), "\"cpbridge alerts\" <alerts@example.test>");
    expect_in(hdr(&m, "To"), "owner@example.test");
    expect_in(hdr(&m, "To"), "\"Ops Team\" <ops@example.test>");
    CU_ASSERT_STRING_EQUAL(hdr(&m, "MIME-Version"), "1.0");
    CU_ASSERT_STRING_EQUAL(hdr(&m, "Content-Type"), "text/plain; charset=UTF-8");
    CU_ASSERT_STRING_EQUAL(hdr(&m, "Content-Transfer-Encoding"), "base64");
    CU_ASSERT_STRING_EQUAL(hdr(&m, "X-Cpbridge-Event"), "order.dead");
    CU_ASSERT_STRING_EQUAL(hdr(&m, "X-Cpbridge-Severity"), "critical");

    /* Subject: encoded-words that decode to exactly the original. */
    const char *subj = hdr(&m, "Subject");
    CU_ASSERT_PTR_NOT_NULL_FATAL(subj);
    CU_ASSERT_NSTRING_EQUAL(subj, "=?UTF-8?B?", 10);
    char *decoded = decode_subject(subj);
    CU_ASSERT_STRING_EQUAL(decoded, "[cpbridge] orders: " SUMMARY_UTF8);
    free(decoded);

    /* Body: base64 of a UTF-8 text with CRLF lines. */
    char *body = decode_body(&m);
    CU_ASSERT(crlf_only(body, strlen(body)));
    const char *want[] = {SUMMARY_UTF8,
                          "critical",
                          "order.dead",
                          "Order W5001 (staging id 101, source woo)",
                          "Order W5002 (staging id 102, source woo)",
                          "item.unknown",
                          "line 1: item SKU-900 is not in IM_ITEM",
                          "line 1: item SKU-901 is not in IM_ITEM",
                          "cpbridge orders /etc/cpbridge/orders.cfg show 101",
                          "cpbridge orders /etc/cpbridge/orders.cfg show 102",
                          "Run this first:\r\n    " CMD,
                          "validate",
                          "price.mismatch",
                          "price of SKU-42 differs from IM_PRC",
                          "lines: 3",
                          "pipeline \"orders\", run " RUN_ID,
                          NULL};
    for (size_t i = 0; want[i] != NULL; i++) {
        expect_in(body, want[i]);
    }
    expect_not_in(body, "more;");
    free(body);

    /* An independent parser: Python's email package, policy=default. */
    json_t *py = python_parse(msg_file(&plain_srv, n, "eml"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(py, "defects")), 0);
    if (json_array_size(json_object_get(py, "defects")) != 0) {
        char *d = json_dumps(json_object_get(py, "defects"), 0);
        fprintf(stderr, "\n  python defects: %s\n", d);
        free(d);
    }
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(py, "subject")),
                           "[cpbridge] orders: " SUMMARY_UTF8);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(py, "to")), 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(json_object_get(py, "from"), 0)),
                           "alerts@example.test");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(py, "content_type")), "text/plain");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(py, "charset")), "utf-8");
    double epoch = json_number_value(json_object_get(py, "date_epoch"));
    CU_ASSERT(epoch > (double)(time(NULL) - 300) && epoch < (double)(time(NULL) + 300));
    expect_in(json_string_value(json_object_get(py, "body")), "Order W5002");
    expect_in(json_string_value(json_object_get(py, "body")), SUMMARY_UTF8);
    json_decref(py);

    eml_free(&m);
    json_decref(ev);
}

/* A long ASCII subject stays plain text, folded within 78 characters. */
static void test_ascii_subject_folded(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    const char *summary = "staged 120, applied 117, invalid 2, retrying 1, dead 0, after-commit "
                          "done 117, failed 0; the nightly backfill of the Main Street store "
                          "finished with warnings that someone should read today";
    json_t *ev = make_event("run.summary", summary, 0);
    int n = msg_count(&plain_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   PLAIN_OPTS " to = [\"owner@example.test\"];"
                                              " subject_prefix = \"[shop-alerts]\";",
                                   url(&plain_srv, "smtp")),
                          CPB_OK);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    CU_ASSERT(crlf_only(m.raw, m.len));
    CU_ASSERT(m.longest_header_line <= 78);
    const char *subj = hdr(&m, "Subject");
    CU_ASSERT_PTR_NOT_NULL_FATAL(subj);
    CU_ASSERT(strncmp(subj, "=?", 2) != 0);
    char expect[600];
    snprintf(expect, sizeof expect, "[shop-alerts] orders: %s", summary);
    CU_ASSERT_STRING_EQUAL(subj, expect);
    json_t *py = python_parse(msg_file(&plain_srv, n, "eml"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(py, "defects")), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(py, "subject")), expect);
    json_decref(py);
    eml_free(&m);
    json_decref(ev);
}

static void test_several_recipients(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    json_t *ev = make_event("order.invalid", "3 order(s) failed validation", 3);
    int n = msg_count(&plain_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(
        send_one(ev, code, sizeof code, msg, sizeof msg,
                 PLAIN_OPTS " to = [\"a@example.test\", \"b@example.test\", \"c@example.org\"];",
                 url(&plain_srv, "smtp")),
        CPB_OK);
    CU_ASSERT_EQUAL(msg_count(&plain_srv), n);
    json_t *env = envelope(&plain_srv, n);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(env, "rcpt_tos")), 3);
    CU_ASSERT(env_has_rcpt(env, "a@example.test"));
    CU_ASSERT(env_has_rcpt(env, "b@example.test"));
    CU_ASSERT(env_has_rcpt(env, "c@example.org"));
    json_decref(env);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    CU_ASSERT_STRING_EQUAL(hdr(&m, "To"), "a@example.test, b@example.test, c@example.org");
    json_t *py = python_parse(msg_file(&plain_srv, n, "eml"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(py, "to")), 3);
    json_decref(py);
    eml_free(&m);
    json_decref(ev);
}

static void test_max_orders(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    json_t *ev = make_event("order.dead", "7 order(s) exhausted their retries", 7);
    int n = msg_count(&plain_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   PLAIN_OPTS " to = [\"owner@example.test\"]; max_orders = 3;",
                                   url(&plain_srv, "smtp")),
                          CPB_OK);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    char *body = decode_body(&m);
    expect_in(body, "Orders (7):");
    expect_in(body, "Order W5001 ");
    expect_in(body, "Order W5002 ");
    expect_in(body, "Order W5003 ");
    expect_not_in(body, "W5004");
    expect_not_in(body, "show 104");
    expect_in(body, "... and 4 more; run the command above to see them all.");
    expect_in(body, CMD);
    free(body);
    eml_free(&m);
    json_decref(ev);
}

/* STARTTLS and AUTH against a receiver that requires both; the password
 * from a file. */
static void test_starttls_auth(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int n = msg_count(&secure_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   "url = \"%s\"; helo = \"engine.test\";"
                                   " from = \"alerts@example.test\"; to = [\"owner@example.test\"];"
                                   " username = \"engine\"; password = \"file:%s\";"
                                   " ca_file = \"%s\";",
                                   url(&secure_srv, "smtp"), pwfile, cert),
                          CPB_OK);
    CU_ASSERT_EQUAL(msg_count(&secure_srv), n);
    json_t *env = envelope(&secure_srv, n);
    CU_ASSERT(json_is_true(json_object_get(env, "tls")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(env, "auth_user")), "engine");
    CU_ASSERT(env_has_rcpt(env, "owner@example.test"));
    json_decref(env);
    eml_load(&m, msg_file(&secure_srv, n, "eml"));
    CU_ASSERT(crlf_only(m.raw, m.len));
    expect_in(hdr(&m, "Subject"), "[cpbridge] orders: 1 order(s) exhausted their retries");
    eml_free(&m);
    json_decref(ev);
}

/* Plain text to a receiver that requires STARTTLS, with starttls = "off":
 * the server's 530 is a permanent refusal (FAIL, email.rejected) — trying
 * again would meet the same 530. With credentials the stage refuses first:
 * the server offered no AUTH on the plain connection. */
static void test_plaintext_to_starttls_server(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&secure_srv);
    enum cpb_status st =
        send_one(ev, code, sizeof code, msg, sizeof msg,
                 PLAIN_OPTS " to = [\"owner@example.test\"];", url(&secure_srv, "smtp"));
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.rejected");
    expect_in(msg, "530");
    expect_in(msg, "STARTTLS");
    st = send_one(ev, code, sizeof code, msg, sizeof msg,
                  PLAIN_OPTS " to = [\"owner@example.test\"]; username = \"engine\";"
                             " password = \"%s\";",
                  url(&secure_srv, "smtp"), PASSWORD);
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.no_auth");
    CU_ASSERT_EQUAL(msg_count(&secure_srv), before);
    json_decref(ev);
}

static void test_wrong_password(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&secure_srv);
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; from = \"alerts@example.test\";"
                                  " to = [\"owner@example.test\"]; username = \"engine\";"
                                  " password = \"not-the-password\"; ca_file = \"%s\";",
                                  url(&secure_srv, "smtp"), cert);
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.auth");
    expect_in(msg, "\"engine\"");
    expect_in(msg, "username and password");
    expect_not_in(msg, "not-the-password");
    CU_ASSERT_EQUAL(msg_count(&secure_srv), before);
    json_decref(ev);
}

/* Credentials configured, the server offers no AUTH: libcurl would mail
 * unauthenticated; the stage refuses and nothing is saved. Without
 * credentials the same server takes the mail, so the refusal is what
 * stopped it. */
static void test_no_auth_offered(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&noauth_srv);
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; from = \"alerts@example.test\";"
                                  " to = [\"owner@example.test\"]; username = \"engine\";"
                                  " password = \"%s\"; ca_file = \"%s\";",
                                  url(&noauth_srv, "smtp"), PASSWORD, cert);
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.no_auth");
    expect_in(msg, "AUTH");
    expect_in(msg, "unauthenticated");
    usleep(300000);
    CU_ASSERT_EQUAL(msg_count(&noauth_srv), before);

    st = send_one(ev, code, sizeof code, msg, sizeof msg,
                  "url = \"%s\"; from = \"alerts@example.test\";"
                  " to = [\"owner@example.test\"]; ca_file = \"%s\";",
                  url(&noauth_srv, "smtp"), cert);
    CU_ASSERT_EQUAL(st, CPB_OK);
    CU_ASSERT_EQUAL(msg_count(&noauth_srv), before + 1);
    json_decref(ev);
}

static void test_smtps(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("run.failed", "the run failed", 0);
    int n = msg_count(&smtps_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   "url = \"%s\"; helo = \"engine.test\";"
                                   " from = \"alerts@example.test\"; to = [\"owner@example.test\"];"
                                   " username = \"engine\"; password = \"%s\"; ca_file = \"%s\";",
                                   url(&smtps_srv, "smtps"), PASSWORD, cert),
                          CPB_OK);
    json_t *env = envelope(&smtps_srv, n);
    CU_ASSERT(json_is_true(json_object_get(env, "tls")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(env, "auth_user")), "engine");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(env, "helo")), "engine.test");
    json_decref(env);
    json_decref(ev);
}

/* A self-signed certificate without ca_file fails verification (STARTTLS
 * and SMTPS); tls_no_verify gets through, with a warning. */
static void test_self_signed_certificate(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&secure_srv);
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; from = \"alerts@example.test\";"
                                  " to = [\"owner@example.test\"]; username = \"engine\";"
                                  " password = \"%s\";",
                                  url(&secure_srv, "smtp"), PASSWORD);
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.tls_verify");
    expect_in(msg, "verification");
    expect_in(msg, "ca_file");
    CU_ASSERT_EQUAL(msg_count(&secure_srv), before);

    st = send_one(ev, code, sizeof code, msg, sizeof msg,
                  "url = \"%s\"; from = \"alerts@example.test\"; to = [\"owner@example.test\"];"
                  " username = \"engine\"; password = \"%s\";",
                  url(&smtps_srv, "smtps"), PASSWORD);
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.tls_verify");

    st = send_one(ev, code, sizeof code, msg, sizeof msg,
                  "url = \"%s\"; from = \"alerts@example.test\"; to = [\"owner@example.test\"];"
                  " username = \"engine\"; password = \"%s\"; tls_no_verify = true;",
                  url(&secure_srv, "smtp"), PASSWORD);
    CU_ASSERT_EQUAL(st, CPB_OK);
    CU_ASSERT_EQUAL(msg_count(&secure_srv), before + 1);
    char *log = log_text();
    expect_in(log, "tls_no_verify = true");
    free(log);
    json_decref(ev);
}

/* smtps:// against a plain-text port: the TLS handshake fails (FAIL). */
static void test_tls_port_mismatch(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; from = \"alerts@example.test\";"
                                  " to = [\"owner@example.test\"];",
                                  url(&plain_srv, "smtps"));
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.tls");
    expect_in(msg, "TLS handshake");
    expect_in(msg, "smtps://");
    json_decref(ev);
}

/* One refused recipient fails the whole message (no ALLOWFAILS), and the
 * reason names it. */
static void test_recipient_rejected(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&plain_srv);
    enum cpb_status st =
        send_one(ev, code, sizeof code, msg, sizeof msg,
                 PLAIN_OPTS
                 " to = [\"owner@example.test\", \"rejected@example.test\", \"ops@example.test\"];",
                 url(&plain_srv, "smtp"));
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.recipient_rejected");
    expect_in(msg, "<rejected@example.test>");
    expect_in(msg, "550");
    expect_in(msg, "no one was mailed");
    usleep(200000);
    CU_ASSERT_EQUAL(msg_count(&plain_srv), before);
    json_decref(ev);
}

/* A 4xx recipient reply is temporary: RETRY. */
static void test_recipient_deferred(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&plain_srv);
    enum cpb_status st =
        send_one(ev, code, sizeof code, msg, sizeof msg,
                 PLAIN_OPTS " to = [\"owner@example.test\", \"later@example.test\"];",
                 url(&plain_srv, "smtp"));
    CU_ASSERT_EQUAL(st, CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(code, "email.temporary");
    expect_in(msg, "<later@example.test>");
    expect_in(msg, "451");
    CU_ASSERT_EQUAL(msg_count(&plain_srv), before);
    json_decref(ev);
}

/* starttls = required (the default) against a server without STARTTLS. */
static void test_starttls_not_offered(void)
{
    char code[64];
    char msg[1024];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    int before = msg_count(&plain_srv);
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  "url = \"%s\"; from = \"alerts@example.test\";"
                                  " to = [\"owner@example.test\"];",
                                  url(&plain_srv, "smtp"));
    CU_ASSERT_EQUAL(st, CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(code, "email.no_starttls");
    expect_in(msg, "STARTTLS");
    CU_ASSERT_EQUAL(msg_count(&plain_srv), before);
    json_decref(ev);
}

static void test_server_down(void)
{
    char code[64];
    char msg[1024];
    char u[100];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    snprintf(u, sizeof u, "smtp://127.0.0.1:%d", free_port());
    enum cpb_status st = send_one(ev, code, sizeof code, msg, sizeof msg,
                                  PLAIN_OPTS " to = [\"owner@example.test\"];", u);
    CU_ASSERT_EQUAL(st, CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(code, "email.unreachable");
    expect_in(msg, "127.0.0.1");
    json_decref(ev);
}

/* A server that accepts the connection but never greets: the timeout. */
static void test_silent_server_times_out(void)
{
    char code[64];
    char msg[1024];
    char u[100];
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CU_ASSERT_FATAL(listen(fd, 4) == 0);
    CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    snprintf(u, sizeof u, "smtp://127.0.0.1:%d", ntohs(a.sin_port));
    int64_t t0 = mono_ms();
    enum cpb_status st =
        send_one(ev, code, sizeof code, msg, sizeof msg,
                 PLAIN_OPTS " to = [\"owner@example.test\"]; timeout = \"1s\";", u);
    int64_t took = mono_ms() - t0;
    CU_ASSERT_EQUAL(st, CPB_RETRY);
    CU_ASSERT_STRING_EQUAL(code, "email.unreachable");
    expect_in(msg, "did not answer within 1000 ms");
    CU_ASSERT(took >= 900 && took < 5000);
    close(fd);
    json_decref(ev);
}

/* Event text is untrusted: CR/LF cannot add headers or recipients, text
 * that looks like an encoded-word is encoded, a payload that is no object
 * still makes a message. */
static void test_hostile_event(void)
{
    char code[64];
    char msg[1024];
    struct eml m;
    json_t *ev = make_event("order.invalid", "bad\r\nBcc: evil@example.test", 1);
    json_object_set_new(json_array_get(json_object_get(ev, "orders"), 0), "external_id",
                        json_string("W1\r\n.\r\nMAIL FROM:<evil@example.test>"));
    int n = msg_count(&plain_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   PLAIN_OPTS " to = [\"owner@example.test\"];",
                                   url(&plain_srv, "smtp")),
                          CPB_OK);
    CU_ASSERT_EQUAL(msg_count(&plain_srv), n);
    json_t *env = envelope(&plain_srv, n);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(env, "rcpt_tos")), 1);
    CU_ASSERT(!env_has_rcpt(env, "evil@example.test"));
    json_decref(env);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    CU_ASSERT(crlf_only(m.raw, m.len));
    CU_ASSERT_EQUAL(hdr_count(&m, "Bcc"), 0);
    CU_ASSERT_STRING_EQUAL(hdr(&m, "Subject"), "[cpbridge] orders: bad  Bcc: evil@example.test");
    char *body = decode_body(&m);
    expect_in(body, "Order W1  .  MAIL FROM:<evil@example.test> (staging id 101");
    free(body);
    eml_free(&m);
    json_decref(ev);

    ev = make_event("order.invalid", "=?UTF-8?B?SGFja2Vk?= x", 0);
    n = msg_count(&plain_srv) + 1;
    CU_ASSERT_EQUAL_FATAL(send_one(ev, code, sizeof code, msg, sizeof msg,
                                   PLAIN_OPTS " to = [\"owner@example.test\"];",
                                   url(&plain_srv, "smtp")),
                          CPB_OK);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    char *subj = decode_subject(hdr(&m, "Subject"));
    CU_ASSERT_STRING_EQUAL(subj, "[cpbridge] orders: =?UTF-8?B?SGFja2Vk?= x");
    free(subj);
    eml_free(&m);
    json_decref(ev);

    /* A payload that is not an object, and no event name in the record. */
    struct run r;
    CU_ASSERT_EQUAL_FATAL(
        run_open(&r, PLAIN_OPTS " to = [\"owner@example.test\"];", url(&plain_srv, "smtp")), 0);
    json_t *junk = json_string("not an event");
    struct cpb_record rec = {.size = sizeof rec, .payload = junk};
    n = msg_count(&plain_srv) + 1;
    host_reason_clear(r.ctx);
    CU_ASSERT_EQUAL(notify_email_stage.process(r.state, &rec), CPB_OK);
    rec.payload = NULL;
    CU_ASSERT_EQUAL(notify_email_stage.process(r.state, &rec), CPB_OK);
    run_close(&r);
    json_decref(junk);
    CU_ASSERT_EQUAL(msg_count(&plain_srv), n + 1);
    eml_load(&m, msg_file(&plain_srv, n, "eml"));
    body = decode_body(&m);
    expect_in(body, "What happened: (unknown)");
    free(body);
    eml_free(&m);
}

/* Options the stage refuses, each with a message naming the option. */
static void test_bad_options(void)
{
    static const struct {
        const char *opts;
        int rc;
        const char *needle;
    } cases[] = {
        {"url = \"http://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];", -2,
         "option 'url' must start with smtp://"},
        {"url = \"smtp://127.0.0.1:25/engine.test\"; from = \"a@example.test\";"
         " to = [\"b@example.test\"];",
         -2, "option 'url' must not have a path"},
        {"url = \"smtp://engine:hunter2@127.0.0.1:25\"; from = \"a@example.test\";"
         " to = [\"b@example.test\"];",
         -2, "option 'url' must not contain a user name or password"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"not-an-address\"; to = [\"b@example.test\"];", -2,
         "option 'from' must be an address"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\";"
         " to = [\"b@example.test\", \"bad address@example.test\"];",
         -2, "option 'to' entry 2"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\";"
         " to = [\"b@example.test\\nBcc: evil@example.test\"];",
         -2, "option 'to' entry 1 must be plain ASCII"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];"
         " username = \"engine\";",
         -2, "username and password go together"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];"
         " helo = \"bad_helo!\";",
         -2, "option 'helo' must be a domain name"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];"
         " ca_file = \"/nonexistent/ca.pem\";",
         -2, "option 'ca_file': cannot read /nonexistent/ca.pem"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [];", -1,
         "option 'to' must have between 1 and 100 elements"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];"
         " starttls = \"maybe\";",
         -1, "starttls"},
        {"url = \"smtp://127.0.0.1:25\"; from = \"a@example.test\"; to = [\"b@example.test\"];"
         " max_orders = -1;",
         -1, "max_orders"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        char *before = log_text();
        size_t skip = strlen(before);
        free(before);
        int rc = run_open(&r, "%s", cases[i].opts);
        if (rc != cases[i].rc) {
            fprintf(stderr, "\n  case %zu: rc %d, expected %d\n", i, rc, cases[i].rc);
            CU_FAIL("wrong outcome");
        }
        if (rc == -1) {
            expect_in(r.err.msg, cases[i].needle);
        } else {
            char *log = log_text();
            expect_in(log + skip, cases[i].needle);
            free(log);
        }
        run_close(&r);
    }
    /* hunter2 (a password put in the URL) is not echoed. */
    char *log = log_text();
    expect_not_in(log, "hunter2");
    free(log);
}

/* The stage registers the password for redaction itself (the filled
 * options' registration is dropped first), and no log line or reason of
 * this whole program carries it. */
static void test_password_never_logged(void)
{
    config_t cfg;
    struct opt_store *store = NULL;
    struct err e = {0};
    struct host_env env = {.pipeline = "orders"};
    void *state = NULL;
    char text[1500];
    json_t *ev = make_event("order.dead", "1 order(s) exhausted their retries", 1);

    snprintf(text, sizeof text,
             "options = { url = \"%s\"; from = \"alerts@example.test\";"
             " to = [\"owner@example.test\"]; username = \"engine\";"
             " password = \"Wr0ng-%s\"; ca_file = \"%s\"; };",
             url(&secure_srv, "smtp"), PASSWORD, cert);
    config_init(&cfg);
    CU_ASSERT_EQUAL_FATAL(config_read_string(&cfg, text), CONFIG_TRUE);
    void *opts = calloc(1, notify_email_stage.options_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opts);
    CU_ASSERT_EQUAL_FATAL(options_fill(notify_email_stage.options, config_lookup(&cfg, "options"),
                                       opts, &store, "stage 'mail'", &e),
                          0);
    log_reset(); /* forget the secrets options_fill registered */
    log_set_stream(log_file);
    struct cpb_ctx *ctx = host_ctx_new("mail", &env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(notify_email_stage.init(host_services(), ctx, opts, &state), 0);
    host_services()->log(ctx, CPB_LOG_WARN, "probe Wr0ng-%s end", PASSWORD);
    struct cpb_record rec = {.size = sizeof rec, .event = "order.dead", .payload = ev};
    host_reason_clear(ctx);
    CU_ASSERT_EQUAL(notify_email_stage.process(state, &rec), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(host_reason_code(ctx), "email.auth");
    expect_not_in(host_reason_message(ctx), PASSWORD);
    notify_email_stage.fini(state);
    host_ctx_free(ctx);
    opt_store_free(store);
    config_destroy(&cfg);
    free(opts);
    json_decref(ev);

    char *log = log_text();
    expect_in(log, "probe ******** end");
    expect_not_in(log, PASSWORD);
    free(log);
}

static const struct cpbtest_case cases[] = {
    {"descriptor", test_descriptor},
    {"message_format", test_message_format},
    {"ascii_subject_folded", test_ascii_subject_folded},
    {"several_recipients", test_several_recipients},
    {"max_orders", test_max_orders},
    {"starttls_auth", test_starttls_auth},
    {"plaintext_to_starttls_server", test_plaintext_to_starttls_server},
    {"wrong_password", test_wrong_password},
    {"no_auth_offered", test_no_auth_offered},
    {"smtps", test_smtps},
    {"self_signed_certificate", test_self_signed_certificate},
    {"tls_port_mismatch", test_tls_port_mismatch},
    {"recipient_rejected", test_recipient_rejected},
    {"recipient_deferred", test_recipient_deferred},
    {"starttls_not_offered", test_starttls_not_offered},
    {"server_down", test_server_down},
    {"silent_server_times_out", test_silent_server_times_out},
    {"hostile_event", test_hostile_event},
    {"bad_options", test_bad_options},
    {"password_never_logged", test_password_never_logged},
    {NULL, NULL},
};

static const struct cpbtest_suite suite = {"notify_email", setup, teardown, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *const suites[] = {&suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
