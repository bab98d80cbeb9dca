/*
 * quant_cmd.c - `aria quantize` (a q8_0 / q4_0 / q4_k copy of a weights file),
 * `aria eval-loss` (the mean next-token loss over a dataset split: how a
 * quantized file compares with its original) and what `aria info` prints
 * for a weights file (each tensor's type and shape). Argument handling
 * and output only; the work is in libaria (src/model/quantize.c,
 * src/tasks/evalloss.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"

static double clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------- */
/* aria quantize                                                          */
/* ---------------------------------------------------------------------- */

static void help_quantize(void) {
    printf("usage: aria quantize --type q8_0|q4_0|q4_k|bf16|f32 [options] IN.safetensors -o OUT.safetensors\n"
           "\n"
           "Writes a copy of a weights file whose matrices (every layer's and the heads')\n"
           "are block-quantized: q8_0 = blocks of 32 int8 with one float16 scale (8.5 bits\n"
           "a weight), q4_0 = blocks of 32 4-bit integers with one float16 scale (4.5 bits),\n"
           "q4_k = super-blocks of 256 4-bit integers, a 6-bit scale and min per 32 and\n"
           "float16 d and dmin per 256 (4.5 bits; less error than q4_0; matrices whose\n"
           "columns are not a multiple of 256 stay bfloat16).\n"
           "The token embedding stays bfloat16 (--embedding-q8: q8_0 too), LayerNorm\n"
           "vectors float32. Every model command reads the result; `aria info OUT` lists\n"
           "each tensor's type. The layout is in docs/quantization.md.\n"
           "--type bf16 or f32 converts instead: every matrix to that type (bf16 rounds\n"
           "to nearest even), vectors float32, e.g. a training run's float32 weights to\n"
           "a bf16 file half the size. The input's metadata (class names, ...) is kept.\n"
           "\n"
           "options:\n"
           "  --type T          q8_0, q4_0, q4_k, bf16 or f32 (required)\n"
           "  --config CFG      a config JSON or a preset (%s); default: the\n"
           "                    file's metadata, else config.json beside it\n"
           "  --embedding-q8    the token embedding as q8_0 as well\n"
           "  -o, --output F    the file to write (atomically: nothing is left on failure)\n"
           "  -h, --help        this help\n",
           preset_list());
}

