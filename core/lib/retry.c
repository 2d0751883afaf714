/*
 * retry.c — exponential backoff with full jitter (see retry.h).
 */
#include "lib/retry.h"

#include <openssl/rand.h>
#include <time.h>
#include <unistd.h>

int64_t retry_ceiling_ms(const struct retry_policy *p, unsigned failures)
{
    int64_t ceiling = p->base_ms;
    for (unsigned i = 1; i < failures && ceiling < p->cap_ms; i++) {
        if (ceiling > INT64_MAX / 2) {
            ceiling = p->cap_ms;
            break;
        }
        ceiling *= 2;
    }
    return ceiling < p->cap_ms ? ceiling : p->cap_ms;
}

uint64_t retry_rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

int64_t retry_delay_ms(const struct retry_policy *p, unsigned failures, uint64_t *rng)
{
    int64_t ceiling = retry_ceiling_ms(p, failures);
    if (ceiling <= 0) {
        return 0;
    }
    /* Uniform in [0, ceiling]: reject the biased top of the 64-bit range. */
    uint64_t span = (uint64_t)ceiling + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t r;
    do {
        r = retry_rng_next(rng);
    } while (r >= limit);
    return (int64_t)(r % span);
}

bool retry_exhausted(const struct retry_policy *p, unsigned attempts)
{
    return attempts >= p->max_attempts;
}

uint64_t retry_rng_seed(void)
{
    uint64_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) == 1) {
        return seed;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
}
