/* Native unit tests of the listener (no Wasm, no cluster): `make test`. */
#include <stdio.h>
#include <string.h>

#include "rmq_testing.h"

int main(void) {
    rmq_test_message msgs[] = {
        {.topic = "orders", .body = "fine"},
        {.topic = "orders", .body = "fine", .tags = "later"},
        {.topic = "orders", .body = "a poison pill"},
    };
    rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 3);
    RMQ_CHECK(r.ok && r.count == 3);
    RMQ_CHECK(r.outcomes[0].kind == RMQ_TEST_SUCCESS);
    RMQ_CHECK(r.outcomes[1].kind == RMQ_TEST_RETRY);
    RMQ_CHECK(r.outcomes[2].kind == RMQ_TEST_DEAD_LETTER && strstr(r.outcomes[2].reason, "body contains 'poison'"));
    rmq_test_result_free(&r);

    rmq_test_config("word", "pill");
    rmq_test_config("retry-tag", "hold");
    r = rmq_test_consume(NULL, NULL, msgs, 3);
    RMQ_CHECK(r.ok && r.outcomes[1].kind == RMQ_TEST_SUCCESS &&
          r.outcomes[2].kind == RMQ_TEST_DEAD_LETTER);
    rmq_test_result_free(&r);
    rmq_test_reset();

    printf("%s\n", rmq_test_failed_checks ? "FAILED" : "ok");
    return rmq_test_failed_checks ? 1 : 0;
}
