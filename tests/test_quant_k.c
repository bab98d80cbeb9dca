/*
 * test_quant_k.c - the q4_k weight type: the quantizer (the same result as
 * bench/q4k_quality.py's on a fixed matrix, and the properties the format
 * documents), the products (portable and the AVX-512 VNNI backend
 * "quant_k" against a double-precision reference, and through dispatch),
 * files (layout, a model computing what its dequantized weights compute,
 * the loader's refusals) and the commands.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"
#include "model_helpers.h"
#include "kernels/backend.h"

static uint64_t rs = 4242;
static float frand(void) { /* uniform [-1, 1) */
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rs >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static float *fvec(size_t n) {
    float *v = calloc(n ? n : 1, sizeof *v);
    cr_assert(v);
    return v;
}

/* ---- the quantizer ------------------------------------------------------ */

/* The matrix of tests/data/q4k/fixture.py: sub-blocks of every kind the
   quantizer treats apart (symmetric, all positive, all zero, constant,
   heavy-tailed, mostly negative, tiny, one outlier). */
#define FX_ROWS 3
#define FX_COLS 512
static float fixture(int r, int k) {
    float b = (float)((k * 7919 + r * 104729) % 2001 - 1000) / 1000.0f;
    switch ((k / 32) % 8) {
    case 0: return b;
    case 1: return b * 0.5f + 0.6f;
    case 2: return 0.0f;
    case 3: return 0.25f;
    case 4: return b * b * b * 3.0f;
    case 5: return b - 0.9f;
    case 6: return b * 0.01f;
    default: return b * (k % 32 == 5 ? 20.0f : 1.0f);
    }
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The quantized fixture, dequantized; q and k receive the bytes. */
static void quant_fixture(float *deq, uint8_t *q, uint8_t *k) {
    float row[FX_COLS];
    for (int r = 0; r < FX_ROWS; r++) {
        for (int c = 0; c < FX_COLS; c++) row[c] = fixture(r, c);
        kern_quant_row(ARIA_DT_Q4_K, row, FX_COLS, q + r * FX_COLS / 2, (uint16_t *)(k + r * FX_COLS / 16));
        kern_dequant_row(ARIA_DT_Q4_K, q + r * FX_COLS / 2, (const uint16_t *)(k + r * FX_COLS / 16), FX_COLS,
                         deq + r * FX_COLS);
    }
}

/* Bit for bit what the Python quantizer gives (the hash fixture.py
   printed; its command is in tests/data/q4k/SOURCE.md). */
Test(quant_k, same_as_the_python_quantizer) {
    float deq[FX_ROWS * FX_COLS];
    uint8_t q[FX_ROWS * FX_COLS / 2], k[FX_ROWS * FX_COLS / 16];
    quant_fixture(deq, q, k);
    uint64_t h = fnv1a(deq, sizeof deq);
    cr_expect_eq(h, 0x3da885298ecf7565ull, "hash %016llx; w[0][0] %.9g w[2][511] %.9g", (unsigned long long)h,
                 (double)deq[0], (double)deq[FX_ROWS * FX_COLS - 1]);
    cr_expect_eq(deq[0], -1.010009765625f);
    cr_expect_eq(deq[FX_ROWS * FX_COLS - 1], 0.582550048828125f);
}

/* What the format documents, on the fixture and on random rows: every
   integer is the nearest level for the stored scale and min (within half
   a step where the weight is inside the sub-block's range); a zero
   sub-block comes back zero; the largest scale code is near 63; and the layout (nibble order, packed
   codes) agrees with an independent unpacking written here. */
Test(quant_k, format_properties) {
    enum { R = 40, C = 1024 };
    float *w = fvec((size_t)R * C), *deq = fvec((size_t)R * C);
    uint8_t *q = malloc((size_t)R * C / 2), *k = malloc((size_t)R * C / 16);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            w[(size_t)r * C + c] = r < FX_ROWS && c < FX_COLS ? fixture(r, c) : frand() * (r % 3 ? 0.05f : 1.0f);
    for (int r = 0; r < R; r++) {
        kern_quant_row(ARIA_DT_Q4_K, w + (size_t)r * C, C, q + (size_t)r * C / 2, (uint16_t *)(k + (size_t)r * C / 16));
        kern_dequant_row(ARIA_DT_Q4_K, q + (size_t)r * C / 2, (const uint16_t *)(k + (size_t)r * C / 16), C,
                         deq + (size_t)r * C);
    }
    double num = 0, den = 0;
    for (int r = 0; r < R; r++)
        for (int sb = 0; sb < C / 256; sb++) {
            const uint8_t *kk = k + (size_t)r * C / 16 + 16 * sb, *qq = q + (size_t)r * C / 2 + 128 * sb;
            uint16_t hd = (uint16_t)(kk[0] | kk[1] << 8), hm = (uint16_t)(kk[2] | kk[3] << 8);
            float d = kern_f16_to_f32(hd), dmin = kern_f16_to_f32(hm);
            cr_assert(d >= 0 && dmin >= 0 && isfinite(d) && isfinite(dmin));
            int maxsc = 0;
            for (int j = 0; j < 8; j++) {
                /* codes unpacked bit by bit from the documented layout */
                int sc, m;
                if (j < 4) {
                    sc = kk[4 + j] & 63, m = kk[8 + j] & 63;
                } else {
                    sc = (kk[8 + j] & 15) + 16 * (kk[j] >> 6);
                    m = (kk[8 + j] >> 4) + 16 * (kk[4 + j] >> 6);
                }
                int sc2, m2;
                kern_q4k_scale_min(kk + 4, j, &sc2, &m2);
                cr_assert(sc == sc2 && m == m2);
                maxsc = sc > maxsc ? sc : maxsc;
                float es = d * (float)sc, em = dmin * (float)m;
                float lo = 0, hi = 0;
                for (int l = 0; l < 32; l++) {
                    int col = 256 * sb + 32 * j + l;
                    float x = w[(size_t)r * C + col], y = deq[(size_t)r * C + col];
                    /* the nibble: pair j / 2, low for even j */
                    int n = j % 2 ? qq[32 * (j / 2) + l] >> 4 : qq[32 * (j / 2) + l] & 15;
                    cr_assert_eq(y, es * (float)n - em, "row %d col %d: the value is not d sc q - dmin m", r, col);
                    if (es > 0 && x >= -em && x <= es * 15 - em)
                        cr_assert(fabsf(x - y) <= es * 0.5f * 1.0001f + 1e-7f, "row %d col %d: %g -> %g, step %g", r,
                                  col, x, y, es);
                    lo = fminf(lo, x), hi = fmaxf(hi, x);
                    num += ((double)x - y) * ((double)x - y), den += (double)x * x;
                }
                if (lo == 0 && hi == 0)
                    for (int l = 0; l < 32; l++) cr_assert_eq(deq[(size_t)r * C + 256 * sb + 32 * j + l], 0.0f);
            }
            if (d > 0) cr_expect(maxsc >= 62, "row %d super-block %d: largest scale code %d", r, sb, maxsc);
        }
    /* q4_0 on the same rows, for comparison: q4_k's error is lower */
    double num0 = 0;
    uint8_t q0[C / 2];
    uint16_t s0[C / 32];
    float d0[C];
    for (int r = 0; r < R; r++) {
        kern_quant_row(ARIA_DT_Q4_0, w + (size_t)r * C, C, q0, s0);
        kern_dequant_row(ARIA_DT_Q4_0, q0, s0, C, d0);
        for (int c = 0; c < C; c++) num0 += ((double)w[(size_t)r * C + c] - d0[c]) * (w[(size_t)r * C + c] - d0[c]);
    }
    double e = sqrt(num / den), e0 = sqrt(num0 / den);
    cr_expect(e < e0 * 0.95, "q4_k relative error %.4f, q4_0 %.4f", e, e0);
    cr_log_info("q4_k relative weight error %.4f, q4_0 %.4f (uniform random rows)", e, e0);
    free(w), free(deq), free(q), free(k);
}

/* ---- products --------------------------------------------------------------- */

typedef struct {
    kern_mat m;
    float *wf; /* the dequantized weights */
    uint8_t *raw;
} qmat;

static qmat make_qmat(int rows, int cols) {
    qmat a = {0};
    size_t rb = (size_t)cols / 2, kb = (size_t)cols / 16;
    a.wf = fvec((size_t)rows * cols);
    a.raw = malloc((size_t)rows * (rb + kb));
    cr_assert(a.raw);
    float *row = fvec((size_t)cols);
    uint8_t *k = a.raw + (size_t)rows * rb;
    for (int r = 0; r < rows; r++) {
        float shift = (r % 5) * 0.1f; /* some rows lean to one side */
        for (int c = 0; c < cols; c++) row[c] = frand() * 0.5f + shift;
        kern_quant_row(ARIA_DT_Q4_K, row, cols, a.raw + r * rb, (uint16_t *)(k + r * kb));
        kern_dequant_row(ARIA_DT_Q4_K, a.raw + r * rb, (const uint16_t *)(k + r * kb), cols, a.wf + (size_t)r * cols);
    }
    free(row);
    a.m = (kern_mat){.dtype = ARIA_DT_Q4_K, .data = a.raw, .rows = rows, .cols = cols, .scales = (const uint16_t *)k};
    return a;
}

static void free_qmat(qmat *a) {
    kern_mat_release(&a->m);
    free(a->wf);
    free(a->raw);
}

/* x rounded as the VNNI backend rounds it: per 32, to the nearest
   multiple (even on ties) of the largest magnitude / 127. */
static void round_x(const float *x, size_t n, float *out) {
    for (size_t b = 0; b < n; b += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; j++) out[b + j] = nearbyintf(x[b + j] * id) * d;
    }
}

