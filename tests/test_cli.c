/*
 * test_cli.c - the `aria` command as a user meets it: outputs, exit codes
 * (0 ok, 1 bad input, 2 bad usage), the one-line error naming the file,
 * and no output file left behind on failure.
 *
 * The binary is found through $ARIA_BIN (set by `make test`), else ./aria.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_helpers.h"


typedef struct {
    int status;
    size_t out_len;    /* whole stdout, even past the buffer */
    uint64_t out_hash; /* FNV-1a of the whole stdout */
    char out[1 << 16];
    char err[4096];
} run_result;

/* Runs `aria ARGS` through the shell, capturing stdout and stderr. */
static void run(run_result *r, const char *args) {
    char cmd[2048], errf[] = "/tmp/aria_cli_errXXXXXX";
    int fd = mkstemp(errf);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", aria_bin(), args, errf);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = 0, k;
    char chunk[4096];
    r->out_len = 0;
    r->out_hash = 1469598103934665603ull;
    while ((k = fread(chunk, 1, sizeof chunk, p)) > 0) { /* drain, or the child gets SIGPIPE */
        for (size_t i = 0; i < k; i++) r->out_hash = (r->out_hash ^ (uint8_t)chunk[i]) * 1099511628211ull;
        size_t room = sizeof r->out - 1 - n;
        memcpy(r->out + n, chunk, k < room ? k : room);
        n += k < room ? k : room;
        r->out_len += k;
    }
    r->out[n] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen(errf, "r");
    n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = 0;
    if (e) fclose(e);
    unlink(errf);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

#define BASIC "tests/data/vectors/basic/basic.mid"

Test(cli, tokenize_prints_the_reference_json) {
    static run_result r;
    run(&r, "tokenize " BASIC);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "[[\"prefix\",\"instrument\",", 24) == 0, "%.80s", r.out);
    cr_expect(strstr(r.out, "\"<S>\",[\"piano\",48,120],[\"onset\",0],[\"dur\",2000]") != NULL);
    cr_expect(strstr(r.out, "\"<E>\"]\n") != NULL);
    run(&r, "tokenize --ids " BASIC);
    cr_assert_eq(r.status, 0);
    cr_expect(strstr(r.out, " 0 675 17227 16926 701 ") != NULL, "%.80s", r.out);
    cr_expect_eq(count_lines(r.out), 1);
}

Test(cli, tokenize_many_files_in_order_and_in_parallel) {
    static run_result a, b;
    run(&a, "tokenize --ids --jobs 1 tests/data/vectors/*/*[a-z].mid");
    run(&b, "tokenize --ids --jobs 2 tests/data/vectors/*/*[a-z].mid");
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_eq(b.status, 0, "%s", b.err);
    cr_expect(a.out_len == b.out_len && a.out_hash == b.out_hash, "--jobs 2 output differs from --jobs 1");
    cr_expect_gt(a.out_len, 100000);

    char dir[] = "/tmp/aria_cli_outXXXXXX";
    cr_assert(mkdtemp(dir));
    char args[512];
    snprintf(args, sizeof args, "tokenize --out-dir %s --jobs 2 " BASIC " tests/data/vectors/pop/pop.mid", dir);
    run(&a, args);
    cr_assert_eq(a.status, 0, "%s", a.err);
    char p[600];
    snprintf(p, sizeof p, "%s/basic.json", dir);
    cr_expect(exists(p));
    unlink(p);
    snprintf(p, sizeof p, "%s/pop.json", dir);
    cr_expect(exists(p));
    unlink(p);
    rmdir(dir);
}

Test(cli, tokenize_options) {
    static run_result r;
    run(&r, "tokenize --no-eos " BASIC);
    cr_assert_eq(r.status, 0);
    cr_expect(strstr(r.out, "<E>") == NULL);
    run(&r, "tokenize --dim --seed 1234 " BASIC);
    cr_assert_eq(r.status, 0);
    cr_expect(strstr(r.out, "<D>") != NULL);
    run(&r, "tokenize --prompt-seconds 3 " BASIC);
    cr_assert_eq(r.status, 0);
    cr_expect(strstr(r.out, "<E>") == NULL && strstr(r.out, "<T>") == NULL, "%s", r.out);
    run(&r, "tokenize --embedding-chunks --ids tests/data/vectors/waltz/waltz.mid");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_geq(count_lines(r.out), 1);
    run(&r, "tokenize --embedding-chunks " BASIC); /* strings + drums: not piano-only */
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "piano") != NULL, "%s", r.err);
}

