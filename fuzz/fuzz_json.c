/*
 * fuzz_json.c - libFuzzer target for the JSON reader (src/base/json.c).
 *
 * Each input is parsed from an exact-size copy (so ASan sees any read past
 * len); on success the whole tree is walked through the public accessors,
 * every key is looked up again with json_getn (which must find a value and
 * the last duplicate), and strings are escaped, re-parsed and compared, so
 * the escaper and the reader are checked against each other.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Escapes s, parses the result, and requires the same bytes back. */
static void check_round_trip(const char *s, size_t n)
{
    size_t need = json_escape_string(NULL, 0, s, n);
    char *buf = malloc(need + 1);
    if (!buf)
        return;
    if (json_escape_string(buf, need + 1, s, n) != need || buf[need] != '\0')
        abort();
    json_doc *d = NULL;
    if (json_parse(buf, need, &d, NULL, 0) != ARIA_OK)
        abort();
    size_t m;
    const char *back = json_string(json_root(d), &m);
    if (!back || m != n || memcmp(back, s, n) != 0 || back[m] != '\0')
        abort();
    json_doc_free(d);
    free(buf);
}

static void walk(const json_value *v)
{
    size_t n = json_len(v);
    switch (json_type_of(v)) {
    case JSON_ARRAY:
        for (size_t i = 0; i < n; i++)
            walk(json_at(v, i));
        if (json_at(v, n) != NULL)
            abort();
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < n; i++) {
            size_t kl;
            const char *k = json_key_at(v, i, &kl);
            const json_value *found = json_getn(v, k, kl);
            if (!k || !found)
                abort();
            /* the value found is this member's or a later duplicate's */
            for (size_t j = n; j-- > i;) {
                size_t jl;
                const char *kj = json_key_at(v, j, &jl);
                if (jl == kl && memcmp(kj, k, kl) == 0) {
                    if (found != json_at(v, j))
                        abort();
                    break;
                }
            }
            walk(json_at(v, i));
        }
        break;
    case JSON_STRING: {
        size_t len;
        const char *s = json_string(v, &len);
        if (!s || len != n || s[len] != '\0')
            abort();
        check_round_trip(s, len);
        break;
    }
    case JSON_NUMBER:
        if (json_is_int(v)) {
            /* integers within 2^53 must be exact in both forms */
            int64_t i = json_int(v);
            if (i <= (INT64_C(1) << 53) && i >= -(INT64_C(1) << 53) && (double)i != json_number(v))
                abort();
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    json_doc *doc = NULL;
    char err[256];
    int st = json_parse(copy, size, &doc, err, sizeof err);
    free(copy); /* the tree must not point into the input */
    if (st == ARIA_OK) {
        walk(json_root(doc));
        json_doc_free(doc);
    } else if (doc != NULL || strncmp(err, "line ", 5) != 0) {
        abort();
    }
    return 0;
}
