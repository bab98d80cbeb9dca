/*
 * test_json.c - tests of the internal JSON reader/writer (src/base/json.c):
 * every value type, nesting, escapes, numbers, each error class with its
 * position, the object index, the string escaper (against Python's
 * json.dumps), and real vector files copied into tests/data/json.
 *
 * Every input is copied into a malloc'd buffer of exactly its length (no
 * terminator) and freed before the tree is read, so running under ASan
 * also proves the reader never reads past `len` and that the tree owns
 * its strings.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"

#define DATA_DIR "tests/data/json/"

/* Parses text[0..len) from an exact-size heap copy. */
static int parse_len(const char *text, size_t len, json_doc **doc, char *err, size_t cap)
{
    char *copy = malloc(len ? len : 1);
    cr_assert(copy);
    memcpy(copy, text, len);
    int st = json_parse(copy, len, doc, err, cap);
    free(copy);
    return st;
}

static json_doc *ok_len(const char *text, size_t len)
{
    json_doc *doc = NULL;
    char err[256];
    int st = parse_len(text, len, &doc, err, sizeof err);
    cr_assert_eq(st, ARIA_OK, "parse of <%.*s> failed: %s", (int)len, text, err);
    cr_assert(doc);
    return doc;
}

static json_doc *ok(const char *text)
{
    return ok_len(text, strlen(text));
}

/* Expects a format error whose message contains `want` (position included
   when the caller puts it there). */
static void bad_len(const char *text, size_t len, const char *want)
{
    json_doc *doc = (json_doc *)1;
    char err[256];
    int st = parse_len(text, len, &doc, err, sizeof err);
    cr_expect_eq(st, ARIA_ERR_FORMAT, "<%.*s> parsed (st %d)", (int)len, text, st);
    cr_expect_null(doc);
    cr_expect(strstr(err, want) != NULL, "<%.*s>: message '%s' lacks '%s'", (int)len, text,
              err, want);
    json_doc_free(doc == (json_doc *)1 ? NULL : doc);
}

static void bad(const char *text, const char *want)
{
    bad_len(text, strlen(text), want);
}

