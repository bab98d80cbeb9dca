/*
 * batch.c - many MIDI files tokenized on several threads: the one
 * implementation behind `aria tokenize FILE...` and the tokenizing passes
 * of `aria dataset` (dataset.c), and the small parallel-for both use.
 *
 * Each file is independent: it is read, made a score and tokenized with
 * its own RNG (seeded per file, so the result never depends on which
 * thread took it or when), and its outcome - tokens or a status with a
 * message - lands in its own slot of the caller's array. A bad file is
 * one failed slot; the batch goes on. Threads take the next file from a
 * shared counter; nothing in a worker prints or exits.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "base/util.h"
#include "tasks/tasks.h"

#define CHUNK_NOTES 300   /* embedding chunks: notes per chunk (spec 4.3) */
#define CHUNK_MAX_LEN 2048 /* and tokens per chunk at most */

/* ---------------------------------------------------------------------- */
/* A parallel for                                                          */
/* ---------------------------------------------------------------------- */

int tasks_jobs(int jobs) {
    if (jobs <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = n < 1 ? 1 : n > TASKS_MAX_JOBS ? TASKS_MAX_JOBS : (int)n;
    }
    return jobs > TASKS_MAX_JOBS ? TASKS_MAX_JOBS : jobs;
}

typedef struct {
    void (*fn)(void *ctx, size_t i);
    void *ctx;
    size_t n, next;
    pthread_mutex_t lock;
} pfor;

static void *pfor_worker(void *arg) {
    pfor *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->n) return NULL;
        p->fn(p->ctx, i);
    }
}

void tasks_parallel_for(size_t n, int jobs, void (*fn)(void *, size_t), void *ctx) {
    pfor p = {fn, ctx, n, 0, PTHREAD_MUTEX_INITIALIZER};
    size_t nt = (size_t)tasks_jobs(jobs);
    if (nt > n) nt = n;
    pthread_t th[TASKS_MAX_JOBS];
    size_t started = 0;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, pfor_worker, &p) == 0) started++;
    pfor_worker(&p); /* the calling thread works too; if no thread started, alone */
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.lock);
}

/* ---------------------------------------------------------------------- */
/* Batch tokenization                                                     */
/* ---------------------------------------------------------------------- */

aria_batch_opts aria_batch_defaults(void) {
    aria_batch_opts o;
    memset(&o, 0, sizeof o);
    o.mode = ARIA_BATCH_TOKENIZE;
    o.tok = aria_tokenize_defaults();
    return o;
}

void aria_batch_file_free(aria_batch_file *f) {
    if (!f) return;
    free(f->toks);
    free(f->ends);
    f->toks = NULL;
    f->ends = NULL;
    f->n_toks = f->n_seqs = 0;
}

/* One sequence: takes `toks` as the file's tokens. */
static int batch_keep_one(aria_batch_file *f, aria_token *toks, size_t n) {
    f->ends = malloc(sizeof *f->ends);
    if (!f->ends) return ARIA_ERR_NOMEM;
    f->toks = toks;
    f->n_toks = n;
    f->ends[0] = n;
    f->n_seqs = 1;
    return ARIA_OK;
}

/* Embedding chunks, one sequence each, copied into one token array. */
static int batch_keep_chunks(aria_batch_file *f, const aria_tok_chunk *ch, size_t nc) {
    size_t total = 0;
    for (size_t i = 0; i < nc; i++) total += ch[i].n;
    f->toks = malloc((total ? total : 1) * sizeof *f->toks);
    f->ends = malloc((nc ? nc : 1) * sizeof *f->ends);
    if (!f->toks || !f->ends) return ARIA_ERR_NOMEM;
    for (size_t i = 0; i < nc; i++) {
        memcpy(f->toks + f->n_toks, ch[i].toks, ch[i].n * sizeof *f->toks);
        f->n_toks += ch[i].n;
        f->ends[i] = f->n_toks;
    }
    f->n_seqs = nc;
    return ARIA_OK;
}

