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

#include "aria.h"
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
    /* channels 1-16, as `aria info` numbers them (issue 13 item 9; 0-15 before) */
    cr_expect(strncmp(r.out, "0\t2000\t48\t127\t1\n", 16) == 0, "%.40s", r.out);
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
    run(&r, "generate --model m.safetensors");
    cr_expect_eq(r.status, 2, "no --prompt"); /* without --model: the bundled model (test_cfg.c) */

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

/* ---------------------------------------------------------------------- */
/* What a new user meets (issue 13): one test per item                    */
/* ---------------------------------------------------------------------- */

#define WALTZ "tests/data/vectors/waltz/waltz.mid"
#define NOCTURNE "tests/data/vectors/nocturne/nocturne.mid"

static int count_in(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* dir/cut.mid: the waltz cut to its first 100 bytes (a track that runs
   past the end of the file) */
static void write_cut_midi(const char *dir) {
    char buf[100], p[600];
    FILE *f = fopen(WALTZ, "rb");
    cr_assert(f && fread(buf, 1, sizeof buf, f) == sizeof buf);
    fclose(f);
    snprintf(p, sizeof p, "%s/cut.mid", dir);
    f = fopen(p, "wb");
    cr_assert(f && fwrite(buf, 1, sizeof buf, f) == sizeof buf);
    fclose(f);
}

/* dir/data: 64-id sequences of two reference files; dir/lm.safetensors,
   dir/emb.safetensors: tiny models with an lm_head and with an emb_head */
static void make_fixtures(const char *dir, int data, int models) {
    static char args[2048];
    static run_result r;
    if (data) {
        snprintf(args, sizeof args, "dataset --out %s/data --seq-len 64 --filters none " BASIC " " WALTZ, dir);
        run(&r, args);
        cr_assert_eq(r.status, 0, "%s", r.err);
    }
    if (models) {
        snprintf(args, sizeof args, "init --config tiny -o %s/lm.safetensors", dir);
        run(&r, args);
        cr_assert_eq(r.status, 0, "%s", r.err);
        snprintf(args, sizeof args, "init --config tiny --heads emb -o %s/emb.safetensors", dir);
        run(&r, args);
        cr_assert_eq(r.status, 0, "%s", r.err);
    }
}

static void remove_tree(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* 1. Nothing is overwritten silently. */
Test(cli_ux, nothing_is_overwritten_silently) {
    char dir[] = "/tmp/aria_ux1XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 1, 0);
    static char args[2048], before[1 << 16], after[1 << 16];
    static run_result r;
    char mid[600], p[600];
    /* detokenize's default output is the MIDI file the tokens came from */
    snprintf(args, sizeof args, "cp " BASIC " %s/w.mid && %s tokenize %s/w.mid > %s/w.json", dir, aria_bin(), dir, dir);
    cr_assert_eq(system(args), 0);
    snprintf(mid, sizeof mid, "%s/w.mid", dir);
    slurp(mid, before, sizeof before);
    snprintf(args, sizeof args, "detokenize %s/w.json", dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "already exists") && strstr(r.err, "-o") && strstr(r.err, "--force"), "%s", r.err);
    slurp(mid, after, sizeof after);
    cr_expect(!memcmp(before, after, sizeof before), "w.mid was changed");
    snprintf(args, sizeof args, "detokenize --force %s/w.json", dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    snprintf(args, sizeof args, "detokenize -o %s/w.mid %s/w.json", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "-o naming the file replaces it: %s", r.err);

    /* a finished run is refused, pointing to --resume and --force */
    const char *targs = "--config tiny --batch 2 --steps 2 --threads 1";
    snprintf(args, sizeof args, "train --data %s/data --out %s/run %s", dir, dir, targs);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(p, sizeof p, "%s/run/log.jsonl", dir);
    cr_expect_eq(count_step_lines(p), 2);
    snprintf(args, sizeof args, "train --data %s/data --out %s/run %s --steps 1", dir, dir, targs);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "holds a run") && strstr(r.err, "--resume") && strstr(r.err, "--force"), "%s", r.err);
    cr_expect_eq(count_step_lines(p), 2, "the old run is untouched");
    snprintf(args, sizeof args, "train --data %s/data --out %s/run %s --steps 1 --force", dir, dir, targs);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(count_step_lines(p), 1, "--force replaced the run");
    snprintf(p, sizeof p, "%s/run/ckpt-00000002.safetensors", dir);
    cr_expect(!exists(p), "the old run's checkpoint is gone");
    remove_tree(dir);
}