static int str_is(const json_value *v, const char *want)
{
    size_t n;
    const char *s = json_string(v, &n);
    return s && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---------------------------------------------------------------------- */
/* valid documents                                                        */
/* ---------------------------------------------------------------------- */

Test(json_valid, scalars)
{
    json_doc *d = ok(" null ");
    cr_expect_eq(json_type_of(json_root(d)), JSON_NULL);
    json_doc_free(d);
    d = ok("true");
    cr_expect_eq(json_type_of(json_root(d)), JSON_TRUE);
    cr_expect_eq(json_bool(json_root(d)), 1);
    json_doc_free(d);
    d = ok("\t\r\nfalse\n");
    cr_expect_eq(json_type_of(json_root(d)), JSON_FALSE);
    cr_expect_eq(json_bool(json_root(d)), 0);
    json_doc_free(d);
    d = ok("-45");
    cr_expect_eq(json_type_of(json_root(d)), JSON_NUMBER);
    cr_expect(json_is_int(json_root(d)));
    cr_expect_eq(json_int(json_root(d)), -45);
    cr_expect_eq(json_number(json_root(d)), -45.0);
    json_doc_free(d);
    d = ok("\"hi\"");
    cr_expect(str_is(json_root(d), "hi"));
    cr_expect_eq(json_len(json_root(d)), 2);
    json_doc_free(d);
}

Test(json_valid, every_type_in_one_document)
{
    json_doc *d = ok("{\"n\": null, \"t\": true, \"f\": false, \"i\": 7, \"x\": 2.5,"
                     " \"s\": \"str\", \"a\": [1, \"two\", [3]], \"o\": {\"k\": {}}, \"e\": []}");
    const json_value *r = json_root(d);
    cr_assert_eq(json_type_of(r), JSON_OBJECT);
    cr_expect_eq(json_len(r), 9);
    cr_expect_eq(json_type_of(json_get(r, "n")), JSON_NULL);
    cr_expect_not_null(json_get(r, "n"));
    cr_expect_eq(json_type_of(json_get(r, "t")), JSON_TRUE);
    cr_expect_eq(json_type_of(json_get(r, "f")), JSON_FALSE);
    cr_expect_eq(json_int(json_get(r, "i")), 7);
    cr_expect_eq(json_number(json_get(r, "x")), 2.5);
    cr_expect(!json_is_int(json_get(r, "x")));
    cr_expect(str_is(json_get(r, "s"), "str"));
    const json_value *a = json_get(r, "a");
    cr_expect_eq(json_type_of(a), JSON_ARRAY);
    cr_expect_eq(json_len(a), 3);
    cr_expect_eq(json_int(json_at(a, 0)), 1);
    cr_expect(str_is(json_at(a, 1), "two"));
    cr_expect_eq(json_int(json_at(json_at(a, 2), 0)), 3);
    cr_expect_null(json_at(a, 3));
    cr_expect_eq(json_type_of(json_get(json_get(r, "o"), "k")), JSON_OBJECT);
    cr_expect_eq(json_len(json_get(json_get(r, "o"), "k")), 0);
    cr_expect_eq(json_len(json_get(r, "e")), 0);
    cr_expect_null(json_get(r, "missing"));
    /* iteration by index sees keys in document order */
    size_t kl;
    cr_expect_str_eq(json_key_at(r, 0, &kl), "n");
    cr_expect_eq(kl, 1);
    cr_expect_str_eq(json_key_at(r, 8, NULL), "e");
    cr_expect_null(json_key_at(r, 9, NULL));
    cr_expect_eq(json_len(json_at(r, 6)), 3); /* member 6 is "a" */
    json_doc_free(d);
}

Test(json_valid, wrong_types_give_neutral_answers)
{
    json_doc *d = ok("[\"s\", 1.9, -1.9, 1e300, -1e300, {\"a\": 1}]");
    const json_value *r = json_root(d);
    cr_expect_null(json_get(r, "a"));          /* array is not an object */
    cr_expect_null(json_at(json_at(r, 0), 0)); /* string is not a container */
    cr_expect_null(json_string(json_at(r, 1), NULL));
    cr_expect_eq(json_number(json_at(r, 0)), 0.0);
    cr_expect_eq(json_int(json_at(r, 0)), 0);
    cr_expect_eq(json_int(json_at(r, 1)), 1);
    cr_expect_eq(json_int(json_at(r, 2)), -1);
    cr_expect_eq(json_int(json_at(r, 3)), INT64_MAX);
    cr_expect_eq(json_int(json_at(r, 4)), INT64_MIN);
    cr_expect_null(json_key_at(r, 0, NULL));
    cr_expect_eq(json_len(json_at(r, 1)), 0);
    /* NULL everywhere */
    cr_expect_eq(json_type_of(NULL), JSON_NULL);
    cr_expect_eq(json_len(NULL), 0);
    cr_expect_null(json_at(NULL, 0));
    cr_expect_null(json_get(NULL, "a"));
    cr_expect_null(json_get(json_at(r, 5), NULL));
    cr_expect_null(json_string(NULL, NULL));
    cr_expect_eq(json_int(json_get(json_at(json_at(r, 9), 0), "x")), 0);
    cr_expect_null(json_root(NULL));
    json_doc_free(NULL);
    json_doc_free(d);
}

Test(json_valid, nesting)
{
    json_doc *d = ok("{\"a\":{\"b\":[1,{\"c\":[[[null]]]}]}}");
    const json_value *c = json_get(json_at(json_get(json_get(json_root(d), "a"), "b"), 1), "c");
    cr_expect_eq(json_type_of(json_at(json_at(json_at(c, 0), 0), 0)), JSON_NULL);
    cr_expect_not_null(json_at(json_at(json_at(c, 0), 0), 0));
    json_doc_free(d);
}

/* Exactly JSON_MAX_DEPTH nested containers parse; one more does not. */
static char *nested(int depth, char open, char close)
{
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = open;
        s[depth * 2 - 1 - i] = close;
    }
    s[depth * 2] = '\0';
    return s;
}

Test(json_valid, depth_limit_reached_exactly)
{
    char *s = nested(JSON_MAX_DEPTH, '[', ']');
    json_doc *d = ok(s);
    const json_value *v = json_root(d);
    int depth = 0;
    while (json_type_of(v) == JSON_ARRAY) {
        depth++;
        v = json_at(v, 0);
    }
    cr_expect_eq(depth, JSON_MAX_DEPTH);
    json_doc_free(d);
    free(s);
}

Test(json_valid, escapes)
{
    json_doc *d = ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    cr_expect(str_is(json_root(d), "\"\\/\b\f\n\r\t"));
    json_doc_free(d);
    d = ok("[\"\\u0041\\u00e9\\u20AC\", \"a\\u0000b\", \"\\uD834\\uDD1E\", \"\\uffff\"]");
    const json_value *r = json_root(d);
    cr_expect(str_is(json_at(r, 0), "A\xC3\xA9\xE2\x82\xAC"));
    size_t n;
    const char *s = json_string(json_at(r, 1), &n);
    cr_expect_eq(n, 3);
    cr_expect(memcmp(s, "a\0b", 4) == 0); /* NUL inside, NUL-terminated */
    cr_expect(str_is(json_at(r, 2), "\xF0\x9D\x84\x9E")); /* U+1D11E */
    cr_expect(str_is(json_at(r, 3), "\xEF\xBF\xBF"));
    json_doc_free(d);
}

