/*
 * {{name}}: an rmq-wasm listener in C. Per message: the body contains config `word` (default
 * "poison") → dead letter with a reason; the tag is config `retry-tag` (default "later") → retry
 * later; otherwise → success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_listener.h"

static bool consume(const rmq_context *ctx, const rmq_message *msgs, size_t count,
                    rmq_outcomes *out) {
    (void)ctx;
    char *word = rmq_config_get("word");
    char *retry_tag = rmq_config_get("retry-tag");
    const char *w = word ? word : "poison";
    const char *tag = retry_tag ? retry_tag : "later";
    for (size_t i = 0; i < count; i++) {
        if (rmq_message_body_contains(&msgs[i], w, strlen(w))) {
            char reason[160];
            snprintf(reason, sizeof reason, "body contains '%s'", w);
            rmq_dead_letter(out, i, reason);
        } else if (rmq_message_has_tag(&msgs[i], tag)) {
            rmq_retry(out, i);
        } else {
            rmq_success(out, i);
        }
    }
    rmq_log(RMQ_DEBUG, "{{name}}: %zu messages", count);
    free(word);
    free(retry_tag);
    return true;
}

RMQ_EXPORT_LISTENER(consume)
