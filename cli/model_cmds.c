/*
 * model_cmds.c - the `aria` subcommands that run the transformer:
 * generate, embed, logits and init. Argument handling, progress and
 * output files only; the work is in libaria (model.c, generate.c).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --config: a preset name (medium, medium-emb, tiny) or a JSON file. */
int load_config_arg(const char *arg, aria_model_config *c) {
    if (aria_config_preset(c, arg) == ARIA_OK) return 0;
    aria_error err = {{0}};
    if (aria_config_read(c, arg, &err) != ARIA_OK) {
        fail_file(arg, err.msg);
        return -1;
    }
    return 0;
}

/* The weights at `path`, shaped by --config when given (else by the file's
   metadata or a config.json beside it), running on a kernel context of
   --threads and the environment (*ctx, to free after the model); errors
   are printed. */
static aria_model *load_model(const char *path, const char *cfg_arg, int threads, aria_ctx **ctx) {
    aria_model_config cfg;
    *ctx = NULL;
    if (cfg_arg && load_config_arg(cfg_arg, &cfg)) return NULL;
    aria_model *m = NULL;
    aria_error err = {{0}};
    aria_ctx_opts co = cli_ctx_opts(threads);
    if (aria_ctx_new(ctx, &co, &err) != ARIA_OK) {
        fprintf(stderr, "aria: %s\n", err.msg);
        return NULL;
    }
    if (aria_model_load(&m, path, cfg_arg ? &cfg : NULL, &err) != ARIA_OK) {
        fail_file(path, err.msg);
        aria_ctx_free(*ctx);
        *ctx = NULL;
        return NULL;
    }
    aria_model_set_ctx(m, *ctx);
    return m;
}

/* A file of token ids (the list rule of aria_ids_parse); errors are
   printed. An empty list is an error here: a model needs a token. */
