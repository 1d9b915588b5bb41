/* Native tests of the C SDK: views over a batch laid out as the host lays it out, outcomes
 * through the real export, log/config/producer against the fake host. */
#include <stdlib.h>
#include <string.h>

#include "../rmq_testing.h"

/* Retries messages tagged with config `retry-tag` (at config `delay`), forwards the rest. */
static bool retry_or_forward(const rmq_context *ctx, const rmq_message *msgs, size_t count,
                             rmq_outcomes *out) {
    (void)ctx;
    char *tag = rmq_config_get("retry-tag");
    char *delay = rmq_config_get("delay");
    if (!tag) {
        free(delay);
        return rmq_fail(out, "config key retry-tag is not set");
    }
    rmq_delay_level level = 0;
    if (delay && !rmq_delay_level_parse(delay, &level)) {
        bool r = rmq_fail(out, "config delay = \"%s\": invalid delay level", delay);
        free(tag);
        free(delay);
        return r;
    }
    bool ok = true;
    for (size_t i = 0; i < count && ok; i++) {
        const rmq_message *m = &msgs[i];
        if (rmq_message_has_tag(m, tag)) {
            rmq_str id = rmq_message_msg_id(m);
            rmq_log(RMQ_WARN, "retrying %.*s", (int)id.len, (const char *)id.ptr);
            rmq_retry_after(out, i, level);
            continue;
        }
        rmq_str keys[1] = {rmq_message_keys(m)};
        rmq_str tags;
        rmq_outgoing fwd = {.topic = rmq_str_from("out"), .body = rmq_message_body(m),
                            .keys = keys, .key_count = keys[0].len ? 1 : 0};
        fwd.has_tags = rmq_message_tags(m, &tags);
        fwd.tags = fwd.has_tags ? tags : (rmq_str){0};
        rmq_send_result sent;
        if (rmq_send(&fwd, &sent)) {
            rmq_success(out, i);
        } else {
            ok = rmq_fail(out, "produce failed: %d %.*s", (int)sent.error, (int)sent.detail.len,
                          (const char *)sent.detail.ptr);
        }
        rmq_send_result_free(&sent);
    }
    free(tag);
    free(delay);
    return ok;
}

/* Acknowledges only the first message (Java's ackIndex = 0). */
static bool one_outcome(const rmq_context *ctx, const rmq_message *msgs, size_t count,
                        rmq_outcomes *out) {
    (void)ctx, (void)msgs;
    if (count) rmq_success(out, 0);
    rmq_success(out, count + 5); /* beyond the batch: ignored */
    return true;
}

/* Copies every view of message 0 into statics for the test to inspect. */
static rmq_context seen_ctx;
static char seen[16][64];
static uint64_t seen_numbers[4];
static bool seen_flags[4];

static void copy(int slot, rmq_str s) {
    snprintf(seen[slot], sizeof seen[slot], "%.*s", (int)s.len, (const char *)s.ptr);
}

static bool inspect(const rmq_context *ctx, const rmq_message *msgs, size_t count,
                    rmq_outcomes *out) {
    seen_ctx = *ctx;
    copy(0, ctx->consumer_group);
    copy(1, ctx->queue.topic);
    const rmq_message *m = &msgs[0];
    copy(2, rmq_message_topic(m));
    copy(3, rmq_message_msg_id(m));
    copy(4, rmq_message_offset_msg_id(m));
    copy(5, rmq_message_keys(m));
    rmq_str s;
    seen_flags[0] = rmq_message_tags(m, &s);
    copy(6, seen_flags[0] ? s : (rmq_str){0});
    rmq_properties it = rmq_message_properties(m);
    rmq_str name, value;
    char joined[64] = "";
    while (rmq_properties_next(&it, &name, &value)) {
        size_t at = strlen(joined);
        snprintf(joined + at, sizeof joined - at, "%.*s=%.*s;", (int)name.len,
                 (const char *)name.ptr, (int)value.len, (const char *)value.ptr);
    }
    copy(7, rmq_str_from(joined));
    seen_flags[1] = rmq_message_property(m, "b", &s);
    copy(8, seen_flags[1] ? s : (rmq_str){0});
    seen_flags[2] = rmq_message_body_text(m, &s);
    copy(9, rmq_message_born_host(m));
    copy(10, rmq_message_store_host(m));
    seen_flags[3] = rmq_message_has_key(m, "k2") && !rmq_message_has_key(m, "k") &&
                    rmq_message_body_contains(m, "ll", 2) && !rmq_message_body_contains(m, "lx", 2);
    seen_numbers[0] = rmq_message_queue_offset(m);
    seen_numbers[1] = rmq_message_born_timestamp_ms(m);
    seen_numbers[2] = rmq_message_store_timestamp_ms(m);
    seen_numbers[3] = rmq_message_reconsume_times(m);
    copy(11, rmq_message_msg_id(&msgs[1]));
    for (size_t i = 0; i < count; i++) rmq_success(out, i);
    return true;
}

