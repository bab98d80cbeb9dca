/*
 * test_probe.c - labelled files and linear probes (docs/probe.md):
 * the labels CSV (parsing, the root, each bad input), group folds, the
 * logistic-regression probe on synthetic features (a planted linear
 * signal is found, noise labels stay at chance), handcrafted features of a
 * hand-made score against values worked out by hand, model features
 * against aria_embed_score, the feature cache, and `aria probe` on MIDI
 * files the tests write (two styles that handcrafted features tell apart).
 *
 * Nothing here needs ../shared; the one test on the shipped labels.csv
 * skips when it is absent.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "base/json.h"
#include "cli_helpers.h"

/* ---------------------------------------------------------------------- */
/* helpers                                                                */
/* ---------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* A piano piece of `n` onsets, 1 tick = 1 ms. style 0: low, slow, soft,
   single notes; style 1: high, fast, loud, two-note chords. `program`
   other than 0 makes it a non-piano file. Small variation from `seed`. */
static void write_piece(const char *path, int style, uint64_t seed, int program, int n) {
    aria_midi m;
    aria_error e = {{0}};
    aria_rng rng;
    aria_rng_seed(&rng, seed);
    cr_assert_eq(aria_midi_init(&m, 0, 500), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    uint8_t t[3] = {0x07, 0xA1, 0x20}; /* 500000 us per beat */
    aria_midi_event tev = {.tick = 0, .kind = ARIA_MIDI_META, .status = 0x51, .len = 3};
    cr_assert_eq(aria_midi_push(&m, 0, &tev, t, &e), ARIA_OK, "%s", e.msg);
    aria_midi_event pc = {.tick = 0, .status = 0xC0, .d1 = (uint8_t)program};
    cr_assert_eq(aria_midi_push(&m, 0, &pc, NULL, &e), ARIA_OK, "%s", e.msg);
    int step = style ? 120 : 500, dur = style ? 90 : 420;
    for (int i = 0; i < n; i++) {
        uint64_t t0 = (uint64_t)i * (uint64_t)step;
        int p = style ? 72 + (int)aria_rng_randbelow(&rng, 18) : 36 + (int)aria_rng_randbelow(&rng, 18);
        int v = style ? 100 + (int)aria_rng_randbelow(&rng, 20) : 30 + (int)aria_rng_randbelow(&rng, 20);
        int chord = style ? 2 : 1;
        for (int k = 0; k < chord; k++) {
            aria_midi_event on = {.tick = t0, .status = 0x90, .d1 = (uint8_t)(p + 4 * k), .d2 = (uint8_t)v};
            cr_assert_eq(aria_midi_push(&m, 0, &on, NULL, &e), ARIA_OK, "%s", e.msg);
        }
        for (int k = 0; k < chord; k++) {
            aria_midi_event off = {.tick = t0 + (uint64_t)dur, .status = 0x80, .d1 = (uint8_t)(p + 4 * k)};
            cr_assert_eq(aria_midi_push(&m, 0, &off, NULL, &e), ARIA_OK, "%s", e.msg);
        }
    }
    cr_assert_eq(aria_midi_write_file(&m, path, &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&m);
}

static int run(const char *args, char *out, size_t cap) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", aria_bin(), args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_dir(char *tmpl) { cr_assert(mkdtemp(tmpl), "mkdtemp"); }

/* ---------------------------------------------------------------------- */
/* labels                                                                 */
/* ---------------------------------------------------------------------- */

Test(probe, labels_parse_and_root) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    char p[1024], sub[256];
    snprintf(sub, sizeof sub, "%s/eval", dir);
    cr_assert_eq(mkdir(sub, 0777), 0);
    const char *files[] = {"a.mid", "b, c.mid", "d.mid", "e.mid"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", sub, files[i]);
        write_text(p, "x");
    }
    /* columns in another order, a BOM, CRLF, a quoted comma, a quoted
       quote, an empty label, an empty group, other tasks, a blank line */
    snprintf(p, sizeof p, "%s/labels.csv", sub);
    write_text(p, "\xEF\xBB\xBFtask,group,path,label\r\n"
                  "comp,g1,eval/a.mid,Bach\r\n"
                  "comp,g1,\"eval/b, c.mid\",\"Cho\"\"pin\"\r\n"
                  "year,g1,eval/a.mid,1720\r\n"
                  "\r\n"
                  "comp,,eval/d.mid,Bach\r\n"
                  "comp,g3,eval/e.mid,\r\n");
    aria_labels l;
    aria_error e = {{0}};
    cr_assert_eq(aria_labels_read(p, "comp", NULL, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_str_eq(l.root, dir, "the root is the CSV's parent, where eval/a.mid is");
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.n_empty_label, 1);
    cr_assert_eq(l.n_missing, 0);
    cr_assert_eq(l.n_classes, 2);
    cr_assert_str_eq(l.classes[0], "Bach");
    cr_assert_str_eq(l.classes[1], "Cho\"pin");
    char want[600];
    snprintf(want, sizeof want, "%s/eval/b, c.mid", dir);
    cr_assert_str_eq(l.rows[1].path, want);
    cr_assert_eq(l.y[0], 0);
    cr_assert_eq(l.y[1], 1);
    cr_assert_eq(l.y[2], 0);
    cr_assert_str_eq(l.rows[2].group, "eval/d.mid", "an empty group is the file's own");
    aria_labels_free(&l);
    aria_labels_free(&l); /* twice is harmless */

    /* paths relative to the CSV's own folder */
    snprintf(p, sizeof p, "%s/local.csv", sub);
    write_text(p, "path,task,label,group\na.mid,t,x,1\nd.mid,t,y,2\n");
    cr_assert_eq(aria_labels_read(p, "t", NULL, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_str_eq(l.root, sub);
    aria_labels_free(&l);
    /* --root given */
    cr_assert_eq(aria_labels_read(p, "t", sub, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    aria_labels_free(&l);
    rm_tree(dir);
}

/* The error of reading `csv_text` for `task`, with the status. */
static int labels_error(const char *dir, const char *csv_text, const char *task, char *msg) {
    char p[512];
    snprintf(p, sizeof p, "%s/bad.csv", dir);
    write_text(p, csv_text);
    aria_labels l;
    aria_error e = {{0}};
    int rc = aria_labels_read(p, task, NULL, &l, &e);
    if (rc == ARIA_OK) aria_labels_free(&l);
    strcpy(msg, e.msg);
    return rc;
}

Test(probe, labels_bad_input) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    char p[512], msg[600];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/f%d.mid", dir, i);
        write_text(p, "x");
    }
    cr_assert_neq(labels_error(dir, "path,task,label\nf0.mid,t,a\n", "t", msg), ARIA_OK);
    cr_assert(strstr(msg, "line 1") && strstr(msg, "'group'"), "%s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nf0.mid,t,a,1\nf1.mid,u,b,2\n", "nope", msg), ARIA_OK);
    cr_assert(strstr(msg, "'nope'") && strstr(msg, "t, u"), "lists the tasks: %s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nf0.mid,t,a,1\nf1.mid,t,a,2\n", "t", msg), ARIA_OK);
    cr_assert(strstr(msg, "one class"), "%s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nf0.mid,t,\"a,1\nf1.mid,t,b,2\n", "t", msg), ARIA_OK);
    cr_assert(strstr(msg, "line 2") && strstr(msg, "quoted"), "%s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nf0.mid,t,a,1\nf1.mid,t\n", "t", msg), ARIA_OK);
    cr_assert(strstr(msg, "line 3"), "%s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nf0.mid,t,a,1\nf1.mid,t,b,2\nf0.mid,t,b,3\n", "t", msg),
                  ARIA_OK);
    cr_assert(strstr(msg, "line 4") && strstr(msg, "line 2"), "%s", msg);

    cr_assert_neq(labels_error(dir, "path,task,label,group\nno1.mid,t,a,1\nno2.mid,t,b,2\n", "t", msg), ARIA_OK);
    cr_assert(strstr(msg, "none of its 2 files"), "%s", msg);

    cr_assert_neq(labels_error(dir, "", "t", msg), ARIA_OK);

    /* a missing file is a counted skip, listed by name */
    snprintf(p, sizeof p, "%s/skip.csv", dir);
    write_text(p, "path,task,label,group\nf0.mid,t,a,1\nf1.mid,t,b,2\ngone.mid,t,b,3\n");
    aria_labels l;
    aria_error e = {{0}};
    cr_assert_eq(aria_labels_read(p, "t", NULL, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.n_missing, 1);
    cr_assert(strstr(l.missing[0], "gone.mid"));
    aria_labels_free(&l);
    rm_tree(dir);
}

