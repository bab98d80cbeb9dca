/*
 * test_dataset.c - training data: the quality filters and content hash on
 * scores built here (each filter made to pass and to fail), and
 * `aria dataset` end to end on the reference-vector MIDI files copied to
 * a temporary folder: manifest, shard headers and contents, padding,
 * split, dedup, epochs, reproducibility, --sep-sequences, --ids input,
 * errors, and the reader API the trainer uses (aria_dataset_open/get).
 *
 * The command runs through $ARIA_BIN (set by `make test`), else ./aria.
 * Builds use short sequences (256 ids) so the whole suite takes well
 * under a second.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <glob.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"
#include "base/json.h"

#define VOCAB 17727
#define ID_BOS 0
#define ID_EOS 1
#define ID_PAD 2
#define ID_PREFIX_FIRST 6
#define ID_PREFIX_LAST 38

/* ---------------------------------------------------------------------- */
/* Scores made here: tpb 500, tempo 500000, so 1 tick = 1 ms              */
/* ---------------------------------------------------------------------- */

static void score_make(aria_score *s, size_t n) {
    memset(s, 0, sizeof *s);
    s->composer = s->form = s->genre = -1;
    s->ticks_per_beat = 500;
    s->tempos = malloc(sizeof *s->tempos);
    s->tempos[0] = (aria_tempo){0, 500000};
    s->n_tempos = 1;
    s->programs = malloc(sizeof *s->programs);
    s->programs[0] = (aria_program){0, 0, 0};
    s->n_programs = 1;
    s->notes = calloc(n ? n : 1, sizeof *s->notes);
    s->n_notes = n;
}

static void set_note(aria_score *s, size_t i, int64_t start, int64_t dur, int pitch, int vel) {
    s->notes[i] = (aria_note){start, start + dur, (uint8_t)pitch, (uint8_t)vel, 0};
}

static uint32_t lcg(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return *st >> 8;
}

/* 60 s of varied playing: a note every 100 ms, 24 pitches in a shuffled
   pattern, durations 50..1000 ms, velocities 40..100. Passes every filter. */
static void good_score(aria_score *s) {
    score_make(s, 600);
    uint32_t st = 1;
    for (size_t i = 0; i < 600; i++)
        set_note(s, i, (int64_t)i * 100, 50 + lcg(&st) % 950, 48 + (int)(lcg(&st) % 24), 40 + (int)(lcg(&st) % 60));
}

static int passes(const aria_score *s, int f, double *v) { return aria_filter_run(s, f, v); }

Test(dataset_filters, a_varied_piece_passes_every_filter) {
    aria_score s;
    good_score(&s);
    int first = 99;
    uint32_t mask = 99;
    cr_assert_eq(aria_filter_all(&s, &first, &mask), ARIA_OK);
    for (int f = 0; f < ARIA_N_FILTERS; f++) {
        double v;
        cr_expect_eq(passes(&s, f, &v), 1, "%s fails (value %g)", aria_filter_name(f), v);
    }
    cr_expect_eq(first, -1);
    cr_expect_eq(mask, 0);
    aria_score_free(&s);
}

Test(dataset_filters, a_real_performance_passes) {
    aria_midi m = {0};
    aria_score s = {0};
    cr_assert_eq(aria_midi_read_file(&m, "tests/data/vectors/nocturne/nocturne.mid", NULL), ARIA_OK);
    cr_assert_eq(aria_score_from_midi(&s, &m, NULL), ARIA_OK);
    int first = 99;
    cr_assert_eq(aria_filter_all(&s, &first, NULL), ARIA_OK);
    cr_expect_eq(first, -1, "fails %s", aria_filter_name(first));
    aria_score_free(&s);
    aria_midi_free(&m);
}

Test(dataset_filters, length_and_frequencies) {
    aria_score s;
    double v;
    score_make(&s, 100); /* 100 notes in 10 s: too short */
    for (size_t i = 0; i < 100; i++) set_note(&s, i, (int64_t)i * 100, 100, 40 + (int)(i % 30), 64);
    cr_expect_eq(passes(&s, ARIA_FILTER_LENGTH, &v), 0);
    cr_expect_float_eq(v, 10.0, 1e-12); /* the last note ends at 9900 + 100 ms */
    cr_expect_eq(passes(&s, ARIA_FILTER_TOTAL_NOTE_FREQUENCY, &v), 1);
    cr_expect_float_eq(v, 10.0, 1e-9); /* 100 notes over 10 s */
    int first = 99;
    uint32_t mask = 0;
    aria_filter_all(&s, &first, &mask);
    cr_expect_eq(first, ARIA_FILTER_LENGTH);
    cr_expect(mask & 1u << ARIA_FILTER_LENGTH);
    aria_score_free(&s);

    score_make(&s, 40); /* 40 notes in 60 s: under 1.5 notes/s */
    for (size_t i = 0; i < 40; i++) set_note(&s, i, (int64_t)i * 1500, 1500, 40 + (int)(i % 30), 64);
    cr_expect_eq(passes(&s, ARIA_FILTER_TOTAL_NOTE_FREQUENCY, &v), 0);
    cr_expect_float_eq(v, 40.0 / 60.0, 1e-12);
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_FREQUENCY_PER_INSTRUMENT, &v), 0); /* 0.67 < 1 */
    aria_score_free(&s);
}

