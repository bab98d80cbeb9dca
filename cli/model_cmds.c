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
#include "base/json.h"
#include "cli.h"

/* The most tokens (prompt + new) aria_generate runs, whatever the model's
   context: the reference's cap (src/tasks/generate.c). */
#define GEN_MAX_CONTEXT 8096
/* The model `aria generate` uses without --model (models/NAME, cli/bundled.c). */
#define BUNDLED_GEN "aria-small-gen"
/* ... and the one `aria embed` uses (a contrastive finetune of it). */
#define BUNDLED_EMB "aria-small-emb"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --config: a preset name (preset_list(): the files of configs/) or a
   JSON file. A name that is neither says what the presets are. */
int load_config_arg(const char *arg, aria_model_config *c) {
    if (aria_config_preset(c, arg) == ARIA_OK) return 0;
    aria_error err = {{0}};
    if (aria_config_read(c, arg, &err) != ARIA_OK) {
        struct stat st;
        if (stat(arg, &st) != 0 && !strchr(arg, '/') && !strstr(arg, ".json")) {
            fprintf(stderr, "aria: %s: neither a preset (%s) nor a config file\n", arg, preset_list());
            return -1;
        }
        fail_file(arg, err.msg);
        return -1;
    }
    return 0;
}

/* What a model without an lm_head is told (generate, logits). */
#define NO_LM_HEAD "the model has no lm_head (an embedding or classifier model): use a generation " \
                   "checkpoint such as aria-medium-gen, or make one with `aria init --heads lm`"

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
    double first; /* when the first step was sampled: the prompt's prefill is over */
    int tty;
    int rows;
} progress_state;

static void gen_progress(void *ctx, int step, int max_new, int rows_done) {
    progress_state *p = ctx;
    if (step == 1) p->first = now_s();
    if (!p->tty || (step % 8 && step != max_new)) return;
    double dt = now_s() - p->t0;
    fprintf(stderr, "\rgenerating: %d/%d steps, %d/%d variations ended, %.1f tokens/s   ", step, max_new,
            rows_done, p->rows, dt > 0 ? step * p->rows / dt : 0.0);
}

