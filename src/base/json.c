/*
 * json.c - strict RFC 8259 JSON reader producing a read-only tree, plus the
 * string escaper used when writing JSON. See json.h for what is accepted.
 *
 * How it works
 *   - Recursive descent over text[0..len) with an explicit depth limit, so
 *     hostile nesting fails cleanly instead of overflowing the stack. Every
 *     read is bounds-checked against `end`; no NUL terminator is needed.
 *   - Values of a container being parsed wait on a growable "pending"
 *     stack; when the container closes they are copied once, contiguously,
 *     into the document's arena and popped. Each value is therefore copied
 *     a bounded number of times: parsing is linear in the input size.
 *   - Objects store key/value pairs as 2n consecutive nodes. Objects with
 *     more than INDEX_MIN members also get a key-sorted index of pointers
 *     so json_get is O(log n) (vocab.json has 17727 keys); small ones are
 *     scanned from the end so the last duplicate wins, as in Python.
 *   - Strings are first scanned for their closing quote, then decoded and
 *     UTF-8-validated in a second pass into arena memory of the raw size
 *     (escapes only shrink). Strings without escapes or non-ASCII bytes are
 *     copied with memcpy.
 *   - Numbers: integer literals are accumulated exactly into int64; doubles
 *     use the exact fast path (mantissa < 2^53, |power of ten| <= 22, one
 *     correctly rounded IEEE operation) and otherwise strtod on a rewritten
 *     literal without a decimal point, so the C locale's decimal separator
 *     can never change the result.
 *   - All memory belongs to one json_doc (arena blocks in a list); freeing
 *     the document frees everything.
 */
#include "base/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum {
    INDEX_MIN = 8,            /* objects above this size get a sorted index */
    BLOCK_MIN = 4096,         /* first arena block */
    BLOCK_MAX = 1 << 20       /* arena blocks stop doubling here */
};

struct json_value {
    uint8_t type;   /* json_type */
    uint8_t is_int; /* number: integer literal within int64 */
    size_t len;     /* string bytes / array elements / object members */
    union {
        struct {
            double d;
            int64_t i;
        } num;
        const char *str;
        struct {
            json_value *kids;            /* array: len; object: 2*len (key, value) */
            const json_value **index;    /* object: keys sorted, or NULL */
        } c;
    } u;
};

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct json_doc {
    arena_block *blocks;
    json_value root;
};

typedef struct {
    const unsigned char *start, *p, *end;
    json_doc *doc;
    size_t block_size;
    json_value *pend; /* values waiting for their container to close */
    size_t npend, cappend;
    char *err;
    size_t errcap;
    int status;
} parser;

/* ---------------------------------------------------------------------- */
/* errors                                                                 */
/* ---------------------------------------------------------------------- */

/* Records the first error with its line and column (characters since the
   last newline, counting UTF-8 lead bytes only, like Python). */
static void fail_at(parser *ps, const unsigned char *at, int status, const char *fmt, ...)
{
    if (ps->status != ARIA_OK)
        return;
    ps->status = status;
    if (!ps->err || ps->errcap == 0)
        return;
    size_t line = 1, col = 1;
    for (const unsigned char *q = ps->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if ((*q & 0xC0) != 0x80) {
            col++;
        }
    }
    int n = snprintf(ps->err, ps->errcap, "line %zu, column %zu: ", line, col);
    if (n < 0 || (size_t)n >= ps->errcap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errcap - (size_t)n, fmt, ap);
    va_end(ap);
}

static void fail_nomem(parser *ps)
{
    fail_at(ps, ps->p, ARIA_ERR_NOMEM, "out of memory");
}

/* Describes the byte at p for a message: 'x' or byte 0xNN or end of input. */
static const char *describe(const parser *ps, const unsigned char *p, char *buf, size_t cap)
{
    if (p >= ps->end)
        snprintf(buf, cap, "end of input");
    else if (*p >= 0x21 && *p < 0x7F)
        snprintf(buf, cap, "'%c'", *p);
    else
        snprintf(buf, cap, "byte 0x%02X", *p);
    return buf;
}

static void fail_unexpected(parser *ps, const char *expected)
{
    char what[32];
    fail_at(ps, ps->p, ARIA_ERR_FORMAT, "unexpected %s, expected %s", describe(ps, ps->p, what, sizeof what), expected);
}

