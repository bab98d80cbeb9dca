#!/usr/bin/env bash
# bench/run_train.sh - training benchmark beside its PyTorch peer, one
# machine, one run (issue 4, item 6): tokens/s and MFU of full optimizer
# steps (zero_grad, forward + backward, clip 1.0, AdamW) on three shapes.
#
#   bench/run_train.sh
#
# Environment knobs (defaults in brackets):
#   SHAPES [tiny small medium]  shapes to run: tiny = configs/tiny.json,
#                     small = d 512, 8 heads, 8 layers, ff_mult 4, vocab
#                     17727 (built into bench_train), medium =
#                     configs/medium.json
#   SEQ [512]         tokens per sequence
#   TINY_BATCH [8] SMALL_BATCH [8] MEDIUM_BATCH [1]   sequences per step
#                     (medium at batch 1: float32 weights, gradients and
#                     two AdamW moments are 10.5 GB alone; scaled from the
#                     small shape's peak RSS, about 13-14 GB in C and 15 GB
#                     in PyTorch, an estimate, not measured)
#   REPS [5]          timed C steps per run (after one warm-up step)
#   PEER_REPS [3]     timed PyTorch steps per run
#   THREADS [nproc]   C threads and torch.set_num_threads alike
#   RUNS [c-fast c-exact torch-f32 torch-bf16]   what to run per shape:
#                     c-fast (bfloat16 products through oneDNN), c-exact
#                     (float32 everywhere; only for EXACT_SHAPES), torch-f32
#                     (float32, OpenBLAS), torch-bf16 (autocast bfloat16,
#                     float32 master weights)
#   EXACT_SHAPES [tiny small]   shapes c-exact runs on
#   PEAK_GFLOPS       the bf16 GEMM peak for MFU; default: measured here
#                     by build/bench_model --micro (oneDNN's own bf16
#                     matmul, 512 x 1536 x 6144, THREADS threads: the
#                     dnnl_gemm_bf16_peak line), PEAK_REPS [5] times
#   MEDIUM_MODEL      a weights file for the C medium run instead of
#                     random weights (aria_model_new_random draws 52 M
#                     normals in 1.4 s here, so medium's 658 M take ~20 s),
#                     e.g. /tmp/aria-bench-medium-f32.safetensors of
#                     bench_model
#   OPENBLAS_DIR      OpenBLAS's libblas.so.3 for the peer's float32
#                     matmuls, as in bench/run_model.sh (Debian's
#                     python3-torch links the reference BLAS by default, a
#                     straw man); default: extracted under /tmp/openblas
#   LOG_DIR [mktemp]  raw outputs; summary.md is the table
#   PYTHON [/usr/bin/python3]  Debian's python3 with python3-torch
#   OPT [-O2]         passed to make
#
# Steps (the shared ones in bench/common.sh): builds (make all
# bench-train, and bench-model unless PEAK_GFLOPS is given), snapshots the
# binaries (others rebuild while this runs), records the machine and its
# load, measures the GEMM peak, then for each shape runs the C and PyTorch
# benchmarks back to back, one process each (so each peak RSS is its own),
# and writes summary.md: tokens/s, GFLOP/s, MFU, peak RSS, and the ratio
# of C fast to the better PyTorch run.
set -euo pipefail

cd "$(dirname "$0")/.."
SHAPES=${SHAPES:-tiny small medium}
SEQ=${SEQ:-512}
TINY_BATCH=${TINY_BATCH:-8}
SMALL_BATCH=${SMALL_BATCH:-8}
MEDIUM_BATCH=${MEDIUM_BATCH:-1}
REPS=${REPS:-5}
PEER_REPS=${PEER_REPS:-3}
PEAK_REPS=${PEAK_REPS:-5}
THREADS=${THREADS:-$(nproc)}
RUNS=${RUNS:-c-fast c-exact torch-f32 torch-bf16}
EXACT_SHAPES=${EXACT_SHAPES:-tiny small}
PYTHON=${PYTHON:-/usr/bin/python3}
OPT=${OPT:--O2}
MEDIUM_MODEL=${MEDIUM_MODEL:-}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/aria-bench-train.XXXXXX)}
OPENBLAS_DIR=${OPENBLAS_DIR:-/tmp/openblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread}
mkdir -p "$LOG_DIR"
. bench/common.sh

