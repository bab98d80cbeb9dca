/*
 * test_config.c - Criterion tests of src/model/config.c: the presets, the files
 * in configs/ (they must equal the presets), reading the reference
 * repository's config files and the Hugging Face config.json of the
 * released checkpoints (texts quoted below), every error class with the
 * key it must name, aria_config_check, and the JSON writer.
 *
 * The quoted reference files are EleutherAI/aria config/models/<name>.json
 * (medium-emb.json and medium-genre.json); the HF text is the config the
 * transformers library prints for loubb/aria-medium-base. The optional test
 * with ../shared reads vectors/model/config.json and skips without it.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aria.h"

static aria_model_config preset(const char *name)
{
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, name), ARIA_OK, "preset %s", name);
    return c;
}

static aria_model_config parse_ok(const char *json)
{
    aria_model_config c;
    aria_error e = {{0}};
    int rc = aria_config_parse(&c, json, strlen(json), &e);
    cr_assert_eq(rc, ARIA_OK, "parse failed: %s\n%s", e.msg, json);
    return c;
}

/* Parsing must fail with a format error whose message contains `want`. */
static void parse_bad(const char *json, const char *want)
{
    aria_model_config c;
    aria_error e = {{0}};
    memset(&c, 0x55, sizeof c);
    int rc = aria_config_parse(&c, json, strlen(json), &e);
    cr_expect_eq(rc, ARIA_ERR_FORMAT, "rc %d for %s", rc, json);
    cr_expect(strstr(e.msg, want), "message '%s' lacks '%s' (%s)", e.msg, want, json);
    aria_model_config zero = {0};
    cr_expect(memcmp(&c, &zero, sizeof c) == 0, "config not cleared on failure");
}

static void expect_config(aria_model_config c, int d, int h, int l, int ff, int seq, int vocab,
                          int emb, int cls)
{
    cr_expect_eq(c.d_model, d);
    cr_expect_eq(c.n_heads, h);
    cr_expect_eq(c.n_layers, l);
    cr_expect_eq(c.ff_mult, ff);
    cr_expect_eq(c.max_seq_len, seq);
    cr_expect_eq(c.vocab_size, vocab);
    cr_expect_eq(c.emb_size, emb);
    cr_expect_eq(c.class_size, cls);
}

static int same(aria_model_config a, aria_model_config b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* A valid tiny config in reference keys with one `"key": value` member
   replaced or added (`extra` is spliced in before the closing brace). */
static void tiny_with(char *buf, size_t cap, const char *extra)
{
    snprintf(buf, cap,
             "{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, "
             "\"max_seq_len\": 512%s%s}",
             extra[0] ? ", " : "", extra);
}

/* ---------------------------------------------------------------------- */

Test(config_preset, values)
{
    expect_config(preset("medium"), 1536, 24, 16, 4, 8192, 17727, 0, 0);
    expect_config(preset("medium-emb"), 1536, 24, 16, 4, 8192, 17727, 512, 0);
    expect_config(preset("tiny"), 64, 4, 2, 4, 512, 17727, 32, 5);
    aria_model_config c;
    cr_expect_eq(aria_config_preset(&c, "large"), ARIA_ERR_ARG);
    cr_expect_eq(aria_config_preset(&c, "Medium"), ARIA_ERR_ARG);
    cr_expect_eq(aria_config_preset(&c, NULL), ARIA_ERR_ARG);
    cr_expect_eq(aria_config_preset(NULL, "tiny"), ARIA_ERR_ARG);
    static const char *names[] = {"medium", "medium-emb", "tiny"};
    for (int i = 0; i < 3; i++) {
        aria_error e = {{0}};
        aria_model_config p = preset(names[i]);
        cr_expect_eq(aria_config_check(&p, &e), ARIA_OK, "%s: %s", names[i], e.msg);
    }
}

/* configs/<preset>.json are the presets, in reference keys. */
Test(config_preset, files_in_configs_match)
{
    static const char *names[] = {"medium", "medium-emb", "tiny"};
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "configs/%s.json", names[i]);
        aria_model_config c;
        aria_error e = {{0}};
        cr_assert_eq(aria_config_read(&c, path, &e), ARIA_OK, "%s: %s", path, e.msg);
        cr_expect(same(c, preset(names[i])), "%s differs from the preset", path);
    }
}