/* ---------------------------------------------------------------------- */
/* memory                                                                 */
/* ---------------------------------------------------------------------- */

static arena_block *block_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(arena_block))
        return NULL;
    arena_block *b = malloc(sizeof(arena_block) + cap);
    if (b) {
        b->next = NULL;
        b->used = 0;
        b->cap = cap;
    }
    return b;
}

/* Bump allocation. Requests too big for a normal block get a block of
   their own, linked behind the current one so it stays in use. */
static void *arena_alloc(parser *ps, size_t size, size_t align)
{
    arena_block *b = ps->doc->blocks;
    if (b) {
        size_t at = (b->used + align - 1) & ~(align - 1);
        if (at <= b->cap && b->cap - at >= size) {
            b->used = at + size;
            return b->data + at;
        }
    }
    if (size > ps->block_size / 2) {
        arena_block *big = block_new(size);
        if (!big)
            return fail_nomem(ps), NULL;
        big->used = size;
        if (b) {
            big->next = b->next;
            b->next = big;
        } else {
            ps->doc->blocks = big;
        }
        return big->data;
    }
    arena_block *nb = block_new(ps->block_size);
    if (!nb)
        return fail_nomem(ps), NULL;
    if (ps->block_size < BLOCK_MAX)
        ps->block_size *= 2;
    nb->next = b;
    ps->doc->blocks = nb;
    nb->used = size; /* offset 0 is aligned for any request */
    return nb->data;
}

/* Returns a fresh slot on the pending stack (NULL when out of memory). */
static json_value *pend_push(parser *ps)
{
    if (ps->npend == ps->cappend) {
        size_t ncap = ps->cappend ? ps->cappend * 2 : 64;
        if (ncap > SIZE_MAX / sizeof(json_value))
            return fail_nomem(ps), NULL;
        json_value *np = realloc(ps->pend, ncap * sizeof(json_value));
        if (!np)
            return fail_nomem(ps), NULL;
        ps->pend = np;
        ps->cappend = ncap;
    }
    json_value *v = &ps->pend[ps->npend++];
    memset(v, 0, sizeof *v);
    return v;
}

/* Moves pending values [base, npend) into the arena; returns their copy. */
static json_value *pend_pop_to_arena(parser *ps, size_t base)
{
    size_t count = ps->npend - base;
    json_value *kids = NULL;
    if (count > 0) {
        kids = arena_alloc(ps, count * sizeof(json_value), _Alignof(json_value));
        if (!kids)
            return NULL;
        memcpy(kids, ps->pend + base, count * sizeof(json_value));
    }
    ps->npend = base;
    return kids;
}

/* ---------------------------------------------------------------------- */
/* strings                                                                */
/* ---------------------------------------------------------------------- */

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        if (c >= '0' && c <= '9')
            c -= '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            c = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | c;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. The
   ranges are those of RFC 3629 section 4, which exclude overlong forms,
   surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Decodes one escape at p (p[0] == '\\', the string ends at `end`); writes
   UTF-8 at *o and returns the bytes consumed, or 0 after reporting. */
static size_t decode_escape(parser *ps, const unsigned char *p, const unsigned char *end, char **o)
{
    static const char simple_in[] = "\"\\/bfnrt";
    static const char simple_out[] = "\"\\/\b\f\n\r\t";
    if (end - p < 2) /* cannot happen: the scan found a quote after it */
        return fail_at(ps, p, ARIA_ERR_FORMAT, "unterminated escape"), 0;
    const char *hit = p[1] ? strchr(simple_in, p[1]) : NULL;
    if (hit) {
        *(*o)++ = simple_out[hit - simple_in];
        return 2;
    }
    if (p[1] != 'u') {
        char what[32];
        fail_at(ps, p, ARIA_ERR_FORMAT, "invalid escape: backslash followed by %s",
                describe(ps, p + 1, what, sizeof what));
        return 0;
    }
    uint32_t cp, lo;
    if (hex4(p + 2, end, &cp) != 0)
        return fail_at(ps, p, ARIA_ERR_FORMAT, "\\u must be followed by 4 hex digits"), 0;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail_at(ps, p, ARIA_ERR_FORMAT, "lone low surrogate \\u%04X", cp), 0;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, end, &lo) != 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return fail_at(ps, p, ARIA_ERR_FORMAT,
                           "lone high surrogate \\u%04X (no low surrogate follows)", cp), 0;
        *o = put_utf8(*o, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
        return 12;
    }
    *o = put_utf8(*o, cp);
    return 6;
}

