/*
 * json.h - internal, strict JSON (RFC 8259) reader and a string writer
 * helper, used by the tests and the CLI to read the reference vectors
 * (tokens.json, ids.json, mididict.json, vocab.json ...) and to write JSON.
 *
 * The reader builds a read-only tree owned by one json_doc; every pointer
 * handed out lives until json_doc_free(). Accessors accept NULL and values
 * of the wrong type and then return a neutral answer (0, NULL, JSON_NULL),
 * so lookups can be chained: json_int(json_at(json_get(o, "notes"), 3)).
 *
 * Accepted input (strict RFC 8259):
 *   - UTF-8 only; invalid UTF-8 (overlong forms, encoded surrogates, code
 *     points above U+10FFFF, stray continuation bytes) is an error. One
 *     leading UTF-8 byte-order mark is skipped, as Python's json.loads does
 *     for bytes.
 *   - \uXXXX escapes are decoded to UTF-8; a surrogate pair becomes one
 *     code point; a lone surrogate (high without low, or a low one alone)
 *     is an error, because it has no UTF-8 form.
 *   - NaN, Infinity, leading zeros, '+' signs, trailing commas, comments,
 *     single quotes, unescaped control characters are errors.
 *   - Number literals too large for a double become +-inf (as in Python).
 *   - Duplicate object keys are kept; json_get returns the last one (as
 *     Python's dict does), iteration by index sees all of them.
 *   - Nesting is limited to JSON_MAX_DEPTH arrays/objects.
 * Errors read "line L, column C: what is wrong" (1-based; the column
 * counts characters, as Python's json module does).
 */
#ifndef ARIA_JSON_H
#define ARIA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "aria.h"

#define JSON_MAX_DEPTH 512

typedef enum {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;
typedef struct json_doc json_doc;

/* Parses text[0..len) (need not be NUL-terminated; never read past len).
   On success *out owns the tree and ARIA_OK is returned; otherwise *out is
   NULL, the result is ARIA_ERR_FORMAT (or ARIA_ERR_NOMEM / ARIA_ERR_ARG)
   and the message goes to err[0..errcap) when err is not NULL. */
int json_parse(const char *text, size_t len, json_doc **out, char *err, size_t errcap);
/* Reads and parses a whole file; messages are prefixed with "path: ".
   ARIA_ERR_IO when the file cannot be read. */
int json_parse_file(const char *path, json_doc **out, char *err, size_t errcap);
void json_doc_free(json_doc *doc); /* NULL is fine */
const json_value *json_root(const json_doc *doc);

/* JSON_NULL also for a NULL pointer: test `v != NULL` for "present". */
json_type json_type_of(const json_value *v);
/* Members of an array or object, bytes of a string, 0 otherwise. */
size_t json_len(const json_value *v);
/* Element i of an array, or the value of member i of an object; NULL when
   out of range or not a container. */
const json_value *json_at(const json_value *v, size_t i);
/* Value of member `key` (NUL-terminated / `keylen` bytes); NULL when absent
   or not an object. O(log n) for big objects. */
const json_value *json_get(const json_value *obj, const char *key);
const json_value *json_getn(const json_value *obj, const char *key, size_t keylen);
/* Key of member i (NUL-terminated, may contain NUL: its byte length goes
   to *len when len is not NULL); NULL when out of range. */
const char *json_key_at(const json_value *obj, size_t i, size_t *len);

/* The value of a number as a double (0.0 for a non-number). */
double json_number(const json_value *v);
/* 1 for an integer literal (no fraction, no exponent) within int64. */
int json_is_int(const json_value *v);
/* The exact integer of an integer literal; other numbers are truncated
   toward zero and clamped to the int64 range (NaN cannot occur); 0 for a
   non-number. */
int64_t json_int(const json_value *v);
/* A string's decoded UTF-8 bytes, NUL-terminated; may contain NUL, so its
   byte length goes to *len when len is not NULL. NULL for a non-string. */
const char *json_string(const json_value *v, size_t *len);
/* 1 for true, 0 for anything else. */
int json_bool(const json_value *v);

/* Writes s[0..n) as a JSON string with its quotes, escaped as Python's
   json.dumps(ensure_ascii=False) does: \" \\ \n \r \t \b \f, other bytes
   below 0x20 as \u00xx; everything else (UTF-8, DEL) is copied as is. */
void json_write_string(FILE *f, const char *s, size_t n);
/* The same into buf (snprintf-style: always NUL-terminated when cap > 0;
   returns the full length the escaped string needs, quotes included). */
size_t json_escape_string(char *buf, size_t cap, const char *s, size_t n);

#endif /* ARIA_JSON_H */