static void help_generate(void) {
    printf("usage: aria generate [--model M.safetensors] (--prompt IN.mid | --prompt-ids FILE) [options]\n"
           "       aria generate --model GEN.safetensors --prompt IN.mid (--embedding ROW.npy |\n"
           "                     --embedding-model EMB.safetensors --embedding-midi STYLE.mid) [--cfg G]\n"
           "\n"
           "Continues a performance. Writes DIR/res_1.mid ... one file per variation.\n"
           "\n"
           "options:\n"
           "  --model FILE          weights (safetensors; e.g. aria-medium-gen); default: the bundled\n"
           "                        model, models/" BUNDLED_GEN "/model.safetensors\n"
           "  --config CFG          a config JSON or a preset (%s);\n"
           "                        default: the file's metadata, else config.json beside the weights\n",
           preset_list());
    puts("  --prompt FILE.mid     MIDI prompt (a damaged file is read as far as it goes, with a\n"
         "                        warning; --strict refuses it)\n"
         "  --prompt-ids FILE     prompt as token ids (instead of --prompt)\n"
         "  --prompt-seconds S    seconds of the MIDI prompt to keep (default 15)\n"
         "  --max-new N           tokens to generate at most, 1..8192 (default 2048); the\n"
         "                        prompt and the new tokens share the model's context (a\n"
         "                        warning says when an explicit N does not fit)\n"
         "  --temp T              sampling temperature, 0..2, 0 = greedy (default 0.98)\n"
         "  --min-p P             min-p filter, 0..1 (default 0.035; 0 turns it off; off when\n"
         "                        only --top-p is given)\n"
         "  --top-p P             nucleus filter, 0.5..1 (default off)\n"
         "                        A generation_config.json beside the weights (keys temperature,\n"
         "                        min_p, top_p) replaces these three defaults; the bundled model\n"
         "                        has one (docs/generation.md)\n"
         "  --variations N        continuations generated together, 1..64 (default 1)\n"
         "  --seed S              random seed (default: from the clock, printed)\n"
         "  --end                 steer the piece to an end within the budget (<D> near the end)\n"
         "  --no-mask             do not mask tokens that cannot come next: broken note triples,\n"
         "                        onsets running backwards, a key struck again within 30 ms, a\n"
         "                        silence over --max-silence (default: masked; the reference\n"
         "                        masks nothing)\n"
         "  --max-silence S       with the mask, never leave every note silent for more than S\n"
         "                        seconds, or the prompt's own longest silence if longer\n"
         "                        (default 4; 0 turns this off)\n"
         "  --out-dir DIR         where res_*.mid go (default .; created if missing)\n"
         "  --strict              refuse a damaged prompt file\n"
         "  --print-ids           print each variation's ids (prompt included) on stdout\n"
         "  --render              also write DIR/res_N.wav (aria render: FluidSynth, a GM soundfont)\n"
         "  --soundfont FILE      the soundfont for --render (default: the General MIDI one found)\n"
         "  --roll                also write DIR/res_N.png (aria roll: prompt blue, continuation orange)\n"
         "  --threads N           CPU threads (default: all)\n"
         "  -h, --help            this help\n"
         "\n"
         "steering by an embedding (classifier-free guidance; the model needs embedding_adapter):\n"
         "  --embedding FILE.npy  the style embedding: one float32 row of the adapter's size\n"
         "  --embedding-model F   an embedding model (e.g. aria-medium-embedding) ...\n"
         "  --embedding-midi F    ... and the MIDI file whose global embedding steers\n"
         "  --cfg G               guidance, 0..10 (default 1: the conditioned model; 0: unconditioned;\n"
         "                        above 1: pushed further towards the style); <D> is never sampled\n"
         "  --cfg-warmup N        steps over which guidance rises linearly from 0, 0..8192\n"
         "                        (default min(250, --max-new); 0: none)");
}

/* Where the prompt ends in a continuation's MIDI file (1 tick = 1 ms from
   its first token): just after the prompt's last onset, so that the roll
   colours the prompt's notes apart from the new ones. */
static double prompt_end_s(const aria_tokenizer *tk, const int32_t *ids, size_t n) {
    aria_token *toks = malloc((n ? n : 1) * sizeof *toks);
    if (!toks) return -1;
    aria_tok_decode(tk, ids, n, toks);
    double s = (aria_tok_length_ms(toks, n, 1) + 0.5) / 1000.0;
    free(toks);
    return s;
}

/* The sampling settings a model's folder recommends: generation_config.json
   beside the weights (the name and keys of Hugging Face's file for this:
   "temperature", "min_p", "top_p"; other keys are ignored). Each replaces
   the default of an option not given on the command line. 0: no file, or
   read (a line on stderr says what it set); -1: a bad file, said on stderr. */
