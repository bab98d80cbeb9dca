/*
 * bench_tokenize.c - throughput of the MIDI reader, score builder and
 * tokenizer over a corpus held in memory (issue "Foundation", item 8).
 *
 *   build/bench_tokenize [--reps N] [--threads N] [--typical-reps N] [--only P] [DIR]
 *
 * DIR (default ../shared/midi/corpus) is walked recursively for *.mid and
 * *.midi (any case); the files are sorted by path and read into memory
 * before anything is timed. Every figure is the median of --reps runs
 * (default 5; min and max are printed beside it). Measured:
 *
 *   a. parse:       aria_midi_read + aria_midi_free over every buffer that
 *                   parses, MB/s of MIDI bytes, 1 thread and --threads
 *                   threads (default: online CPUs) taking files from a
 *                   shared counter;
 *   b. tokenize:    aria_score_from_midi + aria_tokenize (ARIA_TOKCFG_DEFAULT,
 *                   opts {1,0,1}, rng seeded 0 per file) on pre-parsed
 *                   files, files/s on 1 and N threads; then per-file wall
 *                   time of parse+score+tokenize on one thread (median over
 *                   reps per file; median and p90 over files) and the same
 *                   for the median-sized file, stage by stage;
 *   c. round trip:  aria_detokenize + aria_score_to_midi + aria_midi_write
 *                   on the tokens of each file, files/s on one thread.
 *
 * Files that fail to parse, or have no notes to tokenize, are counted and
 * left out of the timed sets. Besides the table, each metric is printed
 * once as a machine-readable line:
 *   RESULT <metric> <median> <unit> min=<x> max=<y> n=<reps>
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"

/* ---------------------------------------------------------------------- */
/* small helpers                                                          */
/* ---------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_tokenize: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "bench_tokenize: out of memory\n");
        exit(2);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place. Median: mean of the two middle values when n is even. */
static double median(double *v, size_t n) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Nearest-rank percentile (p in (0,100]); sorts v in place. */
static double percentile(double *v, size_t n, double p) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

typedef struct {
    double med, min, max;
    int n;
} stat3;

static stat3 stats(const double *v, int n) {
    double *c = xmalloc((size_t)n * sizeof *c);
    memcpy(c, v, (size_t)n * sizeof *c);
    stat3 s = {median(c, (size_t)n), c[0], c[n - 1], n};
    free(c);
    return s;
}

static void result_line(const char *metric, stat3 s, const char *unit) {
    printf("RESULT %s %.6g %s min=%.6g max=%.6g n=%d\n", metric, s.med, unit, s.min, s.max, s.n);
}

/* ---------------------------------------------------------------------- */
/* corpus                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct {
    char *path;
    uint8_t *bytes;
    size_t len;
} midi_file;

static char **g_paths;
static size_t g_npaths, g_cap;

static int has_midi_ext(const char *p) {
    const char *dot = strrchr(p, '.');
    const char *slash = strrchr(p, '/');
    if (!dot || (slash && dot < slash)) return 0;
    return strcasecmp(dot, ".mid") == 0 || strcasecmp(dot, ".midi") == 0;
}

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (type == FTW_F && has_midi_ext(path)) {
        if (g_npaths == g_cap) {
            g_cap = g_cap ? g_cap * 2 : 1024;
            char **q = realloc(g_paths, g_cap * sizeof *q);
            if (!q) return -1;
            g_paths = q;
        }
        g_paths[g_npaths] = strdup(path);
        if (!g_paths[g_npaths]) return -1;
        g_npaths++;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---------------------------------------------------------------------- */
/* threaded passes                                                        */
/* ---------------------------------------------------------------------- */

typedef struct bench_ctx bench_ctx;
typedef void (*file_fn)(bench_ctx *c, size_t i);

struct bench_ctx {
    /* inputs */
    midi_file *files;
    size_t *set; /* indices into files of the set being timed */
    size_t n_set;
    const aria_tokenizer *tk;
    aria_midi *parsed; /* per file, for the tokenize pass */
    aria_token **toks; /* per file, for the round-trip pass */
    size_t *n_toks;
    /* work distribution */
    atomic_size_t next;
    file_fn fn;
    atomic_size_t failures; /* unexpected failures inside timed passes */
    atomic_ulong sink;      /* keeps results observable */
};

