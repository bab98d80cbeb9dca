/*
 * backend_onednn.c - the oneDNN backend (Debian's libdnnl-dev, 2.x): large
 * matrix products in fast precision and the bfloat16 products of the
 * training, built only when the Makefile finds oneDNN (HAVE_DNNL; never
 * in PORTABLE builds); otherwise kern_backend_onednn is NULL.
 *
 * y[T][N] (+)= x[T][K] . W^T is cut into column chunks of 256 outputs.
 * Each chunk is an independent single-threaded oneDNN matmul (into a dense
 * buffer, then copied or added into y) run as one task of our own pool, so
 * oneDNN never starts its OpenMP threads (they would spin beside the
 * pool's on a 2-core machine) and the context's thread count holds; we set
 * OpenMP's thread count to 1 around every oneDNN call and restore it.
 *
 * Weights: W is [N][K] row-major, i.e. oneDNN's K x N "ba" layout; a chunk
 * is a K x 256 slice with leading dimension K. Every matrix gets an
 * onednn_packed on its first product (hung on the kern_mat with a
 * compare-and-swap so concurrent sessions agree on one), which counts its
 * products; the PACK_AFTER-th product of a bfloat16 matrix asks oneDNN for
 * its preferred layout ("any") and reorders every chunk into it once (see
 * PACK for float32, and PACK_AFTER for why not at once). A call whose
 * primitive wants another layout (it may depend on T), or that comes
 * before the copy is complete, uses the plain slices, so the cache is never
 * wrong, only unused.
 *
 * bfloat16 weights: x is rounded to bfloat16 (round to nearest even) and
 * the product accumulates and writes float32. float32 weights: float32
 * throughout.
 *
 * Primitives run with a user scratchpad from the context's scratch so
 * several tasks may run the same primitive at once; each task has its own
 * stream. A chunk or block of rows that fails is handed back (kern_redo)
 * for dispatch.c to give to the next backend.
 */
#include "kernels/backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(HAVE_DNNL) && !defined(ARIA_PORTABLE)
#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/dynlib.h"

/* oneDNN is opened by the first context that asks for this backend, not
   linked (src/base/dynlib.h): a command that multiplies no large matrix
   never loads it, and a machine without it runs the other backends. The
   Makefile passes the soname it linked its probe against; the default is
   the one of the headers' major version (Debian's libdnnl2: libdnnl.so.2). */
#ifndef ARIA_DNNL_SONAME
#define ARIA_DNNL_SONAME "libdnnl.so." ARIA_DL_STR(DNNL_VERSION_MAJOR)
#endif

/* Every oneDNN function called below. */
#define DNNL_FNS(X) \
    X(dnnl_engine_create) X(dnnl_get_effective_cpu_isa) \
    X(dnnl_matmul_desc_init) X(dnnl_memory_create) \
    X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size) \
    X(dnnl_memory_desc_init_by_strides) X(dnnl_memory_desc_init_by_tag) \
    X(dnnl_memory_destroy) X(dnnl_memory_set_data_handle) \
    X(dnnl_post_ops_append_sum) X(dnnl_post_ops_create) \
    X(dnnl_post_ops_destroy) X(dnnl_primitive_attr_create) \
    X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_post_ops) \
    X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_primitive_create) \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_desc_query_md) X(dnnl_primitive_destroy) \
    X(dnnl_primitive_execute) X(dnnl_primitive_get_primitive_desc) \
    X(dnnl_reorder_primitive_desc_create) X(dnnl_sgemm) \
    X(dnnl_stream_create) X(dnnl_stream_destroy) \
    X(dnnl_stream_wait) X(dnnl_version)

#define DECL_FN(f) __typeof__(f) *f;
#define NAME_FN(f) #f,
static struct {
    DNNL_FNS(DECL_FN)
    /* OpenMP's, from the OpenMP runtime oneDNN is built with; absent when
       it is built with another threading (nothing to set then) */
    __typeof__(omp_get_max_threads) *get_max_threads;
    __typeof__(omp_set_num_threads) *set_num_threads;
} dl;
static char dl_why[256];

/* Opens oneDNN and fills dl; 0 when every function was found. */
static int dl_load(void) {
    static const char *const need[] = {DNNL_FNS(NAME_FN) NULL};
    static const char *const want[] = {"omp_get_max_threads", "omp_set_num_threads", NULL};
    enum { N_NEED = sizeof need / sizeof *need - 1 };
    void *fn[N_NEED], *opt[2];
    aria_dl_spec spec = {"oneDNN", ARIA_DNNL_SONAME, need, want, 0};
    if (!aria_dl_open(&spec, fn, opt, dl_why, sizeof dl_why)) return -1;
    size_t i = 0;
#define SET_FN(f) memcpy(&dl.f, &fn[i++], sizeof fn[0]);
    DNNL_FNS(SET_FN)
#undef SET_FN
    memcpy(&dl.get_max_threads, &opt[0], sizeof opt[0]);
    memcpy(&dl.set_num_threads, &opt[1], sizeof opt[1]);
    if (!dl.get_max_threads || !dl.set_num_threads) dl.get_max_threads = NULL, dl.set_num_threads = NULL;
    return 0;
}