static int read_ids(const char *path, int vocab, int32_t **out, size_t *n) {
    aria_error err = {{0}};
    if (aria_ids_read_file(path, vocab, out, n, &err) != ARIA_OK) {
        fail_file(path, err.msg);
        return -1;
    }
    if (*n == 0) {
        fail_file(path, "no token ids");
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* aria generate                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
    double t0;
    int tty;
    int rows;
} progress_state;

static void gen_progress(void *ctx, int step, int max_new, int rows_done) {
    progress_state *p = ctx;
    if (!p->tty || (step % 8 && step != max_new)) return;
    double dt = now_s() - p->t0;
    fprintf(stderr, "\rgenerating: %d/%d steps, %d/%d variations ended, %.1f tokens/s   ", step, max_new,
            rows_done, p->rows, dt > 0 ? step * p->rows / dt : 0.0);
}

static void help_generate(void) {
    puts("usage: aria generate --model M.safetensors (--prompt IN.mid | --prompt-ids FILE) [options]\n"
         "\n"
         "Continues a performance. Writes DIR/res_1.mid ... one file per variation.\n"
         "\n"
         "options:\n"
         "  --model FILE          weights (safetensors; e.g. aria-medium-gen)\n"
         "  --config CFG          a config JSON or a preset (medium, medium-emb, tiny); default: the\n"
         "                        file's metadata, else config.json beside the weights\n"
         "  --prompt FILE.mid     MIDI prompt\n"
         "  --prompt-ids FILE     prompt as token ids (instead of --prompt)\n"
         "  --prompt-seconds S    seconds of the MIDI prompt to keep (default 15)\n"
         "  --max-new N           tokens to generate at most (default 2048)\n"
         "  --temp T              sampling temperature, 0 = greedy (default 0.98)\n"
         "  --min-p P             min-p filter (default 0.035; 0 turns it off; off when only\n"
         "                        --top-p is given)\n"
         "  --top-p P             nucleus filter (default off)\n"
         "  --variations N        continuations generated together (default 1)\n"
         "  --seed S              random seed (default: from the clock, printed)\n"
         "  --end                 steer the piece to an end within the budget (<D> near the end)\n"
         "  --no-mask             do not mask tokens that cannot come next (default: masked)\n"
         "  --out-dir DIR         where res_*.mid go (default .)\n"
         "  --print-ids           print each variation's ids (prompt included) on stdout\n"
         "  --threads N           CPU threads (default: all)\n"
         "  -h, --help            this help");
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *cfg_arg = NULL, *prompt = NULL, *prompt_ids = NULL, *out_dir = ".";
    double prompt_s = 15.0, temp = 0.98, min_p = 0.035, top_p = 0.0;
    long long max_new = 2048, variations = 1, seed = -1, threads = 0;
    int end = 0, mask = 1, print_ids = 0, min_p_given = 0;
    enum { O_MODEL = 256, O_CFG, O_PROMPT, O_PIDS, O_PSEC, O_MAXNEW, O_TEMP, O_MINP, O_TOPP, O_VAR, O_SEED,
           O_END, O_NOMASK, O_OUT, O_PRINT, O_THREADS };
    static const struct option lo[] = {
        {"model", required_argument, 0, O_MODEL},     {"config", required_argument, 0, O_CFG},
        {"prompt", required_argument, 0, O_PROMPT},   {"prompt-ids", required_argument, 0, O_PIDS},
        {"prompt-seconds", required_argument, 0, O_PSEC}, {"max-new", required_argument, 0, O_MAXNEW},
        {"temp", required_argument, 0, O_TEMP},       {"min-p", required_argument, 0, O_MINP},
        {"top-p", required_argument, 0, O_TOPP},      {"variations", required_argument, 0, O_VAR},
        {"seed", required_argument, 0, O_SEED},       {"end", no_argument, 0, O_END},
        {"no-mask", no_argument, 0, O_NOMASK},        {"out-dir", required_argument, 0, O_OUT},
        {"print-ids", no_argument, 0, O_PRINT},       {"threads", required_argument, 0, O_THREADS},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_CFG: cfg_arg = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_PIDS: prompt_ids = optarg; break;
        case O_PSEC:
            if (parse_double(optarg, &prompt_s) || prompt_s < 0) return usage_error("generate", "--prompt-seconds wants a number >= 0");
            break;
        case O_MAXNEW:
            if (parse_long(optarg, 1, 8192, &max_new)) return usage_error("generate", "--max-new wants 1..8192");
            break;
        case O_TEMP:
            if (parse_double(optarg, &temp) || temp < 0 || temp > 2) return usage_error("generate", "--temp wants 0..2");
            break;
        case O_MINP:
            if (parse_double(optarg, &min_p) || min_p < 0 || min_p > 1) return usage_error("generate", "--min-p wants 0..1");
            min_p_given = 1;
            break;
        case O_TOPP:
            if (parse_double(optarg, &top_p) || top_p <= 0 || top_p > 1) return usage_error("generate", "--top-p wants a number in (0, 1]");
            break;
        case O_VAR:
            if (parse_long(optarg, 1, 64, &variations)) return usage_error("generate", "--variations wants 1..64");
            break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &seed)) return usage_error("generate", "--seed wants a non-negative integer");
            break;
        case O_END: end = 1; break;
        case O_NOMASK: mask = 0; break;
        case O_OUT: out_dir = optarg; break;
        case O_PRINT: print_ids = 1; break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &threads)) return usage_error("generate", "--threads wants 1..256");
            break;
        case 'h': help_generate(); return 0;
        default: return usage_error("generate", "unknown option");
        }
    }
    if (optind != argc) return usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!model_path) return usage_error("generate", "--model is required");
    if (!prompt == !prompt_ids) return usage_error("generate", "give one of --prompt and --prompt-ids");
    if (top_p > 0 && !min_p_given) min_p = 0.0;

    struct stat st;
    if (stat(out_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail_file(out_dir, "not a directory");
        return EXIT_INPUT;
    }
    aria_ctx *ctx;
    aria_model *m = load_model(model_path, cfg_arg, (int)threads, &ctx);
    if (!m) return EXIT_INPUT;
    const aria_model_config *mc = aria_model_get_config(m);
    aria_tokenizer *tk = aria_tokenizer_for_model(m);
    int status = EXIT_INPUT;
    int32_t *pids = NULL;
    size_t np = 0;
    aria_error err = {{0}};
    if (prompt_ids) {
        if (read_ids(prompt_ids, mc->vocab_size, &pids, &np)) goto out;
    } else {
        aria_prompt_info info;
        int rc = aria_prompt_from_file(tk, prompt, (int64_t)(prompt_s * 1000.0 + 0.5), &pids, &np, &info, &err);
        if (info.window_before_first_note)
            fprintf(stderr,
                    "aria: warning: %s: its first note starts at %.1f s, after the %.1f s prompt window "
                    "(--prompt-seconds): the prompt has no notes\n",
                    prompt, info.first_note_ms / 1000.0, prompt_s);
        if (rc) {
            fail_file(prompt, err.msg);
            goto out;
        }
    }
    if (seed < 0) {
        seed = (long long)(time(NULL) ^ ((long long)getpid() << 16)) & 0x7fffffff;
        fprintf(stderr, "aria: seed %lld\n", seed);
    }
    progress_state ps = {now_s(), isatty(2), (int)variations};
    aria_generate_opts go = {(int)variations, (int)max_new, (uint64_t)seed,
                             {(float)temp, (float)min_p, (float)top_p, mask, end}, gen_progress, &ps};
    int32_t **seqs = calloc((size_t)variations, sizeof *seqs);
    size_t *lens = calloc((size_t)variations, sizeof *lens);
    double t0 = now_s();
    int rc = aria_generate(m, tk, pids, np, &go, seqs, lens, &err);
    double dt = now_s() - t0;
    if (ps.tty) fputc('\n', stderr);
    if (rc) {
        fail_file(model_path, err.msg);
        free(seqs);
        free(lens);
        goto out;
    }
    size_t new_tokens = 0;
    status = 0;
    for (long long v = 0; v < variations; v++) {
        new_tokens += lens[v] - np;
        char *line;
        size_t len;
        if (print_ids && aria_ids_format(seqs[v], lens[v], &line, &len, &err) == ARIA_OK) {
            fwrite(line, 1, len, stdout);
            free(line);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/res_%lld.mid", out_dir, v + 1);
        if (aria_ids_write_midi(tk, seqs[v], lens[v], path, NULL, &err) != ARIA_OK) {
            fail_file(path, err.msg);
            status = EXIT_INPUT;
        }
        free(seqs[v]);
    }
    fprintf(stderr, "aria: %zu tokens in %.2f s (%zu prompt tokens): %.2f tokens/s\n", new_tokens, dt, np,
            dt > 0 ? new_tokens / dt : 0.0);
    free(seqs);
    free(lens);
out:
    free(pids);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria embed                                                             */
/* ---------------------------------------------------------------------- */

static void help_embed(void) {
    puts("usage: aria embed --model EMB.safetensors [-o OUT.npy] FILE.mid...\n"
         "\n"
         "Global embedding of each file (mean over 300-note chunks of the embedding at <E>), one\n"
         "row per file: as TSV on stdout (file name, then the values), or as a float32 .npy.\n"
         "Files that are not piano-only are refused, as the reference does.\n"
         "\n"
         "options:\n"
         "  --model FILE     embedding model weights (e.g. aria-medium-embedding)\n"
         "  --config CFG     config JSON or preset (default: metadata / config.json beside)\n"
         "  -o, --output F   write a .npy [files][emb_size] instead of TSV\n"
         "  --threads N      CPU threads (default: all)\n"
         "  -h, --help       this help");
}

/* The options embed and logits share: --model, --config, -o/--output,
   --threads, and --ids when `ids` is not NULL. Returns -1 to go on, else
   the exit status (help printed, or a usage error). */
typedef struct {
    const char *model, *config, *output, *ids;
    long long threads;
} model_args;

static int parse_model_args(int argc, char **argv, const char *cmd, int with_ids, void (*help)(void),
                            model_args *a) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"config", required_argument, 0, 'c'},
                                       {"ids", required_argument, 0, 'i'},   {"output", required_argument, 0, 'o'},
                                       {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'c': a->config = optarg; break;
        case 'i':
            if (!with_ids) return usage_error(cmd, "unknown option");
            a->ids = optarg;
            break;
        case 'o': a->output = optarg; break;
        case 't':
            if (parse_long(optarg, 1, 256, &a->threads)) return usage_error(cmd, "--threads wants 1..256");
            break;
        case 'h': help(); return 0;
        default: return usage_error(cmd, "unknown option");
        }
    }
    return -1;
}