static int batch_tokenize_score(const aria_tokenizer *t, const aria_score *s, const aria_batch_opts *o,
                                aria_rng *rng, aria_batch_file *f) {
    aria_token *toks = NULL;
    size_t n = 0;
    int rc;
    if (o->mode == ARIA_BATCH_CHUNKS) {
        aria_tok_chunk *ch = NULL;
        size_t nc = 0;
        rc = aria_tok_embedding_chunks(t, s, CHUNK_NOTES, CHUNK_MAX_LEN, rng, &ch, &nc, &f->err);
        if (rc == ARIA_OK && batch_keep_chunks(f, ch, nc) != ARIA_OK)
            rc = aria_fail(&f->err, ARIA_ERR_NOMEM, "out of memory");
        if (ch) aria_tok_chunks_free(ch, nc);
        return rc;
    }
    if (o->mode == ARIA_BATCH_PROMPT)
        rc = aria_tok_prompt(t, s, o->prompt_ms, rng, &toks, &n, &f->err);
    else
        rc = aria_tokenize(t, s, &o->tok, rng, &toks, &n, &f->err);
    if (rc == ARIA_OK && batch_keep_one(f, toks, n) != ARIA_OK) rc = aria_fail(&f->err, ARIA_ERR_NOMEM, "out of memory");
    if (rc != ARIA_OK) free(toks);
    return rc;
}

/* Fills f for one file; the status goes in f->status. */
static void batch_file(const aria_tokenizer *t, const char *path, const aria_batch_opts *o, uint64_t seed,
                       aria_batch_file *f) {
    memset(f, 0, sizeof *f);
    if (!path) return; /* a placeholder: the caller's own item at this position */
    aria_midi m = {0};
    aria_score s = {0};
    int rc = aria_midi_read_file(&m, path, &f->err);
    if (rc == ARIA_OK && m.n_warnings) { /* read as far as it goes, but the caller should say so */
        f->n_warnings = m.n_warnings;
        snprintf(f->warning, sizeof f->warning, "%s", m.warnings[0]);
    }
    if (rc == ARIA_OK) rc = aria_score_from_midi(&s, &m, &f->err);
    aria_midi_free(&m);
    if (rc == ARIA_OK) {
        s.exact_timing = o->exact_timing;
        aria_rng rng;
        aria_rng_seed(&rng, seed);
        rc = batch_tokenize_score(t, &s, o, &rng, f);
    }
    aria_score_free(&s);
    if (rc != ARIA_OK) aria_batch_file_free(f);
    f->status = rc;
}

typedef struct {
    const aria_tokenizer *t;
    const char *const *paths;
    const aria_batch_opts *o;
    aria_batch_file *out;
    size_t n, done;
    pthread_mutex_t lock;
} batch_run;

static void batch_slot(void *arg, size_t i) {
    batch_run *b = arg;
    const aria_batch_opts *o = b->o;
    batch_file(b->t, b->paths[i], o, o->seeds ? o->seeds[i] : o->seed, &b->out[i]);
    if (o->on_file) o->on_file(o->ctx, i, &b->out[i]);
    if (o->progress) {
        pthread_mutex_lock(&b->lock);
        size_t done = ++b->done;
        o->progress(o->ctx, done, b->n);
        pthread_mutex_unlock(&b->lock);
    }
}

int aria_batch_tokenize(const aria_tokenizer *t, const char *const *paths, size_t n, const aria_batch_opts *opts,
                        aria_batch_file *out, aria_error *err) {
    if (!t || (n && (!paths || !out))) return aria_fail(err, ARIA_ERR_ARG, "no tokenizer, paths or results");
    aria_batch_opts o = opts ? *opts : aria_batch_defaults();
    if (o.mode != ARIA_BATCH_TOKENIZE && o.mode != ARIA_BATCH_PROMPT && o.mode != ARIA_BATCH_CHUNKS)
        return aria_fail(err, ARIA_ERR_ARG, "unknown batch mode %d", (int)o.mode);
    batch_run b = {t, paths, &o, out, n, 0, PTHREAD_MUTEX_INITIALIZER};
    tasks_parallel_for(n, o.jobs, batch_slot, &b);
    pthread_mutex_destroy(&b.lock);
    return ARIA_OK;
}
