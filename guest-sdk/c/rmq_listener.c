/*
 * The C SDK over the wit-bindgen bindings: message views, outcomes, the handler export, and
 * log/config/producer over the generated imports (see rmq_listener.h).
 */
#define _GNU_SOURCE /* memmem */
#include "rmq_listener.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RMQ_WORLD_FROM_COMPONENTIZE
/* Built without bindings/listener_component_type.o (a binary file; the `plugin new` template does
 * not carry it): the module then has no component-type section and `rmq-wasm plugin componentize`
 * embeds the rmq:listener world itself. This stands in for the symbol the object defines. */
void __component_type_object_force_link_listener(void) {}
#endif

/* ---- views ------------------------------------------------------------------------------- */

rmq_str rmq_str_from(const char *s) {
    return (rmq_str){(const uint8_t *)s, s ? strlen(s) : 0};
}

bool rmq_str_eq(rmq_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

char *rmq_str_dup(rmq_str s) {
    char *copy = malloc(s.len + 1);
    if (copy) {
        if (s.len) memcpy(copy, s.ptr, s.len);
        copy[s.len] = '\0';
    }
    return copy;
}

static rmq_str span(const rmq_message *m, rmq_listener_types_span_t s) {
    return (rmq_str){m->data + s.start, s.len};
}

static rmq_str wit_str(const listener_string_t *s) {
    return (rmq_str){s->ptr, s->len};
}

rmq_str rmq_message_topic(const rmq_message *m) { return span(m, m->raw->topic); }
uint64_t rmq_message_queue_offset(const rmq_message *m) { return m->raw->queue_offset; }
rmq_str rmq_message_msg_id(const rmq_message *m) { return span(m, m->raw->msg_id); }
rmq_str rmq_message_offset_msg_id(const rmq_message *m) { return span(m, m->raw->offset_msg_id); }
rmq_str rmq_message_keys(const rmq_message *m) { return span(m, m->raw->keys); }
rmq_bytes rmq_message_body(const rmq_message *m) { return span(m, m->raw->body); }
uint32_t rmq_message_reconsume_times(const rmq_message *m) { return m->raw->reconsume_times; }
bool rmq_message_is_redelivery(const rmq_message *m) { return m->raw->reconsume_times > 0; }
uint64_t rmq_message_born_timestamp_ms(const rmq_message *m) { return m->raw->born_timestamp; }
uint64_t rmq_message_store_timestamp_ms(const rmq_message *m) { return m->raw->store_timestamp; }
rmq_str rmq_message_born_host(const rmq_message *m) { return span(m, m->raw->born_host); }
rmq_str rmq_message_store_host(const rmq_message *m) { return span(m, m->raw->store_host); }

bool rmq_message_has_key(const rmq_message *m, const char *key) {
    rmq_str keys = rmq_message_keys(m);
    const uint8_t *p = keys.ptr, *end = keys.ptr + keys.len;
    while (p < end) {
        const uint8_t *space = memchr(p, ' ', (size_t)(end - p));
        const uint8_t *stop = space ? space : end;
        if (rmq_str_eq((rmq_str){p, (size_t)(stop - p)}, key)) return true;
        p = stop + 1;
    }
    return false;
}

bool rmq_message_tags(const rmq_message *m, rmq_str *tags) {
    if (!m->raw->tags.is_some) return false;
    *tags = span(m, m->raw->tags.val);
    return true;
}

bool rmq_message_has_tag(const rmq_message *m, const char *tag) {
    rmq_str tags;
    return rmq_message_tags(m, &tags) && rmq_str_eq(tags, tag);
}

rmq_properties rmq_message_properties(const rmq_message *m) {
    rmq_str all = span(m, m->raw->properties);
    return (rmq_properties){all.ptr, all.ptr + all.len};
}

/* RocketMQ's encoding: name U+0001 value U+0002, repeated. */
bool rmq_properties_next(rmq_properties *it, rmq_str *name, rmq_str *value) {
    if (it->next >= it->end) return false;
    const uint8_t *sep = memchr(it->next, 1, (size_t)(it->end - it->next));
    if (!sep) {
        it->next = it->end; /* malformed tail: the host never writes one */
        return false;
    }
    const uint8_t *stop = memchr(sep + 1, 2, (size_t)(it->end - sep - 1));
    if (!stop) stop = it->end;
    *name = (rmq_str){it->next, (size_t)(sep - it->next)};
    *value = (rmq_str){sep + 1, (size_t)(stop - sep - 1)};
    it->next = stop < it->end ? stop + 1 : it->end;
    return true;
}

bool rmq_message_property(const rmq_message *m, const char *name, rmq_str *value) {
    rmq_properties it = rmq_message_properties(m);
    rmq_str n, v;
    while (rmq_properties_next(&it, &n, &v)) {
        if (rmq_str_eq(n, name)) {
            *value = v;
            return true;
        }
    }
    return false;
}

/* UTF-8 validity as Rust's str::from_utf8 defines it (no overlongs, no surrogates, <= U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else return false;
        if (n - i - 1 < need) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        i += need + 1;
    }
    return true;
}

bool rmq_message_body_text(const rmq_message *m, rmq_str *text) {
    rmq_bytes body = rmq_message_body(m);
    if (!valid_utf8(body.ptr, body.len)) return false;
    *text = body;
    return true;
}

bool rmq_message_body_contains(const rmq_message *m, const void *needle, size_t len) {
    rmq_bytes body = rmq_message_body(m);
    if (len == 0) return true;
    /* libc's two-way search: linear, where a first-byte scan + memcmp degrades on bodies that
     * repeat the needle's first byte. */
    return body.len >= len && memmem(body.ptr, body.len, needle, len) != NULL;
}

