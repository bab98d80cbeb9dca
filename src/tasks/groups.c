/*
 * groups.c - which files belong together, so that a train/validation split
 * never puts one piece on both sides (`aria dataset --group-by`).
 *
 * A corpus often holds one piece several times: POP909 keeps each song's
 * main arrangement as NNN/NNN.mid and its other versions as
 * NNN/versions/NNN-vK.mid; GiantMIDI-Piano cuts one recording into
 * movements (..._mov_1, ..._cut_no_2) and names its preview files
 * "Composer, Title, YOUTUBEID.mid" while the transcriptions of the same
 * recording carry that id inside their names. Splitting such files one by
 * one lets validation hear what training heard, and the validation loss
 * looks better than the model is.
 *
 * Each mode gives every path one or more keys; paths that share a key are
 * one group (union-find, so keys chain):
 *   auto   the folder, with a folder named "versions" counted as its
 *          parent, joined to the file name reduced to its piece: lower
 *          case, extension and trailing version / part marks removed
 *          ("-v2", "_v3", "_mov_1", "_no_12", "_part1", "_cut", "_midi",
 *          repeatedly); plus, for a name ending in ", ID" where ID is 11
 *          characters of [A-Za-z0-9_-] (a YouTube id, GiantMIDI's naming),
 *          the ID, which every path containing it shares.
 *   dir    the folder (a "versions" folder counted as its parent).
 *   regex  the first parenthesised part of a POSIX extended regular
 *          expression's match on the path (the whole match when it has no
 *          group); a path it does not match is a group of its own.
 *   none   every path a group of its own.
 * Groups are numbered 0, 1, ... in the order of their first path, so the
 * result depends only on the list of paths.
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aria.h"
#include "base/util.h"

#define YT_ID_LEN 11

/* ---------------------------------------------------------------------- */
/* union-find                                                             */
/* ---------------------------------------------------------------------- */

static size_t find(size_t *parent, size_t i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

static void unite(size_t *parent, size_t a, size_t b) {
    a = find(parent, a);
    b = find(parent, b);
    if (a == b) return;
    if (a < b) parent[b] = a; /* the earlier path is the root */
    else parent[a] = b;
}

/* (key, path index) pairs; equal keys join their paths. */
typedef struct {
    char *key;
    size_t i;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

static void join_equal_keys(keyed *k, size_t n, size_t *parent) {
    qsort(k, n, sizeof *k, cmp_keyed);
    for (size_t j = 1; j < n; j++)
        if (!strcmp(k[j].key, k[j - 1].key)) unite(parent, k[j].i, k[j - 1].i);
}

/* ---------------------------------------------------------------------- */
/* keys                                                                   */
/* ---------------------------------------------------------------------- */

/* The folder of `path` (without the final '/'), a trailing "versions"
   folder removed: writes it to out, returns its length. */
static size_t folder_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= cap) n = cap - 1;
    memcpy(out, path, n);
    out[n] = 0;
    char *last = strrchr(out, '/');
    const char *name = last ? last + 1 : out;
    if (!strcasecmp(name, "versions")) {
        n = last ? (size_t)(last - out) : 0;
        out[n] = 0;
    }
    return n;
}

static int ends_with(const char *s, size_t n, const char *suffix, size_t *at) {
    size_t k = strlen(suffix);
    if (n < k || memcmp(s + n - k, suffix, k) != 0) return 0;
    *at = n - k;
    return 1;
}

static int is_sep(char c) { return c == '-' || c == '_' || c == ' ' || c == '.'; }

/* Removes one trailing version / part mark from stem[0..*n); 1 if one was. */
static int strip_mark(const char *s, size_t *n) {
    size_t at, e = *n;
    if (ends_with(s, e, "cut", &at) || ends_with(s, e, "midi", &at)) {
        if (at > 0 && is_sep(s[at - 1])) {
            *n = at - 1;
            return 1;
        }
        return 0;
    }
    size_t d = e;
    while (d > 0 && isdigit((unsigned char)s[d - 1])) d--;
    if (d == e || d == 0) return 0; /* no trailing number, or nothing else */
    static const char *const words[] = {"v", "mov", "no", "part", "pt"};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t at2 = d;
        if (at2 > 0 && is_sep(s[at2 - 1]) && strcmp(words[w], "v") != 0) at2--; /* "no_12", "mov 1" */
        if (!ends_with(s, at2, words[w], &at)) continue;
        if (at > 0 && is_sep(s[at - 1])) {
            *n = at - 1;
            return 1;
        }
    }
    return 0;
}

/* auto's first key: folder + "/" + the reduced name. */
static char *piece_key(const char *path) {
    size_t cap = strlen(path) + 2;
    char *k = malloc(cap);
    if (!k) return NULL;
    size_t n = folder_of(path, k, cap);
    k[n++] = '/';
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    for (size_t i = 0; i < len; i++) k[n + i] = (char)tolower((unsigned char)base[i]);
    while (strip_mark(k + n, &len)) {
    }
    k[n + len] = 0;
    return k;
}

static int is_id_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-'; }

/* GiantMIDI's "Composer, Title, ID.mid": the ID, or 0. */
static int trailing_id(const char *path, char id[YT_ID_LEN + 1]) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (len < YT_ID_LEN + 2) return 0;
    const char *s = base + len - YT_ID_LEN;
    if (s[-1] != ' ' || s[-2] != ',') return 0;
    for (int i = 0; i < YT_ID_LEN; i++)
        if (!is_id_char(s[i])) return 0;
    memcpy(id, s, YT_ID_LEN);
    id[YT_ID_LEN] = 0;
    return 1;
}

