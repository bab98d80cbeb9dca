/*
 * test_tasks.c - the library calls behind the `aria` commands' file
 * handling: the one id-list rule (separators, brackets, errors with their
 * byte offset), the text the tokenize command prints, batch tokenization
 * (one bad file among good ones, order and results independent of the
 * thread count), the tokenizer for a vocabulary, the generation prompt
 * and its "window ends before the first note" flag, token sequences
 * written as MIDI files, .npy bytes, `aria info` statistics and the
 * distributed set-up's reading of a launcher's environment.
 *
 * Every expected value here comes from the reference vectors in
 * tests/data/vectors or from the file formats' definitions, not from
 * running the code under test.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"

#define VOCAB 17727
#define VEC "tests/data/vectors/"
#define BASIC VEC "basic/basic.mid"
#define WALTZ VEC "waltz/waltz.mid"

static int32_t *parse_ok(const char *text, size_t *n) {
    int32_t *ids = NULL;
    aria_error err = {{0}};
    int rc = aria_ids_parse(text, strlen(text), VOCAB, &ids, n, &err);
    cr_assert_eq(rc, ARIA_OK, "'%s': %s", text, err.msg);
    cr_assert_not_null(ids, "'%s': the list is allocated even when empty", text);
    return ids;
}

/* The parse fails with ARIA_ERR_FORMAT and a message holding `want`. */
static void parse_fails(const char *text, const char *want) {
    int32_t *ids = (int32_t *)&ids; /* must come back NULL */
    size_t n = 99;
    aria_error err = {{0}};
    int rc = aria_ids_parse(text, strlen(text), VOCAB, &ids, &n, &err);
    cr_expect_eq(rc, ARIA_ERR_FORMAT, "'%s' was accepted", text);
    cr_expect(strstr(err.msg, want) != NULL, "'%s': message '%s' lacks '%s'", text, err.msg, want);
    cr_expect_null(ids, "'%s': no list after a failure", text);
    cr_expect_eq(n, 0);
}

static uint8_t *slurp(const char *path, size_t *len) {
    uint8_t *buf = NULL;
    aria_error err = {{0}};
    cr_assert_eq(aria_read_file(path, &buf, len, &err), ARIA_OK, "%s: %s", path, err.msg);
    return buf;
}

/* ---------------------------------------------------------------------- */
/* id lists                                                               */
/* ---------------------------------------------------------------------- */

Test(ids, one_rule_for_lines_commas_and_json_arrays) {
    static const char *const forms[] = {
        "6 0 1085 17726", "6,0,1085,17726", "[6, 0, 1085, 17726]", " \t[6,0 ,1085,\n17726]\r\n",
        "6\n0\n1085\n17726\n", ",6,,0, 1085 ,17726,", "[ 6 0 1085 17726 ]"};
    static const int32_t want[] = {6, 0, 1085, 17726};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        size_t n;
        int32_t *ids = parse_ok(forms[f], &n);
        cr_expect_eq(n, 4, "'%s': %zu ids", forms[f], n);
        for (size_t i = 0; i < n && i < 4; i++) cr_expect_eq(ids[i], want[i], "'%s' id %zu", forms[f], i);
        free(ids);
    }
    static const char *const empty[] = {"", "  \n", "[]", " [ ] ", ",,"};
    for (size_t f = 0; f < sizeof empty / sizeof *empty; f++) {
        size_t n = 99;
        free(parse_ok(empty[f], &n));
        cr_expect_eq(n, 0, "'%s' is an empty list", empty[f]);
    }
}

