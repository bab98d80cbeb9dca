/*
 * sampler_dump.c - draws from aria.c's sampler (aria_sample) over rows of
 * logits that `aria logits` wrote, for bench/sampler_check.py, which draws
 * from a PyTorch transcription of the reference's sample_batch over the
 * same rows and compares the two.
 *
 *   sampler_dump LOGITS.bin IDS.txt OUT [--rows K] [--samples M] [--temp T]
 *                [--min-p P] [--top-p P] [--mask 0|1] [--near-end 0|1] [--seed S]
 *
 * LOGITS.bin: float32 [T][V] (aria logits -o); IDS.txt: the T ids it ran.
 * Row t is the next-token distribution after ids[0..t]; the grammar state
 * of that prefix decides the mask. K rows are taken evenly from the
 * positions after <S>. Writes:
 *   OUT.rows     the positions taken, one a line
 *   OUT.counts   [K][V] uint32: how often each id was drawn (M draws a row)
 *   OUT.allowed  [K][V] uint8: 1 where the grammar mask lets the id through
 *                (all 1 with --mask 0)
 *   OUT.types    [V] uint8: aria_token_kind of each id (for force_end and
 *                the type statistics)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"

static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "sampler_dump: cannot write %s\n", path);
        if (f) fclose(f);
        return -1;
    }
    return fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sampler_dump LOGITS.bin IDS.txt OUT [--rows K] [--samples M] [--temp T] "
                        "[--min-p P] [--top-p P] [--mask 0|1] [--near-end 0|1] [--seed S]\n");
        return 2;
    }
    int K = 100, M = 1000, near_end = 0;
    uint64_t seed = 1;
    aria_sample_opts o = aria_sample_defaults();
    o.mask_invalid = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--rows")) K = atoi(v);
        else if (!strcmp(k, "--samples")) M = atoi(v);
        else if (!strcmp(k, "--temp")) o.temperature = (float)atof(v);
        else if (!strcmp(k, "--min-p")) o.min_p = (float)atof(v);
        else if (!strcmp(k, "--top-p")) o.top_p = (float)atof(v);
        else if (!strcmp(k, "--mask")) o.mask_invalid = atoi(v);
        else if (!strcmp(k, "--near-end")) near_end = atoi(v);
        else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "sampler_dump: unknown option %s\n", k);
            return 2;
        }
    }
    o.force_end = near_end;
    aria_error err = {{0}};
    uint8_t *buf;
    size_t len;
    int32_t *ids;
    size_t T;
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int V = aria_tok_vocab_size(t);
    if (aria_read_file(argv[1], &buf, &len, &err) || aria_ids_read_file(argv[2], V, &ids, &T, &err)) {
        fprintf(stderr, "sampler_dump: %s\n", err.msg);
        return 1;
    }
    if (len != T * (size_t)V * 4) {
        fprintf(stderr, "sampler_dump: %s holds %zu bytes, %zu ids x %d logits need %zu\n", argv[1], len, T, V,
                T * (size_t)V * 4);
        return 1;
    }
    const float *logits = (const float *)buf;
    size_t start = 0;
    while (start < T && ids[start] != ARIA_SP_BOS) start++;
    start++;
    if (start >= T) {
        fprintf(stderr, "sampler_dump: no <S> in the ids\n");
        return 1;
    }
    if ((size_t)K > T - start) K = (int)(T - start);
    uint32_t *counts = calloc((size_t)K * V, sizeof *counts);
    uint8_t *allowed = malloc((size_t)K * V), *types = malloc((size_t)V);
    float *row = malloc((size_t)V * sizeof *row);
    FILE *rows = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s.rows", argv[3]);
    rows = fopen(path, "w");
    if (!counts || !allowed || !types || !row || !rows) return 1;
    for (int i = 0; i < V; i++) types[i] = (uint8_t)aria_tok_token(t, i).kind;
    aria_rng rng;
    aria_rng_seed(&rng, seed);
    for (int k = 0; k < K; k++) {
        size_t pos = start + (size_t)k * (T - start) / (size_t)K;
        fprintf(rows, "%zu\n", pos);
        aria_gen_state st;
        aria_gen_state_init(&st, t, ids, pos + 1);
        const float *lg = logits + pos * (size_t)V;
        /* which ids the mask lets through: greedy over one-hot rows would be
           slow; instead mask a copy of zeros through the same sampler path */
        if (o.mask_invalid) {
            aria_sample_opts g = o;
            g.temperature = 0;
            g.force_end = 0;
            for (int i = 0; i < V; i++) row[i] = 0.0f;
            (void)aria_sample(t, row, V, &g, &st, 0, &rng); /* the mask is applied in place */
            for (int i = 0; i < V; i++) allowed[(size_t)k * V + i] = row[i] == 0.0f;
        } else {
            memset(allowed + (size_t)k * V, 1, (size_t)V);
        }
        for (int s = 0; s < M; s++) {
            memcpy(row, lg, (size_t)V * sizeof *row);
            int32_t id = aria_sample(t, row, V, &o, &st, near_end, &rng);
            counts[(size_t)k * V + id]++;
        }
    }
    fclose(rows);
    int rc = 0;
    snprintf(path, sizeof path, "%s.counts", argv[3]);
    rc |= write_all(path, counts, (size_t)K * V * sizeof *counts);
    snprintf(path, sizeof path, "%s.allowed", argv[3]);
    rc |= write_all(path, allowed, (size_t)K * V);
    snprintf(path, sizeof path, "%s.types", argv[3]);
    rc |= write_all(path, types, (size_t)V);
    free(counts), free(allowed), free(types), free(row), free(buf), free(ids);
    aria_tokenizer_free(t);
    return rc ? 1 : 0;
}
