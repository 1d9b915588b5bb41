/* Native unit tests of the listener (no Wasm, no cluster): `make test`. */
#include <stdio.h>
#include <string.h>

#include "rmq_testing.h"

static int failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

int main(void) {
    rmq_test_message msgs[] = {
        {.topic = "orders", .body = "fine"},
        {.topic = "orders", .body = "fine", .tags = "later"},
        {.topic = "orders", .body = "a poison pill"},
    };
    rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 3);
    CHECK(r.ok && r.count == 3);
    CHECK(r.outcomes[0].kind == RMQ_TEST_SUCCESS);
    CHECK(r.outcomes[1].kind == RMQ_TEST_RETRY);
    CHECK(r.outcomes[2].kind == RMQ_TEST_DEAD_LETTER && strstr(r.outcomes[2].reason, "word"));
    rmq_test_result_free(&r);

    rmq_test_config("word", "pill");
    rmq_test_config("retry-tag", "hold");
    r = rmq_test_consume(NULL, NULL, msgs, 3);
    CHECK(r.ok && r.outcomes[1].kind == RMQ_TEST_SUCCESS &&
          r.outcomes[2].kind == RMQ_TEST_DEAD_LETTER);
    rmq_test_result_free(&r);
    rmq_test_reset();

    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