/* From here on, the calls go through the table. */
#define dnnl_engine_create dl.dnnl_engine_create
#define dnnl_get_effective_cpu_isa dl.dnnl_get_effective_cpu_isa
#define dnnl_matmul_desc_init dl.dnnl_matmul_desc_init
#define dnnl_memory_create dl.dnnl_memory_create
#define dnnl_memory_desc_equal dl.dnnl_memory_desc_equal
#define dnnl_memory_desc_get_size dl.dnnl_memory_desc_get_size
#define dnnl_memory_desc_init_by_strides dl.dnnl_memory_desc_init_by_strides
#define dnnl_memory_desc_init_by_tag dl.dnnl_memory_desc_init_by_tag
#define dnnl_memory_destroy dl.dnnl_memory_destroy
#define dnnl_memory_set_data_handle dl.dnnl_memory_set_data_handle
#define dnnl_post_ops_append_sum dl.dnnl_post_ops_append_sum
#define dnnl_post_ops_create dl.dnnl_post_ops_create
#define dnnl_post_ops_destroy dl.dnnl_post_ops_destroy
#define dnnl_primitive_attr_create dl.dnnl_primitive_attr_create
#define dnnl_primitive_attr_destroy dl.dnnl_primitive_attr_destroy
#define dnnl_primitive_attr_set_post_ops dl.dnnl_primitive_attr_set_post_ops
#define dnnl_primitive_attr_set_scratchpad_mode dl.dnnl_primitive_attr_set_scratchpad_mode
#define dnnl_primitive_create dl.dnnl_primitive_create
#define dnnl_primitive_desc_create dl.dnnl_primitive_desc_create
#define dnnl_primitive_desc_destroy dl.dnnl_primitive_desc_destroy
#define dnnl_primitive_desc_query_md dl.dnnl_primitive_desc_query_md
#define dnnl_primitive_destroy dl.dnnl_primitive_destroy
#define dnnl_primitive_execute dl.dnnl_primitive_execute
#define dnnl_primitive_get_primitive_desc dl.dnnl_primitive_get_primitive_desc
#define dnnl_reorder_primitive_desc_create dl.dnnl_reorder_primitive_desc_create
#define dnnl_sgemm dl.dnnl_sgemm
#define dnnl_stream_create dl.dnnl_stream_create
#define dnnl_stream_destroy dl.dnnl_stream_destroy
#define dnnl_stream_wait dl.dnnl_stream_wait
#define dnnl_version dl.dnnl_version

#define CHUNK 256

/* Products go to oneDNN only from this size: below it the portable
   kernels are as fast, and the tiny test models never leave them. */
#define MIN_T 16
#define MIN_DIM 256

/* Created once, by engine_init. */
static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static int engine_ok;
static char engine_desc[96];

/* The states of a matrix's packed copy. */
enum { UNPACKED, PACKING, PACKED, PLAIN /* never: not PACK, the preferred
                                           layout is the plain one, or
                                           packing failed */ };

typedef struct {
    kern_packed head;          /* free */
    int n_chunks, last;        /* columns of the last chunk */
    atomic_int uses;           /* products so far */
    atomic_int state;          /* md, sz and data are read only once it is
                                  PACKED (written before it is) */
    dnnl_memory_desc_t md[2];  /* packed layout of a full / the last chunk */
    size_t sz[2];
    void *data;                /* chunk c at c * sz[0] */
} onednn_packed;

static void engine_init(void) {
    if (dl_load()) return;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        snprintf(dl_why, sizeof dl_why, "oneDNN not used: no CPU engine");
        return;
    }
    const dnnl_version_t *v = dnnl_version();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const char *is = isa == dnnl_cpu_isa_avx512_core_amx    ? "AMX"
                     : isa == dnnl_cpu_isa_avx512_core_bf16 ? "avx512_core_bf16"
                     : isa == dnnl_cpu_isa_avx512_core      ? "avx512_core"
                                                            : "other ISA";
    snprintf(engine_desc, sizeof engine_desc, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, is);
    engine_ok = 1;
}