Test(dataset_filters, programs_and_instruments) {
    aria_score s;
    double v;
    good_score(&s);
    free(s.programs);
    s.programs = calloc(13, sizeof *s.programs);
    s.n_programs = 13;
    for (int i = 0; i < 13; i++) s.programs[i] = (aria_program){0, (uint8_t)i, (uint8_t)i};
    cr_expect_eq(passes(&s, ARIA_FILTER_MAX_PROGRAMS, &v), 0); /* 13 > 12 */
    cr_expect_eq(v, 13);
    cr_expect_eq(passes(&s, ARIA_FILTER_MAX_INSTRUMENTS, &v), 1); /* programs 0..12: 2 classes */
    for (int i = 0; i < 13; i++) s.programs[i].program = (uint8_t)(8 * (i % 8));
    cr_expect_eq(passes(&s, ARIA_FILTER_MAX_INSTRUMENTS, &v), 0); /* 8 classes > 7 */
    /* about 10 notes/s over 8 classes: 1.25 per class, inside 1..25 */
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_FREQUENCY_PER_INSTRUMENT, &v), 1);
    cr_expect_float_eq(v, 600.0 * 1e3 / (double)s.notes[599].end / 8, 1e-12);
    aria_score_free(&s);
}

Test(dataset_filters, velocity_pitches_and_silence) {
    aria_score s;
    double v;
    good_score(&s);
    for (size_t i = 0; i < s.n_notes; i++) s.notes[i].velocity = 10;
    cr_expect_eq(passes(&s, ARIA_FILTER_MEAN_NOTE_VELOCITY, &v), 0);
    cr_expect_float_eq(v, 10.0, 1e-12);
    for (size_t i = 0; i < s.n_notes; i++) s.notes[i].pitch = (uint8_t)(60 + i % 11);
    cr_expect_eq(passes(&s, ARIA_FILTER_UNIQUE_PITCH_COUNT, &v), 0); /* 11 < 12 */
    cr_expect_eq(v, 11);
    aria_score_free(&s);

    /* a 20 s gap fails (the test is >= 20 s); 19.9 s passes */
    score_make(&s, 3);
    set_note(&s, 0, 0, 1000, 60, 64);
    set_note(&s, 1, 500, 500, 62, 64);
    set_note(&s, 2, 21000, 500, 64, 64);
    cr_expect_eq(passes(&s, ARIA_FILTER_SILENT_INTERVAL, &v), 0);
    cr_expect_float_eq(v, 20.0, 1e-12);
    s.notes[2] = (aria_note){20900, 21400, 64, 64, 0};
    cr_expect_eq(passes(&s, ARIA_FILTER_SILENT_INTERVAL, &v), 1);
    cr_expect_float_eq(v, 19.9, 1e-12);
    aria_score_free(&s);
}

Test(dataset_filters, entropies) {
    aria_score s;
    double v;
    score_make(&s, 64); /* 16 pitches, 4 each: exactly 4 bits */
    for (size_t i = 0; i < 64; i++) set_note(&s, i, (int64_t)i * 500, 100 + 10 * (int64_t)(i % 7), 50 + (int)(i % 16), 64);
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_PITCH_ENTROPY, &v), 1);
    cr_expect_float_eq(v, 4.0, 1e-12);
    for (size_t i = 0; i < 64; i++) s.notes[i].pitch = (uint8_t)(50 + i % 7); /* log2(7) = 2.81 < 3 */
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_PITCH_ENTROPY, &v), 0);
    /* 7 durations in equal shares (after the first note): about 2.8 bits */
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_TIMING_ENTROPY, &v), 1);
    cr_expect_gt(v, 2.7);
    for (size_t i = 0; i < 64; i++) s.notes[i].end = s.notes[i].start + 104 + (int64_t)(i % 2); /* all round to 100 */
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_TIMING_ENTROPY, &v), 0);
    cr_expect_float_eq(v, 0.0, 1e-12);
    aria_score_free(&s);
}

Test(dataset_filters, windows) {
    aria_score s;
    double v;
    good_score(&s);
    /* a burst of 200 notes in one second: 200 notes in a 3 s window > 180 */
    for (size_t i = 0; i < 200; i++) s.notes[i] = (aria_note){(int64_t)i * 5, (int64_t)i * 5 + 50, (uint8_t)(40 + i % 40), 64, 0};
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_DENSITY_IN_INTERVAL, &v), 0);
    cr_expect_geq(v, 60.0);
    aria_score_free(&s);

    /* the same pitch hammered 16 times a second: over 15 per second per pitch */
    good_score(&s);
    for (size_t i = 0; i < 48; i++) s.notes[100 + i] = (aria_note){10000 + (int64_t)i * 62, 10000 + (int64_t)i * 62 + 30, 70, 64, 0};
    /* (notes 100..147 started at 10.0..14.7 s: the score stays sorted) */
    cr_expect_eq(passes(&s, ARIA_FILTER_NOTE_DENSITY_IN_INTERVAL, &v), 0);
    aria_score_free(&s);

    /* after 60 varied seconds, 40 s of one pitch: a 30 s window has 1 */
    score_make(&s, 1000);
    uint32_t st = 7;
    for (size_t i = 0; i < 600; i++) set_note(&s, i, (int64_t)i * 100, 80, 48 + (int)(lcg(&st) % 24), 64);
    for (size_t i = 600; i < 1000; i++) set_note(&s, i, (int64_t)i * 100, 80, 60, 64);
    cr_expect_eq(passes(&s, ARIA_FILTER_UNIQUE_PITCH_COUNT_IN_INTERVAL, &v), 0);
    cr_expect_eq(v, 1);
    aria_score_free(&s);
}

