/*
 * test_safetensors.c - Criterion tests of src/model/safetensors.c: writing and
 * re-reading files of every dtype, the byte layout against the bytes the
 * safetensors library's own serializer tests expect, "_orig_mod." lookup,
 * every class of corrupt header (each must give ARIA_ERR_FORMAT with a
 * message naming the tensor or field, never a crash), the bf16/f16
 * conversions, and inputs found by fuzz/fuzz_safetensors.c
 * (tests/data/model/fuzz, replayed by safetensors_read::fuzz_regressions).
 *
 * Fixtures are made in the tests themselves, so nothing here needs
 * ../shared. The suite safetensors_vectors additionally opens the golden
 * tiny-model files in ../shared/vectors/model when ../shared is present
 * (checks names, shapes, the bf16 rounding, and that rewriting a file
 * reproduces it byte for byte; a missing file there fails) and skips in a
 * checkout without ../shared.
 *
 * Every corrupt input is checked twice: through aria_st_open_memory and
 * through a real file with aria_st_open (the mmap path).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aria.h"

#define SHARED_MODEL "../shared/vectors/model/"
#define FUZZ_INPUTS "tests/data/model/fuzz"
#define FUZZ_INPUT_FILES 28 /* in the repository today: fewer means some went missing */

/* ---------------------------------------------------------------------- */
/* helpers                                                                */
/* ---------------------------------------------------------------------- */

/* A fresh directory under /tmp; tests run in parallel processes. */
static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/aria_st_testXXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* Removes dir and the plain files in it. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* Whole file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
    uint8_t *buf = NULL;
    aria_error e;
    cr_assert_eq(aria_read_file(path, &buf, n, &e), ARIA_OK, "%s: %s", path, e.msg);
    return buf;
}

/* A file image: LE length of `header`, the header, then `dlen` data bytes
   (0, 1, 2, ... mod 256). */
