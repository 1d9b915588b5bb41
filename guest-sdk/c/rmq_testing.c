/*
 * Native fake host and batch builder (see rmq_testing.h).
 *
 * The generated bindings (bindings/listener.c) are compiled into this file, with their import
 * wrappers (log, config, producer: Wasm ABI glue, meaningless natively) renamed out of the way;
 * the fake host below defines those names instead. A native test build therefore links
 * rmq_testing.c and rmq_listener.c, not bindings/listener.c.
 */
#include "rmq_testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define rmq_listener_log_log rmq_wasm_glue_log_log
#define rmq_listener_config_get rmq_wasm_glue_config_get
#define rmq_listener_config_all rmq_wasm_glue_config_all
#define rmq_listener_producer_send rmq_wasm_glue_producer_send
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas" /* gcc and clang name the options differently */
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wattributes"
#pragma GCC diagnostic ignored "-Wunknown-attributes"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "bindings/listener.c"
#pragma GCC diagnostic pop
#undef rmq_listener_log_log
#undef rmq_listener_config_get
#undef rmq_listener_config_all
#undef rmq_listener_producer_send

/* The symbol listener_component_type.o defines on Wasm (the world's type, for componentizing). */
void __component_type_object_force_link_listener(void) {}

/* The Wasm imports the renamed glue calls; never reached natively. */
static void no_wasm_host(void) {
    fprintf(stderr, "rmq_testing: a Wasm import was called natively\n");
    abort();
}
void __wasm_import_rmq_listener_log_log(int32_t a, uint8_t *b, size_t c) {
    (void)a, (void)b, (void)c;
    no_wasm_host();
}
void __wasm_import_rmq_listener_config_get(uint8_t *a, size_t b, uint8_t *c) {
    (void)a, (void)b, (void)c;
    no_wasm_host();
}
void __wasm_import_rmq_listener_config_all(uint8_t *a) {
    (void)a;
    no_wasm_host();
}
void __wasm_import_rmq_listener_producer_send(uint8_t *a, size_t b, int32_t c, uint8_t *d,
                                              size_t e, uint8_t *f, size_t g, uint8_t *h,
                                              size_t i, uint8_t *j, size_t k, uint8_t *l) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g, (void)h, (void)i, (void)j;
    (void)k, (void)l;
    no_wasm_host();
}

int rmq_test_failed_checks;

/* ---- the fake host's state (tests are single-threaded C programs) ------------------------- */

typedef struct log_line {
    rmq_level level;
    char *text;
} log_line;

static struct {
    listener_tuple2_string_string_t *config;
    size_t config_count;
    log_line *logs;
    size_t log_count;
    rmq_listener_producer_outgoing_message_t *sent;
    size_t sent_count;
    bool sends_fail;
    rmq_produce_error send_error;
    char *send_detail;
} host;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "rmq_testing: out of memory\n");
        abort();
    }
    return q;
}

/* NULL for no items: the generated free functions free a list only when its length is not 0. */
static void *xarray(size_t count, size_t size) { return count ? xrealloc(NULL, count * size) : NULL; }

