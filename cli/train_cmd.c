/*
 * train_cmd.c - `aria train`: options, progress line, Ctrl-C. The run
 * itself (data order, schedule, checkpoints, resume) is aria_train_run in
 * src/tasks/trainloop.c.
 *
 * Under mpirun every process runs this same command: MPI starts here
 * (aria_dist_start, told by the launcher's environment variables, which
 * only the CLI reads) before the options are read, and only rank 0 prints
 * (help, usage errors, progress, the run's error, which all processes
 * agree on), so a message appears once however many processes there are.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "cli.h"

/* What the progress callbacks print from (rank 0 only: aria_train_run
   reports from that rank alone). On a terminal one line is rewritten in
   place after every step; anywhere else (a log file, a pipe, mpirun,
   whose processes' stderr is a pipe even when its own is a terminal) a
   whole line every `every` steps or LOG_SECONDS seconds, the first and
   the last step included, so a redirected run is never silent. */
#define LOG_SECONDS 30.0
typedef struct {
    int tty;
    int line_open;   /* a rewritten line is on screen without its newline */
    long every;      /* off a terminal: a line every this many steps */
    double last_print;
    long step;       /* the last step, its loss, and the last validation */
    float loss, val_loss;
    long val_step;
} train_view;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void train_progress(void *ctx, long step, long total, float loss, double tps) {
    train_view *v = ctx;
    v->step = step;
    v->loss = loss;
    char val[48] = "";
    if (v->val_step > 0) snprintf(val, sizeof val, "  val loss %.4f (step %ld)", v->val_loss, v->val_step);
    if (v->tty) {
        fprintf(stderr, "\rstep %ld/%ld  loss %.4f%s  %.0f tokens/s   ", step, total, loss, val, tps);
        v->line_open = 1;
        return;
    }
    if (!v->every) v->every = total / 20 > 1 ? total / 20 : 1;
    double t = now_s();
    if (step == 1 || step == total || step % v->every == 0 || t - v->last_print >= LOG_SECONDS) {
        fprintf(stderr, "step %ld/%ld  loss %.4f%s  %.0f tokens/s\n", step, total, loss, val, tps);
        v->last_print = t;
    }
}

static void train_validated(void *ctx, long step, float val_loss) {
    train_view *v = ctx;
    v->val_step = step;
    v->val_loss = val_loss;
    if (!v->tty) fprintf(stderr, "step %ld  val loss %.4f\n", step, val_loss);
}

/* ARIA_TRAIN_PROFILE: the trainer's time per kind of work, when it ends. */
static void print_profile(void *ctx, const aria_trainer *t) {
    train_view *v = ctx;
    if (v->line_open) fputc('\n', stderr);
    v->line_open = 0;
    const char *names[16];
    double secs[16], tot = 0;
    int n = aria_trainer_profile(t, names, secs, 16);
    if (n > 16) n = 16;
    for (int k = 0; k < n; k++) tot += secs[k];
    fprintf(stderr, "trainer profile (%s):", aria_trainer_is_exact(t) ? "exact" : "fast");
    for (int k = 0; k < n; k++)
        fprintf(stderr, " %s %.3f s (%.1f%%)", names[k], secs[k], tot > 0 ? 100 * secs[k] / tot : 0);
    fprintf(stderr, "\n");
}