/* 25 minutes, a note every 250 ms; `drift` moves the pitch range along
   the piece so that its parts differ. */
static void long_score(aria_score *s, int drift) {
    size_t n = 6000;
    score_make(s, n);
    for (size_t i = 0; i < n; i++) {
        int part = (int)(i * 5 / n);
        set_note(s, i, (int64_t)i * 250, 200, 40 + (drift ? 9 * part : 0) + (int)(i % 12), 64);
    }
}

Test(dataset_filters, repetitive_content) {
    aria_score s;
    double v;
    long_score(&s, 0);
    cr_expect_eq(passes(&s, ARIA_FILTER_REPETITIVE_CONTENT, &v), 0);
    cr_expect_lt(v, 0.2);
    aria_score_free(&s);
    long_score(&s, 1);
    cr_expect_eq(passes(&s, ARIA_FILTER_REPETITIVE_CONTENT, &v), 1);
    cr_expect_gt(v, 0.2);
    aria_score_free(&s);
    good_score(&s); /* a minute long: not tested, passes */
    cr_expect_eq(passes(&s, ARIA_FILTER_REPETITIVE_CONTENT, &v), 1);
    aria_score_free(&s);
}

Test(dataset_filters, names_and_bad_arguments) {
    cr_expect_str_eq(aria_filter_name(ARIA_FILTER_NOTE_PITCH_ENTROPY), "note_pitch_entropy");
    cr_expect_null(aria_filter_name(ARIA_N_FILTERS));
    cr_expect_not_null(aria_filter_rule(0));
    cr_expect_str_eq(aria_drop_name(ARIA_DROP_DUPLICATE), "duplicate");
    cr_expect_str_eq(aria_drop_name(ARIA_DROP_FILTER + ARIA_FILTER_LENGTH), "length");
    cr_expect_null(aria_drop_name(ARIA_N_DROP));
    aria_score s;
    good_score(&s);
    cr_expect_eq(aria_filter_run(&s, -1, NULL), ARIA_ERR_ARG);
    cr_expect_eq(aria_filter_run(&s, ARIA_N_FILTERS, NULL), ARIA_ERR_ARG);
    aria_score_free(&s);
    score_make(&s, 0); /* no notes: fails what needs notes, does not crash */
    int first = 99;
    cr_expect_eq(aria_filter_all(&s, &first, NULL), ARIA_OK);
    cr_expect_eq(first, ARIA_FILTER_LENGTH);
    aria_score_free(&s);
}

Test(dataset_filters, content_hash) {
    aria_score a, b;
    good_score(&a);
    cr_assert_eq(aria_score_copy(&b, &a), ARIA_OK);
    uint64_t ha[2], hb[2];
    aria_score_hash(&a, ha);
    aria_score_hash(&b, hb);
    cr_expect(ha[0] == hb[0] && ha[1] == hb[1]);
    b.ticks_per_beat = 480; /* left out, as the reference leaves it out */
    aria_score_hash(&b, hb);
    cr_expect(ha[0] == hb[0] && ha[1] == hb[1]);
    b.notes[300].velocity++;
    aria_score_hash(&b, hb);
    cr_expect(ha[0] != hb[0] && ha[1] != hb[1]);
    b.notes[300].velocity--;
    b.tempos[0].tempo = 400000;
    aria_score_hash(&b, hb);
    cr_expect(ha[0] != hb[0]);
    aria_score_free(&a);
    aria_score_free(&b);
}

/* ---------------------------------------------------------------------- */
/* `aria dataset` end to end                                              */
/* ---------------------------------------------------------------------- */


typedef aria_run_result run_result;

/* Runs `aria ARGS` (printf-style), stdout discarded, stderr captured. */
static void run(run_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run(run_result *r, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    run_aria_err(r, args);
    cr_assert_neq(r->status, -1, "%s", r->err);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void copy_file(const char *from, const char *to) {
    uint8_t *buf;
    size_t len;
    cr_assert_eq(aria_read_file(from, &buf, &len, NULL), ARIA_OK, "%s", from);
    cr_assert_eq(aria_write_file_atomic(to, buf, len, NULL), ARIA_OK, "%s", to);
    free(buf);
}

/* A temporary folder with the reference vectors' source MIDI files (not
   their decoded.mid), half of them one level down to test the walk, one
   with an upper-case extension. Returns the number of files. */
static int make_corpus(char *dir) {
    strcpy(dir, "/tmp/aria_ds_inXXXXXX");
    cr_assert(mkdtemp(dir));
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    cr_assert_eq(mkdir(sub, 0777), 0);
    glob_t g;
    cr_assert_eq(glob("tests/data/vectors/*/*.mid", 0, NULL, &g), 0);
    int n = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i], *base = strrchr(p, '/') + 1;
        if (!strcmp(base, "decoded.mid")) continue;
        char to[700];
        int stem = (int)(strlen(base) - 4);
        if (n == 3) /* one upper-case extension */
            snprintf(to, sizeof to, "%s/%.*s.MID", sub, stem, base);
        else
            snprintf(to, sizeof to, "%s/%s", n % 2 ? sub : dir, base);
        copy_file(p, to);
        n++;
    }
    globfree(&g);
    char junk[700]; /* not MIDI by name: ignored */
    snprintf(junk, sizeof junk, "%s/notes.txt", dir);
    cr_assert_eq(aria_write_file_atomic(junk, "hello", 5, NULL), ARIA_OK);
    return n;
}