/* ref = y0 (acc) + x W^T in double, mag = sum |x w| (+ |y0|). */
static void ref_mm(const float *x, int T, const qmat *W, const float *y0, int acc, double *ref, double *mag) {
    int R = W->m.rows, C = W->m.cols;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < R; o++) {
            double s = acc ? y0[(size_t)t * R + o] : 0, a = acc ? fabs(y0[(size_t)t * R + o]) : 0;
            for (int c = 0; c < C; c++) {
                double p = (double)x[(size_t)t * C + c] * W->wf[(size_t)o * C + c];
                s += p, a += fabs(p);
            }
            ref[(size_t)t * R + o] = s, mag[(size_t)t * R + o] = a;
        }
}

static void run_be(const kern_backend_i *be, const float *x, int T, const qmat *W, float *y, int acc) {
    const float *xp = x;
    float *buf = NULL;
    size_t xs = (size_t)W->m.cols, nx = be->mm_x_floats ? be->mm_x_floats(&W->m, T, &xs) : 0;
    if (nx) {
        buf = fvec(nx);
        be->mm_x_prepare(x, T, &W->m, buf);
        xp = buf;
    }
    int half = W->m.rows / 2; /* two column blocks, as dispatch cuts them */
    be->mm_block(xp, xs, T, &W->m, 0, half, y, W->m.rows, acc);
    be->mm_block(xp, xs, T, &W->m, half, W->m.rows, y, W->m.rows, acc);
    free(buf);
}

