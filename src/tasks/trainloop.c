/*
 * trainloop.c - the training run behind `aria train`: data order, the
 * learning-rate schedule, augmentation, logging, validation and
 * checkpoints that survive a kill.
 *
 * A run directory holds:
 *   run.json              the options of the run (a resume re-reads them)
 *   log.jsonl             one line per step and per validation
 *   model.safetensors     the latest weights, official names (aria generate
 *                         and the reference PyTorch code load it)
 *   ckpt-<step>.safetensors + state-<step>.bin   a checkpoint: weights and
 *                         optimizer moments, step, data position, RNG
 *   checkpoint.json       names the latest complete checkpoint; written
 *                         last (atomically), so a kill at any moment leaves
 *                         either the old or the new checkpoint in force.
 * Everything that decides a step (data order, augmentation draws, the
 * schedule) derives from the seed and the step, so a resumed run repeats
 * the uninterrupted run's losses.
 *
 * Nothing is created before every input has been checked: the run to
 * resume, the data, the weights, the sequence length against the model's
 * context and the model's heads. Only then is the directory made and
 * run.json written, so a refused run leaves nothing behind, and a new
 * run never lands on an old one unless asked to (opts->overwrite).
 * Errors start with the file or directory they are about.
 *
 * Data parallel (MPI running, src/dist/dist.c): `batch` stays the global batch
 * and each of the W processes takes a contiguous W-th of every
 * micro-batch. A process scales its gradients by its share of the
 * micro-batch's targets, so the all-reduced sum is the gradient one
 * process would compute; every process then clips and steps the same
 * gradients and the weights stay equal (broadcast from rank 0 once at the
 * start, compared before each checkpoint). Losses are reduced the same
 * way. Rank 0 alone writes the run directory; errors are agreed on at
 * fixed points so all stop together.
 *
 * Conditioning (opts->condition_on, spec 3.3): the dataset holds a
 * per-file embedding for each sequence (aria dataset --embedding-model),
 * checked against the model file named by its content hash; the model
 * gets an embedding_adapter if it has none. Each micro-batch draws from
 * the run's generator (st.rng, saved with each checkpoint, the same on
 * every process) whether it is conditioned; a conditioned micro-batch
 * runs aria_trainer_backward_cond on the rows whose file has an
 * embedding. Validation then logs the conditioned loss beside the plain
 * one.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "dist/dist.h"
#include "base/json.h"
#include "base/util.h"
#include "tasks/trainrun.h"

#define STATE_MAGIC "ARIATRN1"

aria_train_opts aria_train_defaults(void) {
    aria_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 8;
    o.grad_accum = 1;
    o.lr = 3e-4f;
    o.warmup = 200;
    o.clip = 1.0f;
    o.augment = 1;
    o.val_every = 0;
    o.save_every = 100;
    o.epochs = 1;
    o.exact = -1;
    o.val_fraction = -1;
    o.tau = 0.1f;
    o.notes_per_chunk = 300;
    o.condition_p = 0.5f;
    return o;
}

/* Learning rate at optimizer step `step` (0-based) of `total`: linear
   warm-up from 1e-6 x lr, then linear decay to 0.1 x lr (spec 3.2). */
float aria_lr_at(const aria_train_opts *o, long step, long total) {
    if (o->constant_lr) return o->lr;
    if (step < o->warmup) return o->lr * (1e-6f + (1.0f - 1e-6f) * (float)step / (float)o->warmup);
    long span = total - o->warmup;
    if (span <= 0) return o->lr;
    float frac = (float)(step - o->warmup) / (float)span;
    if (frac > 1.0f) frac = 1.0f;
    return o->lr * (1.0f - 0.9f * frac);
}

/* ---------------------------------------------------------------------- */
/* Files of the run                                                       */
/* ---------------------------------------------------------------------- */

