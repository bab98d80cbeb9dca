/*
 * aria.c - the `aria` command: argument parsing, output formatting, exit
 * codes and progress. All music and token logic lives in libaria.
 *
 * Exit status: 0 success; 1 bad input (one line `aria: FILE: problem` on
 * stderr, no output file left behind); 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int load_score(const char *path, int exact, aria_score *s, aria_midi *m_out) {
    aria_midi m = {0};
    aria_error err = {{0}};
    int rc = aria_midi_read_file(&m, path, &err);
    if (rc == ARIA_OK) rc = aria_score_from_midi(s, &m, &err);
    if (rc != ARIA_OK) {
        fail_file(path, err.msg);
        aria_midi_free(&m);
        return -1;
    }
    s->exact_timing = exact;
    if (m_out)
        *m_out = m;
    else
        aria_midi_free(&m);
    return 0;
}

/* A growable text buffer: each file's output is built in memory so that
   parallel workers can hand it over whole. */
typedef struct {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->n + n + 1) cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            fprintf(stderr, "aria: out of memory\n");
            exit(EXIT_INPUT);
        }
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
}

static void text_printf(text *t, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k > 0) text_add(t, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
}

static void append_tokens(text *out, const aria_tokenizer *tk, const aria_token *toks, size_t n,
                          int as_ids) {
    char buf[96];
    if (!as_ids) text_add(out, "[", 1);
    for (size_t i = 0; i < n; i++) {
        int k = as_ids ? snprintf(buf, sizeof buf, "%s%d", i ? " " : "", aria_tok_id(tk, toks[i]))
                       : aria_tok_to_json(tk, toks[i], buf, sizeof buf);
        if (!as_ids && i) text_add(out, ",", 1);
        text_add(out, buf, (size_t)k);
    }
    if (!as_ids) text_add(out, "]", 1);
    text_add(out, "\n", 1);
}

/* ---------------------------------------------------------------------- */
/* aria tokenize                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
    const aria_tokenizer *tk;
    aria_tokenize_opts opts;
    uint64_t seed;
    int ids, exact;
    double prompt_seconds; /* < 0: whole file */
    int chunks;            /* embedding chunks, one line each */
    const char *out_dir;
} tok_job;

typedef struct {
    const tok_job *job;
    char **files;
    size_t n_files;
    text *outs;     /* per file */
    int *ok;        /* per file */
    size_t next;    /* next file to take */
    size_t done;
    pthread_mutex_t lock;
    int progress;   /* print a progress line */
} tok_pool;

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int tokenize_one(const tok_job *job, const char *path, text *out) {
    aria_score s;
    if (load_score(path, job->exact, &s, NULL)) return -1;
    aria_rng rng;
    aria_rng_seed(&rng, job->seed);
    aria_error err = {{0}};
    aria_token *toks = NULL;
    size_t n = 0;
    int rc;
    if (job->chunks) {
        aria_tok_chunk *ch;
        size_t nc;
        rc = aria_tok_embedding_chunks(job->tk, &s, 300, 2048, &rng, &ch, &nc, &err);
        if (rc == ARIA_OK) {
            for (size_t i = 0; i < nc; i++) append_tokens(out, job->tk, ch[i].toks, ch[i].n, job->ids);
            aria_tok_chunks_free(ch, nc);
        }
    } else {
        if (job->prompt_seconds >= 0)
            rc = aria_tok_prompt(job->tk, &s, (int64_t)(job->prompt_seconds * 1000.0 + 0.5), &rng,
                                 &toks, &n, &err);
        else
            rc = aria_tokenize(job->tk, &s, &job->opts, &rng, &toks, &n, &err);
        if (rc == ARIA_OK) append_tokens(out, job->tk, toks, n, job->ids);
    }
    free(toks);
    aria_score_free(&s);
    if (rc != ARIA_OK) {
        fail_file(path, err.msg);
        return -1;
    }
    if (job->out_dir) {
        char dst[4096];
        const char *b = base_name(path);
        const char *dot = strrchr(b, '.');
        int stem = dot && dot != b ? (int)(dot - b) : (int)strlen(b);
        snprintf(dst, sizeof dst, "%s/%.*s.%s", job->out_dir, stem, b, job->ids ? "ids" : "json");
        if (aria_write_file_atomic(dst, out->p, out->n, &err) != ARIA_OK) {
            fail_file(dst, err.msg);
            return -1;
        }
        out->n = 0;
    }
    return 0;
}

