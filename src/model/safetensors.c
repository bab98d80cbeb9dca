/*
 * safetensors.c - reading and writing .safetensors checkpoints, and the
 * bfloat16 / float16 conversions their weights need.
 *
 * The format (huggingface/safetensors): a little-endian u64 N, N bytes of
 * JSON, then the data section. The JSON is one object: an optional
 * "__metadata__" object of string pairs, and for every tensor
 *   name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}
 * with the offsets relative to the start of the data section.
 *
 * Reading. The file is mapped read-only (or read into memory when it
 * cannot be mapped, e.g. a pipe); aria_st_open_memory copies a buffer.
 * Everything is validated before any tensor is handed out: header length
 * within the file and below 100 MB (the limit of the Rust reader), strict
 * JSON, dtype (F32, BF16, F16, and I8/U8 for quantized matrices, only), at most 4 dimensions, shape x element
 * size == end - begin (overflow-checked), ranges inside the data section,
 * no two non-empty ranges overlapping, names unique and free of NUL bytes,
 * metadata values strings. Gaps between tensors and trailing bytes are
 * accepted (the Rust reader refuses them, but they do no harm to a
 * reader). The parsed JSON document stays alive because tensor names and
 * metadata strings point into it; a name-sorted array of tensor pointers
 * finds duplicates and serves aria_st_find by binary search.
 *
 * Writing follows the Rust serializer that torch's save_file uses, so the
 * bytes match a file torch writes for the same tensors: tensors ordered by
 * dtype, widest first (F32, BF16, F16, I8, U8), then by name (bytewise); compact
 * JSON with "__metadata__" first (keys in the caller's order: the Rust
 * writer's order comes from a hash map, so no order can match it in
 * general; it is omitted when there is no pair), then
 * {"dtype","shape","data_offsets"} per tensor; the JSON padded with spaces
 * to a multiple of 8; the data in header order without gaps. Strings are
 * escaped as serde_json does (json_escape_string). The file is streamed
 * into a temporary beside the target, flushed and renamed, so a model's
 * gigabytes are never copied into one buffer and no partial file ever
 * appears at the target path.
 *
 * A mapped file that another process truncates while mapped raises
 * SIGBUS on access; like every mmap-based loader this code cannot prevent
 * that.
 */
#include "aria.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/util.h"

/* The Rust reader's limit on the header; it also bounds our allocations. */
#define ST_MAX_HEADER 100000000u

typedef struct {
    const uint8_t *base; /* the whole file */
    size_t size;
    int mapped;          /* 1: file mapping, 2: anonymous memory (aria_st_open_resident), 0: malloc'd */
    json_doc *doc;       /* owns every name and metadata string */
    const aria_tensor **by_name; /* n_tensors pointers, sorted by name */
} st_priv;

/* Indexed by aria_dtype; the file dtypes end at U8 (Q8_0 and Q4_0 name
   whole quantized matrices, never a tensor in a file). */
static const char *const st_dtype_names[] = {"F32", "BF16", "F16", "I8", "U8"};
static const size_t st_dtype_sizes[] = {4, 2, 2, 1, 1};
#define ST_N_DTYPES 5

/* strerror without the shared buffer of plain strerror() (reentrancy). */
static const char *st_errstr(int e, char *buf, size_t cap)
{
    return strerror_r(e, buf, cap); /* GNU variant (_GNU_SOURCE) */
}

static int st_dtype_ok(int dt)
{
    return dt >= ARIA_DT_F32 && dt < ST_N_DTYPES;
}

const char *aria_dtype_name(aria_dtype dt)
{
    if ((int)dt >= 0 && (int)dt < ST_N_DTYPES) return st_dtype_names[dt];
    return dt == ARIA_DT_Q8_0 ? "q8_0" : dt == ARIA_DT_Q4_0 ? "q4_0" : dt == ARIA_DT_Q4_K ? "q4_k" : NULL;
}

static uint64_t st_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---------------------------------------------------------------------- */
/* header validation                                                      */
/* ---------------------------------------------------------------------- */