/* 2. Nothing is left behind on failure. */
Test(cli_ux, nothing_is_left_behind_on_failure) {
    char dir[] = "/tmp/aria_ux2XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 1, 1);
    write_cut_midi(dir);
    static char args[2048];
    static run_result r;
    char p[600];
    /* each: the command, then the directory that must not appear */
    static const char *const cases[][2] = {
        {"train --resume %s/ghost_run", "%s/ghost_run"},
        {"train --data %s/bad --out %s/rX --config tiny", "%s/rX"},
        {"train --data %s/big --out %s/rY --config tiny", "%s/rY"},      /* seq-len 8192 > context 512 */
        {"train --data %s/data --out %s/rW --init %s/emb.safetensors", "%s/rW"}, /* no lm_head */
        {"tokenize --out-dir %s/tk /nonexistent/a.mid", "%s/tk"},
        {"generate --model %s/lm.safetensors --prompt %s/cut.mid --strict --out-dir %s/gen", "%s/gen"},
    };
    snprintf(args, sizeof args, "dataset --out %s/big --filters none " WALTZ, dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(args, sizeof args, cases[i][0], dir, dir, dir);
        run(&r, args);
        cr_expect_eq(r.status, 1, "%s: %s", args, r.err);
        cr_expect_eq(count_lines(r.err), 1, "%s: one line: %s", args, r.err);
        snprintf(p, sizeof p, cases[i][1], dir);
        cr_expect(!exists(p), "%s left %s behind", args, p);
    }
    remove_tree(dir);
}