/* A labels set in memory: n rows, class of row i cls[i], group grp[i]. */
static void fake_labels(aria_labels *l, size_t n, int C, const int *cls, const int *grp) {
    memset(l, 0, sizeof *l);
    l->rows = calloc(n, sizeof *l->rows);
    l->y = calloc(n, sizeof(int));
    l->classes = calloc((size_t)C, sizeof(char *));
    for (int c = 0; c < C; c++) {
        l->classes[c] = malloc(24);
        snprintf(l->classes[c], 24, "class%d", c);
    }
    for (size_t i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof b, "f%zu.mid", i);
        l->rows[i].path = strdup(b);
        l->rows[i].label = strdup(l->classes[cls[i]]);
        snprintf(b, sizeof b, "g%d", grp[i]);
        l->rows[i].group = strdup(b);
        l->y[i] = cls[i];
    }
    l->n = n;
    l->n_classes = C;
    l->task = strdup("fake");
}

Test(probe, folds_keep_groups) {
    enum { N = 400 };
    int cls[N], grp[N], f1[N], f2[N], f3[N];
    aria_rng r;
    aria_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        grp[i] = (int)aria_rng_randbelow(&r, 60);
        cls[i] = grp[i] % 3; /* a group has one class, as a piece has one composer */
    }
    aria_labels l;
    fake_labels(&l, N, 3, cls, grp);
    aria_error e = {{0}};
    cr_assert_eq(aria_labels_folds(&l, 5, 1, f1, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_labels_folds(&l, 5, 1, f2, &e), ARIA_OK);
    cr_assert_eq(aria_labels_folds(&l, 5, 2, f3, &e), ARIA_OK);
    cr_assert_arr_eq(f1, f2, sizeof f1, "the same seed gives the same folds");
    cr_assert(memcmp(f1, f3, sizeof f1) != 0, "another seed gives other folds");
    int count[5][3] = {{0}};
    for (int i = 0; i < N; i++) {
        cr_assert(f1[i] >= 0 && f1[i] < 5);
        count[f1[i]][cls[i]]++;
        for (int j = 0; j < N; j++)
            if (grp[i] == grp[j]) cr_assert_eq(f1[i], f1[j], "group %d on two folds", grp[i]);
    }
    for (int f = 0; f < 5; f++)
        for (int c = 0; c < 3; c++) cr_assert_gt(count[f][c], 0, "fold %d lacks class %d", f, c);
    /* groups shared across classes (a piece with several performers) too */
    for (int i = 0; i < N; i++) cls[i] = (int)aria_rng_randbelow(&r, 3);
    aria_labels_free(&l);
    fake_labels(&l, N, 3, cls, grp);
    cr_assert_eq(aria_labels_folds(&l, 4, 9, f1, &e), ARIA_OK, "%s", e.msg);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (grp[i] == grp[j]) cr_assert_eq(f1[i], f1[j]);
    aria_labels_free(&l);
}