static void help_train(void) {
    fputs("usage: aria train --data DATA/ --out RUN/ (--config CFG | --init CKPT) [options]\n"
         "       aria train --objective contrastive --out RUN/ (--init LM | --config CFG) [options]\n"
         "                  (MIDI files and folders... | --files-from LIST)\n"
         "       aria train --objective classify --labels LABELS.csv --task NAME --out RUN/\n"
         "                  (--init LM | --config CFG) [options]\n"
         "       aria train --resume RUN/\n"
         "\n"
         "Trains on the next-token loss (pretraining, or finetuning with --init and a\n"
         "--sep-sequences dataset). RUN/ receives log.jsonl (one line per step and per\n"
         "validation), model.safetensors (official tensor names), and checkpoints from which\n"
         "--resume continues exactly where a killed run stopped. Off a terminal a line is\n"
         "printed every 5 % of the steps or 30 s, whichever comes first, and each validation;\n"
         "at the end, the last losses and where the weights are.\n"
         "\n"
         "options:\n"
         "  --data DIR            output of `aria dataset`\n"
         "  --out DIR             run directory (created; one that holds a run is refused)\n"
         "  --force               replace the run in --out DIR instead of refusing\n", stdout);
    printf("  --config CFG          model shape for a new model: JSON file or preset\n"
           "                        (%s); the dataset's --seq-len must fit\n"
           "                        the model's context\n", preset_list());
    puts("  --init FILE           weights to start from (safetensors)\n"
         "  --batch B             sequences per micro-batch, all processes together (default 8)\n"
         "  --grad-accum G        micro-batches per optimizer step (default 1)\n"
         "  --lr LR               peak learning rate (default 3e-4)\n"
         "  --warmup N            warm-up steps from 1e-6 x lr (default 200)\n"
         "  --lr-schedule S       aria (warm-up, then linear decay to 0.1 x lr) or constant\n"
         "                        (default aria)\n"
         "  --clip C              global gradient-norm clip (default 1.0; 0 = off)\n"
         "  --steps N             optimizer steps (default: --epochs over the dataset)\n"
         "  --epochs E            passes over the data when --steps is not given (default 1)\n"
         "  --augment / --no-augment   pitch +-5, velocity +-10, tempo +-20 % with mixup\n"
         "                        (default on)\n"
         "  --val-every K         validation loss every K steps (default 0 = at the end only\n"
         "                        when the dataset has a val split)\n"
         "  --val-batches K       validate on the first K batches of the val split only\n"
         "                        (default 0 = all of it)\n"
         "  --save-every K        checkpoint every K steps (default 100, and at the end)\n"
         "  --seed S              data order, augmentation and initial weights (default 0)\n"
         "  --threads N           CPU threads per process (default: all; under mpirun, a share)\n"
         "  --precision P         fast: bfloat16 matrix products with float32 accumulation,\n"
         "                        float32 weights, gradients and AdamW state (where oneDNN is\n"
         "                        built in; else float32); exact: float32 throughout, in the\n"
         "                        reference's order (default fast, or ARIA_PRECISION)\n"
         "  --peak-gflops G       the machine's peak, the denominator of log.jsonl's mfu\n"
         "                        (default 1000)\n"
         "  --resume DIR          continue the run in DIR with its own options\n"
         "  --condition-on EMB    train the embedding adapter too (spec 3.3): DATA built with\n"
         "                        `aria dataset --sep-sequences --embedding-model EMB` (the\n"
         "                        same file: its content hash is checked); a model without an\n"
         "                        embedding_adapter gets one, N(0, 0.02). A conditioned batch\n"
         "                        puts adapter(the file's embedding) at position 0 and moves\n"
         "                        every token one position right; log.jsonl's step lines say\n"
         "                        \"cond\", validation adds val_loss_cond (default: none)\n"
         "  --condition-p P       share of conditioned batches, drawn per micro-batch from\n"
         "                        the run's seed (default 0.5)\n"
         "  -h, --help            this help\n"
         "\n"
         "Objectives (docs/training.md):\n"
         "  --objective O         lm (default: next-token loss on --data), contrastive (an\n"
         "                        embedding model, spec 3.4) or classify (a classifier, spec 3.5)\n"
         "  contrastive: each step takes --batch files (given as arguments, folders walked for\n"
         "  *.mid/*.midi, or listed one per line in --files-from LIST) and two random views of\n"
         "  100-650 notes of each; loss = symmetric NT-Xent of emb_head at <E>. --init LM gets an\n"
         "  emb_head N(0, 0.02) and loses its lm_head; RUN/model.safetensors is read by\n"
         "  `aria embed`. Defaults: --lr 1e-5, --warmup 1000, no augmentation (--augment: the\n"
         "  pitch/velocity/tempo draws above, per view). Under mpirun every process embeds its\n"
         "  share of the files and the embeddings are gathered, so the loss is the one of the\n"
         "  global batch. log.jsonl: loss, retrieval_acc (rows whose most similar other view\n"
         "  is their own), val_loss and val_retrieval_acc on the held-out files.\n"
         "  --tau T               NT-Xent temperature (default 0.1)\n"
         "  --emb-size N          size of a new emb_head (default: the config's, else 512)\n"
         "  --files-from LIST     training files, one path per line\n"
         "  --val-list LIST       validation files, one path per line (default: --val-fraction)\n"
         "  classify: class_head at <E> over the labelled files of --task, the <E> embedding row\n"
         "  re-drawn N(0, 0.02); files cut into chunks of --notes-per-chunk notes (piano only),\n"
         "  each chunk a training sequence labelled as its file. Defaults: --lr 1e-5, --warmup\n"
         "  0, no augmentation. Validation per file (chunk probabilities weighted by token\n"
         "  counts): val_acc and val_macro_f1 in log.jsonl. The class names go into the\n"
         "  checkpoint (metadata aria_classes) for `aria classify`.\n"
         "  --dropout P           residual dropout on the attention and feed-forward outputs,\n"
         "                        layer-scaled (layer l: P l / (L - 1)), training only; the\n"
         "                        reference's classifier uses 0.2 (default 0 = none)\n"
         "  --labels CSV          columns path,task,label,group (../shared/midi/eval/labels.csv)\n"
         "  --task NAME           which task of the CSV\n"
         "  --root DIR            the folder the CSV's paths are relative to (default: the CSV's)\n"
         "  --per-class N         at most N training files per class (default 0 = all)\n"
         "  --folds K --fold F    K folds by group, fold F (0..K-1) held out (default: one\n"
         "                        fold of round(1 / --val-fraction))\n"
         "  --notes-per-chunk N   notes per chunk (default 300)\n"
         "  --max-chunks K        at most K chunks of each file, evenly spaced, for training and\n"
         "                        validation (default 0 = all; aria probe --max-chunks alike)\n"
         "  both:\n"
         "  --seq-len N           tokens per sequence (default 2048 contrastive, 1024 classify)\n"
         "  --val-fraction F      held-out share of the files, split by group so that versions\n"
         "                        of one piece stay together (default 0.05 contrastive, 0.2\n"
         "                        classify; 0 = none)\n"
         "  Files that cannot be used are skipped, counted in log.jsonl's first line and listed\n"
         "  with the reason in RUN/skipped.txt; RUN/train_files.txt and val_files.txt hold the split."
         "\n"
         "Several processes, data parallel (MPI):\n"
         "  mpirun -np 4 aria train --data DATA/ --out RUN/ --config CFG --batch 8 ...\n"
         "  mpirun --hostfile HOSTS -np 16 aria train ...   (HOSTS: one `host slots=N` per line)\n"
         "--batch stays the global batch: each of the N processes takes batch/N sequences of\n"
         "every micro-batch (--batch must be a multiple of N), the gradients are summed across\n"
         "the processes before clipping and AdamW, and every process steps identically, so the\n"
         "losses follow those of one process with the same --batch and --grad-accum. Rank 0\n"
         "alone writes RUN/ and prints; every process reads DATA/ (and RUN/ on --resume) at the\n"
         "same path, and a --resume may use a different N. Without --threads each process uses\n"
         "its share of the CPUs it may run on (Open MPI binds each of 1-2 processes to one core:\n"
         "add --bind-to none). As root add --allow-run-as-root; more processes than CPUs need\n"
         "--oversubscribe. See docs/training.md.\n");
    puts(aria_dist_built_with_mpi() ? "This aria is built with MPI."
                               : "This aria is built without MPI (install libopenmpi-dev and rebuild); it refuses\n"
                                 "to start as one of several processes under mpirun.");
}

