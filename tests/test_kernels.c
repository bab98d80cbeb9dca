/*
 * test_kernels.c - the numeric kernels (src/kernels/) against plain
 * double-precision references: matrix products of every token count the
 * dispatch distinguishes (decode tiles of 1..4 rows, prefill blocks),
 * odd sizes, both dtypes, accumulate; oneDNN's fast path (when the build
 * has it) including its last partial chunk and the packed-weight cache;
 * attention (single queries and query blocks, head sizes the AVX-512 code
 * takes and one it leaves to C); SwiGLU's exp; bfloat16 rounding; the
 * pool. Tests named *_generic re-run the checks on a context with the
 * portable backend only (aria_ctx_opts.portable), so the plain C path is
 * tested on AVX-512 machines too. Every check goes through a kernel
 * context, as the library's callers do; tests/test_backend_ops.c takes
 * each backend on its own.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "kernels/kernels.h"

/* A context of 2 threads. */
static aria_ctx *ctx_new(aria_precision prec, int portable) {
    aria_ctx *c = NULL;
    aria_error err;
    aria_ctx_opts o = {2, prec, portable};
    cr_assert_eq(aria_ctx_new(&c, &o, &err), ARIA_OK, "%s", err.msg);
    return c;
}

static int on_dnnl(const aria_ctx *c, int T, const kern_mat *W) {
    return !strcmp(kern_matmul_backend(c, T, W), "onednn");
}

static uint64_t rs = 12345;
static float frand(void) { /* uniform [-1, 1) */
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rs >> 11) * 0x1p-53 * 2.0 - 1.0);
}

/* W as float32 values (bf16-rounded when dt is bf16) and in its dtype */
typedef struct {
    kern_mat m;
    float *wf;
    void *raw;
} mat;

static mat make_mat(int rows, int cols, aria_dtype dt) {
    mat a;
    size_t n = (size_t)rows * cols;
    a.wf = malloc(n * sizeof(float));
    a.raw = malloc(n * (dt == ARIA_DT_F32 ? 4 : 2));
    for (size_t i = 0; i < n; i++) {
        float f = frand() * 0.5f;
        if (dt == ARIA_DT_BF16) {
            uint16_t h = aria_f32_to_bf16(f);
            ((uint16_t *)a.raw)[i] = h;
            a.wf[i] = aria_bf16_to_f32(h);
        } else {
            ((float *)a.raw)[i] = f;
            a.wf[i] = f;
        }
    }
    memset(&a.m, 0, sizeof a.m);
    a.m.dtype = dt;
    a.m.data = a.raw;
    a.m.rows = rows;
    a.m.cols = cols;
    return a;
}

static void free_mat(mat *a) {
    kern_mat_release(&a->m);
    free(a->wf);
    free(a->raw);
}

/* max |got - ref| / (max |ref| + 1e-30) with ref = y0 (acc) + x W^T in
   double, x rounded to bf16 first when round_x */
static double matmul_err(const float *x, int T, const mat *W, const float *y0, const float *got, int acc,
                         int round_x) {
    double maxd = 0, maxr = 0;
    int R = W->m.rows, C = W->m.cols;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < R; o++) {
            double s = acc ? y0[(size_t)t * R + o] : 0.0;
            for (int k = 0; k < C; k++) {
                float xv = x[(size_t)t * C + k];
                if (round_x) xv = aria_bf16_to_f32(aria_f32_to_bf16(xv));
                s += (double)xv * W->wf[(size_t)o * C + k];
            }
            double d = fabs(s - got[(size_t)t * R + o]);
            if (d > maxd || isnan(d)) maxd = d;
            if (fabs(s) > maxr) maxr = fabs(s);
        }
    return maxd / (maxr + 1e-30);
}

