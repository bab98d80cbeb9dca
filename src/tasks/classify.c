/*
 * classify.c - a finetuned classifier on a whole file (aria classify, and
 * the rule the classifier finetune validates with, spec 3.5): the file's
 * chunks (aria_tok_embedding_chunks: piano only, notes_per_chunk notes,
 * <E> last), each chunk's class_head softmax at <E>, weighted by the
 * chunk's token count (the non-pad tokens), summed and normalized. The
 * class names come from the checkpoint's "aria_classes" metadata.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/json.h"
#include "base/util.h"

void aria_class_names_free(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

int aria_model_class_names(const aria_model *m, char ***names, int *n, aria_error *err) {
    *names = NULL;
    *n = 0;
    int C = aria_output_dim(m, ARIA_OUT_CLS);
    if (C <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no class_head (not a classifier)");
    char **v = calloc((size_t)C, sizeof *v);
    if (!v) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    const char *js = aria_model_meta(m, "aria_classes");
    json_doc *d = NULL;
    char e[128];
    if (js && json_parse(js, strlen(js), &d, e, sizeof e) != ARIA_OK) {
        free(v);
        return aria_fail(err, ARIA_ERR_FORMAT, "metadata aria_classes: %s", e);
    }
    const json_value *a = d ? json_root(d) : NULL;
    if (a && (json_type_of(a) != JSON_ARRAY || json_len(a) != (size_t)C)) {
        json_doc_free(d);
        free(v);
        return aria_fail(err, ARIA_ERR_FORMAT, "metadata aria_classes: not an array of the %d class names", C);
    }
    for (int i = 0; i < C; i++) {
        size_t l = 0;
        const char *s = a ? json_string(json_at(a, (size_t)i), &l) : NULL;
        char num[16];
        if (!s) {
            l = (size_t)snprintf(num, sizeof num, "%d", i);
            s = num;
        }
        v[i] = strndup(s, l);
        if (!v[i]) {
            json_doc_free(d);
            aria_class_names_free(v, C);
            return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
    }
    json_doc_free(d);
    *names = v;
    *n = C;
    return ARIA_OK;
}

int aria_classify_score(const aria_model *m, const aria_tokenizer *t, const aria_score *sc, int notes_per_chunk,
                        int max_len, float *probs, size_t *n_chunks, aria_error *err) {
    int C = aria_output_dim(m, ARIA_OUT_CLS);
    if (C <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no class_head (not a classifier)");
    int ctx = aria_model_get_config(m)->max_seq_len;
    if (max_len <= 0 || max_len > ctx) max_len = ctx;
    aria_rng rng;
    aria_rng_seed(&rng, 0);
    aria_tok_chunk *ch;
    size_t nc;
    int rc = aria_tok_embedding_chunks(t, sc, notes_per_chunk, (size_t)max_len, &rng, &ch, &nc, err);
    if (rc) return rc;
    aria_session *s = NULL;
    rc = aria_session_new(&s, m, 1, max_len, err);
    float *lg = malloc((size_t)C * sizeof *lg), *p = malloc((size_t)C * sizeof *p);
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    double *acc = calloc((size_t)C, sizeof *acc), wsum = 0;
    if (!rc && (!lg || !p || !ids || !acc)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t c = 0; c < nc && !rc; c++) {
        int len = (int)ch[c].eos_pos + 1;
        aria_tok_encode(t, ch[c].toks, (size_t)len, ids);
        aria_session_reset(s);
        rc = aria_session_forward(s, ids, len, ARIA_OUT_CLS, 0, lg, err);
        if (rc) break;
        aria_softmax_xent(lg, 1, C, NULL, p, NULL, 0);
        for (int k = 0; k < C; k++) acc[k] += (double)len * p[k];
        wsum += len;
    }
    for (int k = 0; k < C && !rc; k++) probs[k] = wsum > 0 ? (float)(acc[k] / wsum) : 0.0f;
    if (n_chunks) *n_chunks = nc;
    free(lg);
    free(p);
    free(ids);
    free(acc);
    aria_session_free(s);
    aria_tok_chunks_free(ch, nc);
    return rc;
}