/* The files a contrastive or classify run left out (RUN/skipped.txt:
   path, tab, reason), counted and named on stderr. */
static void report_skipped(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/skipped.txt", dir);
    FILE *f = fopen(p, "r");
    if (!f) return;
    char line[4700];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!n++) fprintf(stderr, "aria train: skipped files (also in %s):\n", p);
        fprintf(stderr, "  %s", line);
    }
    fclose(f);
}

/* The command on one process; `quiet` on all ranks but 0, which exit with
   the same status as rank 0 without a word. */
#define USAGE(...) (quiet ? EXIT_USAGE : usage_error("train", __VA_ARGS__))
static int train_main(int argc, char **argv, const aria_launch *launch, int quiet) {
    aria_train_opts o = aria_train_defaults();
    const char *cfg_arg = NULL;
    long long v;
    double dv;
    enum { O_DATA = 256, O_OUT, O_CFG, O_INIT, O_BATCH, O_ACC, O_LR, O_WARM, O_SCHED, O_CLIP, O_STEPS, O_EPOCHS,
           O_AUG, O_NOAUG, O_VAL, O_SAVE, O_SEED, O_THREADS, O_RESUME, O_PREC, O_PEAK, O_VALB, O_FORCE, O_OBJ,
           O_TAU, O_SEQ, O_VFRAC, O_VLIST, O_FILES, O_LABELS, O_TASK, O_ROOT, O_PERCLASS, O_FOLDS, O_FOLD, O_EMBSZ,
           O_NPC, O_MAXCH, O_COND, O_CONDP, O_DROP };
    static const struct option lo[] = {
        {"data", required_argument, 0, O_DATA},      {"out", required_argument, 0, O_OUT},
        {"config", required_argument, 0, O_CFG},     {"init", required_argument, 0, O_INIT},
        {"batch", required_argument, 0, O_BATCH},    {"grad-accum", required_argument, 0, O_ACC},
        {"lr", required_argument, 0, O_LR},          {"warmup", required_argument, 0, O_WARM},
        {"lr-schedule", required_argument, 0, O_SCHED}, {"clip", required_argument, 0, O_CLIP},
        {"steps", required_argument, 0, O_STEPS},    {"epochs", required_argument, 0, O_EPOCHS},
        {"augment", no_argument, 0, O_AUG},          {"no-augment", no_argument, 0, O_NOAUG},
        {"val-every", required_argument, 0, O_VAL},  {"save-every", required_argument, 0, O_SAVE},
        {"seed", required_argument, 0, O_SEED},      {"threads", required_argument, 0, O_THREADS},
        {"resume", required_argument, 0, O_RESUME},  {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, O_PREC}, {"peak-gflops", required_argument, 0, O_PEAK},
        {"val-batches", required_argument, 0, O_VALB}, {"force", no_argument, 0, O_FORCE},
        {"objective", required_argument, 0, O_OBJ},  {"tau", required_argument, 0, O_TAU},
        {"seq-len", required_argument, 0, O_SEQ},    {"val-fraction", required_argument, 0, O_VFRAC},
        {"val-list", required_argument, 0, O_VLIST}, {"files-from", required_argument, 0, O_FILES},
        {"labels", required_argument, 0, O_LABELS},  {"task", required_argument, 0, O_TASK},
        {"root", required_argument, 0, O_ROOT},      {"per-class", required_argument, 0, O_PERCLASS},
        {"folds", required_argument, 0, O_FOLDS},    {"fold", required_argument, 0, O_FOLD},
        {"emb-size", required_argument, 0, O_EMBSZ}, {"notes-per-chunk", required_argument, 0, O_NPC},
        {"max-chunks", required_argument, 0, O_MAXCH},
        {"condition-on", required_argument, 0, O_COND}, {"condition-p", required_argument, 0, O_CONDP},
        {"dropout", required_argument, 0, O_DROP},
        {0, 0, 0, 0}};
    int lr_given = 0, warm_given = 0, aug_given = 0, condp_given = 0;
    const char *files_from = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_DATA: o.data_dir = optarg; break;
        case O_OUT: o.out_dir = optarg; break;
        case O_CFG: cfg_arg = optarg; break;
        case O_INIT: o.init_path = optarg; break;
        case O_BATCH:
            if (parse_long(optarg, 1, 4096, &v)) return USAGE("--batch wants 1..4096");
            o.batch = (int)v;
            break;
        case O_ACC:
            if (parse_long(optarg, 1, 4096, &v)) return USAGE("--grad-accum wants 1..4096");
            o.grad_accum = (int)v;
            break;
        case O_LR:
            if (parse_double(optarg, &dv) || dv <= 0 || dv > 1) return USAGE("--lr wants a number in (0, 1]");
            o.lr = (float)dv;
            lr_given = 1;
            break;
        case O_WARM:
            if (parse_long(optarg, 0, 1000000000, &v)) return USAGE("--warmup wants a count >= 0");
            o.warmup = (int)v;
            warm_given = 1;
            break;
        case O_SCHED:
            if (!strcmp(optarg, "aria")) o.constant_lr = 0;
            else if (!strcmp(optarg, "constant")) o.constant_lr = 1;
            else return USAGE("--lr-schedule wants aria or constant");
            break;
        case O_CLIP:
            if (parse_double(optarg, &dv) || dv < 0) return USAGE("--clip wants a number >= 0");
            o.clip = (float)dv;
            break;
        case O_STEPS:
            if (parse_long(optarg, 1, 1000000000, &v)) return USAGE("--steps wants a count >= 1");
            o.steps = (long)v;
            break;
        case O_EPOCHS:
            if (parse_long(optarg, 1, 100000, &v)) return USAGE("--epochs wants a count >= 1");
            o.epochs = (int)v;
            break;
        case O_AUG: o.augment = 1, aug_given = 1; break;
        case O_NOAUG: o.augment = 0, aug_given = 1; break;
        case O_OBJ:
            if (!strcmp(optarg, "lm")) o.objective = ARIA_OBJ_LM;
            else if (!strcmp(optarg, "contrastive")) o.objective = ARIA_OBJ_CONTRASTIVE;
            else if (!strcmp(optarg, "classify")) o.objective = ARIA_OBJ_CLASSIFY;
            else return USAGE("--objective wants lm, contrastive or classify");
            break;
        case O_TAU:
            if (parse_double(optarg, &dv) || !(dv > 0) || dv > 100) return USAGE("--tau wants a number in (0, 100]");
            o.tau = (float)dv;
            break;
        case O_SEQ:
            if (parse_long(optarg, 16, 1 << 20, &v)) return USAGE("--seq-len wants 16..1048576");
            o.seq_len = (int)v;
            break;
        case O_VFRAC:
            if (parse_double(optarg, &dv) || dv < 0 || dv >= 1) return USAGE("--val-fraction wants a number in [0, 1)");
            o.val_fraction = dv;
            break;
        case O_VLIST: o.val_list = optarg; break;
        case O_FILES: files_from = optarg; break;
        case O_LABELS: o.labels = optarg; break;
        case O_TASK: o.task = optarg; break;
        case O_ROOT: o.root = optarg; break;
        case O_PERCLASS:
            if (parse_long(optarg, 0, 1000000000, &v)) return USAGE("--per-class wants a count >= 0");
            o.per_class = (int)v;
            break;
        case O_FOLDS:
            if (parse_long(optarg, 2, 1000, &v)) return USAGE("--folds wants 2..1000");
            o.folds = (int)v;
            break;
        case O_FOLD:
            if (parse_long(optarg, 0, 999, &v)) return USAGE("--fold wants 0..999");
            o.fold = (int)v;
            break;
        case O_EMBSZ:
            if (parse_long(optarg, 1, 65536, &v)) return USAGE("--emb-size wants 1..65536");
            o.emb_size = (int)v;
            break;
        case O_COND: o.condition_on = optarg; break;
        case O_DROP:
            if (parse_double(optarg, &dv) || !(dv >= 0 && dv < 1)) return USAGE("--dropout wants a number in [0, 1)");
            o.dropout = (float)dv;
            break;
        case O_CONDP:
            if (parse_double(optarg, &dv) || !(dv >= 0 && dv <= 1)) return USAGE("--condition-p wants 0..1");
            o.condition_p = (float)dv, condp_given = 1;
            break;
        case O_MAXCH:
            if (parse_long(optarg, 0, 100000, &v)) return USAGE("--max-chunks wants 0..100000");
            o.max_chunks = (int)v;
            break;
        case O_NPC:
            if (parse_long(optarg, 1, 100000, &v)) return USAGE("--notes-per-chunk wants 1..100000");
            o.notes_per_chunk = (int)v;
            break;
        case O_VAL:
            if (parse_long(optarg, 0, 1000000000, &v)) return USAGE("--val-every wants a count >= 0");
            o.val_every = (int)v;
            break;
        case O_SAVE:
            if (parse_long(optarg, 0, 1000000000, &v)) return USAGE("--save-every wants a count >= 0");
            o.save_every = (int)v;
            break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ull >> 1), &v)) return USAGE("--seed wants an integer >= 0");
            o.seed = (uint64_t)v;
            break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &v)) return USAGE("--threads wants 1..256");
            o.threads = (int)v;
            break;
        case O_VALB:
            if (parse_long(optarg, 0, 1000000000, &v)) return USAGE("--val-batches wants a count >= 0");
            o.val_batches = (int)v;
            break;
        case O_PREC:
            if (!strcmp(optarg, "fast")) o.exact = 0;
            else if (!strcmp(optarg, "exact")) o.exact = 1;
            else return USAGE("--precision wants fast or exact");
            break;
        case O_PEAK:
            if (parse_double(optarg, &dv) || !(dv > 0)) return USAGE("--peak-gflops wants a number > 0");
            o.peak_flops = dv * 1e9;
            break;
        case O_RESUME:
            o.resume = 1;
            o.out_dir = optarg;
            break;
        case O_FORCE: o.overwrite = 1; break;
        case 'h':
            if (!quiet) help_train();
            return 0;
        default: return quiet ? EXIT_USAGE : option_error("train", argv, "h");
        }
    }
    int heads_obj = o.objective != ARIA_OBJ_LM;
    if (optind != argc && !(o.objective == ARIA_OBJ_CONTRASTIVE && !o.resume))
        return USAGE("unexpected argument '%s'", argv[optind]);
    if (heads_obj && o.data_dir) return USAGE("--data is for --objective lm; %s reads MIDI files",
                                              o.objective == ARIA_OBJ_CONTRASTIVE ? "contrastive" : "classify");
    if (o.objective == ARIA_OBJ_CONTRASTIVE && !o.resume && optind == argc && !files_from)
        return USAGE("--objective contrastive wants MIDI files or folders (or --files-from LIST)");
    if (o.objective == ARIA_OBJ_CLASSIFY && !o.resume && (!o.labels || !o.task))
        return USAGE("--objective classify wants --labels CSV and --task NAME");
    if (o.folds && o.fold >= o.folds) return USAGE("--fold wants 0..%d for --folds %d", o.folds - 1, o.folds);
    if (o.dropout > 0 && o.objective != ARIA_OBJ_CLASSIFY) return USAGE("--dropout is for --objective classify");
    if (o.dropout > 0 && o.resume) return USAGE("--resume keeps the run's --dropout (in its run.json)");
    if (heads_obj && o.condition_on) return USAGE("--condition-on trains the next-token loss (--objective lm)");
    if (condp_given && !o.condition_on) return USAGE("--condition-p needs --condition-on");
    if (o.resume && o.condition_on) return USAGE("--resume keeps the run's --condition-on (in its run.json)");
    if (!heads_obj && (o.labels || o.task || files_from || o.val_list))
        return USAGE("--labels, --task, --files-from and --val-list need --objective classify or contrastive");
    if (heads_obj) {
        if (!lr_given) o.lr = 1e-5f;
        if (!warm_given) o.warmup = o.objective == ARIA_OBJ_CONTRASTIVE ? 1000 : 0;
        if (!aug_given) o.augment = 0;
    }
    if (!o.resume && !heads_obj && (!o.data_dir || !o.out_dir)) return USAGE("--data and --out are required");
    if (!o.resume && heads_obj && !o.out_dir) return USAGE("--out is required");
    if (!o.resume && !cfg_arg && !o.init_path) return USAGE("give --config or --init");
    if (o.resume && o.overwrite) return USAGE("--force replaces a run; --resume continues one");
    if (cfg_arg) {
        aria_error err = {{0}};
        if (aria_config_preset(&o.config, cfg_arg) != ARIA_OK && aria_config_read(&o.config, cfg_arg, &err) != ARIA_OK) {
            if (!quiet) fail_file(cfg_arg, err.msg);
            return EXIT_INPUT;
        }
        o.has_config = 1;
    }
    /* contrastive inputs: the arguments, then the lines of --files-from */
    char **inputs = NULL, *text = NULL;
    size_t n_inputs = 0;
    if (o.objective == ARIA_OBJ_CONTRASTIVE && !o.resume) {
        size_t cap = (size_t)(argc - optind) + 1;
        if (files_from) {
            uint8_t *buf;
            size_t len;
            aria_error e = {{0}};
            if (aria_read_file(files_from, &buf, &len, &e) != ARIA_OK) {
                if (!quiet) fail_file(files_from, e.msg);
                return EXIT_INPUT;
            }
            text = realloc(buf, len + 1);
            if (!text) {
                free(buf);
                return EXIT_INPUT;
            }
            text[len] = 0;
            for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
            cap++;
        }
        inputs = malloc(cap * sizeof *inputs);
        if (!inputs) {
            free(text);
            return EXIT_INPUT;
        }
        for (int i = optind; i < argc; i++) inputs[n_inputs++] = argv[i];
        for (char *line = text, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            size_t l = strlen(line);
            while (l && (line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
            if (l && line[0] != '#') inputs[n_inputs++] = line;
            if (!next) break;
        }
        o.inputs = (const char *const *)inputs;
        o.n_inputs = n_inputs;
    }
    train_view view = {.tty = aria_dist_size() == 1 && isatty(2), .last_print = now_s()};
    o.progress = train_progress;
    o.validated = train_validated;
    o.progress_ctx = &view;
    o.launched_size = launch->size;
    const char *prof = getenv("ARIA_TRAIN_PROFILE");
    o.profile = prof && *prof && strcmp(prof, "0") != 0;
    o.trainer_done = o.profile ? print_profile : NULL;
    /* precision and kernels from the environment; --precision, when
       given, still decides the trainer's products (o.exact) */
    aria_ctx_opts co = cli_ctx_opts(o.threads);
    aria_error err = {{0}};
    if (aria_ctx_new(&o.ctx, &co, &err) != ARIA_OK) {
        if (!quiet) fprintf(stderr, "aria: %s\n", err.msg);
        return EXIT_INPUT;
    }
    int rc = aria_train_run(&o, &err);
    free(inputs);
    free(text);
    aria_ctx_free(o.ctx);
    if (view.line_open) fputc('\n', stderr);
    if (rc != ARIA_OK) {
        /* the library's messages start with the file or directory at fault */
        if (!quiet) fprintf(stderr, "aria: %s\n", err.msg);
        return EXIT_INPUT;
    }
    if (quiet) return 0;
    report_skipped(o.out_dir);
    char val[64] = "";
    if (view.val_step > 0) snprintf(val, sizeof val, ", val loss %.4f (step %ld)", view.val_loss, view.val_step);
    if (view.step > 0)
        fprintf(stderr, "aria train: %s: step %ld, loss %.4f%s; weights %s/model.safetensors (`aria train --resume %s` "
                        "continues)\n",
                o.out_dir, view.step, view.loss, val, o.out_dir, o.out_dir);
    else
        fprintf(stderr, "aria train: %s: no steps left to run; weights %s/model.safetensors\n", o.out_dir, o.out_dir);
    return 0;
}

int cmd_train(int argc, char **argv) {
    aria_launch launch = aria_dist_launch_info(getenv);
    aria_dist_start(&launch);
    int rc = train_main(argc, argv, &launch, aria_dist_rank() != 0);
    aria_dist_stop();
    return rc;
}
