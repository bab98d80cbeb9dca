/*
 * dataset_cmd.c - `aria dataset`: folders of MIDI files -> token shards for
 * `aria train`. Parses the options, shows progress on a terminal, prints
 * the summary; the work is aria_dataset_build (src/tasks/dataset.c).
 *
 * Exit status: 0 built; 1 bad input (a directory that cannot be read, a
 * bad --ids line, nothing kept, a finished dataset in the way, a write
 * failure); 2 bad usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"

/* Prints text word-wrapped to `width` columns, indented by `indent`. */
static void print_wrapped(const char *text, int indent, int width) {
    int col = 0;
    while (*text) {
        size_t w = strcspn(text, " ");
        if (col && col + 1 + (int)w > width) {
            putchar('\n');
            col = 0;
        }
        col += col ? printf(" %.*s", (int)w, text) : printf("%*s%.*s", indent, "", (int)w, text);
        text += w;
        while (*text == ' ') text++;
    }
    putchar('\n');
}

static void help_dataset(void) {
    puts("usage: aria dataset --out DATA [options] DIR...\n"
         "\n"
         "Builds training data: every .mid/.midi file under the DIRs (walked recursively,\n"
         "any letter case; files may be named directly) is read, checked by the quality\n"
         "filters, deduplicated, assigned to train or validation, tokenized with the\n"
         "default Aria tokenizer (<D> and <E> present, instrument prefix shuffled, as the\n"
         "reference's pre-training data) and cut into sequences of --seq-len ids, stored\n"
         "in DATA/<split>-e<epoch>-<k>.bin shards (4096 sequences each) listed by\n"
         "DATA/manifest.json. The manifest is written last: without it, a build did\n"
         "not finish. The same inputs and options always give byte-identical files.\n"
         "\n"
         "options:\n"
         "  --out DIR          output directory (created if missing; required)\n"
         "  --seq-len N        ids per sequence, at most the context of the model to train\n"
         "                     (default 8192, the medium model's; 512 for the tiny preset)\n"
         "  --epochs E         training epochs, each tokenized afresh: new <D> positions\n"
         "                     and prefix orders, new file order (default 1); validation\n"
         "                     is tokenized once\n"
         "  --val-fraction F   share of the files kept for validation, chosen by a seeded\n"
         "                     hash of their content (default 0.05; at least 1 file when\n"
         "                     there are 2 or more, 0 for none)\n"
         "  --sep-sequences    every file starts a new sequence, its last one <P>-padded\n"
         "                     (generative finetuning); default: files concatenated in a\n"
         "                     shuffled order and cut, only the very last sequence padded\n"
         "  --embedding-model EMB.safetensors\n"
         "                     with --sep-sequences: embed every kept file with this\n"
         "                     embedding model (as aria embed does), for training an\n"
         "                     embedding adapter (aria train --condition-on EMB):\n"
         "                     DATA/embeddings.npy, a row per file, each sequence's row\n"
         "                     in DATA/<split>-e<epoch>.rows; the manifest records the\n"
         "                     model's file name, size and content hash (default: none)\n"
         "  --drop-restrikes MS\n"
         "                     drop every note whose key its instrument struck at most MS\n"
         "                     ms before (0: exact doubles only), keeping the longer sound;\n"
         "                     POP909 doubles its melody across tracks, which teaches a\n"
         "                     model to strike one key twice at once (default: keep all,\n"
         "                     as the reference)\n"
         "  --group-by MODE    files the split keeps on one side (default auto):\n"
         "                     auto: one piece's versions and parts: the folder (a\n"
         "                       'versions' folder counts as its parent) and the name\n"
         "                       without -v2, _mov_1, _no_12, _part1, _cut marks, so\n"
         "                       POP909's NNN/NNN.mid and NNN/versions/NNN-vK.mid go\n"
         "                       together; a name ending in ', ID' (GiantMIDI's\n"
         "                       11-character YouTube id) joins every name holding ID\n"
         "                     dir: the folder ('versions' counts as its parent)\n"
         "                     regex:PATTERN: the first (group) of the POSIX extended\n"
         "                       regex's match on the path, else the whole match;\n"
         "                       unmatched files stand alone\n"
         "                     none: every file alone\n"
         "  --filters NAME     default: the reference's quality filters (below); none:\n"
         "                     keep every readable file with notes (default: default)\n"
         "  --ids FILE         pre-tokenized input, one sequence of ids per line (spaces\n"
         "                     between ids), used as is in every epoch; repeatable, with\n"
         "                     or without DIRs; each line counts as one file\n"
         "  --jobs J           threads (default: all CPUs)\n"
         "  --seed S           seeds the split, the shuffles, the tokenizer (default 0)\n"
         "  --force            replace a finished dataset in DATA\n"
         "  --strict           drop damaged MIDI files (default: read what can be read, and warn)\n"
         "  -h, --help         this help\n"
         "\n"
         "Duplicates: files whose scores (notes, pedal, programs, tempo map, after the\n"
         "instruments the tokenizer ignores are removed) hash alike; the first file in\n"
         "path order is kept.\n"
         "\n"
         "Quality filters (aria config.json data.tests), run on the score as read; a\n"
         "dropped file is counted under the first one it fails, in this order:");
    for (int f = 0; f < ARIA_N_FILTERS; f++) {
        printf("  %s\n", aria_filter_name(f));
        print_wrapped(aria_filter_rule(f), 6, 79);
    }
    puts("\nTimes follow the reference's tick->ms; windows slide in 1 s steps from the\n"
         "first note. The summary gives, per filter, the files counted under it and the\n"
         "files failing it at all.");
}