Test(ids, errors_say_where_and_what) {
    parse_fails("6 0 x7 1", "byte 4: expected a token id, got 'x7'");
    parse_fails("6 0 17727 1", "byte 4: token id 17727 is outside the vocabulary (0..17726)");
    parse_fails("6 99999999999999999999 1", "byte 2: token id 99999999999999999999 is outside");
    parse_fails("6 -1", "byte 2: expected a token id, got '-1'");
    parse_fails("6 1.5", "byte 2: expected a token id, got '1.5'");
    parse_fails("6 0x10", "byte 2: expected a token id, got '0x10'");
    parse_fails("6;0", "byte 0: expected a token id, got '6;0'");
    parse_fails("[6, 0", "byte 0: '[' without a closing ']'");
    parse_fails("  6, 0]", "byte 6: ']' without an opening '['");
    parse_fails("[6, 0][1]", "byte 4: expected a token id, got '0][1'");
    parse_fails("[[6, 0]]", "byte 1: expected a token id, got '[6'");
    parse_fails("[\"<S>\"]", "byte 1: expected a token id, got '\"<S>\"'");
}

Test(ids, a_vocabulary_bounds_the_ids) {
    int32_t *ids;
    size_t n;
    aria_error err = {{0}};
    cr_expect_eq(aria_ids_parse("2674", 4, 2675, &ids, &n, &err), ARIA_OK, "%s", err.msg);
    free(ids);
    cr_expect_eq(aria_ids_parse("2675", 4, 2675, &ids, &n, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "(0..2674)") != NULL, "%s", err.msg);
}

Test(ids, reads_the_reference_json_and_formats_it_back) {
    size_t n, len;
    int32_t *ids;
    aria_error err = {{0}};
    cr_assert_eq(aria_ids_read_file(VEC "waltz/prompt15s_ids.json", VOCAB, &ids, &n, &err), ARIA_OK, "%s", err.msg);
    cr_expect_gt(n, 100);
    cr_expect(ids[0] == 6 && ids[1] == 0 && ids[2] == 1085, "[6,0,1085,...]: %d %d %d", ids[0], ids[1], ids[2]);
    char *text;
    cr_assert_eq(aria_ids_format(ids, n, &text, &len, &err), ARIA_OK);
    cr_expect(strncmp(text, "6 0 1085 17227 ", 15) == 0, "%.40s", text);
    cr_expect_eq(text[len - 1], '\n');
    cr_expect_eq(strlen(text), len);
    int32_t *back;
    size_t nb;
    cr_assert_eq(aria_ids_parse(text, len, VOCAB, &back, &nb, &err), ARIA_OK, "%s", err.msg);
    cr_expect(nb == n && memcmp(back, ids, n * sizeof *ids) == 0, "the printed text reads back as the same ids");
    free(back);
    free(text);
    free(ids);
    cr_expect_eq(aria_ids_read_file("/nonexistent/ids.txt", VOCAB, &ids, &n, &err), ARIA_ERR_IO);
}