/* OpenMP threads for the oneDNN calls on this thread: 1, restored after. */
static int omp_one(void) {
    if (!dl.get_max_threads) return 1;
    int n = dl.get_max_threads();
    if (n != 1) dl.set_num_threads(1);
    return n;
}
static void omp_restore(int n) {
    if (n != 1) dl.set_num_threads(n);
}

static dnnl_data_type_t dt_of(const kern_mat *W) { return W->dtype == ARIA_DT_BF16 ? dnnl_bf16 : dnnl_f32; }
static size_t esz_of(const kern_mat *W) { return W->dtype == ARIA_DT_BF16 ? 2 : 4; }

/* W rows [c*CHUNK, c*CHUNK + nc) as a K x nc matrix. */
static int plain_md(const kern_mat *W, int nc, dnnl_memory_desc_t *md) {
    dnnl_dims_t d = {W->cols, nc}, s = {1, W->cols};
    return dnnl_memory_desc_init_by_strides(md, 2, d, dt_of(W), s) != dnnl_success;
}

/* A matmul of x[T][K] by a K x nc chunk with weights layout `wmd` (NULL:
   "any") into a dense T x nc buffer: a dense destination gets oneDNN's
   brgemm kernels (~10% faster here than the gemm it picks for a column
   slice of y); the task then copies or adds the buffer into y. */
static int make_pd(const kern_mat *W, int T, int nc, const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t src, wany, dst;
    dnnl_dims_t sd = {T, W->cols}, wd = {W->cols, nc}, dd = {T, nc};
    if (dnnl_memory_desc_init_by_tag(&src, 2, sd, dt_of(W), dnnl_ab) != dnnl_success) return -1;
    if (dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success) return -1;
    if (!wmd) {
        if (dnnl_memory_desc_init_by_tag(&wany, 2, wd, dt_of(W), dnnl_format_tag_any) != dnnl_success) return -1;
        wmd = &wany;
    }
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &src, wmd, NULL, &dst) != dnnl_success) return -1;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return -1;
    int rc = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success ||
             dnnl_primitive_desc_create(pd, &md, attr, engine, NULL) != dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    return rc ? -1 : 0;
}

