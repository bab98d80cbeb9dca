/*
 * fileio.c - whole-file reads, atomic whole-file writes, status names.
 *
 * aria_read_file reads a file into one malloc'd buffer: for a regular file
 * the size is known from fstat, so the data arrives in one read() (plus
 * the read that sees end-of-file); pipes and devices are read in growing
 * steps up to a fixed cap, so `/dev/zero` cannot eat all memory.
 *
 * aria_write_file_atomic never leaves a half-written file behind: it
 * writes a temporary file in the same directory (so rename() stays on one
 * file system), fsyncs it, and renames it over the target. Any failure
 * unlinks the temporary; the target then is exactly as it was before.
 *
 * Messages never contain the path: callers put the file name in front.
 */
#include "aria.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pipes and devices are read up to this many bytes. */
#define FILEIO_STREAM_MAX ((size_t)1 << 30)


/* strerror without the shared buffer of plain strerror(). */
static const char *fileio_errstr(int e, char *buf, size_t cap)
{
    return strerror_r(e, buf, cap); /* GNU variant (_GNU_SOURCE) */
}

const char *aria_status_name(int status)
{
    switch (status) {
    case ARIA_OK: return "ok";
    case ARIA_ERR_IO: return "i/o error";
    case ARIA_ERR_FORMAT: return "format error";
    case ARIA_ERR_NOMEM: return "out of memory";
    case ARIA_ERR_ARG: return "invalid argument";
    case ARIA_ERR_EMPTY: return "nothing to do";
    default: return "unknown status";
    }
}

/* ---------------------------------------------------------------------- */
/* reading                                                                */
/* ---------------------------------------------------------------------- */

/* Reads from fd until end-of-file into *buf (capacity *cap, grown as
   needed up to `limit` bytes). */
static int fileio_read_all(int fd, uint8_t **buf, size_t *cap, size_t *len, size_t limit,
                           aria_error *err)
{
    char eb[128];
    for (;;) {
        if (*len == *cap) {
            if (*cap >= limit)
                return aria_fail(err, ARIA_ERR_IO, "cannot read: input is larger than %zu bytes",
                                   limit);
            size_t ncap = *cap * 2 > limit ? limit : *cap * 2;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory reading %zu bytes", ncap);
            *buf = nb;
            *cap = ncap;
        }
        ssize_t got = read(fd, *buf + *len, *cap - *len);
        if (got < 0) {
            if (errno == EINTR) continue;
            return aria_fail(err, ARIA_ERR_IO, "cannot read: %s",
                               fileio_errstr(errno, eb, sizeof eb));
        }
        if (got == 0) return ARIA_OK;
        *len += (size_t)got;
    }
}

int aria_read_file(const char *path, uint8_t **out, size_t *len, aria_error *err)
{
    char eb[128];
    if (!path || !out || !len) return aria_fail(err, ARIA_ERR_ARG, "aria_read_file: NULL argument");
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return aria_fail(err, ARIA_ERR_IO, "cannot open: %s", fileio_errstr(errno, eb, sizeof eb));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return aria_fail(err, ARIA_ERR_IO, "cannot stat: %s", fileio_errstr(e, eb, sizeof eb));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return aria_fail(err, ARIA_ERR_IO, "cannot read: is a directory");
    }
    size_t limit = FILEIO_STREAM_MAX, cap = 65536;
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size >= SIZE_MAX / 2) {
            close(fd);
            return aria_fail(err, ARIA_ERR_NOMEM, "file of %lld bytes is too large",
                               (long long)st.st_size);
        }
        /* +1 so a file that did not change size is read in one call and
           the next read() reports end-of-file without a realloc */
        cap = (size_t)st.st_size + 1;
        limit = SIZE_MAX / 2;
    }
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory reading %zu bytes", cap);
    }
    size_t n = 0;
    int rc = fileio_read_all(fd, &buf, &cap, &n, limit, err);
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* atomic writing                                                         */
/* ---------------------------------------------------------------------- */

/* The process umask, read without changing it (umask(2) can only be read
   by setting it, which would race with other threads). */
static mode_t fileio_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned v;
        if (sscanf(line, "Umask: %o", &v) == 1) {
            mask = (mode_t)v;
            break;
        }
    }
    fclose(f);
    return mask;
}

/* Mode for the new file: that of the file it replaces, else what open()
   with 0666 would give. */
static mode_t fileio_target_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    return 0666 & ~fileio_umask();
}

static int fileio_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* "<dir>/.<name>.tmpXXXXXX" beside `path`. */
static char *fileio_temp_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = path + dirlen;
    size_t n = dirlen + 1 + strlen(base) + sizeof ".tmpXXXXXX";
    char *t = malloc(n);
    if (!t) return NULL;
    snprintf(t, n, "%.*s.%s.tmpXXXXXX", (int)dirlen, path, base);
    return t;
}

/* Best effort: makes the rename itself durable. */
static void fileio_sync_dir(const char *tmp)
{
    const char *slash = strrchr(tmp, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if ((size_t)(slash - tmp) + 1 < sizeof dir) {
        size_t n = slash == tmp ? 1 : (size_t)(slash - tmp);
        memcpy(dir, tmp, n);
        dir[n] = 0;
    } else {
        return;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Sets the mode, writes, flushes and closes the temporary file. Returns
   0, or the errno of the step that failed (named in *step). */
static int fileio_fill_temp(int fd, mode_t mode, const void *buf, size_t len,
                            const char **step)
{
    int e = 0;
    if (fchmod(fd, mode) != 0) {
        *step = "set the mode of";
        e = errno;
    } else if (fileio_write_all(fd, buf, len) != 0) {
        *step = "write";
        e = errno;
    } else if (fsync(fd) != 0) {
        *step = "flush";
        e = errno;
    }
    if (close(fd) != 0 && !e) {
        *step = "close";
        e = errno;
    }
    return e;
}

int aria_write_file_atomic(const char *path, const void *buf, size_t len, aria_error *err)
{
    char eb[128];
    if (!path || (!buf && len))
        return aria_fail(err, ARIA_ERR_ARG, "aria_write_file_atomic: NULL argument");
    size_t plen = strlen(path);
    if (plen == 0 || path[plen - 1] == '/')
        return aria_fail(err, ARIA_ERR_ARG, "cannot write: the output path names a directory");
    char *tmp = fileio_temp_name(path);
    if (!tmp) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    mode_t mode = fileio_target_mode(path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return aria_fail(err, ARIA_ERR_IO, "cannot create a temporary file beside the output: %s",
                           fileio_errstr(e, eb, sizeof eb));
    }
    const char *step = "write";
    int e = fileio_fill_temp(fd, mode, buf, len, &step);
    int ok = e == 0;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
        step = "rename the temporary file to";
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return aria_fail(err, ARIA_ERR_IO, "cannot %s the output: %s", step,
                           fileio_errstr(e, eb, sizeof eb));
    }
    fileio_sync_dir(tmp);
    free(tmp);
    return ARIA_OK;
}