static void check_matmul(aria_ctx *c, int T, int rows, int cols, aria_dtype dt, int acc, double tol) {
    mat W = make_mat(rows, cols, dt);
    float *x = malloc((size_t)T * cols * sizeof *x), *y = malloc((size_t)T * rows * sizeof *y),
          *y0 = malloc((size_t)T * rows * sizeof *y0);
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = frand();
    for (size_t i = 0; i < (size_t)T * rows; i++) y[i] = y0[i] = frand();
    int fast = on_dnnl(c, T, &W.m);
    /* oneDNN: the 8th call makes the packed copy (PACK_AFTER in
       backend_onednn.c) and uses it, as does the 9th */
    for (int rep = 0; rep < (fast ? 9 : 1); rep++) {
        memcpy(y, y0, (size_t)T * rows * sizeof *y);
        kern_matmul(c, x, T, &W.m, y, acc);
        double e = matmul_err(x, T, &W, y0, y, acc, fast && dt == ARIA_DT_BF16);
        cr_expect(e <= tol, "T %d, %d x %d, %s, acc %d, %s%s: rel err %.3g > %.3g", T, rows, cols,
                  dt == ARIA_DT_BF16 ? "bf16" : "f32", acc, fast ? "oneDNN" : "portable", rep >= 7 ? " (packed)" : "",
                  e, tol);
    }
    free(x), free(y), free(y0);
    free_mat(&W);
}

static void portable_suite(int portable) {
    aria_ctx *c = ctx_new(ARIA_PREC_EXACT, portable);
    int Ts[] = {1, 2, 3, 4, 5, 8, 17, 70};
    int shapes[][2] = {{64, 64}, {37, 100}, {13, 31}, {200, 257}, {24, 16}};
    for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t b = 0; b < sizeof shapes / sizeof *shapes; b++)
            for (int dt = 0; dt < 2; dt++)
                for (int acc = 0; acc < 2; acc++)
                    check_matmul(c, Ts[a], shapes[b][0], shapes[b][1], dt ? ARIA_DT_BF16 : ARIA_DT_F32, acc,
                                 2e-6);
    aria_ctx_free(c);
}

Test(kernels, matmul_portable) { portable_suite(0); }

Test(kernels, matmul_portable_generic) {
    aria_ctx *c = ctx_new(ARIA_PREC_FAST, 1);
    cr_assert(!strncmp(aria_ctx_describe(c), "portable C", 10), "%s", aria_ctx_describe(c));
    cr_assert(!kern_ctx_has_backend(c, "avx512") && !kern_ctx_has_backend(c, "onednn"));
    aria_ctx_free(c);
    portable_suite(1);
}

/* A product's result must not depend on how many rows share the call. */
Test(kernels, matmul_rows_are_independent) {
    aria_ctx *c = ctx_new(ARIA_PREC_EXACT, 0);
    for (int dt = 0; dt < 2; dt++) {
        mat W = make_mat(50, 96, dt ? ARIA_DT_BF16 : ARIA_DT_F32);
        float x[7 * 96], all[7 * 50], one[50];
        for (int i = 0; i < 7 * 96; i++) x[i] = frand();
        kern_matmul(c, x, 7, &W.m, all, 0);
        for (int t = 0; t < 7; t++) {
            kern_matmul(c, x + t * 96, 1, &W.m, one, 0);
            cr_expect(memcmp(one, all + t * 50, sizeof one) == 0, "row %d differs alone and in a batch", t);
        }
        free_mat(&W);
    }
    aria_ctx_free(c);
}

Test(kernels, matmul_fast_path) {
    aria_ctx *p = ctx_new(ARIA_PREC_FAST, 0), *ex = ctx_new(ARIA_PREC_EXACT, 0);
    mat probe = make_mat(300, 272, ARIA_DT_BF16);
    int have = on_dnnl(p, 20, &probe.m);
    free_mat(&probe);
    if (!have) {
        char why[256];
        snprintf(why, sizeof why, "built without oneDNN (%s)", aria_ctx_describe(p));
        aria_ctx_free(p);
        aria_ctx_free(ex);
        cr_skip("%s", why);
    }
    /* 300 rows: one chunk of 256 and a partial one */
    for (int acc = 0; acc < 2; acc++) {
        check_matmul(p, 20, 300, 272, ARIA_DT_BF16, acc, 1e-5);
        check_matmul(p, 33, 512, 256, ARIA_DT_BF16, acc, 1e-5);
        check_matmul(p, 20, 300, 272, ARIA_DT_F32, acc, 1e-5);
    }
    /* small products stay portable even in fast precision */
    mat W = make_mat(64, 64, ARIA_DT_BF16);
    cr_expect(!on_dnnl(p, 200, &W.m));
    cr_expect(!on_dnnl(p, 4, &W.m));
    free_mat(&W);
    mat big = make_mat(512, 512, ARIA_DT_BF16);
    cr_expect(!on_dnnl(p, 4, &big.m), "decoding stays portable");
    cr_expect(!on_dnnl(ex, 200, &big.m));
    free_mat(&big);
    aria_ctx_free(p);
    aria_ctx_free(ex);
}