Test(probe, few_groups_error_and_drop) {
    /* class 0: 6 groups, class 1: 5 groups, class 2: 2 groups (4 files) */
    int cls[] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2};
    int grp[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12, 12};
    size_t n = sizeof cls / sizeof *cls;
    int fold[15];
    aria_labels l;
    fake_labels(&l, n, 3, cls, grp);
    aria_error e = {{0}};
    cr_assert_eq(aria_labels_class_groups(&l, 2), 2);
    cr_assert_neq(aria_labels_folds(&l, 5, 0, fold, &e), ARIA_OK);
    cr_assert(strstr(e.msg, "class2") && strstr(e.msg, "2 groups"), "%s", e.msg);
    cr_assert_neq(aria_labels_folds(&l, 1, 0, fold, &e), ARIA_OK);
    cr_assert_eq(aria_labels_drop_small(&l, 5, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(l.n, 11);
    cr_assert_eq(l.n_classes, 2);
    cr_assert_eq(l.n_dropped_classes, 1);
    cr_assert_str_eq(l.dropped_classes[0], "class2");
    cr_assert_eq(l.n_dropped_rows, 4);
    cr_assert_eq(aria_labels_folds(&l, 5, 0, fold, &e), ARIA_OK, "%s", e.msg);
    /* 6 groups needed: only class0 keeps enough, one class is no probe */
    cr_assert_neq(aria_labels_drop_small(&l, 6, &e), ARIA_OK);
    cr_assert(strstr(e.msg, "class1"), "%s", e.msg);
    aria_labels_free(&l);
}

Test(probe, shipped_labels_csv) {
    const char *csv = "../shared/midi/eval/labels.csv";
    if (access(csv, R_OK) != 0) cr_skip_test("%s is absent", csv);
    aria_labels l;
    aria_error e = {{0}};
    cr_assert_eq(aria_labels_read(csv, "period", NULL, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(l.n_missing, 0, "the default root finds every file");
    cr_assert_geq(l.n_classes, 2);
    aria_labels_free(&l);
    cr_assert_eq(aria_labels_read(csv, "year", NULL, &l, &e), ARIA_OK, "%s", e.msg);
    cr_assert_gt(l.n_empty_label, 0, "year rows with no label are counted");
    aria_labels_free(&l);
}

/* ---------------------------------------------------------------------- */
/* the classifier                                                         */
/* ---------------------------------------------------------------------- */

static double gauss(aria_rng *r) {
    double u = aria_rng_random(r), v = aria_rng_random(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* n rows of d features (scale and offset differ per feature); labels the
   argmax of a random linear map when `planted`, else random. */
static void synth(size_t n, int d, int C, int planted, uint64_t seed, float *X, int *y, int *fold, int k) {
    aria_rng r;
    aria_rng_seed(&r, seed);
    double *Wt = malloc((size_t)C * (size_t)d * sizeof(double));
    for (int i = 0; i < C * d; i++) Wt[i] = gauss(&r);
    for (size_t i = 0; i < n; i++) {
        double best = -1e300;
        int arg = 0;
        for (int j = 0; j < d; j++) X[i * (size_t)d + (size_t)j] = (float)gauss(&r);
        for (int c = 0; c < C; c++) {
            double z = 0;
            for (int j = 0; j < d; j++) z += Wt[c * d + j] * X[i * (size_t)d + (size_t)j];
            if (z > best) {
                best = z;
                arg = c;
            }
        }
        y[i] = planted ? arg : (int)aria_rng_randbelow(&r, (uint64_t)C);
        fold[i] = (int)(i % (size_t)k);
        /* the probe standardizes: scale and shift must not matter */
        for (int j = 0; j < d; j++) X[i * (size_t)d + (size_t)j] = X[i * (size_t)d + (size_t)j] * (float)(j + 1) * 10.0f + 100.0f;
    }
    free(Wt);
}

Test(probe, planted_signal_is_found) {
    enum { N = 600, D = 8, C = 3 };
    static float X[N * D];
    static int y[N], fold[N];
    synth(N, D, C, 1, 11, X, y, fold, 5);
    aria_probe_opts o = aria_probe_defaults();
    /* spec 3.6's budget (50 epochs at 3e-4) stops short of convergence on
       480 rows (0.79 here, 0.97 with 300 epochs); the test is of the classifier, so it
       trains longer */
    o.epochs = 300;
    aria_probe_result r;
    aria_error e = {{0}};
    cr_assert_eq(aria_probe_cv(X, y, N, D, C, fold, &o, &r, &e), ARIA_OK, "%s", e.msg);
    cr_assert_gt(r.acc_mean, 0.9, "accuracy %.3f on a linear signal", r.acc_mean);
    cr_assert_gt(r.f1_mean, 0.8, "macro-F1 %.3f", r.f1_mean);
    cr_assert_lt(r.base_acc_mean, 0.6);
    int64_t tot = 0, diag = 0;
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            tot += r.confusion[a * C + b];
            diag += a == b ? r.confusion[a * C + b] : 0;
        }
    cr_assert_eq(tot, N, "every row is scored once");
    cr_assert_float_eq((double)diag / N, r.acc_mean, 0.03);
    /* determinism */
    aria_probe_result r2;
    cr_assert_eq(aria_probe_cv(X, y, N, D, C, fold, &o, &r2, &e), ARIA_OK);
    cr_assert_arr_eq(r.acc, r2.acc, 5 * sizeof(double));
    aria_probe_result_free(&r2);
    /* fewer labels per class: still above chance, and the training folds hold at most N per class */
    o.per_class = 10;
    cr_assert_eq(aria_probe_cv(X, y, N, D, C, fold, &o, &r2, &e), ARIA_OK);
    for (int f = 0; f < 5; f++) cr_assert_leq(r2.n_train[f], 30);
    cr_assert_eq(r2.n_test[0], r.n_test[0], "the test fold is untouched");
    aria_probe_result_free(&r2);
    aria_probe_result_free(&r);
}

Test(probe, noise_labels_at_chance) {
    enum { N = 600, D = 8, C = 3 };
    static float X[N * D];
    static int y[N], fold[N];
    synth(N, D, C, 0, 12, X, y, fold, 5);
    aria_probe_opts o = aria_probe_defaults();
    aria_probe_result r;
    aria_error e = {{0}};
    cr_assert_eq(aria_probe_cv(X, y, N, D, C, fold, &o, &r, &e), ARIA_OK, "%s", e.msg);
    cr_assert_lt(r.acc_mean, 0.45, "accuracy %.3f on noise", r.acc_mean);
    cr_assert_gt(r.acc_mean, 0.2);
    aria_probe_result_free(&r);
}

Test(probe, lr_schedule) {
    aria_probe_opts o = aria_probe_defaults();
    cr_assert_float_eq(aria_probe_lr(&o, 0, 1000), o.lr / 100, 1e-9);
    cr_assert_float_eq(aria_probe_lr(&o, 99, 1000), o.lr, 1e-9);
    cr_assert_float_eq(aria_probe_lr(&o, 999, 1000), 0.1f * o.lr, 1e-9);
    cr_assert_lt(aria_probe_lr(&o, 500, 1000), o.lr);
}

/* ---------------------------------------------------------------------- */
/* handcrafted features                                                   */
/* ---------------------------------------------------------------------- */

static int feat_index(const char *name) {
    for (int i = 0; i < ARIA_HANDCRAFTED_DIM; i++)
        if (!strcmp(aria_handcrafted_name(i), name)) return i;
    cr_assert_fail("no feature %s", name);
    return -1;
}

Test(probe, handcrafted_by_hand) {
    /* 500 ticks per beat; 120 bpm up to tick 600 (1 tick = 1 ms), then
       240 bpm (1 tick = 0.5 ms): tick 1000 is 800 ms, 1100 is 850 ms */
    aria_note notes[] = {
        {.start = 0, .end = 500, .pitch = 60, .velocity = 80},     /* 0-500 ms */
        {.start = 10, .end = 510, .pitch = 64, .velocity = 60},    /* 10-510: same onset group */
        {.start = 500, .end = 1000, .pitch = 67, .velocity = 100}, /* 500-800 */
        {.start = 1000, .end = 1100, .pitch = 55, .velocity = 40}, /* 800-850 */
    };
    aria_tempo tempos[] = {{0, 500000}, {600, 250000}};
    aria_program prog[] = {{0, 0, 0}};
    aria_score s = {.notes = notes, .n_notes = 4, .tempos = tempos, .n_tempos = 2, .programs = prog, .n_programs = 1,
                    .ticks_per_beat = 500, .composer = -1, .form = -1, .genre = -1};
    float f[ARIA_HANDCRAFTED_DIM];
    aria_error e = {{0}};
    cr_assert_eq(aria_handcrafted_features(&s, f, &e), ARIA_OK, "%s", e.msg);
    const struct {
        const char *name;
        double v;
    } want[] = {
        {"pc_0", 0.25}, {"pc_4", 0.25}, {"pc_7", 0.5}, {"pc_1", 0},
        /* group tops 64, 67, 55: steps +3 and -15 (clamped to -12) */
        {"interval_3", 0.5}, {"interval_-12", 0.5}, {"interval_0", 0},
        /* durations 500, 500, 300, 50 ms */
        {"dur_500_1000", 0.5}, {"dur_250_500", 0.25}, {"dur_lt60", 0.25}, {"dur_60_120", 0},
        {"notes_per_s", 4 / 0.85}, {"polyphony_mean", 1350.0 / 850.0}, {"polyphony_max", 2},
        {"velocity_mean", 70}, {"velocity_std", sqrt((100 + 100 + 900 + 900) / 4.0)},
        {"velocity_min", 40}, {"velocity_max", 100},
        /* 600 ticks at 120 bpm, 500 at 240 */
        {"bpm_mean", (600 * 120.0 + 500 * 240.0) / 1100},
        {"bpm_std", sqrt((600 * 120.0 * 120 + 500 * 240.0 * 240) / 1100 -
                         ((600 * 120.0 + 500 * 240.0) / 1100) * ((600 * 120.0 + 500 * 240.0) / 1100))},
        {"tempo_changes_per_min", 1 / (0.85 / 60)},
        {"pitch_mean", 61.5}, {"pitch_std", 4.5}, {"pitch_range", 12},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int k = feat_index(want[i].name);
        cr_assert_float_eq(f[k], want[i].v, 1e-4 * (1 + fabs(want[i].v)), "%s: %g, expected %g", want[i].name,
                           (double)f[k], want[i].v);
    }
    double pcs = 0;
    for (int k = 0; k < 12; k++) pcs += f[k];
    cr_assert_float_eq(pcs, 1.0, 1e-6);
    cr_assert_null(aria_handcrafted_name(ARIA_HANDCRAFTED_DIM));
    s.n_notes = 0;
    cr_assert_eq(aria_handcrafted_features(&s, f, &e), ARIA_ERR_EMPTY);
}

/* ---------------------------------------------------------------------- */
/* model features and the cache                                           */
/* ---------------------------------------------------------------------- */

static aria_score load(const char *path) {
    aria_midi m = {0};
    aria_score s = {0};
    aria_error e = {{0}};
    cr_assert_eq(aria_midi_read_file(&m, path, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_score_from_midi(&s, &m, &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&m);
    return s;
}

Test(probe, model_features) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    char mid[512];
    snprintf(mid, sizeof mid, "%s/long.mid", dir);
    write_piece(mid, 0, 3, 0, 700); /* 700 notes: 3 chunks */
    aria_model_config cfg;
    cr_assert_eq(aria_config_preset(&cfg, "tiny"), ARIA_OK);
    aria_model *emb = NULL, *lm = NULL;
    aria_error e = {{0}};
    cr_assert_eq(aria_model_new_random(&emb, &cfg, ARIA_HEAD_EMB, 1, &e), ARIA_OK, "%s", e.msg);
    aria_model_config lcfg = cfg;
    lcfg.emb_size = 0;
    lcfg.class_size = 0;
    cr_assert_eq(aria_model_new_random(&lm, &lcfg, ARIA_HEAD_LM, 2, &e), ARIA_OK, "%s", e.msg);
    aria_model_set_threads(emb, 1);
    aria_model_set_threads(lm, 1);
    aria_tokenizer *t = aria_tokenizer_for_model(emb);
    aria_score s = load(mid);
    int E = aria_feature_dim(emb, ARIA_FEAT_EMBEDDING);
    cr_assert_eq(E, cfg.emb_size);
    cr_assert_eq(aria_feature_dim(lm, ARIA_FEAT_EMBEDDING), 0, "an LM gives no embedding");
    cr_assert_eq(aria_feature_dim(lm, ARIA_FEAT_LM_MEAN), cfg.d_model);
    float *a = calloc((size_t)cfg.d_model, sizeof(float)), *b = calloc((size_t)cfg.d_model, sizeof(float));
    size_t nc = 0, nc2 = 0;
    cr_assert_eq(aria_model_features(emb, t, &s, ARIA_FEAT_EMBEDDING, 0, a, &nc, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_embed_score(emb, t, &s, b, &nc2, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(nc, 3);
    cr_assert_eq(nc2, 3);
    for (int i = 0; i < E; i++) cr_assert_float_eq(a[i], b[i], 1e-5, "embedding[%d]", i);
    cr_assert_eq(aria_model_features(emb, t, &s, ARIA_FEAT_EMBEDDING, 1, a, &nc, &e), ARIA_OK);
    cr_assert_eq(nc, 1, "--max-chunks 1");
    cr_assert_eq(aria_model_features(lm, t, &s, ARIA_FEAT_LM_MEAN, 2, a, &nc, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(nc, 2);
    double norm = 0;
    for (int i = 0; i < cfg.d_model; i++) norm += (double)a[i] * a[i];
    cr_assert_gt(norm, 0);
    cr_assert_neq(aria_model_features(lm, t, &s, ARIA_FEAT_EMBEDDING, 0, a, &nc, &e), ARIA_OK);
    cr_assert(strstr(e.msg, "emb_head"), "%s", e.msg);

    /* many files: the LM for embeddings is refused as a whole */
    const char *paths[] = {mid};
    aria_feature_file ff[1];
    aria_feature_opts fo = aria_feature_defaults();
    fo.kind = ARIA_FEAT_EMBEDDING;
    fo.model = lm;
    cr_assert_eq(aria_features_files(paths, 1, &fo, a, ff, NULL, NULL, &e), ARIA_ERR_ARG);
    aria_score_free(&s);
    free(a);
    free(b);
    aria_tokenizer_free(t);
    aria_model_free(emb);
    aria_model_free(lm);
    rm_tree(dir);
}

Test(probe, cache_is_hit) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    char paths[4][512], cache[512];
    const char *pp[4];
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/p%d.mid", dir, i);
        write_piece(paths[i], i & 1, (uint64_t)i, i == 3 ? 40 : 0, 40); /* p3: a violin */
        pp[i] = paths[i];
    }
    snprintf(cache, sizeof cache, "%s/cache/x", dir);
    float X1[4 * ARIA_HANDCRAFTED_DIM], X2[4 * ARIA_HANDCRAFTED_DIM];
    aria_feature_file ff[4];
    aria_feature_opts o = aria_feature_defaults();
    o.cache_dir = cache;
    o.jobs = 2;
    size_t hits = 9, misses = 9;
    aria_error e = {{0}};
    cr_assert_eq(aria_features_files(pp, 4, &o, X1, ff, &hits, &misses, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(hits, 0);
    cr_assert_eq(misses, 3);
    cr_assert_neq(ff[3].status, ARIA_OK, "a violin is not piano-only");
    cr_assert(strstr(ff[3].err.msg, "piano"), "%s", ff[3].err.msg);
    cr_assert_eq(aria_features_files(pp, 4, &o, X2, ff, &hits, &misses, &e), ARIA_OK);
    cr_assert_eq(hits, 3);
    cr_assert_eq(misses, 0);
    for (int i = 0; i < 3; i++) cr_assert(ff[i].cached);
    cr_assert_arr_eq(X1, X2, 3 * ARIA_HANDCRAFTED_DIM * sizeof(float));
    /* a file that changes is computed again */
    sleep(1);
    write_piece(paths[0], 1, 99, 0, 50);
    cr_assert_eq(aria_features_files(pp, 4, &o, X2, ff, &hits, &misses, &e), ARIA_OK);
    cr_assert_eq(hits, 2);
    cr_assert_eq(misses, 1);
    cr_assert(!ff[0].cached);
    rm_tree(dir);
}

/* ---------------------------------------------------------------------- */
/* aria probe                                                             */
/* ---------------------------------------------------------------------- */

/* dir/m/sK_gG_vV.mid: style K (0, 1), 6 groups per style of 2 versions;
   plus a violin file and a missing one; labels.csv in dir/m. */
static void cli_fixture(const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/m", dir);
    cr_assert_eq(mkdir(p, 0777), 0);
    char csv[8192] = "path,task,label,group\n";
    for (int s = 0; s < 2; s++)
        for (int g = 0; g < 6; g++)
            for (int v = 0; v < 2; v++) {
                snprintf(p, sizeof p, "%s/m/s%d_g%d_v%d.mid", dir, s, g, v);
                write_piece(p, s, (uint64_t)(s * 100 + g * 10 + v), 0, 30 + 5 * g + v);
                size_t u = strlen(csv);
                snprintf(csv + u, sizeof csv - u, "s%d_g%d_v%d.mid,style,%s,piece%d_%d\n", s, g, v,
                         s ? "fast" : "slow", s, g);
                u = strlen(csv);
                snprintf(csv + u, sizeof csv - u, "s%d_g%d_v%d.mid,one,same,piece%d_%d\n", s, g, v, s, g);
            }
    snprintf(p, sizeof p, "%s/m/violin.mid", dir);
    write_piece(p, 1, 7, 40, 30);
    strcat(csv, "violin.mid,style,fast,v\nmissing.mid,style,slow,x\nviolin.mid,year,,v\n");
    snprintf(p, sizeof p, "%s/m/labels.csv", dir);
    write_text(p, csv);
}

Test(probe, cli_handcrafted, .timeout = 120) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    cli_fixture(dir);
    char args[2048], out[16384];
    snprintf(args, sizeof args,
             "probe --labels %s/m/labels.csv --task style --features handcrafted --folds 3 --cache %s/cache "
             "--json %s/r.json --threads 2 --epochs 400",
             dir, dir, dir);
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "24 files, 2 classes"), "%s", out);
    cr_assert(strstr(out, "0 hits, 24 misses"), "%s", out);
    cr_assert(strstr(out, "violin.mid: not a piano-only file"), "the skip is listed by name: %s", out);
    cr_assert(strstr(out, "missing.mid: no such file"), "%s", out);
    cr_assert(strstr(out, "1 missing, 1 unreadable or not piano-only"), "%s", out);
    char jp[600];
    snprintf(jp, sizeof jp, "%s/r.json", dir);
    json_doc *doc = NULL;
    char jerr[200];
    cr_assert_eq(json_parse_file(jp, &doc, jerr, sizeof jerr), 0, "%s", jerr);
    const json_value *root = json_root(doc);
    cr_assert_eq(json_number(json_get(root, "n_files")), 24);
    cr_assert_gt(json_number(json_get(json_get(root, "accuracy"), "mean")), 0.9, "two styles are easy");
    const json_value *cm = json_get(json_get(root, "confusion"), "matrix");
    cr_assert_eq(json_len(cm), 2);
    double tot = 0;
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) tot += json_number(json_at(json_at(cm, a), b));
    cr_assert_eq(tot, 24);
    cr_assert_eq(json_len(json_get(json_get(root, "skipped"), "failed")), 1);
    json_doc_free(doc);

    /* the second run reads the cache */
    rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "24 hits, 0 misses"), "%s", out);

    /* bad input: each one line naming the file, exit 1, no JSON left */
    remove(jp);
    snprintf(args, sizeof args, "probe --labels %s/m/labels.csv --task nope --features handcrafted --no-cache --json %s",
             dir, jp);
    cr_assert_eq(run(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "labels.csv: no rows for task 'nope'") && strstr(out, "one, style, year"), "%s", out);
    cr_assert_neq(access(jp, F_OK), 0, "no output file on failure");
    snprintf(args, sizeof args, "probe --labels %s/m/labels.csv --task one --features handcrafted --no-cache", dir);
    cr_assert_eq(run(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "one class only"), "%s", out);
    snprintf(args, sizeof args,
             "probe --labels %s/m/labels.csv --task style --features handcrafted --no-cache --folds 7", dir);
    cr_assert_eq(run(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "labels.csv") && strstr(out, "at least 7 groups"), "%s", out);
    snprintf(args, sizeof args, "probe --labels %s/m/labels.csv --task style", dir);
    cr_assert_eq(run(args, out, sizeof out), 2, "no features, no model: usage");
    rm_tree(dir);
}

Test(probe, cli_model_checks, .timeout = 120) {
    char dir[] = "/tmp/aria-probe-XXXXXX";
    make_dir(dir);
    cli_fixture(dir);
    char args[2048], out[16384], lm[600], emb[600];
    snprintf(lm, sizeof lm, "%s/lm.safetensors", dir);
    snprintf(emb, sizeof emb, "%s/emb.safetensors", dir);
    snprintf(args, sizeof args, "init --config tiny --heads lm -o %s", lm);
    cr_assert_eq(run(args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "init --config tiny --heads emb -o %s", emb);
    cr_assert_eq(run(args, out, sizeof out), 0, "%s", out);
    /* an LM where an embedding model is needed */
    snprintf(args, sizeof args, "probe --labels %s/m/labels.csv --task style --model %s --no-cache", dir, lm);
    cr_assert_eq(run(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "lm.safetensors: not an embedding model"), "%s", out);
    /* an embedding model runs; lm-mean of the LM runs */
    snprintf(args, sizeof args,
             "probe --labels %s/m/labels.csv --task style --model %s --folds 2 --epochs 5 --cache %s/c --threads 1",
             dir, emb, dir);
    cr_assert_eq(run(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "features embedding"), "%s", out);
    snprintf(args, sizeof args,
             "probe --labels %s/m/labels.csv --task style --features lm-mean --model %s --folds 2 --epochs 5 "
             "--max-chunks 1 --cache %s/c --threads 1",
             dir, lm, dir);
    cr_assert_eq(run(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "0 hits, 24 misses"), "a different model, a different cache: %s", out);
    rm_tree(dir);
}
