/*
 * dataset.c - token shards for training: building them from folders of
 * MIDI files (`aria dataset`) and reading them back (the trainer).
 *
 * Building runs in passes, each over files in sorted path order so that
 * the result never depends on thread timing:
 *   1. scan: walk the inputs for *.mid / *.midi; read every file in
 *      parallel, run the quality filters (filters.c) on the score as read,
 *      remove the tokenizer's ignored instruments, hash what is left;
 *   2. dedup, in path order (the first file of a content hash is kept);
 *   3. split: the files are grouped (groups.c: versions and parts of one
 *      piece together, opts->group_by); kept files (and lines of --ids
 *      files, a group each) ranked by a seeded hash of their content, a
 *      group by its first member's rank; groups are taken in rank order
 *      into validation while they fit in val_fraction of the files, so a
 *      group is never split. A side depends only on the contents, the
 *      grouping and the seed, so growing a corpus moves few files across;
 *   4. per epoch (validation: once): the split's files in a seeded
 *      shuffled order, tokenized in parallel batches (aria_batch_tokenize,
 *      batch.c) with an RNG seeded from (seed, epoch, file), appended in
 *      order to a shard writer that cuts seq_len sequences (concatenated,
 *      or one file per run of sequences with sep_sequences) and writes a
 *      shard per 4096;
 *   5. val-files.txt, dropped.tsv (every file left out, why, and the
 *      detail: the reader's error, the filter's value, the original of a
 *      duplicate) and manifest.json, last.
 * MIDI files are read again in every epoch instead of being kept in
 * memory: a large corpus does not fit, and parsing is cheap next to
 * tokenizing. Every file is written with aria_write_file_atomic.
 *
 * With an embedding model (opts->embed_model, for training the embedding
 * adapter, spec 3.3; needs sep_sequences), a pass between 3 and 4 embeds
 * every kept MIDI file as `aria embed` does (aria_embed_score) into
 * embeddings.npy [kept files][emb_size], one row per file in item order
 * (a file that cannot be embedded gets a zero row and no use), and the
 * shard writers note each sequence's row: <split>-e<epoch>.rows (magic
 * "ARIAROWS", u64 count, then an int32 row per sequence, -1: none), so
 * the shards themselves keep their format. The manifest records the
 * model's file name, size and content hash, so that the trainer can check
 * that it conditions on the model the embeddings came from.
 *
 * Reading maps each shard read-only after checking its header against
 * the manifest; a sequence is found by binary search over the shards'
 * cumulative counts.
 */
#include "base/json.h"
#include "base/util.h"
#include "tasks/tasks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAD_ID 2               /* <P> */
#define BATCH_PER_JOB 16       /* files tokenized per thread between appends */
#define MAX_SEQ_LEN 65536
#define PATH_CAP 4096

/* Domain tags for the seeded streams, so that no two draw the same. */
enum { SEED_SPLIT = 1, SEED_SHUFFLE_TRAIN = 2, SEED_SHUFFLE_VAL = 3, SEED_TOKENIZE = 4 };

aria_dataset_opts aria_dataset_defaults(void) {
    aria_dataset_opts o = {0};
    o.seq_len = 8192;
    o.epochs = 1;
    o.val_fraction = 0.05;
    o.filters = 1;
    return o;
}

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t derive_seed(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b) {
    return mix64(mix64(mix64(mix64(seed) ^ tag) ^ a) ^ b);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void strvec_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int strvec_push(strvec *s, const char *str) {
    char *d = strdup(str);
    if (!d || ARIA_GROW(s->v, s->cap, s->n + 1)) {
        free(d);
        return ARIA_ERR_NOMEM;
    }
    s->v[s->n++] = d;
    return ARIA_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A growable byte buffer for the manifest text. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} textbuf;

static void tb_printf(textbuf *t, const char *fmt, ...) ARIA_PRINTF(2, 3);

static void tb_printf(textbuf *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->n;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)k < room) {
            t->n += (size_t)k;
            return;
        }
        if (ARIA_GROW(t->p, t->cap, t->n + (size_t)k + 1)) {
            t->oom = 1;
            return;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Finding MIDI files                                                     */
/* ---------------------------------------------------------------------- */

static int is_midi_name(const char *name) {
    size_t n = strlen(name);
    return (n > 4 && !strcasecmp(name + n - 4, ".mid")) || (n > 5 && !strcasecmp(name + n - 5, ".midi"));
}

/* Walks `dir` recursively. Symbolic links to files are followed; links to
   directories are not, so a link cycle cannot make the walk endless. */
static int walk_dir(const char *dir, strvec *out, aria_error *err) {
    DIR *d = opendir(dir);
    if (!d) return aria_fail(err, ARIA_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = ARIA_OK;
    struct dirent *e;
    char path[PATH_CAP];
    while (rc == ARIA_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            rc = aria_fail(err, ARIA_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        struct stat st;
        if (lstat(path, &st) != 0) continue; /* vanished while walking */
        if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(path, out, err);
        } else if (is_midi_name(e->d_name) && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (strvec_push(out, path)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
    }
    closedir(d);
    return rc;
}

/* Directories are walked; a file named directly is taken whatever its
   extension. The list comes back sorted, exact repeats removed. */
static int collect_midi(const char *const *inputs, size_t n, strvec *out, aria_error *err) {
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(inputs[i], &st) != 0)
            return aria_fail(err, ARIA_ERR_IO, "%s: %s", inputs[i], strerror(errno));
        int rc = ARIA_OK;
        if (S_ISDIR(st.st_mode))
            rc = walk_dir(inputs[i], out, err);
        else if (strvec_push(out, inputs[i]))
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        if (rc) return rc;
    }
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (w && !strcmp(out->v[w - 1], out->v[i]))
            free(out->v[i]);
        else
            out->v[w++] = out->v[i];
    }
    out->n = w;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Pre-tokenized input: one sequence of ids per line                      */
/* ---------------------------------------------------------------------- */

typedef struct {
    uint16_t *ids;
    size_t n;
} idseq;

typedef struct {
    idseq *v;
    size_t n, cap;
} idseqs;

static void idseqs_free(idseqs *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i].ids);
    free(s->v);
}

/* Parses one line (the list rule of aria_ids_parse); errors name the
   file and line in front of the parser's "byte N: ...". */
static int parse_ids_line(const char *path, size_t lineno, const char *p, size_t len, int vocab,
                          idseq *out, aria_error *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    aria_error e2 = {{0}};
    int rc = aria_ids_parse(p, len, vocab, &ids, &n, &e2);
    if (rc) return aria_fail(err, rc, "%s:%zu: %s", path, lineno, e2.msg);
    out->ids = malloc((n ? n : 1) * sizeof *out->ids);
    if (!out->ids) {
        free(ids);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) out->ids[i] = (uint16_t)ids[i]; /* the vocabulary fits 16 bits */
    out->n = n;
    free(ids);
    return ARIA_OK;
}

static int read_ids_file(const char *path, int vocab, idseqs *out, aria_error *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    aria_error e2 = {{0}};
    if (aria_read_file(path, &buf, &len, &e2) != ARIA_OK)
        return aria_fail(err, ARIA_ERR_IO, "%s: %s", path, e2.msg);
    int rc = ARIA_OK;
    size_t lineno = 0;
    for (size_t pos = 0; rc == ARIA_OK && pos < len;) {
        const char *line = (const char *)buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl != NULL);
        lineno++;
        idseq s = {0};
        rc = parse_ids_line(path, lineno, line, ll, vocab, &s, err);
        if (rc || s.n == 0) { /* blank lines are skipped */
            free(s.ids);
            continue;
        }
        if (ARIA_GROW(out->v, out->cap, out->n + 1)) {
            free(s.ids);
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        } else {
            out->v[out->n++] = s;
        }
    }
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Pass 1: read, filter, hash                                             */
/* ---------------------------------------------------------------------- */

typedef struct {
    int reason;         /* aria_drop_reason, or -1 when kept */
    uint32_t fail_mask; /* every failing filter */
    uint64_t hash[2];
    size_t dup_of;      /* a duplicate's original (index into the paths) */
    char detail[160];   /* why it was dropped: the reader's error, the filter's value */
    int n_warnings;     /* what the MIDI reader forgave (a damaged file), and the first */
    char warning[160];
} scan_result;