static size_t scratch_size(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* Runs `prim` with the given (arg, md, pointer) triples and a scratchpad
   of `scratch` bytes, on a stream of its own. */
typedef struct {
    int arg;
    const dnnl_memory_desc_t *md;
    void *ptr;
} exec_arg;

static int run_prim(kern_scratch *ks, dnnl_primitive_t prim, const exec_arg *a, int n, size_t scratch) {
    dnnl_exec_arg_t args[5];
    dnnl_memory_t mem[5] = {0};
    void *sp = NULL;
    dnnl_stream_t st = NULL;
    int rc = 0, k = 0;
    for (; k < n && !rc; k++) {
        rc = dnnl_memory_create(&mem[k], a[k].md, engine, a[k].ptr) != dnnl_success;
        args[k].arg = a[k].arg;
        args[k].memory = mem[k];
    }
    if (!rc && scratch) {
        const_dnnl_primitive_desc_t pd;
        rc = dnnl_primitive_get_primitive_desc(prim, &pd) != dnnl_success;
        sp = rc ? NULL : kern_scratch_get(ks, scratch);
        void *al = sp; /* 64-byte aligned */
        rc = rc || !sp ||
             dnnl_memory_create(&mem[k], dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), engine,
                                al) != dnnl_success;
        if (!rc) {
            args[k].arg = DNNL_ARG_SCRATCHPAD;
            args[k].memory = mem[k];
            k++;
        }
    }
    if (!rc) rc = dnnl_stream_create(&st, engine, dnnl_stream_default_flags) != dnnl_success;
    if (!rc) {
        int saved = omp_one();
        rc = dnnl_primitive_execute(prim, st, k, args) != dnnl_success || dnnl_stream_wait(st) != dnnl_success;
        omp_restore(saved);
    }
    if (st) dnnl_stream_destroy(st);
    for (int i = 0; i < 5; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    kern_scratch_put(ks, sp);
    return rc;
}

/* ---- packing ---------------------------------------------------------- */

/* Which matrices get a packed copy. Here (Zen 4, avx512_core_bf16) the
   packed layout is ~3% faster than oneDNN reading the plain slices, for
   either dtype. bfloat16: packed, as AMX kernels need a blocked layout and
   the copy costs 2 bytes a weight. float32: plain, as a second copy of a
   float32 model (2.5 GB for medium) is too much memory for 3%. */
#define PACK(W) ((W)->dtype == ARIA_DT_BF16)

/* The product of a matrix that packs it. Packing costs several prefills'
   worth of time and a second copy of the weights (medium bf16, one 229-token
   prefill, 2 threads on a loaded 2-core Zen 4: the first prefill 8.3 s
   packing at once against 2.3 s not packing, later prefills 191 against
   180 tokens/s, peak RSS 2.7 against 1.6 GB), so it only pays for a model
   that runs many prefills (embedding many files, evaluation): `aria
   generate`, one prompt then single-row decoding (never oneDNN), should
   not pay it. */
#define PACK_AFTER 8

typedef struct {
    const kern_mat *W;
    onednn_packed *pk;
    kern_scratch *ks;
    dnnl_primitive_t prim[2];
    size_t scratch[2];
    dnnl_memory_desc_t src[2];
    atomic_int bad;
} pack_job;

static void pack_task(void *ctx, size_t i) {
    pack_job *j = ctx;
    int c = (int)i, s = c == j->pk->n_chunks - 1 && j->pk->last != CHUNK;
    const uint8_t *w = (const uint8_t *)j->W->data + (size_t)c * CHUNK * j->W->cols * esz_of(j->W);
    exec_arg a[2] = {{DNNL_ARG_FROM, &j->src[s], (void *)w},
                     {DNNL_ARG_TO, &j->pk->md[s], (uint8_t *)j->pk->data + (size_t)c * j->pk->sz[0]}};
    if (run_prim(j->ks, j->prim[s], a, 2, j->scratch[s])) atomic_store(&j->bad, 1);
}

static void packed_free(kern_packed *head) {
    onednn_packed *pk = (onednn_packed *)head;
    if (!pk) return;
    free(pk->data);
    free(pk);
}

/* W's cache entry, not packed yet (NULL: out of memory). */
static onednn_packed *packed_new(const kern_mat *W) {
    onednn_packed *pk = calloc(1, sizeof *pk);
    if (!pk) return NULL;
    pk->head.free = packed_free;
    pk->n_chunks = (W->rows + CHUNK - 1) / CHUNK;
    pk->last = W->rows - (pk->n_chunks - 1) * CHUNK;
    atomic_init(&pk->uses, 0);
    atomic_init(&pk->state, PACK(W) ? UNPACKED : PLAIN);
    return pk;
}

/* Makes the packed copy of W in pk for products of T rows, by the one
   caller that moved pk from UNPACKED to PACKING; ends PACKED or PLAIN. */
static void pack(const kern_res *r, const kern_mat *W, int T, onednn_packed *pk) {
    int shapes = pk->last == CHUNK ? 1 : 2, saved = omp_one();
    pack_job j = {.W = W, .pk = pk, .ks = r->scratch};
    int rc = 0, plain = 1;
    for (int s = 0; s < shapes && !rc; s++) {
        int nc = s ? pk->last : CHUNK;
        dnnl_primitive_desc_t pd = NULL, rpd = NULL;
        rc = plain_md(W, nc, &j.src[s]) || make_pd(W, T, nc, NULL, &pd);
        if (!rc) {
            pk->md[s] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            pk->sz[s] = dnnl_memory_desc_get_size(&pk->md[s]);
            plain &= dnnl_memory_desc_equal(&pk->md[s], &j.src[s]);
            dnnl_primitive_desc_destroy(pd);
            dnnl_primitive_attr_t attr;
            rc = dnnl_primitive_attr_create(&attr) != dnnl_success;
            if (!rc) {
                rc = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success ||
                     dnnl_reorder_primitive_desc_create(&rpd, &j.src[s], engine, &pk->md[s], engine, attr) !=
                         dnnl_success;
                dnnl_primitive_attr_destroy(attr);
            }
        }
        if (!rc) {
            j.scratch[s] = scratch_size(rpd);
            rc = dnnl_primitive_create(&j.prim[s], rpd) != dnnl_success;
            dnnl_primitive_desc_destroy(rpd);
        }
    }
    omp_restore(saved);
    if (!rc && !plain) {
        size_t total = (size_t)(pk->n_chunks - 1) * pk->sz[0] + pk->sz[shapes - 1];
        pk->data = aligned_alloc(64, (total + 63) / 64 * 64);
        if (!pk->data) {
            rc = 1;
        } else {
            aria_pool_run(r->pool, pack_task, &j, (size_t)pk->n_chunks);
            rc = atomic_load(&j.bad);
        }
    }
    for (int s = 0; s < 2; s++)
        if (j.prim[s]) dnnl_primitive_destroy(j.prim[s]);
    if (rc || plain) { /* the plain slices will do */
        free(pk->data);
        pk->data = NULL;
    }
    atomic_store(&pk->state, rc || plain ? PLAIN : PACKED);
}


/* ---- the product ------------------------------------------------------ */

typedef struct {
    const kern_mat *W;
    const onednn_packed *pk;
    kern_scratch *ks;
    int T, acc, n_chunks, last;
    const void *src;
    float *y;
    float *tmp;                /* dense T x CHUNK per chunk */
    dnnl_primitive_t prim[2];
    int packed[2];             /* the primitive takes the packed layout */
    size_t scratch[2];
    dnnl_memory_desc_t src_md, dst_md[2], w_md[2];
    unsigned char *bad;        /* per chunk */
} mm_job;

static void mm_task(void *ctx, size_t i) {
    mm_job *j = ctx;
    int c = (int)i, s = c == j->n_chunks - 1 && j->last != CHUNK, nc = s ? j->last : CHUNK;
    void *w = j->packed[s] ? (uint8_t *)j->pk->data + (size_t)c * j->pk->sz[0]
                           : (uint8_t *)j->W->data + (size_t)c * CHUNK * j->W->cols * esz_of(j->W);
    float *tmp = j->tmp + (size_t)c * j->T * CHUNK;
    exec_arg a[3] = {{DNNL_ARG_SRC, &j->src_md, (void *)j->src},
                     {DNNL_ARG_WEIGHTS, &j->w_md[s], w},
                     {DNNL_ARG_DST, &j->dst_md[s], tmp}};
    if (run_prim(j->ks, j->prim[s], a, 3, j->scratch[s])) {
        j->bad[c] = 1;
        return;
    }
    size_t N = (size_t)j->W->rows;
    for (int t = 0; t < j->T; t++) {
        float *yr = j->y + t * N + (size_t)c * CHUNK;
        const float *tr = tmp + (size_t)t * nc;
        if (j->acc)
            for (int o = 0; o < nc; o++) yr[o] += tr[o];
        else
            memcpy(yr, tr, (size_t)nc * sizeof *yr);
    }
}

/* float32 -> bfloat16 by blocks of elements on the pool, rounding to
   nearest even (NaN stays NaN), as every bfloat16 copy in aria.c. */
typedef struct {
    const float *x;
    uint16_t *xb;
    size_t n;
} cvt_job;

#define CVT_BLOCK 65536

static void cvt_task(void *ctx, size_t i) {
    const cvt_job *j = ctx;
    size_t a = i * CVT_BLOCK, b = a + CVT_BLOCK < j->n ? a + CVT_BLOCK : j->n;
    for (size_t k = a; k < b; k++) {
        uint32_t u;
        memcpy(&u, &j->x[k], sizeof u);
        j->xb[k] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)(u >> 16 | 0x0040u)
                                                   : (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
    }
}

/* W's cache entry, hung on W by its first product, and packed by its
   PACK_AFTER-th (NULL: out of memory, or W carries another backend's
   copy). */
static onednn_packed *packed_of(const kern_res *r, const kern_mat *W, int T) {
    kern_mat *Wm = (kern_mat *)W; /* only the cache is written, a function of the weights */
    kern_packed *head = atomic_load(&Wm->packed);
    if (!head) {
        onednn_packed *mine = packed_new(W);
        if (!mine) return NULL;
        if (atomic_compare_exchange_strong(&Wm->packed, &head, &mine->head)) head = &mine->head;
        else packed_free(&mine->head); /* another thread hung its entry first: head */
    }
    if (head->free != packed_free) return NULL;
    onednn_packed *pk = (onednn_packed *)head;
    int unpacked = UNPACKED;
    if (atomic_fetch_add(&pk->uses, 1) + 1 >= PACK_AFTER && atomic_load(&pk->state) == UNPACKED &&
        atomic_compare_exchange_strong(&pk->state, &unpacked, PACKING))
        pack(r, W, T, pk);
    return pk;
}

static int onednn_matmul(const kern_res *r, const float *x, int T, const kern_mat *W, float *y, int acc,
                         const kern_redo *redo) {
    aria_pool *p = r->pool;
    onednn_packed *pk = packed_of(r, W, T);
    if (!pk) return -1;

    mm_job j = {.W = W, .pk = pk, .ks = r->scratch, .T = T, .acc = acc, .n_chunks = pk->n_chunks, .last = pk->last,
                .y = y};
    int shapes = pk->last == CHUNK ? 1 : 2, rc = 0, saved = omp_one();
    dnnl_dims_t sd = {T, W->cols};
    rc = dnnl_memory_desc_init_by_tag(&j.src_md, 2, sd, dt_of(W), dnnl_ab) != dnnl_success;
    for (int s = 0; s < shapes && !rc; s++) {
        int nc = s ? pk->last : CHUNK;
        dnnl_primitive_desc_t pd = NULL;
        if (atomic_load(&pk->state) == PACKED) {
            /* the packed copy, if this primitive wants that layout */
            rc = make_pd(W, T, nc, NULL, &pd);
            if (!rc) {
                const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
                j.packed[s] = dnnl_memory_desc_equal(want, &pk->md[s]);
                if (j.packed[s]) {
                    j.w_md[s] = pk->md[s];
                } else {
                    dnnl_primitive_desc_destroy(pd);
                    pd = NULL;
                }
            }
        }
        if (!rc && !j.packed[s]) /* the plain slices */
            rc = plain_md(W, nc, &j.w_md[s]) || make_pd(W, T, nc, &j.w_md[s], &pd);
        if (!rc) {
            j.dst_md[s] = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
            j.scratch[s] = scratch_size(pd);
            rc = dnnl_primitive_create(&j.prim[s], pd) != dnnl_success;
        }
        if (pd) dnnl_primitive_desc_destroy(pd);
    }
    omp_restore(saved);

    /* one scratch buffer: the chunks' outputs, the bfloat16 x, the flags */
    size_t n_tmp = (size_t)pk->n_chunks * T * CHUNK, n_x = W->dtype == ARIA_DT_BF16 ? (size_t)T * W->cols : 0;
    size_t x_off = n_tmp * sizeof(float), bad_off = x_off + (n_x * 2 + 63) / 64 * 64;
    unsigned char *buf = rc ? NULL : kern_scratch_get(r->scratch, bad_off + (size_t)pk->n_chunks);
    rc = rc || !buf;
    if (!rc) {
        uint16_t *xb = n_x ? (uint16_t *)(buf + x_off) : NULL;
        j.tmp = (float *)buf;
        j.bad = buf + bad_off;
        memset(j.bad, 0, (size_t)pk->n_chunks);
        if (xb) {
            cvt_job cj = {x, xb, n_x};
            aria_pool_run(p, cvt_task, &cj, (n_x + CVT_BLOCK - 1) / CVT_BLOCK);
        }
        j.src = xb ? (const void *)xb : (const void *)x;
        aria_pool_run(p, mm_task, &j, (size_t)pk->n_chunks);
        /* a failed chunk wrote nothing: its columns go back to dispatch */
        for (int c = 0; c < pk->n_chunks; c++)
            if (j.bad[c]) redo->fn(redo->arg, c * CHUNK, c * CHUNK + CHUNK < W->rows ? c * CHUNK + CHUNK : W->rows);
    }
    for (int s = 0; s < 2; s++)
        if (j.prim[s]) dnnl_primitive_destroy(j.prim[s]);
    kern_scratch_put(r->scratch, buf);
    return rc ? -1 : 0;
}

/* ---- general bfloat16 products (training) ----------------------------- */

/* brgemm takes either storage order of either operand through strides at
   about the same speed (measured 180-220 GFLOP/s on one Zen 4 core for
   the training shapes), so nothing is transposed here. oneDNN caches the
   primitives it creates; creating one again costs ~5 us. */
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, acc, rows; /* rows of C per task */
    const uint16_t *A, *B;
    float *C;
    kern_scratch *ks;
    const kern_redo *redo; /* for a block that fails */
} gemm_job;