static int st_parse_dtype(const char *name, const json_value *v, aria_dtype *out, aria_error *err)
{
    const char *s = json_string(v, NULL);
    if (!s)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor '%s': dtype is missing or not a string",
                         name);
    for (int d = 0; d < ST_N_DTYPES; d++) {
        if (strcmp(s, st_dtype_names[d]) == 0) {
            *out = (aria_dtype)d;
            return ARIA_OK;
        }
    }
    return aria_fail(err, ARIA_ERR_FORMAT,
                     "tensor '%s': unsupported dtype '%s' (supported: F32, BF16, F16, I8, U8)", name, s);
}

/* Shape into t; the element count (exact, no overflow) into *nelem. */
static int st_parse_shape(const char *name, const json_value *v, aria_tensor *t, uint64_t *nelem,
                          aria_error *err)
{
    if (json_type_of(v) != JSON_ARRAY)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor '%s': shape is missing or not an array",
                         name);
    size_t nd = json_len(v);
    if (nd > 4)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "tensor '%s': %zu dimensions; at most 4 are supported", name, nd);
    uint64_t n = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        const json_value *d = json_at(v, i);
        if (json_type_of(d) != JSON_NUMBER || !json_is_int(d) || json_int(d) < 0)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
        t->shape[i] = json_int(d);
        uint64_t x = (uint64_t)t->shape[i];
        if (x && n > UINT64_MAX / x) overflow = 1; /* a later 0 still makes it empty */
        n *= x;
    }
    for (size_t i = 0; i < nd && overflow; i++)
        if (t->shape[i] == 0) overflow = 0;
    if (overflow)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor '%s': shape has too many elements", name);
    t->ndim = (int)nd;
    *nelem = nd ? n : 1;
    return ARIA_OK;
}

static int st_parse_offsets(const char *name, const json_value *v, uint64_t data_size,
                            uint64_t *begin, uint64_t *end, aria_error *err)
{
    const json_value *b = json_at(v, 0), *e = json_at(v, 1);
    if (json_type_of(v) != JSON_ARRAY || json_len(v) != 2 || json_type_of(b) != JSON_NUMBER ||
        json_type_of(e) != JSON_NUMBER || !json_is_int(b) || !json_is_int(e) || json_int(b) < 0 ||
        json_int(e) < 0)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "tensor '%s': data_offsets is not a pair of non-negative integers", name);
    *begin = (uint64_t)json_int(b);
    *end = (uint64_t)json_int(e);
    if (*begin > *end)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "tensor '%s': data_offsets [%llu,%llu] run backwards", name,
                         (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > data_size)
        return aria_fail(
            err, ARIA_ERR_FORMAT,
            "tensor '%s': data_offsets [%llu,%llu] run past the data section (%llu bytes)", name,
            (unsigned long long)*begin, (unsigned long long)*end, (unsigned long long)data_size);
    return ARIA_OK;
}

static int st_parse_tensor(const char *name, const json_value *v, const uint8_t *data,
                           uint64_t data_size, aria_tensor *t, aria_error *err)
{
    if (json_type_of(v) != JSON_OBJECT)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor '%s': entry is not a JSON object", name);
    memset(t, 0, sizeof *t);
    t->name = name;
    uint64_t nelem = 0, begin = 0, end = 0;
    int rc;
    if ((rc = st_parse_dtype(name, json_get(v, "dtype"), &t->dtype, err)) ||
        (rc = st_parse_shape(name, json_get(v, "shape"), t, &nelem, err)) ||
        (rc = st_parse_offsets(name, json_get(v, "data_offsets"), data_size, &begin, &end, err)))
        return rc;
    uint64_t esize = st_dtype_sizes[t->dtype];
    if (nelem > UINT64_MAX / esize || nelem * esize != end - begin)
        return aria_fail(
            err, ARIA_ERR_FORMAT,
            "tensor '%s': %llu %s elements do not fill data_offsets [%llu,%llu] (%llu bytes)", name,
            (unsigned long long)nelem, st_dtype_names[t->dtype], (unsigned long long)begin,
            (unsigned long long)end, (unsigned long long)(end - begin));
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return ARIA_OK;
}