typedef struct {
    int tty;
    int open; /* a progress line without its newline is on screen */
    int strict; /* --strict: damaged files are dropped */
    char **drops; /* "path: reason: detail" of the files left out */
    size_t n_drops;
} progress_state;

/* One warning line per damaged file (the reader kept what it could). */
static void on_damaged(void *ctx, const char *path, int n_warnings, const char *first) {
    progress_state *p = ctx;
    if (p->open) { /* finish the progress line first */
        fputc('\n', stderr);
        p->open = 0;
    }
    warn_damaged(path, n_warnings, first ? first : "damaged", p->strict);
}

/* Keeps the line of a dropped file for the summary. */
static void on_drop(void *ctx, const char *path, int reason, const char *detail) {
    progress_state *p = ctx;
    char **v = realloc(p->drops, (p->n_drops + 1) * sizeof *v);
    if (!v) return;
    p->drops = v;
    size_t len = strlen(path) + strlen(detail) + 64;
    if (!(v[p->n_drops] = malloc(len))) return;
    snprintf(v[p->n_drops++], len, "%s: %s%s%s", path, aria_drop_name(reason), *detail ? ": " : "", detail);
}

#define DROPS_SHOWN 40

static void on_progress(void *ctx, const char *stage, size_t done, size_t total) {
    progress_state *p = ctx;
    if (!p->tty) return;
    fprintf(stderr, "\raria dataset: %-9s %zu/%zu files ", stage, done, total);
    p->open = done < total;
    if (!p->open) fputc('\n', stderr);
}