static void *tok_worker(void *arg) {
    tok_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->n_files) break;
        p->ok[i] = tokenize_one(p->job, p->files[i], &p->outs[i]) == 0;
        pthread_mutex_lock(&p->lock);
        p->done++;
        if (p->progress && (p->done % 16 == 0 || p->done == p->n_files))
            fprintf(stderr, "\rtokenized %zu/%zu files", p->done, p->n_files);
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

static void help_tokenize(void) {
    puts("usage: aria tokenize [options] FILE.mid...\n"
         "\n"
         "Tokenizes MIDI files with the Aria AbsTokenizer. One file: the tokens go to\n"
         "stdout as a JSON array (the format of the reference vectors). Several files:\n"
         "one line per file, in order, or one file each under --out-dir.\n"
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
         "  --out-dir DIR         write DIR/<name>.json (or .ids) per input file\n"
         "  --jobs N              files tokenized in parallel (default: number of CPUs)\n"
         "  -h, --help            this help");
}

static int cmd_tokenize(int argc, char **argv) {
    tok_job job = {.opts = {1, 0, 1}, .prompt_seconds = -1};
    aria_tok_variant variant = ARIA_TOKCFG_DEFAULT;
    long long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1) jobs = 1;
    enum { O_IDS = 256, O_DIM, O_NOEOS, O_KEEP, O_SEED, O_PROMPT, O_CHUNKS, O_EXACT, O_TOK, O_OUT, O_JOBS };
    static const struct option lo[] = {
        {"ids", no_argument, 0, O_IDS},          {"dim", no_argument, 0, O_DIM},
        {"no-eos", no_argument, 0, O_NOEOS},     {"keep-silence", no_argument, 0, O_KEEP},
        {"seed", required_argument, 0, O_SEED},  {"prompt-seconds", required_argument, 0, O_PROMPT},
        {"embedding-chunks", no_argument, 0, O_CHUNKS}, {"exact-timing", no_argument, 0, O_EXACT},
        {"tokenizer", required_argument, 0, O_TOK}, {"out-dir", required_argument, 0, O_OUT},
        {"jobs", required_argument, 0, O_JOBS},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    long long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_IDS: job.ids = 1; break;
        case O_DIM: job.opts.add_dim_tok = 1; break;
        case O_NOEOS: job.opts.add_eos_tok = 0; break;
        case O_KEEP: job.opts.remove_preceding_silence = 0; break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &v)) return usage_error("tokenize", "--seed wants a non-negative integer, got '%s'", optarg);
            job.seed = (uint64_t)v;
            break;
        case O_PROMPT:
            if (parse_double(optarg, &job.prompt_seconds) || job.prompt_seconds < 0)
                return usage_error("tokenize", "--prompt-seconds wants a number >= 0, got '%s'", optarg);
            break;
        case O_CHUNKS: job.chunks = 1; break;
        case O_EXACT: job.exact = 1; break;
        case O_TOK:
            if (parse_variant(optarg, &variant)) return usage_error("tokenize", "unknown tokenizer '%s'", optarg);
            break;
        case O_OUT: job.out_dir = optarg; break;
        case O_JOBS:
            if (parse_long(optarg, 1, 1024, &jobs)) return usage_error("tokenize", "--jobs wants 1..1024, got '%s'", optarg);
            break;
        case 'h': help_tokenize(); return 0;
        default: return usage_error("tokenize", "unknown option");
        }
    }
    if (optind >= argc) return usage_error("tokenize", "no input file");
    if (job.chunks && job.prompt_seconds >= 0)
        return usage_error("tokenize", "--embedding-chunks and --prompt-seconds exclude each other");

    aria_tokenizer *tk = aria_tokenizer_new(variant);
    if (!tk) return EXIT_INPUT;
    job.tk = tk;
    size_t nf = (size_t)(argc - optind);
    tok_pool pool = {.job = &job, .files = argv + optind, .n_files = nf,
                     .progress = nf > 16 && isatty(2)};
    pool.outs = calloc(nf, sizeof *pool.outs);
    pool.ok = calloc(nf, sizeof *pool.ok);
    if (!pool.outs || !pool.ok) return EXIT_INPUT;
    pthread_mutex_init(&pool.lock, NULL);
    size_t nt = (size_t)jobs < nf ? (size_t)jobs : nf;
    pthread_t th[1024];
    size_t started = 0;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, tok_worker, &pool) == 0) started++;
    tok_worker(&pool);
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (pool.progress) fputc('\n', stderr);

    int status = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!pool.ok[i]) status = EXIT_INPUT;
        else if (!job.out_dir) fwrite(pool.outs[i].p, 1, pool.outs[i].n, stdout);
        free(pool.outs[i].p);
    }
    free(pool.outs);
    free(pool.ok);
    pthread_mutex_destroy(&pool.lock);
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

