/*
 * alerts.c — alert throttling (see alerts.h).
 */
#include "engine/alerts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/staging.h"
#include "lib/buf.h"
#include "lib/text.h"
#include "services/log.h"
#include "services/sql.h"

#define KEY_PREFIX "alert/"

static char *make_key(const struct alert_store *s, const char *event, int64_t order_id,
                      const char *reason)
{
    struct buf b = BUF_INIT;
    buf_addf(&b, KEY_PREFIX "%s/%s/", s->pipeline, event);
    if (order_id > 0) {
        buf_addf(&b, "%lld/", (long long)order_id);
    }
    buf_adds(&b, reason != NULL ? reason : "");
    /* USER_SYNC_STATE.STATE_KEY is 200 characters. */
    if (b.len > 200) {
        b.data[200] = '\0';
        b.len = 200;
    }
    return buf_take(&b);
}

/* The fallback file's object (new reference; an empty object if absent). */
static json_t *file_load(const struct alert_store *s)
{
    json_t *o = NULL;
    if (s->file != NULL) {
        o = json_load_file(s->file, 0, NULL);
    }
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    return o;
}

static void file_save(const struct alert_store *s, json_t *o)
{
    char tmp[4200];
    if (s->file == NULL || snprintf(tmp, sizeof tmp, "%s.tmp", s->file) >= (int)sizeof tmp) {
        return;
    }
    if (json_dump_file(o, tmp, JSON_COMPACT) != 0 || rename(tmp, s->file) != 0) {
        log_msg(CPB_LOG_WARN, NULL, 0, "could not save alert state to %s: %s", s->file,
                strerror(errno));
        unlink(tmp);
    }
}

/* When the key was last delivered (ms), or -1. */
static int64_t last_sent(const struct alert_store *s, json_t *file_state, const char *key)
{
    if (s->db == NULL) {
        json_t *v = json_object_get(file_state, key);
        return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    }
    char *value = NULL;
    int64_t ms = -1;
    if (staging_state_get(s->db, key, &value) == CPB_OK && value != NULL) {
        if (text_parse_int(value, &ms) != 0) {
            ms = -1;
        }
    }
    free(value);
    return ms;
}

static bool throttled(const struct alert_store *s, json_t *file_state, const char *key,
                      int64_t now)
{
    int64_t sent = last_sent(s, file_state, key);
    return sent >= 0 && now - sent < s->throttle_ms;
}

json_t *alerts_filter(const struct alert_store *s, json_t *events, int64_t now)
{
    json_t *keys = json_object();
    json_t *file_state = s->db == NULL ? file_load(s) : NULL;
    const char *name;
    json_t *ev;
    void *tmp;
    if (keys == NULL) {
        json_decref(file_state);
        return NULL;
    }
    json_object_foreach_safe(events, tmp, name, ev)
    {
        json_t *list = json_array();
        json_t *orders = json_object_get(ev, "orders");
        json_t *details = json_object_get(ev, "details");
        json_t *kept = json_array();
        size_t i;
        json_t *item;
        if (strcmp(name, "run.summary") == 0) {
            json_decref(list);
            json_decref(kept);
            continue;
        }
        json_array_foreach(orders, i, item)
        {
            json_int_t id = json_integer_value(json_object_get(item, "id"));
            char *key = make_key(s, name, (int64_t)id,
                                 json_string_value(json_object_get(item, "reason")));
            if (key != NULL && !throttled(s, file_state, key, now)) {
                json_array_append(kept, item);
                json_array_append_new(list, json_string(key));
            }
            free(key);
        }
        size_t n_orders = json_array_size(orders);
        json_object_set(ev, "orders", kept);
        json_decref(kept);
        if (n_orders == 0 && json_array_size(details) > 0) {
            /* An event about the pipeline, not an order: one key for its
             * first reason. */
            json_t *d0 = json_array_get(details, 0);
            char *key = make_key(s, name, 0, json_string_value(json_object_get(d0, "reason")));
            if (key != NULL && !throttled(s, file_state, key, now)) {
                json_array_append_new(list, json_string(key));
            } else {
                json_array_clear(details);
            }
            free(key);
        }
        if (json_array_size(json_object_get(ev, "orders")) == 0 &&
            json_array_size(details) == 0) {
            log_msg(CPB_LOG_INFO, NULL, 0, "alert %s already sent within %lld s; not repeated",
                    name, (long long)(s->throttle_ms / 1000));
            json_object_del(events, name);
            json_decref(list);
            continue;
        }
        json_object_set_new(keys, name, list);
    }
    json_decref(file_state);
    return keys;
}

void alerts_record(const struct alert_store *s, json_t *keys, int64_t now)
{
    size_t i;
    json_t *k;
    char value[32];
    snprintf(value, sizeof value, "%lld", (long long)now);
    if (s->db == NULL) {
        json_t *state = file_load(s);
        json_array_foreach(keys, i, k)
        {
            json_object_set_new(state, json_string_value(k), json_integer((json_int_t)now));
        }
        file_save(s, state);
        json_decref(state);
        return;
    }
    json_array_foreach(keys, i, k)
    {
        if (staging_state_set(s->db, json_string_value(k), value, now) != CPB_OK) {
            log_msg(CPB_LOG_WARN, NULL, 0, "could not record alert %s: %s", json_string_value(k),
                    db_last_error(s->db));
        }
    }
}

void alerts_prune(const struct alert_store *s, int64_t before)
{
    struct buf like = BUF_INIT;
    if (s->db == NULL) {
        return;
    }
    /* The pipeline name may hold '_', a LIKE wildcard: escape it. */
    buf_adds(&like, KEY_PREFIX);
    for (const char *c = s->pipeline; *c != '\0'; c++) {
        if (*c == '_' || *c == '%' || *c == '!') {
            buf_adds(&like, "!");
        }
        buf_add(&like, c, 1);
    }
    buf_adds(&like, "/%");
    struct sql_arg a[] = {sql_text(buf_str(&like)), sql_time(before)};
    if (sql_exec(s->db,
                 "DELETE FROM USER_SYNC_STATE WHERE STATE_KEY LIKE ? ESCAPE '!'"
                 " AND UPDATED_DT < ?",
                 a, SQL_NARGS(a), NULL) != CPB_OK) {
        log_msg(CPB_LOG_WARN, NULL, 0, "could not prune alert state: %s", db_last_error(s->db));
    }
    buf_free(&like);
}