Test(json_valid, surrogate_pair_limits)
{
    /* U+10000 and U+10FFFF, the ends of the supplementary range */
    json_doc *d = ok("[\"\\ud800\\udc00\", \"\\uDBFF\\uDFFF\"]");
    cr_expect(str_is(json_at(json_root(d), 0), "\xF0\x90\x80\x80"));
    cr_expect(str_is(json_at(json_root(d), 1), "\xF4\x8F\xBF\xBF"));
    json_doc_free(d);
}

Test(json_valid, raw_utf8)
{
    json_doc *d = ok("{\"Dvo\xC5\x99\xC3\xA1k\": \"\xE2\x82\xAC \xF0\x9F\x8E\xB9 \xED\x9F\xBF \xEE\x80\x80\"}");
    cr_expect(str_is(json_get(json_root(d), "Dvo\xC5\x99\xC3\xA1k"),
                     "\xE2\x82\xAC \xF0\x9F\x8E\xB9 \xED\x9F\xBF \xEE\x80\x80"));
    json_doc_free(d);
}

Test(json_valid, byte_order_mark_skipped)
{
    json_doc *d = ok("\xEF\xBB\xBF[1]");
    cr_expect_eq(json_int(json_at(json_root(d), 0)), 1);
    json_doc_free(d);
}

Test(json_valid, not_nul_terminated)
{
    /* only the first len bytes count */
    json_doc *d = ok_len("[1,2]xyz", 5);
    cr_expect_eq(json_len(json_root(d)), 2);
    json_doc_free(d);
    d = ok_len("12345", 2);
    cr_expect_eq(json_int(json_root(d)), 12);
    json_doc_free(d);
    d = ok_len("truex", 4);
    cr_expect_eq(json_type_of(json_root(d)), JSON_TRUE);
    json_doc_free(d);
}

Test(json_valid, big_integers)
{
    json_doc *d = ok("[9007199254740993, 9223372036854775807, -9223372036854775808,"
                     " 9223372036854775808, -9223372036854775809, -0, 0,"
                     " 18446744073709551616, 100000000000000000000000000000]");
    const json_value *r = json_root(d);
    cr_expect(json_is_int(json_at(r, 0)));
    cr_expect_eq(json_int(json_at(r, 0)), INT64_C(9007199254740993));
    cr_expect_eq(json_number(json_at(r, 0)), 9007199254740992.0); /* nearest double */
    cr_expect(json_is_int(json_at(r, 1)));
    cr_expect_eq(json_int(json_at(r, 1)), INT64_MAX);
    cr_expect(json_is_int(json_at(r, 2)));
    cr_expect_eq(json_int(json_at(r, 2)), INT64_MIN);
    cr_expect(!json_is_int(json_at(r, 3)));
    cr_expect_eq(json_number(json_at(r, 3)), 9223372036854775808.0);
    cr_expect_eq(json_int(json_at(r, 3)), INT64_MAX); /* clamped */
    cr_expect(!json_is_int(json_at(r, 4)));
    cr_expect_eq(json_int(json_at(r, 4)), INT64_MIN);
    cr_expect(json_is_int(json_at(r, 5)));
    cr_expect_eq(json_int(json_at(r, 5)), 0);
    cr_expect(signbit(json_number(json_at(r, 5))));
    cr_expect(!signbit(json_number(json_at(r, 6))));
    cr_expect_eq(json_number(json_at(r, 7)), 18446744073709551616.0);
    cr_expect_eq(json_number(json_at(r, 8)), 1e29);
    json_doc_free(d);
}

Test(json_valid, doubles_correctly_rounded)
{
    static const char *text =
        "[0.1, 0.30000000000000004, 1.5, -2.25e-3, 1E3, 1e+2, 12.5e-1, 0.0, -0.0,"
        " 1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, 4.9406564584124654e-324,"
        " 1e400, -1e400, 1e-400, 123456789012345678901234567890,"
        " 0.1000000000000000055511151231257827021181583404541015625,"
        " 2.4703282292062328e-324, 9007199254740993.0, 1e23, 8.41e21, 1.1, 0.85, 0.000123]";
    static const double want[] = {
        0.1, 0.30000000000000004, 1.5, -2.25e-3, 1e3, 1e2, 1.25, 0.0, -0.0,
        1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, 5e-324,
        INFINITY, -INFINITY, 0.0, 1.2345678901234568e29,
        0.1, 5e-324, 9007199254740992.0, 1e23, 8.41e21, 1.1, 0.85, 0.000123};
    json_doc *d = ok(text);
    const json_value *r = json_root(d);
    cr_assert_eq(json_len(r), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < json_len(r); i++) {
        double got = json_number(json_at(r, i));
        cr_expect(memcmp(&got, &want[i], sizeof got) == 0, "element %zu: %.17g != %.17g", i,
                  got, want[i]);
        cr_expect(!json_is_int(json_at(r, i)) || i == 16, "element %zu is not an integer", i);
    }
    json_doc_free(d);
}

