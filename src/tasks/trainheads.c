/*
 * trainheads.c - the training runs of the objectives that read one head
 * at one position per sequence (aria train --objective contrastive |
 * classify; spec 3.4, 3.5). The run directory, checkpoints, resume, the
 * log, the schedule and data parallelism are those of the next-token run
 * (trainloop.c, trainrun.h); what differs is the data and the loss.
 *
 * Contrastive: MIDI files (folders walked), read once into scores. Each
 * step takes `batch` files in a seeded per-epoch order; each gives two
 * views: `randint(100, 650)` notes from `randint(0, n - 100)`, metadata
 * cleared, tokenized without <D>, cut or <P>-padded to seq_len with <E>
 * forced last when it was cut off, optionally augmented (the LM run's
 * pitch/velocity/tempo draws). The embedding is emb_head at <E>; the loss
 * the symmetric NT-Xent over the global batch. Each view's draws come from
 * (seed, file-sequence number, view), so a resumed run repeats the same
 * views. Under MPI each process embeds its slice of the files, the
 * embeddings are summed into one [B][dim] pair on every process (an
 * all-gather), every process computes the same loss and back-propagates
 * its own rows' gradients.
 *
 * Classify: the labels CSV's files for the task, split by group (folds or
 * a held-out fraction), cut into chunks of notes_per_chunk notes
 * (aria_tok_embedding_chunks: piano only, <E> last, at most seq_len
 * tokens), each chunk labelled with its file's class. Steps draw chunks in
 * a seeded per-epoch order; the loss is the class_head cross-entropy at
 * <E>. Validation is per file: chunk probabilities weighted by their token
 * counts, summed, argmax; accuracy and macro-F1 go to log.jsonl.
 *
 * Files that cannot be used (unreadable, no notes, not piano for
 * classify) are skipped, counted on the log's first line and listed in
 * RUN/skipped.txt.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aria.h"
#include "base/json.h"
#include "base/util.h"
#include "dist/dist.h"
#include "tasks/trainrun.h"

#define VIEW_MIN_NOTES 100
#define VIEW_MAX_NOTES 650
#define DEFAULT_EMB 512

/* ---------------------------------------------------------------------- */
/* Lists of paths                                                         */
/* ---------------------------------------------------------------------- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static int sl_push(strlist *l, const char *s) {
    if (ARIA_GROW(l->v, l->cap, l->n + 1)) return -1;
    l->v[l->n] = strdup(s);
    if (!l->v[l->n]) return -1;
    l->n++;
    return 0;
}

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_midi_name(const char *name) {
    size_t n = strlen(name);
    return (n > 4 && !strcasecmp(name + n - 4, ".mid")) || (n > 5 && !strcasecmp(name + n - 5, ".midi"));
}

/* Every *.mid / *.midi under dir, sorted, symbolic links to folders not
   followed. */