/* Collects the "__metadata__" string pairs. */
static int st_parse_meta(aria_safetensors *st, const json_value *v, aria_error *err)
{
    if (st->meta_keys)
        return aria_fail(err, ARIA_ERR_FORMAT, "header: __metadata__ appears twice");
    if (json_type_of(v) != JSON_OBJECT)
        return aria_fail(err, ARIA_ERR_FORMAT, "header: __metadata__ is not a JSON object");
    size_t n = json_len(v);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = json_key_at(v, i, &kl);
        const char *s = json_string(json_at(v, i), &vl);
        if (strlen(k) != kl)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "header: a __metadata__ key contains a NUL byte");
        if (!s)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "header: __metadata__ value of '%s' is not a string", k);
        if (strlen(s) != vl)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "header: __metadata__ value of '%s' contains a NUL byte", k);
        st->meta_keys[i] = k;
        st->meta_values[i] = s;
    }
    st->n_meta = n;
    return ARIA_OK;
}

static int st_cmp_name(const void *a, const void *b)
{
    const aria_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_cmp_data(const void *a, const void *b)
{
    const aria_tensor *const *x = a, *const *y = b;
    const uint8_t *p = (*x)->data, *q = (*y)->data;
    return p < q ? -1 : p > q;
}

/* Builds the sorted name index and rejects duplicate names and metadata
   keys (JSON allows duplicate keys; a checkpoint must not). */
static int st_check_unique(aria_safetensors *st, st_priv *pv, aria_error *err)
{
    pv->by_name = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *pv->by_name);
    if (!pv->by_name) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < st->n_tensors; i++) pv->by_name[i] = &st->tensors[i];
    qsort(pv->by_name, st->n_tensors, sizeof *pv->by_name, st_cmp_name);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (strcmp(pv->by_name[i - 1]->name, pv->by_name[i]->name) == 0)
            return aria_fail(err, ARIA_ERR_FORMAT, "header: tensor '%s' appears twice",
                             pv->by_name[i]->name);
    if (st->n_meta < 2) return ARIA_OK;
    const char **keys = malloc(st->n_meta * sizeof *keys);
    if (!keys) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    memcpy(keys, st->meta_keys, st->n_meta * sizeof *keys);
    qsort(keys, st->n_meta, sizeof *keys, st_cmp_str);
    int rc = ARIA_OK;
    for (size_t i = 1; i < st->n_meta && !rc; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = aria_fail(err, ARIA_ERR_FORMAT, "header: __metadata__ key '%s' appears twice",
                           keys[i]);
    free(keys);
    return rc;
}

/* No two non-empty byte ranges may share a byte. */
static int st_check_overlap(const aria_safetensors *st, aria_error *err)
{
    const aria_tensor **order = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *order);
    if (!order) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < st->n_tensors; i++)
        if (st->tensors[i].nbytes) order[m++] = &st->tensors[i];
    qsort(order, m, sizeof *order, st_cmp_data);
    int rc = ARIA_OK;
    for (size_t i = 1; i < m && !rc; i++) {
        const aria_tensor *a = order[i - 1], *b = order[i];
        if ((const uint8_t *)b->data < (const uint8_t *)a->data + a->nbytes)
            rc = aria_fail(err, ARIA_ERR_FORMAT,
                           "tensors '%s' and '%s' have overlapping data_offsets", a->name, b->name);
    }
    free(order);
    return rc;
}