bench_build bench_train
if [ -z "${PEAK_GFLOPS:-}" ]; then # bench_model measures the peak
    make -s OPT="$OPT" bench-model || {
        echo "run_train.sh: build/bench_model does not build; give the bf16 GEMM peak as PEAK_GFLOPS=..." >&2
        exit 2
    }
    snapshot bench_model
fi

machine "SHAPES='$SHAPES' SEQ=$SEQ batches tiny/small/medium=$TINY_BATCH/$SMALL_BATCH/$MEDIUM_BATCH REPS=$REPS PEER_REPS=$PEER_REPS THREADS=$THREADS RUNS='$RUNS' EXACT_SHAPES='$EXACT_SHAPES'" \
    available | tee "$LOG_DIR/machine.txt"

# ---- the bf16 GEMM peak -------------------------------------------------------
peak_src="PEAK_GFLOPS from the environment"
if [ -z "${PEAK_GFLOPS:-}" ]; then
    run_step "GEMM peak: bench_model --micro --reps $PEAK_REPS --threads $THREADS" micro "$LOG_DIR/micro.txt" \
        "$LOG_DIR/bench_model" --micro --reps "$PEAK_REPS" --threads "$THREADS"
    PEAK_GFLOPS=$(get "$LOG_DIR/micro.txt" dnnl_gemm_bf16_peak)
    peak_src="oneDNN's bf16 matmul 512×1536×6144 alone, $THREADS threads, median of $PEAK_REPS (bench_model --micro, this run)"
    if [ -z "$PEAK_GFLOPS" ]; then # a build without oneDNN: the kernels' own bf16 product
        PEAK_GFLOPS=$(get "$LOG_DIR/micro.txt" kern_gemm_bf16_fast)
        peak_src="kern_matmul bf16 512×1536×6144 (no oneDNN in this build), $THREADS threads (bench_model --micro, this run)"
    fi
fi
PEAK_GFLOPS=${PEAK_GFLOPS:-0}
echo "peak:      $PEAK_GFLOPS GFLOP/s bf16 ($peak_src)" | tee -a "$LOG_DIR/machine.txt"

# ---- the runs -----------------------------------------------------------------
set_peer_env

batch_of() { case $1 in tiny) echo "$TINY_BATCH" ;; small) echo "$SMALL_BATCH" ;; medium) echo "$MEDIUM_BATCH" ;; esac; }
shape_args() { case $1 in tiny) echo "--config configs/tiny.json" ;; medium) echo "--config configs/medium.json" ;; *) echo "--shape $1" ;; esac; }

for shape in $SHAPES; do
    B=$(batch_of "$shape")
    [ -n "$B" ] || { echo "unknown shape $shape (tiny, small, medium)" >&2; exit 2; }
    read -r -a common <<<"$(shape_args "$shape")"
    common+=(--batch "$B" --seq "$SEQ" --threads "$THREADS" --peak-gflops "$PEAK_GFLOPS")
    for run in $RUNS; do
        out="$LOG_DIR/${shape}_$run.txt"
        case $run in
        c-fast | c-exact)
            prec=${run#c-}
            if [ "$prec" = exact ] && ! has "$shape" "$EXACT_SHAPES"; then continue; fi
            extra=()
            [ "$shape" = medium ] && [ -n "$MEDIUM_MODEL" ] && extra=(--model "$MEDIUM_MODEL")
            run_step "$shape, C $prec: bench_train ${common[*]} --reps $REPS --precision $prec ${extra[*]}" "$shape-$run" "$out" \
                "$LOG_DIR/bench_train" "${common[@]}" --reps "$REPS" --precision "$prec" "${extra[@]}"
            ;;
        torch-f32 | torch-bf16)
            prec=${run#torch-}
            run_step "$shape, PyTorch $prec: ${peer_env[*]} $PYTHON bench/bench_train.py ${common[*]} --reps $PEER_REPS --precision $prec" \
                "$shape-$run" "$out" "${peer_env[@]}" "$PYTHON" bench/bench_train.py "${common[@]}" --shape "$shape" \
                --reps "$PEER_REPS" --precision "$prec"
            ;;
        *) echo "unknown run $run" >&2; exit 2 ;;
        esac
    done