typedef struct {
    char *const *paths;
    scan_result *res;
    int filters;
    int strict; /* a damaged file is dropped as a read error */
    uint32_t ignore_mask;
} scan_job;

static void scan_one(void *arg, size_t i) {
    scan_job *j = arg;
    scan_result *r = &j->res[i];
    aria_midi m = {0};
    aria_score s = {0};
    r->reason = -1;
    aria_error e = {{0}};
    if (aria_midi_read_file(&m, j->paths[i], &e) != ARIA_OK || aria_score_from_midi(&s, &m, &e) != ARIA_OK) {
        r->reason = ARIA_DROP_READ_ERROR;
        snprintf(r->detail, sizeof r->detail, "%.159s", e.msg);
        goto done;
    }
    if (m.n_warnings) { /* read as far as it goes; the caller says so, or refuses it */
        r->n_warnings = m.n_warnings;
        snprintf(r->warning, sizeof r->warning, "%.159s", m.warnings[0]);
        if (j->strict) {
            r->reason = ARIA_DROP_READ_ERROR;
            snprintf(r->detail, sizeof r->detail, "damaged (%.120s); refused as strict", m.warnings[0]);
            goto done;
        }
    }
    if (s.n_notes == 0) {
        r->reason = ARIA_DROP_NO_NOTES;
        goto done;
    }
    int first = -1;
    if (j->filters && aria_filter_all(&s, &first, &r->fail_mask) != ARIA_OK) {
        r->reason = ARIA_DROP_READ_ERROR; /* out of memory on this file */
        goto done;
    }
    if (first >= 0) {
        r->reason = ARIA_DROP_FILTER + first;
        double value = 0;
        if (aria_filter_run(&s, first, &value) >= 0)
            snprintf(r->detail, sizeof r->detail, "measured %.4g; rule: %s", value, aria_filter_rule(first));
        goto done;
    }
    /* the reference hashes the score after its pre-processing, which is
       this instrument removal */
    aria_score_remove_instruments(&s, j->ignore_mask);
    if (s.n_notes == 0) {
        r->reason = ARIA_DROP_IGNORED_INSTRUMENTS;
        goto done;
    }
    aria_score_hash(&s, r->hash);
done:
    aria_score_free(&s);
    aria_midi_free(&m);
}

/* Instrument classes the tokenizer drops: those whose notes it cannot
   encode (their note tokens come out as <U>). */
static uint32_t tokenizer_ignore_mask(const aria_tokenizer *tk) {
    uint32_t mask = 0;
    int unk = aria_tok_id(tk, aria_tok_special(ARIA_SP_UNK));
    for (int c = 0; c < 16; c++) {
        aria_token t = {.kind = ARIA_TK_NOTE, .a = (uint8_t)c, .b = 60, .v = 60};
        if (aria_tok_id(tk, t) == unk) mask |= 1u << c;
    }
    return mask;
}

/* ---------------------------------------------------------------------- */
/* Items, split and order                                                 */
/* ---------------------------------------------------------------------- */

/* A unit of the split: a kept MIDI file or one line of an ids file. */
typedef struct {
    const char *path;  /* MIDI file, or NULL */
    const idseq *ids;  /* ids line, or NULL */
    uint64_t hash[2];
    uint64_t rank;     /* seeded hash deciding the split */
    size_t index;      /* position among all items: seeds its tokenizer RNG */
    size_t group;      /* items of a group go to the same side */
    int val;
} item;

static uint64_t hash_ids(const idseq *s, uint64_t salt) {
    uint64_t h = mix64(salt ^ s->n);
    for (size_t i = 0; i < s->n; i++) h = mix64(h ^ s->ids[i]);
    return h;
}

/* Validation gets round(fraction * n) items, at least 1 when there are 2
   or more and fraction > 0, and never all of them. */
static size_t val_count(size_t n, double fraction) {
    if (n < 2 || fraction <= 0) return 0;
    double want = floor(fraction * (double)n + 0.5);
    size_t k = want < 1 ? 1 : (size_t)want;
    return k > n - 1 ? n - 1 : k;
}

/* A group's place in the ranking: its best-ranked member. */
typedef struct {
    uint64_t rank;
    size_t first, size, id;
    int val;
} group_rank;