RMQ_EXPORT_LISTENER(inspect)

static void views_read_every_field_of_the_hosts_layout(void) {
    rmq_test_property props[] = {{"b", "2"}, {"a", "1"}};
    rmq_test_message msgs[] = {
        {.topic = "orders", .body = "hello", .tags = "T", .keys = "k1 k2", .properties = props,
         .property_count = 2, .queue_offset = 7, .msg_id = "UNIQ", .offset_msg_id = "OFF",
         .born_timestamp_ms = 11, .store_timestamp_ms = 12, .born_host = "1.2.3.4:5",
         .store_host = "6.7.8.9:10", .reconsume_times = 3},
        {.topic = "orders", .offset_msg_id = "ONLY-OFFSET"},
    };
    rmq_test_context ctx = {.mode = RMQ_ORDERLY, .consumer_group = "g", .topic = "%RETRY%g",
                            .queue_id = 2, .max_reconsume_times = 3};
    rmq_test_result r = rmq_test_consume(NULL, &ctx, msgs, 2);
    RMQ_CHECK(r.ok && r.count == 2 && r.outcomes[1].kind == RMQ_TEST_SUCCESS);
    RMQ_CHECK(!strcmp(seen[0], "g") && !strcmp(seen[1], "%RETRY%g") && seen_ctx.queue.queue_id == 2);
    RMQ_CHECK(seen_ctx.mode == RMQ_ORDERLY && seen_ctx.max_reconsume_times == 3);
    RMQ_CHECK(!strcmp(seen[2], "orders") && !strcmp(seen[3], "UNIQ") && !strcmp(seen[4], "OFF"));
    RMQ_CHECK(!strcmp(seen[5], "k1 k2") && seen_flags[0] && !strcmp(seen[6], "T"));
    RMQ_CHECK(!strcmp(seen[7], "a=1;b=2;")); /* sorted by name, as the host sends them */
    RMQ_CHECK(seen_flags[1] && !strcmp(seen[8], "2"));
    RMQ_CHECK(seen_flags[2] && seen_flags[3]);
    RMQ_CHECK(!strcmp(seen[9], "1.2.3.4:5") && !strcmp(seen[10], "6.7.8.9:10"));
    RMQ_CHECK(seen_numbers[0] == 7 && seen_numbers[1] == 11 && seen_numbers[2] == 12 &&
          seen_numbers[3] == 3);
    RMQ_CHECK(!strcmp(seen[11], "ONLY-OFFSET")); /* no UNIQ_KEY: the offset msg id stands in */
    rmq_test_result_free(&r);
}

static void body_text_rejects_invalid_utf8(void) {
    const char *bodies[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        rmq_listener_types_batch_t b =
            rmq_test_batch(&(rmq_test_message){.body = bodies[i]}, 1);
        rmq_message m = {&b.messages.ptr[0], b.data.ptr};
        rmq_str text;
        RMQ_CHECK(!rmq_message_body_text(&m, &text));
        rmq_listener_types_batch_free(&b);
    }
    rmq_listener_types_batch_t b = rmq_test_batch(&(rmq_test_message){.body = "z\xc3\xa9\xf0\x9f\x98\x80"}, 1);
    rmq_message m = {&b.messages.ptr[0], b.data.ptr};
    rmq_str text;
    RMQ_CHECK(rmq_message_body_text(&m, &text) && text.len == 7);
    RMQ_CHECK(!rmq_message_tags(&m, &text) && !rmq_message_has_tag(&m, ""));
    rmq_listener_types_batch_free(&b);
}