static double worst(const float *y, const double *ref, const double *mag, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(y[i] - ref[i]) / (mag[i] + 1e-30);
        if (isnan(d) || d > e) e = isnan(d) ? INFINITY : d;
    }
    return e;
}

/* Every shape against the double reference: the portable backend to
   float32 sums of the dequantized product; the VNNI one to float32 sums
   of the product with x rounded as it rounds x, and within that rounding
   of the exact one. NaN and Inf activations: their token's outputs only. */
static int q4k_cases(const kern_backend_i *be, aria_precision prec) {
    /* T: each tile of tokens (1-4) alone and after a full one (5, 6: the
       Inf token in a tile of 1 or 2); rows: tiles of 4 rows and every
       remainder (run_be cuts the rows in two); 2048 columns: rows longer
       than the kernel's prefetch distance */
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 16, 33};
    static const int shapes[][2] = {{1, 256}, {3, 512}, {13, 256}, {37, 768}, {300, 1024}, {6, 2048}};
    int cases = 0;
    for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int acc = 0; acc < 2; acc++) {
                int T = Ts[a], R = shapes[s][0], C = shapes[s][1];
                qmat W = make_qmat(R, C);
                kern_shape sh = {T, R, C, ARIA_DT_Q4_K};
                cr_assert(be->supports(KERN_OP_MATMUL, &sh, prec), "%s refuses q4_k %dx%d", be->name, R, C);
                size_t nx = (size_t)T * C, ny = (size_t)T * R;
                float *x = fvec(nx), *xq = fvec(nx), *y0 = fvec(ny), *y = fvec(ny);
                for (size_t i = 0; i < nx; i++) x[i] = frand() * (i % 97 == 0 ? 4.0f : 1.0f);
                for (size_t i = 0; i < ny; i++) y0[i] = frand();
                double *ref = calloc(ny, 8), *mag = calloc(ny, 8), *refq = calloc(ny, 8), *magq = calloc(ny, 8);
                int qx = be->mm_x_prepare != NULL;
                ref_mm(x, T, &W, y0, acc, ref, mag);
                round_x(x, nx, xq);
                ref_mm(qx ? xq : x, T, &W, y0, acc, refq, magq);
                memcpy(y, y0, ny * 4);
                run_be(be, x, T, &W, y, acc);
                double e = worst(y, refq, magq, ny), et = worst(y, ref, mag, ny);
                cr_expect(e <= 1e-5, "%s T %d %dx%d acc %d: %.3g", be->name, T, R, C, acc, e);
                cr_expect(et <= (qx ? 1e-2 : 1e-5), "%s T %d %dx%d acc %d: vs exact x %.3g", be->name, T, R, C, acc,
                          et);
                if (T >= 3) {
                    x[3] = NAN;
                    x[nx - 2] = INFINITY;
                    memcpy(y, y0, ny * 4);
                    run_be(be, x, T, &W, y, acc);
                    for (int o = 0; o < R; o++) {
                        cr_expect(!isfinite(y[o]), "%s: the NaN token's output %d is finite", be->name, o);
                        cr_expect(!isfinite(y[ny - R + o]), "%s: the Inf token's output %d is finite", be->name, o);
                    }
                    for (size_t i = (size_t)R; i < ny - R; i++)
                        cr_expect(isfinite(y[i]), "%s: a NaN leaked into another token (%zu)", be->name, i);
                }
                cases++;
                free(x), free(xq), free(y0), free(y), free(ref), free(mag), free(refq), free(magq);
                free_qmat(&W);
            }
    return cases;
}

