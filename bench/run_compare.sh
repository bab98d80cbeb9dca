#!/usr/bin/env bash
# bench/run_compare.sh - the same benchmarks on two versions of the code, in
# one run on one machine, so that a change can be judged against the noise.
#
#   bench/run_compare.sh REV_BEFORE [REV_AFTER|WORKTREE]
#
# REV_* are git revisions (commit, tag, branch). WORKTREE, the default for
# the second, is this checkout as it is now, uncommitted and untracked
# (not ignored) files included. Each side is built in a folder of its own
# from its own tree (a `git worktree` of the revision, or a copy of the
# working tree), bench programs included, so the two sides may differ in
# their sources, their bench programs and their Makefile (before and after
# the move of src/*.c into src/<layer>/ both build with
# `make BUILD=... bench bench-model bench-train`).
#
# Measured, each side in turn, ROUNDS times (round 1 runs "before" first,
# round 2 "after" first, and so on, so a drift of the machine's speed
# during the run weighs on both sides alike):
#   model-bf16, model-f32   bench_model (medium shape, random weights,
#                           bf16 or f32 file): prefill tok/s of a PROMPT-
#                           token prompt, decode tok/s at batch 1 and 4
#   train-small             bench_train --shape small --precision fast:
#                           tokens/s of full optimizer steps
#   tokenize                bench_tokenize over CORPUS: score+tokenize and
#                           parse+score+tokenize files/s, parse MB/s, one
#                           thread
# Each run reports the median of its own repetitions; the table gives, per
# side, the median over the rounds and the range of everything measured
# (the runs' own min and max included), and after / before. A change is
# called faster or slower only when the two ranges do not overlap.
#
# Environment knobs (defaults in brackets; the defaults take about 10-13
# minutes on the 2-core machine, builds included, plus ~3 minutes the first
# time, to write the medium weight files):
#   ROUNDS [3]        before/after pairs of every benchmark
#   ONLY [model train tokenize]   which benchmarks
#   DTYPES [bf16 f32] bench_model weight files
#   MODEL_REPS [1]    bench_model --reps (each rep: prefill, decode b1, then
#                     a batch-4 prefill of 4 x PROMPT tokens and decode b4;
#                     a run also has ~10-15 s of set-up: more rounds buy
#                     more than more reps)
#   PROMPT [512]      bench_model --prompt
#   STEPS [16]        bench_model --steps
#   TRAIN_REPS [3]    bench_train --reps (after its warm-up step)
#   TRAIN_BATCH [8]   bench_train --batch
#   SEQ [512]         bench_train --seq
#   TOK_REPS [3]      bench_tokenize --reps
#   CORPUS [../shared/midi/corpus]  bench_tokenize's folder of MIDI files
#   THREADS [nproc]   threads of every program
#   MODEL_DIR [/tmp]  where the medium weight files are (bench_model's
#                     aria-bench-medium-<dtype>.safetensors, written once,
#                     by the "after" side, when absent; then read by both)
#   OPT [-O2]         passed to make
#   JOBS [2]          make -j
#   LOG_DIR [mktemp]  builds, raw outputs and summary.md (the table)
#   KEEP_TREES [0]    1 keeps the before/after source trees under LOG_DIR
#
# Smallest run (proves the script works, figures meaningless):
#   ROUNDS=1 MODEL_REPS=1 PROMPT=8 STEPS=1 TRAIN_REPS=1 TRAIN_BATCH=1 SEQ=32 \
#   TOK_REPS=1 CORPUS=tests/data/vectors bench/run_compare.sh a2e0baf
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
case $1 in -h | --help) usage ;; esac
REV_BEFORE=$1
REV_AFTER=${2:-WORKTREE}

ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-model train tokenize}
DTYPES=${DTYPES:-bf16 f32}
MODEL_REPS=${MODEL_REPS:-1}
PROMPT=${PROMPT:-512}
STEPS=${STEPS:-16}
TRAIN_REPS=${TRAIN_REPS:-3}
TRAIN_BATCH=${TRAIN_BATCH:-8}
SEQ=${SEQ:-512}
TOK_REPS=${TOK_REPS:-3}
CORPUS=${CORPUS:-../shared/midi/corpus}
THREADS=${THREADS:-$(nproc)}
MODEL_DIR=${MODEL_DIR:-/tmp}
OPT=${OPT:--O2}
JOBS=${JOBS:-2}
KEEP_TREES=${KEEP_TREES:-0}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/aria-bench-compare.XXXXXX)}
mkdir -p "$LOG_DIR"
LOG_DIR=$(cd "$LOG_DIR" && pwd)
. bench/common.sh # has, load, get, num, fmt, ratio
want() { has "$1" "$ONLY"; }

