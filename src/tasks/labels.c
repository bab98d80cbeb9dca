/*
 * labels.c - labelled MIDI files (a CSV of path,task,label,group) and
 * cross-validation folds that keep every group on one side.
 *
 * The CSV is read whole. Fields follow RFC 4180: a field that starts with
 * a double quote runs to the closing quote, "" inside it is one quote, and
 * it may span lines; a record ends at LF (a CR before it is dropped). The
 * first record is the header; its names are matched case-insensitively
 * after trimming spaces. A UTF-8 byte-order mark is skipped.
 *
 * Rows of the task asked for become aria_label_row's with the path joined
 * to the root. The root, when the caller gives none, is the CSV's folder or
 * its parent: whichever holds the first row's file (the folder when
 * neither does, so the missing files are then listed against it).
 *
 * Folds: groups are numbered by sorting their names; their order is
 * shuffled with the seed; each group then goes to the fold that holds the
 * fewest rows of the group's main class (its most frequent label), ties
 * broken by the fewest rows, then the lowest fold. This keeps the classes
 * spread over the folds while no group is ever split.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "aria.h"
#include "base/util.h"

/* ---------------------------------------------------------------------- */
/* CSV records                                                            */
/* ---------------------------------------------------------------------- */

typedef struct {
    char **f;      /* fields of the current record (malloc'd strings) */
    size_t n, cap;
} csv_rec;

static void rec_clear(csv_rec *r) {
    for (size_t i = 0; i < r->n; i++) free(r->f[i]);
    r->n = 0;
}

static void rec_free(csv_rec *r) {
    rec_clear(r);
    free(r->f);
    r->f = NULL;
    r->cap = 0;
}

static int rec_push(csv_rec *r, const char *s, size_t len) {
    if (ARIA_GROW(r->f, r->cap, r->n + 1) != 0) return -1;
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = 0;
    r->f[r->n++] = c;
    return 0;
}

/* Reads the record starting at *pos into r; *line counts LFs passed.
   Returns 1 with a record, 0 at the end of the buffer, or an aria status. */
static int csv_next(const char *b, size_t len, size_t *pos, size_t *line, csv_rec *r, aria_error *err) {
    rec_clear(r);
    size_t p = *pos;
    if (p >= len) return 0;
    char *tmp = NULL;
    size_t tcap = 0;
    size_t start_line = *line;
    for (;;) {
        size_t tn = 0;
        if (p < len && b[p] == '"') {
            p++;
            for (;;) {
                if (p >= len) {
                    free(tmp);
                    return aria_fail(err, ARIA_ERR_FORMAT, "line %zu: a quoted field is not closed", start_line);
                }
                char c = b[p++];
                if (c == '"') {
                    if (p < len && b[p] == '"') p++;
                    else break;
                }
                if (c == '\n') (*line)++;
                if (ARIA_GROW(tmp, tcap, tn + 1) != 0) {
                    free(tmp);
                    return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                }
                tmp[tn++] = c;
            }
            /* text after the closing quote up to the separator is kept */
            while (p < len && b[p] != ',' && b[p] != '\n') {
                if (b[p] != '\r') {
                    if (ARIA_GROW(tmp, tcap, tn + 1) != 0) {
                        free(tmp);
                        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                    }
                    tmp[tn++] = b[p];
                }
                p++;
            }
            if (rec_push(r, tmp ? tmp : "", tn) != 0) {
                free(tmp);
                return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            }
        } else {
            size_t s = p;
            while (p < len && b[p] != ',' && b[p] != '\n') p++;
            size_t e = p;
            if (e > s && b[e - 1] == '\r') e--;
            if (rec_push(r, b + s, e - s) != 0) {
                free(tmp);
                return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            }
        }
        if (p < len && b[p] == ',') {
            p++;
            continue;
        }
        if (p < len) { /* '\n' */
            p++;
            (*line)++;
        }
        break;
    }
    free(tmp);
    *pos = p;
    return 1;
}

