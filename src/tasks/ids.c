/*
 * ids.c - lists of token ids as text: the one reader behind every place
 * that takes ids (aria detokenize, generate --prompt-ids, logits --ids,
 * the lines of an `aria dataset --ids` file), and the writer of the same
 * text (aria tokenize --ids, generate --print-ids).
 *
 * The rule (include/aria.h says it to users): decimal ids separated by
 * runs of spaces, tabs, CR, LF and commas, the whole optionally wrapped
 * in one pair of square brackets, so that a line of ids and a JSON array
 * of integers both read. aria_tok_parse_text tells that apart from a
 * JSON array of tokens by the first element: a token is a string or an
 * array, an id a number. The parser walks the text once; each error says
 * the byte offset of what it found and quotes a few bytes of it, because
 * "expected a token id" alone does not tell a user which of 8000 ids is
 * wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

#define QUOTE_MAX 20 /* bytes of the offending text an error quotes */

static int ids_is_sep(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',';
}

static size_t ids_skip_seps(const char *p, size_t i, size_t len) {
    while (i < len && ids_is_sep(p[i])) i++;
    return i;
}

/* Bytes from `st` up to the next separator, at most QUOTE_MAX: the
   "word" an error quotes. */
static int ids_word_len(const char *p, size_t st, size_t len) {
    size_t e = st;
    while (e < len && e - st < QUOTE_MAX && !ids_is_sep(p[e])) e++;
    return (int)(e - st);
}

/* Finds the list's bounds: [*lo, *hi) without the optional brackets. */
static int ids_unwrap(const char *p, size_t len, size_t *lo, size_t *hi, aria_error *err) {
    size_t a = ids_skip_seps(p, 0, len), b = len;
    while (b > a && ids_is_sep(p[b - 1])) b--;
    int open = a < b && p[a] == '[', close = a < b && p[b - 1] == ']';
    if (open && (!close || b - a < 2)) return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: '[' without a closing ']'", a);
    if (close && !open) return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: ']' without an opening '['", b - 1);
    *lo = open ? a + 1 : a;
    *hi = close ? b - 1 : b;
    return ARIA_OK;
}

int aria_ids_parse(const char *text, size_t len, int vocab, int32_t **out, size_t *n, aria_error *err) {
    *out = NULL;
    *n = 0;
    if (!text && len) return aria_fail(err, ARIA_ERR_ARG, "no text");
    size_t lo = 0, hi = 0;
    int rc = ids_unwrap(text, len, &lo, &hi, err);
    if (rc) return rc;
    int32_t *ids = NULL;
    size_t cnt = 0, cap = 0;
    for (size_t i = ids_skip_seps(text, lo, hi); rc == ARIA_OK && i < hi; i = ids_skip_seps(text, i, hi)) {
        size_t st = i;
        long long v = 0;
        for (; i < hi && text[i] >= '0' && text[i] <= '9'; i++)
            if (v <= vocab) v = v * 10 + (text[i] - '0'); /* stops growing once too large */
        if (i == st || (i < hi && !ids_is_sep(text[i])))
            rc = aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: expected a token id, got '%.*s'", st,
                           ids_word_len(text, st, hi), text + st);
        else if (v >= vocab)
            rc = aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: token id %.*s is outside the vocabulary (0..%d)", st,
                           (int)(i - st < QUOTE_MAX ? i - st : QUOTE_MAX), text + st, vocab - 1);
        else if (ARIA_GROW(ids, cap, cnt + 1))
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        else
            ids[cnt++] = (int32_t)v;
    }
    if (rc == ARIA_OK && !ids && !(ids = malloc(sizeof *ids))) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (rc) {
        free(ids);
        return rc;
    }
    *out = ids;
    *n = cnt;
    return ARIA_OK;
}

int aria_ids_read_file(const char *path, int vocab, int32_t **out, size_t *n, aria_error *err) {
    *out = NULL;
    *n = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc == ARIA_OK) rc = aria_ids_parse((const char *)buf, len, vocab, out, n, err);
    free(buf);
    return rc;
}

int aria_ids_format(const int32_t *ids, size_t n, char **out, size_t *len, aria_error *err) {
    *out = NULL;
    *len = 0;
    size_t cap = n * 12 + 2; /* an int32 is at most 11 bytes, plus its separator */
    char *s = malloc(cap);
    if (!s) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(s + k, cap - k, "%s%d", i ? " " : "", (int)ids[i]);
    s[k++] = '\n';
    s[k] = 0;
    *out = s;
    *len = k;
    return ARIA_OK;
}

int aria_tok_format_line(const aria_tokenizer *t, const aria_token *toks, size_t n, int as_ids, char **out,
                         size_t *len, aria_error *err) {
    *out = NULL;
    *len = 0;
    if (as_ids) {
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        aria_tok_encode(t, toks, n, ids);
        int rc = aria_ids_format(ids, n, out, len, err);
        free(ids);
        return rc;
    }
    char one[96]; /* the longest token text is a prefix name, well under this */
    size_t cap = 0, k = 0;
    char *s = NULL;
    for (size_t i = 0; i <= n; i++) {
        int w = i < n ? aria_tok_to_json(t, toks[i], one, sizeof one) : 0;
        if (w < 0) w = 0;
        if ((size_t)w >= sizeof one) w = (int)sizeof one - 1;
        if (ARIA_GROW(s, cap, k + (size_t)w + 3)) {
            free(s);
            return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        }
        s[k++] = i == 0 ? '[' : i < n ? ',' : ']';
        if (i == 0 && n == 0) s[k++] = ']';
        memcpy(s + k, one, (size_t)w);
        k += (size_t)w;
    }
    s[k++] = '\n';
    s[k] = 0;
    *out = s;
    *len = k;
    return ARIA_OK;
}

static int ids_is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int aria_tok_parse_text(const aria_tokenizer *t, const char *text, size_t len, aria_token **out, size_t *n,
                        aria_error *err) {
    *out = NULL;
    *n = 0;
    size_t i = 0, j;
    while (i < len && ids_is_space(text[i])) i++;
    for (j = i + 1; j < len && ids_is_space(text[j]); j++) {}
    if (i < len && text[i] == '[' && j < len && (text[j] == '"' || text[j] == '['))
        return aria_tok_parse_json(t, text, len, out, n, err);
    int32_t *ids;
    size_t k;
    int rc = aria_ids_parse(text, len, aria_tok_vocab_size(t), &ids, &k, err);
    if (rc) return rc;
    aria_token *toks = malloc((k ? k : 1) * sizeof *toks);
    if (!toks) {
        free(ids);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    aria_tok_decode(t, ids, k, toks);
    free(ids);
    *out = toks;
    *n = k;
    return ARIA_OK;
}