die() { echo "run_compare.sh: $*" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a positive number"
if want tokenize; then
    [ -d "$CORPUS" ] || die "no corpus at $CORPUS (set CORPUS, or leave tokenize out of ONLY)"
    CORPUS=$(cd "$CORPUS" && pwd)
fi

# ---- the two trees ------------------------------------------------------------
worktrees=()
cleanup() {
    local w
    [ "$KEEP_TREES" = 1 ] && return 0
    for w in "${worktrees[@]+"${worktrees[@]}"}"; do
        git -C "$ROOT" worktree remove --force "$w" >/dev/null 2>&1 || true
    done
    rm -rf "$LOG_DIR/tree-before" "$LOG_DIR/tree-after"
}
trap cleanup EXIT

# describe REV: how the table names a side
describe() {
    if [ "$1" = WORKTREE ]; then
        local n
        # other people's build folders are not part of the code
        n=$(git -C "$ROOT" status --porcelain | grep -c -v -E '^\?\? (build[^/]*/|aria$)' || true)
        echo "working tree (HEAD $(git -C "$ROOT" rev-parse --short HEAD) + $n changed or new paths)"
    else
        echo "$(git -C "$ROOT" rev-parse --short "$1^{commit}") $(git -C "$ROOT" log -1 --format='(%cs) %s' "$1" | cut -c1-90 | sed 's/ *$//')"
    fi
}

# make_tree SIDE REV: the sources of REV in LOG_DIR/tree-SIDE
make_tree() {
    local dir="$LOG_DIR/tree-$1"
    rm -rf "$dir"
    if [ "$2" = WORKTREE ]; then
        # tracked and untracked-but-not-ignored files that exist, no build folders
        mkdir -p "$dir"
        git -C "$ROOT" ls-files -z -c -o --exclude-standard |
            while IFS= read -r -d '' f; do
                case $f in build*/* | aria) continue ;; esac
                [ -f "$f" ] && printf '%s\0' "$f"
            done | tar -C "$ROOT" --null -T - -cf - | tar -C "$dir" -xf -
    else
        git -C "$ROOT" rev-parse --verify -q "$2^{commit}" >/dev/null || die "unknown revision '$2'"
        git -C "$ROOT" worktree add --detach "$dir" "$2" >"$LOG_DIR/worktree-$1.log" 2>&1 ||
            die "git worktree add failed (see $LOG_DIR/worktree-$1.log)"
        worktrees+=("$dir")
    fi
}

# build SIDE: the bench programs of that side, copied to LOG_DIR/bin-SIDE
build() {
    local dir="$LOG_DIR/tree-$1" bin="$LOG_DIR/bin-$1" t0=$SECONDS
    echo "== build $1 (make -j$JOBS OPT=$OPT bench bench-model bench-train in $dir)"
    make -C "$dir" -s -j"$JOBS" BUILD=build OPT="$OPT" bench bench-model bench-train >"$LOG_DIR/build-$1.log" 2>&1 || {
        tail -20 "$LOG_DIR/build-$1.log" >&2
        die "the $1 side does not build (log: $LOG_DIR/build-$1.log)"
    }
    mkdir -p "$bin"
    cp "$dir/build/bench_tokenize" "$dir/build/bench_model" "$dir/build/bench_train" "$bin/"
    echo "   built in $((SECONDS - t0)) s"
}

BEFORE_NAME=$(describe "$REV_BEFORE")
AFTER_NAME=$(describe "$REV_AFTER")
make_tree before "$REV_BEFORE"
make_tree after "$REV_AFTER"
build before
build after

# ---- the machine --------------------------------------------------------------
settings="ROUNDS=$ROUNDS ONLY='$ONLY' DTYPES='$DTYPES' MODEL_REPS=$MODEL_REPS PROMPT=$PROMPT STEPS=$STEPS"
settings+=" TRAIN_REPS=$TRAIN_REPS TRAIN_BATCH=$TRAIN_BATCH SEQ=$SEQ TOK_REPS=$TOK_REPS THREADS=$THREADS OPT=$OPT"
{
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:     $(uname -srm)"
    echo "cpu:       $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) online CPUs;" \
         "$(grep -o -w -E 'avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | paste -sd ' ')"
    echo "memory:    $(free -g | awk '/^Mem:/{print $2" GiB total, "$7" GiB available"}')"
    echo "compiler:  $(${CC:-cc} --version | head -1)"
    echo "oneDNN:    $(dpkg-query -W -f '${Package} ${Version}' libdnnl-dev 2>/dev/null || echo 'libdnnl-dev not installed')"
    echo "before:    $BEFORE_NAME"
    echo "after:     $AFTER_NAME"
    echo "corpus:    ${CORPUS:-}"
    echo "settings:  $settings"
} | tee "$LOG_DIR/machine.txt"

# ---- the runs -----------------------------------------------------------------
benches=()
if want model; then for dt in $DTYPES; do benches+=("model-$dt"); done; fi
want train && benches+=(train-small)
want tokenize && benches+=(tokenize)
[ ${#benches[@]} -gt 0 ] || die "nothing to run (ONLY='$ONLY')"

# The medium weight files: written once (by the after side's bench_model,
# outside the timed runs) and then read by both sides, which also puts them
# in the page cache before round 1.
if want model; then
    for dt in $DTYPES; do
        f="$MODEL_DIR/aria-bench-medium-$dt.safetensors"
        if [ ! -f "$f" ]; then
            echo "== writing $f (once)"
            if [ "$MODEL_DIR" = /tmp ]; then # bench_model's own default path
                "$LOG_DIR/bin-after/bench_model" --dtype "$dt" --reps 1 --prompt 1 --steps 1 --threads "$THREADS" \
                    >"$LOG_DIR/prepare-$dt.txt" 2>&1 || die "bench_model could not write $f (see $LOG_DIR/prepare-$dt.txt)"
            else
                die "$f is absent (bench_model writes it only under /tmp; run once with MODEL_DIR=/tmp)"
            fi
        fi
        cat "$f" >/dev/null # into the page cache
    done
fi

# command BENCH SIDE: the command line of one run
command_of() {
    local b="$LOG_DIR/bin-$2"
    case $1 in
    model-*) echo "$b/bench_model --dtype ${1#model-} --model $MODEL_DIR/aria-bench-medium-${1#model-}.safetensors" \
                  "--reps $MODEL_REPS --prompt $PROMPT --steps $STEPS --threads $THREADS" ;;
    train-small) echo "$b/bench_train --shape small --precision fast --batch $TRAIN_BATCH --seq $SEQ --reps $TRAIN_REPS --threads $THREADS" ;;
    tokenize) echo "$b/bench_tokenize --reps $TOK_REPS --threads $THREADS $CORPUS" ;;
    esac
}
# the figure a progress line shows
headline() { case $1 in model-*) echo prefill_tok_s ;; train-small) echo train_tok_s ;; tokenize) echo score_tokenize_files_per_s_1t ;; esac; }

t_start=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="before after"; else order="after before"; fi
    for bench in "${benches[@]}"; do
        for side in $order; do
            out="$LOG_DIR/$bench.$side.$r.txt"
            cmd=$(command_of "$bench" "$side")
            load "round-$r-$bench-$side" >>"$LOG_DIR/machine.txt"
            t0=$SECONDS
            # word splitting of cmd is wanted: paths here have no spaces
            # shellcheck disable=SC2086
            (cd "$LOG_DIR/tree-$side" && $cmd) >"$out" 2>"$out.err" || {
                tail -5 "$out.err" >&2
                die "failed: $cmd (output in $out, $out.err)"
            }
            printf '[round %d/%d] %-11s %-6s %-32s %10s  (%d s)\n' "$r" "$ROUNDS" "$bench" "$side" \
                "$(headline "$bench")" "$(fmt "$(get "$out" "$(headline "$bench")")")" $((SECONDS - t0))
        done
    done
done
load after >>"$LOG_DIR/machine.txt"
echo "runs took $((SECONDS - t_start)) s"

# ---- the table ----------------------------------------------------------------
# stats BENCH SIDE METRIC: "median lo hi" over the rounds; median of the
# runs' medians, lo/hi the extremes of everything (medians, min=, max=)
stats() {
    local r f
    for ((r = 1; r <= ROUNDS; r++)); do
        f="$LOG_DIR/$1.$2.$r.txt"
        [ -f "$f" ] && awk -v k="$3" '$1=="RESULT" && $2==k {
            lo=$3; hi=$3
            for (i = 5; i <= NF; i++) {
                if ($i ~ /^min=/) lo = substr($i, 5)
                if ($i ~ /^max=/) hi = substr($i, 5)
            }
            print $3, lo, hi; exit }' "$f"
    done | sort -g -k1,1 | awk '{ m[NR] = $1; if (NR == 1 || $2 < lo) lo = $2; if (NR == 1 || $3 > hi) hi = $3 }
        END { if (NR == 0) exit; med = NR % 2 ? m[(NR + 1) / 2] : (m[NR / 2] + m[NR / 2 + 1]) / 2; print med, lo, hi }'
}
verdict() { # BEFORE_LO BEFORE_HI AFTER_LO AFTER_HI
    awk -v bl="$(num "$1")" -v bh="$(num "$2")" -v al="$(num "$3")" -v ah="$(num "$4")" 'BEGIN{
        if (bl=="nan" || al=="nan") print "–"
        else if (bl == bh || al == ah) print "no noise figure (one value)"
        else if (al > bh) print "faster"
        else if (ah < bl) print "**slower**"
        else print "within noise" }'
}
row() { # BENCH METRIC LABEL
    local b_med b_lo b_hi a_med a_lo a_hi
    read -r b_med b_lo b_hi <<<"$(stats "$1" before "$2")" || true
    read -r a_med a_lo a_hi <<<"$(stats "$1" after "$2")" || true
    echo "| $3 | $(fmt "${b_med:-}") | $(fmt "${b_lo:-}")–$(fmt "${b_hi:-}") | $(fmt "${a_med:-}") |" \
         "$(fmt "${a_lo:-}")–$(fmt "${a_hi:-}") | $(ratio "${a_med:-}" "${b_med:-}" 2) |" \
         "$(verdict "${b_lo:-}" "${b_hi:-}" "${a_lo:-}" "${a_hi:-}") |"
}
# what each side's programs said about themselves in round 1
side_notes() {
    local k p
    k=$(cat "$LOG_DIR"/model-*."$1".1.txt 2>/dev/null | grep -m1 '^kernels:' || true)
    p=$(grep -m1 -h 'precision in effect' "$LOG_DIR/train-small.$1.1.txt" 2>/dev/null |
        sed 's/.*precision in effect: \([^;]*\).*/training precision: \1/' || true)
    echo "${k:-}${k:+; }${p:-}"
}
{
    echo "Before: $BEFORE_NAME"
    echo "After: $AFTER_NAME"
    echo
    echo "Machine: $(sed -n 's/^cpu:[[:space:]]*//p' "$LOG_DIR/machine.txt"); $(sed -n 's/^date:[[:space:]]*//p' "$LOG_DIR/machine.txt");" \
         "$THREADS threads; $ROUNDS rounds, sides alternating. Settings: $settings."
    echo
    echo "| measure | before | before range | after | after range | after / before | |"
    echo "|---|---|---|---|---|---|---|"
    for bench in "${benches[@]}"; do
        case $bench in
        model-*)
            dt=${bench#model-}
            row "$bench" prefill_tok_s "medium $dt: prefill tok/s ($PROMPT-token prompt)"
            row "$bench" decode_b1_tok_s "medium $dt: decode tok/s, batch 1"
            row "$bench" decode_b4_tok_s "medium $dt: decode tok/s, batch 4 (all rows)"
            ;;
        train-small)
            row "$bench" train_tok_s "small, fast precision: training tok/s (batch $TRAIN_BATCH × $SEQ)" ;;
        tokenize)
            row "$bench" score_tokenize_files_per_s_1t "tokenizer: score+tokenize files/s, 1 thread"
            row "$bench" parse_score_tokenize_files_per_s_1t "tokenizer: parse+score+tokenize files/s, 1 thread"
            row "$bench" parse_mbps_1t "MIDI parse MB/s, 1 thread"
            ;;
        esac
    done
    echo
    echo "Each figure is the median over the rounds of each run's own median (bench_model $MODEL_REPS reps," \
         "bench_train $TRAIN_REPS steps after a warm-up, bench_tokenize $TOK_REPS reps); a range spans every" \
         "value measured on that side (the runs' min and max included). \"faster\"/\"slower\" only when the two" \
         "ranges do not overlap."
    for side in before after; do
        notes=$(side_notes "$side")
        [ -n "$notes" ] && echo "The $side side: $notes."
    done
} | tee "$LOG_DIR/summary.md"

echo
echo "raw outputs: $LOG_DIR"
