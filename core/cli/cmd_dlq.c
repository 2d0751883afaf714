/*
 * cmd_dlq.c — `cpbridge dlq`: the dead-letter queue (DEAD and INVALID
 * orders): list, show, retry and cancel, each order in its own transaction
 * with its audit event.
 *
 * Every text read from the database is untrusted: it is printed through
 * ops_clean (control bytes and invalid UTF-8 escaped, cut to a fixed size).
 * Every value goes into SQL as a bound parameter.
 */
#include "cli/ops_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/host.h"
#include "engine/staging.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/sql.h"

static const char usage_dlq[] =
    "usage: cpbridge dlq PIPELINE list [--json]\n"
    "       cpbridge dlq PIPELINE show ID [--json]\n"
    "       cpbridge dlq PIPELINE retry ID... [--why TEXT]\n"
    "       cpbridge dlq PIPELINE retry --all [--reason CODE] [--why TEXT]\n"
    "       cpbridge dlq PIPELINE cancel ID... --why TEXT\n"
    "\n"
    "The dead-letter queue: DEAD orders (retries exhausted) and INVALID orders\n"
    "(held for review).\n"
    "\n"
    "list    the DEAD and INVALID orders with their last error\n"
    "show    one order's whole story (as `orders show`)\n"
    "retry   put DEAD, INVALID or ROLLED_BACK orders back to PENDING, due now,\n"
    "        attempts 0, error cleared (fix the cause first); for an APPLIED\n"
    "        order whose after-commit steps were given up, queue those steps\n"
    "        again (the order is never created twice)\n"
    "cancel  mark DEAD, INVALID, PENDING or ROLLED_BACK orders CANCELLED: they\n"
    "        are never processed again\n"
    "\n"
    "Each order changes in its own transaction together with its audit event\n"
    "(who: $SUDO_USER, $USER or the login name; why: --why).\n"
    "\n"
    "  --all          retry every DEAD and INVALID order\n"
    "  --reason CODE  with --all: only those whose last error code is CODE\n"
    "  --why TEXT     why, for the audit trail (required for cancel)\n"
    "  --json         list/show: print JSON\n"
    "\n"
    "Exit: 0 done; 64 usage; 65 an order's state does not allow it (nothing\n"
    "done to that order); 66 no such order (nothing done); 69 database\n"
    "unreachable.\n";

enum dlq_action { DLQ_RETRY, DLQ_CANCEL };

/* Why an action does not fit the order's state (written into why[n] with
 * what to do instead), or NULL when it does. */
static const char *dlq_refusal(const struct ops *op, enum dlq_action act, const struct order_row *o,
                               bool *requeue, char *why, size_t n)
{
    const char *s = o->status;
    long long id = (long long)o->id;
    *requeue = false;
    if (act == DLQ_RETRY) {
        if (strcmp(s, ST_DEAD) == 0 || strcmp(s, ST_INVALID) == 0 ||
            strcmp(s, ST_ROLLED_BACK) == 0) {
            return NULL;
        }
        if (strcmp(s, ST_APPLIED) == 0 && o->after_pending == AFTER_GAVE_UP) {
            *requeue = true;
            return NULL;
        }
        if (strcmp(s, ST_PENDING) == 0) {
            snprintf(why, n, "it is already waiting for the next run (nothing to retry)");
        } else if (strcmp(s, ST_APPLIED) == 0) {
            snprintf(why, n,
                     "it is in Counterpoint already; to undo it: `cpbridge rollback %s %lld"
                     " --dry-run` (docs/ROLLBACK.md)",
                     op->path, id);
        } else if (strcmp(s, ST_CANCELLED) == 0) {
            snprintf(why, n,
                     "it was cancelled by hand and stays cancelled; stage it again from the"
                     " store if it must be processed");
        } else {
            snprintf(why, n, "retry takes DEAD, INVALID or ROLLED_BACK orders only");
        }
        return why;
    }
    if (strcmp(s, ST_DEAD) == 0 || strcmp(s, ST_INVALID) == 0 || strcmp(s, ST_PENDING) == 0 ||
        strcmp(s, ST_ROLLED_BACK) == 0) {
        return NULL;
    }
    if (strcmp(s, ST_APPLIED) == 0) {
        snprintf(why, n,
                 "it is in Counterpoint; roll it back first (`cpbridge rollback %s %lld"
                 " --dry-run`, docs/ROLLBACK.md), then cancel it",
                 op->path, id);
    } else if (strcmp(s, ST_CANCELLED) == 0) {
        snprintf(why, n, "it is cancelled already");
    } else {
        snprintf(why, n, "cancel takes DEAD, INVALID, PENDING or ROLLED_BACK orders only");
    }
    return why;
}

