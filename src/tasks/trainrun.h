/*
 * trainrun.h - what the next-token run (trainloop.c) shares with the runs
 * of the head objectives (trainheads.c): the run directory, checkpoints,
 * the log. Internal header; not part of the public API.
 */
#ifndef ARIA_TRAINRUN_H
#define ARIA_TRAINRUN_H

#include "aria.h"
#include "base/json.h"
#include "dist/dist.h"

typedef struct {
    long step;    /* optimizer steps done */
    aria_rng rng; /* augmentation draws */
} run_state;

int trainrun_name_file(aria_error *err, int rc, const char *path);
int trainrun_check_new_dir(const aria_train_opts *o, aria_error *err);
int trainrun_make_dir(const aria_train_opts *o, aria_error *err);
/* --resume: the files DIR/checkpoint.json names, as paths under DIR
   (model[cap], state[cap]), and the model loaded from the first. */
/* Every process starts from rank 0's weights and, with `state` (a
   --resume), from its optimizer moments and step; the log is cut back to
   that step. Collective: every process calls it. */
int trainrun_sync_start(dist_world *w, aria_trainer *t, run_state *st, uint64_t seed, const char *state,
                        const char *out_dir, aria_error *err);
/* The options every objective records in RUN/run.json (batch, schedule,
   steps, validation and checkpoint cadence, seed, precision), read back
   from its root object for --resume. */
void trainrun_read_opts(const json_value *r, aria_train_opts *o);
int trainrun_resume_model(const char *dir, char *model, char *state, size_t cap, aria_model **m, aria_error *err);
/* Checkpoint (ckpt-, state-, checkpoint.json, model.safetensors), the
   model saved with the extra metadata pairs. */
int trainrun_save_checkpoint(aria_model *m, aria_trainer *t, const run_state *st, const aria_train_opts *o,
                             const char *const *keys, const char *const *vals, size_t n_meta, aria_error *err);
int trainrun_append_log(const char *dir, const char *line, aria_error *err);
double trainrun_now(void);
/* Before a checkpoint of a run of several processes: when their weights
   differ (MPI summed differently somewhere), every process takes rank 0's
   weights and AdamW moments. Returns 1 when it had to. */
int trainrun_resync(dist_world *w, aria_trainer *t, float *params, size_t n_params);
/* The LM run's pitch/velocity/tempo augmentation of one sequence, drawn
   from (seed, k). Non-zero when out of memory. */
int trainrun_augment(const aria_tokenizer *tk, int32_t *ids, int n, uint64_t seed, long k);

/* trainheads.c: the objective recorded in DIR/run.json (ARIA_OBJ_LM when
   it names none or cannot be read), and the run of the head objectives. */
int trainrun_objective_of(const char *dir);
int trainrun_heads(const aria_train_opts *o, aria_error *err);

#endif