static int rec_blank(const csv_rec *r) {
    if (r->n != 1) return 0;
    for (const char *s = r->f[0]; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

/* Trims spaces on both ends, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

/* ---------------------------------------------------------------------- */
/* paths                                                                  */
/* ---------------------------------------------------------------------- */

static char *dup_n(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (!c) return NULL;
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

/* The folder of a file path: "." when it has none. */
static char *dir_of(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl) return dup_s(".");
    if (sl == path) return dup_s("/");
    return dup_n(path, (size_t)(sl - path));
}

/* The parent of a folder, textually where that is safe. */
static char *parent_of(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *sl = NULL;
    for (size_t i = 0; i < n; i++)
        if (dir[i] == '/') sl = dir + i;
    const char *last = sl ? sl + 1 : dir;
    size_t last_n = n - (size_t)(last - dir);
    if ((last_n == 1 && last[0] == '.') || (last_n == 2 && last[0] == '.' && last[1] == '.')) {
        if (last_n == 1 && !sl) return dup_s("..");
        char *c = malloc(n + 4);
        if (!c) return NULL;
        memcpy(c, dir, n);
        memcpy(c + n, "/..", 4);
        return c;
    }
    if (!sl) return dup_s(".");
    if (sl == dir) return dup_s("/");
    return dup_n(dir, (size_t)(sl - dir));
}

/* root + "/" + rel (rel alone when it is absolute or root is "."). */
static char *join(const char *root, const char *rel) {
    if (rel[0] == '/' || !root || !strcmp(root, ".")) return dup_s(rel);
    size_t a = strlen(root), b = strlen(rel);
    int sep = a && root[a - 1] != '/';
    char *c = malloc(a + (size_t)sep + b + 1);
    if (!c) return NULL;
    memcpy(c, root, a);
    if (sep) c[a] = '/';
    memcpy(c + a + (size_t)sep, rel, b + 1);
    return c;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int exists_under(const char *root, const char *rel) {
    char *p = join(root, rel);
    int ok = p && is_file(p);
    free(p);
    return ok;
}

/* ---------------------------------------------------------------------- */
/* reading                                                                */
/* ---------------------------------------------------------------------- */

typedef struct {
    char *path, *label, *group; /* as written (group filled in) */
    size_t line;
} raw_row;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void aria_labels_free(aria_labels *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->rows[i].path);
        free(l->rows[i].label);
        free(l->rows[i].group);
    }
    free(l->rows);
    for (int c = 0; c < l->n_classes; c++) free(l->classes[c]);
    free(l->classes);
    free(l->y);
    for (size_t i = 0; i < l->n_missing; i++) free(l->missing[i]);
    free(l->missing);
    for (int c = 0; c < l->n_dropped_classes; c++) free(l->dropped_classes[c]);
    free(l->dropped_classes);
    free(l->root);
    free(l->csv);
    free(l->task);
    memset(l, 0, sizeof(*l));
}

static int class_index(char *const *classes, int n, const char *label) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(classes[mid], label);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* The task names of the file, comma-separated, into buf. */
static void list_tasks(char **tasks, size_t n, char *buf, size_t cap) {
    qsort(tasks, n, sizeof(char *), cmp_str);
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        if (i && !strcmp(tasks[i], tasks[i - 1])) continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", tasks[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

int aria_labels_read(const char *csv, const char *task, const char *root, aria_labels *out, aria_error *err) {
    memset(out, 0, sizeof(*out));
    if (!csv || !task || !*task) return aria_fail(err, ARIA_ERR_ARG, "no labels file or no task");
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_read_file(csv, &buf, &len, err);
    if (rc != ARIA_OK) return rc;
    const char *b = (const char *)buf;
    size_t pos = 0, line = 1;
    if (len >= 3 && (uint8_t)b[0] == 0xEF && (uint8_t)b[1] == 0xBB && (uint8_t)b[2] == 0xBF) pos = 3;

    csv_rec r = {0};
    raw_row *raw = NULL;
    size_t n_raw = 0, raw_cap = 0;
    char **tasks = NULL; /* distinct-ish task names, for the unknown-task message */
    size_t n_tasks = 0, tasks_cap = 0;
    int col[4] = {-1, -1, -1, -1};
    static const char *const names[4] = {"path", "task", "label", "group"};
    size_t n_empty = 0;
    char *root_dir = NULL;

    /* header */
    size_t hline = line;
    for (;;) {
        hline = line;
        rc = csv_next(b, len, &pos, &line, &r, err);
        if (rc < 0) goto fail;
        if (rc == 0) {
            rc = aria_fail(err, ARIA_ERR_FORMAT, "line %zu: no header (the file is empty)", hline);
            goto fail;
        }
        if (!rec_blank(&r)) break;
    }
    for (size_t i = 0; i < r.n; i++) {
        char *h = trim(r.f[i]);
        for (int k = 0; k < 4; k++)
            if (!strcasecmp(h, names[k]) && col[k] < 0) col[k] = (int)i;
    }
    for (int k = 0; k < 4; k++)
        if (col[k] < 0) {
            rc = aria_fail(err, ARIA_ERR_FORMAT,
                           "line %zu: no '%s' column (the header must name path, task, label and group)", hline,
                           names[k]);
            goto fail;
        }
    int need = 0;
    for (int k = 0; k < 4; k++)
        if (col[k] + 1 > need) need = col[k] + 1;

    /* rows */
    for (;;) {
        size_t rline = line;
        rc = csv_next(b, len, &pos, &line, &r, err);
        if (rc < 0) goto fail;
        if (rc == 0) break;
        if (rec_blank(&r)) continue;
        if ((int)r.n < need) {
            rc = aria_fail(err, ARIA_ERR_FORMAT, "line %zu: %zu fields, the header has %d or more", rline, r.n, need);
            goto fail;
        }
        char *t = trim(r.f[col[1]]);
        if (strcmp(t, task) != 0) {
            int seen = 0;
            for (size_t i = 0; i < n_tasks && !seen; i++) seen = !strcmp(tasks[i], t);
            if (!seen && *t) {
                char *c = dup_s(t);
                if (!c || ARIA_GROW(tasks, tasks_cap, n_tasks + 1) != 0) {
                    free(c);
                    rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                tasks[n_tasks++] = c;
            }
            continue;
        }
        char *p = trim(r.f[col[0]]), *lab = trim(r.f[col[2]]), *g = trim(r.f[col[3]]);
        if (!*p) {
            rc = aria_fail(err, ARIA_ERR_FORMAT, "line %zu: empty path", rline);
            goto fail;
        }
        if (!*lab) {
            n_empty++;
            continue;
        }
        if (ARIA_GROW(raw, raw_cap, n_raw + 1) != 0) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        raw_row *w = &raw[n_raw];
        w->path = dup_s(p);
        w->label = dup_s(lab);
        w->group = dup_s(*g ? g : p);
        w->line = rline;
        n_raw++;
        if (!w->path || !w->label || !w->group) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (n_raw == 0 && n_empty == 0) {
        char list[400];
        list_tasks(tasks, n_tasks, list, sizeof(list));
        rc = aria_fail(err, ARIA_ERR_ARG, "no rows for task '%s'; the tasks of this file: %s", task,
                       n_tasks ? list : "(none)");
        goto fail;
    }
    if (n_raw == 0) {
        rc = aria_fail(err, ARIA_ERR_ARG, "task '%s': all %zu rows have an empty label", task, n_empty);
        goto fail;
    }
    /* the same file twice for one task would weigh it twice and could put
       it on both sides of a split if its groups differ */
    {
        char **ps = malloc(n_raw * sizeof(char *));
        if (!ps) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n_raw; i++) ps[i] = raw[i].path;
        qsort(ps, n_raw, sizeof(char *), cmp_str);
        const char *dup = NULL;
        for (size_t i = 1; i < n_raw && !dup; i++)
            if (!strcmp(ps[i], ps[i - 1])) dup = ps[i];
        free(ps);
        if (dup) {
            size_t l1 = 0, l2 = 0;
            for (size_t i = 0; i < n_raw; i++)
                if (!strcmp(raw[i].path, dup)) {
                    if (!l1) l1 = raw[i].line;
                    else if (!l2) l2 = raw[i].line;
                }
            rc = aria_fail(err, ARIA_ERR_FORMAT, "line %zu: %s is listed again for task '%s' (first at line %zu)",
                           l2, dup, task, l1);
            goto fail;
        }
    }

    /* root */
    if (root && *root) {
        root_dir = dup_s(root);
    } else {
        char *d = dir_of(csv);
        const char *first = NULL;
        for (size_t i = 0; i < n_raw && !first; i++)
            if (raw[i].path[0] != '/') first = raw[i].path;
        if (d && first && !exists_under(d, first)) {
            char *par = parent_of(d);
            if (par && exists_under(par, first)) {
                free(d);
                d = par;
            } else {
                free(par);
            }
        }
        root_dir = d;
    }
    if (!root_dir) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto fail;
    }

    /* files: resolved, missing ones counted */
    out->rows = calloc(n_raw, sizeof(aria_label_row));
    out->y = calloc(n_raw, sizeof(int));
    if (!out->rows || !out->y) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t miss_cap = 0;
    for (size_t i = 0; i < n_raw; i++) {
        char *full = join(root_dir, raw[i].path);
        if (!full) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (!is_file(full)) {
            if (ARIA_GROW(out->missing, miss_cap, out->n_missing + 1) != 0) {
                free(full);
                rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                goto fail;
            }
            out->missing[out->n_missing++] = full;
            continue;
        }
        aria_label_row *row = &out->rows[out->n++];
        row->path = full;
        row->label = raw[i].label;
        row->group = raw[i].group;
        raw[i].label = raw[i].group = NULL;
    }
    out->n_empty_label = n_empty;
    if (out->n == 0) {
        rc = aria_fail(err, ARIA_ERR_IO, "task '%s': none of its %zu files exists under %s (e.g. %s); give --root",
                       task, n_raw, root_dir, out->missing[0]);
        goto fail;
    }

    /* classes */
    {
        char **ls = malloc(out->n * sizeof(char *));
        if (!ls) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < out->n; i++) ls[i] = out->rows[i].label;
        qsort(ls, out->n, sizeof(char *), cmp_str);
        size_t nc = 0;
        for (size_t i = 0; i < out->n; i++)
            if (!i || strcmp(ls[i], ls[i - 1])) ls[nc++] = ls[i];
        if (nc < 2) {
            free(ls);
            rc = aria_fail(err, ARIA_ERR_ARG, "task '%s' has one class only ('%s', %zu files): nothing to classify",
                           task, out->rows[0].label, out->n);
            goto fail;
        }
        out->classes = calloc(nc, sizeof(char *));
        if (!out->classes) {
            free(ls);
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t c = 0; c < nc; c++) {
            out->classes[c] = dup_s(ls[c]);
            if (!out->classes[c]) {
                free(ls);
                out->n_classes = (int)c;
                rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        out->n_classes = (int)nc;
        free(ls);
        for (size_t i = 0; i < out->n; i++) out->y[i] = class_index(out->classes, out->n_classes, out->rows[i].label);
    }
    out->root = root_dir;
    root_dir = NULL;
    out->csv = dup_s(csv);
    out->task = dup_s(task);
    if (!out->csv || !out->task) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rc = ARIA_OK;
    goto done;

fail:
    aria_labels_free(out);
done:
    for (size_t i = 0; i < n_raw; i++) {
        free(raw[i].path);
        free(raw[i].label);
        free(raw[i].group);
    }
    free(raw);
    for (size_t i = 0; i < n_tasks; i++) free(tasks[i]);
    free(tasks);
    free(root_dir);
    rec_free(&r);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* groups                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t i;
} str_idx;

static int cmp_str_idx(const void *a, const void *b) {
    const str_idx *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c) return c;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* gid[i] for every row, groups numbered by name order; returns the group
   count, or (size_t)-1 when out of memory. */
static size_t group_ids(const aria_labels *l, size_t *gid) {
    if (l->n == 0) return 0;
    str_idx *v = malloc(l->n * sizeof(*v));
    if (!v) return (size_t)-1;
    for (size_t i = 0; i < l->n; i++) v[i] = (str_idx){l->rows[i].group, i};
    qsort(v, l->n, sizeof(*v), cmp_str_idx);
    size_t ng = 0;
    for (size_t k = 0; k < l->n; k++) {
        if (k && strcmp(v[k].s, v[k - 1].s)) ng++;
        gid[v[k].i] = ng;
    }
    free(v);
    return ng + 1;
}

/* Groups per class into cg[n_classes]; 0, or -1 when out of memory. */
static int class_group_counts(const aria_labels *l, size_t *cg) {
    for (int c = 0; c < l->n_classes; c++) cg[c] = 0;
    if (l->n == 0) return 0;
    size_t *gid = malloc(l->n * sizeof(size_t));
    if (!gid) return -1;
    size_t ng = group_ids(l, gid);
    if (ng == (size_t)-1) {
        free(gid);
        return -1;
    }
    /* (class, group) pairs, counted once each */
    size_t *key = malloc(l->n * sizeof(size_t));
    if (!key) {
        free(gid);
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) key[i] = (size_t)l->y[i] * ng + gid[i];
    /* distinct keys: sorted (a shell sort; n is thousands), then counted */
    size_t gap = 1;
    while (gap < l->n / 3) gap = gap * 3 + 1;
    for (; gap > 0; gap /= 3)
        for (size_t i = gap; i < l->n; i++) {
            size_t v = key[i], j = i;
            while (j >= gap && key[j - gap] > v) {
                key[j] = key[j - gap];
                j -= gap;
            }
            key[j] = v;
        }
    for (size_t i = 0; i < l->n; i++)
        if (!i || key[i] != key[i - 1]) cg[key[i] / ng]++;
    free(key);
    free(gid);
    return 0;
}

size_t aria_labels_class_groups(const aria_labels *l, int c) {
    if (!l || c < 0 || c >= l->n_classes) return 0;
    size_t *cg = malloc((size_t)l->n_classes * sizeof(size_t));
    if (!cg || class_group_counts(l, cg) != 0) {
        free(cg);
        return 0;
    }
    size_t r = cg[c];
    free(cg);
    return r;
}

int aria_labels_drop_small(aria_labels *l, int min_groups, aria_error *err) {
    if (!l || l->n_classes < 1) return aria_fail(err, ARIA_ERR_ARG, "no labels");
    size_t *cg = malloc((size_t)l->n_classes * sizeof(size_t));
    int *map = malloc((size_t)l->n_classes * sizeof(int));
    if (!cg || !map || class_group_counts(l, cg) != 0) {
        free(cg);
        free(map);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    int kept = 0, dropped = 0;
    for (int c = 0; c < l->n_classes; c++) {
        if (cg[c] >= (size_t)(min_groups > 0 ? min_groups : 0)) map[c] = kept++;
        else {
            map[c] = -1;
            dropped++;
        }
    }
    if (kept < 2) {
        char kb[200] = "", db[200] = "";
        size_t ku = 0, du = 0;
        for (int c = 0; c < l->n_classes; c++) {
            char *b = map[c] >= 0 ? kb : db;
            size_t *u = map[c] >= 0 ? &ku : &du;
            if (*u + 1 >= sizeof(kb)) continue;
            int w = snprintf(b + *u, sizeof(kb) - *u, "%s%s (%zu)", *u ? ", " : "", l->classes[c], cg[c]);
            if (w > 0) *u = (*u + (size_t)w < sizeof(kb)) ? *u + (size_t)w : sizeof(kb) - 1;
        }
        free(cg);
        free(map);
        return aria_fail(err, ARIA_ERR_ARG,
                         "task '%s': %d class%s with at least %d groups, need 2 (kept: %s; too few groups: %s)",
                         l->task ? l->task : "?", kept, kept == 1 ? "" : "es", min_groups, kept ? kb : "none",
                         dropped ? db : "none");
    }
    if (dropped == 0) {
        free(cg);
        free(map);
        return ARIA_OK;
    }
    char **dc = realloc(l->dropped_classes, (size_t)(l->n_dropped_classes + dropped) * sizeof(char *));
    if (!dc) {
        free(cg);
        free(map);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    l->dropped_classes = dc;
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        int nc = map[l->y[i]];
        if (nc < 0) {
            free(l->rows[i].path);
            free(l->rows[i].label);
            free(l->rows[i].group);
            l->n_dropped_rows++;
            continue;
        }
        l->rows[w] = l->rows[i];
        l->y[w] = nc;
        w++;
    }
    l->n = w;
    int k = 0;
    for (int c = 0; c < l->n_classes; c++) {
        if (map[c] < 0) l->dropped_classes[l->n_dropped_classes++] = l->classes[c];
        else l->classes[k++] = l->classes[c];
    }
    l->n_classes = kept;
    free(cg);
    free(map);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* folds                                                                  */
/* ---------------------------------------------------------------------- */

int aria_labels_folds(const aria_labels *l, int k, uint64_t seed, int *fold, aria_error *err) {
    if (!l || !fold || l->n == 0) return aria_fail(err, ARIA_ERR_ARG, "no labelled files");
    if (k < 2) return aria_fail(err, ARIA_ERR_ARG, "%d folds: need at least 2", k);
    const char *task = l->task ? l->task : "?";
    size_t C = (size_t)l->n_classes;
    size_t *gid = malloc(l->n * sizeof(size_t));
    size_t *cg = malloc(C * sizeof(size_t));
    if (!gid || !cg) {
        free(gid);
        free(cg);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    size_t ng = group_ids(l, gid);
    if (ng == (size_t)-1 || class_group_counts(l, cg) != 0) {
        free(gid);
        free(cg);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    if (ng < (size_t)k) {
        free(gid);
        free(cg);
        return aria_fail(err, ARIA_ERR_ARG, "task '%s' has %zu groups, fewer than the %d folds", task, ng, k);
    }
    for (size_t c = 0; c < C; c++)
        if (cg[c] < (size_t)k) {
            int rc = aria_fail(err, ARIA_ERR_ARG,
                               "task '%s': class '%s' has %zu group%s, fewer than the %d folds (drop it or use fewer folds)",
                               task, l->classes[c], cg[c], cg[c] == 1 ? "" : "s", k);
            free(gid);
            free(cg);
            return rc;
        }
    free(cg);

    /* per group: size and main class */
    size_t *gsize = calloc(ng, sizeof(size_t));
    size_t *gcnt = calloc(ng * C, sizeof(size_t));
    size_t *order = malloc(ng * sizeof(size_t));
    int *gmain = malloc(ng * sizeof(int));
    int *gfold = malloc(ng * sizeof(int));
    size_t *fcnt = calloc((size_t)k * C, sizeof(size_t));
    size_t *ftot = calloc((size_t)k, sizeof(size_t));
    int rc = ARIA_OK;
    if (!gsize || !gcnt || !order || !gmain || !gfold || !fcnt || !ftot) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < l->n; i++) {
        gsize[gid[i]]++;
        gcnt[gid[i] * C + (size_t)l->y[i]]++;
    }
    for (size_t g = 0; g < ng; g++) {
        int best = 0;
        for (size_t c = 1; c < C; c++)
            if (gcnt[g * C + c] > gcnt[g * C + (size_t)best]) best = (int)c;
        gmain[g] = best;
        order[g] = g;
    }
    aria_rng rng;
    aria_rng_seed(&rng, seed);
    aria_rng_shuffle(&rng, order, ng, sizeof(size_t));
    for (size_t o = 0; o < ng; o++) {
        size_t g = order[o];
        size_t c = (size_t)gmain[g];
        int bf = 0;
        for (int f = 1; f < k; f++) {
            size_t a = fcnt[(size_t)f * C + c], b = fcnt[(size_t)bf * C + c];
            if (a < b || (a == b && ftot[f] < ftot[bf])) bf = f;
        }
        gfold[g] = bf;
        for (size_t cc = 0; cc < C; cc++) fcnt[(size_t)bf * C + cc] += gcnt[g * C + cc];
        ftot[bf] += gsize[g];
    }
    for (size_t i = 0; i < l->n; i++) fold[i] = gfold[gid[i]];
out:
    free(gid);
    free(gsize);
    free(gcnt);
    free(order);
    free(gmain);
    free(gfold);
    free(fcnt);
    free(ftot);
    return rc;
}