Test(config_parse, reference_files)
{
    /* config/models/medium-emb.json, verbatim: no vocab_size (the
       reference takes it from the tokenizer) */
    aria_model_config c = parse_ok("{\n    \"d_model\": 1536,\n    \"n_heads\": 24,\n"
                                   "    \"n_layers\": 16,\n    \"ff_mult\": 4,\n"
                                   "    \"drop_p\": 0.0,\n    \"max_seq_len\": 8192,\n"
                                   "    \"grad_checkpoint\": true,\n    \"emb_size\": 512\n}\n");
    cr_expect(same(c, preset("medium-emb")));
    /* config/models/medium-genre.json: class_size plus keys we ignore */
    c = parse_ok("{\n    \"d_model\": 1536,\n    \"n_heads\": 24,\n    \"n_layers\": 16,\n"
                 "    \"ff_mult\": 4,\n    \"drop_p\": 0.0,\n    \"max_seq_len\": 8192,\n"
                 "    \"grad_checkpoint\": true,\n    \"class_size\": 3,\n"
                 "    \"resid_dropout\": 0.2,\n"
                 "    \"tag_to_id\": {\n        \"classical\": 0,\n        \"jazz\": 1,\n"
                 "        \"other\": 2\n    }\n}\n");
    expect_config(c, 1536, 24, 16, 4, 8192, 17727, 0, 3);
}

Test(config_parse, hugging_face_files)
{
    /* loubb/aria-medium-base config.json (as printed by transformers) */
    aria_model_config c = parse_ok(
        "{\"architectures\": [\"AriaForCausalLM\"], \"auto_map\": {\"AutoConfig\": "
        "\"configuration_aria.AriaConfig\"}, \"dtype\": \"float32\", \"embedding_size\": null, "
        "\"eos_token_id\": 1, \"hidden_size\": 1536, \"intermediate_size\": 6144, "
        "\"max_seq_len\": 8192, \"model_type\": \"aria\", \"num_attention_heads\": 24, "
        "\"num_hidden_layers\": 16, \"pad_token_id\": 2, \"return_dict\": false, "
        "\"tie_word_embeddings\": false, \"transformers_version\": \"4.57.6\", "
        "\"use_cache\": true, \"vocab_size\": 17727}");
    cr_expect(same(c, preset("medium")));
    /* the embedding model's: embedding_size, 2048 context, bf16 */
    c = parse_ok("{\"hidden_size\": 1536, \"intermediate_size\": 6144, \"max_seq_len\": 2048, "
                 "\"num_attention_heads\": 24, \"num_hidden_layers\": 16, \"vocab_size\": 17727, "
                 "\"embedding_size\": 512, \"torch_dtype\": \"bfloat16\", \"eos_token_id\": 1}");
    expect_config(c, 1536, 24, 16, 4, 2048, 17727, 512, 0);
    /* max_position_embeddings and num_labels spellings */
    c = parse_ok("{\"hidden_size\": 64, \"intermediate_size\": 128, "
                 "\"max_position_embeddings\": 1024, \"num_attention_heads\": 2, "
                 "\"num_hidden_layers\": 3, \"vocab_size\": 100, \"num_labels\": 4}");
    expect_config(c, 64, 2, 3, 2, 1024, 100, 0, 4);
    /* both spellings present and equal is fine */
    c = parse_ok("{\"d_model\": 64, \"hidden_size\": 64, \"n_heads\": 4, \"n_layers\": 2, "
                 "\"ff_mult\": 4, \"intermediate_size\": 256, \"max_seq_len\": 512, "
                 "\"max_position_embeddings\": 512, \"emb_size\": 32, \"class_size\": 5}");
    cr_expect(same(c, preset("tiny")));
}

/* The golden vectors' config.json spells the tiny shape with extra keys
   (d_head, ff_hidden, rope_base, layernorm_eps) that must be consistent. */
Test(config_parse, vector_style_keys)
{
    aria_model_config c = parse_ok(
        "{\"vocab_size\": 17727, \"d_model\": 64, \"n_heads\": 4, \"d_head\": 16, \"n_layers\": 2,"
        " \"ff_mult\": 4, \"ff_hidden\": 256, \"drop_p\": 0.0, \"max_seq_len\": 512,"
        " \"grad_checkpoint\": false, \"emb_size\": 32, \"class_size\": 5, \"rope_base\": 500000,"
        " \"layernorm_eps\": 1e-05, \"init_seed\": 1234, \"param_order\": [\"a\", \"b\"]}");
    cr_expect(same(c, preset("tiny")));
    char b[512];
    tiny_with(b, sizeof b, "\"d_head\": 8");
    parse_bad(b, "'d_head'");
    tiny_with(b, sizeof b, "\"head_dim\": 32");
    parse_bad(b, "'head_dim'");
    tiny_with(b, sizeof b, "\"ff_hidden\": 128");
    parse_bad(b, "'ff_hidden'");
    tiny_with(b, sizeof b, "\"rope_base\": 10000");
    parse_bad(b, "'rope_base' is 10000");
    tiny_with(b, sizeof b, "\"rope_theta\": \"x\"");
    parse_bad(b, "'rope_theta' must be a number");
    tiny_with(b, sizeof b, "\"layernorm_eps\": 1e-6");
    parse_bad(b, "'layernorm_eps'");
    tiny_with(b, sizeof b, "\"layer_norm_eps\": 0.00001, \"rope_theta\": 500000.0");
    parse_ok(b);
}