/* Literals longer than the converter's stack buffer. */
Test(json_valid, long_number_literals)
{
    char text[512];
    memset(text, '0', sizeof text);
    text[0] = '1';
    json_doc *d = ok_len(text, 300); /* 1e299, too long for int64 */
    cr_expect(!json_is_int(json_root(d)));
    cr_expect_eq(json_number(json_root(d)), 1e299);
    json_doc_free(d);
    memcpy(text, "-0.", 3);
    text[299] = '7';
    d = ok_len(text, 300); /* -7e-297 */
    cr_expect_eq(json_number(json_root(d)), -7e-297);
    json_doc_free(d);
}

Test(json_valid, duplicate_keys_last_wins)
{
    json_doc *d = ok("{\"a\": 1, \"b\": 2, \"a\": 3}");
    cr_expect_eq(json_len(json_root(d)), 3);
    cr_expect_eq(json_int(json_get(json_root(d), "a")), 3);
    json_doc_free(d);
    /* the same with an indexed (large) object */
    d = ok("{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"a\":6,\"f\":7,\"g\":8,\"h\":9,\"i\":10,\"a\":11}");
    cr_expect_eq(json_int(json_get(json_root(d), "a")), 11);
    cr_expect_eq(json_int(json_get(json_root(d), "i")), 10);
    cr_expect_null(json_get(json_root(d), "z"));
    cr_expect_null(json_get(json_root(d), ""));
    json_doc_free(d);
}

Test(json_valid, keys_with_nul_and_prefixes)
{
    json_doc *d = ok("{\"k\\u0000x\": 1, \"k\": 2, \"\": 3, \"kk\": 4}");
    const json_value *r = json_root(d);
    cr_expect_eq(json_int(json_getn(r, "k\0x", 3)), 1);
    cr_expect_eq(json_int(json_get(r, "k")), 2);
    cr_expect_eq(json_int(json_get(r, "")), 3);
    cr_expect_eq(json_int(json_get(r, "kk")), 4);
    cr_expect_null(json_getn(r, "k\0", 2));
    size_t kl;
    const char *k = json_key_at(r, 0, &kl);
    cr_expect_eq(kl, 3);
    cr_expect(memcmp(k, "k\0x", 4) == 0);
    json_doc_free(d);
}

/* A large object: every key is found (through the sorted index) and the
   parse stays linear; keys that sort around each other must not mix up. */
Test(json_valid, large_object_lookup)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 32 + 16, len = 0;
    char *text = malloc(cap);
    text[len++] = '{';
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"%d\":%d", i ? "," : "", i, -i);
    text[len++] = '}';
    json_doc *d = ok_len(text, len);
    free(text);
    const json_value *r = json_root(d);
    cr_assert_eq(json_len(r), N);
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        const json_value *v = json_get(r, key);
        cr_assert_not_null(v, "key %s", key);
        cr_assert_eq(json_int(v), -i);
    }
    cr_expect_null(json_get(r, "-1"));
    cr_expect_null(json_get(r, "20000"));
    cr_expect_null(json_get(r, "0 "));
    json_doc_free(d);
}

Test(json_valid, large_array)
{
    enum { N = 200000 };
    size_t cap = (size_t)N * 16 + 16, len = 0;
    char *text = malloc(cap);
    text[len++] = '[';
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s[%d,\"x\"]", i ? "," : "", i);
    text[len++] = ']';
    json_doc *d = ok_len(text, len);
    free(text);
    const json_value *r = json_root(d);
    cr_assert_eq(json_len(r), N);
    for (int i = 0; i < N; i += 997)
        cr_assert_eq(json_int(json_at(json_at(r, (size_t)i), 0)), i);
    json_doc_free(d);
}

/* ---------------------------------------------------------------------- */
/* errors                                                                 */
/* ---------------------------------------------------------------------- */

Test(json_errors, empty_and_blank)
{
    bad("", "line 1, column 1: unexpected end of input, expected a JSON value");
    bad("  \n ", "line 2, column 2: unexpected end of input");
    bad("\xEF\xBB\xBF", "unexpected end of input");
}