static void print_summary(const aria_dataset_summary *s, const aria_dataset_opts *o, double secs,
                          const progress_state *ps, const char *out) {
    size_t dropped = 0;
    for (int r = 0; r < ARIA_N_DROP; r++) dropped += s->dropped[r];
    fprintf(stderr, "files seen       %zu\nkept             %zu\ndropped          %zu\n", s->files_seen,
            s->kept, dropped);
    for (int r = 0; r < ARIA_N_DROP; r++) {
        int is_filter = r >= ARIA_DROP_FILTER && r < ARIA_DROP_FILTER + ARIA_N_FILTERS;
        if (is_filter && !o->filters) continue;
        if (is_filter)
            fprintf(stderr, "  %-32s %zu (fails it at all: %zu)\n", aria_drop_name(r), s->dropped[r],
                    s->filter_failures[r - ARIA_DROP_FILTER]);
        else
            fprintf(stderr, "  %-32s %zu\n", aria_drop_name(r), s->dropped[r]);
    }
    if (s->ids_sequences) fprintf(stderr, "ids sequences    %zu\n", s->ids_sequences);
    fprintf(stderr, "groups           %zu (%zu in validation; a group is never split)\n", s->groups, s->val_groups);
    if (o->val_fraction > 0 && s->val_files == 0 && s->groups == 1 && s->kept > 1)
        fprintf(stderr, "aria: note: every kept file is in one group (--group-by): no validation split\n");
    fprintf(stderr,
            "train files      %zu\nval files        %zu\n"
            "train sequences  %llu (%d epoch%s)\nval sequences    %llu\ntokens           %llu\n",
            s->train_files, s->val_files, (unsigned long long)s->train_sequences, o->epochs,
            o->epochs == 1 ? "" : "s", (unsigned long long)s->val_sequences, (unsigned long long)s->tokens);
    if (o->embed_model && s->embedded < s->kept)
        fprintf(stderr, "embedded         %zu of %zu files (the others, in %s/embeddings.txt, train unconditioned)\n",
                s->embedded, s->kept, out);
    else if (o->embed_model)
        fprintf(stderr, "embedded         %zu of %zu files\n", s->embedded, s->kept);
    fprintf(stderr, "time             %.1f s\n", secs);
    if (ps->n_drops) fprintf(stderr, "dropped files (all in %s/dropped.tsv):\n", out);
    for (size_t i = 0; i < ps->n_drops && i < DROPS_SHOWN; i++) fprintf(stderr, "  %s\n", ps->drops[i]);
    if (ps->n_drops > DROPS_SHOWN) fprintf(stderr, "  ... and %zu more\n", ps->n_drops - DROPS_SHOWN);
}

/* Collects repeated --ids arguments. */
typedef struct {
    const char **v;
    size_t n;
} arglist;

static int arglist_push(arglist *a, const char *s) {
    const char **v = realloc(a->v, (a->n + 1) * sizeof *v);
    if (!v) return -1;
    v[a->n++] = s;
    a->v = v;
    return 0;
}

enum { O_OUT = 256, O_SEQ, O_EPOCHS, O_VAL, O_SEP, O_FILTERS, O_IDS, O_JOBS, O_SEED, O_FORCE, O_GROUP, O_STRICT, O_RESTRIKE,
       O_EMB };

/* One option into o; returns 0, or the exit status of a usage error. */
static int parse_option(int c, const char *arg, aria_dataset_opts *o, const char **out, arglist *ids) {
    long long v;
    double d;
    switch (c) {
    case O_OUT: *out = arg; return 0;
    case O_SEQ:
        if (parse_long(arg, 2, 65536, &v)) return usage_error("dataset", "--seq-len wants 2..65536, got '%s'", arg);
        o->seq_len = (int)v;
        return 0;
    case O_EPOCHS:
        if (parse_long(arg, 1, 100000, &v)) return usage_error("dataset", "--epochs wants 1..100000, got '%s'", arg);
        o->epochs = (int)v;
        return 0;
    case O_VAL:
        if (parse_double(arg, &d) || !(d >= 0 && d < 1))
            return usage_error("dataset", "--val-fraction wants a number in [0, 1), got '%s'", arg);
        o->val_fraction = d;
        return 0;
    case O_SEP: o->sep_sequences = 1; return 0;
    case O_FILTERS:
        if (!strcmp(arg, "default")) o->filters = 1;
        else if (!strcmp(arg, "none")) o->filters = 0;
        else return usage_error("dataset", "--filters wants default or none, got '%s'", arg);
        return 0;
    case O_IDS:
        if (arglist_push(ids, arg)) return EXIT_INPUT;
        return 0;
    case O_JOBS:
        if (parse_long(arg, 1, 256, &v)) return usage_error("dataset", "--jobs wants 1..256, got '%s'", arg);
        o->jobs = (int)v;
        return 0;
    case O_SEED:
        if (parse_long(arg, 0, (long long)(~0ull >> 1), &v))
            return usage_error("dataset", "--seed wants a non-negative integer, got '%s'", arg);
        o->seed = (uint64_t)v;
        return 0;
    case O_FORCE: o->overwrite = 1; return 0;
    case O_STRICT: o->strict = 1; return 0;
    case O_EMB: o->embed_model_path = arg; return 0;
    case O_RESTRIKE:
        if (parse_long(arg, 0, 1000, &v)) return usage_error("dataset", "--drop-restrikes wants 0..1000 ms, got '%s'", arg);
        o->drop_restrikes = 1;
        o->restrike_ms = (int)v;
        return 0;
    case O_GROUP:
        if (aria_group_mode_parse(arg, &o->group_by, &o->group_pattern))
            return usage_error("dataset", "--group-by wants auto, dir, none or regex:PATTERN, got '%s'", arg);
        return 0;
    default: return usage_error("dataset", "unknown option");
    }
}

