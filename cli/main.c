/*
 * main.c - the `aria` command: argument parsing, output formatting, exit
 * codes and progress, and the MIDI and tokenizer subcommands (the model
 * commands are in model_cmds.c, dataset_cmd.c and train_cmd.c). All music
 * and token logic lives in libaria.
 *
 * Exit status: 0 success; 1 bad input (one line `aria: FILE: problem` on
 * stderr, no output file left behind); 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"


/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

void fail_file(const char *file, const char *msg) {
    fprintf(stderr, "aria: %s: %s\n", file, msg);
}

int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aria %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'aria %s --help'.\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int option_error(const char *cmd, char **argv, const char *shorts) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    if (optopt && optopt < 256 && !strchr(shorts, optopt)) /* an unknown short option */
        return usage_error(cmd, "unknown option '-%c'", optopt);
    if (optopt) return usage_error(cmd, "option '%s' needs a value", arg);
    return usage_error(cmd, "unknown option '%s'", arg);
}

void warn_damaged(const char *file, int n_warnings, const char *first, int strict) {
    fprintf(stderr, "aria: %s%s: %s (%d problem%s; %s)\n", strict ? "" : "warning: ", file, first, n_warnings,
            n_warnings == 1 ? "" : "s", strict ? "refused by --strict" : "--strict refuses it");
}

const char *preset_list(void) {
    static char list[256];
    if (!list[0]) {
        size_t n = 0;
        for (int i = 0; aria_config_preset_name(i) && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", aria_config_preset_name(i));
    }
    return list;
}

int make_dirs(const char *path, int *created) {
    char p[4096];
    if (created) *created = 0;
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *q = p + 1; *q; q++) { /* the parents first */
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
        *q = '/';
    }
    if (mkdir(p, 0777) == 0) {
        if (created) *created = 1;
        return 0;
    }
    struct stat st;
    if (errno == EEXIST && stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) errno = ENOTDIR;
    return errno == EEXIST ? 0 : -1;
}

