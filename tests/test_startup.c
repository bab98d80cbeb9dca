/*
 * test_startup.c - the optional libraries (oneDNN, MPI, FluidSynth,
 * libpng) are opened at first use (src/base/dynlib.h), never at start:
 * commands that need none of them must not load them, the commands that
 * do must still work, and a machine where one is missing (simulated by an
 * LD_LIBRARY_PATH folder holding a broken file of its soname, which the
 * dynamic loader finds first) must fall back without an error.
 *
 * What a process loads is read from the dynamic loader's own trace
 * (LD_DEBUG=files prints "file=NAME ..." for every library it opens,
 * dlopen included); a control run that does load the libraries checks
 * that the trace shows them, so that the absence checks can fail.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"

static const char *const OPTIONAL[] = {"libdnnl", "libmpi", "libfluidsynth", "libpng"};
#define N_OPTIONAL (sizeof OPTIONAL / sizeof *OPTIONAL)

/* Runs `cmd` through the shell with stdout and stderr captured into out;
   returns the exit status. */
static int run(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "%s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {} /* the rest, unread */
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The loader's trace of `args` run by aria: 1 when it mentions a library
   file whose name starts with `lib` ("file=libdnnl..."). */
static char trace[1 << 20];
static void trace_of(const char *env, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env %s LD_DEBUG=files %s %s", env, aria_bin(), args);
    cr_assert_eq(run(cmd, trace, sizeof trace), 0, "%s failed:\n%.2000s", cmd, trace);
    if (!strstr(trace, "file=")) cr_skip_test("LD_DEBUG gives no trace here (not glibc?)");
}
static int traced(const char *lib) {
    char key[64];
    snprintf(key, sizeof key, "file=%s", lib);
    return strstr(trace, key) != NULL;
}

static void expect_none_loaded(const char *args) {
    trace_of("", args);
    for (size_t i = 0; i < N_OPTIONAL; i++)
        cr_expect(!traced(OPTIONAL[i]), "`aria %s` loads %s", args, OPTIONAL[i]);
}

Test(startup, help_and_tokenize_load_no_optional_library) {
    expect_none_loaded("--help");
    expect_none_loaded("--version");
    expect_none_loaded("tokenize --ids examples/waltz.mid");
    expect_none_loaded("notes examples/waltz.mid");
}

/* The control: `--version --verbose` opens every library of the build, and
   the trace shows it. */
Test(startup, verbose_version_opens_the_libraries_of_the_build) {
    trace_of("", "--version --verbose");
    char libs[1024];
    aria_libs_describe(libs, sizeof libs);
    static const char *const names[] = {"oneDNN: ", "MPI: ", "FluidSynth: ", "libpng: "};
    for (size_t i = 0; i < N_OPTIONAL; i++) {
        const char *line = strstr(libs, names[i]);
        cr_assert(line, "no line for %s in:\n%s", names[i], libs);
        /* the test process and the command see the same machine */
        int loaded = !strncmp(strchr(line, '\n') - 6, "loaded", 6);
        cr_expect_eq(traced(OPTIONAL[i]), loaded, "%s: trace and report disagree:\n%s", OPTIONAL[i], libs);
        cr_expect(strstr(trace, names[i]), "`aria --version --verbose` has no line for %s", names[i]);
    }
#ifdef HAVE_DNNL
    cr_expect(traced("libdnnl") && strstr(trace, "+ oneDNN"), "oneDNN is built in but not used:\n%.3000s", trace);
#endif
}

/* A folder that shadows `soname` with an empty file (a missing library:
   the loader stops at "file too short") in dir[64]. */
static void shadow(char *dir, const char *soname) {
    strcpy(dir, "/tmp/aria_startup_XXXXXX");
    cr_assert(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, soname);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fclose(f);
}

static void rm_rf(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Logits of a tiny model with and without oneDNN loadable: the same
   numbers (the tiny model's products are below oneDNN's sizes, so every
   backend computes them alike), no error, and --version --verbose says
   why oneDNN is missing. */
Test(startup, model_commands_run_without_onednn) {
    char dir[64], env[128], cmd[2048], out[4096];
    shadow(dir, "libdnnl.so.2");
    snprintf(env, sizeof env, "LD_LIBRARY_PATH=%s", dir);
    snprintf(cmd, sizeof cmd,
             "%s init --config tiny --seed 3 -o %s/m.safetensors && echo '6 0 1085 17227 16893 614' > %s/ids.txt",
             aria_bin(), dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s logits --model %s/m.safetensors --ids %s/ids.txt -o %s/a.bin", aria_bin(), dir,
             dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "env %s %s logits --model %s/m.safetensors --ids %s/ids.txt -o %s/b.bin", env,
             aria_bin(), dir, dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "without oneDNN: %s", out);
    cr_expect(!strstr(out, "oneDNN"), "a missing oneDNN is not an error: %s", out);
    snprintf(cmd, sizeof cmd, "cmp %s/a.bin %s/b.bin", dir, dir);
    cr_expect_eq(run(cmd, out, sizeof out), 0, "the logits differ without oneDNN: %s", out);
#ifdef HAVE_DNNL
    snprintf(cmd, sizeof cmd, "env %s %s --version --verbose", env, aria_bin());
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "oneDNN not loaded") && strstr(out, "file too short"), "%s", out);
    cr_expect(!strstr(out, "+ oneDNN"), "oneDNN listed among the kernels: %s", out);
#endif
    rm_rf(dir);
}

/* Single-process training never loads MPI, and a process that looks
   launched (one process of mpirun) on a machine without a loadable MPI
   trains alone. */
Test(startup, training_without_mpi) {
    char dir[64], cmd[4096], out[8192];
    shadow(dir, "libmpi.so.40");
    snprintf(cmd, sizeof cmd,
             "%s dataset --out %s/data --seq-len 64 --filters none tests/data/vectors/basic "
             "tests/data/vectors/waltz tests/data/vectors/pop",
             aria_bin(), dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    char args[1024];
    snprintf(args, sizeof args,
             "train --data %s/data --out %s/a --config tiny --batch 2 --steps 2 --warmup 1 --threads 1", dir, dir);
    trace_of("", args);
    cr_expect(!traced("libmpi"), "single-process training loads MPI");
    snprintf(args, sizeof args,
             "train --data %s/data --out %s/b --config tiny --batch 2 --steps 2 --warmup 1 --threads 1", dir, dir);
    char env[256];
    snprintf(env, sizeof env, "LD_LIBRARY_PATH=%s OMPI_COMM_WORLD_SIZE=1 OMPI_COMM_WORLD_RANK=0", dir);
    trace_of(env, args);
    char log[300];
    snprintf(log, sizeof log, "%s/b/log.jsonl", dir);
    cr_expect_eq(count_step_lines(log), 2, "the run without MPI did not train 2 steps");
    rm_rf(dir);
}