/* 3. Errors name the thing that is wrong. */
Test(cli_ux, errors_name_the_thing_that_is_wrong) {
    char dir[] = "/tmp/aria_ux3XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 1, 1);
    static char args[2048], want[700];
    static run_result r;
    /* weights of the wrong shape: the weights file, not the run directory */
    snprintf(args, sizeof args, "train --data %s/data --out %s/rZ --init %s/lm.safetensors --config small", dir, dir,
             dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    snprintf(want, sizeof want, "aria: %s/lm.safetensors: tensor ", dir);
    cr_expect(strstr(r.err, want) == r.err, "%s", r.err);
    /* a missing dataset: the dataset, alone */
    snprintf(args, sizeof args, "train --data %s/bad --out %s/rX --config tiny", dir, dir);
    run(&r, args);
    snprintf(want, sizeof want, "aria: %s/bad: no manifest.json", dir);
    cr_expect(strstr(r.err, want) == r.err, "%s", r.err);
    /* the sequence length against the context, with the fix */
    snprintf(args, sizeof args, "train --data %s/data --out %s/rX --config tiny --batch 2 --steps 1", dir, dir);
    /* generate into a directory that does not exist yet: made */
    snprintf(args, sizeof args,
             "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 4 --seed 1 --out-dir %s/out2/deep", dir,
             dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof want, "%s/out2/deep/res_1.mid", dir);
    cr_expect(exists(want), "%s", r.err);
    /* tokenize --out-dir: a missing directory is made; a file in its way is one line */
    snprintf(args, sizeof args, "tokenize --out-dir %s/tk " BASIC " " WALTZ, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof want, "%s/tk/waltz.json", dir);
    cr_expect(exists(want));
    snprintf(args, sizeof args, "tokenize --out-dir %s/data/manifest.json " BASIC " " WALTZ " " NOCTURNE, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
    cr_expect(strstr(r.err, "manifest.json: not a directory") != NULL, "%s", r.err);
    remove_tree(dir);
}

/* 4. Damaged input is reported: read as far as it goes, one warning per
   file and command, refused with --strict. */
Test(cli_ux, damaged_input_is_reported) {
    char dir[] = "/tmp/aria_ux4XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 0, 1);
    write_cut_midi(dir);
    static char args[2048], cut[600];
    static run_result r;
    snprintf(cut, sizeof cut, "%s/cut.mid", dir);
    static const char *const cmds[] = {
        "tokenize --ids %s", "notes %s", "embed --model %s/emb.safetensors %s",
        "generate --model %s/lm.safetensors --prompt %s --max-new 2 --seed 1 --out-dir %s"};
    for (int k = 0; k < 4; k++) {
        for (int strict = 0; strict < 2; strict++) {
            if (k == 0 || k == 1) snprintf(args, sizeof args, cmds[k], cut);
            else snprintf(args, sizeof args, cmds[k], dir, cut, dir);
            if (strict) strcat(args, " --strict");
            run(&r, args);
            cr_expect_eq(r.status, strict ? 1 : 0, "%s: %s", args, r.err);
            cr_expect_eq(count_in(r.err, "runs past the end of the file"), 1, "%s: one line: %s", args, r.err);
            cr_expect_eq(count_in(r.err, "aria: warning: "), !strict, "%s: %s", args, r.err);
            if (strict) cr_expect(strstr(r.err, "refused by --strict") != NULL, "%s", r.err);
            else if (k < 3) cr_expect(r.out[0] != 0, "%s: what could be read still comes out", args);
        }
    }
    snprintf(args, sizeof args, "%s/res_1.mid", dir);
    cr_expect(exists(args), "the continuation of what could be read");
    /* a sound file: no warning */
    run(&r, "tokenize --ids " WALTZ);
    cr_expect(!strstr(r.err, "warning"), "%s", r.err);
    remove_tree(dir);
}

/* 4, dataset: a damaged file among sound ones is kept with one warning
   line, or dropped as a read error with --strict. */
Test(cli_ux, dataset_reports_damaged_files) {
    char dir[] = "/tmp/aria_ux4dXXXXXX";
    cr_assert(mkdtemp(dir));
    write_cut_midi(dir);
    static char args[2048], buf[8192];
    static run_result r;
    for (int strict = 0; strict < 2; strict++) {
        snprintf(args, sizeof args, "dataset --out %s/data%d --seq-len 64 --filters none --val-fraction 0 %s %s%s", dir,
                 strict, WALTZ, dir, strict ? " --strict" : "");
        run(&r, args);
        cr_expect_eq(r.status, 0, "%s: %s", args, r.err);
        /* one line per damaged file; with --strict the summary's list of
           dropped files names it once more */
        cr_expect_eq(count_in(r.err, "runs past the end of the file"), 1 + strict, "%s: %s", args, r.err);
        cr_expect_eq(count_in(r.err, "aria: warning: "), !strict, "%s: %s", args, r.err);
        cr_expect_eq(count_in(r.err, "refused by --strict"), strict, "%s: %s", args, r.err);
        snprintf(args, sizeof args, "%s/data%d/dropped.tsv", dir, strict);
        slurp(args, buf, sizeof buf);
        cr_expect_eq(strstr(buf, "cut.mid") != NULL, strict, "dropped.tsv: %s", buf);
    }
    remove_tree(dir);
}

/* 5. Many files in, one answer per file. */
Test(cli_ux, many_files_one_answer_per_file) {
    static run_result r;
    run(&r, "tokenize --ids " BASIC " /nonexistent/bad.mid " WALTZ);
    cr_expect_eq(r.status, 1);
    cr_expect_eq(count_lines(r.out), 2);
    cr_expect(strncmp(r.out, BASIC "\t6 ", strlen(BASIC) + 3) == 0, "%.80s", r.out);
    const char *second = strchr(r.out, '\n') + 1;
    cr_expect(strncmp(second, WALTZ "\t", strlen(WALTZ) + 1) == 0, "%.80s", second);
    cr_expect(strstr(r.err, "1 of 3 files refused") != NULL, "%s", r.err);
    /* one file: the tokens alone, as before */
    run(&r, "tokenize --ids " WALTZ);
    cr_expect(strncmp(r.out, "6 ", 2) == 0, "%.40s", r.out);

    char dir[] = "/tmp/aria_ux5XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 0, 1);
    static char args[2048], buf[8192];
    char npy[600], list[600];
    snprintf(npy, sizeof npy, "%s/x.npy", dir);
    snprintf(list, sizeof list, "%s/x.files.txt", dir);
    /* without --skip-bad: nothing written, and the way out is named */
    snprintf(args, sizeof args, "embed --model %s/emb.safetensors -o %s " WALTZ " " BASIC, dir, npy);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(!exists(npy) && strstr(r.err, "--skip-bad"), "%s", r.err);
    /* with it: the others embedded, their names listed beside */
    snprintf(args, sizeof args, "embed --model %s/emb.safetensors -o %s --skip-bad " WALTZ " " BASIC " " NOCTURNE, dir,
             npy);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    slurp(npy, buf, sizeof buf);
    cr_expect(strstr(buf + 10, "'shape': (2, 32)") != NULL, "%s", buf + 10);
    slurp(list, buf, sizeof buf);
    cr_expect_str_eq(buf, WALTZ "\n" NOCTURNE "\n");
    remove_tree(dir);
}

/* Every file of configs/, sorted: the preset list. */
static void configs_list(char *out, size_t cap) {
    FILE *p = popen("ls configs | sed -n 's/\\.json$//p' | sort | paste -sd, - | sed 's/,/, /g'", "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    pclose(p);
    while (n && out[n - 1] == '\n') n--;
    out[n] = 0;
}

/* 6. Presets and defaults agree. */
Test(cli_ux, presets_and_defaults_agree) {
    static char list[256], want[300], args[2048];
    static run_result r;
    configs_list(list, sizeof list);
    cr_assert(strstr(list, "small") && strstr(list, "tiny"), "%s", list);
    snprintf(want, sizeof want, "(%s)", list);
    static const char *const helps[] = {"generate --help", "embed --help", "logits --help", "init --help",
                                        "train --help"};
    for (int i = 0; i < 5; i++) {
        run(&r, helps[i]);
        cr_expect(strstr(r.out, want) != NULL, "`%s` lists the presets %s:\n%s", helps[i], want, r.out);
    }
    /* every name works as --config NAME (the error is then about the
       weights), and is the shape its file holds */
    for (char *name = strtok(list, ", "); name; name = strtok(NULL, ", ")) {
        aria_model_config a, b;
        aria_error e = {{0}};
        char path[300];
        snprintf(path, sizeof path, "configs/%s.json", name);
        cr_expect_eq(aria_config_preset(&a, name), ARIA_OK, "no preset %s", name);
        cr_expect_eq(aria_config_read(&b, path, &e), ARIA_OK, "%s: %s", path, e.msg);
        cr_expect(!memcmp(&a, &b, sizeof a), "%s differs from the preset %s", path, name);
        snprintf(args, sizeof args, "logits --config %s --model /nonexistent/m.safetensors --ids " BASIC, name);
        run(&r, args);
        cr_expect_eq(r.status, 1);
        cr_expect(strstr(r.err, "aria: /nonexistent/m.safetensors: ") == r.err, "--config %s: %s", name, r.err);
    }
    run(&r, "logits --config nosuch --model m.safetensors --ids x");
    cr_expect(strstr(r.err, "neither a preset") != NULL, "%s", r.err);

    /* `aria init --config tiny` (which has emb_size) makes a model that generates */
    char dir[] = "/tmp/aria_ux6XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 0, 1);
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 4 --seed 1 --out-dir %s",
             dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    /* and a model without an lm_head says how to get one */
    snprintf(args, sizeof args, "generate --model %s/emb.safetensors --prompt " WALTZ " --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "no lm_head") && strstr(r.err, "--heads lm"), "%s", r.err);
    /* a dataset longer than the model's context: refused with the fix */
    snprintf(args, sizeof args, "dataset --out %s/big --filters none " WALTZ, dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(args, sizeof args, "train --data %s/big --out %s/run --config tiny", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "context of 512") && strstr(r.err, "--seq-len 512"), "%s", r.err);
    remove_tree(dir);
}

/* 7. Progress and results are visible off a terminal. */
Test(cli_ux, progress_is_visible_off_a_terminal) {
    char dir[] = "/tmp/aria_ux7XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 1, 0);
    static char args[2048];
    static run_result r;
    snprintf(args, sizeof args, "train --data %s/data --out %s/run --config tiny --batch 2 --steps 3 --threads 1", dir,
             dir);
    run(&r, args); /* stderr is a file here */
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "step 1/3  loss ") && strstr(r.err, "step 3/3  loss "), "%s", r.err);
    cr_expect(!strchr(r.err, '\r'), "no terminal rewrites in a file: %s", r.err);
    char want[700];
    snprintf(want, sizeof want, "weights %s/run/model.safetensors", dir);
    cr_expect(strstr(r.err, "aria train: ") && strstr(r.err, "step 3, loss ") && strstr(r.err, want), "%s", r.err);
    cr_expect(strstr(r.err, "val loss ") != NULL, "the dataset has a val split: %s", r.err);
    /* init says what it does */
    snprintf(args, sizeof args, "init --config tiny -o %s/m.safetensors", dir);
    run(&r, args);
    cr_expect(strstr(r.err, "random weights") && strstr(r.err, "wrote "), "%s", r.err);
    remove_tree(dir);
}

/* 8. Generation says when it stops short. */
Test(cli_ux, generation_says_when_it_stops_short) {
    char dir[] = "/tmp/aria_ux8XXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 0, 1);
    static char args[2048];
    static run_result r;
    /* the waltz's 15 s prompt is 229 tokens; the tiny context 512 */
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 2048 --seed 1 "
             "--out-dir %s --no-mask", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "warning: --max-new 2048") && strstr(r.err, "room for 283 new tokens"), "%s", r.err);
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 8 --temp 0 "
             "--variations 2 --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "--temp 0") && strstr(r.err, "identical"), "%s", r.err);
    /* neither warning when the run fits and varies */
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 8 --seed 1 "
             "--variations 2 --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect(!strstr(r.err, "warning"), "%s", r.err);
    remove_tree(dir);
}