static int gemm_prim(const gemm_job *j, int m, dnnl_primitive_t *prim, size_t *scratch, dnnl_memory_desc_t md[3]) {
    dnnl_dims_t ad = {m, j->K}, bd = {j->K, j->N}, cd = {m, j->N};
    dnnl_dims_t as = {j->ta ? 1 : j->lda, j->ta ? j->lda : 1}, bs = {j->tb ? 1 : j->ldb, j->tb ? j->ldb : 1},
                cs = {j->ldc, 1};
    if (dnnl_memory_desc_init_by_strides(&md[0], 2, ad, dnnl_bf16, as) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&md[1], 2, bd, dnnl_bf16, bs) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&md[2], 2, cd, dnnl_f32, cs) != dnnl_success)
        return -1;
    dnnl_matmul_desc_t mmd;
    if (dnnl_matmul_desc_init(&mmd, &md[0], &md[1], NULL, &md[2]) != dnnl_success) return -1;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return -1;
    int rc = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success;
    dnnl_post_ops_t po = NULL;
    if (!rc && j->acc)
        rc = dnnl_post_ops_create(&po) != dnnl_success || dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success ||
             dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success;
    dnnl_primitive_desc_t pd = NULL;
    rc = rc || dnnl_primitive_desc_create(&pd, &mmd, attr, engine, NULL) != dnnl_success;
    if (!rc) {
        *scratch = scratch_size(pd);
        rc = dnnl_primitive_create(prim, pd) != dnnl_success;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc ? -1 : 0;
}

