#!/bin/sh
# Contrastive vs next-token training speed on the small preset, same rows x tokens per
# step (4 x 512: LM batch 4; contrastive 2 files x 2 views), median tokens/s of steps 2-25.
# usage: sh bench/contrastive_vs_lm.sh [ARIA_BINARY]   (writes /tmp/trds, /tmp/trb_lm, /tmp/trb_c)
A=${1:-./aria}
rm -rf /tmp/trds /tmp/trb_lm /tmp/trb_c
$A dataset --out /tmp/trds --seq-len 512 --val-fraction 0 examples/ tests/data/midi/midly tests/data/midi/mido >/dev/null 2>&1
$A train --data /tmp/trds --config small --out /tmp/trb_lm --batch 4 --steps 25 --no-augment --save-every 0 --threads 2 2>/dev/null
$A train --objective contrastive --config small --out /tmp/trb_c --batch 2 --seq-len 512 --steps 25 --val-fraction 0 \
    --save-every 0 --threads 2 examples/ tests/data/midi/midly/Clementi.mid tests/data/midi/mido/nocturne_decoded.mid \
    tests/data/midi/mido/pop_decoded.mid 2>/dev/null
for r in lm c; do python3 -c "
import json,statistics
v=[json.loads(l)['tokens_per_s'] for l in open('/tmp/trb_$r/log.jsonl') if 'tokens_per_s' in l][1:]
print('$r', 'median tokens/s %.0f over %d steps' % (statistics.median(v), len(v)))"; done