/* Decodes and validates the body [p, end) of a string into out; returns the
   decoded length or SIZE_MAX after reporting. */
static size_t decode_string(parser *ps, const unsigned char *p, const unsigned char *end, char *out)
{
    char *o = out;
    while (p < end) {
        unsigned c = *p;
        if (c == '\\') {
            size_t used = decode_escape(ps, p, end, &o);
            if (!used)
                return SIZE_MAX;
            p += used;
        } else if (c < 0x20) {
            fail_at(ps, p, ARIA_ERR_FORMAT,
                    "control character U+%04X in string (must be escaped)", c);
            return SIZE_MAX;
        } else if (c < 0x80) {
            *o++ = (char)c;
            p++;
        } else {
            size_t n = utf8_seq_len(p, end);
            if (!n) {
                fail_at(ps, p, ARIA_ERR_FORMAT, "invalid UTF-8 byte 0x%02X in string", c);
                return SIZE_MAX;
            }
            memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    return (size_t)(o - out);
}

/* Parses the string at ps->p (a '"') into v. */
static int parse_string(parser *ps, json_value *v)
{
    const unsigned char *open = ps->p, *q = open + 1, *end = ps->end;
    int plain = 1; /* no escapes, control or non-ASCII bytes: memcpy it */
    while (q < end && *q != '"') {
        if (*q == '\\') {
            plain = 0;
            if (++q >= end) /* the escaped byte cannot close the string */
                break;
        } else if (*q < 0x20 || *q >= 0x80) {
            plain = 0;
        }
        q++;
    }
    if (q >= end)
        return fail_at(ps, open, ARIA_ERR_FORMAT, "unterminated string starting here"), -1;
    size_t raw = (size_t)(q - open - 1);
    char *s = arena_alloc(ps, raw + 1, 1);
    if (!s)
        return -1;
    size_t n = raw;
    if (plain)
        memcpy(s, open + 1, raw);
    else if ((n = decode_string(ps, open + 1, q, s)) == SIZE_MAX)
        return -1;
    s[n] = '\0';
    v->type = JSON_STRING;
    v->len = n;
    v->u.str = s;
    ps->p = q + 1;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* numbers                                                                */
/* ---------------------------------------------------------------------- */

static int is_digit(const parser *ps, const unsigned char *p)
{
    return p < ps->end && *p >= '0' && *p <= '9';
}

/* The parts of a validated number literal. */
typedef struct {
    const unsigned char *int_begin, *int_end;   /* integer digits */
    const unsigned char *frac_begin, *frac_end; /* fraction digits (may be empty) */
    const unsigned char *exp_begin, *exp_end;   /* exponent digits (may be empty) */
    int neg, exp_neg;
} num_parts;

/* Exponent digits as a value, saturated far beyond any double's range. */
static int64_t exp_value(const num_parts *np)
{
    int64_t e = 0;
    for (const unsigned char *q = np->exp_begin; q < np->exp_end; q++)
        if (e < 1000000000)
            e = e * 10 + (*q - '0');
    return np->exp_neg ? -e : e;
}

/* Exact conversion when the significant digits fit in 2^53 and the power
   of ten is exact in a double: one IEEE multiply/divide rounds correctly. */
static int fast_double(const num_parts *np, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    uint64_t m = 0;
    int digits = 0;
    const unsigned char *parts[2][2] = {{np->int_begin, np->int_end},
                                        {np->frac_begin, np->frac_end}};
    for (int k = 0; k < 2; k++) {
        for (const unsigned char *q = parts[k][0]; q < parts[k][1]; q++) {
            if (m == 0 && *q == '0')
                continue; /* leading zeros are not significant */
            if (++digits > 16)
                return 0;
            m = m * 10 + (uint64_t)(*q - '0');
        }
    }
    if (m > (1ull << 53))
        return 0;
    int64_t e = exp_value(np) - (int64_t)(np->frac_end - np->frac_begin);
    double d = (double)m;
    if (m == 0)
        e = 0;
    if (e < -22 || e > 22)
        return 0;
    d = e < 0 ? d / pow10[-e] : d * pow10[e];
    *out = np->neg ? -d : d;
    return 1;
}

/* General case: strtod on "[-]DIGITSeEXP", where DIGITS are the integer and
   fraction digits together and EXP is adjusted; no locale-dependent '.'. */
static int slow_double(parser *ps, const num_parts *np, double *out)
{
    size_t ni = (size_t)(np->int_end - np->int_begin);
    size_t nf = (size_t)(np->frac_end - np->frac_begin);
    int64_t e = exp_value(np) - (int64_t)nf;
    char small[128];
    size_t need = ni + nf + 32;
    char *buf = need <= sizeof small ? small : malloc(need);
    if (!buf)
        return fail_nomem(ps), -1;
    char *o = buf;
    if (np->neg)
        *o++ = '-';
    memcpy(o, np->int_begin, ni);
    o += ni;
    memcpy(o, np->frac_begin, nf);
    o += nf;
    snprintf(o, 24, "e%lld", (long long)e);
    *out = strtod(buf, NULL); /* overflow gives +-HUGE_VAL = inf, as Python */
    if (buf != small)
        free(buf);
    return 0;
}

/* Exact int64 value of an integer literal; 0 when it does not fit. */
static int exact_int(const num_parts *np, int64_t *out)
{
    uint64_t limit = np->neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t m = 0;
    for (const unsigned char *q = np->int_begin; q < np->int_end; q++) {
        uint64_t dgt = (uint64_t)(*q - '0');
        if (m > (limit - dgt) / 10)
            return 0;
        m = m * 10 + dgt;
    }
    *out = np->neg ? (int64_t)(0u - m) : (int64_t)m;
    return 1;
}

/* Splits the literal at ps->p into parts, checking the RFC grammar
   -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(parser *ps, num_parts *np)
{
    const unsigned char *p = ps->p;
    memset(np, 0, sizeof *np);
    if (*p == '-') {
        np->neg = 1;
        p++;
    }
    if (!is_digit(ps, p)) {
        char what[32];
        return fail_at(ps, p, ARIA_ERR_FORMAT, "expected a digit after '-', found %s",
                       describe(ps, p, what, sizeof what)), -1;
    }
    np->int_begin = p;
    if (*p == '0') {
        p++;
        if (is_digit(ps, p))
            return fail_at(ps, np->int_begin, ARIA_ERR_FORMAT,
                           "leading zero in number"), -1;
    } else {
        while (is_digit(ps, p))
            p++;
    }
    np->int_end = np->frac_begin = np->frac_end = p;
    if (p < ps->end && *p == '.') {
        np->frac_begin = ++p;
        if (!is_digit(ps, p))
            return fail_at(ps, p, ARIA_ERR_FORMAT, "expected a digit after '.'"), -1;
        while (is_digit(ps, p))
            p++;
        np->frac_end = p;
    }
    np->exp_begin = np->exp_end = p;
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-'))
            np->exp_neg = *p++ == '-';
        if (!is_digit(ps, p))
            return fail_at(ps, p, ARIA_ERR_FORMAT, "expected a digit in the exponent"), -1;
        np->exp_begin = p;
        while (is_digit(ps, p))
            p++;
        np->exp_end = p;
    }
    ps->p = p;
    return 0;
}

static int parse_number(parser *ps, json_value *v)
{
    num_parts np;
    if (scan_number(ps, &np) != 0)
        return -1;
    v->type = JSON_NUMBER;
    int integral = np.frac_begin == np.frac_end && np.exp_begin == np.exp_end;
    if (integral && exact_int(&np, &v->u.num.i)) {
        v->is_int = 1;
        int64_t i = v->u.num.i;
        if (i >= -(INT64_C(1) << 53) && i <= (INT64_C(1) << 53)) {
            v->u.num.d = (i == 0 && np.neg) ? -0.0 : (double)i;
            return 0;
        }
    }
    if (fast_double(&np, &v->u.num.d))
        return 0;
    return slow_double(ps, &np, &v->u.num.d);
}

/* ---------------------------------------------------------------------- */
/* values                                                                 */
/* ---------------------------------------------------------------------- */

static void skip_ws(parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static int parse_value(parser *ps, int depth);

static int parse_literal(parser *ps, json_value *v, const char *word, json_type t)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail_at(ps, ps->p, ARIA_ERR_FORMAT, "invalid literal (expected '%s')", word), -1;
    v->type = (uint8_t)t;
    ps->p += n;
    return 0;
}

/* Orders key nodes by bytes, then by position so the last duplicate of a
   key is the last of its run. */
static int key_cmp(const void *pa, const void *pb)
{
    const json_value *a = *(const json_value *const *)pa;
    const json_value *b = *(const json_value *const *)pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->u.str, b->u.str, n);
    if (c == 0)
        c = (a->len > b->len) - (a->len < b->len);
    if (c == 0)
        c = (a > b) - (a < b);
    return c;
}

static int build_index(parser *ps, json_value *obj)
{
    const json_value **idx = arena_alloc(ps, obj->len * sizeof *idx, _Alignof(const json_value *));
    if (!idx)
        return -1;
    for (size_t i = 0; i < obj->len; i++)
        idx[i] = &obj->u.c.kids[2 * i];
    qsort(idx, obj->len, sizeof *idx, key_cmp);
    obj->u.c.index = idx;
    return 0;
}

/* Turns pending values [base, npend) into a container pushed in their place. */
static int close_container(parser *ps, size_t base, json_type t)
{
    size_t count = ps->npend - base;
    json_value *kids = pend_pop_to_arena(ps, base);
    if (count > 0 && !kids)
        return -1;
    json_value *v = pend_push(ps);
    if (!v)
        return -1;
    v->type = (uint8_t)t;
    v->len = t == JSON_OBJECT ? count / 2 : count;
    v->u.c.kids = kids;
    if (t == JSON_OBJECT && v->len > INDEX_MIN)
        return build_index(ps, v);
    return 0;
}

/* After an element: ',' continues, `close` ends; anything else is an error.
   Returns 1 to continue, 0 at the end, -1 on error. */
static int after_member(parser *ps, char close, const char *what)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
        const unsigned char *comma = ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == (unsigned char)close)
            return fail_at(ps, comma, ARIA_ERR_FORMAT, "trailing comma in %s", what), -1;
        return 1;
    }
    if (ps->p < ps->end && *ps->p == (unsigned char)close) {
        ps->p++;
        return 0;
    }
    char expected[40];
    snprintf(expected, sizeof expected, "',' or '%c' in %s", close, what);
    fail_unexpected(ps, expected);
    return -1;
}