static void gemm_task(void *ctx, size_t i) {
    gemm_job *j = ctx;
    int m0 = (int)i * j->rows, m = j->M - m0 < j->rows ? j->M - m0 : j->rows;
    int saved = omp_one();
    dnnl_primitive_t prim = NULL;
    size_t scratch = 0;
    dnnl_memory_desc_t md[3];
    int rc = gemm_prim(j, m, &prim, &scratch, md);
    omp_restore(saved);
    if (!rc) {
        const uint16_t *a = j->ta ? j->A + m0 : j->A + (size_t)m0 * j->lda;
        exec_arg args[3] = {{DNNL_ARG_SRC, &md[0], (void *)a},
                            {DNNL_ARG_WEIGHTS, &md[1], (void *)j->B},
                            {DNNL_ARG_DST, &md[2], j->C + (size_t)m0 * j->ldc}};
        rc = run_prim(j->ks, prim, args, 3, scratch);
    }
    if (prim) dnnl_primitive_destroy(prim);
    /* oneDNN fails before it writes (memory, stream or scratchpad): this
       block goes back to dispatch */
    if (rc) j->redo->fn(j->redo->arg, m0, m0 + m);
}

static int onednn_gemm_bf16(const kern_res *r, const kern_gemm_args *g, const uint16_t *A, int lda,
                            const uint16_t *B, int ldb, const kern_redo *redo) {
    aria_pool *p = r->pool;
    int n = aria_pool_size(p), M = g->M;
    /* one block of rows per thread, a multiple of 16 */
    int rows = (M + n - 1) / n;
    rows = (rows + 15) / 16 * 16;
    gemm_job j = {g->ta, g->tb, M, g->N, g->K, lda, ldb, g->ldc, g->acc, rows, A, B, g->C, r->scratch, redo};
    /* the shapes must be ones oneDNN takes before anything is written */
    for (int s = 0; s < 2; s++) {
        int m = s ? M - (M - 1) / rows * rows : rows < M ? rows : M;
        dnnl_primitive_t prim = NULL;
        size_t scratch;
        dnnl_memory_desc_t md[3];
        int saved = omp_one(), rc = gemm_prim(&j, m, &prim, &scratch, md);
        omp_restore(saved);
        if (prim) dnnl_primitive_destroy(prim);
        if (rc) return -1;
    }
    aria_pool_run(p, gemm_task, &j, (size_t)((M + rows - 1) / rows));
    return 0;
}