static int walk(const char *dir, strlist *out, aria_error *err) {
    DIR *d = opendir(dir);
    if (!d) return aria_fail(err, ARIA_ERR_IO, "%s: %s", dir, strerror(errno));
    strlist here = {0};
    struct dirent *e;
    int rc = ARIA_OK;
    while ((e = readdir(d)) && !rc) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (sl_push(&here, p)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    closedir(d);
    if (here.n) qsort(here.v, here.n, sizeof *here.v, cmp_str);
    for (size_t i = 0; i < here.n && !rc; i++) {
        struct stat st;
        if (lstat(here.v[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(here.v[i], out, err);
        else if (is_midi_name(here.v[i]) && sl_push(out, here.v[i]))
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    sl_free(&here);
    return rc;
}

static int expand_inputs(const char *const *in, size_t n, strlist *out, aria_error *err) {
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(in[i], &st) != 0) return aria_fail(err, ARIA_ERR_IO, "%s: %s", in[i], strerror(errno));
        int rc = S_ISDIR(st.st_mode) ? walk(in[i], out, err) : sl_push(out, in[i]) ? ARIA_ERR_NOMEM : ARIA_OK;
        if (rc == ARIA_ERR_NOMEM && !S_ISDIR(st.st_mode)) return aria_fail(err, rc, "out of memory");
        if (rc) return rc;
    }
    return ARIA_OK;
}

/* One path per line (empty lines and lines starting with # skipped). */
static int read_list(const char *path, strlist *out, aria_error *err) {
    uint8_t *buf;
    size_t len;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return trainrun_name_file(err, rc, path);
    for (size_t i = 0; i < len && !rc;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        size_t end = e;
        while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == ' ')) end--;
        if (end > i && buf[i] != '#') {
            char *s = strndup((const char *)buf + i, end - i);
            if (!s || sl_push(out, s)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            free(s);
        }
        i = e + 1;
    }
    free(buf);
    return rc;
}

static int write_list(const char *dir, const char *name, const strlist *l, aria_error *err) {
    size_t len = 0;
    for (size_t i = 0; i < l->n; i++) len += strlen(l->v[i]) + 1;
    char *buf = malloc(len + 1), *p = buf, path[4096];
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < l->n; i++) p += sprintf(p, "%s\n", l->v[i]);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = aria_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Contrastive data: scores and views                                     */
/* ---------------------------------------------------------------------- */

typedef struct {
    aria_score *s;
    char **path;
    size_t n;
} score_set;

static void scores_free(score_set *ss) {
    for (size_t i = 0; i < ss->n; i++) {
        aria_score_free(&ss->s[i]);
        free(ss->path[i]);
    }
    free(ss->s);
    free(ss->path);
    memset(ss, 0, sizeof *ss);
}

/* Reads every file; one that cannot be read, has no notes or cannot be
   tokenized goes to `skipped` with its reason. */
static int load_scores(const aria_tokenizer *tk, const strlist *files, score_set *out, strlist *skipped,
                       aria_error *err) {
    out->s = calloc(files->n ? files->n : 1, sizeof *out->s);
    out->path = calloc(files->n ? files->n : 1, sizeof *out->path);
    if (!out->s || !out->path) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < files->n; i++) {
        aria_midi mid = {0};
        aria_score sc = {0};
        aria_error e = {{0}};
        int rc = aria_midi_read_file(&mid, files->v[i], &e);
        if (!rc) rc = aria_score_from_midi(&sc, &mid, &e);
        aria_midi_free(&mid);
        if (!rc && sc.n_notes == 0) rc = aria_fail(&e, ARIA_ERR_EMPTY, "no notes");
        if (!rc) { /* the whole file must tokenize (a slice of it then does too, but for drum-only slices) */
            aria_tokenize_opts to = {1, 0, 1};
            aria_token *toks;
            size_t nt;
            aria_rng r;
            aria_rng_seed(&r, 0);
            rc = aria_tokenize(tk, &sc, &to, &r, &toks, &nt, &e);
            if (!rc) free(toks);
        }
        if (rc) {
            aria_score_free(&sc);
            char line[4600];
            snprintf(line, sizeof line, "%s\t%s", files->v[i], e.msg);
            if (sl_push(skipped, line)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            continue;
        }
        out->path[out->n] = strdup(files->v[i]);
        out->s[out->n++] = sc;
    }
    return ARIA_OK;
}

/* One view of a score into ids[0..T): a random slice of notes, tokenized
   as the reference's contrastive dataset does; *eos its <E> position. */
static int make_view(const aria_tokenizer *tk, const aria_score *s, aria_rng *r, int T, int augment, uint64_t seed,
                     long k, int32_t *ids, int *eos, aria_error *err) {
    size_t n = s->n_notes;
    size_t start = n > VIEW_MIN_NOTES ? (size_t)aria_rng_randint(r, 0, (int64_t)(n - VIEW_MIN_NOTES)) : 0;
    size_t len = (size_t)aria_rng_randint(r, VIEW_MIN_NOTES, VIEW_MAX_NOTES);
    aria_score view = *s; /* shares the arrays; only the note range differs */
    view.composer = view.form = view.genre = -1;
    view.notes = s->notes + start;
    view.n_notes = n - start < len ? n - start : len;
    aria_tokenize_opts to = {1, 0, 1};
    aria_token *toks;
    size_t nt;
    int rc = aria_tokenize(tk, &view, &to, r, &toks, &nt, err);
    if (rc == ARIA_ERR_EMPTY) /* a slice of ignored instruments only: the whole file instead */
        rc = aria_tokenize(tk, s, &to, r, &toks, &nt, err);
    if (rc) return rc;
    size_t keep = 0;
    for (size_t i = 0; i < nt; i++)
        if (!aria_tok_is(toks[i], ARIA_SP_DIM)) toks[keep++] = toks[i];
    if (keep > (size_t)T) keep = (size_t)T;
    aria_tok_encode(tk, toks, keep, ids);
    free(toks);
    for (size_t i = keep; i < (size_t)T; i++) ids[i] = ARIA_SP_PAD;
    if (augment && trainrun_augment(tk, ids, T, seed, k)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int at = -1;
    for (int i = 0; i < T && at < 0; i++)
        if (ids[i] == ARIA_SP_EOS) at = i;
    if (at < 0) { /* cut off: <E> forced last (after the last real token when padded) */
        at = T - 1;
        while (at > 0 && ids[at - 1] == ARIA_SP_PAD) at--;
        ids[at] = ARIA_SP_EOS;
    }
    *eos = at;
    return ARIA_OK;
}

static void view_rng(aria_rng *r, uint64_t seed, long k, int v) {
    aria_rng_seed(r, seed * 1000003u + (uint64_t)k * 2u + (uint64_t)v + 0x5eedu);
}

/* ---------------------------------------------------------------------- */
/* Classifier data: labelled chunks                                       */
/* ---------------------------------------------------------------------- */

typedef struct {
    int32_t *ids; /* len tokens, <E> last */
    int len;
    int file;     /* index into the run's file arrays */
} chunk;

typedef struct {
    chunk *c;
    size_t n, cap;
} chunk_list;

static void chunks_free(chunk_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->c[i].ids);
    free(l->c);
    memset(l, 0, sizeof *l);
}

/* The chunks of one file (aria_classify_score's chunking). */
static int file_chunks(const aria_tokenizer *tk, const char *path, int notes, int T, int max_chunks, int file,
                       chunk_list *out, aria_error *err) {
    aria_midi mid = {0};
    aria_score sc = {0};
    int rc = aria_midi_read_file(&mid, path, err);
    if (!rc) rc = aria_score_from_midi(&sc, &mid, err);
    aria_midi_free(&mid);
    aria_tok_chunk *ch = NULL;
    size_t nc = 0;
    aria_rng r;
    aria_rng_seed(&r, 0);
    if (!rc) rc = aria_tok_embedding_chunks(tk, &sc, notes, (size_t)T, &r, &ch, &nc, err);
    aria_score_free(&sc);
    size_t use = (max_chunks > 0 && (size_t)max_chunks < nc) ? (size_t)max_chunks : nc;
    for (size_t j = 0; j < use && !rc; j++) {
        size_t c = use == nc ? j : (size_t)(((double)j + 0.5) * (double)nc / (double)use);
        int len = (int)ch[c].eos_pos + 1;
        int32_t *ids = malloc((size_t)len * sizeof *ids);
        if (!ids || ARIA_GROW(out->c, out->cap, out->n + 1)) {
            free(ids);
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            break;
        }
        aria_tok_encode(tk, ch[c].toks, (size_t)len, ids);
        out->c[out->n++] = (chunk){ids, len, file};
    }
    aria_tok_chunks_free(ch, nc);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* run.json of these objectives                                           */
/* ---------------------------------------------------------------------- */

static const char *obj_name(int o) { return o == ARIA_OBJ_CONTRASTIVE ? "contrastive" : "classify"; }

static void put_str(char *buf, size_t cap, size_t *at, const char *key, const char *v) {
    char esc[4096] = "null";
    if (v) json_escape_string(esc, sizeof esc, v, strlen(v));
    if (*at < cap) *at += (size_t)snprintf(buf + *at, cap - *at, "\"%s\": %s, ", key, esc);
}

static int write_run_json(const aria_train_opts *o, const aria_model_config *c, aria_error *err) {
    char cfg[512], buf[16384], p[4096];
    size_t at = 0;
    aria_config_to_json(c, cfg, sizeof cfg);
    at += (size_t)snprintf(buf, sizeof buf, "{\"objective\": \"%s\", ", obj_name(o->objective));
    put_str(buf, sizeof buf, &at, "labels", o->labels);
    put_str(buf, sizeof buf, &at, "task", o->task);
    put_str(buf, sizeof buf, &at, "root", o->root);
    if (at < sizeof buf)
        at += (size_t)snprintf(
            buf + at, sizeof buf - at,
            "\"batch\": %d, \"grad_accum\": %d, \"lr\": %.9g, \"warmup\": %d, \"constant_lr\": %d, \"clip\": %.9g, "
            "\"steps\": %ld, \"epochs\": %d, \"augment\": %d, \"val_every\": %d, \"save_every\": %d, "
            "\"seed\": %llu, \"precision\": \"%s\", \"seq_len\": %d, \"tau\": %.9g, \"emb_size\": %d, "
            "\"val_fraction\": %.9g, \"per_class\": %d, \"folds\": %d, \"fold\": %d, \"notes_per_chunk\": %d, "
            "\"max_chunks\": %d, \"dropout\": %.9g, "
            "\"config\": %s}\n",
            o->batch, o->grad_accum, o->lr, o->warmup, o->constant_lr, o->clip, o->steps, o->epochs, o->augment,
            o->val_every, o->save_every, (unsigned long long)o->seed, o->exact == 1 ? "exact" : "fast", o->seq_len,
            o->tau, o->emb_size, o->val_fraction, o->per_class, o->folds, o->fold, o->notes_per_chunk, o->max_chunks,
            o->dropout, cfg);
    if (at >= sizeof buf) return aria_fail(err, ARIA_ERR_ARG, "run options too long");
    snprintf(p, sizeof p, "%s/run.json", o->out_dir);
    return aria_write_file_atomic(p, buf, at, err);
}

int trainrun_objective_of(const char *dir) {
    char p[4096], e[64];
    snprintf(p, sizeof p, "%s/run.json", dir);
    json_doc *d;
    if (json_parse_file(p, &d, e, sizeof e) != ARIA_OK) return ARIA_OBJ_LM;
    size_t l;
    const char *s = json_string(json_get(json_root(d), "objective"), &l);
    int obj = !s ? ARIA_OBJ_LM
          : (l == 11 && !memcmp(s, "contrastive", 11)) ? ARIA_OBJ_CONTRASTIVE
          : (l == 8 && !memcmp(s, "classify", 8))      ? ARIA_OBJ_CLASSIFY
                                                       : ARIA_OBJ_LM;
    json_doc_free(d);
    return obj;
}

/* Strings of a resumed run's options live in `keep` (freed by the caller). */
static int read_run_json(aria_train_opts *o, strlist *keep, aria_error *err) {
    char p[4096], e[256];
    snprintf(p, sizeof p, "%s/run.json", o->out_dir);
    json_doc *d;
    if (json_parse_file(p, &d, e, sizeof e) != ARIA_OK) return aria_fail(err, ARIA_ERR_FORMAT, "%s: %s", p, e);
    const json_value *r = json_root(d);
    o->objective = trainrun_objective_of(o->out_dir);
    const char *const keys[] = {"labels", "task", "root"};
    const char **dst[] = {&o->labels, &o->task, &o->root};
    for (int i = 0; i < 3; i++) {
        size_t l;
        const char *s = json_string(json_get(r, keys[i]), &l);
        *dst[i] = NULL;
        if (!s) continue;
        char *c = strndup(s, l);
        if (!c || sl_push(keep, c)) {
            free(c);
            json_doc_free(d);
            return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
        free(c);
        *dst[i] = keep->v[keep->n - 1];
    }
    trainrun_read_opts(r, o);
    o->seq_len = (int)json_int(json_get(r, "seq_len"));
    o->tau = (float)json_number(json_get(r, "tau"));
    o->dropout = (float)json_number(json_get(r, "dropout")); /* absent: 0, runs from before the option */
    o->emb_size = (int)json_int(json_get(r, "emb_size"));
    o->val_fraction = json_number(json_get(r, "val_fraction"));
    o->per_class = (int)json_int(json_get(r, "per_class"));
    o->folds = (int)json_int(json_get(r, "folds"));
    o->fold = (int)json_int(json_get(r, "fold"));
    o->notes_per_chunk = (int)json_int(json_get(r, "notes_per_chunk"));
    o->max_chunks = (int)json_int(json_get(r, "max_chunks")); /* absent (older runs): 0 = all */
    json_doc_free(d);
    if (o->batch < 1 || o->seq_len < 2 || o->grad_accum < 1)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: damaged run options", p);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* The data of a run                                                      */
/* ---------------------------------------------------------------------- */

typedef struct {
    int obj;
    /* contrastive */
    score_set train, val;
    /* classify */
    aria_labels lab;
    int have_lab;
    chunk_list tchunks, vchunks;
    int *file_y;           /* class of each labels row */
    size_t n_val_files;    /* classify: files with chunks in vchunks */
    int *val_file_ids;     /* their labels rows */
    size_t n_train_files;
    strlist skipped;
    strlist train_list, val_list; /* for RUN/ */
} run_data;

static void data_free(run_data *d) {
    scores_free(&d->train);
    scores_free(&d->val);
    if (d->have_lab) aria_labels_free(&d->lab);
    chunks_free(&d->tchunks);
    chunks_free(&d->vchunks);
    free(d->file_y);
    free(d->val_file_ids);
    sl_free(&d->skipped);
    sl_free(&d->train_list);
    sl_free(&d->val_list);
}

/* Held-out files by group (aria_group_paths, auto), a seeded choice of
   groups until the fraction is reached. */
static int split_by_group(const strlist *all, double frac, uint64_t seed, strlist *tr, strlist *va, aria_error *err) {
    size_t n = all->n, ng = 0;
    size_t *g = malloc((n ? n : 1) * sizeof *g);
    if (!g) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int rc = aria_group_paths((const char *const *)all->v, n, ARIA_GROUP_AUTO, NULL, g, &ng, err);
    size_t *order = rc ? NULL : malloc((ng ? ng : 1) * sizeof *order);
    unsigned char *held = rc ? NULL : calloc(ng ? ng : 1, 1);
    if (!rc && (!order || !held)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (!rc) {
        for (size_t i = 0; i < ng; i++) order[i] = i;
        aria_rng r;
        aria_rng_seed(&r, seed * 31u + 7u);
        aria_rng_shuffle(&r, order, ng, sizeof *order);
        size_t want = (size_t)floor(frac * (double)n + 0.5), got = 0;
        size_t *count = calloc(ng ? ng : 1, sizeof *count);
        if (!count) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; count && i < n; i++) count[g[i]]++;
        for (size_t k = 0; count && k < ng && got < want; k++) {
            if (ng - k <= 1 && got > 0) break; /* keep a group for training */
            held[order[k]] = 1;
            got += count[order[k]];
        }
        free(count);
        for (size_t i = 0; i < n && !rc; i++)
            if (sl_push(held[g[i]] ? va : tr, all->v[i])) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    free(g);
    free(order);
    free(held);
    return rc;
}

static int contrastive_data(const aria_train_opts *o, const aria_tokenizer *tk, run_data *d, aria_error *err) {
    int rc = ARIA_OK;
    if (o->resume) {
        char p[4096];
        snprintf(p, sizeof p, "%s/train_files.txt", o->out_dir);
        rc = read_list(p, &d->train_list, err);
        snprintf(p, sizeof p, "%s/val_files.txt", o->out_dir);
        if (!rc && access(p, R_OK) == 0) rc = read_list(p, &d->val_list, err);
    } else {
        strlist all = {0};
        rc = expand_inputs(o->inputs, o->n_inputs, &all, err);
        if (!rc && o->val_list) {
            strlist v = {0};
            rc = read_list(o->val_list, &v, err);
            for (size_t i = 0; i < all.n && !rc; i++) {
                int held = 0;
                for (size_t j = 0; j < v.n && !held; j++) held = !strcmp(all.v[i], v.v[j]);
                if (!held && sl_push(&d->train_list, all.v[i])) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            }
            for (size_t j = 0; j < v.n && !rc; j++)
                if (sl_push(&d->val_list, v.v[j])) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            sl_free(&v);
        } else if (!rc) {
            double f = o->val_fraction < 0 ? 0.05 : o->val_fraction;
            rc = split_by_group(&all, f, o->seed, &d->train_list, &d->val_list, err);
        }
        sl_free(&all);
    }
    if (!rc && d->train_list.n == 0)
        rc = aria_fail(err, ARIA_ERR_ARG, "no MIDI files to train on (give files or folders of *.mid)");
    if (!rc) rc = load_scores(tk, &d->train_list, &d->train, &d->skipped, err);
    if (!rc) rc = load_scores(tk, &d->val_list, &d->val, &d->skipped, err);
    if (!rc && d->train.n < 2)
        rc = aria_fail(err, ARIA_ERR_ARG, "%zu usable training file%s: the contrastive loss needs at least 2",
                       d->train.n, d->train.n == 1 ? "" : "s");
    if (!rc && (size_t)o->batch > d->train.n)
        rc = aria_fail(err, ARIA_ERR_ARG, "--batch %d is more than the %zu usable training files", o->batch,
                       d->train.n);
    return rc;
}

static int classify_data(const aria_train_opts *o, const aria_tokenizer *tk, int T, run_data *d, aria_error *err) {
    if (!o->labels || !o->task) return aria_fail(err, ARIA_ERR_ARG, "the classify objective needs --labels and --task");
    int rc = aria_labels_read(o->labels, o->task, o->root, &d->lab, err);
    if (rc) return trainrun_name_file(err, rc, o->labels);
    d->have_lab = 1;
    size_t n = d->lab.n;
    int *fold = malloc((n ? n : 1) * sizeof *fold);
    d->file_y = malloc((n ? n : 1) * sizeof *d->file_y);
    d->val_file_ids = malloc((n ? n : 1) * sizeof *d->val_file_ids);
    if (!fold || !d->file_y || !d->val_file_ids) {
        free(fold);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    memcpy(d->file_y, d->lab.y, n * sizeof *d->file_y);
    /* the held-out fold: --folds K --fold F, or one fold of round(1/f) */
    int k = o->folds > 1 ? o->folds : 0, held = o->folds > 1 ? o->fold : 0;
    double f = o->val_fraction < 0 ? 0.2 : o->val_fraction;
    if (!k && f > 0) k = (int)floor(1.0 / f + 0.5) < 2 ? 2 : (int)floor(1.0 / f + 0.5);
    if (k) {
        /* a class with fewer groups than folds cannot be in every fold: its
           files are left out, each named in RUN/skipped.txt (as `aria
           probe` does) */
        for (size_t i = 0; i < n && !rc; i++) {
            int c = d->lab.y[i];
            size_t g = aria_labels_class_groups(&d->lab, c);
            if (g >= (size_t)k) continue;
            char line[4600];
            snprintf(line, sizeof line, "%s\tclass %s has %zu group%s, fewer than the %d folds", d->lab.rows[i].path,
                     d->lab.classes[c], g, g == 1 ? "" : "s", k);
            if (sl_push(&d->skipped, line)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
        if (!rc) rc = aria_labels_drop_small(&d->lab, k, err);
        if (rc) rc = trainrun_name_file(err, rc, o->labels);
        n = d->lab.n;
        memcpy(d->file_y, d->lab.y, n * sizeof *d->file_y);
    }
    if (k && !rc) {
        rc = aria_labels_folds(&d->lab, k, o->seed, fold, err);
        if (rc) rc = trainrun_name_file(err, rc, o->labels);
    } else {
        for (size_t i = 0; i < n; i++) fold[i] = 1; /* no validation */
    }
    /* training files, at most per_class of each class (a seeded choice) */
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    int *taken = calloc((size_t)d->lab.n_classes + 1, sizeof *taken);
    if (!rc && (!order || !taken)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (!rc) {
        for (size_t i = 0; i < n; i++) order[i] = i;
        aria_rng r;
        aria_rng_seed(&r, o->seed * 131u + 3u);
        if (o->per_class > 0) aria_rng_shuffle(&r, order, n, sizeof *order);
        else for (size_t i = 0; i < n; i++) order[i] = i;
    }
    for (size_t kk = 0; kk < n && !rc; kk++) {
        size_t i = order[kk];
        int is_val = k && fold[i] == held;
        if (!is_val && o->per_class > 0 && taken[d->lab.y[i]] >= o->per_class) continue;
        chunk_list *dst = is_val ? &d->vchunks : &d->tchunks;
        size_t before = dst->n;
        aria_error e = {{0}};
        int frc = file_chunks(tk, d->lab.rows[i].path, o->notes_per_chunk, T, o->max_chunks, (int)i, dst, &e);
        if (frc == ARIA_ERR_NOMEM) rc = aria_fail(err, frc, "out of memory");
        if (frc) {
            char line[4600];
            snprintf(line, sizeof line, "%s\t%s", d->lab.rows[i].path, e.msg);
            if (sl_push(&d->skipped, line)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            continue;
        }
        if (dst->n == before) continue;
        if (is_val) {
            d->val_file_ids[d->n_val_files++] = (int)i;
            if (sl_push(&d->val_list, d->lab.rows[i].path)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        } else {
            taken[d->lab.y[i]]++;
            d->n_train_files++;
            if (sl_push(&d->train_list, d->lab.rows[i].path)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
    }
    for (size_t i = 0; !rc && i < d->lab.n_missing; i++) {
        char line[4600];
        snprintf(line, sizeof line, "%s\tnot found", d->lab.missing[i]);
        if (sl_push(&d->skipped, line)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    if (!rc && d->tchunks.n == 0) rc = aria_fail(err, ARIA_ERR_ARG, "%s: no usable training file for task %s", o->labels, o->task);
    free(fold);
    free(order);
    free(taken);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Steps                                                                  */
/* ---------------------------------------------------------------------- */

/* Item `k` of the seeded per-epoch order of n items. */
typedef struct {
    size_t *perm, n;
    long epoch;
    uint64_t seed;
} order_t;

static size_t order_at(order_t *o, long k) {
    long e = k / (long)o->n;
    if (e != o->epoch) {
        for (size_t i = 0; i < o->n; i++) o->perm[i] = i;
        aria_rng r;
        aria_rng_seed(&r, o->seed * 1000003u + (uint64_t)e);
        aria_rng_shuffle(&r, o->perm, o->n, sizeof *o->perm);
        o->epoch = e;
    }
    return o->perm[k % (long)o->n];
}

static void fill_chunk(const chunk *c, int T, int32_t *ids, int *eos) {
    int len = c->len < T ? c->len : T;
    memcpy(ids, c->ids, (size_t)len * sizeof *ids);
    for (int i = len; i < T; i++) ids[i] = ARIA_SP_PAD;
    ids[len - 1] = ARIA_SP_EOS;
    *eos = len - 1;
}

/* The micro-batch of this process: rows [R][T] and their <E> positions. */
static int fetch_rows(const aria_train_opts *o, const aria_tokenizer *tk, run_data *d, order_t *ord, long first,
                      int rank, int Bl, int T, int32_t *ids, int *pos, int *y, aria_error *err) {
    for (int b = 0; b < Bl; b++) {
        long k = first + (long)rank * Bl + b;
        size_t i = order_at(ord, k);
        if (d->obj == ARIA_OBJ_CONTRASTIVE) {
            for (int v = 0; v < 2; v++) {
                aria_rng r;
                view_rng(&r, o->seed, k, v);
                int row = 2 * b + v;
                int rc = make_view(tk, &d->train.s[i], &r, T, o->augment, o->seed, k * 2 + v, ids + (size_t)row * T,
                                   &pos[row], err);
                if (rc) return trainrun_name_file(err, rc, d->train.path[i]);
            }
        } else {
            const chunk *c = &d->tchunks.c[i];
            fill_chunk(c, T, ids + (size_t)b * T, &pos[b]);
            if (o->augment) {
                if (trainrun_augment(tk, ids + (size_t)b * T, T, o->seed, k))
                    return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                int at = -1;
                for (int t = 0; t < T && at < 0; t++)
                    if (ids[(size_t)b * T + t] == ARIA_SP_EOS) at = t;
                if (at < 0) ids[(size_t)b * T + (at = T - 1)] = ARIA_SP_EOS;
                pos[b] = at;
            }
            y[b] = d->file_y[c->file];
        }
    }
    return ARIA_OK;
}

/* Outputs of M sequences, made by fill(i), each process forwarding its
   share of every round of W x R rows; out [M][dim] on every process. */
typedef int (*fill_fn)(void *ctx, size_t i, int32_t *ids, int *eos, aria_error *err);

static int eval_rows(aria_trainer *t, const dist_world *w, int R, int T, size_t M, fill_fn fill, void *ctx,
                     aria_output what, int dim, float *out, int32_t *ids, int *pos, float *buf, aria_error *err) {
    memset(out, 0, M * (size_t)dim * sizeof *out);
    int rc = ARIA_OK;
    for (size_t base = 0; base < M; base += (size_t)R * w->size) {
        for (int r = 0; r < R && !rc; r++) {
            size_t i = base + (size_t)w->rank * R + r;
            rc = fill(ctx, i < M ? i : M - 1, ids + (size_t)r * T, &pos[r], err);
        }
        if (!rc) rc = aria_trainer_forward_at(t, ids, pos, what, buf, err);
        for (int r = 0; r < R && !rc; r++) {
            size_t i = base + (size_t)w->rank * R + r;
            if (i < M) memcpy(out + i * dim, buf + (size_t)r * dim, (size_t)dim * sizeof *out);
        }
        if ((rc = dist_agree(w, rc, err))) return rc;
    }
    dist_sum_f32(w, out, M * (size_t)dim);
    return ARIA_OK;
}

typedef struct {
    const aria_train_opts *o;
    const aria_tokenizer *tk;
    run_data *d;
    int T;
} fill_ctx;

/* Validation views: fixed draws per (file, view), whatever the step. */
static int fill_val_view(void *ctx, size_t i, int32_t *ids, int *eos, aria_error *err) {
    fill_ctx *f = ctx;
    aria_rng r;
    aria_rng_seed(&r, f->o->seed * 7777u + (uint64_t)i + 0xa11u);
    return make_view(f->tk, &f->d->val.s[i / 2], &r, f->T, 0, 0, 0, ids, eos, err);
}

static int fill_val_chunk(void *ctx, size_t i, int32_t *ids, int *eos, aria_error *err) {
    (void)err;
    fill_ctx *f = ctx;
    fill_chunk(&f->d->vchunks.c[i], f->T, ids, eos);
    return ARIA_OK;
}

typedef struct {
    int ok;
    float loss;
    double acc, f1;  /* retrieval accuracy (contrastive) or accuracy, macro-F1 */
    size_t n;
} val_result;

static int validate_contrastive(aria_trainer *t, const dist_world *w, const aria_train_opts *o, const aria_tokenizer *tk,
                                run_data *d, int Rl, int T, int E, int32_t *ids, int *pos, float *buf, val_result *v,
                                aria_error *err) {
    memset(v, 0, sizeof *v);
    size_t nv = d->val.n;
    if (nv < 2) return ARIA_OK;
    float *z = malloc(2 * nv * (size_t)E * sizeof *z), *z1 = malloc(nv * (size_t)E * sizeof *z1),
          *z2 = malloc(nv * (size_t)E * sizeof *z2);
    int rc = z && z1 && z2 ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    rc = dist_agree(w, rc, err);
    fill_ctx fc = {o, tk, d, T};
    if (!rc) rc = eval_rows(t, w, Rl, T, 2 * nv, fill_val_view, &fc, ARIA_OUT_EMB, E, z, ids, pos, buf, err);
    if (!rc) {
        for (size_t i = 0; i < nv; i++) {
            memcpy(z1 + i * E, z + (2 * i) * E, (size_t)E * sizeof *z);
            memcpy(z2 + i * E, z + (2 * i + 1) * E, (size_t)E * sizeof *z);
        }
        /* groups of `batch` files (the training loss's pool), the last one
           shorter; a last group of one file joins the one before */
        double loss = 0;
        int groups = 0, hits = 0;
        size_t B = (size_t)o->batch;
        for (size_t a = 0; a < nv;) {
            size_t b = a + B <= nv ? a + B : nv;
            if (nv - b == 1) b = nv;
            loss += aria_ntxent(z1 + a * E, z2 + a * E, (int)(b - a), E, o->tau, NULL, NULL, NULL);
            hits += aria_ntxent_hits(z1 + a * E, z2 + a * E, (int)(b - a), E);
            groups++;
            a = b;
        }
        v->ok = 1;
        v->loss = (float)(loss / groups);
        v->acc = (double)hits / (double)nv;
        v->n = nv;
    }
    free(z);
    free(z1);
    free(z2);
    return rc;
}

static int validate_classify(aria_trainer *t, const dist_world *w, run_data *d, const aria_train_opts *o,
                             const aria_tokenizer *tk, int Bl, int T, int C, int32_t *ids, int *pos, float *buf,
                             val_result *v, aria_error *err) {
    memset(v, 0, sizeof *v);
    size_t nc = d->vchunks.n, nf = d->n_val_files;
    if (!nc || !nf) return ARIA_OK;
    float *lg = malloc(nc * (size_t)C * sizeof *lg), *pr = malloc(nc * (size_t)C * sizeof *pr);
    double *fp = calloc(nf * (size_t)C, sizeof *fp);
    int *slot = malloc(d->lab.n * sizeof *slot);
    int rc = lg && pr && fp && slot ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    rc = dist_agree(w, rc, err);
    fill_ctx fc = {o, tk, d, T};
    if (!rc) rc = eval_rows(t, w, Bl, T, nc, fill_val_chunk, &fc, ARIA_OUT_CLS, C, lg, ids, pos, buf, err);
    if (!rc) {
        for (size_t f = 0; f < nf; f++) slot[d->val_file_ids[f]] = (int)f;
        aria_softmax_xent(lg, (int)nc, C, NULL, pr, NULL, 0);
        double loss = 0;
        for (size_t i = 0; i < nc; i++) {
            const chunk *c = &d->vchunks.c[i];
            int len = c->len < T ? c->len : T;
            double *row = fp + (size_t)slot[c->file] * C;
            for (int k = 0; k < C; k++) row[k] += (double)len * pr[i * C + k];
            loss -= log(fmax(pr[i * C + d->file_y[c->file]], 1e-30));
        }
        int *tp = calloc((size_t)C, sizeof *tp), *np = calloc((size_t)C, sizeof *np), *nt = calloc((size_t)C, sizeof *nt);
        size_t right = 0;
        for (size_t f = 0; tp && np && nt && f < nf; f++) {
            int best = 0;
            for (int k = 1; k < C; k++)
                if (fp[f * C + k] > fp[f * C + best]) best = k;
            int truth = d->file_y[d->val_file_ids[f]];
            right += best == truth;
            tp[best] += best == truth;
            np[best]++;
            nt[truth]++;
        }
        /* macro-F1 over the classes present in the validation files */
        double f1 = 0;
        int present = 0;
        for (int k = 0; tp && np && nt && k < C; k++) {
            if (!nt[k]) continue;
            present++;
            double den = (double)np[k] + nt[k];
            f1 += den > 0 ? 2.0 * tp[k] / den : 0;
        }
        free(tp);
        free(np);
        free(nt);
        v->ok = 1;
        v->loss = (float)(loss / (double)nc);
        v->acc = (double)right / (double)nf;
        v->f1 = present ? f1 / present : 0;
        v->n = nf;
    }
    free(lg);
    free(pr);
    free(fp);
    free(slot);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* The run                                                                */
/* ---------------------------------------------------------------------- */

/* The label names as one JSON array (the checkpoint's aria_classes). */
static char *classes_json(const aria_labels *l) {
    size_t cap = 16;
    for (int i = 0; i < l->n_classes; i++) cap += 2 * strlen(l->classes[i]) + 8;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    *p++ = '[';
    for (int i = 0; i < l->n_classes; i++) {
        if (i) *p++ = ',', *p++ = ' ';
        p += json_escape_string(p, cap - (size_t)(p - s), l->classes[i], strlen(l->classes[i]));
    }
    *p++ = ']';
    *p = 0;
    return s;
}

int trainrun_heads(const aria_train_opts *opts, aria_error *err) {
    dist_world w = dist_get();
    int lead = w.rank == 0;
    aria_train_opts o = *opts;
    strlist keep = {0};
    run_data d = {0};
    aria_model *m = NULL;
    aria_trainer *t = NULL;
    aria_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    int *pos = NULL, *y = NULL;
    float *out = NULL, *dout = NULL, *zg = NULL, *dzg = NULL;
    order_t ord = {0};
    char *cls_json = NULL;
    int rc = ARIA_OK;
    if (w.size == 1 && opts->launched_size > 1)
        return aria_fail(err, ARIA_ERR_ARG, "started as one of %d processes, but MPI is not running",
                         opts->launched_size);
    if (o.resume) {
        rc = read_run_json(&o, &keep, err);
        o.threads = opts->threads;
    } else if (lead) {
        rc = trainrun_check_new_dir(&o, err);
    }
    if ((rc = dist_agree(&w, rc, err))) goto out;
    d.obj = o.objective;
    int contrastive = o.objective == ARIA_OBJ_CONTRASTIVE;
    if (!o.seq_len) o.seq_len = contrastive ? 2048 : 1024;
    if (o.batch % w.size)
        rc = aria_fail(err, ARIA_ERR_ARG, "--batch %d is the global batch; it must be a multiple of the %d processes",
                       o.batch, w.size);
    if (!rc && !(o.tau > 0)) rc = aria_fail(err, ARIA_ERR_ARG, "--tau must be > 0");
    if ((rc = dist_agree(&w, rc, err))) goto out;
    int T = o.seq_len, Bl = o.batch / w.size, R = contrastive ? 2 * Bl : Bl;
    tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    if (!tk) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (!rc) rc = contrastive ? contrastive_data(&o, tk, &d, err) : classify_data(&o, tk, T, &d, err);
    if ((rc = dist_agree(&w, rc, err))) goto out;

    /* the model */
    run_state st = {0};
    char p[4096], ckpt_model[4096] = "", ckpt_state[4096] = "";
    int want = contrastive ? ARIA_HEAD_EMB : ARIA_HEAD_CLS;
    int C = contrastive ? 0 : d.lab.n_classes;
    const char *model_src = o.resume ? ckpt_model : o.init_path ? o.init_path : "--config";
    if (o.resume) {
        rc = trainrun_resume_model(o.out_dir, ckpt_model, ckpt_state, sizeof ckpt_model, &m, err);
    } else if (o.init_path) {
        rc = trainrun_name_file(err, aria_model_load(&m, o.init_path, o.has_config ? &o.config : NULL, err),
                                o.init_path);
        if (!rc && !contrastive && (aria_model_heads(m) & ARIA_HEAD_CLS) &&
            aria_model_get_config(m)->class_size != C)
            rc = aria_fail(err, ARIA_ERR_ARG, "%s: its class_head has %d classes, the task %s has %d", o.init_path,
                           aria_model_get_config(m)->class_size, o.task, C);
        int es = o.emb_size > 0 ? o.emb_size : !rc ? aria_model_get_config(m)->emb_size : 0;
        if (es <= 0) es = DEFAULT_EMB;
        if (!rc) rc = trainrun_name_file(err, aria_model_set_heads(m, want, es, C, o.seed, err), o.init_path);
        /* spec 3.5: the <E> embedding row starts afresh for the classifier */
        if (!rc && !contrastive)
            rc = aria_model_reinit_row(m, "model.tok_embeddings.weight", ARIA_SP_EOS, 0.02f, o.seed, err);
    } else if (o.has_config) {
        aria_model_config c = o.config;
        if (contrastive && o.emb_size > 0) c.emb_size = o.emb_size;
        if (contrastive && c.emb_size <= 0) c.emb_size = DEFAULT_EMB;
        if (!contrastive) c.class_size = C;
        if (contrastive) c.class_size = 0;
        else c.emb_size = 0;
        rc = aria_model_new_random(&m, &c, want, o.seed, err);
    } else {
        rc = aria_fail(err, ARIA_ERR_ARG, "give --config (a new model) or --init (weights to start from)");
    }
    if (!rc && !(aria_model_heads(m) & want))
        rc = aria_fail(err, ARIA_ERR_ARG, "%s: the model has no %s", model_src, contrastive ? "emb_head" : "class_head");
    if (!rc && !contrastive && aria_model_get_config(m)->class_size != C)
        rc = aria_fail(err, ARIA_ERR_ARG, "%s: %d classes, the labels have %d", model_src,
                       aria_model_get_config(m)->class_size, C);
    if ((rc = dist_agree(&w, rc, err))) goto out;
    int share = w.size > 1 ? dist_default_threads(&w) : 0;
    if (o.ctx) aria_model_set_ctx(m, o.ctx);
    if (o.threads > 0) {
        if (!o.ctx) aria_model_set_threads(m, o.threads);
    } else if (share > 0) {
        aria_model_set_threads(m, share);
    }
    if (o.exact < 0) o.exact = aria_model_precision(m) == ARIA_PREC_EXACT;
    const aria_model_config *mc = aria_model_get_config(m);
    if (T > mc->max_seq_len)
        rc = aria_fail(err, ARIA_ERR_ARG, "--seq-len %d is more than the model's context of %d", T, mc->max_seq_len);
    if (!rc) rc = trainrun_name_file(err, aria_trainer_new(&t, m, R, T, err), model_src);
    if ((rc = dist_agree(&w, rc, err))) goto out;
    int dim = contrastive ? mc->emb_size : C;

    /* every input is good: now the run directory */
    if (!contrastive) cls_json = classes_json(&d.lab);
    if (lead && !o.resume) {
        rc = trainrun_make_dir(&o, err);
        if (!rc) rc = trainrun_name_file(err, write_run_json(&o, mc, err), o.out_dir);
        if (!rc) rc = write_list(o.out_dir, "train_files.txt", &d.train_list, err);
        if (!rc) rc = write_list(o.out_dir, "val_files.txt", &d.val_list, err);
        if (!rc) rc = write_list(o.out_dir, "skipped.txt", &d.skipped, err);
        snprintf(p, sizeof p, "%s/log.jsonl", o.out_dir);
        unlink(p);
        char line[256];
        snprintf(line, sizeof line,
                 "{\"step\": 0, \"objective\": \"%s\", \"train_files\": %zu, \"val_files\": %zu, \"skipped\": %zu}\n",
                 obj_name(o.objective), contrastive ? d.train.n : d.n_train_files,
                 contrastive ? d.val.n : d.n_val_files, d.skipped.n);
        if (!rc) rc = trainrun_append_log(o.out_dir, line, err);
    }
    if ((rc = dist_agree(&w, rc, err))) goto out;
    aria_trainer_set_exact(t, o.exact);
    aria_trainer_set_profile(t, o.profile);
    float *params, *grads;
    size_t n_params;
    aria_trainer_arena(t, &params, &grads, &n_params);
    if ((rc = trainrun_sync_start(&w, t, &st, o.seed, o.resume ? ckpt_state : NULL, o.out_dir, err))) goto out;

    size_t n_items = contrastive ? d.train.n : d.tchunks.n;
    long per_step = (long)o.batch * o.grad_accum;
    long total = o.steps > 0 ? o.steps : (long)o.epochs * (long)n_items / per_step;
    if (total <= 0) total = 1; /* fewer items than a step: one step, items repeat */
    ids = malloc((size_t)R * T * sizeof *ids);
    pos = malloc((size_t)R * sizeof *pos);
    y = malloc((size_t)R * sizeof *y);
    out = malloc((size_t)R * dim * sizeof *out);
    dout = malloc((size_t)R * dim * sizeof *dout);
    zg = malloc((size_t)2 * o.batch * dim * sizeof *zg);
    dzg = malloc((size_t)2 * o.batch * dim * sizeof *dzg);
    ord = (order_t){malloc(n_items * sizeof(size_t)), n_items, -1, o.seed};
    const char *meta_k[] = {"aria_classes", "aria_task"};
    const char *meta_v[] = {cls_json, o.task};
    size_t n_meta = contrastive ? 0 : 2;
    if (!ids || !pos || !y || !out || !dout || !zg || !dzg || !ord.perm || (!contrastive && !cls_json))
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    long v[] = {o.batch, total, st.step, (long)n_items, (long)n_params, T};
    if (!rc && !dist_same(&w, v, (int)(sizeof v / sizeof *v)))
        rc = aria_fail(err, ARIA_ERR_ARG, "the %d processes disagree on the data, the options or the checkpoint",
                       w.size);
    if ((rc = dist_agree(&w, rc, err))) goto out;

    aria_adamw_opts ad = aria_adamw_defaults();
    for (; st.step < total; st.step++) {
        double t0 = trainrun_now();
        float lr = aria_lr_at(&o, st.step, total);
        double loss_sum = 0;
        long hits = 0;
        aria_trainer_zero_grad(t);
        for (int g = 0; g < o.grad_accum; g++) {
            long first = (st.step * o.grad_accum + g) * (long)o.batch;
            rc = fetch_rows(&o, tk, &d, &ord, first, w.rank, Bl, T, ids, pos, y, err);
            /* a new dropout mask per micro-batch, from the seed and its number,
               so that a resumed run draws the same ones */
            if (o.dropout > 0)
                aria_trainer_set_dropout(t, o.dropout, o.seed * 0x9e3779b97f4a7c15ull + (uint64_t)(first + 1),
                                         (long)w.rank * R);
            if (!rc) rc = aria_trainer_forward_at(t, ids, pos, contrastive ? ARIA_OUT_EMB : ARIA_OUT_CLS, out, err);
            if ((rc = dist_agree(&w, rc, err))) break;
            float loss;
            if (contrastive) {
                /* all-gather: this process's rows into the global pair, summed */
                int B = o.batch;
                float *z1 = zg, *z2 = zg + (size_t)B * dim, *d1 = dzg, *d2 = dzg + (size_t)B * dim;
                memset(zg, 0, (size_t)2 * B * dim * sizeof *zg);
                for (int b = 0; b < Bl; b++) {
                    int gb = w.rank * Bl + b;
                    memcpy(z1 + (size_t)gb * dim, out + (size_t)(2 * b) * dim, (size_t)dim * sizeof *out);
                    memcpy(z2 + (size_t)gb * dim, out + (size_t)(2 * b + 1) * dim, (size_t)dim * sizeof *out);
                }
                dist_sum_f32(&w, zg, (size_t)2 * B * dim);
                loss = aria_ntxent(z1, z2, B, dim, o.tau, NULL, d1, d2);
                hits += aria_ntxent_hits(z1, z2, B, dim);
                for (int b = 0; b < Bl; b++) {
                    int gb = w.rank * Bl + b;
                    for (int k = 0; k < dim; k++) {
                        dout[(size_t)(2 * b) * dim + k] = d1[(size_t)gb * dim + k] / o.grad_accum;
                        dout[(size_t)(2 * b + 1) * dim + k] = d2[(size_t)gb * dim + k] / o.grad_accum;
                    }
                }
                if (!isfinite(loss)) rc = aria_fail(err, ARIA_ERR_ARG, "the contrastive loss is not finite");
            } else {
                /* the mean over the global batch: this process's share */
                float share_f = (float)Bl / (float)o.batch;
                loss = aria_softmax_xent(out, Bl, dim, y, NULL, dout, share_f / o.grad_accum);
                double lv = (double)loss * share_f;
                dist_sum_f64(&w, &lv, 1);
                loss = (float)lv;
            }
            if (!rc) rc = aria_trainer_backward_at(t, ids, dout, err);
            if ((rc = dist_agree(&w, rc, err))) break;
            loss_sum += loss;
        }
        if (rc) break;
        dist_sum_f32(&w, grads, n_params);
        float loss = (float)(loss_sum / o.grad_accum);
        float norm = aria_trainer_clip(t, o.clip);
        aria_trainer_adamw(t, &ad, lr);
        long done = st.step + 1;
        int save = (o.save_every > 0 && done % o.save_every == 0) || done == total;
        if (save && w.size > 1) trainrun_resync(&w, t, params, n_params);
        double dt = trainrun_now() - t0;
        double tps = (double)per_step * (contrastive ? 2 : 1) * T / dt;
        char line[512];
        if (lead) {
            if (contrastive)
                snprintf(line, sizeof line,
                         "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"retrieval_acc\": %.4f, "
                         "\"tokens_per_s\": %.1f}\n",
                         done, loss, lr, norm, (double)hits / ((double)o.batch * o.grad_accum), tps);
            else
                snprintf(line, sizeof line,
                         "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f}\n",
                         done, loss, lr, norm, tps);
            rc = trainrun_append_log(o.out_dir, line, err);
            if (!rc && o.progress) o.progress(o.progress_ctx, done, total, loss, tps);
        }
        if ((rc = dist_agree(&w, rc, err))) break;
        if ((o.val_every > 0 && done % o.val_every == 0) || done == total) {
            val_result vr;
            aria_trainer_set_dropout(t, 0, 0, 0); /* validation sees the whole model */
            rc = contrastive ? validate_contrastive(t, &w, &o, tk, &d, R, T, dim, ids, pos, out, &vr, err)
                             : validate_classify(t, &w, &d, &o, tk, R, T, dim, ids, pos, out, &vr, err);
            if (!rc && vr.ok && lead) {
                if (contrastive)
                    snprintf(line, sizeof line,
                             "{\"step\": %ld, \"val_loss\": %.6f, \"val_retrieval_acc\": %.4f, \"val_files\": %zu}\n",
                             done, vr.loss, vr.acc, vr.n);
                else
                    snprintf(line, sizeof line,
                             "{\"step\": %ld, \"val_loss\": %.6f, \"val_acc\": %.4f, \"val_macro_f1\": %.4f, "
                             "\"val_files\": %zu}\n",
                             done, vr.loss, vr.acc, vr.f1, vr.n);
                rc = trainrun_append_log(o.out_dir, line, err);
                if (!rc && o.validated) o.validated(o.progress_ctx, done, vr.loss);
            }
        }
        if (lead && !rc && save) {
            run_state saved = st;
            saved.step = done;
            rc = trainrun_name_file(err, trainrun_save_checkpoint(m, t, &saved, &o, meta_k, meta_v, n_meta, err),
                                    o.out_dir);
        }
        if ((rc = dist_agree(&w, rc, err))) break;
    }
out:
    free(ord.perm);
    free(ids);
    free(pos);
    free(y);
    free(out);
    free(dout);
    free(zg);
    free(dzg);
    free(cls_json);
    aria_tokenizer_free(tk);
    if (t && o.trainer_done) o.trainer_done(o.progress_ctx, t);
    aria_trainer_free(t);
    aria_model_free(m);
    data_free(&d);
    sl_free(&keep);
    return rc;
}