static void path_in(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* Puts "path: " before err's message unless it starts with it already, so
   that every error names the file it is about. Returns rc. */
static int name_file(aria_error *err, int rc, const char *path) {
    if (rc == ARIA_OK || !err || !path) return rc;
    if (strncmp(err->msg, path, strlen(path)) == 0) return rc;
    char msg[sizeof err->msg];
    memcpy(msg, err->msg, sizeof msg);
    size_t n = strlen(path);
    if (n + 2 >= sizeof err->msg) return rc;
    memcpy(err->msg, path, n);
    memcpy(err->msg + n, ": ", 2);
    snprintf(err->msg + n + 2, sizeof err->msg - n - 2, "%.*s", (int)(sizeof err->msg - n - 3), msg);
    return rc;
}

static int file_exists(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    path_in(p, sizeof p, dir, name);
    return stat(p, &st) == 0;
}

/* The files of a run (see above), which a new run in the same directory
   would mix with its own: run.json, log.jsonl or checkpoint.json. */
static const char *run_file_in(const char *dir) {
    static const char *const names[] = {"run.json", "log.jsonl", "checkpoint.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (file_exists(dir, names[i])) return names[i];
    return NULL;
}

/* A new run's directory: refused when it holds a run (unless
   overwrite), checked only (nothing made yet). */
static int check_new_run_dir(const aria_train_opts *o, aria_error *err) {
    struct stat st;
    if (stat(o->out_dir, &st) != 0) return ARIA_OK; /* made later, once every input is known to be good */
    if (!S_ISDIR(st.st_mode)) return aria_fail(err, ARIA_ERR_ARG, "%s: not a directory", o->out_dir);
    const char *f = run_file_in(o->out_dir);
    if (f && !o->overwrite)
        return aria_fail(err, ARIA_ERR_ARG,
                         "%s: holds a run already (%s); continue it with --resume %s, or give --force to replace it",
                         o->out_dir, f, o->out_dir);
    return ARIA_OK;
}

/* Makes the run directory; with overwrite, removes the old run's files
   (the checkpoint pointer first, so a kill halfway leaves nothing that a
   resume would mistake for this run's). */
static int make_run_dir(const aria_train_opts *o, aria_error *err) {
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST)
        return aria_fail(err, ARIA_ERR_IO, "%s: cannot create: %s", o->out_dir, strerror(errno));
    if (!o->overwrite) return ARIA_OK;
    static const char *const fixed[] = {"checkpoint.json", "log.jsonl", "run.json", "model.safetensors"};
    char p[4096];
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        path_in(p, sizeof p, o->out_dir, fixed[i]);
        unlink(p);
    }
    DIR *d = opendir(o->out_dir);
    if (!d) return aria_fail(err, ARIA_ERR_IO, "%s: %s", o->out_dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        int ckpt = !strncmp(e->d_name, "ckpt-", 5) && n > 17 && !strcmp(e->d_name + n - 12, ".safetensors");
        int state = !strncmp(e->d_name, "state-", 6) && n > 10 && !strcmp(e->d_name + n - 4, ".bin");
        if (!ckpt && !state) continue;
        path_in(p, sizeof p, o->out_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return ARIA_OK;
}

static int write_run_json(const aria_train_opts *o, const aria_model_config *c, aria_error *err) {
    char cfg[512], buf[8192], p[4096], cond[4200] = "";
    aria_config_to_json(c, cfg, sizeof cfg);
    if (o->condition_on)
        snprintf(cond, sizeof cond, "\"condition_on\": \"%s\", \"condition_p\": %.9g, ", o->condition_on,
                 o->condition_p);
    int n = snprintf(buf, sizeof buf,
                     "{\"data\": \"%s\", %s\"batch\": %d, \"grad_accum\": %d, \"lr\": %.9g, \"warmup\": %d, "
                     "\"constant_lr\": %d, \"clip\": %.9g, \"steps\": %ld, \"epochs\": %d, \"augment\": %d, "
                     "\"val_every\": %d, \"val_batches\": %d, \"save_every\": %d, \"seed\": %llu, "
                     "\"precision\": \"%s\", "
                     "\"config\": %s}\n",
                     o->data_dir, cond, o->batch, o->grad_accum, o->lr, o->warmup, o->constant_lr, o->clip, o->steps,
                     o->epochs, o->augment, o->val_every, o->val_batches, o->save_every, (unsigned long long)o->seed,
                     o->exact == 1 ? "exact" : "fast", cfg);
    path_in(p, sizeof p, o->out_dir, "run.json");
    return aria_write_file_atomic(p, buf, (size_t)n, err);
}

static int read_run_json(aria_train_opts *o, char *data_buf, char *cond_buf, size_t cap, aria_error *err) {
    char p[4096], e[256];
    path_in(p, sizeof p, o->out_dir, "run.json");
    struct stat st;
    if (stat(o->out_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return aria_fail(err, ARIA_ERR_IO, "%s: no such run directory", o->out_dir);
    if (!file_exists(o->out_dir, "run.json"))
        return aria_fail(err, ARIA_ERR_IO, "%s: no run to resume here (no run.json); start one with --data and --out",
                         o->out_dir);
    json_doc *d;
    if (json_parse_file(p, &d, e, sizeof e) != ARIA_OK) return name_file(err, aria_fail(err, ARIA_ERR_FORMAT, "%s", e), p);
    const json_value *r = json_root(d);
    size_t l;
    const char *data = json_string(json_get(r, "data"), &l);
    if (!data || l >= cap) {
        json_doc_free(d);
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: no \"data\"", p);
    }
    memcpy(data_buf, data, l);
    data_buf[l] = 0;
    o->data_dir = data_buf;
    const char *cond = json_string(json_get(r, "condition_on"), &l);
    o->condition_on = NULL;
    if (cond && l < cap) {
        memcpy(cond_buf, cond, l);
        cond_buf[l] = 0;
        o->condition_on = cond_buf;
        o->condition_p = (float)json_number(json_get(r, "condition_p"));
    }
    trainrun_read_opts(r, o);
    json_doc_free(d);
    return ARIA_OK;
}


/* state-<step>.bin: magic, step, rng, then the trainer's moments */
static int save_state(aria_trainer *t, const run_state *st, const char *path, aria_error *err) {
    size_t n;
    const float *m1, *m2;
    aria_trainer_moments(t, &m1, &m2, &n);
    size_t size = 8 + sizeof(int64_t) + sizeof st->rng + sizeof(uint64_t) + 2 * n * sizeof(float);
    uint8_t *buf = malloc(size), *p = buf;
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int64_t step = st->step;
    uint64_t count = n;
    memcpy(p, STATE_MAGIC, 8), p += 8;
    memcpy(p, &step, sizeof step), p += sizeof step;
    memcpy(p, &st->rng, sizeof st->rng), p += sizeof st->rng;
    memcpy(p, &count, sizeof count), p += sizeof count;
    memcpy(p, m1, n * sizeof(float)), p += n * sizeof(float);
    memcpy(p, m2, n * sizeof(float));
    int rc = aria_write_file_atomic(path, buf, size, err);
    free(buf);
    return rc;
}

static int load_state(aria_trainer *t, run_state *st, const char *path, aria_error *err) {
    uint8_t *buf;
    size_t len;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return rc;
    size_t n;
    float *m1, *m2;
    aria_trainer_moments(t, (const float **)&m1, (const float **)&m2, &n);
    size_t want = 8 + sizeof(int64_t) + sizeof st->rng + sizeof(uint64_t) + 2 * n * sizeof(float);
    uint64_t count = 0;
    if (len == want) memcpy(&count, buf + 8 + sizeof(int64_t) + sizeof st->rng, sizeof count);
    if (len != want || memcmp(buf, STATE_MAGIC, 8) != 0 || count != n) {
        free(buf);
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "%s is not a training state of this model (expected %zu bytes); start a new run", path, want);
    }
    const uint8_t *p = buf + 8;
    int64_t step;
    memcpy(&step, p, sizeof step), p += sizeof step;
    memcpy(&st->rng, p, sizeof st->rng), p += sizeof st->rng + sizeof count;
    memcpy(m1, p, n * sizeof(float)), p += n * sizeof(float);
    memcpy(m2, p, n * sizeof(float));
    st->step = (long)step;
    aria_trainer_set_step(t, (int)step);
    free(buf);
    return ARIA_OK;
}

static int save_checkpoint_meta(aria_model *m, aria_trainer *t, const run_state *st, const aria_train_opts *o,
                                const char *const *keys, const char *const *vals, size_t n_meta, aria_error *err) {
    char model[4096], state[4096], p[4096], name_m[64], name_s[64], json[256];
    snprintf(name_m, sizeof name_m, "ckpt-%08ld.safetensors", st->step);
    snprintf(name_s, sizeof name_s, "state-%08ld.bin", st->step);
    path_in(model, sizeof model, o->out_dir, name_m);
    path_in(state, sizeof state, o->out_dir, name_s);
    int rc = n_meta ? aria_model_save_meta(m, model, keys, vals, n_meta, err) : aria_model_save(m, model, ARIA_DT_F32, err);
    if (!rc) rc = save_state(t, st, state, err);
    if (rc) return rc;
    /* the pointer to the checkpoint goes last: until it is renamed into
       place, a resume uses the previous checkpoint */
    char prev[4096] = "";
    long prev_step = -1;
    path_in(p, sizeof p, o->out_dir, "checkpoint.json");
    json_doc *d;
    char e[64];
    if (json_parse_file(p, &d, e, sizeof e) == ARIA_OK) {
        prev_step = (long)json_int(json_get(json_root(d), "step"));
        json_doc_free(d);
    }
    int n = snprintf(json, sizeof json, "{\"step\": %ld, \"model\": \"%s\", \"state\": \"%s\"}\n", st->step, name_m,
                     name_s);
    rc = aria_write_file_atomic(p, json, (size_t)n, err);
    if (rc) return rc;
    if (prev_step >= 0 && prev_step != st->step) { /* the older one is no longer needed */
        snprintf(prev, sizeof prev, "%s/ckpt-%08ld.safetensors", o->out_dir, prev_step);
        unlink(prev);
        snprintf(prev, sizeof prev, "%s/state-%08ld.bin", o->out_dir, prev_step);
        unlink(prev);
    }
    path_in(p, sizeof p, o->out_dir, "model.safetensors");
    return n_meta ? aria_model_save_meta(m, p, keys, vals, n_meta, err) : aria_model_save(m, p, ARIA_DT_F32, err);
}

static int save_checkpoint(aria_model *m, aria_trainer *t, const run_state *st, const aria_train_opts *o,
                           aria_error *err) {
    return save_checkpoint_meta(m, t, st, o, NULL, NULL, 0, err);
}

/* ---------------------------------------------------------------------- */
/* Data                                                                   */
/* ---------------------------------------------------------------------- */

/* Global sequence number `k` (counting across epochs) -> (epoch, index)
   in a seeded permutation of that epoch. */
typedef struct {
    aria_dataset *ds;
    int epoch_cached;
    size_t *perm;
    size_t n;
    uint64_t seed;
} data_order;

static int order_epoch(data_order *d, int epoch) {
    if (d->epoch_cached == epoch) return 0;
    int de = epoch % aria_dataset_epochs(d->ds);
    size_t n = aria_dataset_size(d->ds, de);
    size_t *p = realloc(d->perm, (n ? n : 1) * sizeof *p);
    if (!p) return -1;
    d->perm = p;
    d->n = n;
    for (size_t i = 0; i < n; i++) p[i] = i;
    aria_rng r;
    aria_rng_seed(&r, d->seed * 1000003u + (uint64_t)epoch);
    aria_rng_shuffle(&r, p, n, sizeof *p);
    d->epoch_cached = epoch;
    return 0;
}

static size_t epoch_size(data_order *d, int epoch) {
    return aria_dataset_size(d->ds, epoch % aria_dataset_epochs(d->ds));
}

/* Sequence k into out; *emb (when asked) receives its file's embedding,
   NULL when it has none. */
static int fetch(data_order *d, long k, int32_t *out, const float **emb, aria_error *err) {
    int epoch = 0;
    long left = k;
    while ((size_t)left >= epoch_size(d, epoch)) {
        left -= (long)epoch_size(d, epoch);
        epoch++;
    }
    if (order_epoch(d, epoch)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (emb) *emb = aria_dataset_embedding(d->ds, epoch % aria_dataset_epochs(d->ds), d->perm[left]);
    return aria_dataset_get(d->ds, epoch % aria_dataset_epochs(d->ds), d->perm[left], out, err);
}

/* Pitch, velocity and tempo (with mixup) augmentation of one sequence,
   drawn from a generator seeded by (seed, sequence number). */
static int augment(const aria_tokenizer *tk, int32_t *ids, int n, uint64_t seed, long k) {
    aria_token *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    aria_rng r;
    aria_rng_seed(&r, seed * 7919u + (uint64_t)k + 1);
    aria_tok_decode(tk, ids, (size_t)n, a);
    if (aria_aug_tempo(tk, a, (size_t)n, b, 0.2, 1, NULL, &r) != ARIA_OK) {
        free(a);
        free(b);
        return -1;
    }
    aria_aug_pitch(b, (size_t)n, a, 5, NULL, &r);
    aria_aug_velocity(a, (size_t)n, b, 1, NULL, &r);
    aria_tok_encode(tk, b, (size_t)n, ids);
    free(a);
    free(b);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* The run                                                                */
/* ---------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int append_log(const char *dir, const char *line, aria_error *err) {
    char p[4096];
    path_in(p, sizeof p, dir, "log.jsonl");
    FILE *f = fopen(p, "a");
    if (!f) return aria_fail(err, ARIA_ERR_IO, "cannot write %s: %s", p, strerror(errno));
    fputs(line, f);
    int bad = fflush(f) != 0;
    bad |= fclose(f) != 0;
    return bad ? aria_fail(err, ARIA_ERR_IO, "cannot write %s", p) : ARIA_OK;
}

/* Drops log lines of steps after `step` (a resumed run writes them again). */
static void trim_log(const char *dir, long step) {
    char p[4096];
    path_in(p, sizeof p, dir, "log.jsonl");
    uint8_t *buf;
    size_t len;
    aria_error err;
    if (aria_read_file(p, &buf, &len, &err) != ARIA_OK) return;
    size_t keep = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        long s = -1;
        const char *k = memmem(buf + i, e - i, "\"step\": ", 8);
        if (k) s = strtol(k + 8, NULL, 10);
        if (e >= len || s > step) break; /* a torn last line, or a step to redo */
        keep = e + 1;
        i = e + 1;
    }
    aria_write_file_atomic(p, buf, keep, &err);
    free(buf);
}

/* Targets of the loss in `n` sequences: every id after the first that is
   not <P> (aria_trainer_backward's rule). */
static long count_targets(const int32_t *ids, int n, int T) {
    long c = 0;
    for (int b = 0; b < n; b++)
        for (int i = 1; i < T; i++) c += ids[(size_t)b * T + i] != ARIA_SP_PAD;
    return c;
}

/* A conditioned micro-batch's embeddings [Bl][dim] and which rows have one. */
typedef struct {
    float *emb;
    unsigned char *use;
    int dim;
} cond_rows;

static void cond_row(cond_rows *cr, int b, const float *e) {
    cr->use[b] = e != NULL;
    if (e) memcpy(cr->emb + (size_t)b * cr->dim, e, (size_t)cr->dim * sizeof *e);
}

/* The sequences of a global batch of B starting at `first` that this
   process takes: the contiguous slice rank x B/W .. (rank+1) x B/W - 1, so
   the processes together hold exactly the batch one process would. */
static int fetch_slice(data_order *order, const aria_tokenizer *tk, const aria_train_opts *o, long first, int rank,
                       int Bl, int T, int32_t *ids, cond_rows *cr, aria_error *err) {
    for (int b = 0; b < Bl; b++) {
        long k = first + (long)rank * Bl + b;
        const float *e = NULL;
        int rc = fetch(order, k, ids + (size_t)b * T, cr ? &e : NULL, err);
        if (rc) return rc;
        if (cr) cond_row(cr, b, e);
        if (o->augment && augment(tk, ids + (size_t)b * T, T, o->seed, k))
            return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    return ARIA_OK;
}

/* Validation loss: the mean over batches of B sequences of each batch's
   mean loss, each process computing its slice of every batch. Collective:
   every process calls it at the same step. *ok is 0 when there is no full
   batch or a sequence could not be read (then no line is logged, as the
   run goes on without validation). */
static float validate(aria_trainer *t, aria_dataset *val, const dist_world *w, int B, int Bl, int T, int max_batches,
                      cond_rows *cr, int *ok) {
    aria_error err = {{0}};
    int32_t *ids = malloc((size_t)Bl * T * sizeof *ids);
    int rc = dist_agree(w, ids ? ARIA_OK : ARIA_ERR_NOMEM, &err);
    size_t n = aria_dataset_size(val, 0);
    double sum = 0;
    int batches = 0;
    for (size_t i = 0; !rc && i + (size_t)B <= n && (max_batches <= 0 || batches < max_batches); i += (size_t)B) {
        for (int b = 0; b < Bl && !rc; b++) {
            size_t k = i + (size_t)w->rank * Bl + (size_t)b;
            rc = aria_dataset_get(val, 0, k, ids + (size_t)b * T, &err);
            if (cr) cond_row(cr, b, aria_dataset_embedding(val, 0, k));
        }
        float loss = 0;
        if (!rc && cr) rc = aria_trainer_loss_cond(t, ids, cr->emb, cr->use, &loss, &err);
        else if (!rc) rc = aria_trainer_loss(t, ids, &loss, &err);
        double v[2] = {0, 0}; /* loss sum and target count of this slice */
        if (!rc) {
            v[1] = (double)count_targets(ids, Bl, T);
            v[0] = (double)loss * v[1];
        }
        rc = dist_agree(w, rc, &err);
        if (rc) break;
        dist_sum_f64(w, v, 2);
        sum += v[1] > 0 ? v[0] / v[1] : 0;
        batches++;
    }
    free(ids);
    *ok = !rc && batches > 0;
    return *ok ? (float)(sum / batches) : 0;
}

/* Everything each process must agree on before the first step; a
   difference means the processes see different data, options or
   checkpoints, which would silently train W different models. */
static int check_same(const dist_world *w, const aria_train_opts *o, aria_dataset *ds, aria_dataset *val, long total,
                      long step, size_t n_params, aria_error *err) {
    long v[] = {o->batch, o->grad_accum, total, step, (long)o->seed, aria_dataset_seq_len(ds),
                aria_dataset_epochs(ds), (long)aria_dataset_size(ds, 0), val ? (long)aria_dataset_size(val, 0) : -1,
                (long)n_params, o->augment, o->condition_on != NULL, (long)(o->condition_p * 1e6f)};
    if (dist_same(w, v, (int)(sizeof v / sizeof *v))) return ARIA_OK;
    return aria_fail(err, ARIA_ERR_ARG,
                     "the %d processes disagree on the dataset, the options or the checkpoint: every process needs "
                     "the same --data and run directory contents",
                     w->size);
}

/* A checksum of the weights (FNV-1a over their bits), to check that the
   processes still hold the same ones. */
static long weights_hash(const float *p, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof u);
        h = (h ^ u) * 1099511628211u;
    }
    return (long)(h >> 1);
}

/* --condition-on: the dataset must hold embeddings, and from this model
   file (its content hash against the manifest's); *dim their size. */
static int check_condition(const aria_train_opts *o, const aria_dataset *ds, int *dim, aria_error *err) {
    const char *model, *hash;
    if (!aria_dataset_emb_info(ds, dim, &model, &hash))
        return aria_fail(err, ARIA_ERR_ARG,
                         "%s: built without per-file embeddings, which --condition-on needs; rebuild it with "
                         "`aria dataset --sep-sequences --embedding-model %s ...`",
                         o->data_dir, o->condition_on);
    char mine[64];
    int rc = aria_file_hash(o->condition_on, mine, sizeof mine, NULL, err);
    if (rc) return rc;
    if (strcmp(mine, hash) != 0)
        return aria_fail(err, ARIA_ERR_ARG,
                         "%s: not the embedding model the embeddings of %s came from (%s, content hash %s; this "
                         "file's is %s)",
                         o->condition_on, o->data_dir, model, hash, mine);
    return ARIA_OK;
}

/* Every failure below goes through dist_agree at a point all processes
   reach in the same order, so with several processes they all stop
   together and return the first failing process's message. */
int aria_train_run(const aria_train_opts *opts, aria_error *err) {
    dist_world w = dist_get();
    int lead = w.rank == 0; /* the one process that writes files */
    aria_train_opts o = *opts;
    char data_buf[4096], cond_buf[4096];
    cond_rows cr = {0};
    int emb_dim = 0;
    int rc = ARIA_OK;
    aria_dataset *ds = NULL, *val = NULL;
    aria_model *m = NULL;
    aria_trainer *t = NULL;
    aria_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    data_order order = {NULL, -1, NULL, 0, 0};
    if (opts->objective != ARIA_OBJ_LM && opts->condition_on)
        return aria_fail(err, ARIA_ERR_ARG, "conditioning on an embedding trains the next-token objective only");
    if (opts->objective != ARIA_OBJ_LM || (opts->resume && trainrun_objective_of(opts->out_dir) != ARIA_OBJ_LM))
        return trainrun_heads(opts, err);
    if (w.size == 1 && opts->launched_size > 1)
        return aria_fail(err, ARIA_ERR_ARG, "started as one of %d processes, but %s", opts->launched_size,
                         dist_built_with_mpi() ? "this program did not start MPI"
                                               : "this aria is built without MPI (install libopenmpi-dev and rebuild)");
    if (o.resume) {
        rc = read_run_json(&o, data_buf, cond_buf, sizeof data_buf, err);
        o.threads = opts->threads;
        o.progress = opts->progress;
        o.progress_ctx = opts->progress_ctx;
    } else if (lead) {
        rc = check_new_run_dir(&o, err);
    }
    if ((rc = dist_agree(&w, rc, err))) goto out;
    /* --batch is the global batch: each process takes batch / W of it */
    if (!rc && o.batch % w.size != 0)
        rc = aria_fail(err, ARIA_ERR_ARG, "--batch %d is the global batch; it must be a multiple of the %d processes",
                       o.batch, w.size);
    if (!rc) rc = aria_dataset_open(&ds, o.data_dir, "train", err);
    if ((rc = dist_agree(&w, rc, err))) goto out;
    if (aria_dataset_open(&val, o.data_dir, "val", NULL) != ARIA_OK) val = NULL;
    int T = aria_dataset_seq_len(ds), Bl = o.batch / w.size;
    if (o.condition_on) rc = check_condition(&o, ds, &emb_dim, err);
    if ((rc = dist_agree(&w, rc, err))) goto out;

    /* the model: a checkpoint (resume), initial weights, or random */
    run_state st = {0};
    char p[4096], ckpt_model[4096] = "", ckpt_state[4096] = "";
    if (o.resume) {
        rc = trainrun_resume_model(o.out_dir, ckpt_model, ckpt_state, sizeof ckpt_model, &m, err);
    } else if (o.init_path) {
        rc = name_file(err, aria_model_load(&m, o.init_path, o.has_config ? &o.config : NULL, err), o.init_path);
    } else if (o.has_config) {
        rc = aria_model_new_random(&m, &o.config, ARIA_HEAD_LM, o.seed, err);
    } else {
        rc = aria_fail(err, ARIA_ERR_ARG, "give --config (a new model) or --init (weights to start from)");
    }
    if ((rc = dist_agree(&w, rc, err))) goto out;
    /* collective, so every process asks even when it was given --threads */
    int share = w.size > 1 ? dist_default_threads(&w) : 0;
    if (o.ctx) aria_model_set_ctx(m, o.ctx); /* its threads are the caller's choice */
    if (o.threads > 0) {
        if (!o.ctx) aria_model_set_threads(m, o.threads);
    } else if (share > 0) {
        aria_model_set_threads(m, share); /* a context like the current one, this many threads */
    }
    if (o.exact < 0) o.exact = aria_model_precision(m) == ARIA_PREC_EXACT;
    const aria_model_config *mc = aria_model_get_config(m);
    /* the weights' source, for errors about the model */
    const char *model_src = o.resume ? ckpt_model : o.init_path ? o.init_path : "--config";
    if (T > mc->max_seq_len)
        rc = aria_fail(err, ARIA_ERR_ARG,
                       "%s: its sequences have %d tokens, more than the model's context of %d; rebuild it with "
                       "`aria dataset --seq-len %d ...`",
                       o.data_dir, T, mc->max_seq_len, mc->max_seq_len);
    else if (!(aria_model_heads(m) & ARIA_HEAD_LM))
        rc = aria_fail(err, ARIA_ERR_ARG,
                       "%s: the model has no lm_head, which training the next-token loss needs (make one with "
                       "`aria init --heads lm`)",
                       model_src);
    else if (o.condition_on && aria_model_adapter_dim(m) == 0) /* a new adapter, the same on every process */
        rc = name_file(err,
                       aria_model_set_heads(m, aria_model_heads(m) | ARIA_HEAD_ADAPTER, emb_dim, 0, o.seed, err),
                       model_src);
    else if (o.condition_on && aria_model_adapter_dim(m) != emb_dim)
        rc = aria_fail(err, ARIA_ERR_ARG, "%s: its embedding_adapter takes %d values, the embeddings of %s have %d",
                       model_src, aria_model_adapter_dim(m), o.data_dir, emb_dim);
    if (!rc && o.condition_on) {
        cr.dim = emb_dim;
        cr.emb = malloc((size_t)Bl * emb_dim * sizeof *cr.emb);
        cr.use = malloc((size_t)Bl);
        if (!cr.emb || !cr.use) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    if (!rc) rc = name_file(err, aria_trainer_new(&t, m, Bl, T, err), model_src);
    if ((rc = dist_agree(&w, rc, err))) goto out;

    /* every input is good: now the run directory */
    if (lead && !o.resume) {
        rc = make_run_dir(&o, err);
        if (!rc) rc = name_file(err, write_run_json(&o, mc, err), o.out_dir);
        path_in(p, sizeof p, o.out_dir, "log.jsonl");
        unlink(p);
    }
    if ((rc = dist_agree(&w, rc, err))) goto out;
    aria_trainer_set_exact(t, o.exact);
    aria_trainer_set_profile(t, o.profile);
    float *params, *grads;
    size_t n_params;
    aria_trainer_arena(t, &params, &grads, &n_params);
    /* every process starts from rank 0's weights (and, resuming, its
       moments); from then on identical all-reduced gradients keep them
       equal (checked before each checkpoint, below) */
    if ((rc = trainrun_sync_start(&w, t, &st, o.seed, o.resume ? ckpt_state : NULL, o.out_dir, err))) goto out;

    order = (data_order){ds, -1, NULL, 0, o.seed};
    long seqs_per_step = (long)o.batch * o.grad_accum;
    long total = o.steps;
    if (total <= 0) {
        long seqs = 0;
        for (int e = 0; e < o.epochs; e++) seqs += (long)epoch_size(&order, e);
        total = seqs / seqs_per_step;
    }
    if (total <= 0)
        rc = aria_fail(err, ARIA_ERR_ARG, "%s: the dataset has fewer sequences than one step needs (%ld)", o.data_dir,
                       seqs_per_step);
    if (!rc) rc = check_same(&w, &o, ds, val, total, st.step, n_params, err);
    tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    ids = malloc((size_t)Bl * T * sizeof *ids);
    if (!rc && (!ids || !tk)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if ((rc = dist_agree(&w, rc, err))) goto out;

    const aria_model_config *c = aria_model_get_config(m);
    /* Model flops per token, as the products are done: 6 per weight of the
       matrices that multiply (the layers' and the lm_head; the embedding
       is a lookup), forward and backward, plus causal attention: q.k and
       p.v over (T + 1) / 2 keys on average, 2 flops each, times 3 for the
       backward, 6 L d (T + 1). bench/bench_train.c counts the same. */
    double flops_per_token;
    {
        double d = c->d_model, ff = (double)c->ff_mult * d;
        flops_per_token = 6 * (c->n_layers * (4 * d * d + 3 * d * ff) + (double)c->vocab_size * d) +
                          6.0 * c->n_layers * d * (T + 1);
    }
    aria_adamw_opts ad = aria_adamw_defaults();
    for (; st.step < total; st.step++) {
        double t0 = now_s();
        float lr = aria_lr_at(&o, st.step, total);
        double loss_part = 0; /* this process's share of the step's loss */
        int n_cond = 0;       /* conditioned micro-batches */
        aria_trainer_zero_grad(t);
        for (int g = 0; g < o.grad_accum; g++) {
            /* drawn on every process alike, from the generator a checkpoint saves */
            int cond = o.condition_on && aria_rng_random(&st.rng) < (double)o.condition_p;
            n_cond += cond;
            rc = fetch_slice(&order, tk, &o, (st.step * o.grad_accum + g) * o.batch, w.rank, Bl, T, ids,
                             cond ? &cr : NULL, err);
            /* The loss of a micro-batch is the mean over all its targets,
               across processes: each process's gradients are scaled by its
               share of the targets, so the all-reduced sum is the gradient
               one process would compute for the whole batch. */
            double local = rc ? 0 : (double)count_targets(ids, Bl, T), global = local;
            dist_sum_f64(&w, &global, 1);
            if (!rc) {
                float scale = 1.0f / o.grad_accum, loss;
                if (global != local) scale *= global > 0 ? (float)local / (float)global : 0.0f;
                rc = cond ? aria_trainer_backward_cond(t, ids, cr.emb, cr.use, scale, &loss, err)
                          : aria_trainer_backward(t, ids, scale, &loss, err);
                if (!rc && global > 0) loss_part += (double)loss * local / global;
            }
            if ((rc = dist_agree(&w, rc, err))) break;
        }
        if (rc) break;
        dist_sum_f32(&w, grads, n_params);
        dist_sum_f64(&w, &loss_part, 1);
        float loss = (float)(loss_part / o.grad_accum);
        float norm = aria_trainer_clip(t, o.clip);
        aria_trainer_adamw(t, &ad, lr);
        long done = st.step + 1;
        int save = (o.save_every > 0 && done % o.save_every == 0) || done == total, resynced = 0;
        /* Identical all-reduced gradients keep the weights equal as long as
           MPI gives every process the same sums, which the common
           algorithms do but the standard does not promise: before a
           checkpoint the processes compare their weights and, if they have
           drifted, take rank 0's again (right after the AdamW step, while
           no product holds a packed copy). */
        if (save && w.size > 1) resynced = trainrun_resync(&w, t, params, n_params);
        double dt = now_s() - t0;
        double tokens = (double)seqs_per_step * T;
        double tps = tokens / dt;
        /* the peak is per process */
        double flops = tokens * flops_per_token;
        double mfu = flops / dt / ((o.peak_flops > 0 ? o.peak_flops : 1e12) * w.size);
        char line[512];
        if (lead) {
            int at = snprintf(line, sizeof line,
                              "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, "
                              "\"tokens_per_s\": %.1f, \"mfu\": %.4f",
                              done, loss, lr, norm, tps, mfu);
            /* conditioned micro-batches of the step (0 or 1 without --grad-accum) */
            if (o.condition_on) at += snprintf(line + at, sizeof line - (size_t)at, ", \"cond\": %d", n_cond);
            snprintf(line + at, sizeof line - (size_t)at, "}\n");
            rc = append_log(o.out_dir, line, err);
            if (!rc && resynced) {
                snprintf(line, sizeof line, "{\"step\": %ld, \"weights_resynced\": 1}\n", done);
                rc = append_log(o.out_dir, line, err);
            }
            if (!rc && o.progress) o.progress(o.progress_ctx, done, total, loss, tps);
        }
        if (val && ((o.val_every > 0 && done % o.val_every == 0) || done == total)) {
            int ok, ok_c = 0;
            float vl = validate(t, val, &w, o.batch, Bl, T, o.val_batches, NULL, &ok);
            /* and with every row that has an embedding conditioned */
            float vc = o.condition_on ? validate(t, val, &w, o.batch, Bl, T, o.val_batches, &cr, &ok_c) : 0;
            if (ok && lead && !rc) {
                if (ok_c)
                    snprintf(line, sizeof line, "{\"step\": %ld, \"val_loss\": %.6f, \"val_loss_cond\": %.6f}\n",
                             done, vl, vc);
                else
                    snprintf(line, sizeof line, "{\"step\": %ld, \"val_loss\": %.6f}\n", done, vl);
                rc = append_log(o.out_dir, line, err);
                if (!rc && o.validated) o.validated(o.progress_ctx, done, vl);
            }
        }
        if (lead && !rc && save) {
            run_state saved = st;
            saved.step = done;
            rc = name_file(err, save_checkpoint(m, t, &saved, &o, err), o.out_dir);
        }
        if ((rc = dist_agree(&w, rc, err))) break;
    }
out:
    free(order.perm);
    free(cr.emb);
    free(cr.use);
    free(ids);
    aria_tokenizer_free(tk);
    if (t && o.trainer_done) o.trainer_done(o.progress_ctx, t);
    aria_trainer_free(t);
    aria_model_free(m);
    aria_dataset_close(ds);
    aria_dataset_close(val);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* For the head objectives (trainheads.c)                                 */
/* ---------------------------------------------------------------------- */

int trainrun_name_file(aria_error *err, int rc, const char *path) { return name_file(err, rc, path); }
int trainrun_check_new_dir(const aria_train_opts *o, aria_error *err) { return check_new_run_dir(o, err); }
int trainrun_make_dir(const aria_train_opts *o, aria_error *err) { return make_run_dir(o, err); }
int trainrun_sync_start(dist_world *w, aria_trainer *t, run_state *st, uint64_t seed, const char *state,
                        const char *out_dir, aria_error *err) {
    float *params, *grads;
    size_t n_params;
    aria_trainer_arena(t, &params, &grads, &n_params);
    dist_bcast(w, params, n_params * sizeof *params);
    aria_rng_seed(&st->rng, seed);
    if (!state) return ARIA_OK;
    int rc = dist_agree(w, load_state(t, st, state, err), err);
    if (rc) return rc;
    const float *m1, *m2;
    size_t nm;
    aria_trainer_moments(t, &m1, &m2, &nm);
    dist_bcast(w, (float *)m1, nm * sizeof *m1);
    dist_bcast(w, (float *)m2, nm * sizeof *m2);
    if (w->rank == 0) trim_log(out_dir, st->step);
    return ARIA_OK;
}

void trainrun_read_opts(const json_value *r, aria_train_opts *o) {
    o->batch = (int)json_int(json_get(r, "batch"));
    o->grad_accum = (int)json_int(json_get(r, "grad_accum"));
    o->lr = (float)json_number(json_get(r, "lr"));
    o->warmup = (int)json_int(json_get(r, "warmup"));
    o->constant_lr = (int)json_int(json_get(r, "constant_lr"));
    o->clip = (float)json_number(json_get(r, "clip"));
    o->steps = (long)json_int(json_get(r, "steps"));
    o->epochs = (int)json_int(json_get(r, "epochs"));
    o->augment = (int)json_int(json_get(r, "augment"));
    o->val_every = (int)json_int(json_get(r, "val_every"));
    o->val_batches = (int)json_int(json_get(r, "val_batches")); /* absent: 0, all */
    o->save_every = (int)json_int(json_get(r, "save_every"));
    o->seed = (uint64_t)json_int(json_get(r, "seed"));
    size_t l;
    const char *prec = json_string(json_get(r, "precision"), &l);
    o->exact = prec ? (l == 5 && !memcmp(prec, "exact", 5)) : -1; /* absent: runs from before the switch */
}

int trainrun_resume_model(const char *dir, char *model, char *state, size_t cap, aria_model **m, aria_error *err) {
    char p[4096];
    path_in(p, sizeof p, dir, "checkpoint.json");
    json_doc *d;
    char e[256];
    if (json_parse_file(p, &d, e, sizeof e) != ARIA_OK)
        return aria_fail(err, ARIA_ERR_FORMAT, "%s: no checkpoint to resume from (%s)", dir, e);
    size_t l1, l2;
    const char *mm = json_string(json_get(json_root(d), "model"), &l1);
    const char *ss = json_string(json_get(json_root(d), "state"), &l2);
    if (mm) snprintf(model, cap, "%s/%.*s", dir, (int)l1, mm);
    if (ss) snprintf(state, cap, "%s/%.*s", dir, (int)l2, ss);
    json_doc_free(d);
    return name_file(err, aria_model_load(m, model, NULL, err), model);
}

int trainrun_save_checkpoint(aria_model *m, aria_trainer *t, const run_state *st, const aria_train_opts *o,
                             const char *const *keys, const char *const *vals, size_t n_meta, aria_error *err) {
    return save_checkpoint_meta(m, t, st, o, keys, vals, n_meta, err);
}
int trainrun_append_log(const char *dir, const char *line, aria_error *err) { return append_log(dir, line, err); }
double trainrun_now(void) { return now_s(); }

int trainrun_resync(dist_world *w, aria_trainer *t, float *params, size_t n_params) {
    long h = weights_hash(params, n_params);
    if (dist_same(w, &h, 1)) return 0;
    const float *m1, *m2;
    size_t nm;
    aria_trainer_moments(t, &m1, &m2, &nm);
    dist_bcast(w, params, n_params * sizeof *params);
    dist_bcast(w, (float *)m1, nm * sizeof *m1);
    dist_bcast(w, (float *)m2, nm * sizeof *m2);
    return 1;
}
int trainrun_augment(const aria_tokenizer *tk, int32_t *ids, int n, uint64_t seed, long k) {
    return augment(tk, ids, n, seed, k);
}