/* Small bfloat16 products on the calling thread (training attention: many
   products of a few MFLOP each), where creating a primitive (~5 us even
   from oneDNN's cache), memory objects and a stream per call would cost as
   much as the product. Each thread keeps its stream and its last ST_CACHE
   primitives, with their memory objects and scratchpads; a call only sets
   the data pointers. Freed when the thread ends. */
#define ST_CACHE 64
typedef struct {
    int key[10];
    dnnl_primitive_t prim;
    dnnl_memory_t mem[4]; /* src, weights, dst, scratchpad */
    void *sp;
} st_entry;
typedef struct {
    dnnl_stream_t stream;
    st_entry e[ST_CACHE];
    int n, next;
} st_cache;

static pthread_key_t st_key;
static pthread_once_t st_once = PTHREAD_ONCE_INIT;
static int st_key_ok;

static void st_entry_free(st_entry *e) {
    for (int i = 0; i < 4; i++)
        if (e->mem[i]) dnnl_memory_destroy(e->mem[i]);
    if (e->prim) dnnl_primitive_destroy(e->prim);
    free(e->sp);
    memset(e, 0, sizeof *e);
}

static void st_cache_free(void *p) {
    st_cache *c = p;
    for (int i = 0; i < c->n; i++) st_entry_free(&c->e[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    free(c);
}

static void st_init(void) { st_key_ok = pthread_key_create(&st_key, st_cache_free) == 0; }

static st_cache *st_get(void) {
    pthread_once(&st_once, st_init);
    if (!st_key_ok) return NULL;
    st_cache *c = pthread_getspecific(st_key);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (dnnl_stream_create(&c->stream, engine, dnnl_stream_default_flags) != dnnl_success ||
        pthread_setspecific(st_key, c) != 0) {
        st_cache_free(c);
        return NULL;
    }
    return c;
}

static st_entry *st_find(st_cache *c, const int key[10]) {
    for (int i = 0; i < c->n; i++)
        if (!memcmp(c->e[i].key, key, sizeof c->e[i].key)) return &c->e[i];
    st_entry *e;
    if (c->n < ST_CACHE) {
        e = &c->e[c->n++];
    } else {
        e = &c->e[c->next];
        c->next = (c->next + 1) % ST_CACHE;
        st_entry_free(e);
    }
    memcpy(e->key, key, sizeof e->key);
    gemm_job j = {.ta = key[0], .tb = key[1], .M = key[2], .N = key[3], .K = key[4], .lda = key[5], .ldb = key[6],
                  .ldc = key[7], .acc = key[8]};
    size_t scratch = 0;
    dnnl_memory_desc_t md[3];
    int rc = gemm_prim(&j, key[2], &e->prim, &scratch, md);
    for (int i = 0; i < 3 && !rc; i++)
        rc = dnnl_memory_create(&e->mem[i], &md[i], engine, DNNL_MEMORY_NONE) != dnnl_success;
    if (!rc && scratch) {
        const_dnnl_primitive_desc_t pd;
        e->sp = aligned_alloc(64, (scratch + 63) / 64 * 64);
        rc = !e->sp || dnnl_primitive_get_primitive_desc(e->prim, &pd) != dnnl_success ||
             dnnl_memory_create(&e->mem[3], dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), engine,
                                e->sp) != dnnl_success;
    }
    if (rc) {
        st_entry_free(e);
        return NULL; /* the slot stays empty (its key is zeroed) */
    }
    return e;
}

static int onednn_gemm_bf16_st(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B,
                               int ldb, float *C, int ldc, int acc) {
    int saved = omp_one(), rc = -1;
    st_cache *c = st_get();
    int key[10] = {ta, tb, M, N, K, lda, ldb, ldc, acc, 1};
    st_entry *e = c ? st_find(c, key) : NULL;
    if (e && dnnl_memory_set_data_handle(e->mem[0], (void *)A) == dnnl_success &&
        dnnl_memory_set_data_handle(e->mem[1], (void *)B) == dnnl_success &&
        dnnl_memory_set_data_handle(e->mem[2], C) == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem[0]},
                                   {DNNL_ARG_WEIGHTS, e->mem[1]},
                                   {DNNL_ARG_DST, e->mem[2]},
                                   {DNNL_ARG_SCRATCHPAD, e->mem[3]}};
        rc = dnnl_primitive_execute(e->prim, c->stream, e->mem[3] ? 4 : 3, args) != dnnl_success ||
             dnnl_stream_wait(c->stream) != dnnl_success;
    }
    omp_restore(saved);
    return rc ? -1 : 0;
}