int parse_long(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

int parse_variant(const char *s, aria_tok_variant *v) {
    if (!strcmp(s, "default") || !strcmp(s, "17727")) *v = ARIA_TOKCFG_DEFAULT;
    else if (!strcmp(s, "demo-17729") || !strcmp(s, "17729")) *v = ARIA_TOKCFG_DEMO_17729;
    else if (!strcmp(s, "demo-2675") || !strcmp(s, "2675")) *v = ARIA_TOKCFG_DEMO_2675;
    else return -1;
    return 0;
}

aria_ctx_opts cli_ctx_opts(int threads) {
    const char *prec = getenv("ARIA_PRECISION"), *kernels = getenv("ARIA_KERNELS");
    aria_ctx_opts o = {threads, prec && !strcmp(prec, "exact") ? ARIA_PREC_EXACT : ARIA_PREC_FAST,
                       kernels && !strcmp(kernels, "generic")};
    return o;
}

int load_score(const char *path, int exact, int strict, aria_score *s) {
    aria_midi m = {0};
    aria_error err = {{0}};
    int rc = aria_midi_read_file(&m, path, &err);
    if (rc == ARIA_OK && m.n_warnings) {
        warn_damaged(path, m.n_warnings, m.warnings[0], strict);
        if (strict) {
            aria_midi_free(&m);
            return -1;
        }
    }
    if (rc == ARIA_OK) rc = aria_score_from_midi(s, &m, &err);
    aria_midi_free(&m);
    if (rc != ARIA_OK) {
        fail_file(path, err.msg);
        return -1;
    }
    s->exact_timing = exact;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* aria tokenize                                                          */
/* ---------------------------------------------------------------------- */

/* What the batch's callbacks need: the output directory and format, and
   per file whether its output file failed (its message then names that
   file rather than the MIDI file). */
typedef struct {
    const aria_tokenizer *tk;
    char **files;
    const char *out_dir;
    int ids;
    int names;               /* several files on stdout: each line starts with its file's name */
    int strict;              /* refuse damaged files (--strict) */
    int progress;            /* print a progress line */
    unsigned char *write_failed;
    char **texts;            /* per file: its lines for stdout */
    size_t *lens;
} tok_run;

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The file's sequences as text, one line each (after `name` and a tab
   when name is not NULL). */
static int format_file(const tok_run *r, const aria_batch_file *f, const char *name, char **text, size_t *len,
                       aria_error *err) {
    *text = NULL;
    *len = 0;
    size_t nl = name ? strlen(name) + 1 : 0;
    for (size_t k = 0; k < f->n_seqs; k++) {
        size_t from = k ? f->ends[k - 1] : 0, n;
        char *line;
        int rc = aria_tok_format_line(r->tk, f->toks + from, f->ends[k] - from, r->ids, &line, &n, err);
        char *grown = rc == ARIA_OK ? realloc(*text, *len + nl + n + 1) : NULL;
        if (!grown) {
            if (rc == ARIA_OK) {
                free(line);
                snprintf(err->msg, sizeof err->msg, "out of memory");
                rc = ARIA_ERR_NOMEM;
            }
            free(*text);
            *text = NULL;
            return rc;
        }
        if (nl) {
            memcpy(grown + *len, name, nl - 1);
            grown[*len + nl - 1] = '\t';
        }
        memcpy(grown + *len + nl, line, n + 1);
        *text = grown;
        *len += nl + n;
        free(line);
    }
    return ARIA_OK;
}

/* --out-dir: DIR/<name without extension>.json (or .ids) */
static void out_path(const tok_run *r, size_t i, char *dst, size_t cap) {
    const char *b = base_name(r->files[i]);
    const char *dot = strrchr(b, '.');
    int stem = dot && dot != b ? (int)(dot - b) : (int)strlen(b);
    snprintf(dst, cap, "%s/%.*s.%s", r->out_dir, stem, b, r->ids ? "ids" : "json");
}

/* --strict: a damaged file (one the reader had to forgive) becomes a
   failed slot. Runs in the worker, before the file is used. */
static void refuse_if_damaged(const tok_run *r, aria_batch_file *f) {
    if (!r->strict || f->status != ARIA_OK || !f->n_warnings) return;
    aria_batch_file_free(f);
    snprintf(f->err.msg, sizeof f->err.msg, "%s (%d problem%s; refused by --strict)", f->warning, f->n_warnings,
             f->n_warnings == 1 ? "" : "s");
    f->status = ARIA_ERR_FORMAT;
}

/* --out-dir: runs in the worker that tokenized file i, so files are
   written in parallel and their tokens freed at once. */
static void write_out_file(void *ctx, size_t i, aria_batch_file *f) {
    tok_run *r = ctx;
    refuse_if_damaged(r, f);
    if (f->status != ARIA_OK) return;
    char dst[4096];
    out_path(r, i, dst, sizeof dst);
    char *text;
    size_t len;
    int rc = format_file(r, f, NULL, &text, &len, &f->err);
    if (rc == ARIA_OK) rc = aria_write_file_atomic(dst, text, len, &f->err);
    free(text);
    aria_batch_file_free(f);
    if (rc != ARIA_OK) {
        r->write_failed[i] = 1;
        f->status = rc;
    }
}

/* stdout: runs in the worker that tokenized file i; the text waits for
   the files before it, the tokens are freed at once. */
static void keep_text(void *ctx, size_t i, aria_batch_file *f) {
    tok_run *r = ctx;
    refuse_if_damaged(r, f);
    if (f->status != ARIA_OK) return;
    f->status = format_file(r, f, r->names ? r->files[i] : NULL, &r->texts[i], &r->lens[i], &f->err);
    aria_batch_file_free(f);
}

static void tok_progress(void *ctx, size_t done, size_t total) {
    const tok_run *r = ctx;
    if (r->progress && (done % 16 == 0 || done == total)) fprintf(stderr, "\rtokenized %zu/%zu files", done, total);
}

static void help_tokenize(void) {
    puts("usage: aria tokenize [options] FILE.mid...\n"
         "\n"
         "Tokenizes MIDI files with the Aria AbsTokenizer. One file: the tokens go to\n"
         "stdout as a JSON array (the format of the reference vectors). Several files:\n"
         "one line per file, in order, each starting with the file's name and a tab\n"
         "(a file that is refused has no line: its error is on stderr, and the count\n"
         "of refused files comes last), or one file each under --out-dir.\n"
         "A damaged file (cut short, say) is read as far as it goes, with a warning.\n"
         "\n"
         "options:\n"
         "  --ids                 print token ids, space-separated, instead of JSON\n"
         "  --dim                 insert the <D> token as in pre-training data (default: off,\n"
         "                        i.e. tokenize(add_dim_tok=False))\n"
         "  --no-eos              leave out the final <E>\n"
         "  --keep-silence        keep the silence before the first note\n"
         "  --seed N              random seed for prefix order and <D> placement (default 0)\n"
         "  --prompt-seconds S    emit the generation prompt of `aria generate`: notes of the\n"
         "                        first S seconds, no <D>/<E> (default: whole file)\n"
         "  --embedding-chunks    emit the embedding model's inputs: 300-note chunks, at most\n"
         "                        2048 tokens, <E> last, one line per chunk (piano-only files)\n"
         "  --exact-timing        integrate the tempo map exactly instead of reproducing the\n"
         "                        reference's tick->ms quirk (default: reference behaviour)\n"
         "  --tokenizer NAME      default (17727 ids), demo-17729 or demo-2675 (default: default)\n"
         "  --out-dir DIR         write DIR/<name>.json (or .ids) per input file (DIR is\n"
         "                        created if missing)\n"
         "  --strict              refuse damaged files instead of warning\n"
         "  --jobs N              files tokenized in parallel (default: number of CPUs)\n"
         "  -h, --help            this help");
}

static int cmd_tokenize(int argc, char **argv) {
    aria_batch_opts bo = aria_batch_defaults();
    tok_run run = {0};
    double prompt_seconds = -1; /* < 0: whole file */
    aria_tok_variant variant = ARIA_TOKCFG_DEFAULT;
    long long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1) jobs = 1;
    bo.tok = (aria_tokenize_opts){1, 0, 1}; /* no <D> unless --dim, unlike the library default */
    enum { O_IDS = 256, O_DIM, O_NOEOS, O_KEEP, O_SEED, O_PROMPT, O_CHUNKS, O_EXACT, O_TOK, O_OUT, O_JOBS, O_STRICT };
    static const struct option lo[] = {
        {"ids", no_argument, 0, O_IDS},          {"dim", no_argument, 0, O_DIM},
        {"no-eos", no_argument, 0, O_NOEOS},     {"keep-silence", no_argument, 0, O_KEEP},
        {"seed", required_argument, 0, O_SEED},  {"prompt-seconds", required_argument, 0, O_PROMPT},
        {"embedding-chunks", no_argument, 0, O_CHUNKS}, {"exact-timing", no_argument, 0, O_EXACT},
        {"tokenizer", required_argument, 0, O_TOK}, {"out-dir", required_argument, 0, O_OUT},
        {"jobs", required_argument, 0, O_JOBS},  {"help", no_argument, 0, 'h'},
        {"strict", no_argument, 0, O_STRICT},    {0, 0, 0, 0}};
    int c, chunks = 0;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_IDS: run.ids = 1; break;
        case O_DIM: bo.tok.add_dim_tok = 1; break;
        case O_NOEOS: bo.tok.add_eos_tok = 0; break;
        case O_KEEP: bo.tok.remove_preceding_silence = 0; break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &v)) return usage_error("tokenize", "--seed wants a non-negative integer, got '%s'", optarg);
            bo.seed = (uint64_t)v;
            break;
        case O_PROMPT:
            if (parse_double(optarg, &prompt_seconds) || prompt_seconds < 0)
                return usage_error("tokenize", "--prompt-seconds wants a number >= 0, got '%s'", optarg);
            break;
        case O_CHUNKS: chunks = 1; break;
        case O_EXACT: bo.exact_timing = 1; break;
        case O_TOK:
            if (parse_variant(optarg, &variant)) return usage_error("tokenize", "unknown tokenizer '%s'", optarg);
            break;
        case O_OUT: run.out_dir = optarg; break;
        case O_JOBS:
            if (parse_long(optarg, 1, 1024, &jobs)) return usage_error("tokenize", "--jobs wants 1..1024, got '%s'", optarg);
            break;
        case O_STRICT: run.strict = 1; break;
        case 'h': help_tokenize(); return 0;
        default: return option_error("tokenize", argv, "h");
        }
    }
    if (optind >= argc) return usage_error("tokenize", "no input file");
    if (chunks && prompt_seconds >= 0)
        return usage_error("tokenize", "--embedding-chunks and --prompt-seconds exclude each other");
    bo.mode = chunks ? ARIA_BATCH_CHUNKS : prompt_seconds >= 0 ? ARIA_BATCH_PROMPT : ARIA_BATCH_TOKENIZE;
    bo.prompt_ms = (int64_t)(prompt_seconds * 1000.0 + 0.5);
    bo.jobs = (int)jobs;

    /* the output directory is made before the work (every file is written
       as soon as it is tokenized) and taken away again if nothing lands in
       it; a file in its place is one error, not one per input */
    int made_dir = 0;
    if (run.out_dir && make_dirs(run.out_dir, &made_dir) != 0) {
        fail_file(run.out_dir, errno == ENOTDIR ? "not a directory" : strerror(errno));
        return EXIT_INPUT;
    }
    aria_tokenizer *tk = aria_tokenizer_new(variant);
    if (!tk) return EXIT_INPUT;
    size_t nf = (size_t)(argc - optind), refused = 0;
    run.tk = tk;
    run.files = argv + optind;
    run.names = nf > 1 && !run.out_dir;
    run.progress = nf > 16 && isatty(2);
    aria_batch_file *res = calloc(nf, sizeof *res);
    run.write_failed = calloc(nf, 1);
    run.texts = calloc(nf, sizeof *run.texts);
    run.lens = calloc(nf, sizeof *run.lens);
    aria_error err = {{0}};
    int status = res && run.write_failed && run.texts && run.lens ? 0 : EXIT_INPUT;
    bo.on_file = run.out_dir ? write_out_file : keep_text;
    bo.progress = tok_progress;
    bo.ctx = &run;
    if (!status && aria_batch_tokenize(tk, (const char *const *)run.files, nf, &bo, res, &err) != ARIA_OK) {
        fprintf(stderr, "aria: %s\n", err.msg);
        status = EXIT_INPUT;
    }
    if (run.progress) fputc('\n', stderr);
    for (size_t i = 0; res && i < nf; i++) { /* the failures and warnings first, as they were found */
        if (res[i].status != ARIA_OK) {
            char dst[4096];
            if (run.write_failed[i]) out_path(&run, i, dst, sizeof dst);
            fail_file(run.write_failed[i] ? dst : run.files[i], res[i].err.msg);
            status = EXIT_INPUT;
            refused++;
        } else if (res[i].n_warnings) {
            warn_damaged(run.files[i], res[i].n_warnings, res[i].warning, 0);
        }
    }
    if (refused && nf > 1)
        fprintf(stderr, "aria: %zu of %zu files refused%s\n", refused, nf,
                run.out_dir ? "" : " (they have no line on stdout)");
    if (made_dir && refused == nf) rmdir(run.out_dir); /* nothing was written: leave nothing behind */
    for (size_t i = 0; run.texts && i < nf; i++) {
        if (run.texts[i]) fwrite(run.texts[i], 1, run.lens[i], stdout);
        free(run.texts[i]);
    }
    free(res);
    free(run.write_failed);
    free(run.texts);
    free(run.lens);
    aria_tokenizer_free(tk);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "aria: writing output: %s\n", strerror(errno));
        return EXIT_INPUT;
    }
    return status;
}