static char *out_dir(char *buf) {
    strcpy(buf, "/tmp/aria_ds_outXXXXXX");
    cr_assert(mkdtemp(buf));
    return buf;
}

static json_doc *manifest(const char *dir) {
    char p[700], err[400];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    json_doc *d = NULL;
    cr_assert_eq(json_parse_file(p, &d, err, sizeof err), ARIA_OK, "%s", err);
    return d;
}

static int64_t summary_int(const json_doc *d, const char *key) {
    return json_int(json_get(json_get(json_root(d), "summary"), key));
}

/* Every id of one epoch of a split, through the reader API. */
static int32_t *read_epoch(const char *dir, const char *split, int epoch, size_t *n_seqs, int *seq_len) {
    aria_dataset *ds;
    aria_error err = {{0}};
    cr_assert_eq(aria_dataset_open(&ds, dir, split, &err), ARIA_OK, "%s", err.msg);
    *seq_len = aria_dataset_seq_len(ds);
    *n_seqs = aria_dataset_size(ds, epoch);
    int32_t *ids = malloc((*n_seqs + 1) * (size_t)*seq_len * sizeof *ids);
    for (size_t i = 0; i < *n_seqs; i++)
        cr_assert_eq(aria_dataset_get(ds, epoch, i, ids + i * (size_t)*seq_len, &err), ARIA_OK, "%s", err.msg);
    aria_dataset_close(ds);
    return ids;
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

/* The header of every shard listed for a split agrees with the manifest. */
static void check_shard_headers(const char *dir, const json_doc *m, const char *split) {
    const json_value *epochs = json_get(json_root(m), split);
    int64_t seq_len = json_int(json_get(json_root(m), "seq_len"));
    for (size_t e = 0; e < json_len(epochs); e++)
        for (size_t k = 0; k < json_len(json_at(epochs, e)); k++) {
            const json_value *ent = json_at(json_at(epochs, e), k);
            char p[700], want[64];
            snprintf(p, sizeof p, "%s/%s", dir, json_string(json_at(ent, 0), NULL));
            snprintf(want, sizeof want, "%s-e%zu-%05zu.bin", split, e, k);
            cr_expect_str_eq(json_string(json_at(ent, 0), NULL), want);
            uint8_t *b;
            size_t len;
            cr_assert_eq(aria_read_file(p, &b, &len, NULL), ARIA_OK, "%s", p);
            uint32_t u32[6];
            uint64_t nseq;
            memcpy(&u32[0], b + 8, 4);  /* version */
            memcpy(&u32[1], b + 12, 4); /* seq_len */
            memcpy(&nseq, b + 16, 8);
            memcpy(&u32[2], b + 24, 4); /* vocab */
            memcpy(&u32[3], b + 28, 4); /* reserved */
            cr_expect(memcmp(b, "ARIASHRD", 8) == 0);
            cr_expect_eq(u32[0], 1);
            cr_expect_eq(u32[1], (uint32_t)seq_len);
            cr_expect_eq(nseq, (uint64_t)json_int(json_at(ent, 1)));
            cr_expect_eq(u32[2], VOCAB);
            cr_expect_eq(u32[3], 0);
            cr_expect_eq(len, 32 + nseq * seq_len * 2);
            free(b);
        }
}

Test(dataset_cli, build_without_filters) {
    char in[64], out[64];
    int n_files = make_corpus(in);
    out_dir(out);
    run_result r;
    run(&r, "dataset --out %s --seq-len 256 --filters none --jobs 2 %s", out, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "files seen") && strstr(r.err, "duplicate"), "%s", r.err);

    json_doc *m = manifest(out);
    const json_value *root = json_root(m);
    cr_expect_str_eq(json_string(json_get(root, "format"), NULL), "aria-shards");
    cr_expect_eq(json_int(json_get(root, "version")), 1);
    cr_expect_eq(json_int(json_get(root, "seq_len")), 256);
    cr_expect_eq(json_int(json_get(root, "vocab_size")), VOCAB);
    cr_expect_str_eq(json_string(json_get(root, "tokenizer"), NULL), "abs");
    cr_expect_eq(json_type_of(json_get(root, "sep_sequences")), JSON_FALSE);
    cr_expect_eq(json_int(json_get(root, "epochs")), 1);
    cr_expect_eq(json_int(json_get(root, "seed")), 0);
    cr_expect_eq(json_len(json_get(root, "train")), 1);
    cr_expect_eq(json_len(json_get(root, "val")), 1);
    cr_expect_eq(summary_int(m, "files_seen"), n_files, "the upper-case .MID counts, notes.txt not");
    cr_expect_eq(summary_int(m, "kept"), n_files);
    int64_t train_files = summary_int(m, "train_files"), val_files = summary_int(m, "val_files");
    cr_expect_eq(train_files + val_files, n_files);
    cr_expect_eq(val_files, 1, "5%% of 19 files rounds to 1");
    {   /* val-files.txt names the held-out file, an input that exists */
        char vp[600], line[600];
        snprintf(vp, sizeof vp, "%s/val-files.txt", out);
        FILE *vf = fopen(vp, "r");
        cr_assert(vf, "no %s", vp);
        int lines = 0;
        while (fgets(line, sizeof line, vf)) {
            line[strcspn(line, "\n")] = 0;
            cr_expect_eq(access(line, R_OK), 0, "val-files.txt lists %s", line);
            lines++;
        }
        fclose(vf);
        cr_expect_eq(lines, val_files);
    }
    check_shard_headers(out, m, "train");
    check_shard_headers(out, m, "val");

    size_t n_seqs;
    int seq_len;
    int32_t *ids = read_epoch(out, "train", 0, &n_seqs, &seq_len);
    size_t n = n_seqs * (size_t)seq_len;
    cr_expect_eq(seq_len, 256);
    cr_expect_eq((int64_t)n_seqs, summary_int(m, "train_sequences"));
    for (size_t i = 0; i < n; i++) cr_assert(ids[i] >= 0 && ids[i] < VOCAB);
    cr_expect_eq(count_id(ids, n, ID_BOS), (size_t)train_files, "one <S> per file");
    cr_expect_eq(count_id(ids, n, ID_EOS), (size_t)train_files, "one <E> per file");
    size_t first_pad = n;
    for (size_t i = 0; i < n && first_pad == n; i++)
        if (ids[i] == ID_PAD) first_pad = i;
    cr_expect_gt(first_pad, n - seq_len, "padding only in the last sequence");
    for (size_t i = first_pad; i < n; i++) cr_assert_eq(ids[i], ID_PAD, "padding only at the end");
    cr_expect(ids[0] >= ID_PREFIX_FIRST && ids[0] <= ID_PREFIX_LAST, "a file starts with its prefix");
    free(ids);

    ids = read_epoch(out, "val", 0, &n_seqs, &seq_len);
    cr_expect_gt(n_seqs, 0, "validation is not empty");
    cr_expect_eq(count_id(ids, n_seqs * (size_t)seq_len, ID_EOS), 1);
    free(ids);
    json_doc_free(m);
    rm_rf(in);
    rm_rf(out);
}