Test(ids, tokens_from_json_or_ids_text) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    size_t tl, nj, ni;
    uint8_t *txt = slurp(VEC "basic/tokens.json", &tl);
    aria_token *json, *from_ids;
    aria_error err = {{0}};
    cr_assert_eq(aria_tok_parse_text(tk, (const char *)txt, tl, &json, &nj, &err), ARIA_OK, "%s", err.msg);
    aria_token *want;
    size_t nw;
    cr_assert_eq(aria_tok_parse_json(tk, (const char *)txt, tl, &want, &nw, &err), ARIA_OK);
    cr_expect(nj == nw && memcmp(json, want, nw * sizeof *want) == 0, "a token array is read as JSON");
    free(txt);
    txt = slurp(VEC "basic/ids.json", &tl); /* the same tokens as ids: [10,16,6,0,...] */
    cr_assert_eq(aria_tok_parse_text(tk, (const char *)txt, tl, &from_ids, &ni, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(ni, nw);
    for (size_t i = 0; i < ni; i++) /* ids.json holds the reference prefix order, a set */
        if (aria_tok_id(tk, from_ids[i]) == 0) {
            cr_expect(memcmp(from_ids + i, want + i, (ni - i) * sizeof *want) == 0, "from <S> on, the same tokens");
            break;
        }
    free(from_ids);
    const char *line = " 6 0 1085\n", *broken = "[\"<S>\", [\"piano\", 60]", *outside = "6 0 17727";
    cr_assert_eq(aria_tok_parse_text(tk, line, strlen(line), &from_ids, &ni, &err), ARIA_OK, "%s", err.msg);
    cr_expect(ni == 3 && aria_tok_is(from_ids[1], ARIA_SP_BOS));
    free(from_ids);
    cr_expect_eq(aria_tok_parse_text(tk, broken, strlen(broken), &from_ids, &ni, &err), ARIA_ERR_FORMAT,
                 "a broken token array is a JSON error");
    cr_expect_eq(aria_tok_parse_text(tk, outside, strlen(outside), &from_ids, &ni, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "outside the vocabulary") != NULL, "%s", err.msg);
    free(json);
    free(want);
    free(txt);
    aria_tokenizer_free(tk);
}

Test(ids, token_lines_as_the_tokenize_command_prints_them) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_token toks[3] = {aria_tok_special(ARIA_SP_BOS), aria_tok_token(tk, 1085), aria_tok_special(ARIA_SP_EOS)};
    char *s;
    size_t len;
    aria_error err = {{0}};
    cr_assert_eq(aria_tok_format_line(tk, toks, 3, 1, &s, &len, &err), ARIA_OK);
    cr_expect_str_eq(s, "0 1085 1\n");
    free(s);
    cr_assert_eq(aria_tok_format_line(tk, toks, 3, 0, &s, &len, &err), ARIA_OK);
    cr_expect(strncmp(s, "[\"<S>\",[", 8) == 0 && strcmp(s + len - 9, "],\"<E>\"]\n") == 0, "%s", s);
    cr_expect_eq(strlen(s), len);
    free(s);
    cr_assert_eq(aria_tok_format_line(tk, toks, 0, 0, &s, &len, &err), ARIA_OK);
    cr_expect_str_eq(s, "[]\n");
    free(s);
    aria_tokenizer_free(tk);
}

/* ---------------------------------------------------------------------- */
/* batch tokenization                                                     */
/* ---------------------------------------------------------------------- */

typedef struct {
    int calls;
    size_t last_done, total;
    unsigned char seen[8];
} batch_watch;

static void watch_file(void *ctx, size_t i, aria_batch_file *f) {
    batch_watch *w = ctx;
    __atomic_fetch_add(&w->calls, 1, __ATOMIC_SEQ_CST);
    if (i < 8) w->seen[i] = 1 + (f->status == ARIA_OK);
}