Test(quant_k, products_portable) {
    const kern_backend_i *be = kern_backend_portable();
    int n = q4k_cases(be, ARIA_PREC_EXACT) + q4k_cases(be, ARIA_PREC_FAST);
    cr_log_info("q4_k matmul on portable: %d cases", n);
}

Test(quant_k, products_vnni) {
    const kern_backend_i *be = kern_backend_quant_k();
    if (!be) cr_skip("no AVX-512 VNNI or AVX-VNNI in this build or on this CPU: the quant_k backend skipped, not passed");
    kern_shape sh = {1, 16, 256, ARIA_DT_Q4_K};
    cr_expect(!be->supports(KERN_OP_MATMUL, &sh, ARIA_PREC_EXACT), "quant_k in exact precision");
    sh.dtype = ARIA_DT_Q4_0;
    cr_expect(!be->supports(KERN_OP_MATMUL, &sh, ARIA_PREC_FAST), "quant_k takes q4_0");
    sh = (kern_shape){1, 16, 288, ARIA_DT_Q4_K};
    cr_expect(!be->supports(KERN_OP_MATMUL, &sh, ARIA_PREC_FAST), "quant_k takes cols not a multiple of 256");
    int n = q4k_cases(be, ARIA_PREC_FAST);
    cr_log_info("q4_k matmul on quant_k: %d cases", n);
}

/* Each instruction-set variant on its own (the default is the first the
   CPU has, so the 256-bit one runs only here on an AVX-512 machine). */