/* Parses and validates pv->base[0..size) into st. */
static int st_load(aria_safetensors *st, st_priv *pv, aria_error *err)
{
    if (pv->size < 8)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "file of %zu bytes is too short for a safetensors header", pv->size);
    uint64_t n = st_le64(pv->base);
    if (n > ST_MAX_HEADER)
        return aria_fail(err, ARIA_ERR_FORMAT, "not a safetensors file: header length %llu exceeds the %u-byte limit",
                         (unsigned long long)n, ST_MAX_HEADER);
    if (n > pv->size - 8)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "header length %llu runs past the end of the file (%zu bytes)",
                         (unsigned long long)n, pv->size);
    char msg[400];
    int rc = json_parse((const char *)pv->base + 8, (size_t)n, &pv->doc, msg, sizeof msg);
    if (rc) return aria_fail(err, rc, "header is not valid JSON: %s", msg);
    const json_value *root = json_root(pv->doc);
    if (json_type_of(root) != JSON_OBJECT)
        return aria_fail(err, ARIA_ERR_FORMAT, "header is not a JSON object");
    size_t members = json_len(root);
    st->tensors = calloc(members ? members : 1, sizeof *st->tensors);
    if (!st->tensors) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    const uint8_t *data = pv->base + 8 + n;
    uint64_t data_size = pv->size - 8 - n;
    for (size_t i = 0; i < members; i++) {
        size_t kl;
        const char *key = json_key_at(root, i, &kl);
        if (strlen(key) != kl)
            return aria_fail(err, ARIA_ERR_FORMAT, "header: a tensor name contains a NUL byte");
        if (strcmp(key, "__metadata__") == 0)
            rc = st_parse_meta(st, json_at(root, i), err);
        else
            rc = st_parse_tensor(key, json_at(root, i), data, data_size,
                                 &st->tensors[st->n_tensors++], err);
        if (rc) return rc;
    }
    if ((rc = st_check_unique(st, pv, err))) return rc;
    return st_check_overlap(st, err);
}