static int sampling_beside(const char *model_path, double *temp, int temp_given, double *min_p, int min_p_given,
                           double *top_p, int top_p_given) {
    char path[4096];
    const char *slash = strrchr(model_path, '/');
    int dir_len = slash ? (int)(slash - model_path) : 1;
    snprintf(path, sizeof path, "%.*s/generation_config.json", dir_len, slash ? model_path : ".");
    if (access(path, F_OK) != 0) return 0;
    json_doc *d = NULL;
    char jerr[512];
    if (json_parse_file(path, &d, jerr, sizeof jerr)) {
        fprintf(stderr, "aria: %s\n", jerr);
        return -1;
    }
    const json_value *root = json_root(d);
    if (json_type_of(root) != JSON_OBJECT) {
        fail_file(path, "not a JSON object");
        json_doc_free(d);
        return -1;
    }
    static const struct { const char *key; double lo, hi; } keys[3] = {
        {"temperature", 0, 2}, {"min_p", 0, 1}, {"top_p", 0.5, 1}};
    double *dst[3] = {temp, min_p, top_p};
    int given[3] = {temp_given, min_p_given, top_p_given};
    char said[256] = "";
    size_t used = 0;
    for (int k = 0; k < 3; k++) {
        const json_value *v = json_get(root, keys[k].key);
        if (!v || json_type_of(v) == JSON_NULL) continue;
        double x = json_number(v);
        if (json_type_of(v) != JSON_NUMBER || !(x >= keys[k].lo && x <= keys[k].hi)) {
            char msg[128];
            snprintf(msg, sizeof msg, "\"%s\" wants a number in %g..%g", keys[k].key, keys[k].lo, keys[k].hi);
            fail_file(path, msg);
            json_doc_free(d);
            return -1;
        }
        if (given[k]) continue;
        *dst[k] = x;
        used += (size_t)snprintf(said + used, sizeof said - used, "%s%s %g", used ? ", " : "", keys[k].key, x);
    }
    /* as on the command line: a top-p alone turns min-p off */
    if (!given[1] && !given[2] && json_get(root, "top_p") && !json_get(root, "min_p")) *min_p = 0.0;
    json_doc_free(d);
    if (used) fprintf(stderr, "aria: sampling as %s recommends: %s\n", path, said);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *cfg_arg = NULL, *prompt = NULL, *prompt_ids = NULL, *out_dir = ".";
    const char *emb_npy = NULL, *emb_model = NULL, *emb_midi = NULL;
    double prompt_s = 15.0, temp = 0.98, min_p = 0.035, top_p = 0.0, cfg = 1.0, max_silence = 4.0;
    long long max_new = 2048, variations = 1, seed = -1, threads = 0, cfg_warmup = -1;
    int cfg_given = 0, max_new_given = 0;
    char bundled[4096];
    int end = 0, mask = 1, print_ids = 0, min_p_given = 0, strict = 0, render = 0, roll = 0;
    int temp_given = 0, top_p_given = 0;
    aria_render_opts ro = aria_render_defaults();
    enum { O_MODEL = 256, O_CFG, O_PROMPT, O_PIDS, O_PSEC, O_MAXNEW, O_TEMP, O_MINP, O_TOPP, O_VAR, O_SEED,
           O_END, O_NOMASK, O_OUT, O_PRINT, O_THREADS, O_STRICT, O_RENDER, O_SF, O_ROLL, O_EMB, O_EMBM,
           O_EMBMIDI, O_CFGW, O_CFGWU, O_SILENCE };
    static const struct option lo[] = {
        {"model", required_argument, 0, O_MODEL},     {"config", required_argument, 0, O_CFG},
        {"prompt", required_argument, 0, O_PROMPT},   {"prompt-ids", required_argument, 0, O_PIDS},
        {"prompt-seconds", required_argument, 0, O_PSEC}, {"max-new", required_argument, 0, O_MAXNEW},
        {"temp", required_argument, 0, O_TEMP},       {"min-p", required_argument, 0, O_MINP},
        {"top-p", required_argument, 0, O_TOPP},      {"variations", required_argument, 0, O_VAR},
        {"seed", required_argument, 0, O_SEED},       {"end", no_argument, 0, O_END},
        {"no-mask", no_argument, 0, O_NOMASK},        {"out-dir", required_argument, 0, O_OUT},
        {"print-ids", no_argument, 0, O_PRINT},       {"threads", required_argument, 0, O_THREADS},
        {"help", no_argument, 0, 'h'},                {"strict", no_argument, 0, O_STRICT},
        {"render", no_argument, 0, O_RENDER},         {"soundfont", required_argument, 0, O_SF},
        {"roll", no_argument, 0, O_ROLL},             {"embedding", required_argument, 0, O_EMB},
        {"embedding-model", required_argument, 0, O_EMBM}, {"embedding-midi", required_argument, 0, O_EMBMIDI},
        {"cfg", required_argument, 0, O_CFGW},        {"cfg-warmup", required_argument, 0, O_CFGWU},
        {"max-silence", required_argument, 0, O_SILENCE},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
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
            max_new_given = 1;
            break;
        case O_TEMP:
            if (parse_double(optarg, &temp) || temp < 0 || temp > 2) return usage_error("generate", "--temp wants 0..2");
            temp_given = 1;
            break;
        case O_MINP:
            if (parse_double(optarg, &min_p) || min_p < 0 || min_p > 1) return usage_error("generate", "--min-p wants 0..1");
            min_p_given = 1;
            break;
        case O_TOPP:
            if (parse_double(optarg, &top_p) || top_p < 0.5 || top_p > 1) return usage_error("generate", "--top-p wants 0.5..1");
            top_p_given = 1;
            break;
        case O_VAR:
            if (parse_long(optarg, 1, 64, &variations)) return usage_error("generate", "--variations wants 1..64");
            break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &seed)) return usage_error("generate", "--seed wants a non-negative integer");
            break;
        case O_END: end = 1; break;
        case O_NOMASK: mask = 0; break;
        case O_SILENCE:
            if (parse_double(optarg, &max_silence) || max_silence < 0 || max_silence > 3600)
                return usage_error("generate", "--max-silence wants 0..3600 seconds");
            break;
        case O_OUT: out_dir = optarg; break;
        case O_PRINT: print_ids = 1; break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &threads)) return usage_error("generate", "--threads wants 1..256");
            break;
        case O_STRICT: strict = 1; break;
        case O_RENDER: render = 1; break;
        case O_SF: ro.soundfont = optarg; break;
        case O_ROLL: roll = 1; break;
        case O_EMB: emb_npy = optarg; break;
        case O_EMBM: emb_model = optarg; break;
        case O_EMBMIDI: emb_midi = optarg; break;
        case O_CFGW:
            if (parse_double(optarg, &cfg) || cfg < 0 || cfg > 10) return usage_error("generate", "--cfg wants 0..10");
            cfg_given = 1;
            break;
        case O_CFGWU:
            if (parse_long(optarg, 0, 8192, &cfg_warmup)) return usage_error("generate", "--cfg-warmup wants 0..8192");
            cfg_given = 1;
            break;
        case 'h': help_generate(); return 0;
        default: return option_error("generate", argv, "h");
        }
    }
    if (optind != argc) return usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!prompt == !prompt_ids) return usage_error("generate", "give one of --prompt and --prompt-ids");
    int conditioned = emb_npy || emb_model || emb_midi;
    if (emb_npy && (emb_model || emb_midi))
        return usage_error("generate", "give --embedding or --embedding-model with --embedding-midi, not both");
    if (!emb_npy && !emb_model != !emb_midi)
        return usage_error("generate", "--embedding-model and --embedding-midi go together");
    if (cfg_given && !conditioned)
        return usage_error("generate", "--cfg and --cfg-warmup need an embedding (--embedding or --embedding-midi)");
    if (!model_path) {
        if (cli_bundled_model(BUNDLED_GEN, bundled, sizeof bundled)) return EXIT_INPUT;
        model_path = bundled;
        fprintf(stderr, "aria: using the bundled model %s\n", model_path);
    }
    if (sampling_beside(model_path, &temp, temp_given, &min_p, min_p_given || top_p_given, &top_p, top_p_given))
        return EXIT_INPUT;
    if (top_p_given && !min_p_given) min_p = 0.0;
    if (ro.soundfont && !render) return usage_error("generate", "--soundfont goes with --render");
    /* what --render and --roll need is checked before the long part */
    if (render && render_ready(&ro.soundfont)) return EXIT_INPUT;
    if (roll && !aria_png_available()) {
        aria_error perr = {{0}};
        aria_png_write("", NULL, 0, 0, &perr);
        fprintf(stderr, "aria: %s\n", perr.msg);
        return EXIT_INPUT;
    }
    if (temp == 0 && variations > 1)
        fprintf(stderr, "aria: warning: --temp 0 is greedy: the %lld variations will be identical\n", variations);

    /* a file in the way is found now; a missing directory is made only
       once there is something to put in it */
    struct stat st;
    if (stat(out_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fail_file(out_dir, "not a directory");
        return EXIT_INPUT;
    }
    aria_ctx *ctx;
    double t_load = now_s();
    aria_model *m = load_model(model_path, cfg_arg, (int)threads, &ctx);
    if (!m) return EXIT_INPUT;
    t_load = now_s() - t_load;
    const aria_model_config *mc = aria_model_get_config(m);
    aria_tokenizer *tk = aria_tokenizer_for_model(m);
    int status = EXIT_INPUT;
    int32_t *pids = NULL;
    float *cond_emb = NULL;
    size_t np = 0;
    aria_error err = {{0}};
    if (!(aria_model_heads(m) & ARIA_HEAD_LM)) {
        fail_file(model_path, NO_LM_HEAD);
        goto out;
    }
    int cond_dim = aria_model_adapter_dim(m);
    if (conditioned && cond_dim <= 0) {
        fail_file(model_path, "the model has no embedding_adapter, so it cannot be steered by an embedding "
                              "(--embedding, --embedding-midi): use a model trained with embedding conditioning");
        goto out;
    }
    if (conditioned && cli_cond_embedding(emb_npy, emb_model, emb_midi, (int)threads, cond_dim, &cond_emb)) goto out;
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
        if (info.n_warnings) warn_damaged(prompt, info.n_warnings, info.warning, strict);
        if (rc) {
            fail_file(prompt, err.msg);
            goto out;
        }
        if (info.n_warnings && strict) goto out;
    }
    {
        /* the prompt and the new tokens share the context (aria_generate
           caps the total as the reference does): say so before the run
           rather than stop short without a word (when --max-new was
           asked for; the default means as much as fits). An embedding
           takes position 0. */
        long ctx_len = mc->max_seq_len - (conditioned ? 1 : 0);
        if (ctx_len > GEN_MAX_CONTEXT) ctx_len = GEN_MAX_CONTEXT;
        long room = ctx_len - (long)np;
        if (max_new_given && room < max_new && room > 0)
            fprintf(stderr,
                    "aria: warning: --max-new %lld: a context of %ld tokens leaves room for %ld new tokens after "
                    "the %zu-token prompt\n",
                    max_new, ctx_len, room, np);
    }
    if (seed < 0) {
        seed = (long long)(time(NULL) ^ ((long long)getpid() << 16)) & 0x7fffffff;
        fprintf(stderr, "aria: seed %lld\n", seed);
    }
    progress_state ps = {now_s(), 0.0, isatty(2), (int)variations};
    aria_generate_opts go = {.variations = (int)variations, .max_new = (int)max_new, .seed = (uint64_t)seed,
                             .sample = {(float)temp, (float)min_p, (float)top_p, mask, end, (float)max_silence},
                             .progress = gen_progress, .progress_ctx = &ps, .cond_embedding = cond_emb,
                             .cond_dim = cond_dim, .cfg = (float)cfg,
                             .cfg_warmup = cfg_warmup < 0 ? 0 : cfg_warmup == 0 ? -1 : (int)cfg_warmup};
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
    int no_dir = make_dirs(out_dir, NULL) != 0;
    status = 0;
    if (no_dir) {
        fail_file(out_dir, strerror(errno));
        status = EXIT_INPUT;
    }
    for (long long v = 0; v < variations; v++) {
        new_tokens += lens[v] - np;
        if (no_dir) {
            free(seqs[v]);
            continue;
        }
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
        } else if (render || roll) {
            char side[4096];
            snprintf(side, sizeof side, "%s/res_%lld.wav", out_dir, v + 1);
            if (render && render_wav(path, side, &ro)) status = EXIT_INPUT;
            aria_roll_opts rl = aria_roll_defaults();
            rl.prompt_s = prompt_end_s(tk, pids, np);
            snprintf(side, sizeof side, "%s/res_%lld.png", out_dir, v + 1);
            if (roll && roll_png(path, side, &rl)) status = EXIT_INPUT;
        }
        free(seqs[v]);
    }
    /* where the time went: loading the weights, reading the prompt (its
       prefill and the first sample), then one step per new token */
    double t_prompt = ps.first > t0 ? ps.first - t0 : dt, t_steps = dt - t_prompt;
    size_t later = new_tokens > (size_t)variations ? new_tokens - (size_t)variations : 0;
    fprintf(stderr,
            "aria: %zu tokens in %.2f s (%zu prompt tokens): %.2f tokens/s; load %.2f s, prompt %.2f s, "
            "then %.2f tokens/s\n",
            new_tokens, dt, np, dt > 0 ? new_tokens / dt : 0.0, t_load, t_prompt,
            t_steps > 0 ? later / t_steps : 0.0);
    free(seqs);
    free(lens);
