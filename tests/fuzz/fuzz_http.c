/*
 * fuzz_http.c — libFuzzer entry point for the HTTP client's response
 * handling: the input is served, byte for byte, as the raw answer of a tiny
 * server on 127.0.0.1 (a thread that accepts one connection, reads the
 * request, writes the input and closes), and http_perform fetches it through
 * libcurl; then headers are looked up and the response is freed. Status
 * line, headers (folded, repeated, huge), chunked and compressed bodies,
 * Retry-After, Location and cut-short answers all come from the input.
 * Nothing may crash, leak or read out of bounds, and the response must keep
 * the contract of http.h (checked here; a broken promise aborts).
 *
 * The request's shape is chosen from the input's length, so seeds stay
 * plain HTTP responses: length % 3 picks GET, HEAD or POST with a body, and
 * an odd length lowers the body cap to 1 KiB (http_set_max_body_for_tests).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "services/http.h"
#include "services/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How long the server waits for the client at any point (ms). */
#define SERVE_WAIT_MS 5000
/* The small body cap used for odd-length inputs. */
#define SMALL_CAP 1024

static int listen_fd = -1;
static char url[128];
static FILE *devnull;

/* One exchange for the server thread. */
struct exchange {
    const uint8_t *data;
    size_t size;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    struct err e = {0};
    int one = 1;
    (void)argc;
    (void)argv;

    if (http_global_init(&e) != 0) {
        abort();
    }
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) {
        abort();
    }
    (void)setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listen_fd, 16) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0) {
        abort();
    }
    /* A query string with a credential, as source-woo sends in https mode:
     * it must never reach resp->error. */
    snprintf(url, sizeof url,
             "http://127.0.0.1:%u/wp-json/wc/v3/orders?consumer_key=ck_fuzzsecret&page=1",
             (unsigned)ntohs(addr.sin_port));
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL) {
        abort();
    }
    log_set_stream(devnull);
    return 0;
}

/* Wait until fd is readable (or writable); 1 ready, 0 timeout or error. */
static int wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    int rc;
    do {
        rc = poll(&p, 1, SERVE_WAIT_MS);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

/* Read the request: headers up to the blank line, then Content-Length bytes
 * of body (the harness sends at most a small one). */
static void read_request(int fd)
{
    char buf[8192];
    size_t have = 0;
    const char *end = NULL;
    while (end == NULL && have < sizeof buf - 1 && wait_fd(fd, POLLIN)) {
        ssize_t got = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (got <= 0) {
            return;
        }
        have += (size_t)got;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL) {
        return;
    }
    size_t body = 0;
    const char *cl = strstr(buf, "Content-Length: ");
    if (cl != NULL && cl < end) {
        char *stop = NULL;
        unsigned long v = strtoul(cl + 16, &stop, 10);
        if (stop != cl + 16 && v < sizeof buf) {
            body = (size_t)v;
        }
    }
    size_t got_body = have - (size_t)(end + 4 - buf);
    while (got_body < body && wait_fd(fd, POLLIN)) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) {
            return;
        }
        got_body += (size_t)got;
    }
}

/* Accept one connection, read the request, answer with the input, close.
 * The whole request was read, so closing sends FIN, not a reset that could
 * lose the answer; the client keeps its end until http_client_free. */
static void *serve_one(void *arg)
{
    const struct exchange *x = arg;
    size_t sent = 0;
    int fd = -1;
    if (!wait_fd(listen_fd, POLLIN)) {
        return NULL;
    }
    fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    read_request(fd);
    while (sent < x->size && wait_fd(fd, POLLOUT)) {
        ssize_t n = send(fd, x->data + sent, x->size - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += (size_t)n;
    }
    (void)shutdown(fd, SHUT_WR);
    close(fd);
    return NULL;
}

/* Whether `needle` occurs in the size bytes at data. */
static bool contains(const uint8_t *data, size_t size, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(data + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Abort unless the response keeps http.h's promises for status `st`. */
static void check_response(enum cpb_status st, const struct cpb_http_response *r, size_t cap,
                           bool secret_in_input)
{
    size_t elen = strnlen(r->error, sizeof r->error);
    if (st != CPB_OK && st != CPB_RETRY && st != CPB_FAIL) {
        abort();
    }
    if (elen == sizeof r->error) {
        abort(); /* not terminated */
    }
    for (size_t i = 0; i < elen; i++) {
        unsigned char ch = (unsigned char)r->error[i];
        if (ch < 0x20 || ch == 0x7f) {
            abort(); /* one printable line */
        }
    }
    if (!secret_in_input && strstr(r->error, "ck_fuzzsecret") != NULL) {
        abort(); /* the URL's query string leaked into a message */
    }
    if (st == CPB_OK) {
        if (r->status < 200 || r->status > 299 || r->body == NULL) {
            abort();
        }
    } else if (elen == 0) {
        abort(); /* every outcome but OK says why */
    }
    if (r->body != NULL && (r->body_len > cap || r->body[r->body_len] != '\0')) {
        abort();
    }
    if (r->body == NULL && r->body_len != 0) {
        abort();
    }
    if (r->retry_after_ms < -1) {
        abort();
    }
    if (r->content_type != http_header(r, "Content-Type")) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"Content-Type",
                                        "content-type",
                                        "X-WP-Total",
                                        "X-WP-TotalPages",
                                        "Link",
                                        "Retry-After",
                                        "Location",
                                        "",
                                        NULL};
    static const char body[] = "{\"status\":\"completed\"}";
    static const char *const headers[] = {"Accept: application/json",
                                          "Content-Type: application/json", NULL};
    struct exchange x = {data, size};
    struct cpb_http_request req;
    struct cpb_http_response resp;
    struct http_client *c = NULL;
    pthread_t server;
    size_t cap = size % 2 == 1 ? SMALL_CAP : (size_t)HTTP_MAX_BODY;

    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.url = url;
    req.headers = headers;
    req.timeout_ms = SERVE_WAIT_MS;
    req.connect_timeout_ms = 2000;
    req.max_tries = 1;
    switch (size % 3) {
    case 0:
        req.method = "GET";
        break;
    case 1:
        req.method = "HEAD";
        break;
    default:
        req.method = "POST";
        req.body = body;
        req.body_len = sizeof body - 1;
        break;
    }
    http_set_max_body_for_tests(size % 2 == 1 ? SMALL_CAP : 0);

    /* A new client each time: no kept connection to a server that closed. */
    c = http_client_new("fuzz");
    if (c == NULL) {
        return 0;
    }
    if (pthread_create(&server, NULL, serve_one, &x) != 0) {
        http_client_free(c);
        return 0;
    }
    enum cpb_status st = http_perform(c, &req, &resp);
    pthread_join(server, NULL);

    check_response(st, &resp, cap, contains(data, size, "ck_fuzzsecret"));
    for (size_t i = 0; names[i] != NULL; i++) {
        const char *v = http_header(&resp, names[i]);
        if (v != NULL && strlen(v) > size) {
            abort(); /* a value cannot be longer than the whole answer */
        }
    }
    http_response_free(&resp);
    if (resp.body != NULL || http_header(&resp, "Content-Type") != NULL) {
        abort();
    }
    http_response_free(&resp); /* safe on an already freed response */
    http_client_free(c);
    return 0;
}
