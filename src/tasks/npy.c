/*
 * npy.c - NumPy .npy files (format version 1.0) of float32 matrices, the
 * output of `aria embed -o`, so that numpy.load reads embeddings as they
 * are.
 *
 * The layout: the magic "\x93NUMPY", version bytes 1 0, a little-endian
 * u16 header length, then a Python dict literal padded with spaces and
 * ended by '\n' so that the data starts on a 64-byte boundary (what NumPy
 * itself writes), then the values row after row. The values are written
 * little-endian whatever the host's order, since the header says '<f4'.
 * The whole file is built in memory and written atomically.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

#define NPY_PREAMBLE 10 /* magic, version, header length */

int aria_npy_write_f32(const char *path, const float *x, size_t rows, size_t cols, aria_error *err) {
    if (!path || (!x && rows && cols)) return aria_fail(err, ARIA_ERR_ARG, "no path or no data");
    if (cols && rows > (SIZE_MAX - 4096) / 4 / cols) return aria_fail(err, ARIA_ERR_ARG, "matrix too large");
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", rows,
                     cols);
    size_t pad = (64 - (NPY_PREAMBLE + (size_t)n + 1) % 64) % 64;
    size_t hlen = (size_t)n + pad + 1, count = rows * cols;
    size_t size = NPY_PREAMBLE + hlen + count * 4;
    uint8_t *buf = malloc(size);
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 255);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + NPY_PREAMBLE, dict, (size_t)n);
    memset(buf + NPY_PREAMBLE + n, ' ', pad);
    buf[NPY_PREAMBLE + hlen - 1] = '\n';
    uint8_t *d = buf + NPY_PREAMBLE + hlen;
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int b = 0; b < 4; b++) d[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    int rc = aria_write_file_atomic(path, buf, size, err);
    free(buf);
    return rc;
}