static void watch_progress(void *ctx, size_t done, size_t total) {
    batch_watch *w = ctx; /* called one at a time: no atomics needed */
    cr_expect_eq(done, w->last_done + 1, "progress counts up by one");
    w->last_done = done;
    w->total = total;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The file's ids against a reference ids file: the prefix before <S> as
   a set (the reference draws its order from a Python set), the rest id by
   id. */
static void expect_ids_file(const aria_tokenizer *tk, const aria_batch_file *f, const char *ids_json,
                            const char *what) {
    int32_t *want, *got;
    size_t nw;
    aria_error err = {{0}};
    cr_assert_eq(aria_ids_read_file(ids_json, VOCAB, &want, &nw, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(f->status, ARIA_OK, "%s: %s", what, f->err.msg);
    cr_assert_eq(f->n_seqs, 1);
    cr_expect_eq(f->ends[0], f->n_toks);
    cr_assert_eq(f->n_toks, nw, "%s: %zu tokens, reference %zu", what, f->n_toks, nw);
    got = malloc((nw + 1) * sizeof *got);
    aria_tok_encode(tk, f->toks, nw, got);
    size_t b = 0;
    while (b < nw && want[b] != 0) b++; /* <S> is id 0 */
    qsort(got, b, sizeof *got, cmp_i32);
    qsort(want, b, sizeof *want, cmp_i32);
    for (size_t i = 0; i < nw; i++)
        if (got[i] != want[i]) {
            cr_expect_fail("%s: id %zu is %d, reference %d", what, i, got[i], want[i]);
            break;
        }
    free(got);
    free(want);
}

static void score_of(const char *path, aria_score *s) {
    aria_midi m = {0};
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_read_file(&m, path, &err), ARIA_OK, "%s: %s", path, err.msg);
    cr_assert_eq(aria_score_from_midi(s, &m, &err), ARIA_OK, "%s: %s", path, err.msg);
    aria_midi_free(&m);
}

Test(batch, one_bad_file_among_good_ones) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    const char *paths[] = {BASIC, "/nonexistent/x.mid", WALTZ, VEC "SOURCE.md", NULL, VEC "pop/pop.mid"};
    size_t n = sizeof paths / sizeof *paths;
    aria_batch_opts o = aria_batch_defaults();
    o.tok.add_dim_tok = 0; /* ids.json is tokenize(add_dim_tok=False) */
    batch_watch w = {0};
    o.on_file = watch_file;
    o.progress = watch_progress;
    o.ctx = &w;
    for (int jobs = 1; jobs <= 3; jobs += 2) {
        memset(&w, 0, sizeof w);
        o.jobs = jobs;
        aria_batch_file res[6];
        aria_error err = {{0}};
        cr_assert_eq(aria_batch_tokenize(tk, paths, n, &o, res, &err), ARIA_OK, "%s", err.msg);
        expect_ids_file(tk, &res[0], VEC "basic/ids.json", "basic");
        expect_ids_file(tk, &res[2], VEC "waltz/ids.json", "waltz");
        expect_ids_file(tk, &res[5], VEC "pop/ids.json", "pop");
        cr_expect_eq(res[1].status, ARIA_ERR_IO, "a missing file");
        cr_expect(strstr(res[1].err.msg, "cannot open") != NULL, "%s", res[1].err.msg);
        cr_expect_eq(res[3].status, ARIA_ERR_FORMAT, "not a MIDI file");
        cr_expect(res[1].toks == NULL && res[1].n_seqs == 0 && res[3].toks == NULL, "failed slots hold nothing");
        cr_expect(res[4].status == ARIA_OK && res[4].n_seqs == 0, "a NULL path is an empty slot");
        cr_expect_eq(w.calls, (int)n, "on_file once per file");
        cr_expect(w.seen[0] == 2 && w.seen[1] == 1 && w.seen[3] == 1 && w.seen[5] == 2, "on_file saw the statuses");
        cr_expect(w.last_done == n && w.total == n, "progress ends at %zu of %zu", w.last_done, w.total);
        for (size_t i = 0; i < n; i++) aria_batch_file_free(&res[i]);
    }
    aria_tokenizer_free(tk);
}

Test(batch, seeds_per_file_and_modes) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    const char *paths[] = {BASIC, BASIC};
    uint64_t seeds[] = {1234, 99};
    aria_batch_opts o = aria_batch_defaults(); /* the library default: <D> placed at random */
    o.seeds = seeds;
    o.jobs = 2;
    aria_batch_file res[2];
    aria_error err = {{0}};
    cr_assert_eq(aria_batch_tokenize(tk, paths, 2, &o, res, &err), ARIA_OK);
    aria_score s;
    score_of(BASIC, &s);
    aria_token *direct[2];
    size_t nd[2];
    for (int k = 0; k < 2; k++) { /* each file as aria_tokenize with its own seed */
        aria_rng rng;
        aria_rng_seed(&rng, seeds[k]);
        cr_assert_eq(aria_tokenize(tk, &s, NULL, &rng, &direct[k], &nd[k], &err), ARIA_OK, "%s", err.msg);
        cr_assert_eq(res[k].status, ARIA_OK, "%s", res[k].err.msg);
        cr_expect(res[k].n_toks == nd[k] && memcmp(res[k].toks, direct[k], nd[k] * sizeof **direct) == 0,
                  "file %d: tokens of seed %llu", k, (unsigned long long)seeds[k]);
    }
    if (nd[0] == nd[1] && !memcmp(direct[0], direct[1], nd[0] * sizeof **direct))
        cr_log_warn("seeds 1234 and 99 happen to give the same tokens: the per-file seed is not told apart");
    /* and seed 1234 is the reference's tokenize() after random.seed(1234) */
    size_t tl, nw;
    uint8_t *txt = slurp(VEC "basic/tokens_default_seed1234.json", &tl);
    aria_token *want;
    cr_assert_eq(aria_tok_parse_json(tk, (const char *)txt, tl, &want, &nw, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(nw, res[0].n_toks);
    int32_t *ids = malloc(nw * sizeof *ids);
    aria_tok_encode(tk, want, nw, ids);
    char tmp[] = "/tmp/aria_tasks_idsXXXXXX";
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    close(fd);
    char *text;
    size_t len;
    cr_assert_eq(aria_ids_format(ids, nw, &text, &len, &err), ARIA_OK);
    cr_assert_eq(aria_write_file_atomic(tmp, text, len, &err), ARIA_OK, "%s", err.msg);
    expect_ids_file(tk, &res[0], tmp, "basic, seed 1234");
    unlink(tmp);
    free(text);
    free(ids);
    free(want);
    free(txt);
    for (int k = 0; k < 2; k++) {
        free(direct[k]);
        aria_batch_file_free(&res[k]);
    }
    aria_score_free(&s);

    o = aria_batch_defaults();
    o.mode = ARIA_BATCH_PROMPT;
    o.prompt_ms = 15000;
    paths[0] = WALTZ;
    cr_assert_eq(aria_batch_tokenize(tk, paths, 1, &o, res, &err), ARIA_OK);
    expect_ids_file(tk, &res[0], VEC "waltz/prompt15s_ids.json", "waltz prompt");
    aria_batch_file_free(&res[0]);

    o.mode = ARIA_BATCH_CHUNKS;
    paths[1] = BASIC; /* strings and drums: the embedding model refuses it */
    cr_assert_eq(aria_batch_tokenize(tk, paths, 2, &o, res, &err), ARIA_OK);
    cr_assert_eq(res[0].status, ARIA_OK, "%s", res[0].err.msg);
    cr_expect_eq(res[1].status, ARIA_ERR_ARG);
    cr_expect(strstr(res[1].err.msg, "piano") != NULL, "%s", res[1].err.msg);
    int32_t *flat;
    size_t nf;
    cr_assert_eq(aria_ids_read_file(VEC "waltz/embedding_chunks_ids.json", VOCAB, &flat, &nf, &err),
                 ARIA_ERR_FORMAT, "the chunk file is a list of objects, not of ids");
    cr_expect_geq(res[0].n_seqs, 1);
    for (size_t k = 0; k < res[0].n_seqs; k++) {
        size_t from = k ? res[0].ends[k - 1] : 0;
        cr_expect(res[0].ends[k] > from && res[0].ends[k] - from <= 2048, "chunk %zu: %zu tokens", k,
                  res[0].ends[k] - from);
        cr_expect(aria_tok_is(res[0].toks[res[0].ends[k] - 1], ARIA_SP_EOS), "chunk %zu ends with <E>", k);
    }
    cr_expect_eq(res[0].ends[res[0].n_seqs - 1], res[0].n_toks);
    aria_batch_file_free(&res[0]);
    aria_batch_file_free(&res[1]);

    o.mode = (aria_batch_mode)7;
    cr_expect_eq(aria_batch_tokenize(tk, paths, 2, &o, res, &err), ARIA_ERR_ARG);
    aria_tokenizer_free(tk);
}

/* ---------------------------------------------------------------------- */
/* the model's tokenizer and the generation prompt                        */
/* ---------------------------------------------------------------------- */

Test(prompt, tokenizer_for_a_vocabulary) {
    cr_expect_eq(aria_tok_variant_for_vocab(17727), ARIA_TOKCFG_DEFAULT);
    cr_expect_eq(aria_tok_variant_for_vocab(17729), ARIA_TOKCFG_DEMO_17729);
    cr_expect_eq(aria_tok_variant_for_vocab(2675), ARIA_TOKCFG_DEMO_2675);
    cr_expect_eq(aria_tok_variant_for_vocab(1000), ARIA_TOKCFG_DEFAULT, "unknown sizes get the released tokenizer");
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    c.vocab_size = 2675;
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 1, &err), ARIA_OK, "%s", err.msg);
    aria_tokenizer *tk = aria_tokenizer_for_model(m);
    cr_expect_eq(aria_tok_vocab_size(tk), 2675);
    aria_tokenizer_free(tk);
    aria_model_free(m);
}