/* Also the whole-precision switch: a context made exact (what the CLI
   makes of ARIA_PRECISION=exact) keeps a large product on the portable
   kernels. */
Test(kernels, precision_exact) {
    aria_ctx *c = ctx_new(ARIA_PREC_EXACT, 0);
    cr_assert(strstr(aria_ctx_describe(c), "precision exact"), "%s", aria_ctx_describe(c));
    mat W = make_mat(300, 300, ARIA_DT_BF16);
    cr_expect(!on_dnnl(c, 64, &W.m));
    check_matmul(c, 40, 300, 300, ARIA_DT_BF16, 1, 2e-6);
    aria_ctx_free(c);
    free_mat(&W);
}

/* ---- attention --------------------------------------------------------- */

static void attention_case(aria_ctx *p, int B, int T, int H, int hd, int pos0) {
    int cap = pos0 + T + 3, d = H * hd;
    size_t kv = (size_t)B * H * cap * hd;
    float *k = malloc(kv * sizeof *k), *v = malloc(kv * sizeof *v);
    float *q = malloc((size_t)B * T * 3 * d * sizeof *q), *out = malloc((size_t)B * T * d * sizeof *out);
    for (size_t i = 0; i < kv; i++) k[i] = frand() * 2, v[i] = frand();
    for (size_t i = 0; i < (size_t)B * T * 3 * d; i++) q[i] = frand() * 2;
    kern_attention(p, q, 3 * d, k, v, cap, B, T, H, hd, pos0, out, d);
    double maxd = 0;
    double *sc = malloc((size_t)(pos0 + T) * sizeof *sc);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qr = q + ((size_t)b * T + t) * 3 * d + h * hd;
                const float *K = k + ((size_t)b * H + h) * cap * hd, *V = v + ((size_t)b * H + h) * cap * hd;
                int n = pos0 + t + 1;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < n; s++) {
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += (double)qr[i] * K[(size_t)s * hd + i];
                    sc[s] = dot / sqrt((double)hd);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s < n; s++) sum += sc[s] = exp(sc[s] - mx);
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int s = 0; s < n; s++) o += sc[s] * V[(size_t)s * hd + i];
                    o /= sum;
                    double dd = fabs(o - out[((size_t)b * T + t) * d + h * hd + i]);
                    if (dd > maxd || isnan(dd)) maxd = dd;
                }
            }
    cr_expect(maxd < 2e-6, "B %d T %d H %d hd %d pos0 %d: max |diff| %.3g", B, T, H, hd, pos0, maxd);
    free(sc), free(k), free(v), free(q), free(out);
}

static void attention_suite(int portable) {
    aria_ctx *p = ctx_new(ARIA_PREC_FAST, portable);
    int hds[] = {16, 64, 24, 128, 48, 32, 256};
    for (size_t i = 0; i < sizeof hds / sizeof *hds; i++) {
        attention_case(p, 1, 1, 2, hds[i], 0);    /* first token */
        attention_case(p, 2, 1, 3, hds[i], 150);  /* decode step deep in the cache */
        attention_case(p, 1, 3, 2, hds[i], 70);   /* a few queries: one at a time */
        attention_case(p, 2, 70, 2, hds[i], 0);   /* prefill: query blocks, partial last */
        attention_case(p, 1, 40, 1, hds[i], 100); /* a second block after a first */
    }
    aria_ctx_free(p);
}

Test(kernels, attention) { attention_suite(0); }

Test(kernels, attention_generic) {
    aria_ctx *c = ctx_new(ARIA_PREC_FAST, 1);
    cr_assert(!strncmp(aria_ctx_describe(c), "portable C", 10), "%s", aria_ctx_describe(c));
    aria_ctx_free(c);
    attention_suite(1);
}