int cmd_quantize(int argc, char **argv) {
    const char *type_arg = NULL, *cfg_arg = NULL, *out = NULL;
    int emb_q8 = 0;
    static const struct option lo[] = {{"type", required_argument, 0, 't'},   {"config", required_argument, 0, 'c'},
                                       {"embedding-q8", no_argument, 0, 'e'}, {"output", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 't': type_arg = optarg; break;
        case 'c': cfg_arg = optarg; break;
        case 'e': emb_q8 = 1; break;
        case 'o': out = optarg; break;
        case 'h': help_quantize(); return 0;
        default: return option_error("quantize", argv, "o:h");
        }
    }
    if (!type_arg) return usage_error("quantize", "--type is required (q8_0, q4_0, q4_k, bf16 or f32)");
    aria_quantize_opts qo = {.embedding_q8 = emb_q8};
    if (!strcmp(type_arg, "q8_0")) qo.type = ARIA_DT_Q8_0;
    else if (!strcmp(type_arg, "q4_0")) qo.type = ARIA_DT_Q4_0;
    else if (!strcmp(type_arg, "q4_k")) qo.type = ARIA_DT_Q4_K;
    else if (!strcmp(type_arg, "bf16")) qo.type = ARIA_DT_BF16;
    else if (!strcmp(type_arg, "f32")) qo.type = ARIA_DT_F32;
    else return usage_error("quantize", "unknown --type '%s' (q8_0, q4_0, q4_k, bf16 or f32)", type_arg);
    if (optind >= argc) return usage_error("quantize", "no input file");
    if (optind + 1 < argc) return usage_error("quantize", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return usage_error("quantize", "-o OUT.safetensors is required");
    const char *in = argv[optind];
    if (access(in, R_OK) != 0) {
        fail_file(in, strerror(errno));
        return EXIT_INPUT;
    }
    aria_model_config cfg;
    if (cfg_arg && load_config_arg(cfg_arg, &cfg)) return EXIT_INPUT;
    aria_error err = {{0}};
    double t0 = clock_s();
    int rc = aria_quantize_file(in, out, cfg_arg ? &cfg : NULL, &qo, &err);
    if (rc) {
        /* a file that cannot be written is the output's problem; the rest
           is about the input */
        fail_file(rc == ARIA_ERR_IO ? out : in, err.msg);
        return EXIT_INPUT;
    }
    struct stat si, so;
    double mi = stat(in, &si) == 0 ? (double)si.st_size / 1e6 : 0, mo = stat(out, &so) == 0 ? (double)so.st_size / 1e6 : 0;
    fprintf(stderr, "aria quantize: wrote %s (%s), %.1f MB from %.1f MB, in %.1f s\n", out, type_arg, mo, mi,
            clock_s() - t0);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* aria info MODEL.safetensors                                            */
/* ---------------------------------------------------------------------- */

int cli_model_info(const char *path) {
    aria_model *m;
    aria_error err = {{0}};
    if (aria_model_load(&m, path, NULL, &err) != ARIA_OK) {
        fail_file(path, err.msg);
        return EXIT_INPUT;
    }
    const aria_model_config *c = aria_model_get_config(m);
    int heads = aria_model_heads(m);
    printf("%s\n", path);
    printf("model:   d_model %d, %d layers, %d heads, ff %d, context %d, vocab %d", c->d_model, c->n_layers,
           c->n_heads, c->ff_mult * c->d_model, c->max_seq_len, c->vocab_size);
    if (c->emb_size) printf(", emb %d", c->emb_size);
    if (c->class_size) printf(", classes %d", c->class_size);
    printf("\nheads:   %s%s%s%s\n", heads & ARIA_HEAD_LM ? "lm " : "", heads & ARIA_HEAD_EMB ? "emb " : "",
           heads & ARIA_HEAD_CLS ? "cls " : "", heads & ARIA_HEAD_ADAPTER ? "adapter" : "");
    /* per type: tensors, weights, bytes; then every tensor */
    static const aria_dtype types[] = {ARIA_DT_F32, ARIA_DT_BF16, ARIA_DT_Q8_0, ARIA_DT_Q4_0, ARIA_DT_Q4_K};
    size_t n = aria_model_n_tensors(m), cnt[5] = {0};
    double w[5] = {0}, bytes[5] = {0};
    for (size_t i = 0; i < n; i++) {
        aria_tensor t;
        aria_model_tensor(m, i, &t);
        for (int k = 0; k < 5; k++)
            if (t.dtype == types[k]) {
                cnt[k]++;
                double e = (double)t.shape[0] * (t.ndim == 2 ? (double)t.shape[1] : 1.0);
                w[k] += e;
                /* quantized: the integers and a float16 scale per 32 (q4_k:
                   16 bytes per 256, the same) */
                bytes[k] += (double)t.nbytes + (k >= 2 ? e / 32 * 2 : 0);
            }
    }
    printf("weights:");
    for (int k = 0, first = 1; k < 5; k++)
        if (cnt[k]) {
            printf("%s %s %zu tensors, %.1f M weights, %.1f MB", first ? "" : ";", aria_dtype_name(types[k]), cnt[k],
                   w[k] / 1e6, bytes[k] / 1e6);
            first = 0;
        }
    printf("\ntensors:\n");
    for (size_t i = 0; i < n; i++) {
        aria_tensor t;
        aria_model_tensor(m, i, &t);
        if (t.ndim == 2)
            printf("  %-48s %-5s [%lld, %lld]\n", t.name, aria_dtype_name(t.dtype), (long long)t.shape[0],
                   (long long)t.shape[1]);
        else
            printf("  %-48s %-5s [%lld]\n", t.name, aria_dtype_name(t.dtype), (long long)t.shape[0]);
    }
    aria_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* aria eval-loss                                                         */
/* ---------------------------------------------------------------------- */

static void eval_progress(void *ctx, size_t done, size_t total) {
    double *t0 = ctx;
    if (!isatty(2)) return;
    fprintf(stderr, "\revaluating: %zu/%zu sequences, %.1f s   ", done, total, clock_s() - *t0);
    if (done == total) fprintf(stderr, "\n");
}

static void help_eval_loss(void) {
    printf("usage: aria eval-loss --model M.safetensors --data DIR [options]\n"
           "\n"
           "The mean next-token loss (nats; and its perplexity) of a model over a split of\n"
           "an `aria dataset` directory, <P> targets left out as in training. Prints one\n"
           "line on stdout: split, loss, perplexity, targets, sequences.\n"
           "\n"
           "options:\n"
           "  --model FILE      weights (any type: f32, bf16, q8_0, q4_0, q4_k)\n"
           "  --data DIR        the dataset directory\n"
           "  --split S         val or train (default val)\n"
           "  --max-seqs N      the first N sequences only (default: all)\n"
           "  --config CFG      a config JSON or a preset (%s)\n"
           "  --threads N       CPU threads (default: all)\n"
           "  -h, --help        this help\n",
           preset_list());
}

int cmd_eval_loss(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *split = "val", *cfg_arg = NULL;
    long long max_seqs = 0, threads = 0;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},   {"data", required_argument, 0, 'd'},
                                       {"split", required_argument, 0, 's'},   {"max-seqs", required_argument, 0, 'n'},
                                       {"config", required_argument, 0, 'c'},  {"threads", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 's': split = optarg; break;
        case 'c': cfg_arg = optarg; break;
        case 'n':
            if (parse_long(optarg, 1, 1000000000, &max_seqs)) return usage_error("eval-loss", "--max-seqs wants a positive integer");
            break;
        case 't':
            if (parse_long(optarg, 0, 4096, &threads)) return usage_error("eval-loss", "--threads wants 0..4096");
            break;
        case 'h': help_eval_loss(); return 0;
        default: return option_error("eval-loss", argv, "h");
        }
    }
    if (!model || !data) return usage_error("eval-loss", "--model and --data are required");
    if (optind != argc) return usage_error("eval-loss", "unexpected argument '%s'", argv[optind]);
    if (strcmp(split, "val") && strcmp(split, "train")) return usage_error("eval-loss", "--split wants val or train");
    aria_model_config cfg;
    if (cfg_arg && load_config_arg(cfg_arg, &cfg)) return EXIT_INPUT;
    aria_error err = {{0}};
    aria_ctx *ctx = NULL;
    aria_ctx_opts co = cli_ctx_opts((int)threads);
    if (aria_ctx_new(&ctx, &co, &err) != ARIA_OK) {
        fprintf(stderr, "aria: %s\n", err.msg);
        return EXIT_INPUT;
    }
    aria_model *m;
    if (aria_model_load(&m, model, cfg_arg ? &cfg : NULL, &err) != ARIA_OK) {
        fail_file(model, err.msg);
        aria_ctx_free(ctx);
        return EXIT_INPUT;
    }
    aria_model_set_ctx(m, ctx);
    aria_eval_result r;
    double t0 = clock_s();
    int rc = aria_eval_loss(m, data, split, (size_t)max_seqs, eval_progress, &t0, &r, &err);
    if (rc) {
        fail_file(rc == ARIA_ERR_ARG && strstr(err.msg, "lm_head") ? model : data, err.msg);
    } else {
        printf("%s loss %.6f ppl %.4f targets %llu sequences %zu\n", split, r.loss, exp(r.loss),
               (unsigned long long)r.tokens, r.sequences);
        fprintf(stderr, "aria eval-loss: %.1f s, %.0f tokens/s\n", clock_s() - t0,
                (double)r.tokens / (clock_s() - t0 + 1e-9));
    }
    aria_model_free(m);
    aria_ctx_free(ctx);
    return rc ? EXIT_INPUT : (fflush(stdout) == 0 ? 0 : EXIT_INPUT);
}
