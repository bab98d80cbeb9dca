/*
 * features.c - one vector per MIDI file for linear probes (`aria probe`):
 * handcrafted statistics of the score, or a model's output pooled over
 * the file's 300-note chunks, with an on-disk cache so that probing the
 * same files again reads the vectors instead of running the model.
 *
 * Handcrafted features (ARIA_HANDCRAFTED_DIM = 58, docs/probe.md):
 *    0..11  pc_K             share of notes whose pitch % 12 is K
 *   12..36  interval_K       share of melodic steps of K semitones, K in
 *                            -12..12 (clamped), between the highest pitches
 *                            of successive onset groups (notes starting
 *                            within 30 ms of a group's first note)
 *   37..44  dur_*            share of note durations in the bins
 *                            <60, 60-120, 120-250, 250-500, 500-1000,
 *                            1000-2000, 2000-4000, >=4000 ms
 *   45      notes_per_s      notes / span (first onset to last release)
 *   46      polyphony_mean   summed note durations / span
 *   47      polyphony_max    most notes sounding at once
 *   48..51  velocity_*       mean, std, min, max
 *   52..54  bpm_mean, bpm_std (weighted by the beats each tempo lasts up
 *                            to the last release), tempo_changes_per_min
 *   55..57  pitch_mean, pitch_std, pitch_range
 * Times are the exact tempo map's (exact_timing), not the reference
 * tokenizer's approximation.
 *
 * Model features: the chunks of aria_tok_embedding_chunks (as aria embed),
 * at most max_chunks of them, chunk j of K taken at index
 * floor((j + 0.5) * n / K); each chunk's vector is the emb_head output at
 * <E> (embedding) or the mean of the final-norm hidden states over all of
 * its tokens, <E> included (lm-mean); the file's vector is the mean over
 * its chunks.
 *
 * Cache layout: DIR/<kind>-<16 hex>/<32 hex>.feat. The folder's key hashes
 * the feature kind, a version number, max_chunks and, for a model, its
 * file's real path, size and modification time; a file's key hashes the
 * MIDI file's real path, size and modification time. A .feat file is
 * "ARIAFEAT", u32 version, u32 dim, u64 chunks, then dim float32 (all
 * little-endian), written atomically; one that does not read back as that
 * is recomputed.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aria.h"
#include "base/util.h"
#include "tasks/tasks.h"

#define FEAT_VERSION 1u
#define FEAT_MAGIC "ARIAFEAT"
#define FEAT_HEADER 24
#define GROUP_MS 30
#define CHUNK_NOTES 300
#define CHUNK_MAX_LEN 2048

/* ---------------------------------------------------------------------- */
/* handcrafted                                                            */
/* ---------------------------------------------------------------------- */

enum {
    HC_PC = 0,
    HC_INTERVAL = 12,
    HC_DUR = 37,
    HC_DENSITY = 45,
    HC_POLY_MEAN = 46,
    HC_POLY_MAX = 47,
    HC_VEL = 48,
    HC_BPM_MEAN = 52,
    HC_BPM_STD = 53,
    HC_TEMPO_CHANGES = 54,
    HC_PITCH = 55
};

static const int dur_edges_ms[7] = {60, 120, 250, 500, 1000, 2000, 4000};
static const char *const dur_names[8] = {"dur_lt60",     "dur_60_120",    "dur_120_250",   "dur_250_500",
                                         "dur_500_1000", "dur_1000_2000", "dur_2000_4000", "dur_ge4000"};
static const char *const other_names[] = {"notes_per_s",  "polyphony_mean", "polyphony_max", "velocity_mean",
                                          "velocity_std", "velocity_min",   "velocity_max",  "bpm_mean",
                                          "bpm_std",      "tempo_changes_per_min", "pitch_mean", "pitch_std",
                                          "pitch_range"};

