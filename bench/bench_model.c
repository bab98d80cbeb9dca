/*
 * bench_model.c - inference speed of the transformer (issue "Transformer
 * inference", items 3, 4, 10): prefill and decode tokens/s of the medium
 * model with float32 or bfloat16 weights, against the machine's own
 * bounds measured in the same run.
 *
 *   build/bench_model [--dtype f32|bf16|q8_0|q4_0|q4_k] [--model FILE] [--reps N]
 *                     [--prompt N] [--steps N] [--threads N]
 *                     [--precision exact|fast]
 *   build/bench_model --micro [--reps N] [--threads N]
 *
 * The model: FILE, default /tmp/aria-bench-medium-<dtype>.safetensors,
 * written on first use with the "medium" shape and uniform random weights
 * (std 0.02; LayerNorm weight 1, bias 0) by a fast generator here
 * (aria_model_new_random draws 658 M Box-Muller normals from the Python-
 * compatible RNG, which takes minutes); it is then loaded with
 * aria_model_load like any checkpoint (memory-mapped).
 *
 * Measured, each the median of --reps runs (default 5), min and max beside
 * (--micro: the first three only; otherwise the rest, so that the peak RSS
 * is the model's alone; the model file is written by a child process):
 *   bandwidth   read of a 1 GiB buffer (one stream per thread, and 8
 *               streams 16 KB apart as the decode kernel reads), and copy,
 *               1 and all threads; mem_read, the better read with all
 *               threads, is the bound for decoding;
 *   gemm peak   oneDNN's own bf16 and f32 matmul (M 512, K 1536, N 6144,
 *               weights in its preferred layout, its OpenMP threads = ours)
 *               and the same shape through kern_matmul: the bound for
 *               prefill;
 *   matvec      kern_matmul of 1 and 4 rows over 1 GiB of weights (the
 *               decode kernel alone), GB/s;
 *   prefill     a --prompt token prompt (default 512) into a fresh session,
 *               last-position logits: tokens/s, GFLOP/s (2 flops per
 *               multiply-add of the matrix products and of attention).
 *               The first prefill, which packs the weights for oneDNN, is
 *               reported apart;
 *   decode      after that prompt, --steps (default 32) single-token steps
 *               with logits, for batch 1 and batch 4 (4 rows advance
 *               together; tokens/s counts all rows), and the bytes a step
 *               must read (weights streamed once per step for all rows,
 *               plus the KV cache) over the step time, GB/s, also as a
 *               percentage of the read bandwidth measured right before and
 *               after that repetition (see probe);
 *   peak RSS    VmHWM of this process (one dtype per run), without the
 *               bandwidth probe's buffer.
 *
 * Each metric is also printed as
 *   RESULT <metric> <median> <unit> min=<x> max=<y> n=<reps>
 * for bench/run_model.sh.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "bench_common.h"
#include "kernels/backend.h"
#include "kernels/kernels.h"

#ifdef HAVE_DNNL
#include <dnnl.h>
#include <omp.h>
#endif

/* ---------------------------------------------------------------------- */
/* helpers (the shared ones in bench_common.h)                            */
/* ---------------------------------------------------------------------- */

static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_model: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* uniform on [-a, a] */
static inline float rnd_uniform(float a) { return (float)((double)(rnd() >> 11) * 0x1p-53 * 2.0 - 1.0) * a; }

/* ---------------------------------------------------------------------- */
/* the model file                                                         */
/* ---------------------------------------------------------------------- */

typedef struct {
    aria_tensor *t;
    size_t n, cap;
    aria_dtype dt;
} tlist;

static void add_tensor(tlist *l, const char *name, int64_t a, int64_t b, int kind) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, l->cap * sizeof *l->t);
        if (!l->t) exit(2);
    }
    size_t count = (size_t)a * (size_t)(b ? b : 1), esz = l->dt == ARIA_DT_F32 ? 4 : 2;
    uint8_t *buf = xmalloc(count * esz);
    /* uniform with std 0.02 for matrices, 1 / 0 for LayerNorm weight / bias */
    const float amp = 0.02f * 1.7320508f;
    for (size_t i = 0; i < count; i++) {
        float f = kind == 0 ? rnd_uniform(amp) : kind == 1 ? 1.0f : 0.0f;
        if (l->dt == ARIA_DT_F32) {
            memcpy(buf + 4 * i, &f, 4);
        } else {
            uint16_t h = aria_f32_to_bf16(f);
            memcpy(buf + 2 * i, &h, 2);
        }
    }
    aria_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = l->dt;
    t->ndim = b ? 2 : 1;
    t->shape[0] = a;
    t->shape[1] = b;
    t->data = buf;
    t->nbytes = count * esz;
}

