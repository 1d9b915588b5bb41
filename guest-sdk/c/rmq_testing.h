/*
 * Native testing for C listeners (not for Wasm): a fake host behind the generated imports, and a
 * batch builder that lays messages out as the host does (wit/listener.wit; host/src/wasm/lower.rs),
 * then runs a listener through the very export the component has.
 *
 *     rmq_test_config("tag", "hold");
 *     rmq_test_message msgs[] = {{.topic = "t", .body = "x", .tags = "hold"}};
 *     rmq_test_result r = rmq_test_consume(NULL, NULL, msgs, 1);
 *     RMQ_CHECK(r.ok && r.outcomes[0].kind == RMQ_TEST_RETRY);
 *     rmq_test_result_free(&r);
 *     rmq_test_reset();
 *
 * Build: compile rmq_testing.c with rmq_listener.c and bindings/listener.c natively (cc, no
 * component-type object), plus the listener and a main.
 */
#ifndef RMQ_TESTING_H
#define RMQ_TESTING_H

#include <stdio.h>

#include "rmq_listener.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rmq_test_property {
    const char *name;
    const char *value;
} rmq_test_property;

/** A message as the host would hand it over: what a producer sent plus what the broker and the
 *  consumer add. NULL strings are empty; NULL tags = none. */
typedef struct rmq_test_message {
    const char *topic;
    /** The body: `body_len` bytes, or strlen(body) when body_len is 0. */
    const char *body;
    size_t body_len;
    const char *tags;
    /** KEYS: keys separated by one space. */
    const char *keys;
    /** User properties (the builder sorts them by name, as the host does). */
    const rmq_test_property *properties;
    size_t property_count;
    uint64_t queue_offset;
    /** UNIQ_KEY; empty: the offset msg id stands in, as on the host. */
    const char *msg_id;
    const char *offset_msg_id;
    uint64_t born_timestamp_ms;
    uint64_t store_timestamp_ms;
    const char *born_host;
    const char *store_host;
    uint32_t reconsume_times;
} rmq_test_message;

/** The call's context; NULL strings are "test-group" / "test-topic" / "test-broker". */
typedef struct rmq_test_context {
    rmq_consume_mode mode;
    const char *consumer_group;
    const char *topic;
    const char *broker_name;
    uint32_t queue_id;
    /** 0 means 16, the concurrent consumer's default. */
    uint32_t max_reconsume_times;
} rmq_test_context;

typedef enum rmq_test_kind { RMQ_TEST_SUCCESS, RMQ_TEST_RETRY, RMQ_TEST_DEAD_LETTER } rmq_test_kind;

typedef struct rmq_test_outcome {
    rmq_test_kind kind;
    /** RMQ_TEST_RETRY: level 0 = the broker's default. */
    rmq_delay_level level;
    /** RMQ_TEST_DEAD_LETTER: the reason, or NULL. */
    char *reason;
} rmq_test_outcome;

/** What the call gave, as the host sees it: one outcome per message (a listener's missing ones
 *  are retries), or the batch's error. */
typedef struct rmq_test_result {
    bool ok;
    char *error;
    rmq_test_outcome *outcomes;
    size_t count;
} rmq_test_result;

/** Lays `msgs` out as the host's batch and calls the component's export with it. `listener`
 *  NULL = the one registered with RMQ_EXPORT_LISTENER; `ctx` NULL = concurrently, defaults. */
rmq_test_result rmq_test_consume(rmq_handler listener, const rmq_test_context *ctx,
                                 const rmq_test_message *msgs, size_t count);
void rmq_test_result_free(rmq_test_result *result);

/** The batch the host would send for `msgs` (what rmq_test_consume passes); free with
 *  rmq_listener_types_batch_free. */
rmq_listener_types_batch_t rmq_test_batch(const rmq_test_message *msgs, size_t count);

/** Sets (or replaces) a config key of the fake host. */
void rmq_test_config(const char *key, const char *value);
/** Makes every later send fail with `error` and `detail` (until rmq_test_reset). */
void rmq_test_fail_sends(rmq_produce_error error, const char *detail);
/** Clears config, logs, sent messages and send failures. */
void rmq_test_reset(void);

/** Lines logged so far. */
size_t rmq_test_log_count(void);
/** Log line `i` (NUL-terminated) and its level. */
const char *rmq_test_log_line(size_t i, rmq_level *level);

/** Messages sent successfully so far. */
size_t rmq_test_sent_count(void);
/** Sent message `i` (owned by the fake host until rmq_test_reset). */
const rmq_listener_producer_outgoing_message_t *rmq_test_sent(size_t i);

/* ---- a minimal harness: RMQ_CHECK reports the failing expression and line and counts it;
 * a test's main returns rmq_test_failed_checks != 0. */

extern int rmq_test_failed_checks;

#define RMQ_CHECK(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            rmq_test_failed_checks++;                                                    \
        }                                                                                \
    } while (0)

/** Runs `test()` (a void function), then rmq_test_reset(); prints ok/FAIL and its name. */
#define RMQ_RUN(test)                                                                    \
    do {                                                                                 \
        int rmq_before_ = rmq_test_failed_checks;                                        \
        test();                                                                          \
        rmq_test_reset();                                                                \
        printf("%s %s\n", rmq_test_failed_checks == rmq_before_ ? "ok  " : "FAIL", #test); \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