Test(json_errors, trailing_commas)
{
    bad("[1,2,]", "line 1, column 5: trailing comma in array");
    bad("{\"a\":1,}", "line 1, column 7: trailing comma in object");
    bad("[\n  1,\n  ]", "line 2, column 4: trailing comma in array");
    bad("[,1]", "line 1, column 2: unexpected ',', expected a JSON value");
    bad("{,}", "expected a string key");
}

Test(json_errors, unterminated_strings)
{
    bad("\"abc", "line 1, column 1: unterminated string starting here");
    bad("[\"abc\\\"]", "line 1, column 2: unterminated string");
    bad("\"abc\\", "unterminated string");
    bad_len("\"ab\"", 3, "unterminated string"); /* the quote lies past len */
}

Test(json_errors, bad_escapes)
{
    bad("\"a\\x\"", "line 1, column 3: invalid escape: backslash followed by 'x'");
    bad("\"\\U0041\"", "invalid escape");
    bad("\"\\'\"", "invalid escape");
    bad("\"\\u12G4\"", "\\u must be followed by 4 hex digits");
    bad("\"\\u12\"", "\\u must be followed by 4 hex digits");
    bad_len("\"\\\0\"", 4, "invalid escape: backslash followed by byte 0x00");
}

/* Decision: lone surrogates have no UTF-8 form, so they are errors (Python
   would build a str that cannot be encoded). */
Test(json_errors, lone_surrogates)
{
    bad("\"\\ud800\"", "line 1, column 2: lone high surrogate \\uD800");
    bad("\"\\uDBFF x\"", "lone high surrogate \\uDBFF");
    bad("\"\\ud800\\u0041\"", "lone high surrogate");
    bad("\"\\ud800\\ud800\"", "lone high surrogate");
    bad("\"\\ud800\\n\"", "lone high surrogate");
    bad("\"\\udc00\"", "lone low surrogate \\uDC00");
    bad("\"ok \\uDFFF\"", "line 1, column 5: lone low surrogate");
}

Test(json_errors, numbers)
{
    bad("01", "line 1, column 1: leading zero in number");
    bad("-01", "line 1, column 2: leading zero in number");
    bad("[00]", "leading zero");
    bad("-", "expected a digit after '-', found end of input");
    bad("-a", "expected a digit after '-', found 'a'");
    bad("1.", "line 1, column 3: expected a digit after '.'");
    bad("1.e5", "expected a digit after '.'");
    bad("1e", "expected a digit in the exponent");
    bad("1e+", "expected a digit in the exponent");
    bad(".5", "unexpected '.', expected a JSON value");
    bad("+1", "unexpected '+'");
    bad("0x10", "line 1, column 2: unexpected data after the JSON value");
    bad("1_000", "unexpected data after the JSON value");
}

Test(json_errors, nan_and_infinity)
{
    bad("NaN", "NaN and Infinity are not JSON");
    bad("[Infinity]", "line 1, column 2: NaN and Infinity are not JSON");
    bad("-Infinity", "expected a digit after '-', found 'I'");
}

Test(json_errors, depth_limit)
{
    char *s = nested(JSON_MAX_DEPTH + 1, '[', ']');
    bad(s, "line 1, column 513: nesting deeper than 512 levels");
    free(s);
    s = nested(100000, '[', ']'); /* fails before it could be a problem */
    bad(s, "nesting deeper than 512 levels");
    free(s);
    /* depth counts arrays and objects together */
    size_t len = 0;
    char *mix = malloc(JSON_MAX_DEPTH * 6 + 8);
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) {
        memcpy(mix + len, i % 2 ? "[" : "{\"a\":", i % 2 ? 1 : 5);
        len += i % 2 ? 1 : 5;
    }
    bad_len(mix, len, "nesting deeper than 512 levels");
    free(mix);
}

Test(json_errors, trailing_garbage)
{
    bad("[1] x", "line 1, column 5: unexpected data after the JSON value");
    bad("1 2", "line 1, column 3: unexpected data");
    bad("{} {}", "unexpected data");
    bad("\"a\"\"b\"", "unexpected data");
    bad_len("[1]\0", 4, "unexpected data");
}

Test(json_errors, truncated)
{
    bad("[1,2", "line 1, column 5: unexpected end of input, expected ',' or ']' in array");
    bad("[1,", "unexpected end of input, expected a JSON value");
    bad("{\"a\":", "unexpected end of input, expected a JSON value");
    bad("{\"a\"", "unexpected end of input, expected ':' after an object key");
    bad("{\"a\":1", "expected ',' or '}' in object");
    bad("{", "unexpected end of input, expected a string key");
    bad("tru", "invalid literal (expected 'true')");
    bad("nul", "invalid literal (expected 'null')");
    bad("fals", "invalid literal (expected 'false')");
    bad("[true", "expected ',' or ']'");
    bad("1e", "exponent");
}