static void write_model(const char *path, const aria_model_config *c, aria_dtype dt) {
    fprintf(stderr, "bench_model: writing %s (medium, %s) ...\n", path, dt == ARIA_DT_F32 ? "f32" : "bf16");
    double t0 = now_s();
    tlist l = {.dt = dt};
    int64_t d = c->d_model, ff = (int64_t)c->ff_mult * d, V = c->vocab_size;
    char n[128];
    add_tensor(&l, "model.tok_embeddings.weight", V, d, 0);
    add_tensor(&l, "model.out_layer_norm.weight", d, 0, 1);
    add_tensor(&l, "model.out_layer_norm.bias", d, 0, 2);
    for (int i = 0; i < c->n_layers; i++) {
#define NAME(s) (snprintf(n, sizeof n, "model.encode_layers.%d." s, i), n)
        add_tensor(&l, NAME("mixed_qkv.weight"), 3 * d, d, 0);
        add_tensor(&l, NAME("att_proj_linear.weight"), d, d, 0);
        add_tensor(&l, NAME("ff_gate_proj.weight"), ff, d, 0);
        add_tensor(&l, NAME("ff_up_proj.weight"), ff, d, 0);
        add_tensor(&l, NAME("ff_down_proj.weight"), d, ff, 0);
        add_tensor(&l, NAME("norm1.weight"), d, 0, 1);
        add_tensor(&l, NAME("norm1.bias"), d, 0, 2);
        add_tensor(&l, NAME("norm2.weight"), d, 0, 1);
        add_tensor(&l, NAME("norm2.bias"), d, 0, 2);
#undef NAME
    }
    add_tensor(&l, "lm_head.weight", V, d, 0);
    char cfg[512];
    aria_config_to_json(c, cfg, sizeof cfg);
    const char *keys[] = {"format", "aria_config"}, *vals[] = {"pt", cfg};
    aria_error err = {{0}};
    if (aria_st_write(path, l.t, l.n, keys, vals, 2, &err) != ARIA_OK) {
        fprintf(stderr, "bench_model: %s: %s\n", path, err.msg);
        exit(2);
    }
    for (size_t i = 0; i < l.n; i++) {
        free((void *)l.t[i].name);
        free((void *)l.t[i].data);
    }
    free(l.t);
    fprintf(stderr, "bench_model: written in %.1f s\n", now_s() - t0);
}

/* ---------------------------------------------------------------------- */
/* memory bandwidth                                                       */
/* ---------------------------------------------------------------------- */

typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    size_t off, len;
    int copy; /* 0 read, 1 copy, 2 read in 8 streams */
    uint64_t sink;
} bw_arg;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t len) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= len; i += 256) {
        a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
        a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
        a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
        a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}

/* The access pattern of the decode kernel: 8 streams 16 KB apart (8
   weight rows side by side), block after block. A core keeps more reads
   in flight this way than with one stream. */
__attribute__((target("avx512f"))) static uint64_t read8_avx512(const uint8_t *p, size_t len) {
    enum { SUB = 16384 };
    __m512i a[8];
    for (int s = 0; s < 8; s++) a[s] = _mm512_setzero_si512();
    for (size_t b = 0; b + 8 * SUB <= len; b += 8 * SUB)
        for (size_t i = 0; i < SUB; i += 64)
            for (int s = 0; s < 8; s++) a[s] = _mm512_xor_si512(a[s], _mm512_load_si512(p + b + (size_t)s * SUB + i));
    for (int s = 1; s < 8; s++) a[0] = _mm512_xor_si512(a[0], a[s]);
    return (uint64_t)_mm512_reduce_add_epi64(a[0]);
}
#endif

static uint64_t read_c(const uint8_t *p, size_t len) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i + 4 <= len / 8; i += 4) a0 ^= q[i], a1 ^= q[i + 1], a2 ^= q[i + 2], a3 ^= q[i + 3];
    return a0 ^ a1 ^ a2 ^ a3;
}

static void *bw_thread(void *v) {
    bw_arg *a = v;
    if (a->copy == 1) {
        memcpy(a->dst + a->off, a->src + a->off, a->len);
    } else {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (__builtin_cpu_supports("avx512f"))
            a->sink = a->copy == 2 ? read8_avx512(a->src + a->off, a->len) : read_avx512(a->src + a->off, a->len);
        else
#endif
            a->sink = read_c(a->src + a->off, a->len);
    }
    return NULL;
}