/* ---------------------------------------------------------------------- */
/* aria detokenize                                                        */
/* ---------------------------------------------------------------------- */

static int read_input(const char *path, uint8_t **buf, size_t *len, aria_error *err) {
    if (strcmp(path, "-") != 0) return aria_read_file(path, buf, len, err);
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) return ARIA_ERR_NOMEM;
    size_t k;
    while ((k = fread(b + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap) {
            uint8_t *q = realloc(b, cap *= 2);
            if (!q) {
                free(b);
                return ARIA_ERR_NOMEM;
            }
            b = q;
        }
    }
    if (ferror(stdin)) {
        free(b);
        snprintf(err->msg, sizeof err->msg, "cannot read standard input");
        return ARIA_ERR_IO;
    }
    *buf = b;
    *len = n;
    return ARIA_OK;
}

static void help_detokenize(void) {
    puts("usage: aria detokenize [options] INPUT\n"
         "\n"
         "Turns tokens back into a MIDI file (type 0, 500 ticks per beat, 1 tick = 1 ms).\n"
         "INPUT is a JSON array of tokens (as `aria tokenize` prints) or token ids separated\n"
         "by spaces; '-' reads standard input.\n"
         "\n"
         "options:\n"
         "  -o, --output FILE     MIDI file to write (default: INPUT with .mid, which must\n"
         "                        not exist yet; required when reading standard input)\n"
         "  --force               replace the default output file when it exists\n"
         "  --tokenizer NAME      default, demo-17729 or demo-2675 (default: default)\n"
         "  -h, --help            this help");
}

