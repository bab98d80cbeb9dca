/*
 * test_dist.c - data-parallel `aria train` under mpirun against one
 * process: the same global batch must give the same losses, gradient
 * norms, validation losses and final weights within float tolerance
 * (only the order of the gradient sums differs), errors must stop every
 * process with the message printed once, and a two-process run whose
 * processes are killed must resume to the losses of an uninterrupted one.
 *
 * Each test skips itself when mpirun is not installed or $ARIA_BIN was
 * built without MPI (it says so in `aria train --help`), so a clone on a
 * machine without MPI still passes; sanitizer builds leave MPI out. With
 * mpirun but an aria built without MPI, one test checks that it refuses to
 * run as several separate processes.
 *
 * mpirun runs with the options a container needs: Open MPI refuses root
 * without --allow-run-as-root, refuses more processes than CPUs without
 * --oversubscribe, and its shared-memory transport's single-copy mode
 * (CMA, ptrace-based) fails where ptrace is restricted, hence
 * --mca btl_vader_single_copy_mechanism none.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"


static int count_in(const char *s, const char *what) {
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

/* Runs `cmd`, returns its exit status, its stderr in err. */
static int run_capture(const char *cmd, char *err, size_t cap) {
    char full[4096], path[] = "/tmp/aria_dist_err_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(full, sizeof full, "%s 2>%s", cmd, path);
    int st = system(full);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs `cmd` (its stderr captured) and asserts it succeeds. */
static void run_ok(const char *cmd) {
    static char err[8192];
    int st = run_capture(cmd, err, sizeof err);
    cr_assert_eq(st, 0, "%s\nexited with %d:\n%s", cmd, st, err);
}

static int aria_has_mpi(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train --help 2>/dev/null | grep -q 'built with MPI'", aria_bin());
    return system(cmd) == 0;
}

/* The mpirun command line prefix for `np` processes, or skips the test;
   `need_mpi`: also skip when $ARIA_BIN is built without MPI. */
static void mpirun_or_skip(char *out, size_t cap, int np, int need_mpi) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip("mpirun is not installed (Debian: openmpi-bin)");
    if (need_mpi && !aria_has_mpi())
        cr_skip("%s is built without MPI (sanitizer builds leave it out; else install libopenmpi-dev and rebuild)",
                aria_bin());
    int openmpi = system("mpirun --version 2>&1 | grep -q 'Open MPI'") == 0;
    snprintf(out, cap, "mpirun %s-np %d",
             openmpi ? "--allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none " : "", np);
}

/* A dataset of 64-token sequences from the test MIDI files in DIR/data. */
static void make_dataset(const char *dir) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s dataset --out %s/data --seq-len 64 --filters none tests/data/vectors/basic "
             "tests/data/vectors/waltz tests/data/vectors/synth_tie_order tests/data/vectors/yesterday 2>/dev/null",
             aria_bin(), dir);
    run_ok(cmd);
}

typedef struct {
    int step;
    double loss, grad_norm, val_loss; /* val_loss NAN on a step line, loss NAN on a validation line */
} log_line;

static double field(const char *line, const char *key) {
    const char *p = strstr(line, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static int read_log(const char *path, log_line *out, int cap) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    char line[512];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        out[n].step = (int)field(line, "\"step\": ");
        out[n].loss = field(line, "\"loss\": ");
        out[n].grad_norm = field(line, "\"grad_norm\": ");
        out[n].val_loss = field(line, "\"val_loss\": ");
        n++;
    }
    fclose(f);
    return n;
}

static int close_rel(double a, double b, double tol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b));
}

/* Per line: the same step, and loss, gradient norm and validation loss
   within `tol` relative. The log has 6 decimals: at losses near 10, 1e-5
   relative is 100 of its last digits. */