Test(cli, errors_name_the_file_and_exit_1) {
    static run_result r;
    run(&r, "tokenize /nonexistent/x.mid");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "aria: /nonexistent/x.mid: ") == r.err, "%s", r.err);
    cr_expect_eq(count_lines(r.err), 1);
    cr_expect_eq(r.out[0], 0, "no partial output");

    run(&r, "info tests/data/vectors/SOURCE.md");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "aria: tests/data/vectors/SOURCE.md: ") == r.err, "%s", r.err);
    cr_expect_eq(count_lines(r.err), 1);

    /* one bad file among good ones: the good ones still come out, status 1 */
    run(&r, "tokenize --ids " BASIC " /nonexistent/y.mid " BASIC);
    cr_expect_eq(r.status, 1);
    cr_expect_eq(count_lines(r.out), 2);
}

Test(cli, usage_errors_exit_2) {
    static run_result r;
    run(&r, "");
    cr_expect_eq(r.status, 2);
    run(&r, "frobnicate");
    cr_expect_eq(r.status, 2);
    run(&r, "tokenize");
    cr_expect_eq(r.status, 2);
    run(&r, "tokenize --seed banana " BASIC);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--seed") != NULL, "%s", r.err);
    run(&r, "tokenize --bogus " BASIC);
    cr_expect_eq(r.status, 2);
    run(&r, "detokenize -");
    cr_expect_eq(r.status, 2, "stdin needs -o");
}

Test(cli, help_shows_defaults) {
    static run_result r;
    run(&r, "--help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "tokenize") && strstr(r.out, "detokenize"));
    run(&r, "tokenize --help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "default 0") != NULL, "%s", r.out);
    run(&r, "detokenize --help");
    cr_expect_eq(r.status, 0);
    run(&r, "notes --help");
    cr_expect_eq(r.status, 0);
    run(&r, "info --help");
    cr_expect_eq(r.status, 0);
}

Test(cli, detokenize_round_trip_and_no_partial_file) {
    char dir[] = "/tmp/aria_cli_detXXXXXX";
    cr_assert(mkdtemp(dir));
    char args[2048], out[600];
    static run_result r;
    snprintf(out, sizeof out, "%s/basic.mid", dir);
    snprintf(args, sizeof args, "detokenize -o %s tests/data/vectors/basic/tokens.json", out);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    /* the file equals the reference's decoded.mid */
    FILE *a = fopen(out, "rb"), *b = fopen("tests/data/vectors/basic/decoded.mid", "rb");
    cr_assert(a && b);
    static char ba[1 << 16], bb[1 << 16];
    size_t na = fread(ba, 1, sizeof ba, a), nb = fread(bb, 1, sizeof bb, b);
    fclose(a);
    fclose(b);
    cr_expect(na == nb && memcmp(ba, bb, na) == 0, "detokenized file differs from decoded.mid");
    unlink(out);

    /* ids on stdin */
    snprintf(args, sizeof args, "detokenize -o %s - < /dev/null", out);
    run(&r, args);
    cr_expect_eq(r.status, 1, "empty input");
    cr_expect(!exists(out), "no file left after a failure");
    snprintf(args, sizeof args, "tokenize --ids " BASIC " | %s detokenize -o %s -", aria_bin(), out);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(exists(out));
    unlink(out);

    /* bad tokens: error, nothing written */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    FILE *f = fopen(bad, "w");
    fputs("[\"<S>\", [\"piano\", 60]", f);
    fclose(f);
    snprintf(args, sizeof args, "detokenize -o %s %s", out, bad);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, bad) != NULL, "%s", r.err);
    cr_expect(!exists(out), "no file left after a failure");
    snprintf(args, sizeof args, "%s/ids.txt", dir);
    f = fopen(args, "w");
    fputs("6 0 99999 1\n", f);
    fclose(f);
    char args2[4096];
    snprintf(args2, sizeof args2, "detokenize -o %s %s", out, args);
    run(&r, args2);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "outside the vocabulary") != NULL, "%s", r.err);
    cr_expect(!exists(out));
    unlink(args);
    unlink(bad);
    rmdir(dir);
}

Test(cli, notes_and_info) {
    static run_result r;
    run(&r, "notes " BASIC);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "0\t2000\t48\t127\t0\n", 16) == 0, "%.40s", r.out);
    cr_expect_eq(count_lines(r.out), 54);
    run(&r, "info " BASIC);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "format\t1") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "notes\t54") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "ch10:0") != NULL, "%s", r.out);
}