/* GB/s of reading (copy: 0; 2: in 8 streams) or copying (copy 1: bytes
   read + written) `len` bytes split over `threads` threads. */
static double bandwidth(const uint8_t *src, uint8_t *dst, size_t len, int threads, int copy) {
    pthread_t th[64];
    bw_arg a[64];
    size_t per = len / (size_t)threads / 131072 * 131072;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        a[i] = (bw_arg){src, dst, (size_t)i * per, per, copy, 0};
        pthread_create(&th[i], NULL, bw_thread, &a[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double t = now_s() - t0;
    return (double)per * threads * (copy == 1 ? 2 : 1) / t / 1e9;
}

/* ---------------------------------------------------------------------- */
/* bandwidth next to each decode measurement                              */
/* ---------------------------------------------------------------------- */

/* The machine is a shared VM whose memory bandwidth drifts by tens of per
   cent from one minute to the next, so each decode measurement is
   compared with the read rate measured just before and just after it (the
   better of the two). The probe buffer is filled, read and handed back
   (MADV_DONTNEED) each time; the peak RSS excludes it: VmHWM is noted
   before each probe and reset after it through /proc/self/clear_refs. */
typedef struct {
    uint8_t *buf;
    size_t len;
    int threads;
    double peak_kb;
    int hwm_reset_ok;
} probe;

static double probe_read(probe *p) {
    double hwm = vm_hwm_kb();
    if (hwm > p->peak_kb) p->peak_kb = hwm;
    memset(p->buf, 1, p->len);
    double best = 0;
    for (int i = 0; i < 3; i++) {
        double bw = bandwidth(p->buf, NULL, p->len, p->threads, 2);
        if (bw > best) best = bw;
    }
    madvise(p->buf, p->len, MADV_DONTNEED);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    p->hwm_reset_ok = f && fputs("5", f) >= 0;
    if (f) p->hwm_reset_ok &= fclose(f) == 0;
    return best;
}

/* ---------------------------------------------------------------------- */
/* GEMM peak (oneDNN alone)                                               */
/* ---------------------------------------------------------------------- */

#ifdef HAVE_DNNL
/* GFLOP/s of one oneDNN matmul M x K x N, weights in the layout it
   prefers, OpenMP threads = threads; median of reps. NAN on failure. */
static stats onednn_peak(int M, int K, int N, int bf16, int threads, int reps) {
    stats bad = {NAN, NAN, NAN, 0};
    dnnl_engine_t eng;
    dnnl_stream_t st;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) || dnnl_stream_create(&st, eng, dnnl_stream_default_flags))
        return bad;
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_md, b_any, c_md;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dt, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dt, dnnl_ba);
    dnnl_memory_desc_init_by_tag(&b_any, 2, bd, dt, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t d;
    dnnl_primitive_desc_t pd, rpd;
    dnnl_primitive_t p, r;
    if (dnnl_matmul_desc_init(&d, &a_md, &b_any, NULL, &c_md) || dnnl_primitive_desc_create(&pd, &d, NULL, eng, NULL))
        return bad;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    size_t es = bf16 ? 2 : 4;
    uint8_t *A = xmalloc((size_t)M * K * es), *B = xmalloc((size_t)K * N * es),
            *Bp = xmalloc(dnnl_memory_desc_get_size(wmd)), *C = xmalloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K * es; i++) A[i] = (uint8_t)(i * 7 % 61 ? 0x3c : 0xbc);
    for (size_t i = 0; i < (size_t)K * N * es; i++) B[i] = (uint8_t)(i * 13 % 59 ? 0x3c : 0xbc);
    dnnl_memory_t am, bm, bpm, cm;
    dnnl_memory_create(&am, &a_md, eng, A);
    dnnl_memory_create(&bm, &b_md, eng, B);
    dnnl_memory_create(&bpm, wmd, eng, Bp);
    dnnl_memory_create(&cm, &c_md, eng, C);
    dnnl_reorder_primitive_desc_create(&rpd, &b_md, eng, wmd, eng, NULL);
    dnnl_primitive_create(&r, rpd);
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, bm}, {DNNL_ARG_TO, bpm}};
    dnnl_primitive_execute(r, st, 2, ra);
    dnnl_stream_wait(st);
    dnnl_primitive_create(&p, pd);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bpm}, {DNNL_ARG_DST, cm}};
    double v[64];
    dnnl_primitive_execute(p, st, 3, args); /* warm-up */
    dnnl_stream_wait(st);
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        dnnl_primitive_execute(p, st, 3, args);
        dnnl_stream_wait(st);
        v[i] = 2.0 * M * K * N / (now_s() - t0) / 1e9;
    }
    dnnl_primitive_destroy(p);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(am);
    dnnl_memory_destroy(bm);
    dnnl_memory_destroy(bpm);
    dnnl_memory_destroy(cm);
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    free(A), free(B), free(Bp), free(C);
    omp_set_num_threads(saved);
    return stats_of(v, reps);
}
#endif

