#!/bin/sh
# The runs behind docs/evaluation.md: linear probes of several feature kinds,
# contrastive embedding models finetuned from a pretrained model and from
# random weights, and a finetuned classifier, on ../shared/midi/eval (never
# trained on). Each step is skipped when its output exists, so the script
# can be stopped and run again.
#
#   sh bench/eval_report.sh BASE.safetensors CONFIG.json OUT/
#
# BASE is a pretrained language model (models/aria-small-gen, or a later
# one), CONFIG its config with max_seq_len 1024 (300-note chunks are about
# 1000 tokens). Environment: ARIA (the binary, default ./aria), STEPS_CON
# (150), STEPS_CLS (200), CLS_PER_CLASS ("all 10": classifier runs with all
# labels and with 10 per class), MAXCH (4: chunks per file, see the doc),
# TASKS ("composer period").
set -eu
BASE=$1 CFG=$2 OUT=$3
ARIA=${ARIA:-./aria}
SHARED=${SHARED:-../shared}
LABELS=$SHARED/midi/eval/labels.csv
CORPUS=$SHARED/midi/corpus
STEPS_CON=${STEPS_CON:-150}
STEPS_CLS=${STEPS_CLS:-200}
MAXCH=${MAXCH:-4}
TASKS=${TASKS:-composer period}
SEED=1
mkdir -p "$OUT"
log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/commands.log"; }
run() { log "$*"; "$@"; }

# 1. contrastive embedding models: from the pretrained model and from random weights
for kind in pre rand; do
    [ -f "$OUT/con-$kind/model.safetensors" ] && [ -f "$OUT/con-$kind/.done" ] && continue
    if [ $kind = pre ]; then start="--init $BASE --config $CFG"; else start="--config $CFG"; fi
    # shellcheck disable=SC2086
    run "$ARIA" train --objective contrastive --out "$OUT/con-$kind" --force $start --emb-size 256 \
        --seq-len 1024 --batch 16 --steps "$STEPS_CON" --lr 1e-4 --warmup 30 --tau 0.1 \
        --val-every 50 --save-every 50 --seed 3 "$CORPUS"
    touch "$OUT/con-$kind/.done"
done

# 2. linear probes: handcrafted, lm-mean of the base, both embedding models;
#    all labels and 5 / 10 / 25 labelled files per class
for task in $TASKS; do
    for feat in handcrafted lm-mean con-pre con-rand; do
        case $feat in
        handcrafted) src="--features handcrafted" ;;
        lm-mean) src="--features lm-mean --model $BASE --config $CFG --max-chunks $MAXCH" ;;
        *) src="--model $OUT/$feat/model.safetensors --max-chunks $MAXCH" ;;
        esac
        for pc in all 5 10 25; do
            j="$OUT/probe-$task-$feat-$pc.json"
            [ -f "$j" ] && continue
            extra=""
            [ $pc = all ] || extra="--per-class $pc"
            # shellcheck disable=SC2086
            run "$ARIA" probe --labels "$LABELS" --task "$task" $src --folds 5 \
                --seed $SEED $extra --json "$j" >"$OUT/probe-$task-$feat-$pc.txt"
            cat "$OUT/probe-$task-$feat-$pc.txt"
        done
    done
done

# 3. a finetuned classifier (composer, fold 0 of the same 5 folds), all
#    labels and 10 per class
for pc in ${CLS_PER_CLASS:-all 10}; do
    d="$OUT/cls-composer-$pc-s$STEPS_CLS"
    [ -f "$d/.done" ] && continue
    extra=""
    [ $pc = all ] || extra="--per-class $pc"
    # shellcheck disable=SC2086
    run "$ARIA" train --objective classify --labels "$LABELS" --task composer --out "$d" --force \
        --init "$BASE" --config "$CFG" --folds 5 --fold 0 --seed $SEED --max-chunks "$MAXCH" \
        --batch 16 --steps "$STEPS_CLS" --lr 1e-4 --val-every $((STEPS_CLS / 4)) --save-every 100 $extra
    touch "$d/.done"
done
log "done"