/*
 * Retry or cancel one order in its own transaction with its audit event.
 * Returns 0 (done, printed), CPB_EXIT_DATAERR (refused, printed),
 * CPB_EXIT_NOINPUT, or CPB_EXIT_UNAVAILABLE.
 */
static int dlq_one(struct ops *op, int64_t id, enum dlq_action act, const char *actor)
{
    struct order_row o;
    char label[500];
    char when[40];
    bool requeue = false;
    int64_t rows = 0;
    int64_t now = host_now_ms();
    const char *to = act == DLQ_CANCEL ? ST_CANCELLED : ST_PENDING;
    int code = 0;
    enum cpb_status rc = db_begin(op->db);
    if (rc != CPB_OK) {
        return ops_db_failed(op, "starting a transaction");
    }
    code = ops_lock_order(op, id, now, &o);
    if (code != 0) {
        goto out;
    }
    ops_order_label(&o, label, sizeof label);
    char why[600];
    const char *why_not = dlq_refusal(op, act, &o, &requeue, why, sizeof why);
    if (why_not != NULL) {
        code = ops_fail(op, CPB_EXIT_DATAERR, "order %s is %s: %s", label, o.status, why_not);
        goto out;
    }
    if (ops_lease_live(&o, now)) {
        code = ops_fail(op, CPB_EXIT_DATAERR,
                        "order %s is %s and a run is working on it (lease held by %s until %s):"
                        " try again after that run",
                        label, o.status, o.lease_owner,
                        ops_fmt_when(o.lease_until, true, when, sizeof when));
        goto out;
    }
    /* The status read above is repeated in each WHERE: the row lock makes
     * it exact, the guard keeps it so even without one. */
    if (act == DLQ_CANCEL) {
        struct sql_arg a[] = {sql_time(now), sql_int(id), sql_text(o.status)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'CANCELLED', LEASE_TOKEN = NULL,"
                      " LEASE_OWNER = NULL, LEASE_UNTIL = NULL, UPDATED_DT = ?"
                      " WHERE STAGING_ID = ? AND STATUS = ?",
                      a, SQL_NARGS(a), &rows);
    } else if (requeue) {
        to = ST_APPLIED;
        struct sql_arg a[] = {sql_time(now), sql_time(now), sql_int(id)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET AFTER_PENDING = 1, AFTER_ATTEMPTS = 0,"
                      " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL, LAST_ERROR = NULL,"
                      " UPDATED_DT = ? WHERE STAGING_ID = ? AND STATUS = 'APPLIED'"
                      " AND AFTER_PENDING = 2",
                      a, SQL_NARGS(a), &rows);
    } else {
        /* Back to PENDING as if new. A rolled-back order also forgets its old
         * document (the rollback event keeps it) and its after-commit steps,
         * so the next run writes and syncs it afresh. */
        struct sql_arg a[] = {sql_time(now), sql_time(now), sql_int(id), sql_text(o.status)};
        rc = sql_exec(op->db,
                      "UPDATE USER_ORDER_STAGING SET STATUS = 'PENDING', ATTEMPTS = 0,"
                      " NEXT_ATTEMPT_DT = ?, LAST_ERROR_CODE = NULL, LAST_ERROR = NULL,"
                      " LEASE_TOKEN = NULL, LEASE_OWNER = NULL, LEASE_UNTIL = NULL,"
                      " AFTER_PENDING = 0, AFTER_ATTEMPTS = 0, CP_DOC_ID = NULL,"
                      " CP_TKT_NO = NULL, CP_ADOPTED = 0, APPLIED_DT = NULL,"
                      " CHANGED_AFTER_APPLY = 0, UPDATED_DT = ? WHERE STAGING_ID = ?"
                      " AND STATUS = ?",
                      a, SQL_NARGS(a), &rows);
        if (rc == CPB_OK && rows == 1) {
            rc = sql_exec(op->db, "DELETE FROM USER_ORDER_STEP WHERE STAGING_ID = ?",
                          (struct sql_arg[]){sql_int(id)}, 1, NULL);
        }
    }
    if (rc == CPB_OK && rows != 1) {
        code = ops_fail(op, CPB_EXIT_DATAERR, "order %s changed while this ran: look again", label);
        goto out;
    }
    if (rc == CPB_OK) {
        struct staging_event ev = {id,
                                   NULL,
                                   act == DLQ_CANCEL ? "dlq.cancel" : "dlq.retry",
                                   NULL,
                                   o.status,
                                   to,
                                   requeue ? "after.requeue" : NULL,
                                   op->o.why,
                                   actor,
                                   -1};
        rc = staging_event(op->db, &ev, now);
    }
    if (rc == CPB_OK) {
        rc = db_commit(op->db);
    }
    if (rc != CPB_OK) {
        code = ops_db_failed(op, "changing the order");
        goto out;
    }
    if (act == DLQ_CANCEL) {
        printf("order %s: %s -> CANCELLED\n", label, o.status);
    } else if (requeue) {
        printf("order %s: APPLIED, after-commit steps queued again (due now; steps already done"
               " are not repeated)\n",
               label);
    } else {
        printf("order %s: %s -> PENDING, due now, attempts reset%s\n", label, o.status,
               o.changed != 0 ? "; note: the store changed it after it was first applied and"
                                " the stored version is the first one: re-read it from the"
                                " store if the change matters"
                              : "");
    }
out:
    if (db_in_transaction(op->db)) {
        (void)db_rollback(op->db);
    }
    return code;
}

