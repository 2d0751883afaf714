/*
 * woo_api.h — the WooCommerce REST API v3 client shared by the source-woo
 * and sync-status stages: the store's home URL checked and normalized, one
 * request through the host's HTTP service with Basic auth (HTTPS) or OAuth
 * 1.0a in the query string (plain HTTP), JSON bodies recognised before they
 * are parsed, and failures turned into a message that names the likely
 * cause (woocommerce-api.md §7, §8). Every byte from the store is untrusted.
 */
#ifndef WOO_API_H
#define WOO_API_H

#include <cpbridge/stage.h>

#include "woo_oauth.h"

/* How requests authenticate (values index woo_auth_choices). */
enum woo_auth { WOO_AUTH_AUTO = 0, WOO_AUTH_BASIC = 1, WOO_AUTH_OAUTH = 2 };

/* Option choices for `auth` and `oauth_signature_method` (static). */
extern const char *const woo_auth_choices[];
extern const char *const woo_sig_choices[];

/* Longest home URL accepted (bytes). */
#define WOO_URL_MAX 1000

/* Connection settings as the stages' options hold them (all borrowed): each
 * stage's options struct embeds one, which its option table fills (url,
 * consumer_key, consumer_secret, auth, oauth_signature_method, timeout,
 * max_tries, tls_no_verify, ca_file). */
struct woo_conn {
    const char *url;    /* the store's home URL, e.g. https://shop.example */
    const char *key;    /* consumer key (ck_...) */
    const char *secret; /* consumer secret (cs_...) */
    int auth;           /* enum woo_auth */
    int sig;            /* enum woo_sig */
    int64_t timeout_ms;
    int64_t max_tries;
    bool tls_no_verify;
    const char *ca_file; /* or NULL */
};

/* One configured store. Lives in the stage's state; nothing to free. */
struct woo_client {
    const struct cpb_host *host; /* borrowed until fini */
    struct cpb_ctx *ctx;         /* borrowed until fini */
    char home[WOO_URL_MAX + 1];  /* scheme://host[:port][/path], no trailing '/' */
    bool https;
    bool oauth; /* OAuth 1.0a in the query; else HTTP Basic */
    const char *key;
    const char *secret;
    enum woo_sig sig;
    long timeout_ms;
    unsigned max_tries;
    bool tls_no_verify;
    const char *ca_file;
};

/*
 * Check and normalize conn->url (http or https, no user info, query or
 * fragment, not the /wp-json address; lower-case scheme and host, default
 * port and trailing '/' dropped, as WordPress builds the OAuth base URL),
 * pick the authentication, and fill *c. `conn` strings are borrowed and
 * must outlive *c. Returns 0, or -1 with a message for a person in msg.
 */
int woo_client_init(struct woo_client *c, const struct cpb_host *host, struct cpb_ctx *ctx,
                    const struct woo_conn *conn, char *msg, size_t n);

/*
 * One exchange with <home>/wp-json/wc/v3<route> (route borrowed, e.g.
 * "/orders/5101/notes"): `query` (borrowed, nquery of them, not encoded)
 * goes into the query string, signed with OAuth when the client uses it;
 * `json_body` (borrowed, or NULL) is sent with Content-Type:
 * application/json. `max_tries` > 1 lets the host retry retryable outcomes
 * (honouring Retry-After). Returns the host's status; `resp` is filled as
 * cpb_host.http documents and must be released with host->http_free.
 */
enum cpb_status woo_request(struct woo_client *c, const char *method, const char *route,
                            const struct woo_param *query, size_t nquery, const char *json_body,
                            unsigned max_tries, struct cpb_http_response *resp);

/*
 * The same for n exchanges at once, over at most max_parallel connections
 * (host->http_many; the caller checks CPB_HOST_HAS(host, http_many)):
 * routes[i] (borrowed) with json_bodies[i] (borrowed; the array may be
 * NULL for none). With unsent_only a request is tried again only when the
 * store certainly did not act on it (429 or 503 answered, no connection):
 * for POSTs that create something. resps[i] and st[i] are filled for each,
 * as woo_request fills one; release every resps[i] with host->http_free.
 * Returns CPB_OK when every exchange was made, CPB_FAIL when none could be
 * (OOM, a path too long).
 */
enum cpb_status woo_request_many(struct woo_client *c, const char *method,
                                 const char *const *routes, const char *const *json_bodies,
                                 size_t n, unsigned max_tries, bool unsent_only,
                                 unsigned max_parallel, struct cpb_http_response *resps,
                                 enum cpb_status *st);

/* True when the response's Content-Type is JSON (application/json or a
 * +json type). `resp` is borrowed. */
bool woo_is_json(const struct cpb_http_response *resp);

/* Parse a response body (borrowed) as JSON. Returns a new reference, or
 * NULL with the parser's line, column and reason in msg. */
json_t *woo_json_body(const struct cpb_http_response *resp, char *msg, size_t n);

/* What went wrong with an exchange, for reason codes. */
enum woo_failure {
    WOO_F_UNAVAILABLE = 0, /* transport error, timeout, 408, 429, 5xx */
    WOO_F_AUTH,            /* 401, 403 */
    WOO_F_NOT_FOUND,       /* 404 */
    WOO_F_REJECTED,        /* another 3xx or 4xx */
    WOO_F_NOT_JSON,        /* a 2xx whose body is not JSON */
    WOO_F_TRANSPORT        /* a permanent transport failure (TLS verification, bad URL) */
};
/* "unavailable", "auth", "not_found", "rejected", "not_json", "transport"
 * (static strings). */
const char *woo_failure_name(enum woo_failure f);

/*
 * Describe an exchange that failed (`st` from woo_request other than
 * CPB_OK, or CPB_OK with a body that is not JSON) for a person: `what`
 * (borrowed, e.g. "reading page 2 of the orders") and the status, then the
 * store's own error code and message (JSON) or the text of the page it sent
 * (HTML, cleaned), then the likely cause. Never holds a query string or a
 * secret. *verdict receives CPB_RETRY or CPB_FAIL. Returns the kind.
 */
enum woo_failure woo_describe(const struct woo_client *c, const char *what, enum cpb_status st,
                              const struct cpb_http_response *resp, char *msg, size_t n,
                              enum cpb_status *verdict);

/* True when s (borrowed) has the shape of an order status slug: 1 to 40
 * lower-case ASCII letters, digits, '-' and '_' ("processing", "on-hold"). */
bool woo_status_ok(const char *s);

/*
 * Untrusted text (in, in_len bytes; may hold NULs) made into one printable
 * line in out (n bytes): HTML tags dropped, control characters and runs of
 * blanks become one space, invalid UTF-8 becomes '?', cut at a character
 * boundary with "..." when too long.
 */
void woo_clean_text(const char *in, size_t in_len, char *out, size_t n);

#endif