out:
    free(pids);
    free(cond_emb);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria embed                                                             */
/* ---------------------------------------------------------------------- */

static void help_embed(void) {
    printf("usage: aria embed [--model EMB.safetensors] [-o OUT.npy] [--skip-bad] FILE.mid...\n"
           "\n"
           "Global embedding of each file (mean over 300-note chunks of the embedding at <E>), one\n"
           "row per file: as TSV on stdout (file name, then the values), or as a float32 .npy.\n"
           "Files that are not piano-only are refused, as the reference does; a damaged file is\n"
           "read as far as it goes, with a warning.\n"
           "\n"
           "options:\n"
           "  --model FILE     embedding model weights (e.g. aria-medium-embedding); default: the\n"
           "                   bundled models/" BUNDLED_EMB " (a small contrastive finetune, see its card)\n"
           "  --config CFG     config JSON or preset (%s);\n"
           "                   default: metadata / config.json beside\n"
           "  -o, --output F   write a .npy [files][emb_size] instead of TSV; nothing is written\n"
           "                   when a file is refused, unless --skip-bad\n"
           "  --skip-bad       embed the files that can be, leave out those refused (exit 0 when\n"
           "                   at least one is embedded); with -o, the embedded files are listed\n"
           "                   in order, one per line, in F without .npy plus .files.txt\n"
           "  --strict         refuse damaged files\n"
           "  --threads N      CPU threads, 1..256 (default: all)\n"
           "  -h, --help       this help\n",
           preset_list());
}

