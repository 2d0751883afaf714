/*
 * httpd.h — a small embedded HTTP server for `cpbridge serve`, over GNU
 * libmicrohttpd: one listening socket (plain or TLS), a bounded request
 * body, and one handler called for each complete request from the
 * server's threads. It knows nothing of stages or stores.
 */
#ifndef CPB_HTTPD_H
#define CPB_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/err.h"

/* A complete request, borrowed for the handler call. */
struct httpd_request {
    const char *method;
    const char *path; /* without the query string */
    const char *body; /* NUL-terminated; may hold NULs (see body_len) */
    size_t body_len;
    char remote[64]; /* the peer's address */
    void *conn;      /* the server's connection (headers) */
    bool too_large;  /* the body was over max_body: dropped, body is "" */
};

/* The handler's answer: a status and a short plain-text body. */
struct httpd_reply {
    int status;
    char body[256];
};

/* Called once per complete request, from one of the server's threads
 * (several at once: the handler serialises what must be). */
typedef void (*httpd_handler)(void *arg, const struct httpd_request *rq, struct httpd_reply *rp);

struct httpd_config {
    const char *address;  /* IPv4 or IPv6 literal to bind, e.g. "127.0.0.1" */
    unsigned port;        /* 0: any free port (see httpd_port) */
    size_t max_body;      /* a larger body is dropped: the handler sees too_large */
    unsigned threads;     /* the server's worker threads (1..64) */
    const char *tls_cert; /* PEM text of the certificate chain, or NULL for plain HTTP */
    const char *tls_key;  /* PEM text of its private key */
    unsigned timeout_s;   /* an idle connection is closed after this */
};

struct httpd;

/* Start listening. Returns 0 with *out (new; httpd_stop frees it), or -1
 * with err set (CPB_EXIT_CONFIG for a bad address, CPB_EXIT_UNAVAILABLE
 * when the port cannot be bound). `cfg` and `arg` are borrowed until stop. */
int httpd_start(const struct httpd_config *cfg, httpd_handler handler, void *arg,
                struct httpd **out, struct err *err);

/* The port it listens on (useful with port 0). */
unsigned httpd_port(const struct httpd *h);

/* The value of request header `name` (case-insensitive), borrowed for the
 * handler call, or NULL. */
const char *httpd_header(const struct httpd_request *rq, const char *name);

/* Stop accepting new connections; requests in flight go on. */
void httpd_quiesce(struct httpd *h);

/* Finish the requests in flight, close and free; NULL is accepted. */
void httpd_stop(struct httpd *h);

#endif
