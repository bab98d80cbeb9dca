/*
 * cli.h - helpers shared by the `aria` subcommands (cli/main.c holds the
 * MIDI and tokenizer commands, cli/model_cmds.c the model commands).
 */
#ifndef ARIA_CLI_H
#define ARIA_CLI_H

#include "aria.h"

#define EXIT_INPUT 1
#define EXIT_USAGE 2

/* `aria: FILE: msg` on stderr */
void fail_file(const char *file, const char *msg);
/* `aria CMD: msg` + a hint on stderr; returns EXIT_USAGE */
int usage_error(const char *cmd, const char *fmt, ...);
int parse_long(const char *s, long long lo, long long hi, long long *out);
int parse_double(const char *s, double *out);
int parse_variant(const char *s, aria_tok_variant *v);
/* MIDI file -> score; prints the error and returns -1 on failure */
int load_score(const char *path, int exact, aria_score *s);
/* --config: a preset name or a JSON file; prints the error, -1 on failure */
int load_config_arg(const char *arg, aria_model_config *c);
/* Kernel context options: `threads` (0: all CPUs) and what the environment
   asks for (only the CLI reads it): ARIA_PRECISION=exact (else fast) and
   ARIA_KERNELS=generic (the portable C kernels only). */
aria_ctx_opts cli_ctx_opts(int threads);

int cmd_generate(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_dataset(int argc, char **argv);

#endif
