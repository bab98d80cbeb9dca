#!/usr/bin/env bash
# bench/run_model.sh - transformer inference benchmark beside its PyTorch
# peer, one machine, one run (issue "Transformer inference", items 3, 4, 10).
#
#   bench/run_model.sh
#
# Environment knobs (defaults in brackets):
#   REPS [5]          repetitions of every C measurement (median reported)
#   PEER_REPS [3]     repetitions of every PyTorch measurement
#   PROMPT [512]      prompt tokens (prefill; decoding continues after it)
#   STEPS [16]        decode steps per repetition (C and peer alike)
#   THREADS [nproc]   threads, C pool and torch.set_num_threads alike
#   DTYPES [bf16 f32] weight dtypes to run
#   ONLY [micro c peer]  parts to run
#   OPENBLAS_DIR      a directory holding OpenBLAS's libblas.so.3 for the
#                     peer's float32 matmuls (default: extracted from Debian's
#                     libopenblas0-pthread under /tmp/openblas if present).
#                     Debian's python3-torch links the reference BLAS by
#                     default (~1.6 GFLOP/s here), a straw man; with
#                     OpenBLAS the peer is what a user tuning it would run.
#                     bf16 matmuls go through torch's own oneDNN either way.
#   LOG_DIR [mktemp]  raw outputs; summary.md is the table for RESULTS.md
#   PYTHON [/usr/bin/python3]  Debian's python3 with python3-torch
#   OPT [-O2]         passed to make
#
# Steps (the shared ones in bench/common.sh): builds (make all bench-model),
# records the machine, runs build/bench_model --micro (memory bandwidth,
# oneDNN's GEMM peak, the decode kernel alone), then for each dtype the C model benchmark and the PyTorch
# peer back to back on the same weights file (bench_model writes
# /tmp/aria-bench-medium-<dtype>.safetensors on first use, the peer reads
# it), then prints the table with ratios and bounds.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-5}
PEER_REPS=${PEER_REPS:-3}
PROMPT=${PROMPT:-512}
STEPS=${STEPS:-16}
THREADS=${THREADS:-$(nproc)}
DTYPES=${DTYPES:-bf16 f32}
ONLY=${ONLY:-micro c peer}
PYTHON=${PYTHON:-/usr/bin/python3}
OPT=${OPT:--O2}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/aria-bench-model.XXXXXX)}
OPENBLAS_DIR=${OPENBLAS_DIR:-/tmp/openblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread}
mkdir -p "$LOG_DIR"
. bench/common.sh
want() { has "$1" "$ONLY"; }

bench_build bench_model

machine "REPS=$REPS PEER_REPS=$PEER_REPS PROMPT=$PROMPT STEPS=$STEPS THREADS=$THREADS" | tee "$LOG_DIR/machine.txt"

if want micro; then
    run_step "C: bench_model --micro --reps $REPS --threads $THREADS" micro "$LOG_DIR/micro.txt" \
        "$LOG_DIR/bench_model" --micro --reps "$REPS" --threads "$THREADS"
fi

set_peer_env
for dt in $DTYPES; do
    if want c; then
        run_step "C: bench_model --dtype $dt --reps $REPS --prompt $PROMPT --steps $STEPS --threads $THREADS" \
            "c-$dt" "$LOG_DIR/c_$dt.txt" "$LOG_DIR/bench_model" --dtype "$dt" --reps "$REPS" --prompt "$PROMPT" \
            --steps "$STEPS" --threads "$THREADS"
    fi
    if want peer; then
        run_step "peer: ${peer_env[*]} $PYTHON bench/bench_model.py --dtype $dt --reps $PEER_REPS --prompt $PROMPT --steps $STEPS --threads $THREADS" \
            "peer-$dt" "$LOG_DIR/peer_$dt.txt" "${peer_env[@]}" "$PYTHON" bench/bench_model.py --dtype "$dt" \
            --reps "$PEER_REPS" --prompt "$PROMPT" --steps "$STEPS" --threads "$THREADS"
    fi