Test(quant_k, products_avx512vnni) {
    const kern_backend_i *be = kern_backend_quant_k_variant("avx512vnni");
    if (!be) cr_skip("no AVX-512 VNNI in this build or on this CPU: skipped, not passed");
    cr_log_info("q4_k matmul on quant_k avx512vnni: %d cases", q4k_cases(be, ARIA_PREC_FAST));
}

Test(quant_k, products_avxvnni) {
    const kern_backend_i *be = kern_backend_quant_k_variant("avxvnni");
    if (!be) cr_skip("no AVX-VNNI in this build or on this CPU: skipped, not passed");
    cr_log_info("q4_k matmul on quant_k avxvnni: %d cases", q4k_cases(be, ARIA_PREC_FAST));
}

Test(quant_k, variants) {
    const kern_backend_i *v512 = kern_backend_quant_k_variant("avx512vnni"), *v256 = kern_backend_quant_k_variant("avxvnni");
    cr_expect_null(kern_backend_quant_k_variant("sse"), "an unknown variant");
    cr_expect(kern_backend_quant_k() == (v512 ? v512 : v256), "the default is the first variant the CPU has");
    if (v512 && v256) cr_expect(v512 != v256);
    if (v512) cr_expect_str_eq(v512->name, "quant_k");
    if (v256) cr_expect_str_eq(v256->name, "quant_k");
}

/* Through dispatch: quant_k in fast precision where the CPU has it, the
   portable product otherwise. */
Test(quant_k, dispatch) {
    int have = kern_backend_quant_k() != NULL;
    for (int portable = 0; portable < 2; portable++)
        for (int prec = 0; prec < 2; prec++) {
            aria_ctx *c;
            aria_error err = {{0}};
            aria_ctx_opts o = {2, prec ? ARIA_PREC_EXACT : ARIA_PREC_FAST, portable};
            cr_assert_eq(aria_ctx_new(&c, &o, &err), ARIA_OK, "%s", err.msg);
            for (int T = 1; T <= 40; T += 39) {
                qmat W = make_qmat(70, 512);
                size_t nx = (size_t)T * 512, ny = (size_t)T * 70;
                float *x = fvec(nx), *y = fvec(ny), *y0 = fvec(ny);
                for (size_t i = 0; i < nx; i++) x[i] = frand();
                for (size_t i = 0; i < ny; i++) y0[i] = frand();
                double *ref = calloc(ny, 8), *mag = calloc(ny, 8);
                const char *be = kern_matmul_backend(c, T, &W.m);
                int vnni = have && !portable && !prec;
                cr_expect_str_eq(be, vnni ? "quant_k" : "portable");
                ref_mm(x, T, &W, y0, 1, ref, mag);
                memcpy(y, y0, ny * 4);
                kern_matmul(c, x, T, &W.m, y, 1);
                double e = worst(y, ref, mag, ny);
                cr_expect(e <= (vnni ? 1e-2 : 1e-5), "%s T %d: %.3g", aria_ctx_describe(c), T, e);
                free(x), free(y), free(y0), free(ref), free(mag);
                free_qmat(&W);
            }
            aria_ctx_free(c);
        }
}

/* ---- files ------------------------------------------------------------------ */

static char dir[64];
static void setup(void) { cr_assert(test_dir_make(dir, "q4k")); }
static void teardown(void) { test_dir_remove(dir); }
static const char *path(const char *name) { return test_path(dir, name); }

/* A random model of the tiny shape but ff 256 -> d 256 (so that every
   layer matrix has a multiple of 256 columns somewhere), with an lm_head,
   saved in bfloat16, quantized to q4_k at `q4k`. */
static void write_q4k(char *src, char *q4k) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 5, &err), ARIA_OK, "%s", err.msg);
    snprintf(src, 128, "%s", path("t.safetensors"));
    snprintf(q4k, 128, "%s", path("q4k.safetensors"));
    cr_assert_eq(aria_model_save(m, src, ARIA_DT_BF16, &err), ARIA_OK, "%s", err.msg);
    aria_model_free(m);
    aria_quantize_opts o = {.type = ARIA_DT_Q4_K};
    cr_assert_eq(aria_quantize_file(src, q4k, NULL, &o, &err), ARIA_OK, "%s", err.msg);
}