/* Takes ownership of base (mapped or malloc'd) and validates it. */
static int st_open_image(aria_safetensors *st, const uint8_t *base, size_t size, int mapped,
                         aria_error *err)
{
    st_priv *pv = calloc(1, sizeof *pv);
    if (!pv) {
        if (mapped == 2) aria_huge_free((void *)base, size);
        else if (mapped) munmap((void *)base, size);
        else free((void *)base);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    pv->base = base;
    pv->size = size;
    pv->mapped = mapped;
    st->priv_ = pv;
    int rc = st_load(st, pv, err);
    if (rc) aria_st_close(st);
    return rc;
}

int aria_st_open_memory(aria_safetensors *st, const uint8_t *buf, size_t len, aria_error *err)
{
    if (!st) return aria_fail(err, ARIA_ERR_ARG, "aria_st_open_memory: NULL handle");
    memset(st, 0, sizeof *st);
    if (!buf && len) return aria_fail(err, ARIA_ERR_ARG, "aria_st_open_memory: NULL buffer");
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory copying %zu bytes", len);
    if (len) memcpy(copy, buf, len);
    return st_open_image(st, copy, len, 0, err);
}

/* Not mappable (a pipe, or mmap refused): read the whole file instead. */
static int st_open_read(aria_safetensors *st, const char *path, aria_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return rc;
    return st_open_image(st, buf, len, 0, err);
}

int aria_st_open(aria_safetensors *st, const char *path, aria_error *err)
{
    if (!st) return aria_fail(err, ARIA_ERR_ARG, "aria_st_open: NULL handle");
    memset(st, 0, sizeof *st);
    if (!path) return aria_fail(err, ARIA_ERR_ARG, "aria_st_open: NULL path");
    char eb[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return aria_fail(err, ARIA_ERR_IO, "cannot open: %s", st_errstr(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return aria_fail(err, ARIA_ERR_IO, "cannot stat: %s", st_errstr(e, eb, sizeof eb));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return aria_fail(err, ARIA_ERR_IO, "cannot read: is a directory");
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
        close(fd); /* small files get their message from st_load */
        return st_open_read(st, path, err);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping stays valid */
    if (map == MAP_FAILED) return st_open_read(st, path, err);
    return st_open_image(st, map, size, 1, err);
}

int aria_st_open_resident(aria_safetensors *st, const char *path, aria_error *err)
{
    if (!st) return aria_fail(err, ARIA_ERR_ARG, "aria_st_open_resident: NULL handle");
    memset(st, 0, sizeof *st);
    char eb[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aria_fail(err, ARIA_ERR_IO, "cannot open: %s", st_errstr(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 8) {
        close(fd); /* not a plain file (or too short): aria_st_open says what */
        return aria_st_open(st, path, err);
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *mem = aria_huge_alloc(size);
    if (!mem) {
        close(fd);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory reading %zu bytes", size);
    }
    /* read(), not a copy out of a mapping: the kernel copies from its page
       cache without a page fault per 4 KiB of the source */
    for (size_t off = 0; off < size;) {
        size_t want = size - off < (1u << 30) ? size - off : (1u << 30);
        ssize_t got = pread(fd, mem + off, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            int e = got < 0 ? errno : 0;
            close(fd);
            aria_huge_free(mem, size);
            return aria_fail(err, ARIA_ERR_IO, "cannot read: %s",
                             e ? st_errstr(e, eb, sizeof eb) : "the file shrank while it was read");
        }
        off += (size_t)got;
    }
    close(fd);
    aria_huge_readonly(mem, size); /* as a mapping of the file would be */
    return st_open_image(st, mem, size, 2, err);
}

void aria_st_close(aria_safetensors *st)
{
    if (!st) return;
    st_priv *pv = st->priv_;
    if (pv) {
        if (pv->mapped == 2) aria_huge_free((void *)pv->base, pv->size);
        else if (pv->mapped) munmap((void *)pv->base, pv->size);
        else free((void *)pv->base);
        json_doc_free(pv->doc);
        free(pv->by_name);
        free(pv);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    memset(st, 0, sizeof *st);
}

/* ---------------------------------------------------------------------- */
/* lookup                                                                 */
/* ---------------------------------------------------------------------- */

/* strcmp(s, a ++ b) without building the concatenation. */
static int st_cmp_concat(const char *s, const char *a, const char *b)
{
    for (; *a; s++, a++)
        if (*s != *a) return (unsigned char)*s - (unsigned char)*a;
    return strcmp(s, b);
}

/* Binary search for the tensor named a ++ b. */
static const aria_tensor *st_lookup(const aria_safetensors *st, const char *a, const char *b)
{
    const st_priv *pv = st->priv_;
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = st_cmp_concat(pv->by_name[mid]->name, a, b);
        if (c == 0) return pv->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const aria_tensor *aria_st_find(const aria_safetensors *st, const char *name)
{
    if (!st || !st->priv_ || !name) return NULL;
    const aria_tensor *t = st_lookup(st, "", name);
    /* torch.compile wraps the whole module ("_orig_mod.model.x") or the
       trunk only ("model._orig_mod.x") */
    if (!t) t = st_lookup(st, "_orig_mod.", name);
    if (!t && strncmp(name, "model.", 6) == 0) t = st_lookup(st, "model._orig_mod.", name + 6);
    return t;
}

const char *aria_st_meta(const aria_safetensors *st, const char *key)
{
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* writing                                                                */
/* ---------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} st_buf;

static void st_put(st_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (ARIA_GROW(b->p, b->cap, b->len + n + 1)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void st_puts(st_buf *b, const char *s)
{
    st_put(b, s, strlen(s));
}

static void st_put_u64(st_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    st_put(b, tmp, (size_t)n);
}

/* s as a JSON string, escaped as serde_json does. */
static void st_put_string(st_buf *b, const char *s)
{
    size_t n = strlen(s), need = json_escape_string(NULL, 0, s, n);
    if (b->oom) return;
    if (ARIA_GROW(b->p, b->cap, b->len + need + 1)) {
        b->oom = 1;
        return;
    }
    json_escape_string(b->p + b->len, need + 1, s, n);
    b->len += need;
}

/* Bytes a tensor's shape needs, or 0 with *bad set on overflow. */
static uint64_t st_shape_bytes(const aria_tensor *t, int *bad)
{
    uint64_t n = st_dtype_sizes[t->dtype];
    int zero = 0;
    *bad = 0;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t x = (uint64_t)t->shape[d];
        if (!x) zero = 1;
        else if (n > UINT64_MAX / x) *bad = 1;
        else n *= x;
    }
    if (zero) *bad = 0;
    return zero ? 0 : n;
}

static int st_check_write_tensor(const aria_tensor *t, aria_error *err)
{
    if (!t->name) return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: a tensor has no name");
    if (strcmp(t->name, "__metadata__") == 0)
        return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: '__metadata__' cannot name a tensor");
    if (!st_dtype_ok((int)t->dtype))
        return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: tensor '%s': invalid dtype %d", t->name,
                         (int)t->dtype);
    if (t->ndim < 0 || t->ndim > 4)
        return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: tensor '%s': ndim %d is not 0..4",
                         t->name, t->ndim);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: tensor '%s': negative shape[%d]",
                             t->name, d);
    int bad;
    uint64_t need = st_shape_bytes(t, &bad);
    if (bad || need != t->nbytes)
        return aria_fail(err, ARIA_ERR_ARG,
                         "aria_st_write: tensor '%s': shape needs %llu bytes but nbytes is %zu",
                         t->name, (unsigned long long)need, t->nbytes);
    if (t->nbytes && !t->data)
        return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: tensor '%s' has no data", t->name);
    return ARIA_OK;
}

/* The serializer's order: dtype widest first, then name bytewise. */
static int st_cmp_write(const void *a, const void *b)
{
    const aria_tensor *const *x = a, *const *y = b;
    if ((*x)->dtype != (*y)->dtype) return (*x)->dtype < (*y)->dtype ? -1 : 1;
    return strcmp((*x)->name, (*y)->name);
}

/* Validates the inputs and returns the tensors in file order. */
static int st_write_order(const aria_tensor *tensors, size_t n, const char *const *mk,
                          const char *const *mv, size_t n_meta, const aria_tensor ***out,
                          aria_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = st_check_write_tensor(&tensors[i], err);
        if (rc) return rc;
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!mk[i] || !mv[i])
            return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: metadata pair %zu has a NULL", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(mk[i], mk[j]) == 0)
                return aria_fail(err, ARIA_ERR_ARG,
                                 "aria_st_write: metadata key '%s' appears twice", mk[i]);
    }
    const aria_tensor **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, n, sizeof *order, st_cmp_write);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            int rc = aria_fail(err, ARIA_ERR_ARG, "aria_st_write: tensor '%s' appears twice",
                               order[i]->name);
            free(order);
            return rc;
        }
    }
    *out = order;
    return ARIA_OK;
}

/* The 8-byte length and the padded JSON header, ready to write. */
static int st_build_header(st_buf *b, const aria_tensor *const *order, size_t n,
                           const char *const *mk, const char *const *mv, size_t n_meta,
                           aria_error *err)
{
    st_put(b, "\0\0\0\0\0\0\0\0{", 9);
    if (n_meta) {
        st_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) st_puts(b, ",");
            st_put_string(b, mk[i]);
            st_puts(b, ":");
            st_put_string(b, mv[i]);
        }
        st_puts(b, n ? "}," : "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const aria_tensor *t = order[i];
        if (i) st_puts(b, ",");
        st_put_string(b, t->name);
        st_puts(b, ":{\"dtype\":\"");
        st_puts(b, st_dtype_names[t->dtype]);
        st_puts(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) st_puts(b, ",");
            st_put_u64(b, (uint64_t)t->shape[d]);
        }
        st_puts(b, "],\"data_offsets\":[");
        st_put_u64(b, off);
        st_puts(b, ",");
        off += t->nbytes;
        st_put_u64(b, off);
        st_puts(b, "]}");
    }
    st_puts(b, "}");
    while ((b->len - 8) % 8) st_puts(b, " ");
    if (b->oom) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory building the header");
    uint64_t hlen = b->len - 8;
    for (int i = 0; i < 8; i++) b->p[i] = (char)(hlen >> (8 * i) & 0xff);
    return ARIA_OK;
}