static uint8_t *image(const char *header, size_t dlen, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + dlen;
    uint8_t *b = malloc(*len);
    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < dlen; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static int is_zeroed(const aria_safetensors *st)
{
    return !st->tensors && !st->n_tensors && !st->meta_keys && !st->meta_values && !st->n_meta &&
           !st->priv_;
}

/* Opens bytes[0..len) from memory and from a file; both must fail with
   ARIA_ERR_FORMAT, leave the handle zeroed, and say `want`. */
static void expect_bad(const uint8_t *bytes, size_t len, const char *want)
{
    aria_safetensors st;
    aria_error e = {{0}};
    int rc = aria_st_open_memory(&st, bytes, len, &e);
    cr_expect_eq(rc, ARIA_ERR_FORMAT, "memory: rc %d (%s), wanted a format error about '%s'", rc,
                 e.msg, want);
    cr_expect(strstr(e.msg, want), "memory: message '%s' lacks '%s'", e.msg, want);
    cr_expect(is_zeroed(&st));
    aria_st_close(&st);

    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    write_bytes(path, bytes, len);
    memset(&e, 0, sizeof e);
    rc = aria_st_open(&st, path, &e);
    cr_expect_eq(rc, ARIA_ERR_FORMAT, "file: rc %d (%s), wanted '%s'", rc, e.msg, want);
    cr_expect(strstr(e.msg, want), "file: message '%s' lacks '%s'", e.msg, want);
    cr_expect(is_zeroed(&st));
    aria_st_close(&st);
    remove_dir(dir);
}

/* expect_bad on a header followed by dlen data bytes. */
static void expect_bad_header(const char *header, size_t dlen, const char *want)
{
    size_t len;
    uint8_t *b = image(header, dlen, &len);
    expect_bad(b, len, want);
    free(b);
}

static void open_ok(aria_safetensors *st, const uint8_t *bytes, size_t len)
{
    aria_error e = {{0}};
    int rc = aria_st_open_memory(st, bytes, len, &e);
    cr_assert_eq(rc, ARIA_OK, "open failed: %s", e.msg);
}

static void open_header_ok(aria_safetensors *st, const char *header, size_t dlen)
{
    size_t len;
    uint8_t *b = image(header, dlen, &len);
    open_ok(st, b, len);
    free(b); /* the handle owns a copy */
}

static aria_tensor tensor(const char *name, aria_dtype dt, int ndim, const int64_t *shape,
                          const void *data, size_t nbytes)
{
    aria_tensor t = {.name = name, .dtype = dt, .ndim = ndim, .data = data, .nbytes = nbytes};
    for (int i = 0; shape && i < ndim && i < 4; i++) t.shape[i] = shape[i];
    return t;
}

/* Writes tensors/metadata to dir/name and returns the file's bytes. */
static uint8_t *write_and_slurp(const char *dir, const char *name, const aria_tensor *t, size_t n,
                                const char *const *mk, const char *const *mv, size_t nm,
                                size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    aria_error e = {{0}};
    int rc = aria_st_write(path, t, n, mk, mv, nm, &e);
    cr_assert_eq(rc, ARIA_OK, "write failed: %s", e.msg);
    return slurp(path, len);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------------- */
/* writing and round trips                                                */
/* ---------------------------------------------------------------------- */

Test(safetensors_write, round_trip_all_dtypes)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    float f32[6] = {0.0f, 1.0f, -2.5f, 3.25f, 1e-30f, -0.0f};
    uint16_t bf16[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};
    uint16_t f16[4] = {0x3c00, 0x8001, 0x7bff, 0xfc00};
    float scalar = 42.0f;
    aria_tensor t[5] = {
        tensor("w.f32", ARIA_DT_F32, 2, (int64_t[]){2, 3}, f32, sizeof f32),
        tensor("w.bf16", ARIA_DT_BF16, 1, (int64_t[]){4}, bf16, sizeof bf16),
        tensor("w.f16", ARIA_DT_F16, 4, (int64_t[]){1, 2, 1, 2}, f16, sizeof f16),
        tensor("scalar", ARIA_DT_F32, 0, NULL, &scalar, 4),
        tensor("empty", ARIA_DT_F32, 2, (int64_t[]){0, 5}, NULL, 0),
    };
    const char *mk[] = {"format", "note \"q\"\n"}, *mv[] = {"pt", "caf\xc3\xa9 \x01"};
    size_t len;
    uint8_t *bytes = write_and_slurp(dir, "rt.safetensors", t, 5, mk, mv, 2, &len);

    aria_safetensors st;
    open_ok(&st, bytes, len);
    cr_assert_eq(st.n_tensors, 5);
    for (size_t i = 0; i < 5; i++) {
        const aria_tensor *g = aria_st_find(&st, t[i].name);
        cr_assert_not_null(g, "%s missing", t[i].name);
        cr_expect_str_eq(g->name, t[i].name);
        cr_expect_eq(g->dtype, t[i].dtype);
        cr_expect_eq(g->ndim, t[i].ndim);
        for (int d = 0; d < g->ndim; d++) cr_expect_eq(g->shape[d], t[i].shape[d]);
        cr_expect_eq(g->nbytes, t[i].nbytes);
        if (g->nbytes) cr_expect(memcmp(g->data, t[i].data, g->nbytes) == 0, "%s data", g->name);
    }
    cr_assert_eq(st.n_meta, 2);
    cr_expect_str_eq(aria_st_meta(&st, "format"), "pt");
    cr_expect_str_eq(aria_st_meta(&st, "note \"q\"\n"), "caf\xc3\xa9 \x01");
    cr_expect_null(aria_st_meta(&st, "missing"));
    cr_expect_null(aria_st_find(&st, "missing"));

    /* layout: header length a multiple of 8, data right after it */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | bytes[i];
    cr_expect_eq(hl % 8, 0);
    cr_expect_eq(len, 8 + hl + sizeof f32 + sizeof bf16 + sizeof f16 + 4);
    /* F32 tensors first (by name), then BF16, then F16, as safetensors orders them */
    const char *want =
        "{\"__metadata__\":{\"format\":\"pt\",\"note \\\"q\\\"\\n\":\"caf\xc3\xa9 \\u0001\"},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
        "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
        "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[4,28]},"
        "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[28,36]},"
        "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[1,2,1,2],\"data_offsets\":[36,44]}}";
    size_t wl = strlen(want);
    cr_assert_geq(hl, wl);
    cr_expect(memcmp(bytes + 8, want, wl) == 0, "header is\n%.*s", (int)hl,
              (const char *)bytes + 8);
    for (size_t i = wl; i < hl; i++) cr_expect_eq(bytes[8 + i], ' ');
    aria_st_close(&st);
    aria_st_close(&st); /* closing twice is harmless */
    free(bytes);
    remove_dir(dir);
}

/* The exact bytes the safetensors library's own tests (safetensors/src/
   tensor.rs: test_serialization, test_serialization_forced_alignement,
   test_empty) expect from its serializer. */
Test(safetensors_write, matches_reference_serializer)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    float v[6] = {0, 1, 2, 3, 4, 5};
    size_t len;

    aria_tensor a = tensor("attn.0", ARIA_DT_F32, 3, (int64_t[]){1, 2, 3}, v, sizeof v);
    uint8_t *b = write_and_slurp(dir, "a", &a, 1, NULL, NULL, 0, &len);
    static const char want_a[] =
        "@\0\0\0\0\0\0\0{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}"
        "\0\0\0\0\0\0\x80?\0\0\0@\0\0@@\0\0\x80@\0\0\xa0@";
    cr_assert_eq(len, sizeof want_a - 1);
    cr_expect(memcmp(b, want_a, len) == 0);
    free(b);

    a = tensor("attn0", ARIA_DT_F32, 4, (int64_t[]){1, 1, 2, 3}, v, sizeof v);
    b = write_and_slurp(dir, "b", &a, 1, NULL, NULL, 0, &len);
    static const char want_b[] =
        "H\0\0\0\0\0\0\0{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}"
        "       \0\0\0\0\0\0\x80?\0\0\0@\0\0@@\0\0\x80@\0\0\xa0@";
    cr_assert_eq(len, sizeof want_b - 1);
    cr_expect(memcmp(b, want_b, len) == 0);
    free(b);

    b = write_and_slurp(dir, "c", NULL, 0, NULL, NULL, 0, &len);
    cr_assert_eq(len, 16);
    cr_expect(memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(b);

    const char *mk[] = {"framework"}, *mv[] = {"pt"};
    b = write_and_slurp(dir, "d", NULL, 0, mk, mv, 1, &len);
    static const char want_d[] = "(\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    cr_assert_eq(len, sizeof want_d - 1);
    cr_expect(memcmp(b, want_d, len) == 0);
    free(b);
    remove_dir(dir);
}

Test(safetensors_write, overwrite_is_atomic_and_leaves_no_temp)
{
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    float v[2] = {1, 2};
    aria_tensor t = tensor("x", ARIA_DT_F32, 1, (int64_t[]){2}, v, sizeof v);
    aria_error e;
    cr_assert_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_OK, "%s", e.msg);
    chmod(path, 0640);
    t.shape[0] = 1;
    t.nbytes = 4;
    cr_assert_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_OK, "%s", e.msg);
    cr_expect_eq(count_entries(dir), 1);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0640, "mode of the replaced file is kept");
    aria_safetensors st;
    cr_assert_eq(aria_st_open(&st, path, &e), ARIA_OK, "%s", e.msg);
    cr_expect_eq(st.tensors[0].shape[0], 1);
    aria_st_close(&st);

    /* a write that fails leaves the old file untouched */
    t.nbytes = 8; /* shape says 4 */
    memset(&e, 0, sizeof e);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "'x'"), "%s", e.msg);
    cr_expect_eq(count_entries(dir), 1);
    cr_assert_eq(aria_st_open(&st, path, &e), ARIA_OK, "%s", e.msg);
    aria_st_close(&st);
    remove_dir(dir);
}