static void expect_same_logs(const char *a_path, const char *b_path, int want_lines, double tol) {
    log_line a[64], b[64];
    int na = read_log(a_path, a, 64), nb = read_log(b_path, b, 64);
    cr_expect_eq(na, want_lines, "%s: %d lines", a_path, na);
    cr_expect_eq(nb, na, "%s has %d lines, %s %d", b_path, nb, a_path, na);
    for (int i = 0; i < na && i < nb; i++) {
        cr_expect_eq(a[i].step, b[i].step, "line %d", i + 1);
        cr_expect(close_rel(a[i].loss, b[i].loss, tol), "step %d: loss %.6f, one process %.6f", a[i].step, b[i].loss,
                  a[i].loss);
        cr_expect(close_rel(a[i].grad_norm, b[i].grad_norm, 10 * tol), "step %d: grad_norm %.6f, one process %.6f",
                  a[i].step, b[i].grad_norm, a[i].grad_norm);
        cr_expect(close_rel(a[i].val_loss, b[i].val_loss, tol), "step %d: val_loss %.6f, one process %.6f",
                  a[i].step, b[i].val_loss, a[i].val_loss);
    }
}

/* Largest |a - b| over every tensor of two safetensors files. */
static double max_weight_diff(const char *a_path, const char *b_path) {
    aria_safetensors a, b;
    aria_error err = {{0}};
    cr_assert_eq(aria_st_open(&a, a_path, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_st_open(&b, b_path, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(a.n_tensors, b.n_tensors);
    double maxd = 0;
    for (size_t i = 0; i < a.n_tensors; i++) {
        const aria_tensor *x = &a.tensors[i], *y = &b.tensors[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert(x->dtype == ARIA_DT_F32 && y->dtype == ARIA_DT_F32 && x->nbytes == y->nbytes, "%s", x->name);
        size_t n = x->nbytes / 4;
        for (size_t k = 0; k < n; k++) {
            float u, v;
            memcpy(&u, (const char *)x->data + 4 * k, 4);
            memcpy(&v, (const char *)y->data + 4 * k, 4);
            maxd = fmax(maxd, fabs((double)u - v));
        }
    }
    aria_st_close(&a);
    aria_st_close(&b);
    return maxd;
}

static void remove_dir(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* mpirun for 2 processes (or skip), a fresh directory in dir (32 bytes)
   with the dataset in dir/data. */
static void dist_setup(char *mpirun, size_t cap, char *dir) {
    mpirun_or_skip(mpirun, cap, 2, 1);
    snprintf(dir, 32, "/tmp/aria_dist_XXXXXX");
    cr_assert(mkdtemp(dir));
    make_dataset(dir);
}

/* The learning rate is raised so that four steps move the weights well
   away from their start, and validation runs on steps 2 and 4. Exact
   precision: the comparison is of the data-parallel arithmetic, to float32
   rounding (the fast precision's bfloat16 products round the two batch
   splits differently; its own check is below). */
#define RUN_ARGS "--config tiny --steps 4 --lr 1e-3 --warmup 1 --val-every 2 --seed 5 --threads 1 --precision exact"

Test(dist_, two_processes_follow_one) {
    char mpirun[256];
    char dir[32];
    dist_setup(mpirun, sizeof mpirun, dir);
    char cmd[4096], a[700], b[700];
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/one --batch 2 " RUN_ARGS, aria_bin(),
             dir, dir);
    run_ok(cmd);
    /* --batch is global: each of the two processes takes one sequence */
    snprintf(cmd, sizeof cmd, "%s %s train --data %s/data --out %s/two --batch 2 " RUN_ARGS, mpirun,
             aria_bin(), dir, dir);
    run_ok(cmd);
    snprintf(a, sizeof a, "%s/one/log.jsonl", dir);
    snprintf(b, sizeof b, "%s/two/log.jsonl", dir);
    expect_same_logs(a, b, 6, 1e-5);
    snprintf(a, sizeof a, "%s/one/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/two/model.safetensors", dir);
    double d = max_weight_diff(a, b), start = 0;
    cr_expect_leq(d, 1e-6, "final weights differ by up to %.3g", d);
    /* and the weights did move: four steps of lr 1e-3 */
    char init[700];
    snprintf(init, sizeof init, "%s/init.safetensors", dir);
    snprintf(cmd, sizeof cmd, "%s init --config tiny --heads lm --seed 5 -o %s 2>/dev/null", aria_bin(), init);
    if (system(cmd) == 0) {
        start = max_weight_diff(a, init);
        cr_expect_geq(start, 1e-4, "the weights hardly moved (%.3g), the comparison says little", start);
    }
    cr_log_info("2 processes vs 1: final weights within %.3g (moved %.3g from the start)", d, start);
    remove_dir(dir);
}

/* One process, then two under mpirun, on the same dataset in dir with
   the same extra options; their logs must agree within tol. */
static void one_vs_two(const char *mpirun, const char *dir, const char *extra, int want_lines, double tol) {
    char cmd[4096], a[700], b[700];
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/one " RUN_ARGS " %s", aria_bin(), dir, dir, extra);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "%s %s train --data %s/data --out %s/two " RUN_ARGS " %s", mpirun, aria_bin(), dir, dir,
             extra);
    run_ok(cmd);
    snprintf(a, sizeof a, "%s/one/log.jsonl", dir);
    snprintf(b, sizeof b, "%s/two/log.jsonl", dir);
    expect_same_logs(a, b, want_lines, tol);
}

/* The same in the fast precision: losses within bfloat16's rounding. */
Test(dist_, two_processes_follow_one_fast) {
    char mpirun[256];
    char dir[32];
    dist_setup(mpirun, sizeof mpirun, dir);
    one_vs_two(mpirun, dir, "--batch 2 --precision fast", 6, 2e-3);
    remove_dir(dir);
}

/* Gradient accumulation too: 2 micro-batches of a global 4 on 2
   processes, 2 steps (the later --steps wins). */
Test(dist_, accumulation_matches) {
    char mpirun[256];
    char dir[32];
    dist_setup(mpirun, sizeof mpirun, dir);
    one_vs_two(mpirun, dir, "--batch 4 --grad-accum 2 --steps 2", 3, 1e-5);
    remove_dir(dir);
}

/* The contrastive objective: each process embeds half of the global
   batch and the embeddings are gathered, so the NT-Xent loss, its
   gradients and the weights must be those of one process with the whole
   batch (exact precision, float32 rounding). */
Test(dist_, contrastive_two_processes_follow_one) {
    char mpirun[256];
    mpirun_or_skip(mpirun, sizeof mpirun, 2, 1);
    char dir[32] = "/tmp/aria_dist_XXXXXX";
    cr_assert(mkdtemp(dir));
    const char *files = "tests/data/vectors/arabesque/arabesque.mid tests/data/vectors/basic/basic.mid "
                        "tests/data/vectors/classical/classical.mid tests/data/vectors/nocturne/nocturne.mid "
                        "tests/data/vectors/old_bach/old_bach.mid tests/data/vectors/pop/pop.mid "
                        "tests/data/vectors/pokey_jazz/pokey_jazz.mid tests/data/vectors/old_expressive/old_expressive.mid";
    const char *args = "--objective contrastive --config tiny --seq-len 256 --batch 4 --steps 3 --lr 1e-3 --warmup 1 "
                       "--seed 5 --threads 1 --precision exact";
    char cmd[4096], a[700], b[700];
    snprintf(cmd, sizeof cmd, "%s train %s --out %s/one %s 2>&1", aria_bin(), args, dir, files);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "%s %s train %s --out %s/two %s 2>&1", mpirun, aria_bin(), args, dir, files);
    run_ok(cmd);
    snprintf(a, sizeof a, "%s/one/log.jsonl", dir);
    snprintf(b, sizeof b, "%s/two/log.jsonl", dir);
    /* the first line says what the run holds; then one line per step */
    expect_same_logs(a, b, 4, 1e-5);
    snprintf(a, sizeof a, "%s/one/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/two/model.safetensors", dir);
    double d = max_weight_diff(a, b);
    cr_expect_leq(d, 1e-6, "final weights differ by up to %.3g", d);
    remove_dir(dir);
}

Test(dist_, errors_stop_every_process_and_print_once) {
    char mpirun[256];
    mpirun_or_skip(mpirun, sizeof mpirun, 2, 1);
    char cmd[2048], err[8192];
    /* an error on every process */
    snprintf(cmd, sizeof cmd, "%s %s train --data /nonexistent/data --out /tmp/aria_dist_bad --config tiny", mpirun,
             aria_bin());
    int st = run_capture(cmd, err, sizeof err);
    cr_expect_neq(st, 0, "%s", cmd);
    cr_expect_eq(count_in(err, "no manifest.json"), 1, "the message is not printed once:\n%s", err);
    /* a global batch the processes cannot share */
    snprintf(cmd, sizeof cmd, "%s %s train --data /nonexistent --out /tmp/aria_dist_bad --config tiny --batch 3",
             mpirun, aria_bin());
    st = run_capture(cmd, err, sizeof err);
    cr_expect_neq(st, 0, "%s", cmd);
    cr_expect_eq(count_in(err, "multiple of the 2 processes"), 1, "%s", err);
    /* a usage error */
    snprintf(cmd, sizeof cmd, "%s %s train --batch 0", mpirun, aria_bin());
    st = run_capture(cmd, err, sizeof err);
    cr_expect_neq(st, 0, "%s", cmd);
    cr_expect_eq(count_in(err, "--batch wants"), 1, "%s", err);
    remove_dir("/tmp/aria_dist_bad");
}


/* Sends `sig` to every child of `parent` (found in /proc); returns how
   many. */
static int kill_children(pid_t parent, int sig) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        const char *rp = strrchr(buf, ')'); /* "pid (comm) state ppid ...", comm may hold spaces */
        int ppid;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == parent && kill(atoi(e->d_name), sig) == 0) n++;
    }
    closedir(d);
    return n;
}

