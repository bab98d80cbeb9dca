/*
 * cli_helpers.h - small helpers of the tests that run the aria program.
 */
#ifndef ARIA_TESTS_CLI_HELPERS_H
#define ARIA_TESTS_CLI_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The program under test: $ARIA_BIN (make test sets it), else ./aria. */
static inline const char *aria_bin(void) {
    const char *b = getenv("ARIA_BIN");
    return b && *b ? b : "./aria";
}

/* Step lines (those with a "loss") of an aria train log.jsonl; 0 when
   the file is not there yet. */
static inline int count_step_lines(const char *log) {
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, "\"loss\"") != NULL;
    fclose(f);
    return n;
}

#endif