const char *aria_handcrafted_name(int i) {
    static const char *const pcs[12] = {"pc_0", "pc_1", "pc_2", "pc_3", "pc_4",  "pc_5",
                                        "pc_6", "pc_7", "pc_8", "pc_9", "pc_10", "pc_11"};
    static const char *const iv[25] = {
        "interval_-12", "interval_-11", "interval_-10", "interval_-9", "interval_-8", "interval_-7", "interval_-6",
        "interval_-5",  "interval_-4",  "interval_-3",  "interval_-2", "interval_-1", "interval_0",  "interval_1",
        "interval_2",   "interval_3",   "interval_4",   "interval_5",  "interval_6",  "interval_7",  "interval_8",
        "interval_9",   "interval_10",  "interval_11",  "interval_12"};
    if (i < 0 || i >= ARIA_HANDCRAFTED_DIM) return NULL;
    if (i < HC_INTERVAL) return pcs[i];
    if (i < HC_DUR) return iv[i - HC_INTERVAL];
    if (i < HC_DENSITY) return dur_names[i - HC_DUR];
    return other_names[i - HC_DENSITY];
}

typedef struct {
    int64_t t;
    int d; /* -1 release, +1 onset: releases sort first */
} sweep_ev;

static int cmp_sweep(const void *a, const void *b) {
    const sweep_ev *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->d - y->d;
}