int cmd_embed(int argc, char **argv) {
    model_args a = {0};
    int parsed = parse_model_args(argc, argv, "embed", 0, help_embed, &a);
    if (parsed >= 0) return parsed;
    const char *model_path = a.model, *cfg_arg = a.config, *out = a.output;
    long long threads = a.threads;
    if (!model_path) return usage_error("embed", "--model is required");
    if (optind >= argc) return usage_error("embed", "no input file");
    aria_ctx *ctx;
    aria_model *m = load_model(model_path, cfg_arg, (int)threads, &ctx);
    if (!m) return EXIT_INPUT;
    int E = aria_output_dim(m, ARIA_OUT_EMB);
    if (E <= 0) {
        fail_file(model_path, "not an embedding model (no emb_head.weight)");
        aria_model_free(m);
        aria_ctx_free(ctx);
        return EXIT_INPUT;
    }
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    size_t nf = (size_t)(argc - optind);
    float *rows = malloc(nf * (size_t)E * sizeof *rows);
    int status = rows ? 0 : EXIT_INPUT;
    for (size_t i = 0; i < nf && rows; i++) {
        const char *f = argv[optind + (int)i];
        aria_score s;
        aria_error err = {{0}};
        if (load_score(f, 0, &s)) {
            status = EXIT_INPUT;
            continue;
        }
        int rc = aria_embed_score(m, tk, &s, rows + i * (size_t)E, NULL, &err);
        aria_score_free(&s);
        if (rc) {
            fail_file(f, err.msg);
            status = EXIT_INPUT;
            continue;
        }
        if (!out) {
            printf("%s", f);
            for (int k = 0; k < E; k++) printf("\t%.9g", rows[i * (size_t)E + (size_t)k]);
            printf("\n");
        }
        if (isatty(2) && nf > 1) fprintf(stderr, "\rembedded %zu/%zu files", i + 1, nf);
    }
    if (isatty(2) && nf > 1) fputc('\n', stderr);
    if (out && status == 0) {
        aria_error err = {{0}};
        if (aria_npy_write_f32(out, rows, nf, (size_t)E, &err) != ARIA_OK) {
            fail_file(out, err.msg);
            status = EXIT_INPUT;
        }
    } else if (out) {
        fprintf(stderr, "aria: %s not written: some files failed\n", out);
    }
    free(rows);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria logits                                                            */
/* ---------------------------------------------------------------------- */

static void help_logits(void) {
    puts("usage: aria logits --model M.safetensors --ids FILE [-o logits.bin]\n"
         "\n"
         "Runs the ids in FILE (whitespace-separated, or a JSON array) through the model and\n"
         "writes the logits of every position: float32, row-major [T][vocab_size].\n"
         "\n"
         "options:\n"
         "  --config CFG     config JSON or preset (default: metadata / config.json beside)\n"
         "  -o, --output F   output file (default logits.bin)\n"
         "  --threads N      CPU threads (default: all)");
}

int cmd_logits(int argc, char **argv) {
    model_args a = {.output = "logits.bin"};
    int parsed = parse_model_args(argc, argv, "logits", 1, help_logits, &a);
    if (parsed >= 0) return parsed;
    const char *model_path = a.model, *cfg_arg = a.config, *ids_path = a.ids, *out = a.output;
    long long threads = a.threads;
    if (!model_path || !ids_path) return usage_error("logits", "--model and --ids are required");
    if (optind != argc) return usage_error("logits", "unexpected argument '%s'", argv[optind]);
    aria_ctx *ctx;
    aria_model *m = load_model(model_path, cfg_arg, (int)threads, &ctx);
    if (!m) return EXIT_INPUT;
    int V = aria_output_dim(m, ARIA_OUT_LOGITS), status = EXIT_INPUT;
    int32_t *ids = NULL;
    size_t n = 0;
    float *lg = NULL;
    aria_session *s = NULL;
    aria_error err = {{0}};
    if (V <= 0) {
        fail_file(model_path, "the model has no lm_head");
        goto done;
    }
    if (read_ids(ids_path, V, &ids, &n)) goto done;
    if (aria_session_new(&s, m, 1, (int)n, &err) != ARIA_OK) {
        fail_file(ids_path, err.msg);
        goto done;
    }
    lg = malloc(n * (size_t)V * sizeof *lg);
    if (!lg || aria_session_forward(s, ids, (int)n, ARIA_OUT_LOGITS, 1, lg, &err) != ARIA_OK) {
        fail_file(ids_path, lg ? err.msg : "out of memory");
        goto done;
    }
    if (aria_write_file_atomic(out, lg, n * (size_t)V * sizeof *lg, &err) != ARIA_OK) {
        fail_file(out, err.msg);
        goto done;
    }
    status = 0;
done:
    free(lg);
    free(ids);
    aria_session_free(s);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria init                                                              */
/* ---------------------------------------------------------------------- */

int cmd_init(int argc, char **argv) {
    const char *cfg_arg = NULL, *out = NULL, *heads_arg = NULL;
    long long seed = 0;
    aria_dtype dtype = ARIA_DT_F32;
    static const struct option lo[] = {{"config", required_argument, 0, 'c'}, {"seed", required_argument, 0, 's'},
                                       {"heads", required_argument, 0, 'H'},  {"dtype", required_argument, 0, 'd'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'c': cfg_arg = optarg; break;
        case 's':
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &seed)) return usage_error("init", "--seed wants a non-negative integer");
            break;
        case 'H': heads_arg = optarg; break;
        case 'd':
            if (!strcmp(optarg, "f32") || !strcmp(optarg, "float32")) dtype = ARIA_DT_F32;
            else if (!strcmp(optarg, "bf16") || !strcmp(optarg, "bfloat16")) dtype = ARIA_DT_BF16;
            else return usage_error("init", "--dtype wants f32 or bf16");
            break;
        case 'o': out = optarg; break;
        case 'h':
            puts("usage: aria init --config CFG -o OUT.safetensors [options]\n"
                 "\n"
                 "Writes a model with random weights and the official tensor names, for tests and\n"
                 "benchmarks.\n"
                 "\n"
                 "options:\n"
                 "  --config CFG     config JSON or preset (medium, medium-emb, tiny)\n"
                 "  --heads LIST     comma-separated: lm, emb, cls (default: emb when the config has\n"
                 "                   emb_size, else lm)\n"
                 "  --dtype T        f32 or bf16 (default f32)\n"
                 "  --seed S         random seed (default 0)\n"
                 "  -o, --output F   the safetensors file to write");
            return 0;
        default: return usage_error("init", "unknown option");
        }
    }
    if (!cfg_arg || !out) return usage_error("init", "--config and -o are required");
    if (optind != argc) return usage_error("init", "unexpected argument '%s'", argv[optind]);
    aria_model_config cfg;
    if (load_config_arg(cfg_arg, &cfg)) return EXIT_INPUT;
    int heads = cfg.emb_size > 0 ? ARIA_HEAD_EMB : ARIA_HEAD_LM;
    if (heads_arg) {
        heads = 0;
        char buf[64];
        snprintf(buf, sizeof buf, "%s", heads_arg);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (!strcmp(tok, "lm")) heads |= ARIA_HEAD_LM;
            else if (!strcmp(tok, "emb")) heads |= ARIA_HEAD_EMB;
            else if (!strcmp(tok, "cls")) heads |= ARIA_HEAD_CLS;
            else return usage_error("init", "unknown head '%s' (lm, emb, cls)", tok);
        }
    }
    aria_model *m;
    aria_error err = {{0}};
    if (aria_model_new_random(&m, &cfg, heads, (uint64_t)seed, &err) != ARIA_OK) {
        fail_file(cfg_arg, err.msg);
        return EXIT_INPUT;
    }
    int rc = aria_model_save(m, out, dtype, &err);
    aria_model_free(m);
    if (rc) {
        fail_file(out, err.msg);
        return EXIT_INPUT;
    }
    return 0;
}