static aria_model *load_with(const char *file, aria_precision prec, aria_ctx **ctx) {
    return load_model_on(file, prec, ctx);
}

static float *logits_of(aria_model *m, const int32_t *ids, int T) { return logits_of_ids(m, ids, T); }

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / r);
}

TestSuite(quant_k_files, .init = setup, .fini = teardown);

/* The tensors and metadata; which matrices became q4_k (ff_down_proj,
   the only one with 256 columns in the tiny shape) and which stayed
   bfloat16; the model computes in exact precision what the float32 model
   of its dequantized weights computes, and in fast precision nearly so. */
Test(quant_k_files, layout_and_model) {
    char src[128], q4k[128];
    write_q4k(src, q4k);
    aria_safetensors st;
    aria_error err = {{0}};
    cr_assert_eq(aria_st_open(&st, q4k, &err), ARIA_OK, "%s", err.msg);
    cr_expect_str_eq(aria_st_meta(&st, "aria_quant"), "q4_k");
    cr_expect_str_eq(aria_st_meta(&st, "aria_quant_block"), "256");
    const aria_tensor *q = aria_st_find(&st, "model.encode_layers.1.ff_down_proj.weight");
    const aria_tensor *k = aria_st_find(&st, "model.encode_layers.1.ff_down_proj.weight.kscale");
    cr_assert(q && k);
    cr_expect(q->dtype == ARIA_DT_U8 && q->shape[0] == 64 && q->shape[1] == 128);
    cr_expect(k->dtype == ARIA_DT_U8 && k->shape[0] == 64 && k->shape[1] == 16, "16 bytes per 256 weights");
    cr_expect_null(aria_st_find(&st, "model.encode_layers.1.ff_down_proj.weight.scale"));
    cr_expect_eq(aria_st_find(&st, "model.encode_layers.1.mixed_qkv.weight")->dtype, ARIA_DT_BF16, "64 columns");
    cr_expect_eq(aria_st_find(&st, "lm_head.weight")->dtype, ARIA_DT_BF16);
    aria_st_close(&st);

    int T = 40;
    int32_t ids[40];
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 7919 + 13) % 17727);
    aria_ctx *c0, *c1, *c2, *c3;
    aria_model *orig = load_with(src, ARIA_PREC_EXACT, &c0), *qm = load_with(q4k, ARIA_PREC_EXACT, &c1);
    int nq = 0;
    for (size_t i = 0; i < aria_model_n_tensors(qm); i++) {
        aria_tensor t;
        aria_model_tensor(qm, i, &t);
        nq += t.dtype == ARIA_DT_Q4_K;
        if (t.dtype == ARIA_DT_Q4_K) cr_expect(strstr(t.name, "ff_down_proj") && t.nbytes == 64 * 128);
    }
    cr_expect_eq(nq, 2, "one ff_down_proj a layer");
    cr_assert_eq(aria_model_save(qm, path("deq.safetensors"), ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    aria_model *deq = load_with(path("deq.safetensors"), ARIA_PREC_EXACT, &c2);
    aria_model *fast = load_with(q4k, ARIA_PREC_FAST, &c3);
    float *l0 = logits_of(orig, ids, T), *lq = logits_of(qm, ids, T), *ld = logits_of(deq, ids, T),
          *lf = logits_of(fast, ids, T);
    size_t n = (size_t)T * 17727;
    double e = rel_l2(lq, ld, n), e0 = rel_l2(lq, l0, n), ef = rel_l2(lf, lq, n);
    cr_expect(e < 1e-5, "q4_k model vs its dequantized float32 weights: %.3g", e);
    cr_expect(e0 > 1e-5 && e0 < 0.3, "q4_k vs the bf16 original: %.3g", e0);
    cr_expect(ef < 0.05, "fast vs exact: %.3g", ef);
    cr_log_info("q4_k tiny: vs dequantized %.2g, vs original %.3g, fast vs exact %.3g", e, e0, ef);
    free(l0), free(lq), free(ld), free(lf);
    aria_model_free(orig), aria_model_free(qm), aria_model_free(deq), aria_model_free(fast);
    aria_ctx_free(c0), aria_ctx_free(c1), aria_ctx_free(c2), aria_ctx_free(c3);
    /* quantizing it again is refused, nothing written */
    aria_quantize_opts o = {.type = ARIA_DT_Q4_K};
    cr_expect_eq(aria_quantize_file(q4k, path("twice.safetensors"), NULL, &o, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "ff_down_proj.weight is already q4_k"), "%s", err.msg);
    cr_expect_neq(access(path("twice.safetensors"), F_OK), 0);
}

/* ---- refusals --------------------------------------------------------------- */

typedef int (*edit_fn)(aria_tensor *t, uint8_t *copy);

/* from written again as `to`, tensor `name` edited (or dropped: edit
   returns 0), and tensor `add` (a copy of `like` renamed, edited by
   add_edit) added when not NULL. */
static void rewrite(const char *from, const char *to, const char *name, edit_fn edit, const char *add,
                    const char *like, edit_fn add_edit) {
    aria_safetensors st;
    aria_error err = {{0}};
    cr_assert_eq(aria_st_open(&st, from, &err), ARIA_OK, "%s", err.msg);
    aria_tensor *t = calloc(st.n_tensors + 1, sizeof *t);
    uint8_t *copy = NULL, *copy2 = NULL;
    size_t n = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        t[n] = st.tensors[i];
        if (name && !strcmp(t[n].name, name)) {
            copy = malloc(t[n].nbytes);
            memcpy(copy, t[n].data, t[n].nbytes);
            t[n].data = copy;
            if (!edit(&t[n], copy)) continue;
        }
        n++;
    }
    if (add) {
        const aria_tensor *l = aria_st_find(&st, like);
        cr_assert(l);
        t[n] = *l;
        t[n].name = add;
        copy2 = malloc(l->nbytes);
        memcpy(copy2, l->data, l->nbytes);
        t[n].data = copy2;
        if (add_edit) add_edit(&t[n], copy2);
        n++;
    }
    cr_assert_eq(aria_st_write(to, t, n, (const char *const *)st.meta_keys, (const char *const *)st.meta_values,
                               st.n_meta, &err),
                 ARIA_OK, "%s", err.msg);
    free(copy), free(copy2), free(t);
    aria_st_close(&st);
}

