/*
 * httpd.c — the embedded HTTP server over GNU libmicrohttpd (see httpd.h).
 * Requests are read into a buffer of at most max_body bytes; the handler
 * sees only complete requests.
 */
#include "services/httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct httpd {
    struct MHD_Daemon *daemon;
    httpd_handler handler;
    void *arg;
    size_t max_body;
    unsigned port;
    int quiesced_fd; /* the listening socket after quiesce: closed after stop */
};

/* One request being read. */
struct pending {
    char *body;
    size_t len;
    bool too_large;
};

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static void peer(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "?");
    if (ci == NULL || ci->client_addr == NULL) {
        return;
    }
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ci->client_addr;
        (void)inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)n);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)ci->client_addr;
        (void)inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)n);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    struct httpd *h = cls;
    struct pending *p = *con_cls;
    (void)version;
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL) {
            return MHD_NO;
        }
        *con_cls = p;
        return MHD_YES; /* the headers; the body follows */
    }
    if (*data_size > 0) {
        if (!p->too_large && p->len + *data_size <= h->max_body) {
            char *grown = realloc(p->body, p->len + *data_size + 1);
            if (grown == NULL) {
                return MHD_NO;
            }
            p->body = grown;
            memcpy(p->body + p->len, data, *data_size);
            p->len += *data_size;
            p->body[p->len] = '\0';
        } else {
            p->too_large = true; /* read and dropped, answered below */
        }
        *data_size = 0;
        return MHD_YES;
    }
    struct httpd_request rq = {method,
                               url,
                               p->body != NULL && !p->too_large ? p->body : "",
                               p->too_large ? 0 : p->len,
                               "",
                               c,
                               p->too_large};
    struct httpd_reply rp = {500, "internal error\n"};
    peer(c, rq.remote, sizeof rq.remote);
    h->handler(h->arg, &rq, &rp);
    return answer(c, rp.status, rp.body);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode code)
{
    struct pending *p = *con_cls;
    (void)cls;
    (void)c;
    (void)code;
    if (p != NULL) {
        free(p->body);
        free(p);
        *con_cls = NULL;
    }
}

int httpd_start(const struct httpd_config *cfg, httpd_handler handler, void *arg,
                struct httpd **out, struct err *err)
{
    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct httpd *h = calloc(1, sizeof *h);
    *out = NULL;
    if (h == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    if (inet_pton(AF_INET, cfg->address, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, cfg->address, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        return err_set(err, CPB_EXIT_CONFIG,
                       "serve.listen '%s' is not an IPv4 or IPv6 address (a host name is not"
                       " bound: give the address)",
                       cfg->address);
    }
    if (cfg->tls_cert != NULL) {
        flags |= MHD_USE_TLS;
    }
    h->handler = handler;
    h->arg = arg;
    h->quiesced_fd = -1;
    h->max_body = cfg->max_body;
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cfg->threads > 0 ? cfg->threads : 1),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->timeout_s > 0 ? cfg->timeout_s : 30),
        MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_ARRAY,
        cfg->tls_cert != NULL ? tls : &tls[2], MHD_OPTION_END);
    if (h->daemon == NULL) {
        free(h);
        return err_set(err, CPB_EXIT_UNAVAILABLE,
                       "could not listen on %s port %u%s (in use, not an address of this machine,"
                       " or a bad certificate or key)",
                       cfg->address, cfg->port, cfg->tls_cert != NULL ? " with TLS" : "");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di != NULL ? di->port : cfg->port;
    *out = h;
    return 0;
}

unsigned httpd_port(const struct httpd *h)
{
    return h->port;
}

const char *httpd_header(const struct httpd_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

void httpd_quiesce(struct httpd *h)
{
    if (h != NULL && h->daemon != NULL && h->quiesced_fd < 0) {
        h->quiesced_fd = MHD_quiesce_daemon(h->daemon);
    }
}

void httpd_stop(struct httpd *h)
{
    if (h == NULL) {
        return;
    }
    if (h->daemon != NULL) {
        MHD_stop_daemon(h->daemon);
    }
    if (h->quiesced_fd >= 0) {
        close(h->quiesced_fd); /* MHD hands it over; only after the stop */
    }
    free(h);
}