static int cmd_detokenize(int argc, char **argv) {
    const char *out_path = NULL;
    aria_tok_variant variant = ARIA_TOKCFG_DEFAULT;
    static const struct option lo[] = {{"output", required_argument, 0, 'o'},
                                       {"tokenizer", required_argument, 0, 't'},
                                       {"force", no_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c, force = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case 't':
            if (parse_variant(optarg, &variant)) return usage_error("detokenize", "unknown tokenizer '%s'", optarg);
            break;
        case 'f': force = 1; break;
        case 'h': help_detokenize(); return 0;
        default: return option_error("detokenize", argv, "o:h");
        }
    }
    if (optind != argc - 1) return usage_error("detokenize", "expected one INPUT");
    const char *in = argv[optind];
    char defpath[4096];
    if (!out_path) {
        if (!strcmp(in, "-")) return usage_error("detokenize", "-o is required when reading standard input");
        const char *dot = strrchr(in, '.');
        int stem = dot && dot > strrchr(in, '/') ? (int)(dot - in) : (int)strlen(in);
        snprintf(defpath, sizeof defpath, "%.*s.mid", stem, in);
        out_path = defpath;
        /* the default name may be the MIDI file the tokens came from: only
           a name the user gave (-o) or --force replaces a file */
        struct stat st;
        if (!force && stat(out_path, &st) == 0) {
            fprintf(stderr, "aria: %s: already exists; name it with -o to replace it, or give --force\n", out_path);
            return EXIT_INPUT;
        }
    }

    aria_error err = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_input(in, &buf, &len, &err) != ARIA_OK) {
        fail_file(in, err.msg);
        return EXIT_INPUT;
    }
    aria_tokenizer *tk = aria_tokenizer_new(variant);
    aria_token *toks = NULL;
    size_t n = 0, skipped = 0;
    int rc = aria_tok_parse_text(tk, (const char *)buf, len, &toks, &n, &err);
    if (rc == ARIA_OK) rc = aria_tokens_write_midi(tk, toks, n, out_path, &skipped, &err);
    free(buf);
    if (rc != ARIA_OK) {
        fail_file(rc == ARIA_ERR_IO ? out_path : in, err.msg);
    } else if (skipped) {
        fprintf(stderr, "aria: %s: skipped %zu malformed token%s\n", in, skipped, skipped == 1 ? "" : "s");
    }
    free(toks);
    aria_tokenizer_free(tk);
    return rc == ARIA_OK ? 0 : EXIT_INPUT;
}