static void *worker(void *arg) {
    bench_ctx *c = arg;
    for (;;) {
        size_t k = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (k >= c->n_set) break;
        c->fn(c, c->set[k]);
    }
    return NULL;
}

/* Runs fn over the set on nthreads threads (the caller is one of them);
   returns the wall time of the pass. */
static double run_pass(bench_ctx *c, file_fn fn, int nthreads) {
    pthread_t th[256];
    c->fn = fn;
    atomic_store(&c->next, 0);
    double t0 = now_s();
    int started = 0;
    for (int i = 1; i < nthreads && i < 256; i++)
        if (pthread_create(&th[started], NULL, worker, c) == 0) started++;
    worker(c);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return now_s() - t0;
}

static void fn_parse(bench_ctx *c, size_t i) {
    aria_midi m = {0};
    if (aria_midi_read(&m, c->files[i].bytes, c->files[i].len, NULL) != ARIA_OK)
        atomic_fetch_add(&c->failures, 1);
    atomic_fetch_add_explicit(&c->sink, m.n_tracks, memory_order_relaxed);
    aria_midi_free(&m);
}

static const aria_tokenize_opts k_opts = {1, 0, 1};

static void fn_tokenize(bench_ctx *c, size_t i) {
    aria_score s = {0};
    aria_token *toks = NULL;
    size_t n = 0;
    aria_rng rng;
    aria_rng_seed(&rng, 0);
    if (aria_score_from_midi(&s, &c->parsed[i], NULL) != ARIA_OK ||
        aria_tokenize(c->tk, &s, &k_opts, &rng, &toks, &n, NULL) != ARIA_OK)
        atomic_fetch_add(&c->failures, 1);
    atomic_fetch_add_explicit(&c->sink, n, memory_order_relaxed);
    free(toks);
    aria_score_free(&s);
}

static void fn_roundtrip(bench_ctx *c, size_t i) {
    aria_score s = {0};
    aria_midi m = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    if (aria_detokenize(c->tk, c->toks[i], c->n_toks[i], &s, NULL, NULL) != ARIA_OK ||
        aria_score_to_midi(&s, &m, NULL) != ARIA_OK || aria_midi_write(&m, &buf, &len, NULL) != ARIA_OK)
        atomic_fetch_add(&c->failures, 1);
    atomic_fetch_add_explicit(&c->sink, len, memory_order_relaxed);
    free(buf);
    aria_midi_free(&m);
    aria_score_free(&s);
}