/* The options embed and logits share: --model, --config, -o/--output,
   --threads, --ids when `with_ids`, --skip-bad and --strict when not.
   Returns -1 to go on, else the exit status (help printed, or a usage
   error). */
typedef struct {
    const char *model, *config, *output, *ids;
    long long threads;
    int skip_bad, strict;
} model_args;

static int parse_model_args(int argc, char **argv, const char *cmd, int with_ids, void (*help)(void),
                            model_args *a) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"config", required_argument, 0, 'c'},
                                       {"ids", required_argument, 0, 'i'},   {"output", required_argument, 0, 'o'},
                                       {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                       {"skip-bad", no_argument, 0, 'k'},    {"strict", no_argument, 0, 's'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'c': a->config = optarg; break;
        case 'i':
            if (!with_ids) return usage_error(cmd, "unknown option '--ids'");
            a->ids = optarg;
            break;
        case 'k':
        case 's':
            if (with_ids) return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
            if (c == 'k') a->skip_bad = 1;
            else a->strict = 1;
            break;
        case 'o': a->output = optarg; break;
        case 't':
            if (parse_long(optarg, 1, 256, &a->threads)) return usage_error(cmd, "--threads wants 1..256");
            break;
        case 'h': help(); return 0;
        default: return option_error(cmd, argv, "o:h");
        }
    }
    return -1;
}