/* Every path whose file name contains one of the ids joins the paths that
   end in it. ids: sorted; each 11-character window of a name is looked up. */
static int join_ids(const char *const *paths, size_t n, size_t *parent, aria_error *err) {
    keyed *ids = malloc((n ? n : 1) * sizeof *ids);
    char (*buf)[YT_ID_LEN + 1] = malloc((n ? n : 1) * sizeof *buf);
    if (!ids || !buf) {
        free(ids);
        free(buf);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (trailing_id(paths[i], buf[m])) {
            ids[m] = (keyed){buf[m], i};
            m++;
        }
    if (m) {
        join_equal_keys(ids, m, parent);
        char win[YT_ID_LEN + 1];
        for (size_t i = 0; i < n; i++) {
            const char *slash = strrchr(paths[i], '/'), *base = slash ? slash + 1 : paths[i];
            size_t len = strlen(base);
            for (size_t a = 0; a + YT_ID_LEN <= len; a++) {
                memcpy(win, base + a, YT_ID_LEN);
                win[YT_ID_LEN] = 0;
                keyed probe = {win, 0};
                size_t lo = 0, hi = m; /* first entry with key >= win */
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (strcmp(ids[mid].key, probe.key) < 0) lo = mid + 1;
                    else hi = mid;
                }
                if (lo < m && !strcmp(ids[lo].key, win)) unite(parent, i, ids[lo].i);
            }
        }
    }
    free(ids);
    free(buf);
    return ARIA_OK;
}

/* The key of the regex mode, or NULL (no match: a group of its own). */
static char *regex_key(const regex_t *re, const char *path) {
    regmatch_t mt[2];
    if (regexec(re, path, 2, mt, 0) != 0) return NULL;
    regmatch_t g = re->re_nsub >= 1 && mt[1].rm_so >= 0 ? mt[1] : mt[0];
    size_t len = (size_t)(g.rm_eo - g.rm_so);
    char *k = malloc(len + 2);
    if (!k) return NULL;
    k[0] = 'k'; /* never empty, never the NULL of "no match" */
    memcpy(k + 1, path + g.rm_so, len);
    k[len + 1] = 0;
    return k;
}

int aria_group_mode_parse(const char *text, aria_group_mode *mode, const char **pattern) {
    *pattern = NULL;
    if (!strcmp(text, "auto")) *mode = ARIA_GROUP_AUTO;
    else if (!strcmp(text, "dir")) *mode = ARIA_GROUP_DIR;
    else if (!strcmp(text, "none")) *mode = ARIA_GROUP_NONE;
    else if (!strncmp(text, "regex:", 6) && text[6]) {
        *mode = ARIA_GROUP_REGEX;
        *pattern = text + 6;
    } else return -1;
    return 0;
}

int aria_group_paths(const char *const *paths, size_t n, aria_group_mode mode, const char *pattern,
                     size_t *group, size_t *n_groups, aria_error *err) {
    *n_groups = 0;
    if (mode == ARIA_GROUP_REGEX && (!pattern || !*pattern))
        return aria_fail(err, ARIA_ERR_ARG, "group-by regex: no pattern");
    if (mode < ARIA_GROUP_AUTO || mode > ARIA_GROUP_NONE) return aria_fail(err, ARIA_ERR_ARG, "unknown grouping %d", mode);
    regex_t re;
    if (mode == ARIA_GROUP_REGEX) {
        int rc = regcomp(&re, pattern, REG_EXTENDED);
        if (rc) {
            char msg[200];
            regerror(rc, &re, msg, sizeof msg);
            return aria_fail(err, ARIA_ERR_ARG, "group-by regex '%s': %s", pattern, msg);
        }
    }
    size_t *parent = malloc((n ? n : 1) * sizeof *parent);
    keyed *keys = calloc(n ? n : 1, sizeof *keys);
    int rc = parent && keys ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t nk = 0;
    for (size_t i = 0; rc == ARIA_OK && i < n; i++) {
        parent[i] = i;
        char *k = NULL;
        if (mode == ARIA_GROUP_AUTO) {
            k = piece_key(paths[i]);
        } else if (mode == ARIA_GROUP_DIR) {
            size_t cap = strlen(paths[i]) + 1;
            if ((k = malloc(cap))) folder_of(paths[i], k, cap);
        } else if (mode == ARIA_GROUP_REGEX) {
            k = regex_key(&re, paths[i]);
            if (!k) continue; /* unmatched (or out of memory: then alone too) */
        } else {
            continue;
        }
        if (!k) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        else keys[nk++] = (keyed){k, i};
    }
    if (rc == ARIA_OK) join_equal_keys(keys, nk, parent);
    if (rc == ARIA_OK && mode == ARIA_GROUP_AUTO) rc = join_ids(paths, n, parent, err);
    if (rc == ARIA_OK) { /* number the roots in order of first appearance */
        size_t *num = malloc((n ? n : 1) * sizeof *num);
        if (!num) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        } else {
            size_t g = 0;
            for (size_t i = 0; i < n; i++) {
                size_t r = find(parent, i);
                if (r == i) num[i] = g++;
                group[i] = num[r]; /* the root comes first: it is the smallest index */
            }
            *n_groups = g;
            free(num);
        }
    }
    for (size_t j = 0; j < nk; j++) free(keys[j].key);
    free(keys);
    free(parent);
    if (mode == ARIA_GROUP_REGEX) regfree(&re);
    return rc;
}