/* GFLOP/s (T > 4) or GB/s of weights (T <= 4) of kern_matmul on a random
   matrix of rows x cols in dtype dt. */
static stats bench_gemm(aria_ctx *ctx, int T, int rows, int cols, aria_dtype dt, int reps) {
    size_t n = (size_t)rows * cols, es = dt == ARIA_DT_F32 ? 4 : 2;
    int quant = kern_dtype_quantized(dt);
    /* quantized: the integers, then the scales (bytes of both counted) */
    size_t qb = quant ? kern_quant_row_bytes(dt, cols) * rows : 0, nsc = quant ? n / KERN_QBLOCK : 0;
    uint8_t *w = xmalloc(quant ? qb + 2 * nsc : n * es);
    float *row = quant ? xmalloc((size_t)cols * 4) : NULL;
    for (int r = 0; quant && r < rows; r++) {
        if (dt == ARIA_DT_Q4_K && r >= 64) { /* its quantizer is slow: the first 64 rows again (the speed
                                                does not depend on the values) */
            size_t rb = kern_quant_row_bytes(dt, cols), sb = (size_t)cols / KERN_QBLOCK * 2;
            memcpy(w + (size_t)r * rb, w + (size_t)(r % 64) * rb, rb);
            memcpy(w + qb + (size_t)r * sb, w + qb + (size_t)(r % 64) * sb, sb);
            continue;
        }
        for (int k = 0; k < cols; k++) row[k] = rnd_uniform(0.03f);
        kern_quant_row(dt, row, cols, w + (size_t)r * kern_quant_row_bytes(dt, cols),
                       (uint16_t *)(w + qb) + (size_t)r * (cols / KERN_QBLOCK));
    }
    free(row);
    for (size_t i = 0; !quant && i < n; i++) {
        float f = rnd_uniform(0.03f);
        if (es == 4)
            memcpy(w + 4 * i, &f, 4);
        else {
            uint16_t h = aria_f32_to_bf16(f);
            memcpy(w + 2 * i, &h, 2);
        }
    }
    float *x = xmalloc((size_t)T * cols * 4), *y = xmalloc((size_t)T * rows * 4);
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = rnd_uniform(1.0f);
    kern_mat W = {.dtype = dt, .data = w, .rows = rows, .cols = cols, .scales = quant ? (uint16_t *)(w + qb) : NULL};
    size_t bytes = quant ? qb + 2 * nsc : n * es;
    kern_matmul(ctx, x, T, &W, y, 0); /* warm-up, packs */
    double v[64];
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        kern_matmul(ctx, x, T, &W, y, 0);
        double t = now_s() - t0;
        v[i] = T > 4 ? 2.0 * T * (double)n / t / 1e9 : (double)bytes / t / 1e9;
    }
    kern_mat_release(&W);
    free(w), free(x), free(y);
    return stats_of(v, reps);
}

/* ---------------------------------------------------------------------- */
/* the model                                                              */
/* ---------------------------------------------------------------------- */

static void fill_ids(int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) ids[i] = 3 + (int32_t)(rnd() % 17000);
}

/* flops of the matrix products and of attention for T new tokens after
   `past` of them, logits at the last position only */
static void flops_of(const aria_model_config *c, int T, int past, double *gemm, double *attn) {
    double d = c->d_model, ff = (double)c->ff_mult * d;
    double layer = 3 * d * d + d * d + 3 * d * ff; /* multiply-adds per token */
    *gemm = 2.0 * T * layer * c->n_layers + 2.0 * d * c->vocab_size;
    double keys = 0; /* sum over new tokens of the keys each sees */
    for (int t = 0; t < T; t++) keys += past + t + 1;
    *attn = 2.0 * 2.0 * d * keys * c->n_layers; /* q.k and p.v */
}

static double weight_bytes(const aria_model_config *c, aria_dtype dt) {
    double d = c->d_model, ff = (double)c->ff_mult * d;
    /* quantized: the integers and a float16 scale per block of 32 */
    double es = dt == ARIA_DT_F32 ? 4 : dt == ARIA_DT_Q8_0 ? 34.0 / 32 : dt == ARIA_DT_Q4_0 || dt == ARIA_DT_Q4_K ? 18.0 / 32 : 2;
    return es * ((4 * d * d + 3 * d * ff) * c->n_layers + d * c->vocab_size);
}