Test(dataset_cli, default_filters_and_dedup) {
    char in[64], out[64], p[600];
    int n_files = make_corpus(in);
    snprintf(p, sizeof p, "%s/zz_copy_of_nocturne.mid", in);
    copy_file("tests/data/vectors/nocturne/nocturne.mid", p);
    snprintf(p, sizeof p, "%s/broken.mid", in);
    cr_assert_eq(aria_write_file_atomic(p, "MThd", 4, NULL), ARIA_OK);
    out_dir(out);
    run_result r;
    run(&r, "dataset --out %s --seq-len 256 %s", out, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    for (int f = 0; f < ARIA_N_FILTERS; f++)
        cr_expect(strstr(r.err, aria_filter_name(f)) != NULL, "summary lacks %s", aria_filter_name(f));
    json_doc *m = manifest(out);
    const json_value *dropped = json_get(json_get(json_root(m), "summary"), "dropped_by_reason");
    cr_expect_eq(summary_int(m, "files_seen"), n_files + 2);
    cr_expect_eq(json_int(json_get(dropped, "duplicate")), 1);
    cr_expect_eq(json_int(json_get(dropped, "read_error")), 1);
    /* the short synthetic files (1..10 s) fail the 30 s minimum */
    cr_expect_geq(json_int(json_get(dropped, "length")), 5);
    int64_t total = 0;
    for (size_t i = 0; i < json_len(dropped); i++) total += json_int(json_at(dropped, i));
    cr_expect_eq(summary_int(m, "kept") + total, n_files + 2, "each file kept or dropped once");
    cr_expect_geq(summary_int(m, "kept"), 8);
    json_doc_free(m);
    rm_rf(in);
    rm_rf(out);
}

static int files_equal(const char *a, const char *b) {
    uint8_t *x, *y;
    size_t nx, ny;
    if (aria_read_file(a, &x, &nx, NULL) || aria_read_file(b, &y, &ny, NULL)) return 0;
    int eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

Test(dataset_cli, epochs_differ_and_rebuilds_are_identical) {
    char in[64], a[64], b[64], c[64], pa[700], pb[700];
    make_corpus(in);
    out_dir(a);
    out_dir(b);
    out_dir(c);
    run_result r;
    run(&r, "dataset --out %s --seq-len 256 --filters none --epochs 2 --seed 7 --jobs 1 %s", a, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run(&r, "dataset --out %s --seq-len 256 --filters none --epochs 2 --seed 7 --jobs 3 %s", b, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run(&r, "dataset --out %s --seq-len 256 --filters none --epochs 2 --seed 8 %s", c, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *files[] = {"manifest.json", "train-e0-00000.bin", "train-e1-00000.bin", "val-e0-00000.bin"};
    for (int i = 0; i < 4; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        cr_expect(files_equal(pa, pb), "%s differs between two builds", files[i]);
    }
    snprintf(pa, sizeof pa, "%s/train-e0-00000.bin", a);
    snprintf(pb, sizeof pb, "%s/train-e1-00000.bin", a);
    cr_expect(!files_equal(pa, pb), "epoch 1 repeats epoch 0");
    snprintf(pb, sizeof pb, "%s/train-e0-00000.bin", c);
    cr_expect(!files_equal(pa, pb), "another seed gives the same data");

    aria_dataset *ds;
    aria_error err = {{0}};
    cr_assert_eq(aria_dataset_open(&ds, a, "train", &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(aria_dataset_epochs(ds), 2);
    cr_expect_eq(aria_dataset_size(ds, 2), 0);
    int32_t buf[256];
    cr_expect_eq(aria_dataset_get(ds, 2, 0, buf, &err), ARIA_ERR_ARG);
    cr_expect_eq(aria_dataset_get(ds, 0, aria_dataset_size(ds, 0), buf, &err), ARIA_ERR_ARG);
    aria_dataset_close(ds);
    cr_assert_eq(aria_dataset_open(&ds, a, "val", &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(aria_dataset_epochs(ds), 1, "validation is tokenized once");
    aria_dataset_close(ds);
    cr_expect_eq(aria_dataset_open(&ds, a, "test", &err), ARIA_ERR_ARG);
    rm_rf(in);
    rm_rf(a);
    rm_rf(b);
    rm_rf(c);
}

Test(dataset_cli, sep_sequences_start_each_file_afresh) {
    char in[64], out[64];
    make_corpus(in);
    out_dir(out);
    run_result r;
    run(&r, "dataset --out %s --seq-len 256 --filters none --sep-sequences --val-fraction 0 %s", out, in);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_doc *m = manifest(out);
    cr_expect_eq(json_type_of(json_get(json_root(m), "sep_sequences")), JSON_TRUE);
    cr_expect_eq(summary_int(m, "val_files"), 0);
    size_t n_seqs;
    int L;
    int32_t *ids = read_epoch(out, "train", 0, &n_seqs, &L);
    size_t starts = 0;
    for (size_t k = 0; k < n_seqs; k++) {
        const int32_t *seq = ids + k * (size_t)L;
        int file_start = k == 0 || seq[-1] == ID_PAD || seq[-1] == ID_EOS; /* seq[-1]: the last id before */
        if (!file_start) continue;
        starts++;
        cr_expect(seq[0] >= ID_PREFIX_FIRST && seq[0] <= ID_PREFIX_LAST, "sequence %zu starts a file with %d", k, seq[0]);
    }
    cr_expect_eq(starts, (size_t)summary_int(m, "train_files"));
    cr_expect_eq(count_id(ids, n_seqs * (size_t)L, ID_BOS), starts);
    free(ids);
    json_doc_free(m);
    rm_rf(in);
    rm_rf(out);
}

/* Notes in ids that repeat a key of their instrument at the same onset. */
static size_t exact_restrikes(const int32_t *ids, size_t n, size_t *notes) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    size_t c = 0, seen_n = 0;
    int64_t seg = 0, last_on = -1;
    static unsigned char at[ARIA_N_INSTR][128];
    memset(at, 0, sizeof at);
    for (size_t i = 0; i < n; i++) {
        aria_token k = aria_tok_token(t, ids[i]);
        if (ids[i] == ID_BOS) seg = 0, last_on = -1, memset(at, 0, sizeof at);
        if (aria_tok_is(k, ARIA_SP_TIME)) seg += 5000;
        if (k.kind != ARIA_TK_NOTE || i + 1 >= n) continue;
        aria_token o = aria_tok_token(t, ids[i + 1]);
        if (o.kind != ARIA_TK_ONSET) continue;
        seen_n++;
        if (seg + o.v != last_on) memset(at, 0, sizeof at), last_on = seg + o.v;
        c += at[k.a][k.v];
        at[k.a][k.v] = 1;
    }
    aria_tokenizer_free(t);
    *notes = seen_n;
    return c;
}

/* POP909's doubled tracks strike keys twice at once: --drop-restrikes 0
   removes exactly those notes and leaves the rest as it was. */
Test(dataset_cli, drop_restrikes_removes_doubled_notes) {
    char in[64], out[2][64];
    strcpy(in, "/tmp/aria_ds_inXXXXXX");
    cr_assert(mkdtemp(in));
    /* a melody of 60 notes on channel 0, every other one doubled on
       channel 1 (both pianos), as POP909's melody and piano tracks do */
    aria_midi mid;
    aria_error e = {{0}};
    cr_assert_eq(aria_midi_init(&mid, 1, 480), ARIA_OK);
    for (int tr = 0; tr < 2; tr++) {
        cr_assert_eq(aria_midi_add_track(&mid), ARIA_OK);
        aria_midi_event pc = {.tick = 0, .status = (uint8_t)(0xC0 | tr), .d1 = 0};
        cr_assert_eq(aria_midi_push(&mid, tr, &pc, NULL, &e), ARIA_OK, "%s", e.msg);
        for (int i = 0; i < 60; i++) {
            if (tr && i % 2) continue;
            uint8_t key = (uint8_t)(60 + (i * 5) % 12);
            aria_midi_event on = {.tick = (uint32_t)(i * 240), .status = (uint8_t)(0x90 | tr), .d1 = key, .d2 = 90};
            aria_midi_event off = {.tick = (uint32_t)(i * 240 + 200), .status = (uint8_t)(0x80 | tr), .d1 = key};
            cr_assert_eq(aria_midi_push(&mid, tr, &on, NULL, &e), ARIA_OK, "%s", e.msg);
            cr_assert_eq(aria_midi_push(&mid, tr, &off, NULL, &e), ARIA_OK, "%s", e.msg);
        }
    }
    char to[700];
    snprintf(to, sizeof to, "%s/doubled.mid", in);
    cr_assert_eq(aria_midi_write_file(&mid, to, &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&mid);
    size_t reps[2], notes[2];
    for (int k = 0; k < 2; k++) {
        out_dir(out[k]);
        run_result r;
        run(&r, "dataset --out %s --seq-len 256 --filters none --sep-sequences --val-fraction 0 %s %s", out[k],
            k ? "--drop-restrikes 0" : "", in);
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_doc *m = manifest(out[k]);
        const json_value *d = json_get(json_root(m), "drop_restrikes_ms");
        if (k) cr_expect_eq(json_int(d), 0);
        else cr_expect_null(d);
        json_doc_free(m);
        size_t n_seqs;
        int L;
        int32_t *ids = read_epoch(out[k], "train", 0, &n_seqs, &L);
        reps[k] = exact_restrikes(ids, n_seqs * (size_t)L, &notes[k]);
        free(ids);
        rm_rf(out[k]);
    }
    cr_expect_eq(reps[0], 30, "the file doubles 30 keys: %zu", reps[0]);
    cr_expect_eq(reps[1], 0);
    cr_expect_eq(notes[0] - notes[1], reps[0], "only the doubles go: %zu -> %zu notes", notes[0], notes[1]);
    rm_rf(in);
}

static void write_text(const char *path, const char *text) {
    cr_assert_eq(aria_write_file_atomic(path, text, strlen(text), NULL), ARIA_OK);
}

/* A fresh output directory name in out (64 bytes) and, beside it, an ids
   file (path in ids, 600 bytes) holding `text`. */
static void out_with_ids(char *out, char *ids, const char *text) {
    out_dir(out);
    snprintf(ids, 600, "%s.ids", out);
    write_text(ids, text);
}

Test(dataset_cli, ids_input_round_trip) {
    char out[64], ids[600];
    out_with_ids(out, ids, "6 0 827 17227 16806 1\n\n6 0 17726 1\r\n7 6 0 39 17227 16727 4 40 17228 16728 1\n");
    run_result r;
    run(&r, "dataset --out %s --seq-len 16 --sep-sequences --val-fraction 0 --ids %s", out, ids);
    cr_assert_eq(r.status, 0, "%s", r.err);
    size_t n_seqs;
    int L;
    int32_t *got = read_epoch(out, "train", 0, &n_seqs, &L);
    cr_assert_eq(n_seqs, 3);
    static const int32_t want[3][16] = {
        {6, 0, 827, 17227, 16806, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
        {6, 0, 17726, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
        {7, 6, 0, 39, 17227, 16727, 4, 40, 17228, 16728, 1, 2, 2, 2, 2, 2}};
    int seen[3] = {0};
    for (size_t k = 0; k < 3; k++) /* the order is shuffled: match each */
        for (int w = 0; w < 3; w++)
            if (!memcmp(got + k * 16, want[w], sizeof want[w])) seen[w]++;
    cr_expect(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "the ids lines come back as they went in");
    free(got);

    /* concatenated: 21 ids in two sequences of 16, the tail padded */
    run(&r, "dataset --out %s --force --seq-len 16 --val-fraction 0 --ids %s", out, ids);
    cr_assert_eq(r.status, 0, "%s", r.err);
    got = read_epoch(out, "train", 0, &n_seqs, &L);
    cr_expect_eq(n_seqs, 2);
    cr_expect_eq(count_id(got, 32, ID_PAD), 11);
    cr_expect_eq(got[31], ID_PAD);
    free(got);
    unlink(ids);
    rm_rf(out);
}

Test(dataset_cli, bad_ids_name_file_and_line) {
    char out[64], ids[600];
    out_with_ids(out, ids, "6 0 827 1\n6 0 17727 1\n");
    run_result r;
    run(&r, "dataset --out %s --ids %s", out, ids);
    cr_expect_eq(r.status, 1);
    char want[700];
    snprintf(want, sizeof want, "aria: %s:2: ", ids);
    cr_expect(strstr(r.err, want) == r.err, "%s", r.err);
    cr_expect(strstr(r.err, "17727") != NULL, "%s", r.err);
    write_text(ids, "6 0 827 1\n\n6 x 1\n");
    run(&r, "dataset --out %s --ids %s", out, ids);
    cr_expect_eq(r.status, 1);
    snprintf(want, sizeof want, "aria: %s:3: ", ids);
    cr_expect(strstr(r.err, want) == r.err, "%s", r.err);
    char p[700];
    snprintf(p, sizeof p, "%s/manifest.json", out);
    cr_expect(access(p, F_OK) != 0, "no manifest after a failed build");
    unlink(ids);
    rm_rf(out);
}

Test(dataset_cli, refuses_to_overwrite_without_force) {
    char out[64], ids[600];
    out_with_ids(out, ids, "6 0 827 17227 16806 1\n6 0 828 17227 16806 1\n");
    run_result r;
    run(&r, "dataset --out %s/data --seq-len 8 --ids %s", out, ids);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run(&r, "dataset --out %s/data --seq-len 8 --ids %s", out, ids);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "manifest.json") && strstr(r.err, "--force"), "%s", r.err);
    run(&r, "dataset --out %s/data --seq-len 8 --force --ids %s", out, ids);
    cr_expect_eq(r.status, 0, "%s", r.err);
    unlink(ids);
    rm_rf(out);
}

Test(dataset_cli, usage_and_input_errors) {
    run_result r;
    run(&r, "dataset tests/data/vectors");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--out") != NULL, "%s", r.err);
    run(&r, "dataset --out /tmp/x --filters strict tests/data/vectors");
    cr_expect_eq(r.status, 2);
    run(&r, "dataset --out /tmp/x --val-fraction 1.5 tests/data/vectors");
    cr_expect_eq(r.status, 2);
    run(&r, "dataset --out /tmp/x");
    cr_expect_eq(r.status, 2);
    run(&r, "dataset --help");
    cr_expect_eq(r.status, 0);
    char out[64];
    out_dir(out);
    run(&r, "dataset --out %s /nonexistent/midi", out);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "aria: /nonexistent/midi: ") == r.err, "%s", r.err);
    run(&r, "dataset --out %s tests/data/json", out); /* no MIDI there */
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "nothing to build") != NULL, "%s", r.err);
    rm_rf(out);
}

/* Writes `len` bytes at `off` of a file. */
static void poke(const char *path, long off, const void *bytes, size_t len) {
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, len, f);
    fclose(f);
}

/* A dataset of 8-id sequences built from the ids lines `text` (ids file
   beside it, shard path of its first train shard). */
static void build_from_ids(char out[64], char ids[600], char shard[700], const char *text) {
    out_with_ids(out, ids, text);
    run_result r;
    run(&r, "dataset --out %s --seq-len 8 --val-fraction 0 --ids %s", out, ids);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(shard, 700, "%s/train-e0-00000.bin", out);
}

/* Writes `bad` at `off` of the shard, expects the reader to refuse it
   with a message naming the shard and containing `want` (and `want2`
   unless NULL), then writes `good` back. */
static void expect_bad_field(const char *out, const char *shard, long off, const void *bad, const void *good,
                             size_t len, const char *want, const char *want2) {
    aria_dataset *ds = NULL;
    aria_error err = {{0}};
    poke(shard, off, bad, len);
    cr_expect_eq(aria_dataset_open(&ds, out, "train", &err), ARIA_ERR_FORMAT);
    cr_expect_null(ds);
    cr_expect(strstr(err.msg, shard) && strstr(err.msg, want) && (!want2 || strstr(err.msg, want2)), "%s", err.msg);
    poke(shard, off, good, len);
}

Test(dataset_reader, refuses_damaged_shards_with_a_clear_message) {
    char out[64], ids[600], shard[700];
    build_from_ids(out, ids, shard, "6 0 827 17227 16806 1\n6 0 828 17227 16806 1\n6 0 829 17227 16806 1\n");
    aria_dataset *ds = NULL;
    aria_error err = {{0}};

    expect_bad_field(out, shard, 0, "ARIASHRX", "ARIASHRD", 8, "magic", "aria dataset");
    uint32_t bad = 2, good = 1;
    expect_bad_field(out, shard, 8, &bad, &good, 4, "version 2", NULL);
    bad = 16, good = 8;
    expect_bad_field(out, shard, 12, &bad, &good, 4, "seq_len 16", NULL);

    cr_assert_eq(aria_dataset_open(&ds, out, "train", &err), ARIA_OK, "%s", err.msg);
    aria_dataset_close(ds);

    cr_assert_eq(truncate(shard, 40), 0);
    cr_expect_eq(aria_dataset_open(&ds, out, "train", &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "truncated") != NULL, "%s", err.msg);

    char mp[700];
    snprintf(mp, sizeof mp, "%s/manifest.json", out);
    unlink(mp);
    cr_expect_eq(aria_dataset_open(&ds, out, "train", &err), ARIA_ERR_IO);
    cr_expect(strstr(err.msg, "manifest.json") && strstr(err.msg, "aria dataset"), "%s", err.msg);
    unlink(ids);
    rm_rf(out);
}

Test(dataset_reader, flags_ids_outside_the_vocabulary) {
    char out[64], ids[600], shard[700];
    build_from_ids(out, ids, shard, "6 0 827 17227 16806 1\n");
    uint16_t bad = 60000;
    poke(shard, 32 + 2 * 3, &bad, 2);
    aria_dataset *ds;
    aria_error err = {{0}};
    cr_assert_eq(aria_dataset_open(&ds, out, "train", &err), ARIA_OK, "%s", err.msg);
    int32_t seq[8];
    cr_expect_eq(aria_dataset_get(ds, 0, 0, seq, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "60000") != NULL, "%s", err.msg);
    aria_dataset_close(ds);
    unlink(ids);
    rm_rf(out);
}