int aria_handcrafted_features(const aria_score *src, float *out, aria_error *err) {
    for (int i = 0; i < ARIA_HANDCRAFTED_DIM; i++) out[i] = 0.0f;
    size_t n = src->n_notes;
    if (n == 0) return aria_fail(err, ARIA_ERR_EMPTY, "no notes");
    aria_score s = *src; /* shares the arrays; only the timing rule differs */
    s.exact_timing = 1;
    const aria_note *nt = s.notes;

    double f[ARIA_HANDCRAFTED_DIM] = {0};
    int64_t *on = malloc(n * sizeof(int64_t));
    sweep_ev *ev = malloc(2 * n * sizeof(sweep_ev));
    if (!on || !ev) {
        free(on);
        free(ev);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    int64_t first_ms = INT64_MAX, last_ms = INT64_MIN, end_tick = 0;
    double dur_sum = 0, vs = 0, vs2 = 0, ps = 0, ps2 = 0;
    int vmin = 127, vmax = 0, pmin = 127, pmax = 0;
    size_t n_ev = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t a = aria_score_tick_to_ms(&s, nt[i].start);
        int64_t b = aria_score_tick_to_ms(&s, nt[i].end);
        on[i] = a;
        if (a < first_ms) first_ms = a;
        if (b > last_ms) last_ms = b;
        if (nt[i].end > end_tick) end_tick = nt[i].end;
        int64_t d = b - a;
        if (d < 0) d = 0;
        dur_sum += (double)d;
        int bin = 0;
        while (bin < 7 && d >= dur_edges_ms[bin]) bin++;
        f[HC_DUR + bin] += 1;
        f[HC_PC + nt[i].pitch % 12] += 1;
        vs += nt[i].velocity;
        vs2 += (double)nt[i].velocity * nt[i].velocity;
        ps += nt[i].pitch;
        ps2 += (double)nt[i].pitch * nt[i].pitch;
        if (nt[i].velocity < vmin) vmin = nt[i].velocity;
        if (nt[i].velocity > vmax) vmax = nt[i].velocity;
        if (nt[i].pitch < pmin) pmin = nt[i].pitch;
        if (nt[i].pitch > pmax) pmax = nt[i].pitch;
        if (nt[i].end > nt[i].start) {
            ev[n_ev++] = (sweep_ev){nt[i].start, +1};
            ev[n_ev++] = (sweep_ev){nt[i].end, -1};
        }
    }
    double dn = (double)n;
    for (int k = 0; k < 12; k++) f[HC_PC + k] /= dn;
    for (int k = 0; k < 8; k++) f[HC_DUR + k] /= dn;

    /* melodic steps between the tops of successive onset groups (notes are
       sorted by start, so their times do not decrease) */
    size_t steps = 0;
    int prev_top = -1;
    for (size_t i = 0; i < n;) {
        int64_t g0 = on[i];
        int top = nt[i].pitch;
        size_t j = i + 1;
        while (j < n && on[j] - g0 <= GROUP_MS) {
            if (nt[j].pitch > top) top = nt[j].pitch;
            j++;
        }
        if (prev_top >= 0) {
            int iv = top - prev_top;
            if (iv < -12) iv = -12;
            if (iv > 12) iv = 12;
            f[HC_INTERVAL + 12 + iv] += 1;
            steps++;
        }
        prev_top = top;
        i = j;
    }
    for (int k = 0; k < 25 && steps; k++) f[HC_INTERVAL + k] /= (double)steps;

    double span_ms = (double)(last_ms - first_ms);
    if (span_ms > 0) {
        f[HC_DENSITY] = dn / (span_ms / 1000.0);
        f[HC_POLY_MEAN] = dur_sum / span_ms;
    }
    qsort(ev, n_ev, sizeof(*ev), cmp_sweep);
    int cur = 0, best = 0;
    for (size_t i = 0; i < n_ev; i++) {
        cur += ev[i].d;
        if (cur > best) best = cur;
    }
    f[HC_POLY_MAX] = best;

    double vm = vs / dn, pm = ps / dn;
    f[HC_VEL + 0] = vm;
    f[HC_VEL + 1] = sqrt(fmax(0.0, vs2 / dn - vm * vm));
    f[HC_VEL + 2] = vmin;
    f[HC_VEL + 3] = vmax;
    f[HC_PITCH + 0] = pm;
    f[HC_PITCH + 1] = sqrt(fmax(0.0, ps2 / dn - pm * pm));
    f[HC_PITCH + 2] = pmax - pmin;

    /* tempo: each entry lasts from its tick to the next one's (or to the
       last release), weighted by those ticks (beats) */
    double wsum = 0, bs = 0, bs2 = 0;
    size_t changes = 0;
    for (size_t i = 0; i < s.n_tempos; i++) {
        int64_t a = s.tempos[i].tick, b = i + 1 < s.n_tempos ? s.tempos[i + 1].tick : end_tick;
        if (a < 0) a = 0;
        if (b > end_tick) b = end_tick;
        if (i > 0 && s.tempos[i].tick < end_tick && s.tempos[i].tempo != s.tempos[i - 1].tempo) changes++;
        if (b <= a || s.tempos[i].tempo == 0) continue;
        double bpm = 60e6 / (double)s.tempos[i].tempo, w = (double)(b - a);
        wsum += w;
        bs += w * bpm;
        bs2 += w * bpm * bpm;
    }
    if (wsum > 0) {
        double bm = bs / wsum;
        f[HC_BPM_MEAN] = bm;
        f[HC_BPM_STD] = sqrt(fmax(0.0, bs2 / wsum - bm * bm));
    } else if (s.n_tempos && s.tempos[0].tempo) {
        f[HC_BPM_MEAN] = 60e6 / (double)s.tempos[0].tempo;
    }
    if (span_ms > 0) f[HC_TEMPO_CHANGES] = (double)changes / (span_ms / 60000.0);

    for (int i = 0; i < ARIA_HANDCRAFTED_DIM; i++) out[i] = (float)f[i];
    free(on);
    free(ev);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* model features                                                         */
/* ---------------------------------------------------------------------- */

const char *aria_feature_kind_name(int kind) {
    switch (kind) {
    case ARIA_FEAT_EMBEDDING: return "embedding";
    case ARIA_FEAT_LM_MEAN: return "lm-mean";
    case ARIA_FEAT_HANDCRAFTED: return "handcrafted";
    default: return NULL;
    }
}

int aria_feature_dim(const aria_model *m, aria_feature_kind kind) {
    switch (kind) {
    case ARIA_FEAT_HANDCRAFTED: return ARIA_HANDCRAFTED_DIM;
    case ARIA_FEAT_EMBEDDING: return m ? aria_output_dim(m, ARIA_OUT_EMB) : 0;
    case ARIA_FEAT_LM_MEAN: return m ? aria_output_dim(m, ARIA_OUT_HIDDEN) : 0;
    default: return 0;
    }
}

int aria_model_features(const aria_model *m, const aria_tokenizer *t, const aria_score *sc, aria_feature_kind kind,
                        int max_chunks, float *out, size_t *n_chunks, aria_error *err) {
    if (n_chunks) *n_chunks = 0;
    if (kind != ARIA_FEAT_EMBEDDING && kind != ARIA_FEAT_LM_MEAN)
        return aria_fail(err, ARIA_ERR_ARG, "not a model feature kind");
    int D = aria_feature_dim(m, kind);
    if (D <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no emb_head (not an embedding model)");
    int ctx = aria_model_get_config(m)->max_seq_len;
    int max_len = ctx < CHUNK_MAX_LEN ? ctx : CHUNK_MAX_LEN;
    aria_rng rng;
    aria_rng_seed(&rng, 0);
    aria_tok_chunk *ch = NULL;
    size_t nc = 0;
    int rc = aria_tok_embedding_chunks(t, sc, CHUNK_NOTES, (size_t)max_len, &rng, &ch, &nc, err);
    if (rc) return rc;
    size_t use = (max_chunks > 0 && (size_t)max_chunks < nc) ? (size_t)max_chunks : nc;
    aria_session *s = NULL;
    rc = aria_session_new(&s, m, 1, max_len, err);
    size_t rows = kind == ARIA_FEAT_LM_MEAN ? (size_t)max_len : 1;
    float *buf = malloc(rows * (size_t)D * sizeof(float));
    double *acc = calloc((size_t)D, sizeof(double));
    int32_t *ids = malloc((size_t)max_len * sizeof(int32_t));
    if (rc == ARIA_OK && (!buf || !acc || !ids)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < use && rc == ARIA_OK; j++) {
        size_t c = use == nc ? j : (size_t)(((double)j + 0.5) * (double)nc / (double)use);
        int T = (int)ch[c].eos_pos + 1;
        aria_tok_encode(t, ch[c].toks, (size_t)T, ids);
        aria_session_reset(s);
        if (kind == ARIA_FEAT_EMBEDDING) {
            rc = aria_session_forward(s, ids, T, ARIA_OUT_EMB, 0, buf, err);
            for (int i = 0; i < D && rc == ARIA_OK; i++) acc[i] += buf[i];
        } else {
            rc = aria_session_forward(s, ids, T, ARIA_OUT_HIDDEN, 1, buf, err);
            if (rc == ARIA_OK) {
                for (int i = 0; i < D; i++) {
                    double sum = 0;
                    for (int p = 0; p < T; p++) sum += buf[(size_t)p * (size_t)D + (size_t)i];
                    acc[i] += sum / T;
                }
            }
        }
    }
    if (rc == ARIA_OK) {
        for (int i = 0; i < D; i++) out[i] = (float)(acc[i] / (double)use);
        if (n_chunks) *n_chunks = use;
    }
    free(ids);
    free(acc);
    free(buf);
    aria_session_free(s);
    aria_tok_chunks_free(ch, nc);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the cache                                                              */
/* ---------------------------------------------------------------------- */

static void hash_bytes(uint64_t h[2], const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h[0] = (h[0] ^ b[i]) * 0x100000001b3ULL;
        h[1] = (h[1] ^ b[i]) * 0x00000100000001b3ULL + 0x9e3779b97f4a7c15ULL;
    }
}

static void hash_init(uint64_t h[2]) {
    h[0] = 0xcbf29ce484222325ULL;
    h[1] = 0x84222325cbf29ce4ULL;
}

/* Hashes a file's real path, size and modification time; -1 when it
   cannot be stat'ed. */
static int hash_file_id(uint64_t h[2], const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    char *rp = realpath(path, NULL);
    const char *p = rp ? rp : path;
    hash_bytes(h, p, strlen(p) + 1);
    free(rp);
    int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
    hash_bytes(h, v, sizeof v);
    return 0;
}

static int mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *q = '/';
    }
    int rc = (mkdir(p, 0777) != 0 && errno != EEXIST) ? -1 : 0;
    free(p);
    return rc;
}