Test(prompt, the_window_before_the_first_note_is_flagged) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int32_t *ids, *want;
    size_t n, nw;
    aria_prompt_info info;
    aria_error err = {{0}};
    cr_assert_eq(aria_prompt_from_file(tk, WALTZ, 15000, &ids, &n, &info, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_ids_read_file(VEC "waltz/prompt15s_ids.json", VOCAB, &want, &nw, &err), ARIA_OK);
    cr_expect(n == nw && memcmp(ids, want, n * sizeof *ids) == 0, "the reference's 15 s prompt");
    cr_expect_eq(info.window_before_first_note, 0);
    cr_expect_eq(info.first_note_ms / 100, 32, "the waltz starts at 3.2 s, not %lld ms", (long long)info.first_note_ms);
    free(ids);
    free(want);
    /* 2 s of a piece that starts at 3.2 s: a prompt of [piano prefix, <S>] */
    cr_assert_eq(aria_prompt_from_file(tk, WALTZ, 2000, &ids, &n, &info, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(info.window_before_first_note, 1);
    cr_expect_eq(info.first_note_ms / 100, 32);
    cr_expect(n == 2 && ids[1] == 0, "%zu ids", n);
    free(ids);
    cr_expect_eq(aria_prompt_from_file(tk, "/nonexistent/p.mid", 2000, &ids, &n, NULL, &err), ARIA_ERR_IO);
    cr_expect(ids == NULL && n == 0);
    aria_tokenizer_free(tk);
}

/* ---------------------------------------------------------------------- */
/* tokens and ids to MIDI files                                           */
/* ---------------------------------------------------------------------- */

Test(midifile, the_reference_decoding_byte_for_byte) {
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    size_t tl, ml, got_len, nt;
    uint8_t *txt = slurp(VEC "basic/tokens.json", &tl), *ref = slurp(VEC "basic/decoded.mid", &ml);
    aria_token *toks;
    aria_error err = {{0}};
    cr_assert_eq(aria_tok_parse_json(tk, (const char *)txt, tl, &toks, &nt, &err), ARIA_OK, "%s", err.msg);
    char dir[] = "/tmp/aria_tasks_midXXXXXX", path[64];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.mid", dir);
    size_t skipped = 99;
    cr_assert_eq(aria_tokens_write_midi(tk, toks, nt, path, &skipped, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(skipped, 0);
    uint8_t *got = slurp(path, &got_len);
    cr_expect(got_len == ml && memcmp(got, ref, ml) == 0, "tokens -> decoded.mid");
    free(got);
    unlink(path);

    int32_t *ids = malloc(nt * sizeof *ids);
    aria_tok_encode(tk, toks, nt, ids);
    cr_assert_eq(aria_ids_write_midi(tk, ids, nt, path, NULL, &err), ARIA_OK, "%s", err.msg);
    got = slurp(path, &got_len);
    cr_expect(got_len == ml && memcmp(got, ref, ml) == 0, "ids -> decoded.mid");
    free(got);
    unlink(path);

    cr_expect_eq(aria_ids_write_midi(tk, ids, 0, path, NULL, &err), ARIA_ERR_EMPTY);
    cr_expect_str_eq(err.msg, "no tokens");
    cr_expect(access(path, F_OK) != 0, "nothing written for no tokens");
    cr_expect_eq(aria_ids_write_midi(tk, ids, nt, "/nonexistent/dir/x.mid", NULL, &err), ARIA_ERR_IO,
                 "the output's fault is ARIA_ERR_IO");
    rmdir(dir);
    free(ids);
    free(toks);
    free(txt);
    free(ref);
    aria_tokenizer_free(tk);
}

/* ---------------------------------------------------------------------- */
/* .npy                                                                   */
/* ---------------------------------------------------------------------- */

Test(npy, bytes_of_a_small_matrix) {
    char dir[] = "/tmp/aria_tasks_npyXXXXXX", path[64];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/e.npy", dir);
    const float x[6] = {1.0f, -2.0f, 0.5f, 0.0f, 3.25f, -0.125f};
    aria_error err = {{0}};
    cr_assert_eq(aria_npy_write_f32(path, x, 2, 3, &err), ARIA_OK, "%s", err.msg);
    size_t len;
    uint8_t *b = slurp(path, &len);
    /* NumPy's format 1.0: magic, version 1.0, u16 LE header length; the
       data starts at a multiple of 64 */
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    /* 10 + 59 + '\n' = 70 bytes, padded to 128 */
    cr_assert_eq(len, 128 + 24);
    cr_expect(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    cr_expect(b[8] == 128 - 10 && b[9] == 0, "header length %d", b[8] | b[9] << 8);
    cr_expect(memcmp(b + 10, dict, sizeof dict - 1) == 0, "%.*s", (int)(sizeof dict - 1), b + 10);
    for (size_t i = 10 + sizeof dict - 1; i < 127; i++) cr_expect_eq(b[i], ' ', "padding at %zu", i);
    cr_expect_eq(b[127], '\n');
    /* 1.0f is 0x3f800000, -2.0f 0xc0000000, -0.125f 0xbe000000, little-endian */
    static const uint8_t first[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    static const uint8_t last[4] = {0x00, 0x00, 0x00, 0xbe};
    cr_expect(memcmp(b + 128, first, 8) == 0, "float32 little-endian data");
    cr_expect(memcmp(b + 128 + 20, last, 4) == 0, "the last value last");
    free(b);
    unlink(path);
    cr_expect_neq(aria_npy_write_f32("/nonexistent/dir/e.npy", x, 2, 3, &err), ARIA_OK);
    rmdir(dir);
}

/* ---------------------------------------------------------------------- */
/* aria info statistics                                                   */
/* ---------------------------------------------------------------------- */

/* The figures `aria info` printed for basic.mid before it moved into the
   library (two strings notes on channel 2, eight drum notes). */
Test(stats, what_aria_info_reports) {
    aria_file_stats st;
    aria_error err = {{0}};
    cr_assert_eq(aria_file_stats_read(&st, BASIC, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(st.format, 1);
    cr_expect_eq(st.ppq, 480);
    cr_expect(st.n_tracks == 4 && st.ntracks_declared == 4);
    cr_expect_eq(st.n_events, 172);
    cr_expect_eq(st.duration_ms, 36000);
    cr_expect_eq(st.n_notes, 54);
    cr_expect_eq(st.n_drum_notes, 8);
    cr_assert_eq(st.n_programs, 3);
    cr_expect(st.programs[1].channel == 1 && st.programs[1].program == 40, "strings on channel 2");
    cr_expect_eq(st.programs[2].channel, 9, "a program change on channel 10");
    cr_expect(st.n_tempos == 1 && st.first_tempo == 500000, "120 bpm");
    cr_expect(st.n_pedals == 3 && st.n_pedals_down == 2);
    cr_expect_eq(st.n_warnings, 0);
    aria_file_stats_free(&st);
    aria_file_stats_free(&st); /* twice is harmless */

    cr_expect_eq(aria_file_stats_read(&st, VEC "SOURCE.md", &err), ARIA_ERR_FORMAT);
    cr_expect(st.programs == NULL && st.n_programs == 0, "nothing owned after a failure");
}

Test(stats, the_readers_warnings_come_along) {
    const char *path = "tests/data/midi/crashers/fuzz-c25f2db3dc0b.mid"; /* damaged: read with warnings */
    aria_midi m = {0};
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_read_file(&m, path, &err), ARIA_OK, "%s", err.msg);
    cr_assert_gt(m.n_warnings, 0, "the fixture is read with warnings");
    aria_file_stats st;
    cr_assert_eq(aria_file_stats_read(&st, path, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(st.n_warnings, m.n_warnings);
    for (int i = 0; i < m.n_warnings && i < ARIA_MIDI_MAX_WARNINGS; i++)
        cr_expect_str_eq(st.warnings[i], m.warnings[i]);
    size_t events = 0;
    for (size_t t = 0; t < m.n_tracks; t++) events += m.tracks[t].n_events;
    cr_expect_eq(st.n_events, events);
    aria_file_stats_free(&st);
    aria_midi_free(&m);
}

/* ---------------------------------------------------------------------- */
/* distributed set-up                                                     */
/* ---------------------------------------------------------------------- */

static const char *fake_env[8];

static char *fake_getenv(const char *name) {
    for (int i = 0; fake_env[i]; i += 2)
        if (!strcmp(fake_env[i], name)) return (char *)fake_env[i + 1];
    return NULL;
}

static aria_launch launch_with(const char *k1, const char *v1, const char *k2, const char *v2) {
    memset(fake_env, 0, sizeof fake_env);
    fake_env[0] = k1, fake_env[1] = v1, fake_env[2] = k2, fake_env[3] = v2;
    return aria_dist_launch_info(fake_getenv);
}

Test(dist_setup, launchers_are_read_through_the_callers_lookup) {
    aria_launch l = launch_with(NULL, NULL, NULL, NULL);
    cr_expect(l.under_launcher == 0 && l.size == 1, "plain start");
    l = launch_with("OMPI_COMM_WORLD_SIZE", "4", NULL, NULL);
    cr_expect(l.under_launcher == 1 && l.size == 4, "Open MPI mpirun -np 4");
    l = launch_with("PMIX_RANK", "0", NULL, NULL);
    cr_expect(l.under_launcher == 1 && l.size == 1, "PMIx says no size");
    l = launch_with("PMI_RANK", "1", "PMI_SIZE", "3");
    cr_expect(l.under_launcher == 1 && l.size == 3, "MPICH Hydra");
    l = aria_dist_launch_info(NULL);
    cr_expect(l.under_launcher == 0 && l.size == 1);
    cr_expect_eq(aria_dist_rank(), 0, "no MPI started: rank 0");
    cr_expect_eq(aria_dist_size(), 1, "no MPI started: one process");
}

Test(dist_setup, one_of_several_without_mpi_refuses_to_train) {
    aria_train_opts o = aria_train_defaults();
    o.data_dir = "/nonexistent/data";
    o.out_dir = "/nonexistent/run";
    o.launched_size = 2;
    aria_error err = {{0}};
    cr_expect_eq(aria_train_run(&o, &err), ARIA_ERR_ARG);
    cr_expect(strstr(err.msg, "started as one of 2 processes") != NULL, "%s", err.msg);
}