/* Decision: input must be UTF-8 (RFC 8259 section 8.1); any invalid
   sequence is an error, inside or outside strings. */
Test(json_errors, invalid_utf8)
{
    bad("\"\xFF\"", "line 1, column 2: invalid UTF-8 byte 0xFF in string");
    bad("\"a\xC0\xAF\"", "invalid UTF-8 byte 0xC0"); /* overlong '/' */
    bad("\"\xE0\x80\xAF\"", "invalid UTF-8 byte 0xE0"); /* overlong 3-byte */
    bad("\"\xF0\x80\x80\xAF\"", "invalid UTF-8 byte 0xF0"); /* overlong 4-byte */
    bad("\"\xED\xA0\x80\"", "invalid UTF-8 byte 0xED"); /* encoded surrogate */
    bad("\"\xF4\x90\x80\x80\"", "invalid UTF-8 byte 0xF4"); /* above U+10FFFF */
    bad("\"\xF5\x80\x80\x80\"", "invalid UTF-8 byte 0xF5");
    bad("\"\xE2\x82\"", "invalid UTF-8 byte 0xE2"); /* truncated sequence */
    bad("\"\xE2\x82\x28\"", "invalid UTF-8 byte 0xE2"); /* bad third byte */
    bad("\"\xF0\x9F\x8E\x28\"", "invalid UTF-8 byte 0xF0"); /* bad fourth byte */
    bad("\"\x80\"", "invalid UTF-8 byte 0x80"); /* stray continuation */
    bad("\"\xC3\"", "invalid UTF-8 byte 0xC3");
    bad("\xC3\xA9", "unexpected byte 0xC3, expected a JSON value");
    bad("[1]\xC3\xA9", "unexpected data after the JSON value");
    /* columns count characters, not bytes */
    bad("[\"\xC3\xA9\xE2\x82\xAC\", x]", "line 1, column 8: unexpected 'x'");
}

Test(json_errors, control_characters_in_strings)
{
    bad("\"a\tb\"", "line 1, column 3: control character U+0009 in string (must be escaped)");
    bad("\"a\nb\"", "control character U+000A");
    bad_len("\"\0\"", 3, "control character U+0000");
    bad("\"\x1F\"", "control character U+001F");
}

Test(json_errors, structure)
{
    bad("[1 2]", "line 1, column 4: unexpected '2', expected ',' or ']' in array");
    bad("{\"a\" 1}", "unexpected '1', expected ':' after an object key");
    bad("{\"a\":1 \"b\":2}", "expected ',' or '}' in object");
    bad("{1:2}", "line 1, column 2: unexpected '1', expected a string key");
    bad("{'a':1}", "expected a string key");
    bad("['a']", "unexpected '''");
    bad("[1]]", "unexpected data");
    bad("]", "unexpected ']'");
    bad("// c\n1", "unexpected '/'");
    bad("[1,/*c*/2]", "unexpected '/'");
    bad("True", "unexpected 'T'");
    bad("\x0B" "1", "unexpected byte 0x0B"); /* vertical tab is not JSON space */
    bad("[1,\xC2\xA0" "2]", "unexpected byte 0xC2"); /* nor is NBSP */
}

Test(json_errors, arguments_and_small_buffers)
{
    json_doc *d = NULL;
    cr_expect_eq(json_parse("1", 1, NULL, NULL, 0), ARIA_ERR_ARG);
    cr_expect_eq(json_parse(NULL, 3, &d, NULL, 0), ARIA_ERR_ARG);
    cr_expect_eq(json_parse(NULL, 0, &d, NULL, 0), ARIA_ERR_FORMAT); /* empty */
    cr_expect_null(d);
    cr_expect_eq(json_parse("[1,]", 4, &d, NULL, 0), ARIA_ERR_FORMAT);
    char tiny[8];
    cr_expect_eq(json_parse("[1,]", 4, &d, tiny, sizeof tiny), ARIA_ERR_FORMAT);
    cr_expect_str_eq(tiny, "line 1,");
    char one[1] = {'x'};
    cr_expect_eq(json_parse("[1,]", 4, &d, one, sizeof one), ARIA_ERR_FORMAT);
    cr_expect_eq(one[0], '\0');
    char err[64] = "stale";
    cr_expect_eq(json_parse("[]", 2, &d, err, sizeof err), ARIA_OK);
    cr_expect_str_eq(err, "");
    json_doc_free(d);
}