done
load after | tee -a "$LOG_DIR/machine.txt"

# ---- the table ----------------------------------------------------------------
range() { [ -f "$1" ] && awk -v k="$2" 'function f(x) { return x >= 100 ? sprintf("%.0f", x) : x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x) }
    $1=="RESULT" && $2==k {sub("min=","",$5); sub("max=","",$6); printf "%s–%s\n", f($5), f($6); exit}' "$1" || true; }
label() { case $1 in c-fast) echo "C fast (bf16 products)" ;; c-exact) echo "C exact (float32)" ;;
    torch-f32) echo "PyTorch f32 (OpenBLAS)" ;; torch-bf16) echo "PyTorch bf16 autocast" ;; esac; }
{
    echo "Training steps (zero_grad, forward + backward, clip 1.0, AdamW), $THREADS threads, sequence $SEQ;" \
         "bf16 GEMM peak $(fmt "$PEAK_GFLOPS") GFLOP/s ($peak_src)."
    echo
    echo "| shape | batch | run | tokens/s | min–max | s/step | fwd+bwd / clip / AdamW s | GFLOP/s | MFU | CPU % | peak RSS MB | C fast / best PyTorch |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for shape in $SHAPES; do
        B=$(batch_of "$shape")
        cf=$(get "$LOG_DIR/${shape}_c-fast.txt" train_tok_s)
        best=$(maxof "$(get "$LOG_DIR/${shape}_torch-f32.txt" train_tok_s)" "$(get "$LOG_DIR/${shape}_torch-bf16.txt" train_tok_s)")
        for run in $RUNS; do
            F="$LOG_DIR/${shape}_$run.txt"
            [ -f "$F" ] || continue
            r=""
            [ "$run" = c-fast ] && r=$(ratio "$cf" "$best" 2)
            echo "| $shape | $B | $(label "$run") | $(fmt "$(get "$F" train_tok_s)") | $(range "$F" train_tok_s) |" \
                 "$(fmt "$(get "$F" train_step_s)") | $(fmt "$(get "$F" fwdbwd_s)") / $(fmt "$(get "$F" clip_s)") / $(fmt "$(get "$F" adamw_s)") |" \
                 "$(fmt "$(get "$F" train_gflops)") | $(fmt "$(get "$F" train_mfu)") % |" \
                 "$(fmt "$(get "$F" cpu_pct)") | $(fmt "$(get "$F" peak_rss_mb)") | $r |"
        done
    done
    echo
    echo "tokens/s = batch × sequence / step time (median of the timed steps, after one warm-up step)." \
         "GFLOP/s and MFU count 6 (L (4 d² + 3 d ff) + V d) + 6 L d (T + 1) flops per token, as the mfu of the" \
         "trainer's log.jsonl does (src/tasks/trainloop.c): the matrix weights of the layers and the lm_head (the embedding" \
         "is a lookup, not counted), plus causal attention." \
         "MFU is against the bf16 peak for every row, float32 runs included$(f32=$(get "$LOG_DIR/micro.txt" dnnl_gemm_f32_peak)
            [ -n "$f32" ] && echo " (oneDNN's f32 GEMM peak in this run: $(fmt "$f32") GFLOP/s)")." \
         "Targets (issue 4 item 6): C fast ≥ 2× the better PyTorch run; MFU ≥ 40 % on the small shape."
} | tee "$LOG_DIR/summary.md"

echo
echo "raw outputs: $LOG_DIR"