static void put_u32(unsigned char *b, uint32_t v) {
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *b) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)b[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* 1 when the cache file holds `dim` values (read into x), else 0. */
static int cache_read(const char *path, int dim, float *x, size_t *n_chunks) {
    uint8_t *buf = NULL;
    size_t len = 0;
    aria_error e;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (aria_read_file(path, &buf, &len, &e) != ARIA_OK) return 0;
    int ok = len == FEAT_HEADER + (size_t)dim * 4 && !memcmp(buf, FEAT_MAGIC, 8) &&
             get_u32(buf + 8) == FEAT_VERSION && get_u32(buf + 12) == (uint32_t)dim;
    if (ok) {
        *n_chunks = (size_t)get_u64(buf + 16);
        for (int i = 0; i < dim; i++) {
            uint32_t u = get_u32(buf + FEAT_HEADER + 4 * (size_t)i);
            memcpy(&x[i], &u, 4);
            if (!isfinite(x[i])) ok = 0;
        }
    }
    free(buf);
    return ok;
}

static void cache_write(const char *path, int dim, const float *x, size_t n_chunks) {
    size_t len = FEAT_HEADER + (size_t)dim * 4;
    unsigned char *b = malloc(len);
    if (!b) return;
    memcpy(b, FEAT_MAGIC, 8);
    put_u32(b + 8, FEAT_VERSION);
    put_u32(b + 12, (uint32_t)dim);
    put_u64(b + 16, n_chunks);
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        put_u32(b + FEAT_HEADER + 4 * (size_t)i, u);
    }
    aria_error e;
    (void)aria_write_file_atomic(path, b, len, &e); /* a cache that cannot be written is only slower */
    free(b);
}