/* ---------------------------------------------------------------------- */
/* aria notes / aria info                                                 */
/* ---------------------------------------------------------------------- */

/* Channels are numbered 1-16 wherever the command prints one (notes, info,
   embed's messages), as MIDI players and sequencers show them; the files
   and the score store 0-15. */
static void help_notes(void) {
    puts("usage: aria notes [--exact-timing] [--strict] FILE.mid...\n"
         "\n"
         "Prints the notes of each file's score, one per line, tab-separated:\n"
         "onset_ms offset_ms pitch velocity channel (channel 1-16, as `aria info` and\n"
         "players number them; 10 is drums), in score order (by onset, ties in file\n"
         "order), before instrument removal and pedal. With several files, each line\n"
         "starts with the file's name and a tab.\n"
         "\n"
         "options:\n"
         "  --exact-timing   integrate the tempo map exactly (default: the reference's\n"
         "                   tick->ms, quirk included)\n"
         "  --strict         refuse damaged files (default: warn and read what is there)\n"
         "  -h, --help       this help");
}

static int cmd_notes(int argc, char **argv) {
    int exact = 0, strict = 0;
    static const struct option lo[] = {{"exact-timing", no_argument, 0, 'x'},
                                       {"strict", no_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'x') exact = 1;
        else if (c == 's') strict = 1;
        else if (c == 'h') {
            help_notes();
            return 0;
        } else return option_error("notes", argv, "h");
    }
    if (optind >= argc) return usage_error("notes", "no input file");
    int status = 0, several = argc - optind > 1;
    for (int f = optind; f < argc; f++) {
        aria_score s;
        if (load_score(argv[f], exact, strict, &s)) {
            status = EXIT_INPUT;
            continue;
        }
        for (size_t i = 0; i < s.n_notes; i++) {
            const aria_note *n = &s.notes[i];
            if (several) printf("%s\t", argv[f]);
            printf("%lld\t%lld\t%d\t%d\t%d\n", (long long)aria_score_tick_to_ms(&s, n->start),
                   (long long)aria_score_tick_to_ms(&s, n->end), n->pitch, n->velocity, n->channel + 1);
        }
        aria_score_free(&s);
    }
    return fflush(stdout) == 0 ? status : EXIT_INPUT;
}