done
load after | tee -a "$LOG_DIR/machine.txt"

# ---- the table --------------------------------------------------------------
range() { [ -f "$1" ] && awk -v k="$2" '$1=="RESULT" && $2==k {sub("min=","",$5); sub("max=","",$6); printf "%.3g–%.3g\n", $5, $6; exit}' "$1" || true; }

M="$LOG_DIR/micro.txt"
bw=$(get "$M" mem_read)
peak_dnnl=$(get "$M" dnnl_gemm_bf16_peak)
peak_kern=$(get "$M" kern_gemm_bf16_fast)
peak32_dnnl=$(get "$M" dnnl_gemm_f32_peak)
peak32_kern=$(get "$M" kern_gemm_f32_fast)
{
    echo "| weights | measure | C (aria.c) | C min–max | PyTorch 1.13 | C / PyTorch | bound (same run) | C % of bound |"
    echo "|---|---|---|---|---|---|---|---|"
    for dt in $DTYPES; do
        C="$LOG_DIR/c_$dt.txt"
        P="$LOG_DIR/peer_$dt.txt"
        if [ "$dt" = f32 ]; then pk=$(maxof "$peak32_dnnl" "$peak32_kern"); else pk=$(maxof "$peak_dnnl" "$peak_kern"); fi
        wb=$(get "$C" decode_weight_bytes)
        kv=$(get "$C" decode_b1_kv_bytes)
        pbw=$(get "$C" decode_b1_probe_read_gb_s)
        b1=$(awk -v bw="$(num "$pbw")" -v w="$(num "$wb")" -v k="$(num "$kv")" 'BEGIN{ if (bw=="nan"||w=="nan") print ""; else printf "%.3g", bw*1e9/(w+k) }')
        b4=$(awk -v bw="$(num "$pbw")" -v w="$(num "$wb")" -v k="$(num "$kv")" 'BEGIN{ if (bw=="nan"||w=="nan") print ""; else printf "%.3g", 4*bw*1e9/(w+4*k) }')
        pf_bound=$(awk -v p="$(num "$pk")" -v g="$(num "$(get "$C" prefill_gemm_gflop)")" -v a="$(num "$(get "$C" prefill_attn_gflop)")" -v n="$PROMPT" \
            'BEGIN{ if (p=="nan"||g=="nan") print ""; else printf "%.3g", n*p/(g+a) }')
        echo "| $dt | prefill tok/s ($PROMPT-token prompt) | $(fmt "$(get "$C" prefill_tok_s)") | $(range "$C" prefill_tok_s) | $(fmt "$(get "$P" prefill_tok_s)") | $(ratio "$(get "$C" prefill_tok_s)" "$(get "$P" prefill_tok_s)") | $(fmt "$pf_bound") at the $dt GEMM peak | $(pct "$(get "$C" prefill_tok_s)" "$pf_bound") |"
        echo "| $dt | prefill GFLOP/s | $(fmt "$(get "$C" prefill_gflops)") | $(range "$C" prefill_gflops) | $(fmt "$(get "$P" prefill_gflops)") | | $(fmt "$pk") ($dt GEMM, best of oneDNN alone and kern_matmul) | $(pct "$(get "$C" prefill_gflops)" "$pk") |"
        one=$(get "$M" dnnl_gemm_${dt}_peak_1t)
        two=$(awk -v x="$(num "$one")" 'BEGIN{ if (x=="nan") print ""; else printf "%.4g", 2*x }')
        echo "| $dt | prefill GFLOP/s vs 2 × oneDNN's one-thread $dt GEMM | $(fmt "$(get "$C" prefill_gflops)") | | | | $(fmt "$two") | $(pct "$(get "$C" prefill_gflops)" "$two") |"
        echo "| $dt | decode tok/s, batch 1 | $(fmt "$(get "$C" decode_b1_tok_s)") | $(range "$C" decode_b1_tok_s) | $(fmt "$(get "$P" decode_b1_tok_s)") | $(ratio "$(get "$C" decode_b1_tok_s)" "$(get "$P" decode_b1_tok_s)") | $(fmt "$b1") at $(fmt "$pbw") GB/s (read probe beside each rep) | $(fmt "$(get "$C" decode_b1_pct_of_read)") % (median of per-rep ratios) |"
        echo "| $dt | decode GB/s, batch 1 (weights + KV per step / step time) | $(fmt "$(get "$C" decode_b1_gb_s)") | $(range "$C" decode_b1_gb_s) | | | $(fmt "$pbw") | |"
        echo "| $dt | decode tok/s, batch 4 (all rows) | $(fmt "$(get "$C" decode_b4_tok_s)") | $(range "$C" decode_b4_tok_s) | $(fmt "$(get "$P" decode_b4_tok_s)") | $(ratio "$(get "$C" decode_b4_tok_s)" "$(get "$P" decode_b4_tok_s)") | $(fmt "$b4") (bytes bound) | $(fmt "$(get "$C" decode_b4_pct_of_read)") % |"
        echo "| $dt | CPU share prefill / decode b1 / b4 (CPU time ÷ wall × threads) | $(fmt "$(get "$C" prefill_cpu_pct)") / $(fmt "$(get "$C" decode_b1_cpu_pct)") / $(fmt "$(get "$C" decode_b4_cpu_pct)") % | | | | | |"
        echo "| $dt | first prefill s (packs bf16 weights for oneDNN) | $(fmt "$(get "$C" prefill_first_s)") | | | | | |"
        echo "| $dt | peak RSS MB | $(fmt "$(get "$C" peak_rss_mb)") | | $(fmt "$(get "$P" peak_rss_mb)") | | | |"
    done
    echo
    echo "Bounds measured in the same run (bench_model --micro): read bandwidth $(fmt "$bw") GB/s" \
         "(1 stream per thread $(fmt "$(get "$M" mem_read_1stream)"), 8 streams $(fmt "$(get "$M" mem_read_8streams)"); one thread: $(fmt "$(get "$M" mem_read_1stream_1t)") / $(fmt "$(get "$M" mem_read_8streams_1t)")), copy $(fmt "$(get "$M" mem_copy)") GB/s;" \
         "GEMM 512×1536×6144: oneDNN alone bf16 $(fmt "$peak_dnnl") GFLOP/s (1 thread $(fmt "$(get "$M" dnnl_gemm_bf16_peak_1t)")), f32 $(fmt "$peak32_dnnl");" \
         "through kern_matmul: bf16 fast $(fmt "$peak_kern"), f32 fast $(fmt "$peak32_kern")," \
         "bf16 exact $(fmt "$(get "$M" kern_gemm_bf16_exact)"), f32 exact $(fmt "$(get "$M" kern_gemm_f32_exact)") GFLOP/s;" \
         "decode kernel alone over 1 GiB: bf16 $(fmt "$(get "$M" matvec_bf16_b1)") GB/s at batch 1, $(fmt "$(get "$M" matvec_bf16_b4)") at batch 4;" \
         "f32 $(fmt "$(get "$M" matvec_f32_b1)") / $(fmt "$(get "$M" matvec_f32_b4)") GB/s."
    for dt in $DTYPES; do
        P="$LOG_DIR/peer_$dt.txt"
        [ -f "$P" ] && echo "Peer check ($dt run): tiny reference logits max |diff| $(get "$P" peer_ref_logits_max_abs_diff)," \
            "through its KV cache $(get "$P" peer_ref_decode_max_abs_diff)."
    done
} | tee "$LOG_DIR/summary.md"

echo
echo "raw outputs: $LOG_DIR"