bool rmq_context_is_orderly(const rmq_context *ctx) { return ctx->mode == RMQ_ORDERLY; }

bool rmq_context_is_last_attempt(const rmq_context *ctx, const rmq_message *m) {
    return rmq_message_reconsume_times(m) >= ctx->max_reconsume_times;
}

/* ---- outcomes ---------------------------------------------------------------------------- */

static const char *const DELAY_LABELS[18] = {"1s", "5s", "10s", "30s", "1m",  "2m",
                                             "3m", "4m", "5m",  "6m",  "7m",  "8m",
                                             "9m", "10m", "20m", "30m", "1h", "2h"};

bool rmq_delay_level_parse(const char *text, rmq_delay_level *level) {
    while (*text == ' ' || *text == '\t') text++;
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t')) n--;
    rmq_str s = {(const uint8_t *)text, n};
    if (n >= 1 && n <= 2 && text[0] >= '0' && text[0] <= '9' &&
        (n == 1 || (text[1] >= '0' && text[1] <= '9'))) {
        unsigned v = (unsigned)(text[0] - '0');
        if (n == 2) v = v * 10 + (unsigned)(text[1] - '0');
        if (v < 1 || v > 18) return false;
        *level = (rmq_delay_level)v;
        return true;
    }
    for (unsigned i = 0; i < 18; i++) {
        if (rmq_str_eq(s, DELAY_LABELS[i])) {
            *level = (rmq_delay_level)(i + 1);
            return true;
        }
    }
    return false;
}

struct rmq_outcomes {
    rmq_listener_types_message_outcome_t *items;
    size_t count;
    bool failed;
    char *error;
};

typedef rmq_listener_types_message_outcome_t wit_outcome;

static wit_outcome *slot(rmq_outcomes *out, size_t i) {
    if (i >= out->count) return NULL; /* like the host: extra outcomes are ignored */
    wit_outcome *o = &out->items[i];
    rmq_listener_types_message_outcome_free(o);
    return o;
}

void rmq_success(rmq_outcomes *out, size_t i) {
    wit_outcome *o = slot(out, i);
    if (o) *o = (wit_outcome){.tag = RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_SUCCESS};
}

void rmq_retry(rmq_outcomes *out, size_t i) {
    wit_outcome *o = slot(out, i);
    if (o) *o = (wit_outcome){.tag = RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_RETRY_LATER};
}

void rmq_retry_after(rmq_outcomes *out, size_t i, rmq_delay_level level) {
    wit_outcome *o = slot(out, i);
    if (!o) return;
    *o = (wit_outcome){.tag = RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_RETRY_LATER};
    o->val.retry_later.is_some = true;
    o->val.retry_later.val = level;
}

void rmq_dead_letter(rmq_outcomes *out, size_t i, const char *reason) {
    wit_outcome *o = slot(out, i);
    if (!o) return;
    *o = (wit_outcome){.tag = RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_DEAD_LETTER};
    if (reason) {
        o->val.dead_letter.is_some = true;
        listener_string_dup(&o->val.dead_letter.val, reason);
    }
}