/* 8b. A generation_config.json beside the weights sets the sampling
   options not given on the command line; a bad one is refused, named. */
Test(cli_ux, generation_config_beside_the_weights) {
    char dir[] = "/tmp/aria_ux8bXXXXXX";
    cr_assert(mkdtemp(dir));
    make_fixtures(dir, 0, 1);
    static char args[2048], greedy[1 << 16], cfg[600];
    static run_result r;
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 12 --seed 1 "
             "--temp 0 --print-ids --out-dir %s", dir, dir);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(greedy, sizeof greedy, "%s", r.out);
    cr_expect(!strstr(r.err, "recommends"), "%s", r.err);
    snprintf(cfg, sizeof cfg, "%s/generation_config.json", dir);
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fputs("{\"temperature\": 0, \"max_length\": 99}\n", f);
    fclose(f);
    /* no --temp: the file's 0, so greedy whatever the seed */
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 12 --seed 7 "
             "--print-ids --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, greedy);
    cr_expect(strstr(r.err, "generation_config.json recommends: temperature 0"), "%s", r.err);
    /* the command line wins */
    snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 12 --seed 7 "
             "--temp 1 --print-ids --out-dir %s", dir, dir);
    run(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_neq(r.out, greedy);
    cr_expect(!strstr(r.err, "recommends"), "%s", r.err);
    /* out of range, or not JSON: refused with the file's name, nothing written */
    static const char *const bad[] = {"{\"temperature\": 5}\n", "{\"min_p\": \"high\"}\n", "[1]\n", "{\"top_p\": \n"};
    for (int i = 0; i < 4; i++) {
        f = fopen(cfg, "w");
        cr_assert(f);
        fputs(bad[i], f);
        fclose(f);
        snprintf(args, sizeof args, "generate --model %s/lm.safetensors --prompt " WALTZ " --max-new 4 --seed 1 "
                 "--out-dir %s/bad", dir, dir);
        run(&r, args);
        cr_expect_eq(r.status, 1, "%s: %d", bad[i], r.status);
        cr_expect(strstr(r.err, "generation_config.json") != NULL, "%s", r.err);
        char made[700];
        snprintf(made, sizeof made, "%s/bad", dir);
        cr_expect(access(made, F_OK) != 0, "%s: an output folder was made", bad[i]);
    }
    remove_tree(dir);
}