/* ---------------------------------------------------------------------- */
/* files                                                                  */
/* ---------------------------------------------------------------------- */

static int token_is(const json_value *t, const char *a, const char *b, int64_t c1, int64_t c2)
{
    /* ["a", b-or-c1, c2] shapes of tokens.json; pass NULL/-1 to skip */
    if (json_type_of(t) != JSON_ARRAY || !str_is(json_at(t, 0), a))
        return 0;
    if (b && !str_is(json_at(t, 1), b))
        return 0;
    if (!b && json_int(json_at(t, 1)) != c1)
        return 0;
    return c2 < 0 || json_int(json_at(t, 2)) == c2;
}

Test(json_file, tokens_json)
{
    json_doc *d = NULL;
    char err[256];
    cr_assert_eq(json_parse_file(DATA_DIR "tokens.json", &d, err, sizeof err), ARIA_OK, "%s", err);
    const json_value *r = json_root(d);
    cr_assert_eq(json_type_of(r), JSON_ARRAY);
    cr_expect_eq(json_len(r), 166);
    cr_expect(token_is(json_at(r, 0), "prefix", "instrument", 0, -1));
    cr_expect(str_is(json_at(json_at(r, 0), 2), "strings"));
    cr_expect(str_is(json_at(r, 3), "<S>"));
    cr_expect(token_is(json_at(r, 4), "piano", NULL, 48, 120));
    cr_expect(token_is(json_at(r, 5), "onset", NULL, 0, -1));
    cr_expect(token_is(json_at(r, 6), "dur", NULL, 2000, -1));
    cr_expect(str_is(json_at(r, 13), "<T>"));
    cr_expect(token_is(json_at(r, 163), "drum", NULL, 45, -1));
    cr_expect(token_is(json_at(r, 164), "onset", NULL, 500, -1));
    cr_expect(str_is(json_at(r, 165), "<E>"));
    json_doc_free(d);
}

Test(json_file, mididict_json)
{
    json_doc *d = NULL;
    char err[256];
    cr_assert_eq(json_parse_file(DATA_DIR "mididict.json", &d, err, sizeof err), ARIA_OK, "%s", err);
    const json_value *r = json_root(d);
    cr_expect_eq(json_len(r), 7);
    cr_expect_eq(json_int(json_get(r, "ticks_per_beat")), 480);
    cr_expect_eq(json_type_of(json_get(r, "metadata")), JSON_OBJECT);
    cr_expect_eq(json_len(json_get(r, "metadata")), 0);
    cr_expect_eq(json_len(json_get(r, "meta_msgs")), 0);
    const json_value *tempo = json_at(json_get(r, "tempo_msgs"), 0);
    cr_expect(str_is(json_get(tempo, "type"), "tempo"));
    cr_expect_eq(json_int(json_get(tempo, "data")), 500000);
    const json_value *ped = json_at(json_get(r, "pedal_msgs"), 1);
    cr_expect_eq(json_int(json_get(ped, "tick")), 28800);
    cr_expect_eq(json_int(json_get(ped, "value")), 0);
    cr_expect_eq(json_int(json_get(json_at(json_get(r, "instrument_msgs"), 1), "data")), 40);
    const json_value *notes = json_get(r, "note_msgs");
    cr_expect_eq(json_len(notes), 54);
    const json_value *last = json_at(notes, 53);
    cr_expect_eq(json_int(json_get(last, "channel")), 9);
    cr_expect_eq(json_int(json_get(json_get(last, "data"), "pitch")), 45);
    cr_expect_eq(json_int(json_get(json_get(last, "data"), "start")), 34080);
    cr_expect_eq(json_int(json_get(json_get(last, "data"), "end")), 34140);
    cr_expect_eq(json_int(json_get(json_get(last, "data"), "velocity")), 127);
    json_doc_free(d);
}

Test(json_file, missing_file)
{
    json_doc *d = (json_doc *)1;
    char err[256];
    cr_expect_eq(json_parse_file(DATA_DIR "no-such-file.json", &d, err, sizeof err), ARIA_ERR_IO);
    cr_expect_null(d);
    cr_expect(strstr(err, "no-such-file.json: cannot open") != NULL, "%s", err);
    cr_expect_eq(json_parse_file(NULL, &d, err, sizeof err), ARIA_ERR_ARG);
}

Test(json_file, error_names_the_file)
{
    char path[] = "/tmp/aria_json_test_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "{\n\"a\": [1,]}", 12), 12);
    close(fd);
    json_doc *d = NULL;
    char err[512], want[600];
    cr_expect_eq(json_parse_file(path, &d, err, sizeof err), ARIA_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: line 2, column 8: trailing comma in array", path);
    cr_expect_str_eq(err, want);
    unlink(path);
}

