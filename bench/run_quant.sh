#!/usr/bin/env bash
# bench/run_quant.sh - quantized weights against bfloat16, one machine, one
# run (issue 10, "Numbers"): decode and prefill of the medium shape for
# bf16, q8_0 and q4_0, each beside its own bytes-per-token bound, and what
# a user sees: `aria generate` end to end (load + prefill + new tokens)
# against bench_model's decode-only rate for the same file, and its peak RSS.
#
#   bench/run_quant.sh
#
# Knobs (defaults in brackets): REPS [5], PROMPT [512], STEPS [16],
# THREADS [nproc], DTYPES [bf16 q8_0 q4_0], NEW [256] (tokens of the
# end-to-end generate), E2E_REPS [3], LOG_DIR [mktemp], OPT [-O2],
# ONLY [micro c e2e], OLD_BENCH [none]: a bench_model binary built from an
# earlier commit, run on the same files for the "before" rows (e.g. the
# weights mapped from the file, the first VNNI kernels), OLD_DTYPES [bf16 q8_0 q4_0].
#
# The weights are bench_model's random medium file
# (/tmp/aria-bench-medium-bf16.safetensors, written on first use); the
# quantized files are made from it with `aria quantize` when missing. The
# machine is shared: every step records the load before it, and
# bench_model reports the CPU share of each measurement.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-5}
PROMPT=${PROMPT:-512}
STEPS=${STEPS:-16}
THREADS=${THREADS:-$(nproc)}
DTYPES=${DTYPES:-bf16 q8_0 q4_0}
NEW=${NEW:-256}
E2E_REPS=${E2E_REPS:-3}
ONLY=${ONLY:-micro c e2e}
OLD_BENCH=${OLD_BENCH:-}
OLD_DTYPES=${OLD_DTYPES:-bf16 q8_0 q4_0}
OPT=${OPT:--O2}
PYTHON=${PYTHON:-/usr/bin/python3}
OPENBLAS_DIR=${OPENBLAS_DIR:-}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/aria-bench-quant.XXXXXX)}
mkdir -p "$LOG_DIR"
. bench/common.sh
want() { has "$1" "$ONLY"; }

bench_build bench_model
cp aria "$LOG_DIR/aria"
machine "REPS=$REPS PROMPT=$PROMPT STEPS=$STEPS THREADS=$THREADS NEW=$NEW E2E_REPS=$E2E_REPS" | tee "$LOG_DIR/machine.txt"

file_of() { echo "/tmp/aria-bench-medium-$1.safetensors"; }
for dt in $DTYPES; do
    f=$(file_of "$dt")
    [ -f "$f" ] && continue
    if [ "$dt" = bf16 ]; then
        "$LOG_DIR/bench_model" --dtype bf16 --reps 1 --prompt 8 --steps 1 --threads "$THREADS" > /dev/null
    else
        [ -f "$(file_of bf16)" ] || "$LOG_DIR/bench_model" --dtype bf16 --reps 1 --prompt 8 --steps 1 > /dev/null
        "$LOG_DIR/aria" quantize --type "$dt" --config medium "$(file_of bf16)" -o "$f"
    fi
done

if want micro; then
    run_step "C: bench_model --micro --reps $REPS --threads $THREADS" micro "$LOG_DIR/micro.txt" \
        "$LOG_DIR/bench_model" --micro --reps "$REPS" --threads "$THREADS"
fi
for dt in $DTYPES; do
    if want c; then
        run_step "C: bench_model --dtype $dt --model $(file_of "$dt") --reps $REPS --prompt $PROMPT --steps $STEPS" \
            "c-$dt" "$LOG_DIR/c_$dt.txt" "$LOG_DIR/bench_model" --dtype "$dt" --model "$(file_of "$dt")" \
            --reps "$REPS" --prompt "$PROMPT" --steps "$STEPS" --threads "$THREADS"
    fi
done

if [ -n "$OLD_BENCH" ] && want c; then
    cp "$OLD_BENCH" "$LOG_DIR/bench_model_old"
    for dt in $OLD_DTYPES; do
        run_step "C before: $OLD_BENCH --dtype $dt --model $(file_of "$dt") --reps $REPS --prompt $PROMPT --steps $STEPS" \
            "old-$dt" "$LOG_DIR/c_old_$dt.txt" "$LOG_DIR/bench_model_old" --dtype "$dt" --model "$(file_of "$dt")" \
            --reps "$REPS" --prompt "$PROMPT" --steps "$STEPS" --threads "$THREADS"
    done
fi

