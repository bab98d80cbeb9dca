/*
 * cli_helpers.h - small helpers of the tests that run the aria program.
 */
#ifndef ARIA_TESTS_CLI_HELPERS_H
#define ARIA_TESTS_CLI_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* `aria ARGS` with stdout and stderr into DIR/out.txt and DIR/err.txt;
   the exit status (-1 when it did not exit). */
static inline int run_aria_in(const char *dir, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s >%s/out.txt 2>%s/err.txt", aria_bin(), args, dir, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The first 64 KiB of a text file ("" when it is missing), in a buffer
   that the next call reuses. */
static inline char *slurp_text(const char *file) {
    static char buf[1 << 16];
    FILE *f = fopen(file, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return buf;
}

/* What `aria ARGS` did: its exit status and its stderr. */
typedef struct {
    int status; /* -1: it did not exit, or its stderr could not be kept */
    char err[8192];
} aria_run_result;

/* Runs `aria ARGS`, stdout discarded, stderr captured into r. */
static inline void run_aria_err(aria_run_result *r, const char *args) {
    char cmd[8192], errf[] = "/tmp/aria_test_errXXXXXX";
    r->status = -1;
    r->err[0] = 0;
    int fd = mkstemp(errf);
    if (fd < 0) {
        snprintf(r->err, sizeof r->err, "mkstemp failed");
        return;
    }
    close(fd);
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", aria_bin(), args, errf);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen(errf, "r");
    size_t n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = 0;
    if (e) fclose(e);
    unlink(errf);
}

/* A fresh folder "/tmp/aria_NAME" + six random characters, written into
   dir (64 bytes), for a suite's .init; test_dir_remove is its .fini. */
static inline int test_dir_make(char dir[64], const char *name) {
    snprintf(dir, 64, "/tmp/aria_%.40sXXXXXX", name);
    return mkdtemp(dir) != NULL;
}

static inline void test_dir_remove(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
}

/* dir/name, in one of 64 buffers used in turn (a test that keeps a path
   while making many more copies it into a buffer of its own). */
static inline const char *test_path(const char *dir, const char *name) {
    static char buf[64][160];
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

#endif
