/* A minimal test harness for the C SDK's native tests: CHECK reports the failing expression and
 * line, and the program's exit status says whether every check passed. */
#ifndef RMQ_CHECK_H
#define RMQ_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)

#define RUN(test)                                                                        \
    do {                                                                                 \
        int before = check_failures;                                                     \
        test();                                                                          \
        rmq_test_reset();                                                                \
        printf("%s %s\n", check_failures == before ? "ok  " : "FAIL", #test);            \
    } while (0)

#endif