/* ---------------------------------------------------------------------- */
/* main                                                                   */
/* ---------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_tokenize [--reps N] [--threads N] [--typical-reps N] [--only P] [DIR]\n"
               "  DIR              corpus, walked recursively for *.mid/*.midi\n"
               "                   (default ../shared/midi/corpus)\n"
               "  --reps N         repetitions of each measurement, median reported (default 5)\n"
               "  --threads N      threads of the multi-threaded passes (default: online CPUs)\n"
               "  --typical-reps N repetitions of the median-sized file, stage by stage (default 201)\n"
               "  --only P         only the passes of P (parse or tokenize), for profiling\n");
}

static int parse_int_arg(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "../shared/midi/corpus";
    int reps = 5, typical_reps = 201;
    int only = 0; /* 1: only the parse passes, 2: only the score+tokenize passes */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)(ncpu > 256 ? 256 : ncpu) : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--reps") || !strcmp(a, "--threads") || !strcmp(a, "--typical-reps")) && i + 1 < argc) {
            int *dst = !strcmp(a, "--reps") ? &reps : !strcmp(a, "--threads") ? &threads : &typical_reps;
            if (parse_int_arg(argv[++i], 1, !strcmp(a, "--threads") ? 256 : 100000, dst)) {
                fprintf(stderr, "bench_tokenize: bad value for %s: '%s'\n", a, argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            i++;
            only = !strcmp(argv[i], "parse") ? 1 : !strcmp(argv[i], "tokenize") ? 2 : -1;
            if (only < 0) {
                fprintf(stderr, "bench_tokenize: --only wants parse or tokenize, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "bench_tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            dir = a;
        }
    }

    /* ---- load ---- */
    if (nftw(dir, walk_cb, 32, 0) != 0) {
        fprintf(stderr, "bench_tokenize: cannot walk '%s': %s\n", dir, strerror(errno));
        return 2;
    }
    if (g_npaths == 0) {
        fprintf(stderr, "bench_tokenize: no .mid/.midi files under '%s'\n", dir);
        return 2;
    }
    qsort(g_paths, g_npaths, sizeof *g_paths, cmp_str);
    size_t nf = g_npaths;
    midi_file *files = xcalloc(nf, sizeof *files);
    size_t total_bytes = 0, n_unreadable = 0;
    for (size_t i = 0; i < nf; i++) {
        aria_error err;
        files[i].path = g_paths[i];
        if (aria_read_file(files[i].path, &files[i].bytes, &files[i].len, &err) != ARIA_OK) {
            fprintf(stderr, "bench_tokenize: cannot read %s: %s\n", files[i].path, err.msg);
            files[i].bytes = NULL;
            n_unreadable++;
            continue;
        }
        total_bytes += files[i].len;
    }

    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    if (!tk) {
        fprintf(stderr, "bench_tokenize: cannot create tokenizer\n");
        return 2;
    }

    /* ---- classify (untimed): parse, score, tokenize once ---- */
    aria_midi *parsed = xcalloc(nf, sizeof *parsed);
    aria_token **toks = xcalloc(nf, sizeof *toks);
    size_t *n_toks = xcalloc(nf, sizeof *n_toks);
    size_t *parse_set = xcalloc(nf, sizeof *parse_set), n_parse = 0;
    size_t *tok_set = xcalloc(nf, sizeof *tok_set), n_tok = 0;
    size_t parse_bytes = 0, tok_bytes = 0, n_parse_fail = 0, n_empty = 0, n_score_fail = 0;
    size_t total_notes = 0, total_tokens = 0, total_events = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!files[i].bytes) continue;
        aria_error err;
        if (aria_midi_read(&parsed[i], files[i].bytes, files[i].len, &err) != ARIA_OK) {
            n_parse_fail++;
            fprintf(stderr, "note: parse fails (counted): %s: %s\n", files[i].path, err.msg);
            continue;
        }
        parse_set[n_parse++] = i;
        parse_bytes += files[i].len;
        for (size_t t = 0; t < parsed[i].n_tracks; t++) total_events += parsed[i].tracks[t].n_events;
        aria_score s = {0};
        int rc = aria_score_from_midi(&s, &parsed[i], &err);
        if (rc == ARIA_OK) {
            aria_rng rng;
            aria_rng_seed(&rng, 0);
            rc = aria_tokenize(tk, &s, &k_opts, &rng, &toks[i], &n_toks[i], &err);
        }
        if (rc == ARIA_ERR_EMPTY || (rc == ARIA_OK && s.n_notes == 0)) {
            n_empty++;
        } else if (rc != ARIA_OK) {
            n_score_fail++;
            fprintf(stderr, "note: score/tokenize fails (counted): %s: %s\n", files[i].path, err.msg);
        } else {
            tok_set[n_tok++] = i;
            tok_bytes += files[i].len;
            total_notes += s.n_notes;
            total_tokens += n_toks[i];
        }
        aria_score_free(&s);
        if (rc != ARIA_OK) {
            free(toks[i]);
            toks[i] = NULL;
            n_toks[i] = 0;
        }
    }
    if (n_tok == 0) {
        fprintf(stderr, "bench_tokenize: no file could be tokenized\n");
        return 2;
    }

    bench_ctx ctx = {.files = files, .tk = tk, .parsed = parsed, .toks = toks, .n_toks = n_toks};
    double *v1 = xmalloc((size_t)reps * sizeof *v1), *vn = xmalloc((size_t)reps * sizeof *vn);
    const double MB = 1e6;

    printf("aria.c bench_tokenize  (libaria %s)\n", ARIA_VERSION);
    printf("corpus        %s\n", dir);
    printf("files found   %zu (%.2f MB); unreadable %zu\n", nf, (double)total_bytes / MB, n_unreadable);
    printf("parse set     %zu files, %.2f MB, %zu events; parse failures %zu\n", n_parse,
           (double)parse_bytes / MB, total_events, n_parse_fail);
    printf("tokenize set  %zu files, %.2f MB, %zu notes, %zu tokens; no notes %zu, score/tokenize errors %zu\n",
           n_tok, (double)tok_bytes / MB, total_notes, total_tokens, n_empty, n_score_fail);
    printf("reps %d, threads %d (online CPUs %ld)\n\n", reps, threads, ncpu);
    fflush(stdout);
    printf("RESULT files_found %zu files\n", nf);
    printf("RESULT corpus_bytes %zu bytes\n", total_bytes);
    printf("RESULT parse_set_files %zu files\n", n_parse);
    printf("RESULT parse_set_bytes %zu bytes\n", parse_bytes);
    printf("RESULT parse_failures %zu files\n", n_parse_fail);
    printf("RESULT no_notes %zu files\n", n_empty);
    printf("RESULT score_tokenize_errors %zu files\n", n_score_fail);
    printf("RESULT tokenize_set_files %zu files\n", n_tok);
    printf("RESULT tokenize_set_tokens %zu tokens\n", total_tokens);

    /* ---- a. parse throughput ---- */
    stat3 parse1 = {NAN, NAN, NAN, 0}, parseN = parse1;
    double parse_files1 = NAN;
    if (only == 2) goto phase_b1;
    ctx.set = parse_set;
    ctx.n_set = n_parse;
    run_pass(&ctx, fn_parse, 1); /* warm-up */
    for (int r = 0; r < reps; r++) {
        v1[r] = (double)parse_bytes / MB / run_pass(&ctx, fn_parse, 1);
        vn[r] = (double)parse_bytes / MB / run_pass(&ctx, fn_parse, threads);
    }
    parse1 = stats(v1, reps), parseN = stats(vn, reps);
    if (only == 1) {
        result_line("parse_mbps_1t", parse1, "MB/s");
        result_line("parse_mbps_nt", parseN, "MB/s");
        return 0;
    }
    parse_files1 = parse1.med * MB / (double)parse_bytes * (double)n_parse;

    /* ---- b1. score + tokenize throughput (pre-parsed) ---- */
