/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader and
 * writer (src/model/safetensors.c).
 *
 * Each input is opened as a file image with aria_st_open_memory (which
 * copies it, so the input can be released at once). A rejected input must
 * come back as ARIA_ERR_FORMAT with a message and a zeroed handle. An
 * accepted one is checked for consistency: every byte of every tensor is
 * read (ASan sees any range outside the copy), shape x element size must
 * equal nbytes, every tensor and metadata key must be found again by
 * name. Then the tensors and metadata are written with aria_st_write to
 * a file in $FUZZ_TMPDIR (default /dev/shm, where the writer's fsync is
 * cheap), reopened, and compared field by field with the original, which
 * checks the writer's escaping of arbitrary names against the reader.
 *
 * Seeds: fuzz/corpus-safetensors/ (gitignored); see tests/data/model/
 * SOURCE.md for how they are made. Run:
 *   make fuzz && build-fuzz/fuzz_safetensors fuzz/corpus-safetensors
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t elem_size[] = {4, 2, 2};

/* Reads every byte so an out-of-range tensor is an ASan report. */
static unsigned touch(const aria_tensor *t)
{
    const uint8_t *p = t->data;
    unsigned acc = 0;
    for (size_t i = 0; i < t->nbytes; i++) acc += p[i];
    return acc;
}

static void check_tensor(const aria_safetensors *st, const aria_tensor *t)
{
    if (t->ndim < 0 || t->ndim > 4 || (unsigned)t->dtype > 2) abort();
    size_t n = elem_size[t->dtype];
    int zero = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) abort();
        if (t->shape[d] == 0) zero = 1;
        else n *= (size_t)t->shape[d]; /* cannot overflow once validated */
    }
    if ((zero ? 0 : n) != t->nbytes) abort();
    if (aria_st_find(st, t->name) != t) abort();
    /* a torch.compile prefix is found under the plain name too */
    if (strncmp(t->name, "_orig_mod.", 10) == 0 && !aria_st_find(st, t->name + 10)) abort();
    if (strncmp(t->name, "model._orig_mod.", 16) == 0) {
        char plain[256];
        int n = snprintf(plain, sizeof plain, "model.%s", t->name + 16);
        if (n > 0 && (size_t)n < sizeof plain && !aria_st_find(st, plain)) abort();
    }
}

static int same_tensor(const aria_tensor *a, const aria_tensor *b)
{
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim ||
        a->nbytes != b->nbytes)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Writes st out, reads it back, and requires the same content. */
static void round_trip(const aria_safetensors *st)
{
    const char *dir = getenv("FUZZ_TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz_st_%ld.safetensors", dir ? dir : "/dev/shm",
             (long)getpid());
    aria_error err;
    if (aria_st_write(path, st->tensors, st->n_tensors, (const char *const *)st->meta_keys,
                      (const char *const *)st->meta_values, st->n_meta, &err) != ARIA_OK)
        abort(); /* whatever the reader accepts, the writer must accept */
    aria_safetensors back;
    if (aria_st_open(&back, path, &err) != ARIA_OK) abort();
    unlink(path);
    if (back.n_tensors != st->n_tensors || back.n_meta != st->n_meta) abort();
    for (size_t i = 0; i < st->n_tensors; i++) {
        const aria_tensor *b = aria_st_find(&back, st->tensors[i].name);
        if (!b || !same_tensor(&st->tensors[i], b)) abort();
    }
    for (size_t i = 0; i < st->n_meta; i++) {
        const char *v = aria_st_meta(&back, st->meta_keys[i]);
        if (!v || strcmp(v, st->meta_values[i]) != 0) abort();
    }
    aria_st_close(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aria_safetensors st;
    aria_error err;
    err.msg[0] = 0;
    int rc = aria_st_open_memory(&st, data, size, &err);
    if (rc != ARIA_OK) {
        if (rc != ARIA_ERR_FORMAT || !err.msg[0] || st.tensors || st.priv_ || st.n_tensors)
            abort();
        aria_st_close(&st);
        return 0;
    }
    unsigned acc = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        check_tensor(&st, &st.tensors[i]);
        acc += touch(&st.tensors[i]);
    }
    for (size_t i = 0; i < st.n_meta; i++)
        if (aria_st_meta(&st, st.meta_keys[i]) == NULL) abort();
    volatile unsigned sink = acc; /* keeps the reads from being optimized away */
    (void)sink;
    round_trip(&st);
    aria_st_close(&st);
    return 0;
}