# end to end: the wall time of the whole process, NEW tokens after the
# waltz prompt, greedy (a random model never ends early: the count is
# checked from generate's own summary line)
e2e() { # DTYPE REP
    local out="$LOG_DIR/e2e_$1_$2.txt"
    /usr/bin/time -f "WALL %e RSS_KB %M" "$LOG_DIR/aria" generate --model "$(file_of "$1")" --config medium \
        --prompt examples/waltz.mid --max-new "$NEW" --temp 0 --seed 1 --threads "$THREADS" \
        --out-dir "$LOG_DIR/e2e-out" > "$out" 2>&1
    awk -v dt="$1" '/tokens in/ {n=$2} /^WALL/ {w=$2; r=$4} END {printf "RESULT e2e_%s_tokens %d tokens\nRESULT e2e_%s_wall_s %s s\nRESULT e2e_%s_tok_s %.3f tok/s\nRESULT e2e_%s_rss_mb %.0f MB\n", dt, n, dt, w, dt, n / w, dt, r / 1024}' "$out"
}
if want e2e; then
    for dt in $DTYPES; do
        echo
        echo "== e2e: aria generate --model $(file_of "$dt") --config medium --prompt examples/waltz.mid --max-new $NEW --temp 0 ($E2E_REPS runs)"
        load "before-e2e-$dt" | tee -a "$LOG_DIR/machine.txt"
        for r in $(seq "$E2E_REPS"); do e2e "$dt" "$r"; done | tee "$LOG_DIR/e2e_$dt.raw"
        # medians over the runs
        for k in tok_s wall_s rss_mb tokens; do
            sort -g -k3 <(awk -v k="e2e_${dt}_$k" '$2==k' "$LOG_DIR/e2e_$dt.raw") |
                awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'
        done > "$LOG_DIR/e2e_$dt.txt"
    done
fi
load after | tee -a "$LOG_DIR/machine.txt"

# ---- the table --------------------------------------------------------------
M="$LOG_DIR/micro.txt"
B="$LOG_DIR/c_bf16.txt"
{
    echo "| weights | decode b1 tok/s (min–max) | × bf16 | bytes/token | own bound at the probe's GB/s | % of own bound | decode b4 tok/s | prefill tok/s | prefill × bf16 | e2e tok/s (generate, $NEW new) | e2e % of decode b1 | e2e peak RSS MB | CPU share pf/b1/b4 % |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    rows=""
    for dt in $DTYPES; do rows="$rows $dt"; done
    [ -n "$OLD_BENCH" ] && for dt in $OLD_DTYPES; do rows="$rows old_$dt"; done
    for dt in $rows; do
        C="$LOG_DIR/c_$dt.txt"
        E="$LOG_DIR/e2e_$dt.txt"
        wb=$(get "$C" decode_weight_bytes)
        kv=$(get "$C" decode_b1_kv_bytes)
        pbw=$(get "$C" decode_b1_probe_read_gb_s)
        bound=$(awk -v bw="$(num "$pbw")" -v w="$(num "$wb")" -v k="$(num "$kv")" 'BEGIN{ if (bw=="nan"||w=="nan") print ""; else printf "%.4g", bw*1e9/(w+k) }')
        bpt=$(awk -v w="$(num "$wb")" -v k="$(num "$kv")" 'BEGIN{ if (w=="nan") print "–"; else printf "%.3g GB", (w+k)/1e9 }')
        rng=$(awk '$1=="RESULT" && $2=="decode_b1_tok_s" {sub("min=","",$5); sub("max=","",$6); printf "%.3g–%.3g", $5, $6; exit}' "$C" 2>/dev/null || true)
        echo "| $dt | $(fmt "$(get "$C" decode_b1_tok_s)") ($rng) | $(ratio "$(get "$C" decode_b1_tok_s)" "$(get "$B" decode_b1_tok_s)" 2) | $bpt | $(fmt "$bound") at $(fmt "$pbw") | $(fmt "$(get "$C" decode_b1_pct_of_read)") % | $(fmt "$(get "$C" decode_b4_tok_s)") | $(fmt "$(get "$C" prefill_tok_s)") | $(ratio "$(get "$C" prefill_tok_s)" "$(get "$B" prefill_tok_s)" 2) | $(fmt "$(get "$E" "e2e_${dt}_tok_s")") | $(pct "$(get "$E" "e2e_${dt}_tok_s")" "$(get "$C" decode_b1_tok_s)") | $(fmt "$(get "$E" "e2e_${dt}_rss_mb")") | $(fmt "$(get "$C" prefill_cpu_pct)")/$(fmt "$(get "$C" decode_b1_cpu_pct)")/$(fmt "$(get "$C" decode_b4_cpu_pct)") |"
    done
    echo
    echo "Micro (same run): read $(fmt "$(get "$M" mem_read)") GB/s; matrix-vector over 1 GiB, GB/s of weight bytes:" \
         "bf16 $(fmt "$(get "$M" matvec_bf16_b1)"), q8_0 $(fmt "$(get "$M" matvec_q8_0_b1)"), q4_0 $(fmt "$(get "$M" matvec_q4_0_b1)")" \
         "(AVX-VNNI 256-bit: q8_0 $(fmt "$(get "$M" matvec_q8_0_b1_avxvnni)"), q4_0 $(fmt "$(get "$M" matvec_q4_0_b1_avxvnni)"));" \
         "GEMM 512×1536×6144 GFLOP/s: bf16 $(fmt "$(get "$M" kern_gemm_bf16_fast)"), q8_0 $(fmt "$(get "$M" kern_gemm_q8_0_fast)"), q4_0 $(fmt "$(get "$M" kern_gemm_q4_0_fast)")."
} | tee "$LOG_DIR/summary.md"
echo
echo "raw outputs: $LOG_DIR"
