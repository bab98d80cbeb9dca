/*
 * bundled.c - what `aria generate` and `aria embed` find on their own: the
 * bundled models (models/NAME/model.safetensors, used when --model is not
 * given) and the
 * embedding a conditioned generation steers by (--embedding ROW.npy, or
 * --embedding-model EMB --embedding-midi STYLE.mid).
 *
 * The bundled model is looked for relative to the program itself
 * (/proc/self/exe), so that it is found from any working directory:
 *   DIR/models/NAME             the program at the top of the source tree (./aria)
 *   DIR/../models/NAME          a build folder's program (build-x/aria)
 *   DIR/../share/aria/models/NAME  an installed program (make install:
 *                               PREFIX/bin/aria, PREFIX/share/aria/models)
 * then ./models/NAME (the source tree as the working directory).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"

static int readable(const char *path) { return access(path, R_OK) == 0; }

int cli_bundled_model(const char *name, char *out, size_t cap) {
    static const char *const rel[] = {"models", "../models", "../share/aria/models"};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            char path[PATH_MAX + 256];
            snprintf(path, sizeof path, "%s/%s/%s/model.safetensors", exe, rel[i], name);
            if (readable(path)) {
                /* a shorter name to print when it lies under the working directory */
                char cwd[PATH_MAX], *real = realpath(path, NULL);
                const char *shown = real ? real : path;
                size_t lc = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
                if (lc && real && !strncmp(real, cwd, lc) && real[lc] == '/') shown = real + lc + 1;
                snprintf(out, cap, "%s", shown);
                free(real);
                return 0;
            }
        }
    }
    snprintf(out, cap, "models/%s/model.safetensors", name);
    if (readable(out)) return 0;
    fprintf(stderr,
            "aria: no --model given and the bundled model %s was not found (looked beside the program, in "
            "../models and ../share/aria/models from it, and in ./models): give --model M.safetensors "
            "(scripts/get-model.sh fetches the released checkpoints)\n",
            out);
    return -1;
}

/* The style embedding: a float32 row of `dim` values from an .npy file, or
   the embedding model's global embedding of a MIDI file. Errors are
   printed; *emb is malloc'd. */
int cli_cond_embedding(const char *npy, const char *emb_model, const char *midi, int threads, int dim,
                       float **emb) {
    aria_error err = {{0}};
    *emb = NULL;
    if (npy) {
        size_t rows, cols;
        if (aria_npy_read_f32(npy, emb, &rows, &cols, &err) != ARIA_OK) {
            fail_file(npy, err.msg);
            return -1;
        }
        if (rows != 1 || cols != (size_t)dim) {
            char msg[200];
            snprintf(msg, sizeof msg, "shape (%zu, %zu): one row of %d values (the model's embedding size) wanted",
                     rows, cols, dim);
            fail_file(npy, msg);
            free(*emb);
            *emb = NULL;
            return -1;
        }
        return 0;
    }
    aria_ctx *ctx = NULL;
    aria_ctx_opts co = cli_ctx_opts(threads);
    if (aria_ctx_new(&ctx, &co, &err) != ARIA_OK) {
        fprintf(stderr, "aria: %s\n", err.msg);
        return -1;
    }
    aria_model *m = NULL;
    int rc = -1;
    aria_tokenizer *tk = NULL;
    aria_score s;
    int have_score = 0;
    if (aria_model_load(&m, emb_model, NULL, &err) != ARIA_OK) {
        fail_file(emb_model, err.msg);
        goto out;
    }
    aria_model_set_ctx(m, ctx);
    int E = aria_output_dim(m, ARIA_OUT_EMB);
    if (E <= 0) {
        fail_file(emb_model, "not an embedding model (no emb_head.weight)");
        goto out;
    }
    if (E != dim) {
        char msg[200];
        snprintf(msg, sizeof msg, "its embeddings have %d values but the generation model's adapter takes %d", E,
                 dim);
        fail_file(emb_model, msg);
        goto out;
    }
    if (load_score(midi, 0, 0, &s)) goto out;
    have_score = 1;
    tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    *emb = malloc((size_t)E * sizeof **emb);
    if (!tk || !*emb) {
        fail_file(midi, "out of memory");
        goto out;
    }
    if (aria_embed_score(m, tk, &s, *emb, NULL, &err) != ARIA_OK) {
        fail_file(midi, err.msg);
        goto out;
    }
    rc = 0;
out:
    if (rc) {
        free(*emb);
        *emb = NULL;
    }
    if (have_score) aria_score_free(&s);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return rc;
}