/* ---------------------------------------------------------------------- */
/* many files                                                             */
/* ---------------------------------------------------------------------- */

aria_feature_opts aria_feature_defaults(void) {
    aria_feature_opts o;
    memset(&o, 0, sizeof o);
    o.kind = ARIA_FEAT_HANDCRAFTED;
    return o;
}

typedef struct {
    const char *const *paths;
    const aria_feature_opts *o;
    const aria_tokenizer *tok;
    float *X;
    int dim;
    aria_feature_file *files;
    char *cache_dir; /* the model's folder in the cache, or NULL */
    size_t hits, misses, done, n;
    pthread_mutex_t lock;
} feat_run;

static int load_piano_score(const char *path, aria_score *s, aria_feature_file *f) {
    aria_midi m = {0};
    int rc = aria_midi_read_file(&m, path, &f->err);
    if (rc == ARIA_OK && m.n_warnings) {
        f->n_warnings = m.n_warnings;
        snprintf(f->warning, sizeof f->warning, "%s", m.warnings[0]);
    }
    if (rc == ARIA_OK) rc = aria_score_from_midi(s, &m, &f->err);
    aria_midi_free(&m);
    if (rc != ARIA_OK) return rc;
    /* the same rule for every kind, so that all kinds see the same files */
    for (size_t i = 0; i < s->n_programs; i++) {
        int p = s->programs[i].program;
        if (aria_program_class(p) != ARIA_INSTR_PIANO)
            return aria_fail(&f->err, ARIA_ERR_ARG, "not a piano-only file: program %d (%s) on channel %d", p,
                             aria_instrument_name(aria_program_class(p)), s->programs[i].channel + 1);
    }
    if (s->n_notes == 0) return aria_fail(&f->err, ARIA_ERR_EMPTY, "no notes");
    return ARIA_OK;
}