/* Optional: every JSON file of the shared reference vectors parses, and
   vocab.json has the 17727 ids of the released checkpoints. Skipped in a
   checkout without ../shared; with ../shared present a missing file fails
   (the folder moved). */
Test(json_file, shared_vectors_optional)
{
    static const char *dir = "../shared/vectors/tokenizer/";
    static const char *names[] = {"vocab.json", "quant_tables.json", "summary.json",
                                  "arabesque/tokens.json", "arabesque/mididict.json",
                                  "arabesque/aug_tokens.json", "arabesque/ids.json"};
    char path[512], err[512];
    struct stat st;
    if (stat("../shared", &st) != 0 || !S_ISDIR(st.st_mode))
        cr_skip_test("../shared is absent; %s not read", dir);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_doc *d = NULL;
        snprintf(path, sizeof path, "%s%s", dir, names[i]);
        cr_expect_eq(json_parse_file(path, &d, err, sizeof err), ARIA_OK, "%s", err);
        if (i == 0) {
            const json_value *r = json_root(d);
            cr_expect_eq(json_len(r), 17727);
            cr_expect(str_is(json_get(r, "0"), "<S>"));
            cr_expect(str_is(json_get(r, "17726"), "('onset', 4990)"));
        }
        json_doc_free(d);
    }
}

/* ---------------------------------------------------------------------- */
/* writing                                                                */
/* ---------------------------------------------------------------------- */

/* All ASCII bytes 0..127 followed by U+00E9 U+20AC U+1D11E, and what
   python3 -c 'import json; print(json.dumps("".join(chr(i) for i in range(128)) + "é€𝄞", ensure_ascii=False), end="")'
   prints for it. */
static const char escape_in_tail[] = "\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9E";
static const char escape_want[] =
    "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e"
    "\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a"
    "\\u001b\\u001c\\u001d\\u001e\\u001f !\\\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMN"
    "OPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\x7f"
    "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\"";

static size_t escape_input(char *in)
{
    for (int i = 0; i < 128; i++)
        in[i] = (char)i;
    memcpy(in + 128, escape_in_tail, sizeof escape_in_tail - 1);
    return 128 + sizeof escape_in_tail - 1;
}

Test(json_write, escape_matches_python)
{
    char in[160], out[1024];
    size_t n = escape_input(in);
    size_t got = json_escape_string(out, sizeof out, in, n);
    cr_expect_eq(got, sizeof escape_want - 1);
    cr_expect_str_eq(out, escape_want);
}

Test(json_write, write_string_matches_python)
{
    char in[160], out[1024];
    size_t n = escape_input(in);
    FILE *f = tmpfile();
    cr_assert(f);
    json_write_string(f, in, n);
    long len = ftell(f);
    rewind(f);
    size_t r = fread(out, 1, sizeof out - 1, f);
    out[r] = '\0';
    fclose(f);
    cr_expect_eq((size_t)len, sizeof escape_want - 1);
    cr_expect_str_eq(out, escape_want);
}

Test(json_write, escape_truncates_like_snprintf)
{
    char buf[6];
    cr_expect_eq(json_escape_string(buf, sizeof buf, "a\nbc", 4), 7); /* "a\nbc" */
    cr_expect_str_eq(buf, "\"a\\nb");
    cr_expect_eq(json_escape_string(NULL, 0, "x", 1), 3);
    char one[1] = {'z'};
    cr_expect_eq(json_escape_string(one, 1, "", 0), 2);
    cr_expect_eq(one[0], '\0');
    char empty[4];
    cr_expect_eq(json_escape_string(empty, sizeof empty, "", 0), 2);
    cr_expect_str_eq(empty, "\"\"");
}

/* Escaping then parsing gives back the bytes, NUL included. */
Test(json_write, round_trip)
{
    char in[160], out[1024];
    size_t n = escape_input(in);
    size_t len = json_escape_string(out, sizeof out, in, n);
    json_doc *d = ok_len(out, len);
    size_t back_len;
    const char *back = json_string(json_root(d), &back_len);
    cr_expect_eq(back_len, n);
    cr_expect(memcmp(back, in, n) == 0);
    json_doc_free(d);
}

/* A backslash as the last byte must not let the closing-quote scan step
   past the end of the input. */
Test(json_errors, backslash_at_end_of_input)
{
    bad_len("\"\\", 2, "unterminated string");
    bad_len("[\"\\\"", 4, "unterminated string");
}
