/* Native unit tests of the C filter (the same cases as plugins/filter's Rust tests), run by
 * scripts/build-plugins.sh --test through the SDK's fake host. */
#include <string.h>

#include "rmq_testing.h"

static void retries_matching_messages(void) {
    rmq_test_config("tag", "hold");
    rmq_test_config("body-contains", "later");
    rmq_test_config("delay-level", "1m");
    rmq_test_message msgs[] = {
        {.topic = "t", .body = "now", .tags = "hold"},
        {.topic = "t", .body = "do it later"},
        {.topic = "t", .body = "now", .tags = "go"},
    };
    rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 3);
    RMQ_CHECK(r.ok && r.count == 3);
    RMQ_CHECK(r.outcomes[0].kind == RMQ_TEST_RETRY && r.outcomes[0].level == 5);
    RMQ_CHECK(r.outcomes[1].kind == RMQ_TEST_RETRY && r.outcomes[1].level == 5);
    RMQ_CHECK(r.outcomes[2].kind == RMQ_TEST_SUCCESS);
    rmq_test_result_free(&r);
}

static void dead_letters_after_limit(void) {
    rmq_test_config("tag", "x");
    rmq_test_config("dead-letter-after", "2");
    rmq_test_message msgs[] = {
        {.topic = "t", .tags = "x", .reconsume_times = 1},
        {.topic = "t", .tags = "x", .reconsume_times = 2},
        /* bytes, not text: a body need not be UTF-8 */
        {.topic = "t", .body = "\xff\x00x", .body_len = 3},
    };
    rmq_test_config("body-contains", "x");
    rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 3);
    RMQ_CHECK(r.ok && r.outcomes[0].kind == RMQ_TEST_RETRY && r.outcomes[0].level == 0);
    RMQ_CHECK(r.outcomes[1].kind == RMQ_TEST_DEAD_LETTER &&
          !strcmp(r.outcomes[1].reason, "filter: still matching after 2 redeliveries"));
    RMQ_CHECK(r.outcomes[2].kind == RMQ_TEST_RETRY);
    rmq_test_result_free(&r);
}

static void accepts_after_redeliveries(void) {
    rmq_test_config("tag", "x");
    rmq_test_config("accept-after", "1");
    rmq_test_message msgs[] = {
        {.topic = "t", .tags = "x"},
        {.topic = "t", .tags = "x", .reconsume_times = 1},
    };
    rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 2);
    RMQ_CHECK(r.ok && r.outcomes[0].kind == RMQ_TEST_RETRY && r.outcomes[1].kind == RMQ_TEST_SUCCESS);
    rmq_test_result_free(&r);
    rmq_test_config("dead-letter-after", "1");
    r = rmq_test_consume(NULL, NULL, msgs, 2);
    RMQ_CHECK(r.ok && r.outcomes[1].kind == RMQ_TEST_DEAD_LETTER);
    rmq_test_result_free(&r);
}

static void config_errors_fail_the_batch(void) {
    rmq_test_message msg = {.topic = "t"};
    rmq_test_result r = rmq_test_consume(NULL, NULL, &msg, 1);
    RMQ_CHECK(!r.ok && strstr(r.error, "configure `tag`"));
    rmq_test_result_free(&r);
    rmq_test_config("tag", "x");
    rmq_test_config("delay-level", "19");
    r = rmq_test_consume(NULL, NULL, &msg, 1);
    RMQ_CHECK(!r.ok && strstr(r.error, "config delay-level = \"19\": invalid delay level"));
    rmq_test_result_free(&r);
    rmq_test_config("delay-level", "1s");
    rmq_test_config("dead-letter-after", "-1");
    r = rmq_test_consume(NULL, NULL, &msg, 1);
    RMQ_CHECK(!r.ok && strstr(r.error, "dead-letter-after = \"-1\""));
    rmq_test_result_free(&r);
}

int main(void) {
    RMQ_RUN(retries_matching_messages);
    RMQ_RUN(dead_letters_after_limit);
    RMQ_RUN(accepts_after_redeliveries);
    RMQ_RUN(config_errors_fail_the_batch);
    return rmq_test_failed_checks ? 1 : 0;
}