Test(cli, model_commands_on_a_random_tiny_model) {
    char dir[] = "/tmp/aria_cli_modelXXXXXX";
    cr_assert(mkdtemp(dir));
    static char args[2048];
    static run_result r;
    snprintf(args, sizeof args, "init --config tiny --heads lm -o %s/lm.safetensors", dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(args, sizeof args, "init --config tiny --heads emb --dtype bf16 -o %s/emb.safetensors", dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);

    snprintf(args, sizeof args,
             "generate --model %s/lm.safetensors --prompt tests/data/vectors/waltz/waltz.mid --prompt-seconds 5 "
             "--max-new 64 --variations 2 --seed 5 --out-dir %s --print-ids", dir, dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(count_lines(r.out), 2);
    cr_expect(strstr(r.err, "tokens/s") != NULL, "%s", r.err);
    static run_result first;
    first = r;
    char p[600];
    snprintf(p, sizeof p, "%s/res_1.mid", dir);
    cr_expect(exists(p));
    snprintf(args, sizeof args, "info %s/res_2.mid", dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);

    /* same seed, same output */
    static run_result again;
    snprintf(args, sizeof args,
             "generate --model %s/lm.safetensors --prompt tests/data/vectors/waltz/waltz.mid --prompt-seconds 5 "
             "--max-new 64 --variations 2 --seed 5 --out-dir %s --print-ids", dir, dir);
    run(&again, args);
    cr_expect_str_eq(first.out, again.out);

    /* the waltz starts at 3.2 s: a 2 s window holds no notes, and says so */
    snprintf(args, sizeof args,
             "generate --model %s/lm.safetensors --prompt tests/data/vectors/waltz/waltz.mid --prompt-seconds 2 "
             "--max-new 4 --seed 5 --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "first note starts at 3.2 s") && strstr(r.err, "(2 prompt tokens)"), "%s", r.err);
    cr_expect(!strstr(first.err, "warning"), "a 5 s window has notes: %s", first.err);

    snprintf(args, sizeof args, "embed --model %s/emb.safetensors tests/data/vectors/waltz/waltz.mid", dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    int tabs = 0;
    for (const char *c = r.out; *c; c++) tabs += *c == '\t';
    cr_expect_eq(tabs, 32, "file name and 32 values");
    snprintf(args, sizeof args, "embed --model %s/emb.safetensors -o %s/e.npy " BASIC, dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1, "not piano-only");
    cr_expect(strstr(r.err, "piano") != NULL, "%s", r.err);
    snprintf(p, sizeof p, "%s/e.npy", dir);
    cr_expect(!exists(p), "no partial .npy");
    snprintf(args, sizeof args, "embed --model %s/lm.safetensors " BASIC, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "emb_head") != NULL, "%s", r.err);

    snprintf(args, sizeof args, "generate --model %s/nonexistent.safetensors --prompt " BASIC, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "nonexistent.safetensors: ") != NULL, "%s", r.err);
    run(&r, "generate --prompt " BASIC);
    cr_expect_eq(r.status, 2, "no --model");

    snprintf(args, sizeof args, "rm -rf %s", dir);
    cr_expect_eq(system(args), 0);
}

/* The environment is read by the CLI alone and handed to the library:
   ARIA_PRECISION picks the training precision recorded in run.json, and
   ARIA_TRAIN_PROFILE has `aria train` print the trainer's profile. */
Test(cli, environment_reaches_the_library_through_the_cli) {
    char dir[] = "/tmp/aria_cli_envXXXXXX";
    cr_assert(mkdtemp(dir));
    static char args[2048];
    static run_result r;
    snprintf(args, sizeof args, "dataset --out %s/data --seq-len 64 --filters none tests/data/vectors/basic "
             "tests/data/vectors/waltz", dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    static const char *const prec[2] = {"fast", "exact"};
    for (int k = 0; k < 2; k++) {
        setenv("ARIA_PRECISION", prec[k], 1); /* this test's own process: run() passes it on */
        setenv("ARIA_TRAIN_PROFILE", k ? "1" : "0", 1);
        snprintf(args, sizeof args, "train --data %s/data --out %s/run%d --config tiny --batch 2 --steps 1 --threads 1",
                 dir, dir, k);
        run(&r, args);
        cr_assert_eq(r.status, 0, "%s", r.err);
        char p[600], want[64];
        snprintf(p, sizeof p, "%s/run%d/run.json", dir, k);
        FILE *f = fopen(p, "r");
        cr_assert(f, "no %s", p);
        static char json[8192];
        size_t n = fread(json, 1, sizeof json - 1, f);
        json[n] = 0;
        fclose(f);
        snprintf(want, sizeof want, "\"precision\": \"%s\"", prec[k]);
        cr_expect(strstr(json, want) != NULL, "ARIA_PRECISION=%s: %s", prec[k], json);
        cr_expect_eq(strstr(r.err, "trainer profile (") != NULL, k == 1, "ARIA_TRAIN_PROFILE=%d: %s", k, r.err);
        if (k == 1) cr_expect(strstr(r.err, "trainer profile (exact):") != NULL, "%s", r.err);
    }
    snprintf(args, sizeof args, "rm -rf %s", dir);
    cr_expect_eq(system(args), 0);
}