static int parse_array(parser *ps, int depth)
{
    size_t base = ps->npend;
    ps->p++; /* '[' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return close_container(ps, base, JSON_ARRAY);
    }
    for (;;) {
        if (parse_value(ps, depth + 1) != 0)
            return -1;
        int more = after_member(ps, ']', "array");
        if (more < 0)
            return -1;
        if (!more)
            return close_container(ps, base, JSON_ARRAY);
    }
}

static int parse_member(parser *ps, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"')
        return fail_unexpected(ps, "a string key"), -1;
    json_value *key = pend_push(ps);
    if (!key || parse_string(ps, key) != 0)
        return -1;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail_unexpected(ps, "':' after an object key"), -1;
    ps->p++;
    return parse_value(ps, depth + 1);
}

static int parse_object(parser *ps, int depth)
{
    size_t base = ps->npend;
    ps->p++; /* '{' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return close_container(ps, base, JSON_OBJECT);
    }
    for (;;) {
        if (parse_member(ps, depth) != 0)
            return -1;
        int more = after_member(ps, '}', "object");
        if (more < 0)
            return -1;
        if (!more)
            return close_container(ps, base, JSON_OBJECT);
    }
}

/* Parses one value (after optional whitespace) and pushes it. `depth` is
   the number of containers around it. */
static int parse_value(parser *ps, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail_unexpected(ps, "a JSON value"), -1;
    unsigned c = *ps->p;
    if (c == '[' || c == '{') {
        if (depth >= JSON_MAX_DEPTH)
            return fail_at(ps, ps->p, ARIA_ERR_FORMAT, "nesting deeper than %d levels",
                           JSON_MAX_DEPTH), -1;
        return c == '[' ? parse_array(ps, depth) : parse_object(ps, depth);
    }
    json_value *v = pend_push(ps);
    if (!v)
        return -1;
    switch (c) {
    case '"':
        return parse_string(ps, v);
    case 't':
        return parse_literal(ps, v, "true", JSON_TRUE);
    case 'f':
        return parse_literal(ps, v, "false", JSON_FALSE);
    case 'n':
        return parse_literal(ps, v, "null", JSON_NULL);
    case 'N':
    case 'I':
        return fail_at(ps, ps->p, ARIA_ERR_FORMAT, "NaN and Infinity are not JSON"), -1;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return parse_number(ps, v);
        return fail_unexpected(ps, "a JSON value"), -1;
    }
}

/* ---------------------------------------------------------------------- */
/* documents                                                              */
/* ---------------------------------------------------------------------- */

void json_doc_free(json_doc *doc)
{
    if (!doc)
        return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

int json_parse(const char *text, size_t len, json_doc **out, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = '\0';
    if (!out || (!text && len))
        return ARIA_ERR_ARG;
    *out = NULL;
    parser ps = {0};
    ps.start = ps.p = (const unsigned char *)(text ? text : "");
    ps.end = ps.start + len;
    ps.err = err;
    ps.errcap = errcap;
    ps.block_size = BLOCK_MIN;
    ps.doc = calloc(1, sizeof *ps.doc);
    if (!ps.doc)
        return fail_nomem(&ps), ps.status;
    if (len >= 3 && memcmp(ps.p, "\xEF\xBB\xBF", 3) == 0)
        ps.p += 3; /* byte-order mark */
    if (parse_value(&ps, 0) == 0) {
        skip_ws(&ps);
        if (ps.p < ps.end)
            fail_at(&ps, ps.p, ARIA_ERR_FORMAT, "unexpected data after the JSON value");
    }
    if (ps.status == ARIA_OK) {
        ps.doc->root = ps.pend[0];
        *out = ps.doc;
    } else {
        json_doc_free(ps.doc);
    }
    free(ps.pend);
    return ps.status;
}

/* Reads a whole stream (works for pipes, which have no size). */
static int read_all(FILE *f, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return ARIA_ERR_NOMEM;
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!nb)
            return free(buf), ARIA_ERR_NOMEM;
        buf = nb;
        cap *= 2;
    }
    if (ferror(f))
        return free(buf), ARIA_ERR_IO;
    *out = buf;
    *len = n;
    return ARIA_OK;
}