/* ---- small ops ------------------------------------------------------- */

/* SwiGLU on the fast context (AVX-512's vector exp where it is) and the
   portable one. */
static void swiglu_case(int portable) {
    aria_ctx *c = ctx_new(ARIA_PREC_FAST, portable);
    size_t n = 1000;
    float *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u), *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        g[i] = i < 10 ? (float[]){0, -0.0f, 1e-30f, -1e-30f, 88, -88, 100, -100, 200, -200}[i] : frand() * 20;
        u[i] = frand();
        want[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    }
    kern_swiglu_fwd(c, g, g, u, n);
    for (size_t i = 0; i < n; i++) {
        double tol = 4e-7 * fabs(want[i]) + 1e-37;
        cr_expect(fabs(g[i] - want[i]) <= tol, "swiglu at %zu: %.9g vs %.9g", i, g[i], want[i]);
    }
    float nan_in = NAN, one = 1;
    kern_swiglu_fwd(c, &nan_in, &nan_in, &one, 1);
    cr_expect(isnan(nan_in));
    free(g), free(u), free(want);
    aria_ctx_free(c);
}

Test(kernels, swiglu) { swiglu_case(0); }
Test(kernels, swiglu_generic) { swiglu_case(1); }

Test(kernels, bf16_rounding) {
    aria_ctx *c = ctx_new(ARIA_PREC_FAST, 0);
    float v[200];
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-42f, 3.4e38f, 1.00390625f,
                             1.01171875f, 1.0f + 0x1p-8f + 0x1p-20f};
    size_t ns = sizeof special / sizeof *special;
    for (size_t i = 0; i < 200; i++) v[i] = i < ns ? special[i] : frand() * 1e3f;
    uint16_t got[200];
    for (size_t n = 1; n <= 200; n += 37) { /* lengths that end mid-vector */
        memset(got, 0, sizeof got);
        kern_to_bf16(c, v, got, n);
        for (size_t i = 0; i < n; i++) {
            uint16_t want = aria_f32_to_bf16(v[i]);
            cr_expect_eq(got[i], want, "bf16(%g) = %04x, expected %04x", v[i], got[i], want);
        }
        for (size_t i = n; i < 200; i++) cr_expect_eq(got[i], 0, "wrote past the end at %zu", i);
    }
    aria_ctx_free(c);
}

/* ---- pool ------------------------------------------------------------ */

typedef struct {
    atomic_int hits[1000];
} pool_ctx;

static void pool_fn(void *ctx, size_t i) { atomic_fetch_add(&((pool_ctx *)ctx)->hits[i], 1); }

Test(kernels, pool_runs_every_task_once) {
    aria_pool *p = aria_pool_new(3);
    pool_ctx *c = calloc(1, sizeof *c);
    for (int job = 0; job < 2000; job++) {
        size_t n = (size_t)(job * 7 % 1000) + 1;
        aria_pool_run(p, pool_fn, c, n);
        for (size_t i = 0; i < n; i++) {
            if (atomic_load(&c->hits[i]) != 1) cr_assert_fail("job %d task %zu ran %d times", job, i, c->hits[i]);
            atomic_store(&c->hits[i], 0);
        }
        if (job % 500 == 499) usleep(2000); /* let the workers fall asleep */
    }
    free(c);
    aria_pool_free(p);
}

/* Two sessions of one model share its pool: concurrent callers take turns. */
static aria_pool *shared_pool;

static void *pool_caller(void *arg) {
    pool_ctx *c = calloc(1, sizeof *c);
    int bad = 0;
    for (int job = 0; job < 1000 && !bad; job++) {
        size_t n = (size_t)(job * 13 % 512) + 1;
        aria_pool_run(shared_pool, pool_fn, c, n);
        for (size_t i = 0; i < n; i++) {
            bad |= atomic_load(&c->hits[i]) != 1;
            atomic_store(&c->hits[i], 0);
        }
    }
    free(c);
    *(int *)arg = bad;
    return NULL;
}

