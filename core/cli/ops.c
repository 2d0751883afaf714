/*
 * ops.c — the operations commands (see ops.h): the table of them, their
 * shared command line, and ops_main. Each command lives in its own file
 * (cmd_health.c, cmd_status.c, cmd_orders.c, cmd_dlq.c, cmd_rollback.c,
 * cmd_drift.c, cmd_report.c); what they share is in ops_common.c. Each
 * reads the pipeline file with config_load (no stage is loaded), connects
 * with db_connect, and prints for a person, or JSON with --json.
 */
#include "cli/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/ops_common.h"
#include "engine/config.h"
#include "engine/host.h"
#include "lib/err.h"
#include "services/db.h"

static const struct option long_opts[] = {{"help", no_argument, NULL, 'h'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"state", required_argument, NULL, 's'},
                                          {"changed", no_argument, NULL, 'c'},
                                          {"limit", required_argument, NULL, 'l'},
                                          {"all", no_argument, NULL, 'a'},
                                          {"reason", required_argument, NULL, 'r'},
                                          {"why", required_argument, NULL, 'w'},
                                          {"dry-run", no_argument, NULL, 'n'},
                                          {"force", no_argument, NULL, 'f'},
                                          {"fix", no_argument, NULL, 'x'},
                                          {"nagios", no_argument, NULL, 'g'},
                                          {"since", required_argument, NULL, 'S'},
                                          {"output", required_argument, NULL, 'o'},
                                          {NULL, 0, NULL, 0}};

static int parse_opts(const struct verb *v, int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    optind = 0; /* GNU: start over (ops_main may run more than once) */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":ho:", long_opts, NULL);
        unsigned bit = 0;
        if (c == -1) {
            break;
        }
        switch (c) {
        case 'h':
            bit = OPT_HELP;
            break;
        case 'j':
            bit = OPT_JSON;
            break;
        case 's':
            bit = OPT_STATE;
            o->state = optarg;
            break;
        case 'c':
            bit = OPT_CHANGED;
            break;
        case 'l':
            bit = OPT_LIMIT;
            o->limit = optarg;
            break;
        case 'a':
            bit = OPT_ALL;
            break;
        case 'r':
            bit = OPT_REASON;
            o->reason = optarg;
            break;
        case 'w':
            bit = OPT_WHY;
            o->why = optarg;
            break;
        case 'n':
            bit = OPT_DRY_RUN;
            break;
        case 'f':
            bit = OPT_FORCE;
            break;
        case 'x':
            bit = OPT_FIX;
            break;
        case 'g':
            bit = OPT_NAGIOS;
            break;
        case 'S':
            bit = OPT_SINCE;
            o->since = optarg;
            break;
        case 'o':
            bit = OPT_OUTPUT;
            o->output = optarg;
            break;
        case ':':
            return ops_usage_error(v, "option %s needs a value", argv[optind - 1]);
        default:
            return ops_usage_error(v, "unknown option %s", argv[optind - 1]);
        }
        if ((v->allowed & bit) == 0) {
            return ops_usage_error(v, "option %s does not apply to `cpbridge %s`", argv[optind - 1],
                                   v->name);
        }
        o->given |= bit;
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    return 0;
}

/* ---- entry ------------------------------------------------------------------- */

static const struct verb *const verbs[] = {&ops_verb_health, &ops_verb_status,   &ops_verb_orders,
                                           &ops_verb_dlq,    &ops_verb_rollback, &ops_verb_drift,
                                           &ops_verb_report, &ops_verb_records};

static const struct verb *find_verb(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(verbs[i]->name, name) == 0) {
            return verbs[i];
        }
    }
    return NULL;
}

bool ops_has(const char *verb)
{
    return find_verb(verb) != NULL;
}

int ops_main(const char *verb, int argc, char **argv)
{
    const struct verb *v = find_verb(verb);
    struct ops op;
    int code;
    if (v == NULL) {
        fprintf(stderr, "cpbridge: '%s' is not an operations command\n", verb != NULL ? verb : "");
        return CPB_EXIT_USAGE;
    }
    memset(&op, 0, sizeof op);
    op.v = v;
    code = parse_opts(v, argc, argv, &op.o);
    if (code != 0) {
        return code;
    }
    if ((op.o.given & OPT_HELP) != 0) {
        fputs(v->usage, stdout);
        return CPB_EXIT_OK;
    }
    op.now = host_now_ms();
    code = v->run(&op);
    fflush(stdout);
    db_close(op.db);
    config_free(op.cfg);
    return code;
}