static int onednn_sgemm_st(const kern_gemm_args *g, float beta) {
    int saved = omp_one();
    dnnl_status_t st = dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->M, g->N, g->K, g->alpha, g->A, g->lda,
                                  g->B, g->ldb, beta, g->C, g->ldc);
    omp_restore(saved);
    return st == dnnl_success ? 0 : -1;
}

/* Large products in fast precision; the bfloat16 products (which only a
   fast caller makes) and the single-thread sgemm in either. */
static int onednn_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    switch (op) {
    case KERN_OP_MATMUL:
        return prec == ARIA_PREC_FAST && s->m >= MIN_T && s->n >= MIN_DIM && s->k >= MIN_DIM &&
               (s->dtype == ARIA_DT_F32 || s->dtype == ARIA_DT_BF16);
    case KERN_OP_GEMM_BF16:
        return prec == ARIA_PREC_FAST;
    case KERN_OP_GEMM_BF16_ST:
    case KERN_OP_SGEMM_ST:
        return 1;
    default:
        return 0;
    }
}

static const kern_backend_i onednn = {
    .name = "onednn",
    .supports = onednn_supports,
    .matmul = onednn_matmul,
    .gemm_bf16 = onednn_gemm_bf16,
    .sgemm_st = onednn_sgemm_st,
    .gemm_bf16_st = onednn_gemm_bf16_st,
};

const kern_backend_i *kern_backend_onednn(const char **desc) {
    pthread_once(&engine_once, engine_init);
    if (desc) *desc = engine_ok ? engine_desc : "";
    return engine_ok ? &onednn : NULL;
}

int aria_dl_state_onednn(const char **file, const char **why) {
    pthread_once(&engine_once, engine_init);
    *file = ARIA_DNNL_SONAME;
    *why = dl_why;
    return engine_ok;
}


#else /* no oneDNN in this build */

#include "base/dynlib.h"

int aria_dl_state_onednn(const char **file, const char **why) {
    *file = *why = "";
    return -1;
}

const kern_backend_i *kern_backend_onednn(const char **desc) {
    if (desc) *desc = "";
    return NULL;
}

#endif
