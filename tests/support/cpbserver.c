/*
 * cpbserver.c — start and stop test server processes (see cpbserver.h).
 */
#include "cpbserver.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpbtest.h"
#include "services/http.h"

#define PYTHON        "/usr/bin/python3"
#define START_WAIT_MS 10000
#define STOP_WAIT_MS  3000
#define POLL_MS       20

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* sleep the rest */
    }
}

const char *cpbserver_file(const struct cpbserver *s, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", s->dir, name);
    return out;
}

/* The port in the port file: 1..65535, or 0 while the file is not there
 * or not valid yet. */
static int read_port(const char *path)
{
    char *text = cpbtest_slurp(path, NULL);
    int port = 0;
    if (text == NULL) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno == 0 && end != text && (*end == '\0' || *end == '\n') && v > 0 && v <= 65535) {
        port = (int)v;
    }
    free(text);
    return port;
}

static void describe_exit(const char *script, int status)
{
    if (WIFEXITED(status)) {
        fprintf(stderr, "cpbserver: %s exited with status %d before it was ready\n", script,
                WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        fprintf(stderr, "cpbserver: %s was killed by signal %d before it was ready\n", script,
                WTERMSIG(status));
    } else {
        fprintf(stderr, "cpbserver: %s stopped before it was ready\n", script);
    }
}

/* Start `program` with `args` (argv[1..], NULL-terminated) followed by
 * --port-file <file> and wait for the port; `script` names it in messages. */
static int start(struct cpbserver *s, const char *program, const char *const *args,
                 const char *script);

int cpbserver_start(struct cpbserver *s, const char *script, const char *const *extra_args)
{
    const char *args[64];
    size_t n = 0;
    memset(s, 0, sizeof *s);
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "cpbserver: cannot read the server script %s: %s\n", script,
                strerror(errno));
        return -1;
    }
    args[n++] = script;
    while (extra_args != NULL && extra_args[n - 1] != NULL && n < 63) {
        args[n] = extra_args[n - 1];
        n++;
    }
    args[n] = NULL;
    return start(s, PYTHON, args, script);
}

int cpbserver_start_program(struct cpbserver *s, const char *program, const char *const *args)
{
    memset(s, 0, sizeof *s);
    return start(s, program, args, program);
}

static int start(struct cpbserver *s, const char *program, const char *const *args,
                 const char *script)
{
    const char **argv = NULL;
    char port_file[600];
    int rc = -1;
    size_t n_extra = 0;

    snprintf(s->dir, sizeof s->dir, "%s/server.XXXXXX", cpbtest_tmpdir());
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "cpbserver: mkdtemp %s: %s\n", s->dir, strerror(errno));
        s->dir[0] = '\0';
        goto out;
    }
    cpbserver_file(s, "port", port_file, sizeof port_file);

    while (args != NULL && args[n_extra] != NULL) {
        n_extra++;
    }
    argv = calloc(n_extra + 4, sizeof *argv);
    if (argv == NULL) {
        fprintf(stderr, "cpbserver: out of memory\n");
        goto out;
    }
    argv[0] = program;
    for (size_t i = 0; i < n_extra; i++) {
        argv[1 + i] = args[i];
    }
    argv[1 + n_extra] = "--port-file";
    argv[2 + n_extra] = port_file;
    argv[3 + n_extra] = NULL;

    pid_t parent = getpid();
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "cpbserver: fork: %s\n", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. */
        static const char msg[] = "cpbserver: cannot exec the server program\n";
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(126);
        }
        execv(program, (char *const *)argv);
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(127);
    }
    s->pid = pid;

    for (long waited = 0; waited <= START_WAIT_MS; waited += POLL_MS) {
        int status = 0;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) {
            describe_exit(script, status);
            s->pid = 0;
            goto out;
        }
        s->port = read_port(port_file);
        if (s->port != 0) {
            rc = 0;
            goto out;
        }
        pause_ms(POLL_MS);
    }
    fprintf(stderr, "cpbserver: %s wrote no port file (%s) within %d ms\n", script, port_file,
            START_WAIT_MS);
    cpbserver_stop(s);
out:
    free(argv);
    return rc;
}

void cpbserver_stop(struct cpbserver *s)
{
    if (s == NULL) {
        return;
    }
    if (s->pid > 0) {
        int status = 0;
        pid_t got = 0;
        (void)kill(s->pid, SIGTERM);
        for (long waited = 0; waited < STOP_WAIT_MS; waited += POLL_MS) {
            got = waitpid(s->pid, &status, WNOHANG);
            if (got != 0) {
                break;
            }
            pause_ms(POLL_MS);
        }
        if (got == 0) {
            fprintf(stderr, "cpbserver: pid %ld ignored SIGTERM for %d ms; killing it\n",
                    (long)s->pid, STOP_WAIT_MS);
            (void)kill(s->pid, SIGKILL);
            (void)waitpid(s->pid, &status, 0);
        }
        s->pid = 0;
    }
    if (s->dir[0] != '\0') {
        char port_file[600];
        (void)unlink(cpbserver_file(s, "port", port_file, sizeof port_file));
        (void)rmdir(s->dir); /* fails harmlessly when the test left files */
    }
    s->port = 0;
}

char *cpbserver_url(const struct cpbserver *s, const char *path)
{
    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    const char *slash = path[0] == '/' ? "" : "/";
    int n = snprintf(NULL, 0, "http://127.0.0.1:%d%s%s", s->port, slash, path);
    if (n < 0) {
        return NULL;
    }
    char *url = malloc((size_t)n + 1);
    if (url == NULL) {
        return NULL;
    }
    snprintf(url, (size_t)n + 1, "http://127.0.0.1:%d%s%s", s->port, slash, path);
    return url;
}

json_t *cpbserver_json(const struct cpbserver *s, struct http_client *cli, const char *method,
                       const char *path, const char *body)
{
    const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct cpb_http_request r;
    struct cpb_http_response resp;
    json_error_t jerr;
    json_t *doc = NULL;
    char *url = cpbserver_url(s, path);
    if (url == NULL) {
        fprintf(stderr, "cpbserver_json: out of memory\n");
        return NULL;
    }
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.method = method;
    r.url = url;
    r.headers = hdrs;
    r.body = body;
    r.body_len = body != NULL ? strlen(body) : 0;
    r.timeout_ms = 30000;
    enum cpb_status st = http_perform(cli, &r, &resp);
    if (st != CPB_OK) {
        fprintf(stderr, "cpbserver_json: %s %s: HTTP %ld %s\n", method, path, resp.status,
                resp.error);
    } else {
        doc = json_loadb(resp.body, resp.body_len, 0, &jerr);
        if (doc == NULL) {
            fprintf(stderr, "cpbserver_json: %s %s: not JSON: %s\n", method, path, jerr.text);
        }
    }
    http_response_free(&resp);
    free(url);
    return doc;
}