Test(kernels, pool_concurrent_callers) {
    shared_pool = aria_pool_new(3);
    pthread_t t[2];
    int bad[2] = {0, 0};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, pool_caller, &bad[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    cr_expect(!bad[0] && !bad[1], "a task ran twice or not at all");
    aria_pool_free(shared_pool);
}

/* ---- general products and the training pieces -------------------------- */

/* kern_gemm and kern_sgemm_st against a double-precision product, for
   every storage order, with and without accumulation, on odd sizes (more
   row blocks than threads, a partial last one). Exact: float32 rounding
   only; fast: bfloat16 operands (8 bits of mantissa), where oneDNN is. */
static void gemm_case(aria_ctx *p, int ta, int tb, int M, int N, int K, int acc, double tol, int single_thread) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
    float *C0 = malloc(nc * sizeof *C0);
    for (size_t i = 0; i < na; i++) A[i] = frand();
    for (size_t i = 0; i < nb; i++) B[i] = frand();
    for (size_t i = 0; i < nc; i++) C0[i] = C[i] = frand();
    if (single_thread)
        kern_sgemm_st(p, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
    else
        kern_gemm(p, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc);
    double worst = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double s = acc ? C0[(size_t)m * ldc + n] : 0.0, mag = fabs(s);
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                double b = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                s += a * b;
                mag += fabs(a * b);
            }
            double e = fabs(C[(size_t)m * ldc + n] - s) / (mag + 1e-30);
            if (isnan(e) || e > worst) worst = isnan(e) ? INFINITY : e; /* a NaN fails */
        }
        /* the padding between rows is left alone */
        for (int n = N; n < ldc && m + 1 < M; n++)
            cr_assert_eq(C[(size_t)m * ldc + n], C0[(size_t)m * ldc + n], "wrote outside C");
    }
    cr_expect(worst <= tol, "gemm ta=%d tb=%d %dx%dx%d acc=%d prec=%s st=%d: error %.3g > %.3g", ta, tb, M, N, K,
              acc, kern_ctx_precision(p) == ARIA_PREC_EXACT ? "exact" : "fast", single_thread, worst, tol);
    free(A);
    free(B);
    free(C);
    free(C0);
}

Test(kernels, gemm_every_layout) {
    aria_ctx *ex = ctx_new(ARIA_PREC_EXACT, 0), *fa = ctx_new(ARIA_PREC_FAST, 0);
    int fast_is_bf16 = kern_gemm_uses_bf16(fa);
    cr_expect_eq(fast_is_bf16, kern_ctx_has_backend(fa, "onednn"));
    cr_expect(!kern_gemm_uses_bf16(ex));
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                gemm_case(ex, ta, tb, 37, 29, 45, acc, 1e-6, 0);
                gemm_case(fa, ta, tb, 70, 33, 300, acc, fast_is_bf16 ? 1e-2 : 1e-6, 0);
                gemm_case(fa, ta, tb, 19, 23, 70, acc, 1e-6, 1);
            }
    /* K = 0: C is zeroed, or left as it is when accumulating */
    float C[4] = {1, 2, 3, 4}, A[1] = {0}, B[1] = {0};
    kern_gemm(fa, 0, 0, 2, 2, 0, A, 1, B, 2, C, 2, 1);
    cr_expect(C[0] == 1 && C[3] == 4);
    kern_gemm(fa, 0, 0, 2, 2, 0, A, 1, B, 2, C, 2, 0);
    cr_expect(C[0] == 0 && C[3] == 0);
    kern_ctx_trim(fa);
    aria_ctx_free(ex);
    aria_ctx_free(fa);
}

/* The exact product adds each row's terms in order of k: the same bits
   as a plain loop, which the trainer's exact precision relies on. */
Test(kernels, gemm_exact_order) {
    aria_ctx *p = ctx_new(ARIA_PREC_EXACT, 0);
    int M = 9, N = 17, K = 33;
    float A[9 * 33], B[33 * 17], C[9 * 17];
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    kern_gemm(p, 0, 0, M, N, K, A, K, B, N, C, N, 0);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += A[m * K + k] * B[k * N + n];
            cr_expect_eq(C[m * N + n], s, "C[%d][%d]", m, n);
        }
    aria_ctx_free(p);
}