static void expect_refused(const char *file, const char *want) {
    aria_model *m = NULL;
    aria_error err = {{0}};
    cr_expect_eq(aria_model_load(&m, file, NULL, &err), ARIA_ERR_FORMAT, "%s loaded", file);
    cr_expect(strstr(err.msg, want) != NULL, "'%s' does not say '%s'", err.msg, want);
    cr_expect_null(strchr(err.msg, '\n'), "one line");
    aria_model_free(m);
}

static int drop(aria_tensor *t, uint8_t *c) { (void)t, (void)c; return 0; }
static int short_k(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->shape[1] = 8;
    t->nbytes = (size_t)t->shape[0] * 8;
    return 1;
}
static int as_f16(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->dtype = ARIA_DT_F16; /* the same bytes: [64, 8] float16 */
    t->shape[1] = 8;
    return 1;
}
static int inf_d(aria_tensor *t, uint8_t *c) {
    (void)t;
    c[16 * 2 + 0] = 0x00, c[16 * 2 + 1] = 0x7c; /* row 2's d */
    return 1;
}
static int nan_dmin(aria_tensor *t, uint8_t *c) {
    (void)t;
    c[16 * 5 + 2] = 0x01, c[16 * 5 + 3] = 0x7e; /* row 5's dmin */
    return 1;
}
static int as_i8(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->dtype = ARIA_DT_I8;
    return 1;
}
static int keep(aria_tensor *t, uint8_t *c) { (void)t, (void)c; return 1; }
static int f16_scales(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->dtype = ARIA_DT_F16;
    t->shape[1] = 8;
    return 1;
}