static void feat_one(void *arg, size_t i) {
    feat_run *r = arg;
    aria_feature_file *f = &r->files[i];
    float *x = r->X + i * (size_t)r->dim;
    memset(f, 0, sizeof *f);
    char cpath[PATH_MAX + 64] = "";
    if (r->cache_dir) {
        uint64_t h[2];
        hash_init(h);
        if (hash_file_id(h, r->paths[i]) == 0) {
            snprintf(cpath, sizeof cpath, "%s/%016llx%016llx.feat", r->cache_dir, (unsigned long long)h[0],
                     (unsigned long long)h[1]);
            if (cache_read(cpath, r->dim, x, &f->n_chunks)) f->cached = 1;
        }
    }
    if (!f->cached) {
        aria_score s = {0};
        int rc = load_piano_score(r->paths[i], &s, f);
        if (rc == ARIA_OK) {
            if (r->o->kind == ARIA_FEAT_HANDCRAFTED) {
                rc = aria_handcrafted_features(&s, x, &f->err);
            } else {
                rc = aria_model_features(r->o->model, r->tok, &s, r->o->kind, r->o->max_chunks, x, &f->n_chunks,
                                         &f->err);
            }
        }
        aria_score_free(&s);
        f->status = rc;
        if (rc == ARIA_OK && cpath[0]) cache_write(cpath, r->dim, x, f->n_chunks);
        if (rc != ARIA_OK)
            for (int k = 0; k < r->dim; k++) x[k] = 0.0f;
    }
    pthread_mutex_lock(&r->lock);
    if (f->cached) r->hits++;
    else if (f->status == ARIA_OK) r->misses++;
    r->done++;
    if (r->o->progress) r->o->progress(r->o->progress_ctx, r->done, r->n);
    pthread_mutex_unlock(&r->lock);
}

int aria_features_files(const char *const *paths, size_t n, const aria_feature_opts *o, float *X,
                        aria_feature_file *files, size_t *hits, size_t *misses, aria_error *err) {
    if (hits) *hits = 0;
    if (misses) *misses = 0;
    if (!o || (n && (!paths || !X || !files))) return aria_fail(err, ARIA_ERR_ARG, "missing argument");
    const char *kn = aria_feature_kind_name((int)o->kind);
    if (!kn) return aria_fail(err, ARIA_ERR_ARG, "unknown feature kind %d", (int)o->kind);
    if (o->kind != ARIA_FEAT_HANDCRAFTED && !o->model)
        return aria_fail(err, ARIA_ERR_ARG, "%s features need a model", kn);
    int dim = aria_feature_dim(o->model, o->kind);
    if (dim <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no emb_head (not an embedding model)");

    feat_run r;
    memset(&r, 0, sizeof r);
    r.paths = paths;
    r.o = o;
    r.X = X;
    r.dim = dim;
    r.files = files;
    r.n = n;
    aria_tokenizer *tok = NULL;
    if (o->kind != ARIA_FEAT_HANDCRAFTED) {
        tok = aria_tokenizer_for_model(o->model);
        if (!tok) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        r.tok = tok;
    }
    if (o->cache_dir && *o->cache_dir) {
        uint64_t h[2];
        hash_init(h);
        uint32_t v[3] = {FEAT_VERSION, (uint32_t)o->kind,
                         (uint32_t)(o->kind == ARIA_FEAT_HANDCRAFTED || o->max_chunks < 0 ? 0 : o->max_chunks)};
        hash_bytes(h, v, sizeof v);
        int ok = 1;
        if (o->kind != ARIA_FEAT_HANDCRAFTED) {
            if (!o->model_path || hash_file_id(h, o->model_path) != 0) ok = 0; /* no key: no cache */
            int32_t d = dim;
            hash_bytes(h, &d, sizeof d);
        }
        if (ok) {
            size_t len = strlen(o->cache_dir) + strlen(kn) + 40;
            r.cache_dir = malloc(len);
            if (!r.cache_dir) {
                aria_tokenizer_free(tok);
                return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            }
            snprintf(r.cache_dir, len, "%s/%s-%016llx", o->cache_dir, kn, (unsigned long long)(h[0] ^ h[1]));
            if (mkdir_p(r.cache_dir) != 0) {
                int e = errno;
                int rc = aria_fail(err, ARIA_ERR_IO, "cannot create the cache folder %s: %s", r.cache_dir,
                                   strerror(e));
                free(r.cache_dir);
                aria_tokenizer_free(tok);
                return rc;
            }
        }
    }
    pthread_mutex_init(&r.lock, NULL);
    int jobs = o->kind == ARIA_FEAT_HANDCRAFTED ? tasks_jobs(o->jobs) : 1;
    tasks_parallel_for(n, jobs, feat_one, &r);
    pthread_mutex_destroy(&r.lock);
    if (hits) *hits = r.hits;
    if (misses) *misses = r.misses;
    free(r.cache_dir);
    aria_tokenizer_free(tok);
    return ARIA_OK;
}