static char *xdup_n(const void *s, size_t n) {
    char *copy = xrealloc(NULL, n + 1);
    if (n) memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

static char *xdup(const char *s) { return xdup_n(s ? s : "", s ? strlen(s) : 0); }

static void dup_string(listener_string_t *out, const listener_string_t *in) {
    out->ptr = (uint8_t *)xdup_n(in->ptr, in->len);
    out->len = in->len;
}

static int compare_key(const void *a, const void *b) {
    const listener_tuple2_string_string_t *x = a, *y = b;
    size_t n = x->f0.len < y->f0.len ? x->f0.len : y->f0.len;
    int c = memcmp(x->f0.ptr, y->f0.ptr, n);
    return c ? c : (x->f0.len > y->f0.len) - (x->f0.len < y->f0.len);
}

void rmq_test_config(const char *key, const char *value) {
    for (size_t i = 0; i < host.config_count; i++) {
        if (rmq_str_eq((rmq_str){host.config[i].f0.ptr, host.config[i].f0.len}, key)) {
            listener_string_free(&host.config[i].f1);
            listener_string_dup(&host.config[i].f1, value);
            return;
        }
    }
    host.config = xrealloc(host.config, (host.config_count + 1) * sizeof *host.config);
    listener_tuple2_string_string_t *pair = &host.config[host.config_count++];
    listener_string_dup(&pair->f0, key);
    listener_string_dup(&pair->f1, value);
    qsort(host.config, host.config_count, sizeof *host.config, compare_key);
}

void rmq_test_fail_sends(rmq_produce_error error, const char *detail) {
    host.sends_fail = true;
    host.send_error = error;
    free(host.send_detail);
    host.send_detail = xdup(detail);
}

void rmq_test_reset(void) {
    listener_list_tuple2_string_string_t config = {host.config, host.config_count};
    listener_list_tuple2_string_string_free(&config);
    for (size_t i = 0; i < host.log_count; i++) free(host.logs[i].text);
    free(host.logs);
    for (size_t i = 0; i < host.sent_count; i++)
        rmq_listener_producer_outgoing_message_free(&host.sent[i]);
    free(host.sent);
    free(host.send_detail);
    memset(&host, 0, sizeof host);
}

size_t rmq_test_log_count(void) { return host.log_count; }

const char *rmq_test_log_line(size_t i, rmq_level *level) {
    if (i >= host.log_count) return NULL;
    if (level) *level = host.logs[i].level;
    return host.logs[i].text;
}

size_t rmq_test_sent_count(void) { return host.sent_count; }

const rmq_listener_producer_outgoing_message_t *rmq_test_sent(size_t i) {
    return i < host.sent_count ? &host.sent[i] : NULL;
}

/* ---- the generated imports, answered by the fake host ------------------------------------- */

void rmq_listener_log_log(rmq_listener_log_level_t level, listener_string_t *message) {
    host.logs = xrealloc(host.logs, (host.log_count + 1) * sizeof *host.logs);
    host.logs[host.log_count++] = (log_line){(rmq_level)level, xdup_n(message->ptr, message->len)};
}

bool rmq_listener_config_get(listener_string_t *key, listener_string_t *ret) {
    for (size_t i = 0; i < host.config_count; i++) {
        const listener_string_t *k = &host.config[i].f0;
        if (k->len == key->len && memcmp(k->ptr, key->ptr, key->len) == 0) {
            dup_string(ret, &host.config[i].f1);
            return true;
        }
    }
    return false;
}

void rmq_listener_config_all(listener_list_tuple2_string_string_t *ret) {
    ret->len = host.config_count;
    ret->ptr = xarray(host.config_count, sizeof *ret->ptr);
    for (size_t i = 0; i < host.config_count; i++) {
        dup_string(&ret->ptr[i].f0, &host.config[i].f0);
        dup_string(&ret->ptr[i].f1, &host.config[i].f1);
    }
}

bool rmq_listener_producer_send(rmq_listener_producer_outgoing_message_t *msg,
                                rmq_listener_producer_send_receipt_t *ret,
                                rmq_listener_producer_produce_error_t *err) {
    if (host.sends_fail) {
        err->tag = (uint8_t)host.send_error;
        if (host.send_error != RMQ_PRODUCE_TIMEOUT)
            listener_string_dup(&err->val.invalid, host.send_detail);
        return false;
    }
    /* Keep a deep copy: the caller keeps ownership of what it passed (the canonical ABI's
     * borrowed parameters). */
    rmq_listener_producer_outgoing_message_t copy = {0};
    dup_string(&copy.topic, &msg->topic);
    copy.tags.is_some = msg->tags.is_some;
    if (msg->tags.is_some) dup_string(&copy.tags.val, &msg->tags.val);
    copy.keys.len = msg->keys.len;
    copy.keys.ptr = xarray(msg->keys.len, sizeof *copy.keys.ptr);
    for (size_t i = 0; i < msg->keys.len; i++) dup_string(&copy.keys.ptr[i], &msg->keys.ptr[i]);
    copy.properties.len = msg->properties.len;
    copy.properties.ptr = xarray(msg->properties.len, sizeof *copy.properties.ptr);
    for (size_t i = 0; i < msg->properties.len; i++) {
        dup_string(&copy.properties.ptr[i].f0, &msg->properties.ptr[i].f0);
        dup_string(&copy.properties.ptr[i].f1, &msg->properties.ptr[i].f1);
    }
    copy.body.len = msg->body.len;
    copy.body.ptr = xarray(msg->body.len, 1);
    if (msg->body.len) memcpy(copy.body.ptr, msg->body.ptr, msg->body.len);

    char id[40];
    snprintf(id, sizeof id, "FAKE%016zX", host.sent_count);
    *ret = (rmq_listener_producer_send_receipt_t){.status = RMQ_LISTENER_PRODUCER_SEND_STATUS_OK,
                                                  .queue_offset = host.sent_count};
    listener_string_dup(&ret->msg_id, id);
    listener_string_dup(&ret->offset_msg_id, id);
    dup_string(&ret->queue.topic, &msg->topic);
    listener_string_dup(&ret->queue.broker_name, "fake-broker");
    host.sent = xrealloc(host.sent, (host.sent_count + 1) * sizeof *host.sent);
    host.sent[host.sent_count++] = copy;
    return true;
}

/* ---- the batch, laid out as the host lays it out ----------------------------------------- */

typedef struct buffer {
    uint8_t *ptr;
    size_t len;
} buffer;

static rmq_listener_types_span_t append(buffer *b, const void *bytes, size_t len) {
    rmq_listener_types_span_t s = {(uint32_t)b->len, (uint32_t)len};
    if (!len) return s; /* an empty batch's data stays NULL, as the generated free expects */
    b->ptr = xrealloc(b->ptr, b->len + len);
    memcpy(b->ptr + b->len, bytes, len);
    b->len += len;
    return s;
}

static rmq_listener_types_span_t append_str(buffer *b, const char *s) {
    return append(b, s ? s : "", s ? strlen(s) : 0);
}

static int compare_property(const void *a, const void *b) {
    return strcmp(((const rmq_test_property *)a)->name, ((const rmq_test_property *)b)->name);
}

rmq_listener_types_batch_t rmq_test_batch(const rmq_test_message *msgs, size_t count) {
    buffer data = {0};
    rmq_listener_types_message_t *records = xarray(count, sizeof *records);
    for (size_t i = 0; i < count; i++) {
        const rmq_test_message *m = &msgs[i];
        rmq_listener_types_message_t *r = &records[i];
        *r = (rmq_listener_types_message_t){
            .queue_offset = m->queue_offset,
            .born_timestamp = m->born_timestamp_ms,
            .store_timestamp = m->store_timestamp_ms,
            .reconsume_times = m->reconsume_times,
        };
        r->topic = append_str(&data, m->topic);
        r->offset_msg_id = append_str(&data, m->offset_msg_id);
        r->msg_id = m->msg_id && *m->msg_id ? append_str(&data, m->msg_id) : r->offset_msg_id;
        r->keys = append_str(&data, m->keys);
        r->tags.is_some = m->tags != NULL;
        if (m->tags) r->tags.val = append_str(&data, m->tags);
        /* name U+0001 value U+0002, sorted by name (a message's properties are a map). */
        rmq_test_property *sorted = xrealloc(NULL, m->property_count * sizeof *sorted);
        if (m->property_count) memcpy(sorted, m->properties, m->property_count * sizeof *sorted);
        qsort(sorted, m->property_count, sizeof *sorted, compare_property);
        r->properties.start = (uint32_t)data.len;
        for (size_t p = 0; p < m->property_count; p++) {
            append_str(&data, sorted[p].name);
            append(&data, "\1", 1);
            append_str(&data, sorted[p].value);
            append(&data, "\2", 1);
        }
        r->properties.len = (uint32_t)(data.len - r->properties.start);
        free(sorted);
        size_t body_len = m->body_len ? m->body_len : (m->body ? strlen(m->body) : 0);
        r->body = append(&data, m->body ? m->body : "", body_len);
        r->born_host = append_str(&data, m->born_host);
        r->store_host = append_str(&data, m->store_host);
    }
    return (rmq_listener_types_batch_t){{records, count}, {data.ptr, data.len}};
}

static rmq_listener_types_consume_context_t wit_context(const rmq_test_context *ctx) {
    static const rmq_test_context defaults = {0};
    if (!ctx) ctx = &defaults;
    rmq_listener_types_consume_context_t c = {
        .mode = (rmq_listener_types_consume_mode_t)ctx->mode,
        .max_reconsume_times = ctx->max_reconsume_times ? ctx->max_reconsume_times : 16,
    };
    listener_string_dup(&c.consumer_group, ctx->consumer_group ? ctx->consumer_group : "test-group");
    listener_string_dup(&c.queue.topic, ctx->topic ? ctx->topic : "test-topic");
    listener_string_dup(&c.queue.broker_name, ctx->broker_name ? ctx->broker_name : "test-broker");
    c.queue.queue_id = ctx->queue_id;
    return c;
}

rmq_test_result rmq_test_consume(rmq_handler listener, const rmq_test_context *ctx,
                                 const rmq_test_message *msgs, size_t count) {
    rmq_handler registered = rmq_exported_listener;
    if (listener) rmq_exported_listener = listener;
    /* Both arguments are handed over: the export frees them, as it does on Wasm. */
    rmq_listener_types_consume_context_t c = wit_context(ctx);
    rmq_listener_types_batch_t batch = rmq_test_batch(msgs, count);
    exports_rmq_listener_handler_list_message_outcome_t ret = {0};
    exports_rmq_listener_handler_listener_error_t err = {0};
    bool ok = exports_rmq_listener_handler_consume(&c, &batch, &ret, &err);
    rmq_exported_listener = registered;

    rmq_test_result result = {.ok = ok};
    if (!ok) {
        result.error = xdup_n(err.message.ptr, err.message.len);
        exports_rmq_listener_handler_listener_error_free(&err);
        return result;
    }
    /* Like the host: a short list is padded with retry-later(none), extra outcomes dropped. */
    result.count = count;
    result.outcomes = xarray(count, sizeof *result.outcomes);
    for (size_t i = 0; i < count; i++) {
        rmq_test_outcome *o = &result.outcomes[i];
        *o = (rmq_test_outcome){.kind = RMQ_TEST_RETRY};
        if (i >= ret.len) continue;
        const rmq_listener_types_message_outcome_t *w = &ret.ptr[i];
        switch (w->tag) {
        case RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_SUCCESS:
            o->kind = RMQ_TEST_SUCCESS;
            break;
        case RMQ_LISTENER_TYPES_MESSAGE_OUTCOME_RETRY_LATER:
            o->level = w->val.retry_later.is_some ? w->val.retry_later.val : 0;
            break;
        default:
            o->kind = RMQ_TEST_DEAD_LETTER;
            if (w->val.dead_letter.is_some)
                o->reason = xdup_n(w->val.dead_letter.val.ptr, w->val.dead_letter.val.len);
        }
    }
    /* What the generated post-return does on Wasm. */
    exports_rmq_listener_handler_list_message_outcome_free(&ret);
    return result;
}

void rmq_test_result_free(rmq_test_result *result) {
    for (size_t i = 0; i < result->count; i++) free(result->outcomes[i].reason);
    free(result->outcomes);
    free(result->error);
    *result = (rmq_test_result){0};
}