static int cmp_group_rank(const void *a, const void *b) {
    const group_rank *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Groups in rank order go to validation while they fit in its share (a
   group larger than what is left is passed over for a smaller one); when
   none fits, the first group goes alone. With every group a single file
   this is the first val_count(n) files of the ranking. */
static int assign_split(item *items, size_t n, size_t n_groups, double fraction, uint64_t seed,
                        size_t *val_groups) {
    group_rank *g = malloc((n_groups ? n_groups : 1) * sizeof *g);
    size_t *where = malloc((n_groups ? n_groups : 1) * sizeof *where);
    if (!g || !where) {
        free(g);
        free(where);
        return ARIA_ERR_NOMEM;
    }
    for (size_t k = 0; k < n_groups; k++) g[k] = (group_rank){UINT64_MAX, SIZE_MAX, 0, k, 0};
    for (size_t i = 0; i < n; i++) {
        group_rank *x = &g[items[i].group];
        items[i].rank = derive_seed(seed, SEED_SPLIT, items[i].hash[0], items[i].hash[1]);
        if (items[i].rank < x->rank || (items[i].rank == x->rank && items[i].index < x->first)) {
            x->rank = items[i].rank;
            x->first = items[i].index;
        }
        x->size++;
    }
    qsort(g, n_groups, sizeof *g, cmp_group_rank);
    size_t want = val_count(n, fraction), taken = 0;
    *val_groups = 0;
    for (size_t k = 0; k < n_groups && taken < want; k++)
        if (taken + g[k].size <= want) {
            g[k].val = 1;
            taken += g[k].size;
            ++*val_groups;
        }
    if (taken == 0 && want > 0 && n_groups >= 2) {
        g[0].val = 1;
        *val_groups = 1;
    }
    for (size_t k = 0; k < n_groups; k++) where[g[k].id] = k;
    for (size_t i = 0; i < n; i++) items[i].val = g[where[items[i].group]].val;
    free(g);
    free(where);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Shard writer                                                           */
/* ---------------------------------------------------------------------- */

typedef struct {
    char name[64];
    uint64_t n_seqs;
} shard_entry;

typedef struct {
    const char *dir;
    const char *split;
    int epoch, seq_len, vocab;
    uint8_t *buf;       /* header, then sequences */
    size_t buf_seqs;    /* sequences the buffer holds room for */
    size_t n_seqs;      /* complete sequences in the buffer */
    size_t fill;        /* ids in the sequence being filled */
    shard_entry *shards;
    size_t n_shards, cap_shards;
    uint64_t total_seqs, tokens;
    /* with embeddings: each finished sequence's embedding row */
    int track_rows;
    int32_t cur_row, *rows;
    size_t n_rows, cap_rows;
} shard_writer;

/* A sequence is complete: note its file's embedding row. */
static int sw_note_row(shard_writer *w) {
    if (!w->track_rows) return ARIA_OK;
    if (ARIA_GROW(w->rows, w->cap_rows, w->n_rows + 1)) return ARIA_ERR_NOMEM;
    w->rows[w->n_rows++] = w->cur_row;
    return ARIA_OK;
}

static uint8_t *sw_seq(shard_writer *w, size_t k) {
    return w->buf + ARIA_SHARD_HEADER_BYTES + k * (size_t)w->seq_len * 2;
}

/* Makes room for sequence n_seqs, growing the buffer by doubling up to a
   shard's worth (a small split never allocates a full shard). */
static int sw_reserve(shard_writer *w) {
    if (w->n_seqs < w->buf_seqs) return ARIA_OK;
    size_t want = w->buf_seqs ? w->buf_seqs * 2 : 16;
    if (want > ARIA_SHARD_SEQUENCES) want = ARIA_SHARD_SEQUENCES;
    uint8_t *b = realloc(w->buf, ARIA_SHARD_HEADER_BYTES + want * (size_t)w->seq_len * 2);
    if (!b) return ARIA_ERR_NOMEM;
    w->buf = b;
    w->buf_seqs = want;
    return ARIA_OK;
}

static int sw_flush(shard_writer *w, aria_error *err) {
    if (w->n_seqs == 0) return ARIA_OK;
    if (ARIA_GROW(w->shards, w->cap_shards, w->n_shards + 1))
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    shard_entry *e = &w->shards[w->n_shards];
    snprintf(e->name, sizeof e->name, "%s-e%d-%05zu.bin", w->split, w->epoch, w->n_shards);
    e->n_seqs = w->n_seqs;
    uint8_t *h = w->buf;
    memcpy(h, ARIA_SHARD_MAGIC, 8);
    put_u32(h + 8, ARIA_SHARD_VERSION);
    put_u32(h + 12, (uint32_t)w->seq_len);
    put_u64(h + 16, w->n_seqs);
    put_u32(h + 24, (uint32_t)w->vocab);
    put_u32(h + 28, 0);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", w->dir, e->name);
    aria_error e2 = {{0}};
    if (aria_write_file_atomic(path, w->buf, ARIA_SHARD_HEADER_BYTES + w->n_seqs * (size_t)w->seq_len * 2, &e2))
        return aria_fail(err, ARIA_ERR_IO, "%s: %s", path, e2.msg);
    w->n_shards++;
    w->total_seqs += w->n_seqs;
    w->n_seqs = 0;
    return ARIA_OK;
}

/* Closes the sequence being filled: pads it with <P> to seq_len. */
static int sw_pad(shard_writer *w, aria_error *err) {
    if (w->fill == 0) return ARIA_OK;
    uint8_t *p = sw_seq(w, w->n_seqs);
    for (size_t i = w->fill; i < (size_t)w->seq_len; i++) {
        p[2 * i] = PAD_ID & 0xff;
        p[2 * i + 1] = PAD_ID >> 8;
    }
    w->fill = 0;
    w->n_seqs++;
    if (sw_note_row(w)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    return w->n_seqs == ARIA_SHARD_SEQUENCES ? sw_flush(w, err) : ARIA_OK;
}

static int sw_push(shard_writer *w, const uint16_t *ids, size_t n, aria_error *err) {
    for (size_t i = 0; i < n; i++) {
        if (w->fill == 0 && sw_reserve(w)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        uint8_t *p = sw_seq(w, w->n_seqs) + 2 * w->fill;
        p[0] = (uint8_t)ids[i];
        p[1] = (uint8_t)(ids[i] >> 8);
        if (++w->fill == (size_t)w->seq_len) {
            w->fill = 0;
            w->n_seqs++;
            if (sw_note_row(w)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            if (w->n_seqs == ARIA_SHARD_SEQUENCES && sw_flush(w, err)) return ARIA_ERR_IO;
        }
    }
    w->tokens += n;
    return ARIA_OK;
}

static void sw_free(shard_writer *w) {
    free(w->rows);
    free(w->buf);
    free(w->shards);
}

/* ---------------------------------------------------------------------- */
/* Tokenizing an epoch                                                    */
/* ---------------------------------------------------------------------- */

/* One batch of an epoch's items: the paths and seeds handed to
   aria_batch_tokenize, and per slot the ids a MIDI item became. */
typedef struct {
    const aria_tokenizer *tk;
    int restrike_ms;    /* < 0: keep every note */
    const char **paths; /* NULL for an ids item */
    uint64_t *seeds;
    uint16_t **ids;
    size_t *n_ids;
    aria_batch_file *files;
} tok_batch;

/* Runs in the worker thread that tokenized slot k: the tokens become
   shard ids there, so that encoding is parallel too and only two bytes
   per token wait for the append. */
static void encode_slot(void *ctx, size_t k, aria_batch_file *f) {
    tok_batch *b = ctx;
    b->ids[k] = NULL;
    b->n_ids[k] = 0;
    if (f->status != ARIA_OK || !b->paths[k]) return;
    int32_t *ids = malloc((f->n_toks ? f->n_toks : 1) * sizeof *ids);
    uint16_t *out = malloc((f->n_toks ? f->n_toks : 1) * sizeof *out);
    if (!ids || !out) {
        free(out);
        f->status = aria_fail(&f->err, ARIA_ERR_NOMEM, "out of memory");
    } else {
        if (b->restrike_ms >= 0) f->n_toks = aria_tok_drop_restrikes(f->toks, f->n_toks, b->restrike_ms);
        aria_tok_encode(b->tk, f->toks, f->n_toks, ids);
        for (size_t i = 0; i < f->n_toks; i++) out[i] = (uint16_t)ids[i];
        b->ids[k] = out;
        b->n_ids[k] = f->n_toks;
    }
    free(ids);
    aria_batch_file_free(f);
}

static void tok_batch_free(tok_batch *b) {
    free(b->paths);
    free(b->seeds);
    free(b->ids);
    free(b->n_ids);
    free(b->files);
}

static int append_item(shard_writer *w, const item *it, const uint16_t *ids, size_t n, int sep,
                       aria_error *err) {
    if (it->ids) {
        ids = it->ids->ids;
        n = it->ids->n;
    }
    /* MIDI items are the first ones, so a MIDI item's index is its row */
    w->cur_row = it->path ? (int32_t)it->index : -1;
    int rc = sw_push(w, ids, n, err);
    if (rc == ARIA_OK && sep) rc = sw_pad(w, err);
    return rc;
}

/* One epoch of one split: shuffle, tokenize in batches (as pre-training
   data: default options, <D> and <E>, shuffled prefix, an RNG seeded from
   (seed, epoch, item)), append in order, write shards. */
static int build_epoch(const aria_tokenizer *tk, const aria_dataset_opts *o, int jobs, item **order,
                       size_t n, int epoch, shard_writer *w, aria_error *err) {
    int is_val = !strcmp(w->split, "val");
    aria_rng rng;
    aria_rng_seed(&rng, derive_seed(o->seed, is_val ? SEED_SHUFFLE_VAL : SEED_SHUFFLE_TRAIN, (uint64_t)epoch, 0));
    aria_rng_shuffle(&rng, order, n, sizeof *order);

    size_t batch = (size_t)jobs * BATCH_PER_JOB;
    tok_batch b = {.tk = tk, .restrike_ms = o->drop_restrikes ? o->restrike_ms : -1, .paths = calloc(batch, sizeof(char *)), .seeds = calloc(batch, sizeof(uint64_t)),
                   .ids = calloc(batch, sizeof(uint16_t *)), .n_ids = calloc(batch, sizeof(size_t)),
                   .files = calloc(batch, sizeof(aria_batch_file))};
    int rc = b.paths && b.seeds && b.ids && b.n_ids && b.files ? ARIA_OK
                                                               : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    aria_batch_opts bo = aria_batch_defaults();
    bo.jobs = jobs;
    bo.seeds = b.seeds;
    bo.on_file = encode_slot;
    bo.ctx = &b;
    char stage[32];
    snprintf(stage, sizeof stage, "%s e%d", w->split, epoch);
    for (size_t base = 0; rc == ARIA_OK && base < n; base += batch) {
        size_t k = n - base < batch ? n - base : batch;
        for (size_t i = 0; i < k; i++) {
            const item *it = order[base + i];
            b.paths[i] = it->path;
            b.seeds[i] = derive_seed(o->seed, SEED_TOKENIZE, (uint64_t)epoch, it->index);
        }
        rc = aria_batch_tokenize(tk, b.paths, k, &bo, b.files, err);
        for (size_t i = 0; i < k; i++) {
            const aria_batch_file *f = &b.files[i];
            if (rc == ARIA_OK && f->status == ARIA_ERR_NOMEM)
                rc = aria_fail(err, f->status, "%s: out of memory", b.paths[i]);
            else if (rc == ARIA_OK && f->status != ARIA_OK)
                rc = aria_fail(err, f->status, "%s: %s (did the file change during the build?)", b.paths[i],
                               f->err.msg);
            if (rc == ARIA_OK) rc = append_item(w, order[base + i], b.ids[i], b.n_ids[i], o->sep_sequences, err);
            free(b.ids[i]);
        }
        if (o->progress) o->progress(o->progress_ctx, stage, base + k, n);
    }
    if (rc == ARIA_OK) rc = sw_pad(w, err);
    if (rc == ARIA_OK) rc = sw_flush(w, err);
    tok_batch_free(&b);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Output directory and manifest                                          */
/* ---------------------------------------------------------------------- */

/* A name this builder writes: (train|val)-e<digits>-<5 digits>.bin */
static int is_shard_name(const char *s) {
    if (!strncmp(s, "train-e", 7)) s += 7;
    else if (!strncmp(s, "val-e", 5)) s += 5;
    else return 0;
    if (*s < '0' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9') s++;
    if (*s++ != '-') return 0;
    for (int i = 0; i < 5; i++)
        if (*s < '0' || *s++ > '9') return 0;
    return !strcmp(s, ".bin");
}

static int mkdir_p(const char *dir, aria_error *err) {
    char p[PATH_CAP];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return aria_fail(err, ARIA_ERR_ARG, "%s: path too long", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return aria_fail(err, ARIA_ERR_IO, "%s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return aria_fail(err, ARIA_ERR_IO, "%s: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return aria_fail(err, ARIA_ERR_IO, "%s: not a directory", p);
    return ARIA_OK;
}

/* A finished dataset (one with a manifest) is replaced only on request;
   checked before the long scan so that a mistake is reported at once. */
static int refuse_finished(const char *dir, int overwrite, aria_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (!overwrite && access(path, F_OK) == 0)
        return aria_fail(err, ARIA_ERR_ARG, "%s: a finished dataset is already there; "
                         "choose another directory or overwrite it (aria dataset --force)", path);
    return ARIA_OK;
}

/* Makes `dir` ready: removes the manifest (the directory is unfinished
   from here on) and any shard or embedding file a previous build left. */
static int prepare_out_dir(const char *dir, int overwrite, aria_error *err) {
    int rc = mkdir_p(dir, err);
    if (rc) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (access(path, F_OK) == 0) {
        if (!overwrite)
            return aria_fail(err, ARIA_ERR_ARG, "%s: a finished dataset is already there; "
                             "choose another directory or overwrite it (aria dataset --force)", path);
        if (unlink(path) != 0) return aria_fail(err, ARIA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    DIR *d = opendir(dir);
    if (!d) return aria_fail(err, ARIA_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        /* and the embedding files of a build with --embedding-model */
        int emb = !strcmp(e->d_name, "embeddings.npy") || !strcmp(e->d_name, "embeddings.txt") ||
                  ((!strncmp(e->d_name, "train-e", 7) || !strncmp(e->d_name, "val-e", 5)) && n > 5 &&
                   !strcmp(e->d_name + n - 5, ".rows"));
        if (!is_shard_name(e->d_name) && !emb) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return ARIA_OK;
}

static void manifest_split(textbuf *t, const char *key, const shard_writer *w, int n_epochs) {
    tb_printf(t, "  \"%s\": [", key);
    for (int e = 0; e < n_epochs; e++) {
        tb_printf(t, "%s\n    [", e ? "," : "");
        for (size_t k = 0; k < w[e].n_shards; k++)
            tb_printf(t, "%s[\"%s\", %" PRIu64 "]", k ? ", " : "", w[e].shards[k].name, w[e].shards[k].n_seqs);
        tb_printf(t, "]");
    }
    tb_printf(t, "\n  ],\n");
}

static void manifest_summary(textbuf *t, const aria_dataset_summary *s, int filters) {
    tb_printf(t, "  \"summary\": {\n    \"files_seen\": %zu,\n    \"kept\": %zu,\n    \"dropped_by_reason\": {",
              s->files_seen, s->kept);
    int first = 1;
    for (int r = 0; r < ARIA_N_DROP; r++) {
        int is_filter = r >= ARIA_DROP_FILTER && r < ARIA_DROP_FILTER + ARIA_N_FILTERS;
        if (is_filter && !filters) continue;
        tb_printf(t, "%s\"%s\": %zu", first ? "" : ", ", aria_drop_name(r), s->dropped[r]);
        first = 0;
    }
    tb_printf(t, "},\n");
    if (filters) {
        tb_printf(t, "    \"filter_failures\": {");
        for (int f = 0; f < ARIA_N_FILTERS; f++)
            tb_printf(t, "%s\"%s\": %zu", f ? ", " : "", aria_filter_name(f), s->filter_failures[f]);
        tb_printf(t, "},\n");
    }
    tb_printf(t, "    \"groups\": %zu,\n    \"val_groups\": %zu,\n", s->groups, s->val_groups);
    tb_printf(t, "    \"ids_sequences\": %zu,\n    \"train_files\": %zu,\n    \"val_files\": %zu,\n"
                 "    \"train_sequences\": %" PRIu64 ",\n    \"val_sequences\": %" PRIu64 ",\n"
                 "    \"tokens\": %" PRIu64 "\n  }\n",
              s->ids_sequences, s->train_files, s->val_files, s->train_sequences, s->val_sequences, s->tokens);
}

/* A JSON string of a + b, escaped. */
static void tb_json_string(textbuf *t, const char *a, const char *b) {
    tb_printf(t, "\"");
    for (int k = 0; k < 2; k++)
        for (const unsigned char *c = (const unsigned char *)(k ? b : a); *c; c++) {
            if (*c == '"' || *c == '\\') tb_printf(t, "\\%c", *c);
            else if (*c < 0x20) tb_printf(t, "\\u%04x", *c);
            else tb_printf(t, "%c", *c);
        }
    tb_printf(t, "\"");
}

/* The shortest of %.15g / %.17g that reads back as the same double. */
static void fmt_double(char *buf, size_t cap, double v) {
    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

/* What the trainer checks a --condition-on model against (the model's
   path as given, its size and content hash). */
typedef struct {
    int dim;
    size_t rows, embedded;
    const char *model_path, *model_id;
    uint64_t model_bytes;
} manifest_emb;

static int write_manifest(const char *dir, const aria_dataset_opts *o, int vocab,
                          const shard_writer *train, const shard_writer *val,
                          const aria_dataset_summary *s, const manifest_emb *me, aria_error *err) {
    textbuf t = {0};
    char frac[40];
    fmt_double(frac, sizeof frac, o->val_fraction);
    tb_printf(&t, "{\n  \"format\": \"aria-shards\",\n  \"version\": %d,\n  \"seq_len\": %d,\n"
                  "  \"vocab_size\": %d,\n  \"tokenizer\": \"abs\",\n  \"sep_sequences\": %s,\n"
                  "  \"epochs\": %d,\n  \"seed\": %" PRIu64 ",\n  \"val_fraction\": %s,\n"
                  "  \"filters\": \"%s\",\n  \"shard_sequences\": %d,\n  \"group_by\": ",
              ARIA_SHARD_VERSION, o->seq_len, vocab, o->sep_sequences ? "true" : "false", o->epochs,
              o->seed, frac, o->filters ? "default" : "none", ARIA_SHARD_SEQUENCES);
    static const char *const modes[] = {"auto", "dir", "regex:", "none"};
    int gm = o->group_by >= ARIA_GROUP_AUTO && o->group_by <= ARIA_GROUP_NONE ? (int)o->group_by : 0;
    tb_json_string(&t, modes[gm], gm == ARIA_GROUP_REGEX && o->group_pattern ? o->group_pattern : "");
    tb_printf(&t, ",\n");
    if (o->drop_restrikes) tb_printf(&t, "  \"drop_restrikes_ms\": %d,\n", o->restrike_ms);
    manifest_split(&t, "train", train, o->epochs);
    manifest_split(&t, "val", val, 1);
    if (me) {
        tb_printf(&t, "  \"embeddings\": {\"file\": \"embeddings.npy\", \"rows\": \"<split>-e<epoch>.rows\", "
                      "\"emb_size\": %d, \"files\": %zu, \"embedded\": %zu,\n    \"model\": ",
                  me->dim, me->rows, me->embedded);
        tb_json_string(&t, me->model_path, "");
        tb_printf(&t, ", \"model_bytes\": %" PRIu64 ", \"model_hash\": ", me->model_bytes);
        tb_json_string(&t, me->model_id, "");
        tb_printf(&t, "},\n");
    }
    manifest_summary(&t, s, o->filters);
    tb_printf(&t, "}\n");
    if (t.oom) {
        free(t.p);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    aria_error e2 = {{0}};
    int rc = aria_write_file_atomic(path, t.p, t.n, &e2);
    free(t.p);
    return rc ? aria_fail(err, rc, "%s: %s", path, e2.msg) : ARIA_OK;
}

/* FNV-1a (64 bits) of a file's bytes, read in blocks: the identity of an
   embedding model's file in the manifest. */
int aria_file_hash(const char *path, char *out, size_t cap, uint64_t *bytes, aria_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return aria_fail(err, ARIA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = 1469598103934665603ull, n = 0;
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++) h = (h ^ buf[i]) * 1099511628211ull;
        n += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return aria_fail(err, ARIA_ERR_IO, "%s: read error", path);
    snprintf(out, cap, "fnv1a64:%016" PRIx64, h);
    if (bytes) *bytes = n;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Build                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct {
    const aria_dataset_opts *o;
    aria_tokenizer *tk;
    int jobs;
    strvec paths;
    scan_result *scan;
    idseqs ids;
    item *items;
    size_t n_items;
    shard_writer *writers; /* epochs train writers, then one val writer */
    /* with an embedding model: a row per kept MIDI file (item order) */
    float *emb;
    unsigned char *emb_ok;
    size_t n_emb;
    int emb_dim;
    char **emb_why; /* why a file has no embedding */
    char model_id[64];
    uint64_t model_bytes;
} build_state;

static void build_state_free(build_state *b) {
    if (b->writers)
        for (int e = 0; e <= b->o->epochs; e++) sw_free(&b->writers[e]);
    free(b->writers);
    free(b->emb);
    free(b->emb_ok);
    for (size_t i = 0; b->emb_why && i < b->n_emb; i++) free(b->emb_why[i]);
    free(b->emb_why);
    free(b->items);
    idseqs_free(&b->ids);
    free(b->scan);
    strvec_free(&b->paths);
    aria_tokenizer_free(b->tk);
}

static int check_opts(const aria_dataset_opts *o, aria_error *err) {
    if (o->seq_len < 2 || o->seq_len > MAX_SEQ_LEN)
        return aria_fail(err, ARIA_ERR_ARG, "seq_len %d is outside 2..%d", o->seq_len, MAX_SEQ_LEN);
    if (o->epochs < 1 || o->epochs > 100000)
        return aria_fail(err, ARIA_ERR_ARG, "epochs %d is outside 1..100000", o->epochs);
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return aria_fail(err, ARIA_ERR_ARG, "val_fraction %g is outside [0, 1)", o->val_fraction);
    if (o->embed_model && !o->sep_sequences)
        return aria_fail(err, ARIA_ERR_ARG, "per-file embeddings need sep_sequences (a sequence must belong to one file)");
    if (o->embed_model && aria_output_dim(o->embed_model, ARIA_OUT_EMB) <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "%s: not an embedding model (no emb_head.weight)",
                         o->embed_model_path ? o->embed_model_path : "the embedding model");
    return ARIA_OK;
}

/* Scans the MIDI files in parallel, then dedups in path order; kept files
   become items. */
static int scan_inputs(build_state *b, aria_dataset_summary *sum, aria_error *err) {
    size_t n = b->paths.n;
    sum->files_seen = n;
    b->scan = calloc(n ? n : 1, sizeof *b->scan);
    if (!b->scan) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    scan_job job = {b->paths.v, b->scan, b->o->filters, b->o->strict, tokenizer_ignore_mask(b->tk)};
    size_t step = (size_t)b->jobs * 64;
    for (size_t base = 0; base < n; base += step) { /* in slices, for progress */
        size_t k = n - base < step ? n - base : step;
        job.paths = b->paths.v + base;
        job.res = b->scan + base;
        tasks_parallel_for(k, b->jobs, scan_one, &job);
        if (b->o->progress) b->o->progress(b->o->progress_ctx, "scan", base + k, n);
    }
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < ARIA_N_FILTERS; f++) sum->filter_failures[f] += b->scan[i].fail_mask >> f & 1;
    return ARIA_OK;
}

typedef struct {
    uint64_t h0, h1;
    size_t i;
} hash_at;

static int cmp_hash_at(const void *a, const void *b) {
    const hash_at *x = a, *y = b;
    if (x->h0 != y->h0) return x->h0 < y->h0 ? -1 : 1;
    if (x->h1 != y->h1) return x->h1 < y->h1 ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Marks every file whose hash an earlier (in path order) file has. */
static int mark_duplicates(build_state *b, aria_error *err) {
    size_t n = b->paths.n, m = 0;
    hash_at *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (b->scan[i].reason < 0) h[m++] = (hash_at){b->scan[i].hash[0], b->scan[i].hash[1], i};
    qsort(h, m, sizeof *h, cmp_hash_at);
    size_t orig = 0; /* the first of a run of equal hashes: the earliest path */
    for (size_t k = 1; k < m; k++) {
        if (h[k].h0 != h[k - 1].h0 || h[k].h1 != h[k - 1].h1) {
            orig = k;
            continue;
        }
        b->scan[h[k].i].reason = ARIA_DROP_DUPLICATE;
        b->scan[h[k].i].dup_of = h[orig].i;
    }
    free(h);
    return ARIA_OK;
}

static int make_items(build_state *b, aria_dataset_summary *sum, aria_error *err) {
    size_t n = b->paths.n, n_groups = 0;
    b->items = calloc(n + b->ids.n + 1, sizeof *b->items);
    /* grouped over every file found, so that a dropped file still joins
       the files it links (a group number per path, then renumbered over
       the kept ones) */
    size_t *group = malloc((n ? n : 1) * sizeof *group), *renum = malloc((n ? n : 1) * sizeof *renum);
    if (!b->items || !group || !renum) {
        free(group);
        free(renum);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    int grc = aria_group_paths((const char *const *)b->paths.v, n, b->o->group_by, b->o->group_pattern, group,
                               &n_groups, err);
    if (grc) {
        free(group);
        free(renum);
        return grc;
    }
    for (size_t g = 0; g < n_groups; g++) renum[g] = SIZE_MAX;
    n_groups = 0;
    for (size_t i = 0; i < n; i++) {
        const scan_result *r = &b->scan[i];
        if (r->reason >= 0) {
            sum->dropped[r->reason]++;
            continue;
        }
        item *it = &b->items[b->n_items];
        if (renum[group[i]] == SIZE_MAX) renum[group[i]] = n_groups++;
        *it = (item){.path = b->paths.v[i], .hash = {r->hash[0], r->hash[1]}, .index = b->n_items,
                     .group = renum[group[i]]};
        b->n_items++;
    }
    free(group);
    free(renum);
    sum->kept = b->n_items;
    for (size_t i = 0; i < b->ids.n; i++) {
        item *it = &b->items[b->n_items];
        *it = (item){.ids = &b->ids.v[i], .index = b->n_items, .group = n_groups++};
        it->hash[0] = hash_ids(&b->ids.v[i], 1);
        it->hash[1] = hash_ids(&b->ids.v[i], 2);
        b->n_items++;
    }
    if (b->n_items == 0)
        return aria_fail(err, ARIA_ERR_EMPTY, "nothing to build: %zu MIDI file%s found, none kept, and no ids input",
                         n, n == 1 ? "" : "s");
    sum->groups = n_groups;
    if (assign_split(b->items, b->n_items, n_groups, b->o->val_fraction, b->o->seed, &sum->val_groups))
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    return ARIA_OK;
}

/* <split>-e<epoch>.rows: "ARIAROWS", u64 count, an int32 embedding row
   per sequence (-1: its file has no embedding). */
static int write_rows(const build_state *b, shard_writer *w, aria_error *err) {
    size_t size = 16 + w->n_rows * 4;
    uint8_t *buf = malloc(size);
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    memcpy(buf, "ARIAROWS", 8);
    put_u64(buf + 8, w->n_rows);
    for (size_t i = 0; i < w->n_rows; i++) {
        int32_t r = w->rows[i];
        if (r >= 0 && ((size_t)r >= b->n_emb || !b->emb_ok[r])) r = -1;
        put_u32(buf + 16 + 4 * i, (uint32_t)r);
    }
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s-e%d.rows", w->dir, w->split, w->epoch);
    aria_error e2 = {{0}};
    int rc = aria_write_file_atomic(path, buf, size, &e2);
    free(buf);
    free(w->rows);
    w->rows = NULL;
    w->n_rows = w->cap_rows = 0;
    return rc ? aria_fail(err, rc, "%s: %s", path, e2.msg) : ARIA_OK;
}

/* Embeds every kept MIDI file as `aria embed` does (one at a time: the
   model's own threads do the work). A file that cannot be embedded (not
   piano-only, ...) keeps a zero row that no sequence uses. */
static int embed_items(build_state *b, aria_dataset_summary *sum, aria_error *err) {
    const aria_dataset_opts *o = b->o;
    size_t n = 0;
    while (n < b->n_items && b->items[n].path) n++;
    int E = aria_output_dim(o->embed_model, ARIA_OUT_EMB);
    b->emb = calloc((n ? n : 1) * (size_t)E, sizeof *b->emb);
    b->emb_ok = calloc(n ? n : 1, 1);
    b->emb_why = calloc(n ? n : 1, sizeof *b->emb_why);
    if (!b->emb || !b->emb_ok || !b->emb_why) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    b->n_emb = n;
    b->emb_dim = E;
    for (size_t i = 0; i < n; i++) {
        aria_midi m = {0};
        aria_score sc = {0};
        aria_error e = {{0}};
        int rc = aria_midi_read_file(&m, b->items[i].path, &e);
        if (rc == ARIA_OK) rc = aria_score_from_midi(&sc, &m, &e);
        if (rc == ARIA_OK) rc = aria_embed_score(o->embed_model, b->tk, &sc, b->emb + i * (size_t)E, NULL, &e);
        aria_score_free(&sc);
        aria_midi_free(&m);
        if (rc == ARIA_ERR_NOMEM) return aria_fail(err, rc, "%s: out of memory", b->items[i].path);
        if (rc == ARIA_OK) {
            b->emb_ok[i] = 1;
            sum->embedded++;
        } else {
            memset(b->emb + i * (size_t)E, 0, (size_t)E * sizeof *b->emb);
            b->emb_why[i] = strdup(e.msg);
        }
        if (o->progress && ((i + 1) % 8 == 0 || i + 1 == n)) o->progress(o->progress_ctx, "embed", i + 1, n);
    }
    return ARIA_OK;
}

/* embeddings.npy and embeddings.txt (row, path, and why a row is unused). */
static int write_embeddings(const build_state *b, const char *dir, aria_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/embeddings.npy", dir);
    int rc = aria_npy_write_f32(path, b->emb, b->n_emb, (size_t)b->emb_dim, err);
    if (rc) return rc;
    textbuf t = {0};
    tb_printf(&t, "row\tpath\tnot embedded because\n");
    for (size_t i = 0; i < b->n_emb; i++) {
        size_t start = t.n;
        tb_printf(&t, "%zu\t%s\t%s", i, b->items[i].path, b->emb_ok[i] ? "" : b->emb_why[i] ? b->emb_why[i] : "?");
        for (size_t c = start; !t.oom && c < t.n; c++)
            if (t.p[c] == '\n') t.p[c] = ' ';
        tb_printf(&t, "\n");
    }
    if (t.oom) {
        free(t.p);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    snprintf(path, sizeof path, "%s/embeddings.txt", dir);
    rc = aria_write_file_atomic(path, t.p, t.n, err);
    free(t.p);
    return rc;
}

/* Tokenizes every epoch of the training split and epoch 0 of validation. */
static int write_epochs(build_state *b, const char *out_dir, aria_dataset_summary *sum, aria_error *err) {
    const aria_dataset_opts *o = b->o;
    int vocab = aria_tok_vocab_size(b->tk);
    b->writers = calloc((size_t)o->epochs + 1, sizeof *b->writers);
    item **order = malloc(b->n_items * sizeof *order);
    if (!b->writers || !order) {
        free(order);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->n_items; i++) {
        sum->val_files += b->items[i].val;
        sum->train_files += !b->items[i].val;
    }
    int rc = ARIA_OK;
    for (int e = 0; rc == ARIA_OK && e <= o->epochs; e++) {
        int val = e == o->epochs; /* the last writer is validation's */
        shard_writer *w = &b->writers[e];
        *w = (shard_writer){.dir = out_dir, .split = val ? "val" : "train", .epoch = val ? 0 : e,
                            .seq_len = o->seq_len, .vocab = vocab, .track_rows = b->emb != NULL};
        size_t n = 0;
        for (size_t i = 0; i < b->n_items; i++) /* item order, then shuffled */
            if (b->items[i].val == val) order[n++] = &b->items[i];
        rc = build_epoch(b->tk, o, b->jobs, order, n, w->epoch, w, err);
        if (rc == ARIA_OK && b->emb) rc = write_rows(b, w, err);
        free(w->buf); /* up to a shard's worth; the next epoch starts afresh */
        w->buf = NULL;
        w->buf_seqs = 0;
        if (val) sum->val_sequences += w->total_seqs;
        else sum->train_sequences += w->total_seqs;
        sum->tokens += w->tokens;
    }
    free(order);
    return rc;
}

/* val-files.txt: the MIDI files held out for validation, one path per
   line in the order of the inputs (ids lines are not listed), so that a
   user can prompt a trained model with music it has not seen. */
static int write_val_list(const build_state *b, const char *dir, aria_error *err) {
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < b->n_items; i++)
        if (b->items[i].val && b->items[i].path) cap += strlen(b->items[i].path) + 1;
    char *buf = malloc(cap);
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n_items; i++)
        if (b->items[i].val && b->items[i].path) len += (size_t)snprintf(buf + len, cap - len, "%s\n", b->items[i].path);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/val-files.txt", dir);
    int rc = aria_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* The detail of a dropped file: the scan's, or the original of a duplicate. */
static const char *drop_detail(const build_state *b, size_t i, char *buf, size_t cap) {
    const scan_result *r = &b->scan[i];
    if (r->reason == ARIA_DROP_DUPLICATE) {
        snprintf(buf, cap, "same music as %s", b->paths.v[r->dup_of]);
        return buf;
    }
    return r->detail;
}

/* Every damaged file to opts->on_damaged and every dropped file to
   opts->on_drop, in path order. */
static void report_drops(const build_state *b) {
    char buf[PATH_CAP + 32];
    for (size_t i = 0; b->o->on_damaged && i < b->paths.n; i++)
        if (b->scan[i].n_warnings)
            b->o->on_damaged(b->o->progress_ctx, b->paths.v[i], b->scan[i].n_warnings, b->scan[i].warning);
    for (size_t i = 0; b->o->on_drop && i < b->paths.n; i++)
        if (b->scan[i].reason >= 0)
            b->o->on_drop(b->o->progress_ctx, b->paths.v[i], b->scan[i].reason, drop_detail(b, i, buf, sizeof buf));
}

/* dropped.tsv: path, reason, detail for every file left out, in path
   order (tabs and newlines in a field become spaces). */
static int write_drop_list(const build_state *b, const char *dir, aria_error *err) {
    textbuf t = {0};
    char buf[PATH_CAP + 32];
    tb_printf(&t, "path\treason\tdetail\n");
    for (size_t i = 0; i < b->paths.n; i++) {
        if (b->scan[i].reason < 0) continue;
        const char *f[3] = {b->paths.v[i], aria_drop_name(b->scan[i].reason), drop_detail(b, i, buf, sizeof buf)};
        for (int k = 0; k < 3; k++) {
            size_t start = t.n;
            tb_printf(&t, "%s%s", f[k], k < 2 ? "\t" : "\n");
            for (size_t c = start; !t.oom && c + 1 < t.n; c++)
                if (t.p[c] == '\t' || t.p[c] == '\n') t.p[c] = ' ';
        }
    }
    if (t.oom) {
        free(t.p);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/dropped.tsv", dir);
    int rc = aria_write_file_atomic(path, t.p, t.n, err);
    free(t.p);
    return rc;
}

int aria_dataset_build(const char *out_dir, const char *const *inputs, size_t n_inputs,
                       const char *const *ids_files, size_t n_ids_files,
                       const aria_dataset_opts *opts, aria_dataset_summary *summary,
                       aria_error *err) {
    aria_dataset_opts o = opts ? *opts : aria_dataset_defaults();
    aria_dataset_summary local;
    aria_dataset_summary *sum = summary ? summary : &local;
    memset(sum, 0, sizeof *sum);
    int rc = check_opts(&o, err);
    if (rc) return rc;
    build_state b = {.o = &o, .jobs = tasks_jobs(o.jobs)};
    b.tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    if (!b.tk) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    rc = collect_midi(inputs, n_inputs, &b.paths, err);
    for (size_t i = 0; rc == ARIA_OK && i < n_ids_files; i++)
        rc = read_ids_file(ids_files[i], aria_tok_vocab_size(b.tk), &b.ids, err);
    sum->ids_sequences = b.ids.n;
    if (rc == ARIA_OK) rc = refuse_finished(out_dir, o.overwrite, err);
    if (rc == ARIA_OK) rc = scan_inputs(&b, sum, err);
    if (rc == ARIA_OK) rc = mark_duplicates(&b, err);
    if (rc == ARIA_OK) report_drops(&b);
    if (rc == ARIA_OK) rc = make_items(&b, sum, err);
    if (rc == ARIA_OK && o.embed_model && o.embed_model_path)
        rc = aria_file_hash(o.embed_model_path, b.model_id, sizeof b.model_id, &b.model_bytes, err);
    if (rc == ARIA_OK && o.embed_model) rc = embed_items(&b, sum, err);
    /* the directory is touched only once there is something to write */
    if (rc == ARIA_OK) rc = prepare_out_dir(out_dir, o.overwrite, err);
    if (rc == ARIA_OK) rc = write_epochs(&b, out_dir, sum, err);
    if (rc == ARIA_OK) rc = write_val_list(&b, out_dir, err);
    if (rc == ARIA_OK) rc = write_drop_list(&b, out_dir, err);
    if (rc == ARIA_OK && b.emb) rc = write_embeddings(&b, out_dir, err);
    manifest_emb me = {b.emb_dim, b.n_emb, sum->embedded, o.embed_model_path ? o.embed_model_path : "",
                       b.model_id, b.model_bytes};
    if (rc == ARIA_OK)
        rc = write_manifest(out_dir, &o, aria_tok_vocab_size(b.tk), b.writers, &b.writers[o.epochs], sum,
                            b.emb ? &me : NULL, err);
    build_state_free(&b);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Reader                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct {
    char *path;
    const uint8_t *map;
    size_t map_len;
    uint64_t n_seqs, first; /* first: sequences in earlier shards of the epoch */
} ds_shard;

typedef struct {
    ds_shard *shards;
    size_t n_shards;
    uint64_t total;
    int32_t *rows; /* with embeddings: each sequence's row, -1 none */
} ds_epoch;

struct aria_dataset {
    int seq_len, vocab, n_epochs;
    ds_epoch *epochs;
    /* per-file embeddings (a dataset built with an embedding model) */
    float *emb;
    size_t emb_rows;
    int emb_dim;
    char emb_model[256], emb_hash[64];
};

void aria_dataset_close(aria_dataset *d) {
    if (!d) return;
    for (int e = 0; e < d->n_epochs; e++) {
        for (size_t k = 0; k < d->epochs[e].n_shards; k++) {
            ds_shard *s = &d->epochs[e].shards[k];
            if (s->map) munmap((void *)s->map, s->map_len);
            free(s->path);
        }
        free(d->epochs[e].shards);
        free(d->epochs[e].rows);
    }
    free(d->epochs);
    free(d->emb);
    free(d);
}

#define REBUILD "; rebuild the dataset with `aria dataset --force`"

/* Maps one shard and checks its header against what the manifest says. */
static int open_shard(ds_shard *s, const aria_dataset *d, aria_error *err) {
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aria_fail(err, ARIA_ERR_IO, "%s: cannot open: %s" REBUILD, s->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return aria_fail(err, ARIA_ERR_IO, "%s: not a regular file" REBUILD, s->path);
    }
    size_t len = (size_t)st.st_size;
    if (len < ARIA_SHARD_HEADER_BYTES) {
        close(fd);
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: %zu bytes, too short for a shard header" REBUILD, s->path, len);
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return aria_fail(err, ARIA_ERR_IO, "%s: cannot map: %s", s->path, strerror(errno));
    s->map = m;
    s->map_len = len;
    const uint8_t *h = m;
    if (memcmp(h, ARIA_SHARD_MAGIC, 8) != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: not an aria token shard (bad magic)" REBUILD, s->path);
    uint32_t version = get_u32(h + 8), seq_len = get_u32(h + 12), vocab = get_u32(h + 24);
    uint64_t n = get_u64(h + 16);
    if (version != ARIA_SHARD_VERSION)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: shard format version %u, this program reads version %d" REBUILD,
                         s->path, version, ARIA_SHARD_VERSION);
    if (seq_len != (uint32_t)d->seq_len || vocab != (uint32_t)d->vocab)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: seq_len %u and vocab_size %u, the manifest says %d and %d "
                         "(files of different builds)" REBUILD, s->path, seq_len, vocab, d->seq_len, d->vocab);
    if (n != s->n_seqs)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: %" PRIu64 " sequences, the manifest says %" PRIu64 REBUILD,
                         s->path, n, s->n_seqs);
    uint64_t want = ARIA_SHARD_HEADER_BYTES + n * (uint64_t)seq_len * 2;
    if (n > (UINT64_MAX - ARIA_SHARD_HEADER_BYTES) / 2 / seq_len || want != (uint64_t)len)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: %zu bytes, %" PRIu64 " expected for %" PRIu64
                         " sequences of %u ids (truncated?)" REBUILD, s->path, len, want, n, seq_len);
    return ARIA_OK;
}

/* Reads the shard list of one epoch: [[name, n_sequences], ...]. */
static int open_epoch(ds_epoch *ep, const json_value *list, const char *dir, const char *mpath,
                      const aria_dataset *d, aria_error *err) {
    if (json_type_of(list) != JSON_ARRAY)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: an epoch is not a list of shards" REBUILD, mpath);
    size_t n = json_len(list);
    ep->shards = calloc(n ? n : 1, sizeof *ep->shards);
    if (!ep->shards) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) {
        const json_value *e = json_at(list, k);
        const char *name = json_string(json_at(e, 0), NULL);
        const json_value *cnt = json_at(e, 1);
        if (json_len(e) != 2 || !name || !*name || strchr(name, '/') || !strcmp(name, "..") ||
            !json_is_int(cnt) || json_int(cnt) < 0)
            return aria_fail(err, ARIA_ERR_FORMAT, "%s: shard entry %zu is not [\"file name\", sequences]" REBUILD,
                             mpath, k);
        ds_shard *s = &ep->shards[ep->n_shards++];
        s->n_seqs = (uint64_t)json_int(cnt);
        s->first = ep->total;
        size_t plen = strlen(dir) + strlen(name) + 2;
        if (!(s->path = malloc(plen))) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        snprintf(s->path, plen, "%s/%s", dir, name);
        int rc = open_shard(s, d, err);
        if (rc) return rc;
        ep->total += s->n_seqs;
    }
    return ARIA_OK;
}

static int read_manifest_header(aria_dataset *d, const json_value *root, const char *mpath, aria_error *err) {
    const char *fmt = json_string(json_get(root, "format"), NULL);
    if (!fmt || strcmp(fmt, "aria-shards") != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: not an aria dataset manifest (format is not \"aria-shards\")"
                         REBUILD, mpath);
    int64_t version = json_int(json_get(root, "version"));
    if (version != ARIA_SHARD_VERSION)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: dataset version %lld, this program reads version %d" REBUILD,
                         mpath, (long long)version, ARIA_SHARD_VERSION);
    int64_t seq_len = json_int(json_get(root, "seq_len")), vocab = json_int(json_get(root, "vocab_size"));
    if (seq_len < 2 || seq_len > MAX_SEQ_LEN || vocab < 1 || vocab > 65536)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: seq_len %lld or vocab_size %lld out of range" REBUILD, mpath,
                         (long long)seq_len, (long long)vocab);
    d->seq_len = (int)seq_len;
    d->vocab = (int)vocab;
    return ARIA_OK;
}

/* The rows file of one epoch: its count must be the epoch's sequences,
   every row -1 or inside embeddings.npy. */
static int read_rows(ds_epoch *ep, const aria_dataset *d, const char *dir, const char *split, int epoch,
                     aria_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s-e%d.rows", dir, split, epoch);
    uint8_t *buf;
    size_t len;
    aria_error e2 = {{0}};
    int rc = aria_read_file(path, &buf, &len, &e2);
    if (rc) return aria_fail(err, rc, "%s: cannot read the embedding rows" REBUILD, path);
    uint64_t n = len >= 16 ? get_u64(buf + 8) : 0;
    if (len < 16 || memcmp(buf, "ARIAROWS", 8) != 0 || n != ep->total || len != 16 + 4 * n) {
        free(buf);
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: not the embedding rows of %" PRIu64 " sequences" REBUILD, path,
                         ep->total);
    }
    ep->rows = malloc((n ? n : 1) * sizeof *ep->rows);
    if (!ep->rows) {
        free(buf);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < n; i++) {
        int32_t r = (int32_t)get_u32(buf + 16 + 4 * i);
        if (r < -1 || (r >= 0 && (size_t)r >= d->emb_rows)) {
            free(buf);
            return aria_fail(err, ARIA_ERR_FORMAT, "%s: row %d of sequence %" PRIu64 " is outside embeddings.npy"
                             REBUILD, path, r, i);
        }
        ep->rows[i] = r;
    }
    free(buf);
    return ARIA_OK;
}

/* The "embeddings" object of the manifest: embeddings.npy and its model. */
static int read_embeddings(aria_dataset *d, const json_value *e, const char *dir, const char *mpath,
                           aria_error *err) {
    size_t l1 = 0, l2 = 0;
    const char *model = json_string(json_get(e, "model"), &l1), *hash = json_string(json_get(e, "model_hash"), &l2);
    int64_t dim = json_int(json_get(e, "emb_size"));
    if (!model || !hash || dim <= 0 || l1 >= sizeof d->emb_model || l2 >= sizeof d->emb_hash)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: a bad \"embeddings\" entry" REBUILD, mpath);
    memcpy(d->emb_model, model, l1);
    memcpy(d->emb_hash, hash, l2);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/embeddings.npy", dir);
    size_t rows, cols;
    aria_error e2 = {{0}};
    int rc = aria_npy_read_f32(path, &d->emb, &rows, &cols, &e2);
    if (rc) return aria_fail(err, rc, "%s: %s" REBUILD, path, e2.msg);
    if (cols != (size_t)dim)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: %zu columns, the manifest says emb_size %lld" REBUILD, path, cols,
                         (long long)dim);
    d->emb_rows = rows;
    d->emb_dim = (int)dim;
    return ARIA_OK;
}

int aria_dataset_emb_info(const aria_dataset *d, int *dim, const char **model, const char **model_hash) {
    if (!d || !d->emb) return 0;
    if (dim) *dim = d->emb_dim;
    if (model) *model = d->emb_model;
    if (model_hash) *model_hash = d->emb_hash;
    return 1;
}

const float *aria_dataset_embedding(const aria_dataset *d, int epoch, size_t index) {
    if (!d || !d->emb || epoch < 0 || epoch >= d->n_epochs || index >= d->epochs[epoch].total) return NULL;
    int32_t r = d->epochs[epoch].rows[index];
    return r < 0 ? NULL : d->emb + (size_t)r * d->emb_dim;
}

int aria_dataset_open(aria_dataset **out, const char *dir, const char *split, aria_error *err) {
    *out = NULL;
    if (!dir || !split || (strcmp(split, "train") != 0 && strcmp(split, "val") != 0))
        return aria_fail(err, ARIA_ERR_ARG, "split must be \"train\" or \"val\"");
    char mpath[PATH_CAP];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    if (access(mpath, F_OK) != 0)
        return aria_fail(err, ARIA_ERR_IO, "%s: no manifest.json: not a dataset, or its build did not finish; "
                         "build it with `aria dataset --out %s ...`", dir, dir);
    json_doc *doc = NULL;
    char jerr[400];
    if (json_parse_file(mpath, &doc, jerr, sizeof jerr) != ARIA_OK)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s" REBUILD, jerr);
    aria_dataset *d = calloc(1, sizeof *d);
    int rc = d ? read_manifest_header(d, json_root(doc), mpath, err) : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    const json_value *epochs = json_get(json_root(doc), split);
    if (rc == ARIA_OK && json_type_of(epochs) != JSON_ARRAY)
        rc = aria_fail(err, ARIA_ERR_FORMAT, "%s: no \"%s\" list of epochs" REBUILD, mpath, split);
    if (rc == ARIA_OK && !(d->epochs = calloc(json_len(epochs) + 1, sizeof *d->epochs)))
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t e = 0; rc == ARIA_OK && e < json_len(epochs); e++) {
        d->n_epochs++;
        rc = open_epoch(&d->epochs[e], json_at(epochs, e), dir, mpath, d, err);
    }
    const json_value *emb = json_get(json_root(doc), "embeddings");
    if (rc == ARIA_OK && emb) rc = read_embeddings(d, emb, dir, mpath, err);
    for (int e = 0; rc == ARIA_OK && emb && e < d->n_epochs; e++)
        rc = read_rows(&d->epochs[e], d, dir, split, e, err);
    json_doc_free(doc);
    if (rc) {
        aria_dataset_close(d);
        return rc;
    }
    *out = d;
    return ARIA_OK;
}

int aria_dataset_seq_len(const aria_dataset *d) { return d ? d->seq_len : 0; }
int aria_dataset_epochs(const aria_dataset *d) { return d ? d->n_epochs : 0; }

size_t aria_dataset_size(const aria_dataset *d, int epoch) {
    if (!d || epoch < 0 || epoch >= d->n_epochs) return 0;
    return (size_t)d->epochs[epoch].total;
}

int aria_dataset_get(const aria_dataset *d, int epoch, size_t index, int32_t *out, aria_error *err) {
    if (!d || epoch < 0 || epoch >= d->n_epochs)
        return aria_fail(err, ARIA_ERR_ARG, "epoch %d is outside 0..%d", epoch, d ? d->n_epochs - 1 : -1);
    const ds_epoch *ep = &d->epochs[epoch];
    if (index >= ep->total)
        return aria_fail(err, ARIA_ERR_ARG, "sequence %zu is outside epoch %d's %" PRIu64, index, epoch, ep->total);
    size_t lo = 0, hi = ep->n_shards; /* last shard whose first <= index */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ep->shards[mid].first <= index) lo = mid;
        else hi = mid;
    }
    const ds_shard *s = &ep->shards[lo];
    const uint8_t *p = s->map + ARIA_SHARD_HEADER_BYTES + (index - s->first) * (size_t)d->seq_len * 2;
    for (int i = 0; i < d->seq_len; i++) {
        int id = p[2 * i] | p[2 * i + 1] << 8;
        if (id >= d->vocab)
            return aria_fail(err, ARIA_ERR_FORMAT, "%s: sequence %" PRIu64 " holds id %d, outside the vocabulary "
                             "(%d ids)" REBUILD, s->path, index - s->first, id, d->vocab);
        out[i] = id;
    }
    return ARIA_OK;
}