/* --skip-bad -o F.npy: the list of embedded files, F without .npy plus
   .files.txt, one name per line in row order (atomic). */
static int write_file_list(const char *npy, char **files, const unsigned char *ok, size_t nf, char *list,
                           size_t cap) {
    size_t stem = strlen(npy);
    if (stem > 4 && !strcmp(npy + stem - 4, ".npy")) stem -= 4;
    snprintf(list, cap, "%.*s.files.txt", (int)stem, npy);
    size_t len = 0;
    for (size_t i = 0; i < nf; i++) len += ok[i] ? strlen(files[i]) + 1 : 0;
    char *text = malloc(len + 1), *p = text;
    aria_error err = {{0}};
    if (!text) {
        fail_file(list, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < nf; i++)
        if (ok[i]) p += sprintf(p, "%s\n", files[i]);
    int rc = aria_write_file_atomic(list, text, len, &err);
    free(text);
    if (rc != ARIA_OK) fail_file(list, err.msg);
    return rc == ARIA_OK ? 0 : -1;
}

int cmd_embed(int argc, char **argv) {
    model_args a = {0};
    int parsed = parse_model_args(argc, argv, "embed", 0, help_embed, &a);
    if (parsed >= 0) return parsed;
    const char *model_path = a.model, *cfg_arg = a.config, *out = a.output;
    long long threads = a.threads;
    if (optind >= argc) return usage_error("embed", "no input file");
    char bundled[4096];
    if (!model_path) {
        if (cli_bundled_model(BUNDLED_EMB, bundled, sizeof bundled)) return EXIT_INPUT;
        model_path = bundled;
        fprintf(stderr, "aria: using the bundled embedding model %s\n", model_path);
    }
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
    size_t nf = (size_t)(argc - optind), n_ok = 0;
    char **files = argv + optind;
    float *rows = malloc(nf * (size_t)E * sizeof *rows);
    unsigned char *ok = calloc(nf, 1);
    int status = rows && ok ? 0 : EXIT_INPUT, shown = isatty(2) && nf > 1;
    for (size_t i = 0; i < nf && !status; i++) {
        aria_score s;
        aria_error err = {{0}};
        /* the progress line is cleared while a file is read, so that a
           warning or an error about it starts a line of its own */
        if (shown && i) fputs("\r\033[K", stderr);
        if (load_score(files[i], 0, a.strict, &s)) continue;
        /* rows of the embedded files are packed, so the .npy has no holes */
        int rc = aria_embed_score(m, tk, &s, rows + n_ok * (size_t)E, NULL, &err);
        aria_score_free(&s);
        if (rc) {
            fail_file(files[i], err.msg);
            continue;
        }
        ok[i] = 1;
        if (!out) {
            printf("%s", files[i]);
            for (int k = 0; k < E; k++) printf("\t%.9g", rows[n_ok * (size_t)E + (size_t)k]);
            printf("\n");
        }
        n_ok++;
        if (shown) fprintf(stderr, "\rembedded %zu/%zu files", i + 1, nf);
    }
    if (shown) fprintf(stderr, "\r\033[Kembedded %zu/%zu files\n", n_ok, nf);
    size_t refused = status ? 0 : nf - n_ok;
    if (refused && !(a.skip_bad && n_ok)) status = EXIT_INPUT;
    if (out && !status) {
        aria_error err = {{0}};
        char list[4096];
        if (aria_npy_write_f32(out, rows, n_ok, (size_t)E, &err) != ARIA_OK) {
            fail_file(out, err.msg);
            status = EXIT_INPUT;
        } else if (a.skip_bad && write_file_list(out, files, ok, nf, list, sizeof list)) {
            unlink(out); /* a matrix without its list of rows is no use */
            status = EXIT_INPUT;
        } else if (a.skip_bad) {
            fprintf(stderr, "aria: %s: %zu of %zu files embedded (%zu refused); its rows are the files listed in %s\n",
                    out, n_ok, nf, refused, list);
        }
    } else if (out && refused && a.skip_bad) {
        fprintf(stderr, "aria: %s not written: none of the %zu files could be embedded\n", out, nf);
    } else if (out && refused) {
        fprintf(stderr, "aria: %s not written: %zu of %zu files refused (--skip-bad embeds the rest)\n", out, refused,
                nf);
    } else if (refused && nf > 1) {
        fprintf(stderr, "aria: %zu of %zu files refused\n", refused, nf);
    }
    free(rows);
    free(ok);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria logits                                                            */
/* ---------------------------------------------------------------------- */

static void help_logits(void) {
    printf("usage: aria logits --model M.safetensors --ids FILE [-o logits.bin]\n"
           "\n"
           "Runs the ids in FILE (whitespace-separated, or a JSON array) through the model and\n"
           "writes the logits of every position: float32, row-major [T][vocab_size].\n"
           "\n"
           "options:\n"
           "  --config CFG     config JSON or preset (%s);\n"
           "                   default: metadata / config.json beside\n"
           "  -o, --output F   output file (default logits.bin)\n"
           "  --threads N      CPU threads, 1..256 (default: all)\n",
           preset_list());
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
        fail_file(model_path, NO_LM_HEAD);
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
    opterr = 0;
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
            printf("usage: aria init --config CFG -o OUT.safetensors [options]\n"
                   "\n"
                   "Writes a model with random weights and the official tensor names, for tests and\n"
                   "benchmarks (or as the start of `aria train --init`). Says what it does on stderr.\n"
                   "\n"
                   "options:\n"
                   "  --config CFG     config JSON or preset (%s)\n"
                   "  --heads LIST     comma-separated: lm, emb, cls, adapter (default lm, a model\n"
                   "                   that `aria generate` and `aria train` use; emb and adapter\n"
                   "                   (embedding_adapter: `aria generate --embedding`) need emb_size\n"
                   "                   and cls class_size in the config)\n"
                   "  --dtype T        f32 or bf16 (default f32)\n"
                   "  --seed S         random seed (default 0)\n"
                   "  -o, --output F   the safetensors file to write\n",
                   preset_list());
            return 0;
        default: return option_error("init", argv, "o:h");
        }
    }
    if (!cfg_arg || !out) return usage_error("init", "--config and -o are required");
    if (optind != argc) return usage_error("init", "unexpected argument '%s'", argv[optind]);
    aria_model_config cfg;
    if (load_config_arg(cfg_arg, &cfg)) return EXIT_INPUT;
    int heads = ARIA_HEAD_LM; /* what generate and train need, whatever else the config can carry */
    if (heads_arg) {
        heads = 0;
        char buf[64];
        snprintf(buf, sizeof buf, "%s", heads_arg);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (!strcmp(tok, "lm")) heads |= ARIA_HEAD_LM;
            else if (!strcmp(tok, "emb")) heads |= ARIA_HEAD_EMB;
            else if (!strcmp(tok, "cls")) heads |= ARIA_HEAD_CLS;
            else if (!strcmp(tok, "adapter")) heads |= ARIA_HEAD_ADAPTER;
            else return usage_error("init", "unknown head '%s' (lm, emb, cls, adapter)", tok);
        }
    }
    aria_model *m;
    aria_error err = {{0}};
    /* a medium model takes tens of seconds: each stage says what it does */
    double t0 = now_s();
    char hs[48];
    snprintf(hs, sizeof hs, "%s%s%s%s", heads & ARIA_HEAD_LM ? ",lm" : "", heads & ARIA_HEAD_EMB ? ",emb" : "",
             heads & ARIA_HEAD_CLS ? ",cls" : "", heads & ARIA_HEAD_ADAPTER ? ",adapter" : "");
    fprintf(stderr, "aria init: %s: d_model %d, %d layers, heads %s: drawing random weights...\n", cfg_arg,
            cfg.d_model, cfg.n_layers, hs + 1);
    if (aria_model_new_random(&m, &cfg, heads, (uint64_t)seed, &err) != ARIA_OK) {
        fail_file(cfg_arg, err.msg);
        return EXIT_INPUT;
    }
    fprintf(stderr, "aria init: writing %s (%s)...\n", out, dtype == ARIA_DT_BF16 ? "bf16" : "f32");
    int rc = aria_model_save(m, out, dtype, &err);
    aria_model_free(m);
    if (rc) {
        fail_file(out, err.msg);
        return EXIT_INPUT;
    }
    struct stat st;
    fprintf(stderr, "aria init: wrote %s, %.1f MB, in %.1f s\n", out,
            stat(out, &st) == 0 ? (double)st.st_size / 1e6 : 0.0, now_s() - t0);
    return 0;
}