/* 9. Small ones. */
Test(cli_ux, small_ones) {
    static run_result r;
    /* the drum channel's program is a kit */
    run(&r, "info " BASIC);
    cr_expect(strstr(r.out, "ch10:0(drum kit)") && !strstr(r.out, "ch10:0(piano)"), "%s", r.out);
    /* one channel numbering, said in --help */
    run(&r, "notes --help");
    cr_expect(strstr(r.out, "channel 1-16") != NULL, "%s", r.out);
    run(&r, "notes " BASIC);
    cr_expect(!strstr(r.out, "\t0\n"), "no channel 0 in 1-16 numbering");
    /* an unknown option is reported once, named */
    static const char *const cmds[] = {"tokenize", "detokenize", "notes", "info", "generate", "embed",
                                       "logits", "init", "train", "dataset"};
    for (int i = 0; i < 10; i++) {
        char args[128];
        snprintf(args, sizeof args, "%s --bogus x", cmds[i]);
        run(&r, args);
        cr_expect_eq(r.status, 2, "%s", args);
        cr_expect_eq(count_in(r.err, "--bogus"), 1, "%s: %s", args, r.err);
        cr_expect(strstr(r.err, "unknown option '--bogus'") != NULL, "%s: %s", args, r.err);
    }
    run(&r, "tokenize --seed");
    cr_expect(strstr(r.err, "'--seed' needs a value") != NULL, "%s", r.err);
    /* info and notes take many files */
    run(&r, "info " BASIC " " WALTZ);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(count_in(r.out, "file\t"), 2, "%s", r.out);
    run(&r, "notes " BASIC " " WALTZ);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, BASIC "\t0\t2000\t48\t127\t1\n", strlen(BASIC) + 17) == 0, "%.80s", r.out);
    cr_expect(strstr(r.out, WALTZ "\t") != NULL);
    /* --help states the valid ranges, and the parser keeps to them */
    run(&r, "generate --help");
    cr_expect(strstr(r.out, "0..2") && strstr(r.out, "--min-p P             min-p filter, 0..1") &&
              strstr(r.out, "0.5..1"), "%s", r.out);
    run(&r, "generate --model m --prompt p --top-p 0.3");
    cr_expect_eq(r.status, 2);
    /* the README's fuzz list names every fuzz target */
    static char readme[1 << 16];
    slurp("README.md", readme, sizeof readme);
    FILE *p = popen("ls fuzz | sed -n 's/\\.c$//p'", "r");
    cr_assert(p);
    char name[128];
    int n = 0;
    while (fgets(name, sizeof name, p)) {
        name[strcspn(name, "\n")] = 0;
        cr_expect(strstr(readme, name) != NULL, "README.md does not mention %s", name);
        n++;
    }
    pclose(p);
    cr_expect_geq(n, 4);
}