/* Every process reads the checkpoint on --resume: a two-process run
   stopped midway resumes to the losses of one uninterrupted process. */
Test(dist_, stopped_run_resumes) {
    char mpirun[256];
    char dir[32];
    dist_setup(mpirun, sizeof mpirun, dir);
    /* exact: one process and two are compared to float32 rounding */
    const char *args =
        "--config tiny --batch 2 --steps 8 --save-every 2 --lr 1e-3 --warmup 1 --seed 7 --threads 1 --precision exact";
    char cmd[4096], log_a[700], log_b[700];
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/a %s", aria_bin(), dir, dir, args);
    run_ok(cmd);
    snprintf(log_b, sizeof log_b, "%s/b/log.jsonl", dir);
    snprintf(cmd, sizeof cmd, "exec %s %s train --data %s/data --out %s/b %s 2>/dev/null", mpirun, aria_bin(), dir,
             dir, args);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 6000 && count_step_lines(log_b) < 3; i++) usleep(5000);
    /* kill -9 the training processes themselves (mpirun then ends the job;
       a SIGTERM to mpirun reaches them only after a few more steps) */
    int killed = kill_children(pid, SIGKILL);
    if (!killed) kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    int done_before = count_step_lines(log_b);
    if (done_before >= 8) cr_log_warn("the run finished before it was stopped; only the full run is compared");
    else cr_log_info("2 processes stopped after %d of 8 steps, resumed", done_before);
    snprintf(cmd, sizeof cmd, "%s %s train --resume %s/b", mpirun, aria_bin(), dir);
    run_ok(cmd);
    snprintf(log_a, sizeof log_a, "%s/a/log.jsonl", dir);
    expect_same_logs(log_a, log_b, 9, 1e-5); /* 8 steps + the final validation */
    remove_dir(dir);
}

/* An aria built without MPI, started by mpirun, would run N separate
   trainings into one directory: it refuses. */
Test(dist_, build_without_mpi_refuses_mpirun) {
    char mpirun[256];
    mpirun_or_skip(mpirun, sizeof mpirun, 2, 0);
    if (aria_has_mpi()) cr_skip("%s is built with MPI", aria_bin());
    char cmd[2048], err[8192];
    snprintf(cmd, sizeof cmd, "%s %s train --data /nonexistent --out /tmp/aria_dist_nompi --config tiny", mpirun,
             aria_bin());
    int st = run_capture(cmd, err, sizeof err);
    cr_expect_neq(st, 0, "%s", cmd);
    cr_expect(strstr(err, "built without MPI") != NULL, "%s", err);
    remove_dir("/tmp/aria_dist_nompi");
}
