/*
 * classify_cmd.c - `aria classify`: a finetuned classifier (aria train
 * --objective classify) on MIDI files. Per file: the label and every
 * class's probability (chunks of --notes-per-chunk notes, each chunk's
 * softmax at <E> weighted by its token count; aria_classify_score). A file
 * that cannot be classified (unreadable, no notes, not piano) is skipped
 * with one line naming it, and the summary counts and names the skips.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/json.h"
#include "cli.h"

static void help_classify(void) {
    puts("usage: aria classify --model CLS.safetensors [options] FILE.mid...\n"
         "\n"
         "The label of each MIDI file by a classifier finetuned with `aria train --objective\n"
         "classify` (its class_head and the class names in its metadata). A file is cut into\n"
         "chunks of --notes-per-chunk notes (piano-only files; at most the model's context, 1024\n"
         "tokens by default); each chunk's class probabilities at its <E> are weighted by its\n"
         "token count, summed and normalized; the label is the most probable class.\n"
         "\n"
         "Output, one line per file: FILE<TAB>LABEL<TAB>class=p class=p ... (classes in the\n"
         "model's order); with --json one JSON array of {\"file\", \"label\", \"probs\": {class: p},\n"
         "\"chunks\"}. Files that cannot be classified are skipped, one line each on stderr, and\n"
         "counted at the end; the exit status is 1 when no file could be classified.\n"
         "\n"
         "options:\n"
         "  --model FILE          the classifier (safetensors with class_head.weight)\n"
         "  --json                JSON output\n"
         "  --notes-per-chunk N   notes per chunk (default 300, as the finetune)\n"
         "  --max-len N           tokens per chunk at most (default min(1024, model context))\n"
         "  --threads N           CPU threads (default: all)\n"
         "  -h, --help            this help");
}

int cmd_classify(int argc, char **argv) {
    const char *model_path = NULL;
    int json = 0, threads = 0, npc = 300, max_len = 0;
    long long v;
    enum { O_MODEL = 256, O_JSON, O_NPC, O_MAXLEN, O_THREADS };
    static const struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                       {"json", no_argument, 0, O_JSON},
                                       {"notes-per-chunk", required_argument, 0, O_NPC},
                                       {"max-len", required_argument, 0, O_MAXLEN},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_JSON: json = 1; break;
        case O_NPC:
            if (parse_long(optarg, 1, 100000, &v)) return usage_error("classify", "--notes-per-chunk wants 1..100000");
            npc = (int)v;
            break;
        case O_MAXLEN:
            if (parse_long(optarg, 2, 1 << 20, &v)) return usage_error("classify", "--max-len wants 2..1048576");
            max_len = (int)v;
            break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &v)) return usage_error("classify", "--threads wants 1..256");
            threads = (int)v;
            break;
        case 'h': help_classify(); return 0;
        default: return option_error("classify", argv, "h");
        }
    }
    if (!model_path) return usage_error("classify", "--model is required");
    if (optind == argc) return usage_error("classify", "no MIDI files given");
    aria_error err = {{0}};
    aria_model *m = NULL;
    if (aria_model_load(&m, model_path, NULL, &err) != ARIA_OK) {
        fail_file(model_path, err.msg);
        return EXIT_INPUT;
    }
    char **names = NULL;
    int C = 0;
    if (!(aria_model_heads(m) & ARIA_HEAD_CLS)) {
        fail_file(model_path, (aria_model_heads(m) & ARIA_HEAD_EMB)
                                  ? "an embedding model, not a classifier (no class_head.weight)"
                                  : "not a classifier (no class_head.weight); make one with `aria train --objective "
                                    "classify`");
        aria_model_free(m);
        return EXIT_INPUT;
    }
    if (aria_model_class_names(m, &names, &C, &err) != ARIA_OK) {
        fail_file(model_path, err.msg);
        aria_model_free(m);
        return EXIT_INPUT;
    }
    aria_ctx_opts co = cli_ctx_opts(threads);
    aria_ctx *ctx = NULL;
    if (aria_ctx_new(&ctx, &co, &err) == ARIA_OK) aria_model_set_ctx(m, ctx);
    int ctx_len = aria_model_get_config(m)->max_seq_len;
    if (!max_len) max_len = ctx_len < 1024 ? ctx_len : 1024;
    if (max_len > ctx_len) max_len = ctx_len;
    aria_tokenizer *tk = aria_tokenizer_for_model(m);
    float *p = malloc((size_t)C * sizeof *p);
    int n_ok = 0, n_skip = 0;
    char **skipped = calloc((size_t)(argc - optind), sizeof *skipped);
    if (json) fputs("[", stdout);
    for (int i = optind; tk && p && skipped && i < argc; i++) {
        const char *f = argv[i];
        aria_score sc = {0};
        size_t nc = 0;
        if (load_score(f, 0, 0, &sc) != 0) { /* load_score printed why */
            skipped[n_skip++] = argv[i];
            continue;
        }
        int rc = aria_classify_score(m, tk, &sc, npc, max_len, p, &nc, &err);
        aria_score_free(&sc);
        if (rc != ARIA_OK) {
            fprintf(stderr, "aria: %s: skipped: %s\n", f, err.msg);
            skipped[n_skip++] = argv[i];
            continue;
        }
        int best = 0;
        for (int k = 1; k < C; k++)
            if (p[k] > p[best]) best = k;
        if (json) {
            fputs(n_ok ? ",\n {\"file\": " : "\n {\"file\": ", stdout);
            json_write_string(stdout, f, strlen(f));
            fputs(", \"label\": ", stdout);
            json_write_string(stdout, names[best], strlen(names[best]));
            fputs(", \"probs\": {", stdout);
            for (int k = 0; k < C; k++) {
                if (k) fputs(", ", stdout);
                json_write_string(stdout, names[k], strlen(names[k]));
                printf(": %.6f", p[k]);
            }
            printf("}, \"chunks\": %zu}", nc);
        } else {
            printf("%s\t%s\t", f, names[best]);
            for (int k = 0; k < C; k++) printf("%s%s=%.4f", k ? " " : "", names[k], p[k]);
            putchar('\n');
        }
        n_ok++;
    }
    if (json) fputs(n_ok ? "\n]\n" : "]\n", stdout);
    if (n_skip) {
        fprintf(stderr, "aria classify: %d of %d files skipped:", n_skip, argc - optind);
        for (int k = 0; k < n_skip; k++) fprintf(stderr, " %s", skipped[k]);
        fputc('\n', stderr);
    }
    int status = (!tk || !p || !skipped) ? EXIT_INPUT : n_ok ? 0 : EXIT_INPUT;
    if (!tk || !p || !skipped) fprintf(stderr, "aria: out of memory\n");
    free(skipped);
    free(p);
    aria_class_names_free(names, C);
    aria_tokenizer_free(tk);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}
