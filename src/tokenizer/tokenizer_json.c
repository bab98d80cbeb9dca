/*
 * tokenizer_json.c - reads token sequences written as JSON, the format of
 * the reference vectors and of `aria tokenize`:
 *     ["<S>", ["piano",60,80], ["onset",120], ["dur",340], ["drum",36],
 *      ["prefix","instrument","piano"], "<E>"]
 * Values outside the vocabulary (a drum 30, an onset of 5003) are kept, as
 * the reference's tuples keep them; values that cannot be MIDI (pitch 200,
 * a negative time) are errors.
 */
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "tokenizer/tokenizer_internal.h"
#include "base/util.h"

static const char *const special_json[ARIA_N_SPECIAL] = {
    "<S>", "<E>", "<P>", "<U>", "<D>", "<T>", "<PED_ON>", "<PED_OFF>", "<X>"};

static int str_eq(const json_value *v, const char *s) {
    size_t n;
    const char *p = json_type_of(v) == JSON_STRING ? json_string(v, &n) : NULL;
    return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

static int int_in(const json_value *v, int64_t lo, int64_t hi, int32_t *out) {
    if (!v || json_type_of(v) != JSON_NUMBER || !json_is_int(v)) return 0;
    int64_t x = json_int(v);
    if (x < lo || x > hi) return 0;
    *out = (int32_t)x;
    return 1;
}

static int name_index(const aria_tokenizer *t, aria_prefix_kind kind, const json_value *v) {
    for (int i = 0; i < aria_tok_n_names(t, kind); i++)
        if (str_eq(v, aria_tok_name(t, kind, i))) return i;
    return -1;
}

static int parse_prefix(const aria_tokenizer *t, const json_value *v, aria_token *tok) {
    if (json_len(v) != 3) return 0;
    const json_value *cat = json_at(v, 1), *val = json_at(v, 2);
    tok->kind = ARIA_TK_PREFIX;
    if (str_eq(cat, "instrument")) {
        size_t n;
        const char *s = json_type_of(val) == JSON_STRING ? json_string(val, &n) : NULL;
        char name[32];
        if (!s || n >= sizeof name) return 0;
        memcpy(name, s, n);
        name[n] = 0;
        int c = aria_instrument_from_name(name);
        if (c < 0) return 0;
        tok->a = ARIA_PREFIX_INSTRUMENT;
        tok->v = c;
        return 1;
    }
    static const char *const kinds[] = {"composer", "form", "genre"};
    for (int k = 0; k < 3; k++) {
        if (!str_eq(cat, kinds[k])) continue;
        int idx = name_index(t, (aria_prefix_kind)(k + 1), val);
        if (idx < 0) return 0;
        tok->a = (uint8_t)(k + 1);
        tok->v = idx;
        return 1;
    }
    return 0;
}

static int parse_one(const aria_tokenizer *t, const json_value *v, aria_token *tok) {
    memset(tok, 0, sizeof *tok);
    if (json_type_of(v) == JSON_STRING) {
        for (int i = 0; i < ARIA_N_SPECIAL; i++)
            if (str_eq(v, special_json[i])) {
                *tok = aria_tok_special((aria_special)i);
                return 1;
            }
        return 0;
    }
    if (json_type_of(v) != JSON_ARRAY || json_len(v) < 2) return 0;
    const json_value *head = json_at(v, 0);
    size_t len = json_len(v);
    if (str_eq(head, "prefix")) return parse_prefix(t, v, tok);
    if (len == 2) {
        int kind = str_eq(head, "onset") ? ARIA_TK_ONSET
                   : str_eq(head, "dur") ? ARIA_TK_DUR
                   : str_eq(head, "drum") ? ARIA_TK_DRUM
                                          : -1;
        int64_t hi = kind == ARIA_TK_DRUM ? 127 : 100000000;
        if (kind < 0 || !int_in(json_at(v, 1), 0, hi, &tok->v)) return 0;
        tok->kind = (uint8_t)kind;
        return 1;
    }
    if (len != 3 || json_type_of(head) != JSON_STRING) return 0;
    size_t n;
    const char *s = json_string(head, &n);
    char name[32];
    if (n >= sizeof name) return 0;
    memcpy(name, s, n);
    name[n] = 0;
    int c = aria_instrument_from_name(name);
    int32_t vel;
    if (c < 0 || c == ARIA_INSTR_DRUM || !int_in(json_at(v, 1), 0, 127, &tok->v) ||
        !int_in(json_at(v, 2), 0, 127, &vel))
        return 0;
    tok->kind = ARIA_TK_NOTE;
    tok->a = (uint8_t)c;
    tok->b = (uint8_t)vel;
    return 1;
}

int aria_tok_parse_json(const aria_tokenizer *t, const char *text, size_t len, aria_token **out,
                        size_t *n, aria_error *err) {
    *out = NULL;
    *n = 0;
    char jerr[256];
    json_doc *doc;
    if (json_parse(text, len, &doc, jerr, sizeof jerr) != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "invalid JSON: %s", jerr);
    const json_value *root = json_root(doc);
    if (json_type_of(root) != JSON_ARRAY) {
        json_doc_free(doc);
        return aria_fail(err, ARIA_ERR_FORMAT, "expected a JSON array of tokens");
    }
    size_t cnt = json_len(root);
    aria_token *toks = malloc((cnt ? cnt : 1) * sizeof *toks);
    if (!toks) {
        json_doc_free(doc);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < cnt; i++) {
        if (!parse_one(t, json_at(root, i), &toks[i])) {
            free(toks);
            json_doc_free(doc);
            return aria_fail(err, ARIA_ERR_FORMAT, "token %zu is not a valid Aria token", i);
        }
    }
    json_doc_free(doc);
    *out = toks;
    *n = cnt;
    return ARIA_OK;
}
