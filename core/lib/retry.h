/*
 * retry.h — the retry policy, a small pure module: exponential backoff with
 * full jitter (delay uniform in [0, min(cap, base * 2^(n-1))]), bounded by
 * max_attempts. The random source is explicit so tests are reproducible.
 */
#ifndef CPB_RETRY_H
#define CPB_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
    int64_t base_ms;        /* > 0 */
    int64_t cap_ms;         /* >= base_ms */
    unsigned max_attempts;  /* >= 1; attempts allowed in all */
};

/* The upper bound of the delay after `failures` failed attempts (>= 1):
 * min(cap, base * 2^(failures-1)), without overflow. */
int64_t retry_ceiling_ms(const struct retry_policy *p, unsigned failures);

/* The delay before the next attempt after `failures` failed attempts: a
 * uniform draw in [0, retry_ceiling_ms]. `rng` is the generator state. */
int64_t retry_delay_ms(const struct retry_policy *p, unsigned failures, uint64_t *rng);

/* True when `attempts` made so far leave no attempt (attempts >= max). */
bool retry_exhausted(const struct retry_policy *p, unsigned attempts);

/* Next value of a splitmix64 generator. */
uint64_t retry_rng_next(uint64_t *state);

/* A seed from the system's random source (falls back to time and pid). */
uint64_t retry_rng_seed(void);

#endif
