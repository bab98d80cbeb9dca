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
/* The option getopt_long refused (run with opterr = 0, so this is the only
   message): `aria CMD: unknown option '--x'` or `option '--seed' needs a
   value`; returns EXIT_USAGE. `shorts` is the optstring. */
int option_error(const char *cmd, char **argv, const char *shorts);
/* One line per damaged MIDI file (what the reader forgave, read as far as
   it goes): `aria: warning: FILE: first problem (N problems; ...)`. */
void warn_damaged(const char *file, int n_warnings, const char *first, int strict);
/* The presets (every file of configs/), "medium, medium-emb, small, tiny". */
const char *preset_list(void);
/* Creates a directory and its missing parents (mkdir -p); *created (may be
   NULL) tells whether `path` itself was made. 0, or -1 with errno. */
int make_dirs(const char *path, int *created);
int parse_long(const char *s, long long lo, long long hi, long long *out);
int parse_double(const char *s, double *out);
int parse_variant(const char *s, aria_tok_variant *v);
/* MIDI file -> score; prints the error and returns -1 on failure. A
   damaged file that could be read is warned about (warn_damaged), or with
   `strict` refused. */
int load_score(const char *path, int exact, int strict, aria_score *s);
/* --config: a preset name or a JSON file; prints the error, -1 on failure */
int load_config_arg(const char *arg, aria_model_config *c);
/* Kernel context options: `threads` (0: all CPUs) and what the environment
   asks for (only the CLI reads it): ARIA_PRECISION=exact (else fast) and
   ARIA_KERNELS=generic (the portable C kernels only). */
aria_ctx_opts cli_ctx_opts(int threads);

/* cli/bundled.c: the path of the bundled model models/NAME/model.safetensors
   found relative to the program or the working directory (0), else the
   error is printed (-1). */
int cli_bundled_model(const char *name, char *out, size_t cap);
/* The embedding a conditioned generation steers by: one row of `dim`
   float32 values from `npy`, else the embedding model's global embedding
   of `midi`. Errors are printed; *emb is malloc'd. */
int cli_cond_embedding(const char *npy, const char *emb_model, const char *midi, int threads, int dim,
                       float **emb);

int cmd_generate(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_roll(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_eval_loss(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_classify(int argc, char **argv);
/* What `aria info` prints for a weights file (cli/quant_cmd.c); the exit status. */
int cli_model_info(const char *path);
/* render_cmd.c's work, also for `aria generate --render --roll`: MIDI file
   -> WAV / PNG; errors are printed (naming the file at fault), -1 returned.
   `soundfont` NULL: the default one. */
/* FluidSynth built in and a soundfont at hand (*soundfont NULL: the default
   one, filled in); else the error is printed and -1 returned. */
int render_ready(const char **soundfont);
int render_wav(const char *mid, const char *wav, const aria_render_opts *o);
int roll_png(const char *mid, const char *png, const aria_roll_opts *o);

#endif
