/*
 * Retries messages matching a configured condition, with a delay level (plugins/filter in C).
 *
 * Config (at least one condition):
 * - `tag`: retry messages with this tag;
 * - `body-contains`: retry messages whose body contains this text (compared as bytes, so a body
 *   need not be valid UTF-8);
 * - `delay-level`: 1..=18 or a label (`10s`, `1m`, ...); unset = the broker's default;
 * - `dead-letter-after`: once a matching message was redelivered this often, send it to the DLQ
 *   instead of retrying again;
 * - `accept-after`: once a matching message was redelivered this often, accept it (hold it back
 *   for a while, then consume it); `dead-letter-after` wins when both are reached.
 *
 * Everything else succeeds. A config error fails the batch (listener-error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_listener.h"

/* Parses a u32 config value; false when `text` is not a plain decimal number in range. */
static bool parse_u32(const char *text, uint32_t *value) {
    if (!*text) return false;
    unsigned long long v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (unsigned long long)(*p - '0');
        if (v > UINT32_MAX) return false;
    }
    *value = (uint32_t)v;
    return true;
}

static bool consume(const rmq_context *ctx, const rmq_message *msgs, size_t count,
                    rmq_outcomes *out) {
    (void)ctx;
    bool ok = false;
    char *tag = rmq_config_get("tag");
    char *needle = rmq_config_get("body-contains");
    char *delay_text = rmq_config_get("delay-level");
    char *limit_text = rmq_config_get("dead-letter-after");
    char *accept_text = rmq_config_get("accept-after");
    rmq_delay_level delay = 0;
    uint32_t limit = 0, accept = 0;
    if (!tag && !needle) {
        rmq_fail(out, "filter: configure `tag` and/or `body-contains`");
    } else if (delay_text && !rmq_delay_level_parse(delay_text, &delay)) {
        rmq_fail(out,
                 "config delay-level = \"%s\": invalid delay level: expected 1..=18 or one of "
                 "1s 5s 10s 30s 1m .. 10m 20m 30m 1h 2h",
                 delay_text);
    } else if (limit_text && !parse_u32(limit_text, &limit)) {
        rmq_fail(out, "config dead-letter-after = \"%s\": expected a whole number", limit_text);
    } else if (accept_text && !parse_u32(accept_text, &accept)) {
        rmq_fail(out, "config accept-after = \"%s\": expected a whole number", accept_text);
    } else {
        size_t needle_len = needle ? strlen(needle) : 0;
        for (size_t i = 0; i < count; i++) {
            const rmq_message *m = &msgs[i];
            bool matches = (tag && rmq_message_has_tag(m, tag)) ||
                           (needle && rmq_message_body_contains(m, needle, needle_len));
            uint32_t redeliveries = rmq_message_reconsume_times(m);
            if (!matches) {
                rmq_success(out, i);
            } else if (limit_text && redeliveries >= limit) {
                char reason[80];
                snprintf(reason, sizeof reason, "filter: still matching after %u redeliveries",
                         (unsigned)redeliveries);
                rmq_dead_letter(out, i, reason);
            } else if (accept_text && redeliveries >= accept) {
                rmq_success(out, i);
            } else if (delay_text) {
                rmq_retry_after(out, i, delay);
            } else {
                rmq_retry(out, i);
            }
        }
        ok = true;
    }
    free(tag);
    free(needle);
    free(delay_text);
    free(limit_text);
    free(accept_text);
    return ok;
}

RMQ_EXPORT_LISTENER(consume)
