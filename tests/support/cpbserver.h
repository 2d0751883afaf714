/*
 * cpbserver.h — start and stop the test servers (Python scripts such as
 * tests/servers/httpd.py) from a CUnit program: fork/exec of
 * /usr/bin/python3 without a shell, readiness through a port file, and a
 * clean stop (SIGTERM, then SIGKILL).
 */
#ifndef CPBSERVER_H
#define CPBSERVER_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct http_client;

/* One running server. Zero-initialise; cpbserver_stop is safe on a zeroed
 * or already stopped server. */
struct cpbserver {
    pid_t pid;     /* > 0 while running */
    int port;      /* the port the server wrote, 127.0.0.1 */
    char dir[512]; /* a scratch directory of this server (holds the port
                      file "port"); under cpbtest_tmpdir() */
};

/*
 * Run `/usr/bin/python3 SCRIPT [EXTRA...] --port-file DIR/port` and wait up
 * to 10 s for the port file. `script` (borrowed) is a path, usually from
 * cpbtest_src("tests/servers/httpd.py"); `extra_args` (borrowed, may be
 * NULL) is a NULL-terminated list. The server's stdout and stderr are the
 * test's. Returns 0, or -1 with a message on stderr (the script is missing,
 * the process died, or no port file came in time; the process is stopped).
 * The server gets SIGTERM if the test program dies.
 */
int cpbserver_start(struct cpbserver *s, const char *script, const char *const *extra_args);

/* SIGTERM, wait up to 3 s, then SIGKILL; reaps the process and removes the
 * port file. Safe to call twice. */
void cpbserver_stop(struct cpbserver *s);

/* The same for a program (an absolute path, e.g. the built cpbridge) run as
 * `program args... --port-file FILE`; args is NULL-terminated. */
int cpbserver_start_program(struct cpbserver *s, const char *program, const char *const *args);

/* "http://127.0.0.1:PORT" + path (borrowed; NULL or "" gives "/"; a
 * missing leading slash is added). New string: free() it. NULL when out
 * of memory. */
char *cpbserver_url(const struct cpbserver *s, const char *path);

/* "<dir>/<name>" of this server's scratch directory, into out (n bytes).
 * Returns out (borrowed from the caller). */
const char *cpbserver_file(const struct cpbserver *s, const char *name, char *out, size_t n);

/*
 * One JSON exchange with the server (e.g. the WooCommerce stand-in's
 * control endpoints /_stats, /_products): `method` on `path` with `body`
 * (borrowed; NULL for none) sent as application/json through `cli`
 * (borrowed), 30 s at most. Returns the parsed answer (new reference), or
 * NULL after printing why (no answer, a non-2xx status, a body that is not
 * JSON).
 */
json_t *cpbserver_json(const struct cpbserver *s, struct http_client *cli, const char *method,
                       const char *path, const char *body);

#endif