static void print_info(const char *path, const aria_file_stats *st) {
    printf("file\t%s\n", path);
    printf("format\t%d\n", st->format);
    if (st->ppq > 0)
        printf("division\t%d ticks per quarter note\n", st->ppq);
    else
        printf("division\tSMPTE %s fps, %d ticks per frame\n", st->smpte_fps == 29 ? "29.97" : st->smpte_fps == 24 ? "24" : st->smpte_fps == 25 ? "25" : "30", st->smpte_tpf);
    printf("tracks\t%zu (header says %d)\n", st->n_tracks, st->ntracks_declared);
    printf("events\t%zu\n", st->n_events);
    printf("duration\t%lld.%03lld s (end of the last note)\n", (long long)(st->duration_ms / 1000),
           (long long)(st->duration_ms % 1000));
    printf("notes\t%zu\n", st->n_notes);
    printf("programs\t");
    if (!st->n_programs) printf("none");
    for (size_t i = 0; i < st->n_programs; i++) {
        const aria_program *p = &st->programs[i];
        /* on channel 10 a program change picks a drum kit, not an instrument */
        printf("%sch%d:%d(%s)", i ? " " : "", p->channel + 1, p->program,
               p->channel == 9 ? "drum kit" : aria_instrument_name(aria_program_class(p->program)));
    }
    printf("\n");
    printf("drum notes\t%zu\n", st->n_drum_notes);
    printf("tempo changes\t%zu", st->n_tempos);
    if (st->n_tempos) printf(" (first %.2f bpm)", 60e6 / (st->first_tempo ? st->first_tempo : 1));
    printf("\n");
    printf("sustain pedal\t%zu messages (%zu down)\n", st->n_pedals, st->n_pedals_down);
    printf("warnings\t%d\n", st->n_warnings);
    for (int i = 0; i < st->n_warnings && i < ARIA_MIDI_MAX_WARNINGS; i++) printf("warning\t%s\n", st->warnings[i]);
}