Test(safetensors_write, rejects_bad_input)
{
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    float v[4] = {0};
    aria_error e;
    aria_tensor two[2] = {tensor("same", ARIA_DT_F32, 1, (int64_t[]){1}, v, 4),
                          tensor("same", ARIA_DT_F32, 1, (int64_t[]){1}, v, 4)};
    memset(&e, 0, sizeof e);
    cr_expect_eq(aria_st_write(path, two, 2, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "'same' appears twice"), "%s", e.msg);

    aria_tensor t = tensor("__metadata__", ARIA_DT_F32, 1, (int64_t[]){1}, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    t = tensor("d", (aria_dtype)7, 1, (int64_t[]){1}, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "dtype"), "%s", e.msg);
    t = tensor("n", ARIA_DT_F32, 1, (int64_t[]){-1}, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    t = tensor("k", ARIA_DT_F32, 5, NULL, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    t = tensor("big", ARIA_DT_F32, 2, (int64_t[]){INT64_MAX, 4}, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    t = tensor("nodata", ARIA_DT_BF16, 1, (int64_t[]){2}, NULL, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    t = tensor(NULL, ARIA_DT_F32, 1, (int64_t[]){1}, v, 4);
    cr_expect_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    const char *mk[] = {"a", "a"}, *mv[] = {"1", "2"};
    cr_expect_eq(aria_st_write(path, NULL, 0, mk, mv, 2, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "'a'"), "%s", e.msg);
    const char *nk[] = {NULL}, *nv[] = {"x"};
    cr_expect_eq(aria_st_write(path, NULL, 0, nk, nv, 1, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_st_write(NULL, NULL, 0, NULL, NULL, 0, &e), ARIA_ERR_ARG);
    cr_expect_eq(count_entries(dir), 0, "no file after failed writes");

    /* unwritable place: an I/O error and nothing created */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", dir);
    memset(&e, 0, sizeof e);
    cr_expect_eq(aria_st_write(bad, NULL, 0, NULL, NULL, 0, &e), ARIA_ERR_IO);
    cr_expect(e.msg[0]);
    cr_expect_eq(count_entries(dir), 0);
    remove_dir(dir);
}

/* Tensors given out of order come back sorted dtype-first in the file but
   every one is found, and the handle lists them in file order. */
Test(safetensors_write, dtype_then_name_order)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    uint16_t h[1] = {0x3c00};
    float f[1] = {1};
    aria_tensor t[4] = {
        tensor("a", ARIA_DT_F16, 1, (int64_t[]){1}, h, 2),
        tensor("b", ARIA_DT_BF16, 1, (int64_t[]){1}, h, 2),
        tensor("z", ARIA_DT_F32, 1, (int64_t[]){1}, f, 4),
        tensor("c", ARIA_DT_F32, 1, (int64_t[]){1}, f, 4),
    };
    size_t len;
    uint8_t *b = write_and_slurp(dir, "o", t, 4, NULL, NULL, 0, &len);
    aria_safetensors st;
    open_ok(&st, b, len);
    const char *order[] = {"c", "z", "b", "a"};
    for (int i = 0; i < 4; i++) cr_expect_str_eq(st.tensors[i].name, order[i]);
    cr_expect_eq((const uint8_t *)aria_st_find(&st, "a")->data -
                     (const uint8_t *)aria_st_find(&st, "c")->data,
                 10);
    aria_st_close(&st);
    free(b);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------- */
/* reading                                                                */
/* ---------------------------------------------------------------------- */

Test(safetensors_read, orig_mod_prefixes)
{
    aria_safetensors st;
    open_header_ok(&st,
                   "{\"_orig_mod.model.tok_embeddings.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[0,4]},"
                   "\"_orig_mod.lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[4,8]},"
                   "\"model._orig_mod.out_layer_norm.bias\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[8,12]},"
                   "\"emb_head.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                   "\"_orig_mod.emb_head.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[16,20]}}",
                   20);
    const aria_tensor *t = aria_st_find(&st, "model.tok_embeddings.weight");
    cr_assert_not_null(t);
    cr_expect_str_eq(t->name, "_orig_mod.model.tok_embeddings.weight");
    t = aria_st_find(&st, "lm_head.weight");
    cr_assert_not_null(t);
    cr_expect_str_eq(t->name, "_orig_mod.lm_head.weight");
    t = aria_st_find(&st, "model.out_layer_norm.bias");
    cr_assert_not_null(t);
    cr_expect_str_eq(t->name, "model._orig_mod.out_layer_norm.bias");
    t = aria_st_find(&st, "emb_head.weight"); /* the exact name wins */
    cr_assert_not_null(t);
    cr_expect_str_eq(t->name, "emb_head.weight");
    cr_expect_null(aria_st_find(&st, "out_layer_norm.bias"));
    cr_expect_null(aria_st_find(&st, "model."));
    cr_expect_null(aria_st_find(&st, ""));
    cr_expect_null(aria_st_find(&st, NULL));
    cr_expect_null(aria_st_find(NULL, "x"));
    aria_st_close(&st);
    aria_safetensors zero = {0};
    cr_expect_null(aria_st_find(&zero, "x"));
    cr_expect_null(aria_st_meta(&zero, "x"));
    aria_st_close(&zero);
}

Test(safetensors_read, accepts_gaps_padding_and_empty_tensors)
{
    aria_safetensors st;
    /* a gap (4..8) and trailing bytes are harmless; zero-size tensors may
       sit anywhere, even on another tensor's range */
    open_header_ok(&st,
                   "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
                   "\"e\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[2,2]},"
                   "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,8],"
                   "\"data_offsets\":[16,16]},"
                   "\"__metadata__\":{},\"extra\":{\"dtype\":\"F32\",\"shape\":[],"
                   "\"data_offsets\":[12,16],\"unknown\":[1,2]}}   \t\n",
                   20);
    cr_expect_eq(st.n_tensors, 5);
    cr_expect_eq(st.n_meta, 0);
    const aria_tensor *a = aria_st_find(&st, "a");
    cr_assert_not_null(a);
    cr_expect_eq(((const uint8_t *)a->data)[1], 1);
    cr_expect_eq(aria_st_find(&st, "extra")->ndim, 0);
    cr_expect_eq(aria_st_find(&st, "z")->nbytes, 0);
    aria_st_close(&st);
}

Test(safetensors_read, errors_name_the_problem)
{
    expect_bad((const uint8_t *)"", 0, "too short");
    expect_bad((const uint8_t *)"\x02\0\0\0\0\0\0", 7, "too short");
    expect_bad((const uint8_t *)"\x10\0\0\0\0\0\0\0{}", 10, "runs past the end of the file");
    expect_bad((const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, "exceeds");
    expect_bad((const uint8_t *)"\x01\xe1\xf5\x05\0\0\0\0{}", 10, "exceeds"); /* 100000001 */
    expect_bad((const uint8_t *)"\x00\xe1\xf5\x05\0\0\0\0{}", 10,
               "runs past the end"); /* 1e8: allowed */
    expect_bad_header("", 0, "not valid JSON");
    expect_bad_header("{\"a\":", 0, "not valid JSON");
    expect_bad_header("not json", 0, "not valid JSON");
    expect_bad_header("{} x", 0, "not valid JSON");
    expect_bad_header("[1,2]", 0, "not a JSON object");
    expect_bad_header("\"str\"", 0, "not a JSON object");
    expect_bad_header("{\"t\":[]}", 0, "tensor 't': entry is not a JSON object");
    expect_bad_header("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 't': dtype");
    expect_bad_header("{\"t\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 't': dtype");
    expect_bad_header("{\"w.q\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w.q': unsupported dtype 'I64'");
    expect_bad_header("{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                      "'F64'");
    expect_bad_header("{\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "'f32'");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 't': shape");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 't': 5 dimensions");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 't': shape[0]");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                      "shape[0]");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                      "\"data_offsets\":[0,4]}}",
                      4, "tensor 't': shape has too many elements");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                      "\"data_offsets\":[0,4]}}",
                      4, "do not fill");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                      "tensor 't': 6 F32 elements do not fill data_offsets [0,20] (20 bytes)");
    expect_bad_header("{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "do not fill");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 't': data_offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                      "data_offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                      "data_offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                      "data_offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                      "run backwards");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7,
                      "tensor 't': data_offsets [0,8] run past the data section (7 bytes)");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
                      "\"data_offsets\":[18446744073709551612,18446744073709551616]}}",
                      4, "data_offsets");
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "tensors 'a' and 'b' have overlapping data_offsets");
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "tensor 'a' appears twice");
    expect_bad_header("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "NUL");
    expect_bad_header("{\"__metadata__\":[]}", 0, "__metadata__ is not a JSON object");
    expect_bad_header("{\"__metadata__\":{\"format\":1}}", 0,
                      "__metadata__ value of 'format' is not a string");
    expect_bad_header("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "NUL");
    expect_bad_header("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "key 'k' appears twice");
    expect_bad_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
}

/* A valid file cut short anywhere must fail cleanly, never crash. */
Test(safetensors_read, every_truncation_fails_cleanly)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    float v[3] = {1, 2, 3};
    aria_tensor t[2] = {tensor("x", ARIA_DT_F32, 1, (int64_t[]){3}, v, 12),
                        tensor("y", ARIA_DT_BF16, 1, (int64_t[]){2}, v, 4)};
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    size_t len;
    uint8_t *b = write_and_slurp(dir, "t", t, 2, mk, mv, 1, &len);
    for (size_t cut = 0; cut < len; cut++) {
        aria_safetensors st;
        aria_error e = {{0}};
        int rc = aria_st_open_memory(&st, b, cut, &e);
        cr_expect_eq(rc, ARIA_ERR_FORMAT, "cut at %zu: rc %d", cut, rc);
        cr_expect(e.msg[0], "cut at %zu: no message", cut);
        aria_st_close(&st);
    }
    free(b);
    remove_dir(dir);
}

Test(safetensors_read, io_errors_and_arguments)
{
    aria_safetensors st;
    aria_error e = {{0}};
    cr_expect_eq(aria_st_open(&st, "/nonexistent/x.safetensors", &e), ARIA_ERR_IO);
    cr_expect(strstr(e.msg, "cannot open"), "%s", e.msg);
    cr_expect(is_zeroed(&st));
    cr_expect_eq(aria_st_open(&st, "/tmp", &e), ARIA_ERR_IO);
    cr_expect_eq(aria_st_open(&st, NULL, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_st_open(NULL, "x", &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_st_open_memory(&st, NULL, 5, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_st_open_memory(NULL, (const uint8_t *)"", 0, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_st_open_memory(&st, NULL, 0, NULL), ARIA_ERR_FORMAT);
    aria_st_close(NULL);
}

/* Read into huge-page memory (what aria_model_load does): the same
   tensors, names, metadata and bytes as the mapping, data 2 MiB-aligned
   at the file's start; errors as aria_st_open's; every truncation of a
   file on disk refused. */
Test(safetensors_read, resident_equals_mapped)
{
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    float v[5] = {1, -2, 3.5f, 4, 5};
    aria_tensor t[2] = {tensor("x", ARIA_DT_F32, 1, (int64_t[]){5}, v, 20),
                        tensor("y", ARIA_DT_BF16, 2, (int64_t[]){2, 2}, v, 8)};
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    size_t len;
    uint8_t *b = write_and_slurp(dir, "t", t, 2, mk, mv, 1, &len);
    snprintf(path, sizeof path, "%s/t", dir);
    aria_safetensors a, r;
    aria_error e = {{0}};
    cr_assert_eq(aria_st_open(&a, path, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_st_open_resident(&r, path, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(r.n_tensors, a.n_tensors);
    for (size_t i = 0; i < a.n_tensors; i++) {
        const aria_tensor *x = aria_st_find(&r, a.tensors[i].name);
        cr_assert_not_null(x, "%s", a.tensors[i].name);
        cr_expect_eq(x->dtype, a.tensors[i].dtype);
        cr_expect_eq(x->nbytes, a.tensors[i].nbytes);
        cr_expect(x->data != a.tensors[i].data);
        cr_expect_eq(memcmp(x->data, a.tensors[i].data, x->nbytes), 0, "%s", x->name);
    }
    cr_expect_str_eq(aria_st_meta(&r, "format"), "pt");
    /* the file's first byte sits on a 2 MiB boundary: the header length
       and the header come first, so the data of the first tensor lies
       8 + header bytes after one (not under AddressSanitizer, where the
       buffer is a plain calloc so that overruns are still caught) */
#if !defined(__SANITIZE_ADDRESS__)
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++) hl |= (uint64_t)b[k] << (8 * k);
    const aria_tensor *first = aria_st_find(&r, "x");
    cr_expect_eq(((uintptr_t)first->data - 8 - hl) % (2u << 20), 0);
#endif
    aria_st_close(&a);
    aria_st_close(&r);
    cr_expect(is_zeroed(&r));

    cr_expect_eq(aria_st_open_resident(&r, "/nonexistent/x.safetensors", &e), ARIA_ERR_IO);
    cr_expect(strstr(e.msg, "cannot open"), "%s", e.msg);
    cr_expect(is_zeroed(&r));
    cr_expect_eq(aria_st_open_resident(&r, "/tmp", &e), ARIA_ERR_IO);
    cr_expect_eq(aria_st_open_resident(NULL, path, &e), ARIA_ERR_ARG);
    for (size_t cut = 0; cut < len; cut += 7) {
        write_bytes(path, b, cut);
        int rc = aria_st_open_resident(&r, path, &e);
        cr_expect_eq(rc, ARIA_ERR_FORMAT, "cut at %zu: rc %d", cut, rc);
        cr_expect(is_zeroed(&r), "cut at %zu", cut);
    }
    free(b);
    remove_dir(dir);
}

/* A pipe cannot be mapped: the reader falls back to reading it. */
Test(safetensors_read, pipe_without_mmap)
{
    size_t len;
    uint8_t *b = image("{\"p\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, &len);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(write(fds[1], b, len), (ssize_t)len);
    close(fds[1]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
    if (access(path, R_OK) != 0) cr_skip("no /proc");
    aria_safetensors st;
    aria_error e = {{0}};
    cr_assert_eq(aria_st_open(&st, path, &e), ARIA_OK, "%s", e.msg);
    const aria_tensor *t = aria_st_find(&st, "p");
    cr_assert_not_null(t);
    cr_expect_eq(((const uint8_t *)t->data)[3], 3);
    aria_st_close(&st);
    close(fds[0]);
    free(b);
}

/* Writes st to dir, reopens it and compares every tensor and pair. */
static void expect_rewrite_same(const aria_safetensors *st, const char *dir, const char *what)
{
    size_t len;
    uint8_t *b = write_and_slurp(dir, "rw", st->tensors, st->n_tensors,
                                 (const char *const *)st->meta_keys,
                                 (const char *const *)st->meta_values, st->n_meta, &len);
    aria_safetensors back;
    open_ok(&back, b, len);
    cr_expect_eq(back.n_tensors, st->n_tensors, "%s", what);
    for (size_t i = 0; i < st->n_tensors; i++) {
        const aria_tensor *a = &st->tensors[i], *c = aria_st_find(&back, a->name);
        cr_assert_not_null(c, "%s: tensor %zu lost", what, i);
        cr_expect(a->dtype == c->dtype && a->ndim == c->ndim && a->nbytes == c->nbytes &&
                      memcmp(a->shape, c->shape, sizeof a->shape) == 0 &&
                      (!a->nbytes || memcmp(a->data, c->data, a->nbytes) == 0),
                  "%s: tensor %zu differs", what, i);
    }
    for (size_t i = 0; i < st->n_meta; i++) {
        const char *v = aria_st_meta(&back, st->meta_keys[i]);
        cr_expect(v && strcmp(v, st->meta_values[i]) == 0, "%s: metadata %zu", what, i);
    }
    aria_st_close(&back);
    free(b);
}

/* Inputs from fuzz/fuzz_safetensors.c (see tests/data/model/SOURCE.md):
   ok-* must open and survive a write/read round trip, err-* must be
   format errors, and anything else (a future crash-* input) must simply
   not crash. */
Test(safetensors_read, fuzz_regressions)
{
    DIR *d = opendir(FUZZ_INPUTS);
    cr_assert_not_null(d, "%s is missing from the repository", FUZZ_INPUTS);
    char dir[64];
    make_dir(dir, sizeof dir);
    struct dirent *ent;
    int n = 0;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FUZZ_INPUTS, ent->d_name);
        size_t len;
        uint8_t *b = slurp(path, &len);
        aria_safetensors st;
        aria_error e = {{0}};
        int rc = aria_st_open_memory(&st, b, len, &e);
        if (strncmp(ent->d_name, "ok-", 3) == 0) {
            cr_expect_eq(rc, ARIA_OK, "%s: %s", path, e.msg);
            if (rc == ARIA_OK) expect_rewrite_same(&st, dir, path);
        } else if (strncmp(ent->d_name, "err-", 4) == 0) {
            cr_expect_eq(rc, ARIA_ERR_FORMAT, "%s: rc %d", path, rc);
            cr_expect(e.msg[0], "%s: no message", path);
        } else {
            cr_expect(rc == ARIA_OK || (rc == ARIA_ERR_FORMAT && e.msg[0]), "%s: rc %d", path, rc);
        }
        aria_st_close(&st);
        free(b);
        n++;
    }
    closedir(d);
    remove_dir(dir);
    cr_log_info("%s: %d inputs replayed", FUZZ_INPUTS, n);
    cr_expect_gt(n, 0);
    cr_expect_geq(n, FUZZ_INPUT_FILES, "%s: %d inputs replayed, expected at least %d", FUZZ_INPUTS,
                  n, FUZZ_INPUT_FILES);
}

/* ---------------------------------------------------------------------- */
/* bf16 / f16                                                             */
/* ---------------------------------------------------------------------- */

/* Reference rounding, written differently from the library: pick the
   nearer of the two bf16 neighbours with exact double arithmetic. */
static uint16_t ref_bf16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    if ((u & 0xffff) == 0) return lo; /* exact, infinities included */
    double x = f, dl = fabs(x - (double)bits_f32((uint32_t)lo << 16));
    if ((hi & 0x7fff) == 0x7f80) { /* the upper neighbour is infinity: use 2^128 */
        double dh = fabs(fabs(x) - ldexp(1.0, 128));
        if (dl < dh || (dl == dh && !(lo & 1))) return lo;
        return hi;
    }
    double dh = fabs(x - (double)bits_f32((uint32_t)hi << 16));
    if (dl < dh || (dl == dh && !(lo & 1))) return lo;
    return hi;
}

Test(safetensors_convert, bf16_round_to_nearest_even)
{
    struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* tie, even stays */
        {0x3f818000, 0x3f82},                       /* tie, odd rounds up */
        {0x3f808001, 0x3f81}, {0x3f807fff, 0x3f80}, {0xbf808001, 0xbf81},
        {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7f7fff, 0x7f7f}, {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x80000000, 0x8000}, {0x00000000, 0x0000}, {0x00008000, 0x0000},
        {0x00018000, 0x0002}, {0x00000001, 0x0000}, {0x807fffff, 0x8080},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(aria_f32_to_bf16(bits_f32(cases[i].in)), cases[i].out,
                     "0x%08x -> 0x%04x, got 0x%04x", cases[i].in, cases[i].out,
                     aria_f32_to_bf16(bits_f32(cases[i].in)));
    /* NaNs stay NaN with their sign, including those whose payload is only
       in the dropped bits */
    uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7f80ffff};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = aria_f32_to_bf16(bits_f32(nans[i]));
        cr_expect(isnan(aria_bf16_to_f32(h)), "0x%08x -> 0x%04x", nans[i], h);
        cr_expect_eq(h >> 15, nans[i] >> 31);
    }
    /* every bf16 value widens exactly and narrows back to itself */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = aria_bf16_to_f32((uint16_t)h);
        cr_assert_eq(f32_bits(f), h << 16);
        if (!isnan(f)) cr_assert_eq(aria_f32_to_bf16(f), h, "0x%04x", h);
    }
    /* a pseudo-random sweep over all exponents against the reference */
    uint32_t x = 12345;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        float f = bits_f32(x);
        if (isnan(f)) continue;
        uint16_t got = aria_f32_to_bf16(f), want = ref_bf16(f);
        if (got != want) cr_assert_fail("0x%08x: got 0x%04x want 0x%04x", x, got, want);
    }
}

Test(safetensors_convert, f16_to_f32)
{
    cr_expect_eq(aria_f16_to_f32(0x3c00), 1.0f);
    cr_expect_eq(aria_f16_to_f32(0xc000), -2.0f);
    cr_expect_eq(aria_f16_to_f32(0x7bff), 65504.0f);
    cr_expect_eq(aria_f16_to_f32(0x0400), ldexpf(1.0f, -14));
    cr_expect_eq(aria_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    cr_expect_eq(aria_f16_to_f32(0x03ff), ldexpf(1023.0f, -24));
    cr_expect_eq(aria_f16_to_f32(0x8001), -ldexpf(1.0f, -24));
    cr_expect_eq(aria_f16_to_f32(0x3555), 0x1.554p-2f);
    cr_expect(isinf(aria_f16_to_f32(0x7c00)) && aria_f16_to_f32(0x7c00) > 0);
    cr_expect(isinf(aria_f16_to_f32(0xfc00)) && aria_f16_to_f32(0xfc00) < 0);
    cr_expect(isnan(aria_f16_to_f32(0x7e00)));
    cr_expect(isnan(aria_f16_to_f32(0x7c01)));
    cr_expect(isnan(aria_f16_to_f32(0xfe00)) && signbit(aria_f16_to_f32(0xfe00)));
    cr_expect(aria_f16_to_f32(0x8000) == 0.0f && signbit(aria_f16_to_f32(0x8000)));
    cr_expect(aria_f16_to_f32(0x0000) == 0.0f && !signbit(aria_f16_to_f32(0x0000)));
    /* every finite value against the textbook formula */
    for (uint32_t h = 0; h < 0x10000; h++) {
        int e = (int)(h >> 10 & 31), m = (int)(h & 1023);
        if (e == 31) continue;
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (h & 0x8000) v = -v;
        cr_assert_eq((double)aria_f16_to_f32((uint16_t)h), v, "0x%04x", h);
    }
}

/* ---------------------------------------------------------------------- */
/* the golden tiny-model files (optional: needs ../shared)                */
/* ---------------------------------------------------------------------- */

/* Only a checkout without ../shared skips these tests; with ../shared
   present every file they name must be there (open_shared asserts), so a
   moved folder fails. */
static int have_shared(void)
{
    struct stat st;
    return stat("../shared", &st) == 0 && S_ISDIR(st.st_mode);
}

static void open_shared(aria_safetensors *st, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, SHARED_MODEL "%s", name);
    aria_error e = {{0}};
    cr_assert_eq(aria_st_open(st, path, &e), ARIA_OK, "%s: %s", path, e.msg);
}

/* Checks a tensor's presence, dtype and shape. */
static void expect_tensor(const aria_safetensors *st, const char *name, aria_dtype dt, int64_t d0,
                          int64_t d1)
{
    const aria_tensor *t = aria_st_find(st, name);
    cr_assert_not_null(t, "missing %s", name);
    cr_expect_eq(t->dtype, dt, "%s dtype", name);
    cr_expect_eq(t->ndim, d1 ? 2 : 1, "%s ndim", name);
    cr_expect_eq(t->shape[0], d0, "%s shape[0]", name);
    if (d1) cr_expect_eq(t->shape[1], d1, "%s shape[1]", name);
}

/* The 21 trunk tensors of the tiny config (spec 2.3 names). */
static void expect_trunk(const aria_safetensors *st, aria_dtype dt)
{
    expect_tensor(st, "model.tok_embeddings.weight", dt, 17727, 64);
    expect_tensor(st, "model.out_layer_norm.weight", dt, 64, 0);
    expect_tensor(st, "model.out_layer_norm.bias", dt, 64, 0);
    for (int i = 0; i < 2; i++) {
        char n[96];
        static const struct {
            const char *suffix;
            int64_t d0, d1;
        } layer[] = {
            {"mixed_qkv.weight", 192, 64},   {"att_proj_linear.weight", 64, 64},
            {"ff_gate_proj.weight", 256, 64}, {"ff_up_proj.weight", 256, 64},
            {"ff_down_proj.weight", 64, 256}, {"norm1.weight", 64, 0},
            {"norm1.bias", 64, 0},           {"norm2.weight", 64, 0},
            {"norm2.bias", 64, 0},
        };
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            snprintf(n, sizeof n, "model.encode_layers.%d.%s", i, layer[k].suffix);
            expect_tensor(st, n, dt, layer[k].d0, layer[k].d1);
        }
    }
}

Test(safetensors_vectors, tiny_names_shapes_and_config)
{
    if (!have_shared()) cr_skip("../shared is absent; %s not read", SHARED_MODEL);
    aria_safetensors st;
    open_shared(&st, "tiny_lm_f32.safetensors");
    cr_expect_eq(st.n_tensors, 22);
    expect_trunk(&st, ARIA_DT_F32);
    expect_tensor(&st, "lm_head.weight", ARIA_DT_F32, 17727, 64);
    cr_expect_str_eq(aria_st_meta(&st, "format"), "pt");
    /* the config stored in the metadata is the "tiny" preset */
    const char *cfg = aria_st_meta(&st, "aria_tiny_config");
    cr_assert_not_null(cfg);
    aria_model_config c, tiny;
    aria_error e = {{0}};
    cr_assert_eq(aria_config_parse(&c, cfg, strlen(cfg), &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_config_preset(&tiny, "tiny"), ARIA_OK);
    cr_expect(memcmp(&c, &tiny, sizeof c) == 0);
    aria_st_close(&st);

    open_shared(&st, "tiny_lm_bf16.safetensors");
    cr_expect_eq(st.n_tensors, 22);
    expect_trunk(&st, ARIA_DT_BF16);
    expect_tensor(&st, "lm_head.weight", ARIA_DT_BF16, 17727, 64);
    aria_st_close(&st);

    open_shared(&st, "tiny_emb_f32.safetensors");
    cr_expect_eq(st.n_tensors, 22);
    expect_trunk(&st, ARIA_DT_F32);
    expect_tensor(&st, "emb_head.weight", ARIA_DT_F32, 32, 64);
    cr_expect_null(aria_st_find(&st, "lm_head.weight"));
    aria_st_close(&st);

    open_shared(&st, "tiny_cls_f32.safetensors");
    cr_expect_eq(st.n_tensors, 22);
    expect_trunk(&st, ARIA_DT_F32);
    expect_tensor(&st, "class_head.weight", ARIA_DT_F32, 5, 64);
    aria_st_close(&st);
}

/* README section 7: the bf16 file widened equals RNE(f32 file) bitwise. */
Test(safetensors_vectors, bf16_file_is_rne_of_f32_file)
{
    if (!have_shared()) cr_skip("../shared is absent; %s not read", SHARED_MODEL);
    aria_safetensors f, h;
    open_shared(&f, "tiny_lm_f32.safetensors");
    open_shared(&h, "tiny_lm_bf16.safetensors");
    cr_assert_eq(f.n_tensors, h.n_tensors);
    size_t total = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const aria_tensor *a = &f.tensors[i], *b = aria_st_find(&h, a->name);
        cr_assert_not_null(b, "%s missing in the bf16 file", a->name);
        cr_assert_eq(a->nbytes / 4, b->nbytes / 2, "%s size", a->name);
        const uint8_t *pa = a->data, *pb = b->data;
        for (size_t k = 0; k < a->nbytes / 4; k++) {
            uint32_t u;
            uint16_t w;
            memcpy(&u, pa + 4 * k, 4); /* little-endian host */
            memcpy(&w, pb + 2 * k, 2);
            uint16_t r = aria_f32_to_bf16(bits_f32(u));
            if (r != w)
                cr_assert_fail("%s[%zu]: f32 0x%08x rounds to 0x%04x, file has 0x%04x", a->name, k,
                               u, r, w);
            if (f32_bits(aria_bf16_to_f32(w)) != (uint32_t)w << 16) cr_assert_fail("widening");
        }
        total += a->nbytes / 4;
    }
    cr_expect_eq(total, 2400768, "parameter count of the tiny LM");
    aria_st_close(&f);
    aria_st_close(&h);
}

/* Reading a vector file and writing the same tensors and metadata back
   gives the identical file (their writer follows the serializer's rules). */
Test(safetensors_vectors, rewrite_is_byte_identical)
{
    if (!have_shared()) cr_skip("../shared is absent; %s not read", SHARED_MODEL);
    static const char *files[] = {
        "tiny_lm_f32.safetensors", "tiny_lm_bf16.safetensors", "tiny_emb_f32.safetensors",
        "tiny_cls_f32.safetensors", "train/grads_f32.safetensors",
        "train/tiny_lm_adamw_step1_f32.safetensors",
    };
    char dir[64];
    make_dir(dir, sizeof dir);
    size_t rewritten = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[256];
        snprintf(src, sizeof src, SHARED_MODEL "%s", files[i]);
        aria_safetensors st;
        open_shared(&st, files[i]);
        size_t len, orig_len;
        uint8_t *out = write_and_slurp(dir, "copy", st.tensors, st.n_tensors,
                                       (const char *const *)st.meta_keys,
                                       (const char *const *)st.meta_values, st.n_meta, &len);
        uint8_t *orig = slurp(src, &orig_len);
        cr_expect_eq(len, orig_len, "%s: length %zu vs %zu", files[i], len, orig_len);
        cr_expect(len == orig_len && memcmp(out, orig, len) == 0, "%s differs", files[i]);
        free(out);
        free(orig);
        aria_st_close(&st);
        rewritten++;
    }
    remove_dir(dir);
    cr_log_info("%zu vector files rewritten", rewritten);
    cr_expect_eq(rewritten, sizeof files / sizeof files[0]);
}