static void delay_levels_parse_numbers_and_labels(void) {
    struct { const char *text; bool ok; rmq_delay_level level; } cases[] = {
        {"1", true, 1}, {" 18 ", true, 18}, {"10s", true, 3}, {"1m", true, 5}, {"2h", true, 18},
        {"0", false, 0}, {"19", false, 0}, {"", false, 0}, {"1x", false, 0}, {"007", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rmq_delay_level level = 0;
        RMQ_CHECK(rmq_delay_level_parse(cases[i].text, &level) == cases[i].ok);
        RMQ_CHECK(!cases[i].ok || level == cases[i].level);
    }
}

static const rmq_test_message two[] = {
    {.topic = "in", .body = "a", .msg_id = "1", .tags = "X"},
    {.topic = "in", .body = "b", .msg_id = "2", .tags = "Y", .keys = "k"},
};

static void listener_runs_through_the_export(void) {
    rmq_test_config("retry-tag", "X");
    rmq_test_config("delay", "30s");
    rmq_test_result r = rmq_test_consume(retry_or_forward, NULL, two, 2);
    RMQ_CHECK(r.ok && r.count == 2);
    RMQ_CHECK(r.outcomes[0].kind == RMQ_TEST_RETRY && r.outcomes[0].level == 4);
    RMQ_CHECK(r.outcomes[1].kind == RMQ_TEST_SUCCESS);
    RMQ_CHECK(rmq_test_sent_count() == 1);
    const rmq_listener_producer_outgoing_message_t *s = rmq_test_sent(0);
    RMQ_CHECK(s && s->topic.len == 3 && !memcmp(s->topic.ptr, "out", 3) && s->tags.is_some);
    RMQ_CHECK(s && s->keys.len == 1 && s->body.len == 1 && s->body.ptr[0] == 'b');
    rmq_level level = RMQ_TRACE;
    RMQ_CHECK(rmq_test_log_count() == 1 && !strcmp(rmq_test_log_line(0, &level), "retrying 1"));
    RMQ_CHECK(level == RMQ_WARN);
    rmq_config all;
    rmq_config_all(&all);
    RMQ_CHECK(all.count == 2 && rmq_str_eq(all.pairs[0].key, "delay") &&
          rmq_str_eq(all.pairs[1].value, "X"));
    rmq_config_free(&all);
    rmq_test_result_free(&r);
}

static void failures_become_listener_errors(void) {
    rmq_test_result r = rmq_test_consume(retry_or_forward, NULL, two, 2);
    RMQ_CHECK(!r.ok && !strcmp(r.error, "config key retry-tag is not set"));
    rmq_test_result_free(&r);
    rmq_test_config("retry-tag", "none");
    rmq_test_fail_sends(RMQ_PRODUCE_DENIED, "topic out not allowed");
    r = rmq_test_consume(retry_or_forward, NULL, two, 2);
    RMQ_CHECK(!r.ok && !strcmp(r.error, "produce failed: 1 topic out not allowed"));
    RMQ_CHECK(rmq_test_sent_count() == 0);
    rmq_test_result_free(&r);
}

static void missing_outcomes_are_retries_like_the_host(void) {
    rmq_test_result r = rmq_test_consume(one_outcome, NULL, two, 2);
    RMQ_CHECK(r.ok && r.count == 2 && r.outcomes[0].kind == RMQ_TEST_SUCCESS);
    RMQ_CHECK(r.outcomes[1].kind == RMQ_TEST_RETRY && r.outcomes[1].level == 0);
    rmq_test_result_free(&r);
    r = rmq_test_consume(one_outcome, NULL, two, 0);
    RMQ_CHECK(r.ok && r.count == 0);
    rmq_test_result_free(&r);
}

int main(void) {
    RMQ_RUN(views_read_every_field_of_the_hosts_layout);
    RMQ_RUN(body_text_rejects_invalid_utf8);
    RMQ_RUN(delay_levels_parse_numbers_and_labels);
    RMQ_RUN(listener_runs_through_the_export);
    RMQ_RUN(failures_become_listener_errors);
    RMQ_RUN(missing_outcomes_are_retries_like_the_host);
    return rmq_test_failed_checks ? 1 : 0;
}
