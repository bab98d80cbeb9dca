/*
 * npy_read.c - reading NumPy .npy files of float32 values (an embedding
 * row for `aria generate --embedding`, a matrix written by `aria embed
 * -o`).
 *
 * Accepted: format versions 1.0, 2.0 and 3.0 (the header length is a u16
 * in 1.0, a u32 after), descr '<f4' (little-endian float32, what NumPy
 * writes for float32 on every common machine), fortran_order False, and a shape of one
 * or two dimensions ((n,), (rows, cols), or a scalar () read as one
 * value). The header is a Python dict literal; it is searched for its three
 * keys rather than parsed in full, which is all NumPy's own writer puts
 * there. Anything else is an error that says what the file holds.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

/* The value text after 'key': in the header, or NULL. */
static const char *dict_value(const char *h, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(h, pat);
    }
    if (!p) return NULL;
    p += strlen(pat);
    while (isspace((unsigned char)*p)) p++;
    if (*p != ':') return NULL;
    p++;
    while (isspace((unsigned char)*p)) p++;
    return p;
}

/* "(a, b)" -> dims; returns the number of dimensions, -1 if malformed. */
static int parse_shape(const char *p, size_t *dims, int max) {
    if (*p != '(') return -1;
    p++;
    int n = 0;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == ')') return n;
        if (!isdigit((unsigned char)*p) || n == max) return -1;
        char *e;
        unsigned long long v = strtoull(p, &e, 10);
        dims[n++] = (size_t)v;
        p = e;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') p++;
        else if (*p != ')') return -1;
    }
}

int aria_npy_read_f32(const char *path, float **out, size_t *rows, size_t *cols, aria_error *err) {
    *out = NULL;
    *rows = *cols = 0;
    uint8_t *buf;
    size_t len;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return rc;
    size_t hlen = 0, at = 0;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, "not a NumPy .npy file");
        goto done;
    }
    if (buf[6] == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        at = 10;
    } else if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        at = 12;
    } else {
        rc = aria_fail(err, ARIA_ERR_FORMAT, ".npy format version %d.%d is not supported", buf[6], buf[7]);
        goto done;
    }
    if (hlen > len - at) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, ".npy header runs past the end of the file");
        goto done;
    }
    char *h = malloc(hlen + 1);
    if (!h) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(h, buf + at, hlen);
    h[hlen] = 0;
    const char *descr = dict_value(h, "descr"), *fortran = dict_value(h, "fortran_order"),
               *shape = dict_value(h, "shape");
    size_t dims[2] = {1, 1};
    int nd = shape ? parse_shape(shape, dims, 2) : -1;
    if (!descr || !shape || nd < 0) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, ".npy header without a readable descr and shape (at most 2 dimensions)");
    } else if (strncmp(descr + 1, "<f4", 3) != 0) {
        int n = 0;
        while (descr[1 + n] && descr[1 + n] != '\'' && descr[1 + n] != '"' && n < 16) n++;
        rc = aria_fail(err, ARIA_ERR_FORMAT, "the .npy holds '%.*s' values, float32 ('<f4') wanted", n, descr + 1);
    } else if (fortran && strncmp(fortran, "False", 5) != 0) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, "the .npy is in Fortran order (C order wanted)");
    }
    free(h);
    if (rc) goto done;
    if (nd == 1) dims[1] = dims[0], dims[0] = 1;
    if (nd == 0) dims[0] = dims[1] = 1;
    at += hlen;
    size_t count = dims[0] * dims[1];
    if (dims[1] && dims[0] > SIZE_MAX / 4 / dims[1]) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, ".npy shape too large");
        goto done;
    }
    if (len - at != count * 4) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, ".npy data is %zu bytes, its shape (%zu, %zu) needs %zu", len - at,
                       dims[0], dims[1], count * 4);
        goto done;
    }
    float *x = malloc((count ? count : 1) * sizeof *x);
    if (!x) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *d = buf + at + 4 * i;
        uint32_t u = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
        memcpy(&x[i], &u, 4);
    }
    *out = x;
    *rows = dims[0];
    *cols = dims[1];
done:
    free(buf);
    return rc;
}
