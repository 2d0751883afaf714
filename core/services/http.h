/*
 * http.h — HTTP for the engine and, through the host, for stages: libcurl
 * with TLS verification on, connect and total timeouts, no redirects, a
 * size cap on bodies, response headers kept for lookup, status classified
 * (2xx OK; transport errors, timeouts, 408, 429, 5xx RETRY; other FAIL) and
 * Retry-After (delta-seconds or HTTP-date) honoured between tries.
 */
#ifndef CPB_HTTP_H
#define CPB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "cpbridge/stage.h"
#include "lib/err.h"

/* Largest response body accepted (bytes); beyond it the exchange fails. */
#define HTTP_MAX_BODY (64L * 1024 * 1024)
/* Defaults when a request leaves the timeouts at 0. */
#define HTTP_DEFAULT_TIMEOUT_MS         60000L
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 10000L
/* The longest Retry-After honoured between tries; longer means give up now
 * (CPB_RETRY, so the order is retried in a later run). */
#define HTTP_MAX_RETRY_WAIT_MS 60000L

/* Once per process, before any other call (main does it). 0 or -1. */
int http_global_init(struct err *err);
void http_global_cleanup(void);

/* A client keeps one curl handle (connections are reused). `log_stage`
 * (borrowed, may be NULL, must outlive the client) prefixes its log lines.
 * new: free with http_client_free. NULL when out of memory. */
struct http_client *http_client_new(const char *log_stage);
void http_client_free(struct http_client *c);

/* The host service `http` (see cpbridge/stage.h for the contract). `c` and
 * `req` are borrowed. `resp` is overwritten at entry (free a previous
 * response first) and filled with new memory owned by the caller until
 * http_response_free, which must be called in every case. resp->body is
 * "" for an empty body and NULL only when nothing was sent; resp->error is
 * set for every outcome but CPB_OK and never holds a query string or user
 * info. */
enum cpb_status http_perform(struct http_client *c, const struct cpb_http_request *req,
                             struct cpb_http_response *resp);
/* http_perform_many: connections at once when the caller asks for 0, and
 * the most it may ask for. */
#define HTTP_DEFAULT_PARALLEL 4
#define HTTP_MAX_PARALLEL     16

/*
 * The host service `http_many` (see cpbridge/stage.h): perform the n
 * requests reqs[i] (borrowed) with at most max_parallel (0: 4; at most 16)
 * in flight at once over the client's pool of kept connections. Each is
 * retried as http_perform retries it; a 429 or 503 with Retry-After holds
 * back every try not yet started for that long and halves the number in
 * flight for the rest of the call; one asking for longer than a run waits
 * leaves the requests not yet sent unsent (CPB_RETRY, "not sent ...",
 * retry_after_ms set). resps[i] and st[i] are filled for every i, as
 * http_perform fills one (release each with http_response_free, in every
 * case). Returns CPB_OK, or CPB_FAIL when nothing could be tried (bad
 * arguments, out of memory: each resps[i].error says so).
 */
enum cpb_status http_perform_many(struct http_client *c, const struct cpb_http_request *const *reqs,
                                  struct cpb_http_response *resps, enum cpb_status *st, size_t n,
                                  unsigned max_parallel);

/* The host services `http_header` and `http_free`. http_header returns a
 * borrowed value (valid until http_response_free) or NULL; the lookup is
 * case-insensitive and the last of repeated headers wins.
 * http_response_free is safe on a zeroed or already freed response. */
const char *http_header(const struct cpb_http_response *resp, const char *name);
void http_response_free(struct cpb_http_response *resp);

/* Pure helpers, exposed for tests. */
enum cpb_status http_classify_status(long status);
/* Retry-After value -> milliseconds from now_ms, or -1 when unparseable. */
long http_parse_retry_after(const char *value, int64_t now_ms);

/* Tests only: lower the body cap (bytes) below HTTP_MAX_BODY so the limit
 * can be exercised cheaply; 0 or less restores HTTP_MAX_BODY. Process-wide. */
void http_set_max_body_for_tests(long bytes);

#endif
