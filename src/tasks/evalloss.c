/*
 * evalloss.c - the mean next-token loss of a model over a dataset split
 * (aria eval-loss): what a quantized file is judged by beside its bfloat16
 * original, and a held-out figure for any checkpoint.
 *
 * Each sequence runs through an inference session in blocks of EVAL_BLOCK
 * positions with logits for every position, so memory stays at one
 * block's logits however long the sequence. Position t is scored against
 * ids[t + 1] unless that is <P>, as the trainer scores it; a sequence's
 * trailing padding is not run at all (it has no targets). The loss of a
 * position is log-sum-exp(logits) - logits[target], summed in double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

#define EVAL_BLOCK 128
#define PAD_ID 2 /* <P> */

/* -log softmax(lg)[target] in double. */
static double position_loss(const float *lg, int V, int target) {
    float mx = lg[0];
    for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)lg[i] - mx);
    return log(s) + mx - lg[target];
}

int aria_eval_loss(const aria_model *m, const char *data_dir, const char *split, size_t max_sequences,
                   void (*progress)(void *ctx, size_t done, size_t total), void *progress_ctx,
                   aria_eval_result *out, aria_error *err) {
    memset(out, 0, sizeof *out);
    int V = aria_output_dim(m, ARIA_OUT_LOGITS);
    if (V <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no lm_head: no next-token loss");
    aria_dataset *ds;
    int rc = aria_dataset_open(&ds, data_dir, split, err);
    if (rc) return rc;
    int L = aria_dataset_seq_len(ds), ctx = aria_model_get_config(m)->max_seq_len;
    size_t n = aria_dataset_size(ds, 0);
    if (max_sequences && max_sequences < n) n = max_sequences;
    if (L > ctx) {
        aria_dataset_close(ds);
        return aria_fail(err, ARIA_ERR_ARG,
                         "the dataset's sequences are %d tokens, longer than the model's context of %d: rebuild "
                         "it with `aria dataset --seq-len %d`", L, ctx, ctx);
    }
    if (n == 0) {
        aria_dataset_close(ds);
        return aria_fail(err, ARIA_ERR_EMPTY, "the %s split has no sequences", split);
    }
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    float *logits = malloc((size_t)EVAL_BLOCK * V * sizeof *logits);
    aria_session *s = NULL;
    if (!ids || !logits) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (!rc) rc = aria_session_new(&s, m, 1, L, err);
    double sum = 0;
    uint64_t count = 0;
    for (size_t q = 0; q < n && !rc; q++) {
        rc = aria_dataset_get(ds, 0, q, ids, err);
        if (rc) break;
        int last = L - 1; /* the last position with a target: before the last non-<P> id */
        while (last > 0 && ids[last] == PAD_ID) last--;
        aria_session_reset(s);
        for (int t0 = 0; t0 < last && !rc; t0 += EVAL_BLOCK) {
            int nb = last - t0 < EVAL_BLOCK ? last - t0 : EVAL_BLOCK;
            rc = aria_session_forward(s, ids + t0, nb, ARIA_OUT_LOGITS, 1, logits, err);
            for (int i = 0; i < nb && !rc; i++) {
                int target = ids[t0 + i + 1];
                if (target == PAD_ID) continue;
                if (target < 0 || target >= V) {
                    rc = aria_fail(err, ARIA_ERR_FORMAT, "sequence %zu: id %d at position %d is outside the model's "
                                   "vocabulary (%d)", q, target, t0 + i + 1, V);
                    break;
                }
                sum += position_loss(logits + (size_t)i * V, V, target);
                count++;
            }
        }
        if (progress && !rc) progress(progress_ctx, q + 1, n);
        out->sequences = q + 1;
    }
    if (!rc && count == 0) rc = aria_fail(err, ARIA_ERR_EMPTY, "the %s split has no targets (all padding)", split);
    if (!rc) {
        out->loss = sum / (double)count;
        out->tokens = count;
    }
    aria_session_free(s);
    free(logits);
    free(ids);
    aria_dataset_close(ds);
    return rc;
}