int json_parse_file(const char *path, json_doc **out, char *err, size_t errcap)
{
    if (!out || !path)
        return ARIA_ERR_ARG;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errcap)
            snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
        return ARIA_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0;
    int st = read_all(f, &buf, &len);
    fclose(f);
    if (st != ARIA_OK) {
        if (err && errcap)
            snprintf(err, errcap, "%s: %s", path,
                     st == ARIA_ERR_IO ? "read error" : "out of memory");
        return st;
    }
    char msg[400];
    st = json_parse(buf, len, out, msg, sizeof msg);
    free(buf);
    if (st != ARIA_OK && err && errcap)
        snprintf(err, errcap, "%s: %s", path, msg);
    return st;
}

/* ---------------------------------------------------------------------- */
/* accessors                                                              */
/* ---------------------------------------------------------------------- */

const json_value *json_root(const json_doc *doc)
{
    return doc ? &doc->root : NULL;
}

json_type json_type_of(const json_value *v)
{
    return v ? (json_type)v->type : JSON_NULL;
}

size_t json_len(const json_value *v)
{
    if (!v)
        return 0;
    return (v->type == JSON_ARRAY || v->type == JSON_OBJECT || v->type == JSON_STRING) ? v->len : 0;
}

const json_value *json_at(const json_value *v, size_t i)
{
    if (!v || i >= v->len)
        return NULL;
    if (v->type == JSON_ARRAY)
        return &v->u.c.kids[i];
    if (v->type == JSON_OBJECT)
        return &v->u.c.kids[2 * i + 1];
    return NULL;
}