/* The ids of DEAD and INVALID orders (optionally with one error code). */
static int dlq_all_ids(struct ops *op, int64_t **ids, size_t *n)
{
    struct cpb_stmt *st = NULL;
    size_t cap = 0;
    int code = 0;
    enum cpb_status rc;
    *ids = NULL;
    *n = 0;
    if ((op->o.given & OPT_REASON) != 0) {
        rc = sql_query(op->db,
                       "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS IN ('DEAD',"
                       " 'INVALID') AND LAST_ERROR_CODE = ? ORDER BY STAGING_ID",
                       (struct sql_arg[]){sql_text(op->o.reason)}, 1, &st);
    } else {
        rc = sql_query(op->db,
                       "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE STATUS IN ('DEAD',"
                       " 'INVALID') ORDER BY STAGING_ID",
                       NULL, 0, &st);
    }
    if (rc != CPB_OK) {
        code = ops_db_failed(op, "listing the dead letters");
        goto out;
    }
    for (;;) {
        int64_t id = 0;
        rc = db_fetch(st);
        if (rc == CPB_SKIP) {
            break;
        }
        if (rc == CPB_OK) {
            rc = db_col_int(st, 1, &id, NULL);
        }
        if (rc != CPB_OK) {
            code = ops_db_failed(op, "listing the dead letters");
            goto out;
        }
        if (*n == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            int64_t *grown = realloc(*ids, ncap * sizeof **ids);
            if (grown == NULL) {
                code = ops_fail(op, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
            *ids = grown;
            cap = ncap;
        }
        (*ids)[(*n)++] = id;
    }
out:
    db_finalize(st);
    if (code != 0) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return code;
}

static int dlq_act(struct ops *op, enum dlq_action act)
{
    const char *name = act == DLQ_RETRY ? "retry" : "cancel";
    bool all = (op->o.given & OPT_ALL) != 0;
    int64_t *ids = NULL;
    size_t n = 0;
    int code = 0;
    int worst = 0;
    char actor[420];

    if (act == DLQ_CANCEL && all) {
        return ops_usage_error(op->v, "cancel takes order ids, not --all");
    }
    if (act == DLQ_CANCEL && ((op->o.given & OPT_WHY) == 0 || op->o.why[0] == '\0')) {
        return ops_usage_error(op->v, "cancel needs --why TEXT (it goes into the audit trail)");
    }
    if (all && op->o.nargs > 2) {
        return ops_usage_error(op->v, "give order ids or --all, not both");
    }
    if (!all && op->o.nargs < 3) {
        return ops_usage_error(op->v, "%s needs one or more order ids%s", name,
                               act == DLQ_RETRY ? " (or --all)" : "");
    }
    if ((op->o.given & OPT_REASON) != 0 && !all) {
        return ops_usage_error(op->v, "--reason goes with --all");
    }
    if ((op->o.given & OPT_WHY) != 0 && !text_utf8_valid(op->o.why, strlen(op->o.why))) {
        return ops_usage_error(op->v, "--why is not valid UTF-8");
    }
    code = ops_open_or_fail(op);
    if (code != 0) {
        return code;
    }
    if (all) {
        code = dlq_all_ids(op, &ids, &n);
        if (code != 0) {
            return code;
        }
        if (n == 0) {
            printf("nothing to retry: no DEAD or INVALID order%s\n",
                   (op->o.given & OPT_REASON) != 0 ? " with that error code" : "");
        }
    } else {
        /* Resolve every id first: a typo does nothing at all. */
        n = (size_t)(op->o.nargs - 2);
        ids = calloc(n, sizeof *ids);
        if (ids == NULL) {
            return ops_fail(op, CPB_EXIT_SOFTWARE, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            code = ops_resolve_id(op, op->o.args[2 + i], &ids[i]);
            if (code != 0) {
                free(ids);
                return code;
            }
        }
    }
    ops_actor_of(actor, sizeof actor);
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t k = 0; k < i; k++) {
            dup = dup || ids[k] == ids[i];
        }
        if (dup) {
            continue;
        }
        code = dlq_one(op, ids[i], act, actor);
        if (code == 0) {
            done++;
        } else if (code == CPB_EXIT_UNAVAILABLE) {
            worst = code;
            break;
        } else if (worst == 0 || code == CPB_EXIT_DATAERR) {
            worst = code;
        }
    }
    if (n > 1) {
        printf("%s: %zu of %zu order%s done\n", name, done, n, n == 1 ? "" : "s");
    }
    free(ids);
    return worst;
}

static int dlq_list(struct ops *op)
{
    bool json = (op->o.given & OPT_JSON) != 0;
    json_t *arr = json ? json_array() : NULL;
    int code = ops_open_or_fail(op);
    if (code != 0) {
        json_decref(arr);
        return code;
    }
    if (!json) {
        printf("Dead letters (DEAD: retries exhausted; INVALID: held for review):\n");
    }
    code = ops_order_list(op, "WHERE STATUS IN ('DEAD', 'INVALID')", NULL, 0, -1, arr, "none");
    if (code == 0 && json) {
        ops_print_json(arr);
    } else if (code == 0) {
        printf("Show one: cpbridge dlq %s show ID; after fixing the cause: cpbridge dlq %s retry"
               " ID (or --all)\n",
               op->path, op->path);
    }
    json_decref(arr);
    return code;
}

static int cmd_dlq(struct ops *op)
{
    if (op->o.nargs < 2) {
        return ops_usage_error(op->v, "give the pipeline file and list, show, retry or cancel");
    }
    op->path = op->o.args[0];
    const char *sub = op->o.args[1];
    unsigned actions = OPT_ALL | OPT_REASON | OPT_WHY;
    if (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0) {
        if ((op->o.given & actions) != 0) {
            return ops_usage_error(op->v, "--all, --reason and --why go with retry and cancel");
        }
        if (strcmp(sub, "list") == 0) {
            if (op->o.nargs != 2) {
                return ops_usage_error(op->v, "list takes no more arguments");
            }
            return dlq_list(op);
        }
        if (op->o.nargs != 3) {
            return ops_usage_error(op->v, "show takes one order id");
        }
        int code = ops_open_or_fail(op);
        return code != 0 ? code : ops_show_order(op, op->o.args[2]);
    }
    if ((op->o.given & OPT_JSON) != 0 &&
        (strcmp(sub, "retry") == 0 || strcmp(sub, "cancel") == 0)) {
        return ops_usage_error(op->v, "--json goes with list and show");
    }
    if (strcmp(sub, "retry") == 0) {
        return dlq_act(op, DLQ_RETRY);
    }
    if (strcmp(sub, "cancel") == 0) {
        return dlq_act(op, DLQ_CANCEL);
    }
    char shown[64];
    ops_clean(sub, shown, sizeof shown);
    return ops_usage_error(op->v, "unknown subcommand '%s' (list, show, retry, cancel)", shown);
}

const struct verb ops_verb_dlq = {"dlq", usage_dlq,
                                  OPT_HELP | OPT_JSON | OPT_ALL | OPT_REASON | OPT_WHY, cmd_dlq};