Test(kernels, softmax_and_swiglu_pieces) {
    aria_ctx *c = ctx_new(ARIA_PREC_FAST, 0);
    size_t n = 1000 + 7;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    double mx = -1e30, se = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = 8.0f * frand();
        mx = x[i] > mx ? x[i] : mx;
    }
    for (size_t i = 0; i < n; i++) se += exp((double)x[i] - mx);
    double lse = mx + log(se);
    cr_expect(fabs(kern_logsumexp(c, x, n) - lse) <= 1e-5 * fabs(lse), "logsumexp %.8g vs %.8g", kern_logsumexp(c, x, n),
              lse);
    cr_expect(kern_logsumexp(c, x, 0) == -INFINITY);
    for (size_t m = 1; m < 40; m += 6) { /* short and ragged lengths */
        double mm = -1e30, ss = 0;
        for (size_t i = 0; i < m; i++) mm = x[i] > mm ? x[i] : mm;
        for (size_t i = 0; i < m; i++) ss += exp((double)x[i] - mm);
        double want = mm + log(ss);
        cr_expect(fabs(kern_logsumexp(c, x, m) - want) <= 1e-5 * (fabs(want) + 1), "logsumexp of %zu: %.8g vs %.8g", m,
                  kern_logsumexp(c, x, m), want);
    }
    memcpy(y, x, n * sizeof *y);
    kern_exp_scale(c, y, n, (float)lse, 0.5f);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double want = exp((double)x[i] - lse) * 0.5;
        cr_expect(fabs(y[i] - want) <= 2e-6 * want + 1e-30, "exp_scale[%zu] %.8g vs %.8g", i, y[i], want);
        sum += y[i];
    }
    cr_expect(fabs(sum - 0.5) <= 1e-4, "softmax sums to %.8g", sum);
    /* softmax backward of a row: p (g - D) scale */
    float *gs = malloc(n * sizeof *gs), *g0 = malloc(n * sizeof *g0);
    for (size_t i = 0; i < n; i++) g0[i] = gs[i] = frand();
    kern_softmax_bwd(c, y, gs, n - 3, 0.25f, 0.125f);
    for (size_t i = 0; i < n; i++) {
        double want = i < n - 3 ? (double)y[i] * ((double)g0[i] - 0.25) * 0.125 : g0[i];
        cr_expect(fabs(gs[i] - want) <= 1e-6 * fabs(want) + 1e-12, "softmax_bwd[%zu] %.8g vs %.8g", i, gs[i], want);
    }
    free(gs);
    free(g0);
    /* SwiGLU backward against the derivative in double */
    float *u = malloc(n * sizeof *u), *dg = malloc(n * sizeof *dg), *du = malloc(n * sizeof *du);
    for (size_t i = 0; i < n; i++) {
        u[i] = frand();
        dg[i] = frand();
    }
    float *da = malloc(n * sizeof *da);
    memcpy(da, dg, n * sizeof *da);
    kern_swiglu_bwd(c, dg, du, dg, x, u, n);
    for (size_t i = 0; i < n; i++) {
        double g = x[i], s = 1.0 / (1.0 + exp(-g));
        double wdu = da[i] * g * s, wdg = da[i] * u[i] * (s + g * s * (1 - s));
        cr_expect(fabs(du[i] - wdu) <= 1e-5 * (fabs(wdu) + 1e-3), "du[%zu] %.8g vs %.8g", i, du[i], wdu);
        cr_expect(fabs(dg[i] - wdg) <= 1e-5 * (fabs(wdg) + 1e-3), "dg[%zu] %.8g vs %.8g", i, dg[i], wdg);
    }
    free(x);
    free(y);
    free(u);
    free(dg);
    free(du);
    free(da);
    aria_ctx_free(c);
}

/* The per-thread small bfloat16 product: every storage order, with and
   without accumulation, each shape twice (the second call takes the
   cached primitive), against a double product of the rounded operands. */