const char *json_key_at(const json_value *obj, size_t i, size_t *len)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->len)
        return NULL;
    const json_value *k = &obj->u.c.kids[2 * i];
    if (len)
        *len = k->len;
    return k->u.str;
}

static int key_equals(const json_value *k, const char *key, size_t keylen)
{
    return k->len == keylen && memcmp(k->u.str, key, keylen) == 0;
}

/* Sign of (key node) - (key, keylen) by bytes then length. */
static int key_order(const json_value *k, const char *key, size_t keylen)
{
    size_t n = k->len < keylen ? k->len : keylen;
    int c = memcmp(k->u.str, key, n);
    return c ? c : (k->len > keylen) - (k->len < keylen);
}

const json_value *json_getn(const json_value *obj, const char *key, size_t keylen)
{
    if (!obj || obj->type != JSON_OBJECT || (!key && keylen))
        return NULL;
    if (!key)
        key = "";
    if (!obj->u.c.index) {
        for (size_t i = obj->len; i-- > 0;)
            if (key_equals(&obj->u.c.kids[2 * i], key, keylen))
                return &obj->u.c.kids[2 * i + 1];
        return NULL;
    }
    /* First index entry ordered after the key; the one before it is the
       last duplicate of the key when present. */
    size_t lo = 0, hi = obj->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_order(obj->u.c.index[mid], key, keylen) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || !key_equals(obj->u.c.index[lo - 1], key, keylen))
        return NULL;
    return obj->u.c.index[lo - 1] + 1; /* the value follows its key */
}