Test(config_parse, errors_name_the_key)
{
    parse_bad("", "not valid JSON");
    parse_bad("{\"d_model\": 64,}", "not valid JSON");
    parse_bad("[1]", "not a JSON object");
    parse_bad("{\"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, \"max_seq_len\": 512}",
              "missing key 'd_model' (or 'hidden_size')");
    parse_bad("{\"d_model\": 64, \"n_layers\": 2, \"ff_mult\": 4, \"max_seq_len\": 512}",
              "missing key 'n_heads'");
    parse_bad("{\"d_model\": 64, \"n_heads\": 4, \"ff_mult\": 4, \"max_seq_len\": 512}",
              "missing key 'n_layers'");
    parse_bad("{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"max_seq_len\": 512}",
              "missing key 'ff_mult' (or 'intermediate_size')");
    parse_bad("{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4}",
              "missing key 'max_seq_len'");
    parse_bad("{\"d_model\": null, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, "
              "\"max_seq_len\": 512}",
              "missing key 'd_model'");
    char b[512];
    static const struct {
        const char *extra, *want;
    } cases[] = {
        {"\"vocab_size\": 17727.0", "'vocab_size' must be an integer"},
        {"\"vocab_size\": 1e4", "'vocab_size' must be an integer"},
        {"\"vocab_size\": \"17727\"", "'vocab_size' must be an integer"},
        {"\"emb_size\": true", "'emb_size' must be an integer"},
        {"\"class_size\": [5]", "'class_size' must be an integer"},
        {"\"vocab_size\": 4294967296", "'vocab_size' (4294967296) is out of range"},
        {"\"vocab_size\": 0", "vocab_size is 0"},
        {"\"vocab_size\": 16777217", "vocab_size is 16777217"},
        {"\"emb_size\": -1", "emb_size is -1"},
        {"\"num_labels\": -2", "num_labels is -2"},
        {"\"hidden_size\": 32", "keys 'd_model' (64) and 'hidden_size' (32) disagree"},
        {"\"max_position_embeddings\": 1024", "'max_seq_len' (512) and 'max_position_embeddings'"},
        {"\"intermediate_size\": 100", "'intermediate_size' (100) is not a positive multiple"},
        {"\"intermediate_size\": 128", "'intermediate_size' (128) disagrees with ff_mult"},
        {"\"intermediate_size\": -256", "'intermediate_size'"},
        {"\"n_heads\": 24.0", "'n_heads' must be an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tiny_with(b, sizeof b, cases[i].extra);
        parse_bad(b, cases[i].want);
    }
    /* range errors name the spelling the file used */
    parse_bad("{\"hidden_size\": 0, \"num_attention_heads\": 4, \"num_hidden_layers\": 2, "
              "\"intermediate_size\": 256, \"max_seq_len\": 512}",
              "hidden_size is 0");
    parse_bad("{\"hidden_size\": 64, \"num_attention_heads\": 4, \"num_hidden_layers\": 0, "
              "\"intermediate_size\": 256, \"max_seq_len\": 512}",
              "num_hidden_layers is 0");
    parse_bad("{\"d_model\": 64, \"n_heads\": 5, \"n_layers\": 2, \"ff_mult\": 4, "
              "\"max_seq_len\": 512}",
              "n_heads (5) does not divide d_model (64)");
    parse_bad("{\"d_model\": 60, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, "
              "\"max_seq_len\": 512}",
              "head size d_model / n_heads = 15 is odd");
    parse_bad("{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 65, "
              "\"max_seq_len\": 512}",
              "ff_mult is 65");
    parse_bad("{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, "
              "\"max_seq_len\": -1}",
              "max_seq_len is -1");
    /* arguments */
    aria_model_config c;
    aria_error e;
    cr_expect_eq(aria_config_parse(NULL, "{}", 2, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_config_parse(&c, NULL, 3, &e), ARIA_ERR_ARG);
    cr_expect_eq(aria_config_parse(&c, NULL, 0, NULL), ARIA_ERR_FORMAT);
}

Test(config_check, each_rule)
{
    aria_model_config base = preset("tiny"), c;
    aria_error e = {{0}};
    cr_expect_eq(aria_config_check(NULL, &e), ARIA_ERR_ARG);
    static const struct {
        size_t field;
        int value;
        const char *want;
    } cases[] = {
        {offsetof(aria_model_config, d_model), 0, "d_model is 0"},
        {offsetof(aria_model_config, d_model), 65538, "d_model is 65538"},
        {offsetof(aria_model_config, n_heads), 0, "n_heads is 0"},
        {offsetof(aria_model_config, n_heads), 128, "n_heads is 128"},
        {offsetof(aria_model_config, n_heads), 3, "does not divide"},
        {offsetof(aria_model_config, n_heads), 64, "is odd"},
        {offsetof(aria_model_config, n_layers), -1, "n_layers is -1"},
        {offsetof(aria_model_config, n_layers), 1025, "n_layers is 1025"},
        {offsetof(aria_model_config, ff_mult), 0, "ff_mult is 0"},
        {offsetof(aria_model_config, max_seq_len), 0, "max_seq_len is 0"},
        {offsetof(aria_model_config, max_seq_len), (1 << 20) + 1, "max_seq_len"},
        {offsetof(aria_model_config, vocab_size), -5, "vocab_size is -5"},
        {offsetof(aria_model_config, emb_size), -1, "emb_size is -1"},
        {offsetof(aria_model_config, class_size), 65537, "class_size is 65537"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c = base;
        memcpy((char *)&c + cases[i].field, &cases[i].value, sizeof(int));
        memset(&e, 0, sizeof e);
        cr_expect_eq(aria_config_check(&c, &e), ARIA_ERR_FORMAT, "case %zu", i);
        cr_expect(strstr(e.msg, cases[i].want), "case %zu: '%s' lacks '%s'", i, e.msg,
                  cases[i].want);
    }
    c = base;
    c.emb_size = 0;
    c.class_size = 0;
    cr_expect_eq(aria_config_check(&c, &e), ARIA_OK);
}

Test(config_json, writes_reference_keys_and_round_trips)
{
    char buf[512];
    aria_model_config t = preset("tiny");
    int n = aria_config_to_json(&t, buf, sizeof buf);
    const char *want = "{\"d_model\":64,\"n_heads\":4,\"n_layers\":2,\"ff_mult\":4,\"drop_p\":0.0,"
                       "\"max_seq_len\":512,\"grad_checkpoint\":false,\"vocab_size\":17727,"
                       "\"emb_size\":32,\"class_size\":5}";
    cr_expect_str_eq(buf, want);
    cr_expect_eq(n, (int)strlen(want));
    aria_model_config m = preset("medium");
    aria_config_to_json(&m, buf, sizeof buf);
    cr_expect(strstr(buf, "emb_size") == NULL && strstr(buf, "class_size") == NULL, "%s", buf);
    static const char *names[] = {"medium", "medium-emb", "tiny"};
    for (int i = 0; i < 3; i++) {
        aria_model_config p = preset(names[i]);
        n = aria_config_to_json(&p, buf, sizeof buf);
        cr_assert(n > 0 && (size_t)n < sizeof buf);
        cr_expect(same(parse_ok(buf), p), "%s does not round-trip: %s", names[i], buf);
    }
    /* snprintf semantics: the full length, a truncated NUL-terminated copy */
    char small[10];
    memset(small, 'x', sizeof small);
    cr_expect_eq(aria_config_to_json(&t, small, sizeof small), (int)strlen(want));
    cr_expect_eq(small[9], '\0');
    cr_expect(strncmp(small, want, 9) == 0);
    cr_expect_eq(aria_config_to_json(&t, NULL, 0), (int)strlen(want));
    cr_expect_lt(aria_config_to_json(NULL, buf, sizeof buf), 0);
}

Test(config_read, files)
{
    char dir[] = "/tmp/aria_cfg_testXXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"d_model\": 64, \"n_heads\": 4, \"n_layers\": 2, \"ff_mult\": 4, \"max_seq_len\": 512,"
          " \"emb_size\": 32, \"class_size\": 5}\n",
          f);
    fclose(f);
    aria_model_config c;
    aria_error e = {{0}};
    cr_expect_eq(aria_config_read(&c, path, &e), ARIA_OK, "%s", e.msg);
    cr_expect(same(c, preset("tiny")));
    unlink(path);
    rmdir(dir);
    cr_expect_eq(aria_config_read(&c, path, &e), ARIA_ERR_IO);
    cr_expect_eq(aria_config_read(&c, NULL, &e), ARIA_ERR_ARG);
}

Test(config_read, shared_vectors_config)
{
    const char *path = "../shared/vectors/model/config.json";
    struct stat st;
    /* only a checkout without ../shared skips; a missing file there fails */
    if (stat("../shared", &st) != 0 || !S_ISDIR(st.st_mode))
        cr_skip("../shared is absent; %s not read", path);
    aria_model_config c;
    aria_error e = {{0}};
    cr_assert_eq(aria_config_read(&c, path, &e), ARIA_OK, "%s", e.msg);
    cr_expect(same(c, preset("tiny")));
}