static char *vformat(const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

bool rmq_fail(rmq_outcomes *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    free(out->error);
    out->error = vformat(fmt, ap);
    va_end(ap);
    out->failed = true;
    return false;
}

/* ---- the export -------------------------------------------------------------------------- */

static rmq_context context_view(const rmq_listener_types_consume_context_t *c) {
    return (rmq_context){
        .mode = (rmq_consume_mode)c->mode,
        .consumer_group = wit_str(&c->consumer_group),
        .queue = {wit_str(&c->queue.topic), wit_str(&c->queue.broker_name), c->queue.queue_id},
        .max_reconsume_times = c->max_reconsume_times,
    };
}

static void set_error(exports_rmq_listener_handler_listener_error_t *err, const char *message) {
    listener_string_dup(&err->message, message ? message : "listener failed (out of memory)");
}

/* The generated export: the arguments are ours to free; the result is freed by the generated
 * post-return (on Wasm) or by the testing helper (natively). */
bool exports_rmq_listener_handler_consume(exports_rmq_listener_handler_consume_context_t *ctx,
                                          exports_rmq_listener_handler_batch_t *batch,
                                          exports_rmq_listener_handler_list_message_outcome_t *ret,
                                          exports_rmq_listener_handler_listener_error_t *err) {
    size_t count = batch->messages.len;
    /* calloc'd records are retry-later(none): tag 1 set below, option none = zeroed. */
    wit_outcome *items = count ? calloc(count, sizeof *items) : NULL;
    rmq_message *msgs = count ? malloc(count * sizeof *msgs) : NULL;
    bool ok;
    if (count && (!items || !msgs)) {
        free(items);
        set_error(err, "listener: out of memory for the batch's outcomes");
        ok = false;
    } else {
        for (size_t i = 0; i < count; i++) {
            items[i].tag = RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_RETRY_LATER;
            msgs[i] = (rmq_message){&batch->messages.ptr[i], batch->data.ptr};
        }
        rmq_outcomes out = {items, count, false, NULL};
        rmq_context view = context_view(ctx);
        ok = rmq_exported_listener(&view, msgs, count, &out) && !out.failed;
        if (ok) {
            ret->ptr = items;
            ret->len = count;
        } else {
            exports_rmq_listener_handler_list_message_outcome_t discard = {items, count};
            exports_rmq_listener_handler_list_message_outcome_free(&discard);
            set_error(err, out.failed ? out.error : "listener returned false without rmq_fail");
        }
        free(out.error);
    }
    free(msgs);
    exports_rmq_listener_handler_batch_free(batch);
    exports_rmq_listener_handler_consume_context_free(ctx);
    return ok;
}

/* ---- host: log, config, producer --------------------------------------------------------- */

void rmq_log(rmq_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    if (!line) return;
    listener_string_t s = {(uint8_t *)line, strlen(line)};
    rmq_listener_log_log((rmq_listener_log_level_t)level, &s);
    free(line);
}

char *rmq_config_get(const char *key) {
    listener_string_t k = {(uint8_t *)key, strlen(key)}, value;
    if (!rmq_listener_config_get(&k, &value)) return NULL;
    char *copy = rmq_str_dup(wit_str(&value));
    listener_string_free(&value);
    return copy;
}

void rmq_config_all(rmq_config *config) {
    rmq_listener_config_all(&config->raw_);
    size_t n = config->raw_.len;
    rmq_config_pair *pairs = n ? malloc(n * sizeof *pairs) : NULL;
    for (size_t i = 0; pairs && i < n; i++)
        pairs[i] = (rmq_config_pair){wit_str(&config->raw_.ptr[i].f0),
                                     wit_str(&config->raw_.ptr[i].f1)};
    config->pairs = pairs;
    config->count = pairs ? n : 0;
}

void rmq_config_free(rmq_config *config) {
    free((void *)config->pairs);
    listener_list_tuple2_string_string_free(&config->raw_);
    *config = (rmq_config){0};
}

static listener_string_t borrow(rmq_str s) { return (listener_string_t){(uint8_t *)s.ptr, s.len}; }

bool rmq_send(const rmq_outgoing *msg, rmq_send_result *result) {
    *result = (rmq_send_result){0};
    listener_string_t *keys = msg->key_count ? malloc(msg->key_count * sizeof *keys) : NULL;
    listener_tuple2_string_string_t *props =
        msg->property_count ? malloc(msg->property_count * sizeof *props) : NULL;
    if ((msg->key_count && !keys) || (msg->property_count && !props)) {
        free(keys);
        free(props);
        result->error = RMQ_PRODUCE_INVALID;
        result->detail = rmq_str_from("out of memory");
        return false;
    }
    for (size_t i = 0; i < msg->key_count; i++) keys[i] = borrow(msg->keys[i]);
    for (size_t i = 0; i < msg->property_count; i++)
        props[i] = (listener_tuple2_string_string_t){borrow(msg->properties[i].name),
                                                     borrow(msg->properties[i].value)};
    rmq_listener_producer_outgoing_message_t wit = {
        .topic = borrow(msg->topic),
        .tags = {msg->has_tags, borrow(msg->has_tags ? msg->tags : (rmq_str){0})},
        .keys = {keys, msg->key_count},
        .properties = {props, msg->property_count},
        .body = {(uint8_t *)msg->body.ptr, msg->body.len},
    };
    rmq_listener_producer_result_send_receipt_produce_error_t *raw = &result->raw_;
    raw->is_err = !rmq_listener_producer_send(&wit, &raw->val.ok, &raw->val.err);
    free(keys);
    free(props);
    if (raw->is_err) {
        const rmq_listener_producer_produce_error_t *e = &raw->val.err;
        result->error = (rmq_produce_error)e->tag;
        if (e->tag != RMQ_LISTENER_PRODUCER_PRODUCE_ERROR_TIMEOUT)
            result->detail = wit_str(&e->val.invalid); /* the union's three strings alias */
        return false;
    }
    const rmq_listener_producer_send_receipt_t *r = &raw->val.ok;
    result->ok = true;
    result->status = (rmq_send_status)r->status;
    result->msg_id = wit_str(&r->msg_id);
    result->offset_msg_id = wit_str(&r->offset_msg_id);
    result->queue = (rmq_queue){wit_str(&r->queue.topic), wit_str(&r->queue.broker_name),
                                r->queue.queue_id};
    result->queue_offset = r->queue_offset;
    return true;
}

void rmq_send_result_free(rmq_send_result *result) {
    rmq_listener_producer_result_send_receipt_produce_error_free(&result->raw_);
    *result = (rmq_send_result){0};
}