phase_b1:
    ctx.set = tok_set;
    ctx.n_set = n_tok;
    run_pass(&ctx, fn_tokenize, 1);
    double *tps1 = xmalloc((size_t)reps * sizeof *tps1);
    for (int r = 0; r < reps; r++) {
        double t1 = run_pass(&ctx, fn_tokenize, 1);
        v1[r] = (double)n_tok / t1;
        tps1[r] = (double)total_tokens / t1;
        vn[r] = (double)n_tok / run_pass(&ctx, fn_tokenize, threads);
    }
    stat3 tok1 = stats(v1, reps), tokN = stats(vn, reps), tokps1 = stats(tps1, reps);
    if (only == 2) {
        result_line("score_tokenize_files_per_s_1t", tok1, "files/s");
        result_line("score_tokenize_files_per_s_nt", tokN, "files/s");
        return 0;
    }

    /* ---- b2. per-file parse+score+tokenize, one thread ---- */
    double *per = xmalloc(n_tok * (size_t)reps * sizeof *per); /* [file][rep] */
    double *pass_fs = xmalloc((size_t)reps * sizeof *pass_fs);
    size_t fails_b2 = 0;
    for (int r = 0; r < reps; r++) {
        double tp = 0;
        for (size_t k = 0; k < n_tok; k++) {
            size_t i = tok_set[k];
            double t0 = now_s();
            aria_midi m = {0};
            aria_score s = {0};
            aria_token *tt = NULL;
            size_t n = 0;
            aria_rng rng;
            aria_rng_seed(&rng, 0);
            if (aria_midi_read(&m, files[i].bytes, files[i].len, NULL) != ARIA_OK ||
                aria_score_from_midi(&s, &m, NULL) != ARIA_OK ||
                aria_tokenize(tk, &s, &k_opts, &rng, &tt, &n, NULL) != ARIA_OK)
                fails_b2++;
            free(tt);
            aria_score_free(&s);
            aria_midi_free(&m);
            double dt = now_s() - t0;
            per[k * (size_t)reps + (size_t)r] = dt;
            tp += dt;
        }
        pass_fs[r] = (double)n_tok / tp;
    }
    double *file_med = xmalloc(n_tok * sizeof *file_med);
    for (size_t k = 0; k < n_tok; k++) file_med[k] = median(per + k * (size_t)reps, (size_t)reps) * 1e6;
    double *tmp = xmalloc(n_tok * sizeof *tmp);
    memcpy(tmp, file_med, n_tok * sizeof *tmp);
    double pf_med = median(tmp, n_tok);
    memcpy(tmp, file_med, n_tok * sizeof *tmp);
    double pf_p90 = percentile(tmp, n_tok, 90);
    memcpy(tmp, file_med, n_tok * sizeof *tmp);
    double pf_p99 = percentile(tmp, n_tok, 99);
    double pf_max = tmp[n_tok - 1];
    size_t slowest = tok_set[0];
    for (size_t k = 0, best = 0; k < n_tok; k++)
        if (file_med[k] > file_med[best]) best = k, slowest = tok_set[k];
    stat3 pipe1 = stats(pass_fs, reps);

    /* typical file: the median-sized file of the tokenize set (lower middle) */
    size_t *by_size = xmalloc(n_tok * sizeof *by_size);
    memcpy(by_size, tok_set, n_tok * sizeof *by_size);
    for (size_t a = 1; a < n_tok; a++) { /* insertion sort by (len, index) */
        size_t x = by_size[a], b = a;
        while (b > 0 && (files[by_size[b - 1]].len > files[x].len ||
                         (files[by_size[b - 1]].len == files[x].len && by_size[b - 1] > x))) {
            by_size[b] = by_size[b - 1];
            b--;
        }
        by_size[b] = x;
    }
    size_t typ = by_size[(n_tok - 1) / 2];
    double *tparse = xmalloc((size_t)typical_reps * sizeof *tparse);
    double *tscore = xmalloc((size_t)typical_reps * sizeof *tscore);
    double *ttok = xmalloc((size_t)typical_reps * sizeof *ttok);
    double *tall = xmalloc((size_t)typical_reps * sizeof *tall);
    size_t typ_notes = 0, typ_tokens = 0, typ_tempos = 0, typ_pedals = 0;
    for (int r = 0; r < typical_reps; r++) {
        aria_midi m = {0};
        aria_score s = {0};
        aria_token *tt = NULL;
        size_t n = 0;
        aria_rng rng;
        double t0 = now_s();
        aria_midi_read(&m, files[typ].bytes, files[typ].len, NULL);
        double t1 = now_s();
        aria_score_from_midi(&s, &m, NULL);
        double t2 = now_s();
        aria_rng_seed(&rng, 0);
        aria_tokenize(tk, &s, &k_opts, &rng, &tt, &n, NULL);
        double t3 = now_s();
        typ_notes = s.n_notes;
        typ_tempos = s.n_tempos;
        typ_pedals = s.n_pedals;
        typ_tokens = n;
        free(tt);
        aria_score_free(&s);
        aria_midi_free(&m);
        double t4 = now_s();
        tparse[r] = (t1 - t0) * 1e6;
        tscore[r] = (t2 - t1) * 1e6;
        ttok[r] = (t3 - t2) * 1e6;
        tall[r] = (t4 - t0) * 1e6;
    }
    stat3 typ_parse = stats(tparse, typical_reps), typ_score = stats(tscore, typical_reps);
    stat3 typ_tok = stats(ttok, typical_reps), typ_all = stats(tall, typical_reps);

    /* ---- c. detokenize + score_to_midi + midi_write, one thread ---- */
    run_pass(&ctx, fn_roundtrip, 1);
    for (int r = 0; r < reps; r++) v1[r] = (double)n_tok / run_pass(&ctx, fn_roundtrip, 1);
    stat3 rt1 = stats(v1, reps);

    /* ---- report ---- */
    printf("\n%-58s %12s %12s %12s\n", "metric (median of reps; min..max)", "median", "min", "max");
    printf("%-58s %12.1f %12.1f %12.1f\n", "a. parse, 1 thread               [MB/s]", parse1.med, parse1.min, parse1.max);
    printf("%-58s %12.1f %12.1f %12.1f\n", "a. parse, N threads              [MB/s]", parseN.med, parseN.min, parseN.max);
    printf("%-58s %12.0f\n", "a. parse, 1 thread               [files/s]", parse_files1);
    printf("%-58s %12.0f %12.0f %12.0f\n", "b. score+tokenize, 1 thread      [files/s]", tok1.med, tok1.min, tok1.max);
    printf("%-58s %12.0f %12.0f %12.0f\n", "b. score+tokenize, N threads     [files/s]", tokN.med, tokN.min, tokN.max);
    printf("%-58s %12.3g %12.3g %12.3g\n", "b. score+tokenize, 1 thread      [tokens/s]", tokps1.med, tokps1.min, tokps1.max);
    printf("%-58s %12.0f %12.0f %12.0f\n", "b. parse+score+tokenize, 1 thread [files/s]", pipe1.med, pipe1.min, pipe1.max);
    printf("%-58s %12.1f\n", "b. per file parse+score+tokenize, median over files [us]", pf_med);
    printf("%-58s %12.1f\n", "b. per file parse+score+tokenize, p90 over files    [us]", pf_p90);
    printf("%-58s %12.1f\n", "b. per file parse+score+tokenize, p99 over files    [us]", pf_p99);
    printf("%-58s %12.1f\n", "b. per file parse+score+tokenize, max over files    [us]", pf_max);
    printf("%-58s %12.0f %12.0f %12.0f\n", "c. detokenize+to_midi+write, 1 thread [files/s]", rt1.med, rt1.min, rt1.max);
    {
        aria_midi m = {0};
        aria_score sc = {0};
        aria_midi_read(&m, files[slowest].bytes, files[slowest].len, NULL);
        aria_score_from_midi(&sc, &m, NULL);
        printf("\nslowest file: %s\n  %zu bytes, %zu notes, %zu tempo changes, %zu pedal messages; %.1f us\n",
               files[slowest].path, files[slowest].len, sc.n_notes, sc.n_tempos, sc.n_pedals, pf_max);
        aria_score_free(&sc);
        aria_midi_free(&m);
    }
    printf("\ntypical file (median size of the tokenize set): %s\n", files[typ].path);
    printf("  %zu bytes, %zu notes, %zu tempo changes, %zu pedal messages, %zu tokens; %d reps\n",
           files[typ].len, typ_notes, typ_tempos, typ_pedals, typ_tokens, typical_reps);
    printf("  %-28s %10.1f us (min %.1f, max %.1f)\n", "aria_midi_read", typ_parse.med, typ_parse.min, typ_parse.max);
    printf("  %-28s %10.1f us (min %.1f, max %.1f)\n", "aria_score_from_midi", typ_score.med, typ_score.min, typ_score.max);
    printf("  %-28s %10.1f us (min %.1f, max %.1f)\n", "aria_tokenize", typ_tok.med, typ_tok.min, typ_tok.max);
    printf("  %-28s %10.1f us (min %.1f, max %.1f)\n", "all three + frees", typ_all.med, typ_all.min, typ_all.max);
    if (ctx.failures || fails_b2)
        printf("\nWARNING: %zu unexpected failures inside timed passes\n", (size_t)ctx.failures + fails_b2);
    printf("\n");

    result_line("parse_mbps_1t", parse1, "MB/s");
    result_line("parse_mbps_nt", parseN, "MB/s");
    printf("RESULT threads %d threads\n", threads);
    printf("RESULT parse_files_per_s_1t %.6g files/s\n", parse_files1);
    result_line("score_tokenize_files_per_s_1t", tok1, "files/s");
    result_line("score_tokenize_files_per_s_nt", tokN, "files/s");
    result_line("score_tokenize_tokens_per_s_1t", tokps1, "tokens/s");
    result_line("parse_score_tokenize_files_per_s_1t", pipe1, "files/s");
    printf("RESULT per_file_us_median %.6g us\n", pf_med);
    printf("RESULT per_file_us_p90 %.6g us\n", pf_p90);
    printf("RESULT per_file_us_p99 %.6g us\n", pf_p99);
    printf("RESULT per_file_us_max %.6g us\n", pf_max);
    printf("RESULT typical_file_bytes %zu bytes\n", files[typ].len);
    printf("RESULT typical_file_notes %zu notes\n", typ_notes);
    result_line("typical_parse_us", typ_parse, "us");
    result_line("typical_score_us", typ_score, "us");
    result_line("typical_tokenize_us", typ_tok, "us");
    result_line("typical_total_us", typ_all, "us");
    result_line("roundtrip_files_per_s_1t", rt1, "files/s");
    printf("RESULT unexpected_failures %zu files\n", (size_t)ctx.failures + fails_b2);
    printf("RESULT sink %lu -\n", (unsigned long)ctx.sink);

    for (size_t i = 0; i < nf; i++) {
        aria_midi_free(&parsed[i]);
        free(toks[i]);
        free(files[i].bytes);
        free(files[i].path);
    }
    free(parsed), free(toks), free(n_toks), free(parse_set), free(tok_set), free(files), free(g_paths);
    free(v1), free(vn), free(tps1), free(per), free(pass_fs), free(file_med), free(tmp), free(by_size);
    free(tparse), free(tscore), free(ttok), free(tall);
    aria_tokenizer_free(tk);
    return 0;
}