Test(quant_k_files, bad_files_are_refused) {
    char src[128], q4k[128];
    write_q4k(src, q4k);
    const char *W = "model.encode_layers.1.ff_down_proj.weight", *K = "model.encode_layers.1.ff_down_proj.weight.kscale";
    const char *bad = path("bad.safetensors");
    char badp[128];
    snprintf(badp, sizeof badp, "%s", bad);
    rewrite(q4k, badp, K, short_k, NULL, NULL, NULL);
    expect_refused(badp, "ff_down_proj.weight.kscale is U8 [64, 8], expected U8 [64, 16]");
    rewrite(q4k, badp, K, as_f16, NULL, NULL, NULL);
    expect_refused(badp, "ff_down_proj.weight.kscale is F16 [64, 8], expected U8 [64, 16]");
    rewrite(q4k, badp, K, inf_d, NULL, NULL, NULL);
    expect_refused(badp, "weight.kscale: d of row 2, super-block 0 is not finite");
    rewrite(q4k, badp, K, nan_dmin, NULL, NULL, NULL);
    expect_refused(badp, "weight.kscale: dmin of row 5, super-block 0 is not finite");
    /* both scale tensors: q4_0's .scale beside q4_k's .kscale */
    rewrite(q4k, badp, W, keep, "model.encode_layers.1.ff_down_proj.weight.scale", K, f16_scales);
    expect_refused(badp, "tensor model.encode_layers.1.ff_down_proj.weight has both");
    /* int8 integers with q4_k scales */
    rewrite(q4k, badp, W, as_i8, NULL, NULL, NULL);
    expect_refused(badp, "ff_down_proj.weight is I8 but model.encode_layers.1.ff_down_proj.weight.kscale says q4_k");
    /* no scales at all: read as q4_0, whose scales are missing */
    rewrite(q4k, badp, K, drop, NULL, NULL, NULL);
    expect_refused(badp, "ff_down_proj.weight.scale (its scales");
    /* q4_k on a matrix whose columns are not a multiple of 256 (64): an
       integer tensor of mixed_qkv with a kscale */
    char q40[128];
    snprintf(q40, sizeof q40, "%s", path("q40.safetensors"));
    aria_error err = {{0}};
    aria_quantize_opts o = {.type = ARIA_DT_Q4_0};
    cr_assert_eq(aria_quantize_file(src, q40, NULL, &o, &err), ARIA_OK, "%s", err.msg);
    rewrite(q40, badp, "model.encode_layers.0.mixed_qkv.weight.scale", drop,
            "model.encode_layers.0.mixed_qkv.weight.kscale", "model.encode_layers.0.mixed_qkv.weight.scale", NULL);
    expect_refused(badp, "mixed_qkv.weight is U8 (q4_k), but its 64 columns are not a multiple of the block size 256");
}

/* ---- the commands ----------------------------------------------------------- */

static int run_aria(const char *args) { return run_aria_in(dir, args); }

static char *slurp(const char *name) { return slurp_text(path(name)); }

Test(quant_k_files, commands) {
    char src[128], q4k[128], a[1024];
    write_q4k(src, q4k);
    snprintf(a, sizeof a, "quantize --type q4_k %s -o %s", src, path("c.safetensors"));
    cr_assert_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    cr_expect(strstr(slurp("err.txt"), "(q4_k)"), "%s", slurp("err.txt"));
    snprintf(a, sizeof a, "info %s", path("c.safetensors"));
    cr_assert_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    char *out = slurp("out.txt");
    cr_expect(strstr(out, "ff_down_proj.weight") && strstr(out, "q4_k  [64, 256]"), "%s", out);
    cr_expect(strstr(out, "q4_k 2 tensors"), "%s", out);
    snprintf(a, sizeof a, "quantize --type q4_k %s -o %s", path("c.safetensors"), path("x.safetensors"));
    cr_expect_eq(run_aria(a), 1);
    cr_expect(strstr(slurp("err.txt"), "is already q4_k"), "%s", slurp("err.txt"));
    cr_expect_neq(access(path("x.safetensors"), F_OK), 0);
    snprintf(a, sizeof a, "quantize --help");
    cr_expect_eq(run_aria(a), 0);
    cr_expect(strstr(slurp("out.txt"), "q4_k"));
}