static int cmd_info(int argc, char **argv) {
    static const struct option lo[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c != 'h') return option_error("info", argv, "h");
        puts("usage: aria info FILE.mid|MODEL.safetensors...\n"
             "\n"
             "Describes MIDI files: format, time division, tracks, duration, notes,\n"
             "programs (channel 1-16: program, and its instrument class), tempo changes,\n"
             "sustain pedal and anything the reader had to forgive. Several files: one\n"
             "block each, in order, separated by an empty line. A .safetensors file: the\n"
             "model's shape, heads and each tensor's type (f32, bf16, q8_0, q4_0, q4_k) and shape.");
        return 0;
    }
    if (optind >= argc) return usage_error("info", "no input file");
    int status = 0, printed = 0;
    for (int f = optind; f < argc; f++) {
        size_t len = strlen(argv[f]);
        if (len > 12 && !strcmp(argv[f] + len - 12, ".safetensors")) { /* a model: its tensors' types */
            if (printed++) printf("\n");
            if (cli_model_info(argv[f])) status = EXIT_INPUT;
            continue;
        }
        aria_file_stats st;
        aria_error err = {{0}};
        if (aria_file_stats_read(&st, argv[f], &err) != ARIA_OK) {
            fail_file(argv[f], err.msg);
            status = EXIT_INPUT;
            continue;
        }
        if (printed++) printf("\n");
        print_info(argv[f], &st);
        aria_file_stats_free(&st);
    }
    return fflush(stdout) == 0 ? status : EXIT_INPUT;
}

/* ---------------------------------------------------------------------- */

static void help_main(void) {
    puts("aria " ARIA_VERSION " - the Aria piano-performance system in C\n"
         "\n"
         "usage: aria COMMAND [options] ...\n"
         "\n"
         "commands:\n"
         "  tokenize     MIDI -> Aria tokens (JSON) or ids\n"
         "  detokenize   tokens or ids -> MIDI\n"
         "  notes        list the notes of a MIDI file in milliseconds\n"
         "  info         describe a MIDI file (or a weights file: each tensor's type)\n"
         "  generate     continue a MIDI prompt with a model\n"
         "  embed        embedding vectors of MIDI files\n"
         "  logits       model logits for a list of ids\n"
         "  init         write a model with random weights\n"
         "  train        train or finetune a model (next-token, contrastive, classifier)\n"
         "  classify     label MIDI files with a finetuned classifier\n"
         "  dataset      MIDI folders -> token shards for training\n"
         "  quantize     a q8_0 / q4_0 / q4_k copy of a weights file\n"
         "  eval-loss    a model's mean next-token loss over a dataset split\n"
         "  probe        linear probe of embeddings or features on labelled files\n"
         "  render       MIDI -> WAV audio (FluidSynth, a General MIDI soundfont)\n"
         "  roll         MIDI -> PNG piano roll"
         "\n"
         "`aria COMMAND --help` describes each command and its defaults;\n"
         "`aria --version --verbose` the kernels and optional libraries this aria uses.");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        help_main();
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        help_main();
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("aria " ARIA_VERSION);
        if (argc > 2 && (!strcmp(argv[2], "--verbose") || !strcmp(argv[2], "-v"))) {
            /* what the model commands would run on, and which optional
               libraries load here (each is opened at its first use) */
            aria_ctx *ctx = NULL;
            aria_ctx_opts co = cli_ctx_opts(0);
            if (aria_ctx_new(&ctx, &co, NULL) == ARIA_OK) printf("kernels: %s\n", aria_ctx_describe(ctx));
            aria_ctx_free(ctx);
            char libs[1024];
            aria_libs_describe(libs, sizeof libs);
            fputs(libs, stdout);
        }
        return 0;
    }
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "notes")) return cmd_notes(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "init")) return cmd_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "classify")) return cmd_classify(argc - 1, argv + 1);
    if (!strcmp(cmd, "dataset")) return cmd_dataset(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval-loss")) return cmd_eval_loss(argc - 1, argv + 1);
    if (!strcmp(cmd, "probe")) return cmd_probe(argc - 1, argv + 1);
    if (!strcmp(cmd, "render")) return cmd_render(argc - 1, argv + 1);
    if (!strcmp(cmd, "roll")) return cmd_roll(argc - 1, argv + 1);
    fprintf(stderr, "aria: unknown command '%s'\nTry 'aria --help'.\n", cmd);
    return EXIT_USAGE;
}