static int st_write_all(int fd, const void *p, size_t len)
{
    const uint8_t *q = p;
    while (len) {
        ssize_t w = write(fd, q, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Creates "<dir>/.<base>.<pid>-<n>.tmp" beside path with O_EXCL, so umask
   applies as for any new file; the name goes to *tmp (malloc'd). */
static int st_temp_open(const char *path, char **tmp)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    size_t cap = strlen(path) + 64;
    *tmp = malloc(cap);
    if (!*tmp) {
        errno = ENOMEM;
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long seed = (unsigned long)ts.tv_nsec ^ (unsigned long)ts.tv_sec << 20;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(*tmp, cap, "%.*s.%s.%ld-%lu.tmp", dirlen, path, path + dirlen, (long)getpid(),
                 seed + (unsigned long)attempt * 7919u);
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/* Header then every tensor's bytes into fd, then flush; 0 or -1 (errno). */
static int st_stream(int fd, const st_buf *hdr, const aria_tensor *const *order, size_t n)
{
    if (st_write_all(fd, hdr->p, hdr->len)) return -1;
    for (size_t i = 0; i < n; i++)
        if (order[i]->nbytes && st_write_all(fd, order[i]->data, order[i]->nbytes)) return -1;
    return fsync(fd);
}

/* Best effort: makes the rename itself durable. */
static void st_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static int st_write_file(const char *path, const st_buf *hdr, const aria_tensor *const *order,
                         size_t n, aria_error *err)
{
    char eb[128];
    char *tmp = NULL;
    int fd = st_temp_open(path, &tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return aria_fail(err, ARIA_ERR_IO, "cannot create a temporary file beside the output: %s",
                         st_errstr(e, eb, sizeof eb));
    }
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode)) fchmod(fd, old.st_mode & 07777);
    int bad = st_stream(fd, hdr, order, n);
    int e = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) unlink(tmp);
    free(tmp);
    if (bad)
        return aria_fail(err, ARIA_ERR_IO, "cannot write the output: %s",
                         st_errstr(e, eb, sizeof eb));
    st_sync_dir(path);
    return ARIA_OK;
}

int aria_st_write(const char *path, const aria_tensor *tensors, size_t n,
                  const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                  aria_error *err)
{
    if (!path || !*path || (!tensors && n) || ((!meta_keys || !meta_values) && n_meta))
        return aria_fail(err, ARIA_ERR_ARG, "aria_st_write: NULL argument");
    const aria_tensor **order = NULL;
    int rc = st_write_order(tensors, n, meta_keys, meta_values, n_meta, &order, err);
    if (rc) return rc;
    st_buf hdr = {0};
    rc = st_build_header(&hdr, order, n, meta_keys, meta_values, n_meta, err);
    if (!rc) rc = st_write_file(path, &hdr, order, n, err);
    free(hdr.p);
    free(order);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bfloat16 / float16                                                     */
/* ---------------------------------------------------------------------- */

static float st_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float aria_bf16_to_f32(uint16_t h)
{
    return st_bits_to_f32((uint32_t)h << 16);
}

/* Round to nearest, ties to even, on the 16 dropped bits; overflow rounds
   to infinity as IEEE requires. A NaN keeps its sign and top payload bits
   and gets the quiet bit, so it cannot round into an infinity. */
uint16_t aria_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x0040u);
    u += 0x7fffu + (u >> 16 & 1u);
    return (uint16_t)(u >> 16);
}

float aria_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = h >> 10 & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        float m = (float)man * 0x1p-24f;
        return sign ? -m : m;
    }
    if (exp == 0x1f) return st_bits_to_f32(sign | 0x7f800000u | man << 13);
    return st_bits_to_f32(sign | (exp + 112u) << 23 | man << 13);
}