static int die(const char *what, const aria_error *e) {
    fprintf(stderr, "bench_model: %s: %s\n", what, e->msg);
    exit(2);
}

int main(int argc, char **argv) {
    const char *dtype = "bf16", *model = NULL, *precision = NULL;
    int reps = 5, prompt = 512, steps = 32, threads = 0, micro = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dtype") && v) dtype = v, i++;
        else if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--prompt") && v) prompt = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v) steps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--precision") && v) precision = v, i++;
        else if (!strcmp(a, "--micro")) micro = 1;
        else {
            fprintf(stderr, "usage: bench_model [--dtype f32|bf16|q8_0|q4_0|q4_k] [--model FILE] [--reps N] [--prompt N] "
                            "[--steps N] [--threads N] [--precision exact|fast] [--micro]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64 || prompt < 1 || steps < 1) {
        fprintf(stderr, "bench_model: --reps 1..64, --prompt and --steps positive\n");
        return 2;
    }
    /* the kernels read ARIA_PRECISION once, at their first use */
    if (precision) setenv("ARIA_PRECISION", precision, 1);
    /* q8_0 / q4_0: a file aria quantize wrote (--model, or
       /tmp/aria-bench-medium-<dtype>.safetensors made beforehand) */
    aria_dtype dt = !strcmp(dtype, "f32")    ? ARIA_DT_F32
                    : !strcmp(dtype, "q8_0") ? ARIA_DT_Q8_0
                    : !strcmp(dtype, "q4_0") ? ARIA_DT_Q4_0
                    : !strcmp(dtype, "q4_k") ? ARIA_DT_Q4_K
                                             : ARIA_DT_BF16;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_model: dtype %s, threads %d, reps %d, prompt %d, steps %d\n", dtype, threads, reps, prompt, steps);
    /* contexts for the kernel benchmarks: the run's precision, and each */
    aria_ctx *ctx = NULL, *fast = NULL, *exact = NULL;
    aria_ctx_opts co = {threads, precision && !strcmp(precision, "exact") ? ARIA_PREC_EXACT : ARIA_PREC_FAST, 0};
    aria_error cerr;
    if (aria_ctx_new(&ctx, &co, &cerr) || kern_ctx_derive(&fast, ctx, ARIA_PREC_FAST, &cerr) ||
        kern_ctx_derive(&exact, ctx, ARIA_PREC_EXACT, &cerr)) {
        fprintf(stderr, "bench_model: %s\n", cerr.msg);
        return 1;
    }
    printf("kernels: %s\n", aria_ctx_describe(ctx));
    printf("RESULT threads %d threads\n", threads);

    if (micro) {
        size_t len = (size_t)1 << 30;
        uint8_t *src = xmalloc(len), *dst = xmalloc(len);
        memset(src, 1, len);
        memset(dst, 2, len);
        double r1[64], rn[64], s1[64], sn[64], c1[64], cn[64], best[64];
        for (int i = 0; i < reps; i++) {
            r1[i] = bandwidth(src, dst, len, 1, 0);
            rn[i] = bandwidth(src, dst, len, threads, 0);
            s1[i] = bandwidth(src, dst, len, 1, 2);
            sn[i] = bandwidth(src, dst, len, threads, 2);
            c1[i] = bandwidth(src, dst, len, 1, 1);
            cn[i] = bandwidth(src, dst, len, threads, 1);
            best[i] = rn[i] > sn[i] ? rn[i] : sn[i];
        }
        result("mem_read_1stream_1t", stats_of(r1, reps), "GB/s");
        result("mem_read_1stream", stats_of(rn, reps), "GB/s");
        result("mem_read_8streams_1t", stats_of(s1, reps), "GB/s");
        result("mem_read_8streams", stats_of(sn, reps), "GB/s");
        /* the decode bound: the better read pattern, all threads */
        result("mem_read", stats_of(best, reps), "GB/s");
        result("mem_copy_1t", stats_of(c1, reps), "GB/s");
        result("mem_copy", stats_of(cn, reps), "GB/s");
        free(src), free(dst);

#ifdef HAVE_DNNL
        result("dnnl_gemm_bf16_peak", onednn_peak(512, 1536, 6144, 1, threads, reps), "GFLOP/s");
        result("dnnl_gemm_f32_peak", onednn_peak(512, 1536, 6144, 0, threads, reps), "GFLOP/s");
        result("dnnl_gemm_bf16_peak_1t", onednn_peak(512, 1536, 6144, 1, 1, reps), "GFLOP/s");
        result("dnnl_gemm_f32_peak_1t", onednn_peak(512, 1536, 6144, 0, 1, reps), "GFLOP/s");
#endif
        result("kern_gemm_bf16_fast", bench_gemm(fast, 512, 6144, 1536, ARIA_DT_BF16, reps), "GFLOP/s");
        result("kern_gemm_f32_fast", bench_gemm(fast, 512, 6144, 1536, ARIA_DT_F32, reps), "GFLOP/s");
        result("kern_gemm_bf16_exact", bench_gemm(exact, 512, 6144, 1536, ARIA_DT_BF16, reps), "GFLOP/s");
        result("kern_gemm_f32_exact", bench_gemm(exact, 512, 6144, 1536, ARIA_DT_F32, reps), "GFLOP/s");
        /* 1 GiB of weights, far beyond the caches */
        result("matvec_bf16_b1", bench_gemm(ctx, 1, 65536, 8192, ARIA_DT_BF16, reps), "GB/s");
        result("matvec_bf16_b4", bench_gemm(ctx, 4, 65536, 8192, ARIA_DT_BF16, reps), "GB/s");
        result("matvec_f32_b1", bench_gemm(ctx, 1, 32768, 8192, ARIA_DT_F32, reps), "GB/s");
        result("matvec_f32_b4", bench_gemm(ctx, 4, 32768, 8192, ARIA_DT_F32, reps), "GB/s");
        /* quantized: fast = int8 activations on VNNI where the CPU has it,
           exact = float32 activations times the dequantized weights
           (the portable product); 1 GiB of integers */
        result("matvec_q8_0_b1", bench_gemm(fast, 1, 131072, 8192, ARIA_DT_Q8_0, reps), "GB/s");
        result("matvec_q8_0_b1_float_x", bench_gemm(exact, 1, 131072, 8192, ARIA_DT_Q8_0, reps), "GB/s");
        result("matvec_q4_0_b1", bench_gemm(fast, 1, 262144, 8192, ARIA_DT_Q4_0, reps), "GB/s");
        result("matvec_q4_0_b1_float_x", bench_gemm(exact, 1, 262144, 8192, ARIA_DT_Q4_0, reps), "GB/s");
        /* 4 tokens (variations decoded together): the weights are read
           once a step, so the GB/s should stay near b1's */
        result("matvec_q8_0_b4", bench_gemm(fast, 4, 131072, 8192, ARIA_DT_Q8_0, reps), "GB/s");
        result("matvec_q4_0_b4", bench_gemm(fast, 4, 262144, 8192, ARIA_DT_Q4_0, reps), "GB/s");
        result("kern_gemm_q8_0_fast", bench_gemm(fast, 512, 6144, 1536, ARIA_DT_Q8_0, reps), "GFLOP/s");
        result("kern_gemm_q4_0_fast", bench_gemm(fast, 512, 6144, 1536, ARIA_DT_Q4_0, reps), "GFLOP/s");
        result("matvec_q4_k_b1", bench_gemm(fast, 1, 262144, 8192, ARIA_DT_Q4_K, reps), "GB/s");
        result("matvec_q4_k_b4", bench_gemm(fast, 4, 262144, 8192, ARIA_DT_Q4_K, reps), "GB/s");
        result("kern_gemm_q4_k_fast", bench_gemm(fast, 512, 6144, 1536, ARIA_DT_Q4_K, reps), "GFLOP/s");
        /* the AVX-VNNI (256-bit) variant of the quantized products, where
           the CPU has it, in a context of its own */
        const kern_backend_i *v256 = kern_backend_quant_variant("avxvnni");
        aria_ctx *c256 = NULL;
        if (v256 && aria_ctx_new(&c256, &(aria_ctx_opts){threads, ARIA_PREC_FAST, 0}, &cerr) == 0 &&
            kern_ctx_use_backend(c256, v256)) {
            result("matvec_q8_0_b1_avxvnni", bench_gemm(c256, 1, 131072, 8192, ARIA_DT_Q8_0, reps), "GB/s");
            result("matvec_q4_0_b1_avxvnni", bench_gemm(c256, 1, 262144, 8192, ARIA_DT_Q4_0, reps), "GB/s");
            result("matvec_q8_0_b4_avxvnni", bench_gemm(c256, 4, 131072, 8192, ARIA_DT_Q8_0, reps), "GB/s");
            result("matvec_q4_0_b4_avxvnni", bench_gemm(c256, 4, 262144, 8192, ARIA_DT_Q4_0, reps), "GB/s");
            result("kern_gemm_q8_0_fast_avxvnni", bench_gemm(c256, 512, 6144, 1536, ARIA_DT_Q8_0, reps), "GFLOP/s");
            result("kern_gemm_q4_0_fast_avxvnni", bench_gemm(c256, 512, 6144, 1536, ARIA_DT_Q4_0, reps), "GFLOP/s");
            /* q4_k's 256-bit form, in the same context (its own backend) */
            const kern_backend_i *k256 = kern_backend_quant_k_variant("avxvnni");
            if (k256 && kern_ctx_use_backend(c256, k256)) {
                result("matvec_q4_k_b1_avxvnni", bench_gemm(c256, 1, 262144, 8192, ARIA_DT_Q4_K, reps), "GB/s");
                result("kern_gemm_q4_k_fast_avxvnni", bench_gemm(c256, 512, 6144, 1536, ARIA_DT_Q4_K, reps),
                       "GFLOP/s");
            }
        }
        aria_ctx_free(c256);
    }
    aria_ctx_free(exact);
    aria_ctx_free(fast);
    aria_ctx_free(ctx);
    if (micro) return 0;

    aria_model_config cfg;
    aria_config_preset(&cfg, "medium");
    char path[512];
    if (!model) {
        snprintf(path, sizeof path, "/tmp/aria-bench-medium-%s.safetensors", dtype);
        model = path;
        if (access(model, R_OK) != 0 && kern_dtype_quantized(dt)) {
            fprintf(stderr, "bench_model: no %s: write it with `aria quantize --type %s "
                            "/tmp/aria-bench-medium-bf16.safetensors -o %s`\n", model, dtype, model);
            return 2;
        }
        if (access(model, R_OK) != 0) {
            /* in a child, so its buffers stay out of our peak RSS */
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                write_model(model, &cfg, dt);
                _exit(0);
            }
            int st = 0;
            if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "bench_model: could not write %s\n", model);
                return 2;
            }
        }
    }
    aria_model *m;
    aria_error err = {{0}};
    double t0 = now_s();
    if (aria_model_load(&m, model, NULL, &err) != ARIA_OK) die(model, &err);
    aria_model_set_threads(m, threads);
    const aria_model_config *c = aria_model_get_config(m);
    printf("model: %s (d %d, %d layers, vocab %d), loaded in %.2f s\n", model, c->d_model, c->n_layers,
           c->vocab_size, now_s() - t0);
    int V = c->vocab_size;

    probe pr = {.len = (size_t)256 << 20, .threads = threads};
    pr.buf = mmap(NULL, pr.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pr.buf == MAP_FAILED) {
        fprintf(stderr, "bench_model: no memory for the bandwidth probe\n");
        return 2;
    }

    /* ---- prefill, then decode at batch 1 in the same session ---- */
    int32_t *ids = xmalloc((size_t)4 * (prompt + steps) * sizeof *ids);
    float *logits = xmalloc((size_t)4 * V * sizeof *logits);
    double pf[64], dec1[64], bw1[64], pf_cpu[64], d1_cpu[64], first = 0;
    aria_session *s;
    if (aria_session_new_kv(&s, m, 1, prompt + steps, ARIA_KV_BF16, &err) != ARIA_OK) die("session", &err);
    for (int r = -1; r < reps; r++) {
        aria_session_reset(s);
        fill_ids(ids, (size_t)prompt + steps);
        double c0 = cpu_s();
        t0 = now_s();
        if (aria_session_forward(s, ids, prompt, ARIA_OUT_LOGITS, 0, logits, &err) != ARIA_OK) die("prefill", &err);
        double t = now_s() - t0;
        if (r < 0) {
            first = t; /* packs the weights for oneDNN */
            continue;
        }
        pf[r] = t;
        pf_cpu[r] = 100.0 * (cpu_s() - c0) / (t * threads);
        double before = probe_read(&pr);
        c0 = cpu_s();
        t0 = now_s();
        for (int k = 0; k < steps; k++)
            if (aria_session_forward(s, ids + prompt + k, 1, ARIA_OUT_LOGITS, 0, logits, &err) != ARIA_OK)
                die("decode", &err);
        dec1[r] = (now_s() - t0) / steps;
        d1_cpu[r] = 100.0 * (cpu_s() - c0) / (dec1[r] * steps * threads);
        double after = probe_read(&pr);
        bw1[r] = before > after ? before : after;
    }
    aria_session_free(s);
    double g, a;
    flops_of(c, prompt, 0, &g, &a);
    double pf_tok[64], pf_gf[64], d1_tok[64], d1_gb[64], d1_pct[64], bw1s[64];
    double wb = weight_bytes(c, dt);
    /* KV cache read per step at the mean decode position: bfloat16 in fast
       precision (the sessions ask for it, as aria_generate's do), else
       float32 */
    double kv_el = co.precision == ARIA_PREC_FAST ? 2.0 : 4.0;
    double kv1 = 2.0 * kv_el * c->d_model * c->n_layers * (prompt + steps / 2.0);
    for (int r = 0; r < reps; r++) {
        pf_tok[r] = prompt / pf[r];
        pf_gf[r] = (g + a) / pf[r] / 1e9;
        d1_tok[r] = 1.0 / dec1[r];
        d1_gb[r] = (wb + kv1) / dec1[r] / 1e9;
        d1_pct[r] = 100.0 * d1_gb[r] / bw1[r];
        bw1s[r] = bw1[r];
    }
    result1("prefill_first_s", first, "s");
    result("prefill_tok_s", stats_of(pf_tok, reps), "tok/s");
    result("prefill_gflops", stats_of(pf_gf, reps), "GFLOP/s");
    /* CPU time / (wall time x threads): below 100 the OS gave our threads
       less than their cores (other work on the machine), or they slept */
    result("prefill_cpu_pct", stats_of(pf_cpu, reps), "%");
    result1("prefill_gemm_gflop", g / 1e9, "GFLOP");
    result1("prefill_attn_gflop", a / 1e9, "GFLOP");
    result("decode_b1_tok_s", stats_of(d1_tok, reps), "tok/s");
    result("decode_b1_gb_s", stats_of(d1_gb, reps), "GB/s");
    result("decode_b1_probe_read_gb_s", stats_of(bw1s, reps), "GB/s");
    result("decode_b1_pct_of_read", stats_of(d1_pct, reps), "%");
    result("decode_b1_cpu_pct", stats_of(d1_cpu, reps), "%");
    result1("decode_weight_bytes", wb, "B");
    result1("decode_b1_kv_bytes", kv1, "B");

    /* ---- batch 4 ---- */
    double dec4[64], bw4[64], d4_cpu[64];
    if (aria_session_new_kv(&s, m, 4, prompt + steps, ARIA_KV_BF16, &err) != ARIA_OK) die("session", &err);
    int32_t *b4 = xmalloc((size_t)4 * prompt * sizeof *b4), next[4];
    for (int r = 0; r < reps; r++) {
        aria_session_reset(s);
        fill_ids(b4, (size_t)4 * prompt);
        if (aria_session_forward(s, b4, prompt, ARIA_OUT_LOGITS, 0, logits, &err) != ARIA_OK) die("prefill", &err);
        double before = probe_read(&pr), c0 = cpu_s();
        t0 = now_s();
        for (int k = 0; k < steps; k++) {
            fill_ids(next, 4);
            if (aria_session_forward(s, next, 1, ARIA_OUT_LOGITS, 0, logits, &err) != ARIA_OK) die("decode", &err);
        }
        dec4[r] = (now_s() - t0) / steps;
        d4_cpu[r] = 100.0 * (cpu_s() - c0) / (dec4[r] * steps * threads);
        double after = probe_read(&pr);
        bw4[r] = before > after ? before : after;
    }
    aria_session_free(s);
    double d4_tok[64], d4_gb[64], d4_pct[64];
    for (int r = 0; r < reps; r++) {
        d4_tok[r] = 4.0 / dec4[r];
        d4_gb[r] = (wb + 4 * kv1) / dec4[r] / 1e9;
        d4_pct[r] = 100.0 * d4_gb[r] / bw4[r];
    }
    result("decode_b4_tok_s", stats_of(d4_tok, reps), "tok/s");
    result("decode_b4_gb_s", stats_of(d4_gb, reps), "GB/s");
    result("decode_b4_pct_of_read", stats_of(d4_pct, reps), "%");
    result("decode_b4_cpu_pct", stats_of(d4_cpu, reps), "%");

    double hwm = vm_hwm_kb();
    if (hwm > pr.peak_kb) pr.peak_kb = hwm;
    if (pr.hwm_reset_ok) {
        result1("peak_rss_mb", pr.peak_kb / 1024.0, "MB");
    } else { /* no clear_refs: the probe buffer is in the figure */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        result1("peak_rss_mb_with_probe", ru.ru_maxrss / 1024.0, "MB");
    }
    munmap(pr.buf, pr.len);
    free(ids), free(b4), free(logits);
    aria_model_free(m);
    return 0;
}