/* A line of ids: integers separated by spaces, commas or newlines. */
static int parse_ids(const aria_tokenizer *tk, const char *p, size_t len, aria_token **out,
                     size_t *n, char *msg, size_t cap) {
    size_t cnt = 0, alloc = 0;
    aria_token *toks = NULL;
    size_t i = 0;
    while (i < len) {
        if (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == ',') {
            i++;
            continue;
        }
        long long v = 0;
        size_t st = i;
        while (i < len && p[i] >= '0' && p[i] <= '9' && v < 1000000000) v = v * 10 + (p[i++] - '0');
        if (i == st || (i < len && !strchr(" \t\r\n,", p[i]))) {
            snprintf(msg, cap, "expected a token id at byte %zu", st);
            free(toks);
            return -1;
        }
        if (v >= aria_tok_vocab_size(tk)) {
            snprintf(msg, cap, "token id %lld at byte %zu is outside the vocabulary (%d ids)", v, st,
                     aria_tok_vocab_size(tk));
            free(toks);
            return -1;
        }
        if (cnt == alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            aria_token *q = realloc(toks, alloc * sizeof *toks);
            if (!q) {
                free(toks);
                snprintf(msg, cap, "out of memory");
                return -1;
            }
            toks = q;
        }
        toks[cnt++] = aria_tok_token(tk, (int)v);
    }
    *out = toks;
    *n = cnt;
    return 0;
}

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
         "  -o, --output FILE     MIDI file to write (default: INPUT with .mid; required\n"
         "                        when reading standard input)\n"
         "  --tokenizer NAME      default, demo-17729 or demo-2675 (default: default)\n"
         "  -h, --help            this help");
}