int cmd_dataset(int argc, char **argv) {
    static const struct option lo[] = {
        {"out", required_argument, 0, O_OUT},         {"seq-len", required_argument, 0, O_SEQ},
        {"epochs", required_argument, 0, O_EPOCHS},   {"val-fraction", required_argument, 0, O_VAL},
        {"sep-sequences", no_argument, 0, O_SEP},     {"filters", required_argument, 0, O_FILTERS},
        {"ids", required_argument, 0, O_IDS},         {"jobs", required_argument, 0, O_JOBS},
        {"seed", required_argument, 0, O_SEED},       {"force", no_argument, 0, O_FORCE},
        {"strict", no_argument, 0, O_STRICT},
        {"group-by", required_argument, 0, O_GROUP},  {"embedding-model", required_argument, 0, O_EMB},
        {"drop-restrikes", required_argument, 0, O_RESTRIKE},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    aria_dataset_opts o = aria_dataset_defaults();
    const char *out = NULL;
    arglist ids = {0};
    int c, status = 0;
    optind = 1;
    opterr = 0;
    while (!status && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            help_dataset();
            free(ids.v);
            return 0;
        }
        status = c == '?' ? option_error("dataset", argv, "h") : parse_option(c, optarg, &o, &out, &ids);
    }
    if (!status && !out) status = usage_error("dataset", "--out DIR is required");
    if (!status && optind >= argc && ids.n == 0) status = usage_error("dataset", "no input: give DIRs or --ids FILE");
    if (!status && o.embed_model_path && !o.sep_sequences)
        status = usage_error("dataset", "--embedding-model needs --sep-sequences (each sequence must come from one file)");
    if (!status && o.embed_model_path && ids.n)
        status = usage_error("dataset", "--embedding-model embeds MIDI files; --ids lines have none to embed");
    if (status) {
        free(ids.v);
        return status;
    }
    aria_model *emb_model = NULL;
    aria_ctx *emb_ctx = NULL;
    if (o.embed_model_path) {
        aria_error e = {{0}};
        aria_ctx_opts co = cli_ctx_opts(o.jobs);
        if (aria_ctx_new(&emb_ctx, &co, &e) != ARIA_OK) {
            fprintf(stderr, "aria: %s\n", e.msg);
            free(ids.v);
            return EXIT_INPUT;
        }
        if (aria_model_load(&emb_model, o.embed_model_path, NULL, &e) != ARIA_OK) {
            fail_file(o.embed_model_path, e.msg);
            aria_ctx_free(emb_ctx);
            free(ids.v);
            return EXIT_INPUT;
        }
        aria_model_set_ctx(emb_model, emb_ctx);
        if (aria_output_dim(emb_model, ARIA_OUT_EMB) <= 0) {
            fail_file(o.embed_model_path, "not an embedding model (no emb_head.weight)");
            aria_model_free(emb_model);
            aria_ctx_free(emb_ctx);
            free(ids.v);
            return EXIT_INPUT;
        }
        o.embed_model = emb_model;
    }

    progress_state ps = {.tty = isatty(2), .strict = o.strict};
    o.progress = on_progress;
    o.on_drop = on_drop;
    o.on_damaged = on_damaged;
    o.progress_ctx = &ps;
    aria_dataset_summary sum;
    aria_error err = {{0}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = aria_dataset_build(out, (const char *const *)argv + optind, (size_t)(argc - optind), ids.v, ids.n,
                                &o, &sum, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(ids.v);
    aria_model_free(emb_model);
    aria_ctx_free(emb_ctx);
    if (rc != ARIA_OK) {
        if (ps.open) fputc('\n', stderr);
        fprintf(stderr, "aria: %s\n", err.msg);
        status = EXIT_INPUT;
    } else {
        print_summary(&sum, &o, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), &ps,
                      out);
    }
    for (size_t i = 0; i < ps.n_drops; i++) free(ps.drops[i]);
    free(ps.drops);
    return status;
}