const json_value *json_get(const json_value *obj, const char *key)
{
    return key ? json_getn(obj, key, strlen(key)) : NULL;
}

double json_number(const json_value *v)
{
    return v && v->type == JSON_NUMBER ? v->u.num.d : 0.0;
}

int json_is_int(const json_value *v)
{
    return v && v->type == JSON_NUMBER && v->is_int;
}

int64_t json_int(const json_value *v)
{
    if (!v || v->type != JSON_NUMBER)
        return 0;
    if (v->is_int)
        return v->u.num.i;
    double d = v->u.num.d;
    if (d >= 9223372036854775808.0)
        return INT64_MAX;
    if (d < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

const char *json_string(const json_value *v, size_t *len)
{
    if (!v || v->type != JSON_STRING)
        return NULL;
    if (len)
        *len = v->len;
    return v->u.str;
}

int json_bool(const json_value *v)
{
    return v && v->type == JSON_TRUE;
}

/* ---------------------------------------------------------------------- */
/* writing                                                                */
/* ---------------------------------------------------------------------- */

/* The escape for byte c as Python's json.dumps writes it, into buf (at
   least 7 bytes); returns its length, 0 when c is copied as is. */
static size_t escape_of(unsigned char c, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    const char *two = NULL;
    switch (c) {
    case '"': two = "\\\""; break;
    case '\\': two = "\\\\"; break;
    case '\b': two = "\\b"; break;
    case '\f': two = "\\f"; break;
    case '\n': two = "\\n"; break;
    case '\r': two = "\\r"; break;
    case '\t': two = "\\t"; break;
    default:
        if (c >= 0x20)
            return 0;
        memcpy(buf, "\\u00", 4);
        buf[4] = hex[c >> 4];
        buf[5] = hex[c & 15];
        return 6;
    }
    memcpy(buf, two, 2);
    return 2;
}

void json_write_string(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    char esc[8];
    size_t run = 0; /* start of the bytes not yet written */
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        size_t k = escape_of(p[i], esc);
        if (!k)
            continue;
        fwrite(p + run, 1, i - run, f);
        fwrite(esc, 1, k, f);
        run = i + 1;
    }
    fwrite(p + run, 1, n - run, f);
    fputc('"', f);
}

/* Appends bytes to buf while room remains; the total is counted anyway. */
static void put_bytes(char *buf, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos < cap) {
        size_t room = cap - *pos;
        memcpy(buf + *pos, s, n < room ? n : room);
    }
    *pos += n;
}

size_t json_escape_string(char *buf, size_t cap, const char *s, size_t n)
{
    size_t pos = 0;
    char esc[8];
    /* keep one byte for the terminator */
    size_t room = cap ? cap - 1 : 0;
    put_bytes(buf, room, &pos, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        size_t k = escape_of((unsigned char)s[i], esc);
        if (k)
            put_bytes(buf, room, &pos, esc, k);
        else
            put_bytes(buf, room, &pos, s + i, 1);
    }
    put_bytes(buf, room, &pos, "\"", 1);
    if (cap)
        buf[pos < room ? pos : room] = '\0';
    return pos;
}