static int cmd_detokenize(int argc, char **argv) {
    const char *out_path = NULL;
    aria_tok_variant variant = ARIA_TOKCFG_DEFAULT;
    static const struct option lo[] = {{"output", required_argument, 0, 'o'},
                                       {"tokenizer", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case 't':
            if (parse_variant(optarg, &variant)) return usage_error("detokenize", "unknown tokenizer '%s'", optarg);
            break;
        case 'h': help_detokenize(); return 0;
        default: return usage_error("detokenize", "unknown option");
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
    size_t n = 0;
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", buf[i])) i++;
    int rc;
    if (i < len && buf[i] == '[') {
        rc = aria_tok_parse_json(tk, (const char *)buf, len, &toks, &n, &err);
    } else {
        rc = parse_ids(tk, (const char *)buf, len, &toks, &n, err.msg, sizeof err.msg) ? ARIA_ERR_FORMAT : ARIA_OK;
    }
    free(buf);
    if (rc == ARIA_OK && n == 0) {
        snprintf(err.msg, sizeof err.msg, "no tokens");
        rc = ARIA_ERR_FORMAT;
    }
    aria_score s = {0};
    aria_midi m = {0};
    size_t skipped = 0;
    if (rc == ARIA_OK) rc = aria_detokenize(tk, toks, n, &s, &skipped, &err);
    if (rc == ARIA_OK) rc = aria_score_to_midi(&s, &m, &err);
    if (rc == ARIA_OK) rc = aria_midi_write_file(&m, out_path, &err);
    if (rc != ARIA_OK) {
        fail_file(rc == ARIA_ERR_IO ? out_path : in, err.msg);
    } else if (skipped) {
        fprintf(stderr, "aria: %s: skipped %zu malformed token%s\n", in, skipped, skipped == 1 ? "" : "s");
    }
    free(toks);
    aria_score_free(&s);
    aria_midi_free(&m);
    aria_tokenizer_free(tk);
    return rc == ARIA_OK ? 0 : EXIT_INPUT;
}

/* ---------------------------------------------------------------------- */
/* aria notes / aria info                                                 */
/* ---------------------------------------------------------------------- */

static int cmd_notes(int argc, char **argv) {
    int exact = 0;
    static const struct option lo[] = {{"exact-timing", no_argument, 0, 'x'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'x') exact = 1;
        else if (c == 'h') {
            puts("usage: aria notes [--exact-timing] FILE.mid\n"
                 "\n"
                 "Prints the notes of the file's score, one per line, tab-separated:\n"
                 "onset_ms offset_ms pitch velocity channel (channel 0-15), in score order\n"
                 "(by onset, ties in file order), before instrument removal and pedal.\n"
                 "\n"
                 "options:\n"
                 "  --exact-timing   integrate the tempo map exactly (default: the reference's\n"
                 "                   tick->ms, quirk included)\n"
                 "  -h, --help       this help");
            return 0;
        } else return usage_error("notes", "unknown option");
    }
    if (optind != argc - 1) return usage_error("notes", "expected one FILE.mid");
    aria_score s;
    if (load_score(argv[optind], exact, &s, NULL)) return EXIT_INPUT;
    text out = {0};
    for (size_t i = 0; i < s.n_notes; i++) {
        const aria_note *n = &s.notes[i];
        text_printf(&out, "%lld\t%lld\t%d\t%d\t%d\n", (long long)aria_score_tick_to_ms(&s, n->start),
                    (long long)aria_score_tick_to_ms(&s, n->end), n->pitch, n->velocity, n->channel);
    }
    if (out.n) fwrite(out.p, 1, out.n, stdout);
    free(out.p);
    aria_score_free(&s);
    return fflush(stdout) == 0 ? 0 : EXIT_INPUT;
}

static int cmd_info(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        puts("usage: aria info FILE.mid\n"
             "\n"
             "Describes a MIDI file: format, time division, tracks, duration, notes,\n"
             "programs, tempo changes, sustain pedal and anything the reader had to forgive.");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') return usage_error("info", "expected one FILE.mid");
    const char *path = argv[1];
    aria_midi m;
    aria_score s;
    if (load_score(path, 0, &s, &m)) return EXIT_INPUT;
    printf("file\t%s\n", path);
    printf("format\t%d\n", m.format);
    if (m.ppq > 0)
        printf("division\t%d ticks per quarter note\n", m.ppq);
    else
        printf("division\tSMPTE %s fps, %d ticks per frame\n", m.smpte_fps == 29 ? "29.97" : m.smpte_fps == 24 ? "24" : m.smpte_fps == 25 ? "25" : "30", m.smpte_tpf);
    size_t events = 0;
    for (size_t t = 0; t < m.n_tracks; t++) events += m.tracks[t].n_events;
    printf("tracks\t%zu (header says %d)\n", m.n_tracks, m.ntracks_declared);
    printf("events\t%zu\n", events);
    int64_t last = 0;
    for (size_t i = 0; i < s.n_notes; i++)
        if (s.notes[i].end > last) last = s.notes[i].end;
    int64_t ms = aria_score_tick_to_ms(&s, last);
    printf("duration\t%lld.%03lld s (end of the last note)\n", (long long)(ms / 1000), (long long)(ms % 1000));
    printf("notes\t%zu\n", s.n_notes);
    printf("programs\t");
    if (!s.n_programs) printf("none");
    for (size_t i = 0; i < s.n_programs; i++)
        printf("%sch%d:%d(%s)", i ? " " : "", s.programs[i].channel + 1, s.programs[i].program,
               aria_instrument_name(aria_program_class(s.programs[i].program)));
    printf("\n");
    int drums = 0;
    for (size_t i = 0; i < s.n_notes; i++) drums += s.notes[i].channel == 9;
    printf("drum notes\t%d\n", drums);
    printf("tempo changes\t%zu", s.n_tempos);
    if (s.n_tempos) printf(" (first %.2f bpm)", 60e6 / (s.tempos[0].tempo ? s.tempos[0].tempo : 1));
    printf("\n");
    size_t on = 0;
    for (size_t i = 0; i < s.n_pedals; i++) on += s.pedals[i].on;
    printf("sustain pedal\t%zu messages (%zu down)\n", s.n_pedals, on);
    printf("warnings\t%d\n", m.n_warnings);
    for (int i = 0; i < m.n_warnings && i < ARIA_MIDI_MAX_WARNINGS; i++) printf("warning\t%s\n", m.warnings[i]);
    aria_midi_free(&m);
    aria_score_free(&s);
    return fflush(stdout) == 0 ? 0 : EXIT_INPUT;
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
         "  info         describe a MIDI file\n"
         "  generate     continue a MIDI prompt with a model\n"
         "  embed        embedding vectors of MIDI files\n"
         "  logits       model logits for a list of ids\n"
         "  init         write a model with random weights\n"
         "  train        train or finetune a model on a dataset\n"
         "  dataset      MIDI folders -> token shards for training\n"
         "\n"
         "`aria COMMAND --help` describes each command and its defaults.");
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
    if (!strcmp(cmd, "dataset")) return cmd_dataset(argc - 1, argv + 1);
    fprintf(stderr, "aria: unknown command '%s'\nTry 'aria --help'.\n", cmd);
    return EXIT_USAGE;
}