Test(kernels, gemm_bf16_single_thread) {
    aria_ctx *ctx = ctx_new(ARIA_PREC_FAST, 0);
    if (!kern_ctx_has_backend(ctx, "onednn")) {
        uint16_t a = 0;
        float c = 0;
        cr_expect_neq(kern_gemm_bf16_st(ctx, 0, 0, 1, 1, 1, &a, 1, &a, 1, &c, 1, 0), 0, "no oneDNN: must refuse");
        aria_ctx_free(ctx);
        cr_skip("built without oneDNN");
    }
    int M = 21, N = 35, K = 67;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++)
                for (int rep = 0; rep < 2; rep++) {
                    int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
                    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
                    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4), *C0 = malloc(nc * 4);
                    uint16_t *Ah = malloc(na * 2), *Bh = malloc(nb * 2);
                    for (size_t i = 0; i < na; i++) A[i] = frand();
                    for (size_t i = 0; i < nb; i++) B[i] = frand();
                    for (size_t i = 0; i < nc; i++) C[i] = C0[i] = frand();
                    kern_to_bf16(ctx, A, Ah, na);
                    kern_to_bf16(ctx, B, Bh, nb);
                    cr_assert_eq(kern_gemm_bf16_st(ctx, ta, tb, M, N, K, Ah, lda, Bh, ldb, C, ldc, acc), 0);
                    double worst = 0;
                    for (int m = 0; m < M; m++)
                        for (int n = 0; n < N; n++) {
                            double s = acc ? C0[(size_t)m * ldc + n] : 0, mag = fabs(s) + 1e-30;
                            for (int k = 0; k < K; k++) {
                                uint16_t ua = ta ? Ah[(size_t)k * lda + m] : Ah[(size_t)m * lda + k];
                                uint16_t ub = tb ? Bh[(size_t)n * ldb + k] : Bh[(size_t)k * ldb + n];
                                uint32_t wa = (uint32_t)ua << 16, wb = (uint32_t)ub << 16;
                                float fa, fb;
                                memcpy(&fa, &wa, 4);
                                memcpy(&fb, &wb, 4);
                                s += (double)fa * fb;
                                mag += fabs((double)fa * fb);
                            }
                            double e = fabs(C[(size_t)m * ldc + n] - s) / mag;
                            if (isnan(e) || e > worst) worst = isnan(e) ? INFINITY : e; /* a NaN fails */
                        }
                    /* float32 accumulation of exact bfloat16 products */
                    cr_expect(worst <= 1e-5, "bf16_st ta=%d tb=%d acc=%d rep=%d: error %.3g", ta, tb, acc, rep, worst);
                    free(A), free(B), free(C), free(C0), free(Ah), free(Bh);
                }
    aria_ctx_free(ctx);
}

/* ---- the context --------------------------------------------------------- */

Test(kernels, ctx_options_derive_describe) {
    aria_error err;
    aria_ctx *def = NULL, *bad = (aria_ctx *)&err;
    cr_assert_eq(aria_ctx_new(&def, NULL, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(kern_ctx_precision(def), ARIA_PREC_FAST, "the default precision is fast");
    cr_expect(kern_ctx_has_backend(def, "portable"));
    cr_expect_eq(kern_ctx_threads(def), (int)sysconf(_SC_NPROCESSORS_ONLN));
    aria_ctx_free(def);
    aria_ctx_opts o = {1, (aria_precision)7, 0};
    cr_expect_eq(aria_ctx_new(&bad, &o, &err), ARIA_ERR_ARG);
    cr_expect_null(bad);
    cr_expect(strstr(err.msg, "precision"), "%s", err.msg);

    aria_ctx *c = ctx_new(ARIA_PREC_FAST, 0), *d = NULL;
    cr_assert_eq(kern_ctx_derive(&d, c, ARIA_PREC_EXACT, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(kern_ctx_pool(d), kern_ctx_pool(c), "a derived context shares the pool");
    cr_expect_eq(kern_ctx_precision(d), ARIA_PREC_EXACT);
    cr_expect(strstr(aria_ctx_describe(c), "precision fast, 2 threads"), "%s", aria_ctx_describe(c));
    cr_expect(strstr(aria_ctx_describe(d), "precision exact, 2 threads"), "%s", aria_ctx_describe(d));
    /* its products follow its own precision */
    mat W = make_mat(300, 300, ARIA_DT_BF16);
    cr_expect(!on_dnnl(d, 64, &W.m));
    cr_expect_eq(on_dnnl(c, 64, &W.m), kern_ctx_has_backend(c, "onednn"));
    free_mat(&W);
    aria_ctx_free(d); /* before its base */
    aria_ctx_free(c);
}
