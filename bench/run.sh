#!/usr/bin/env bash
# bench/run.sh - tokenizer benchmark beside its Python peer, one machine, one run.
#
#   bench/run.sh [CORPUS_DIR]          (default ../shared/midi/corpus)
#
# Environment knobs (defaults in brackets):
#   REPS [5]         repetitions of every bench_tokenize measurement (median reported)
#   THREADS [nproc]  threads of bench_tokenize's multi-threaded passes
#   PEER_REPS [5]    repetitions of the Python peer (one pass ~2-3 min on this corpus)
#   HF_RUNS [5]      hyperfine runs of each `aria tokenize` command
#   LOG_DIR [mktemp] where the raw outputs go (bench.txt, peer.txt, hyperfine.*)
#   PYTHON [/usr/bin/python3]  a Python with mido (Debian's python3-mido)
#   OPT [-O2]        passed to make
#   STEPS [c peer cli]  which parts to run (ratios need c and peer)
#
# Steps: builds (make, make bench), records the machine, then runs
# build/bench_tokenize and bench/peer_mido.py back to back on the same files,
# then times `aria tokenize --out-dir <fresh dir> --jobs 1` vs `--jobs 2` over
# every corpus file with hyperfine.
set -euo pipefail

cd "$(dirname "$0")/.."
CORPUS=${1:-../shared/midi/corpus}
REPS=${REPS:-5}
THREADS=${THREADS:-$(nproc)}
PEER_REPS=${PEER_REPS:-5}
HF_RUNS=${HF_RUNS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
OPT=${OPT:--O2}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/aria-bench.XXXXXX)}
STEPS=${STEPS:-c peer cli}
want() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
mkdir -p "$LOG_DIR"

[ -d "$CORPUS" ] || { echo "run.sh: no corpus at $CORPUS" >&2; exit 2; }
"$PYTHON" -c 'import mido' 2>/dev/null || { echo "run.sh: $PYTHON cannot import mido" >&2; exit 2; }

echo "== build (OPT=$OPT)"
make -s OPT="$OPT" all bench
# Snapshots: other people rebuild ./aria while this runs; time these copies.
cp build/bench_tokenize "$LOG_DIR/bench_tokenize"
cp aria "$LOG_DIR/aria"

machine() {
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:     $(uname -a)"
    echo "cpu:       $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) online CPUs"
    echo "           $(lscpu | grep -E '^(L2|L3) cache' | tr -s ' ' | paste -sd ';')"
    echo "memory:    $(free -g | awk '/^Mem:/{print $2" GiB"}')"
    echo "compiler:  $(${CC:-cc} --version | head -1), OPT=$OPT"
    echo "python:    $("$PYTHON" -c 'import sys, mido; print(sys.version.split()[0], "mido", mido.__version__)')"
    echo "hyperfine: $(hyperfine --version 2>/dev/null || echo 'not installed')"
    local rev dirty
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain 2>/dev/null | wc -l)
    if [ "$dirty" -gt 0 ]; then
        echo "git:       $rev + dirty tree ($dirty paths modified/untracked; figures are of the working tree)"
    else
        echo "git:       $rev (clean)"
    fi
}

load() {  # noise record: the machine is shared
    echo "load [$1]: $(cut -d' ' -f1-3 /proc/loadavg); busiest: $(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | tr -s ' ' | paste -sd ',')"
}

{
    machine
    echo "corpus:    $CORPUS"
    echo "log dir:   $LOG_DIR"
} | tee "$LOG_DIR/machine.txt"

echo
if want c; then
    echo "== C: build/bench_tokenize (snapshot $LOG_DIR/bench_tokenize) --reps $REPS --threads $THREADS $CORPUS"
    load before-c | tee -a "$LOG_DIR/machine.txt"
    "$LOG_DIR/bench_tokenize" --reps "$REPS" --threads "$THREADS" "$CORPUS" 2> "$LOG_DIR/bench.err" | tee "$LOG_DIR/bench.txt"
    load after-c | tee -a "$LOG_DIR/machine.txt"
fi

echo
if want peer; then
    echo "== peer: $PYTHON bench/peer_mido.py --reps $PEER_REPS $CORPUS"
    "$PYTHON" bench/peer_mido.py --reps "$PEER_REPS" "$CORPUS" 2> "$LOG_DIR/peer.err" | tee "$LOG_DIR/peer.txt"
    load after-peer | tee -a "$LOG_DIR/machine.txt"
fi

if want c && want peer; then
    # Ratios C / peer from the RESULT lines.
    get() { awk -v k="$2" '$1=="RESULT" && $2==k {print $3}' "$1"; }
    c_parse=$(get "$LOG_DIR/bench.txt" parse_mbps_1t)
    p_parse=$(get "$LOG_DIR/peer.txt" peer_mido_mbps_1t)
    c_fps=$(get "$LOG_DIR/bench.txt" parse_score_tokenize_files_per_s_1t)
    p_fps=$(get "$LOG_DIR/peer.txt" peer_like_files_per_s_1t)
    c_files=$(get "$LOG_DIR/bench.txt" parse_set_bytes)
    p_files=$(get "$LOG_DIR/peer.txt" peer_corpus_bytes)
    {
        echo
        echo "== ratios (medians, one core)"
        awk -v c="$c_parse" -v p="$p_parse" 'BEGIN{printf "RESULT ratio_parse_c_vs_mido %.1f x  (%s / %s MB/s)\n", c/p, c, p}'
        awk -v c="$c_fps" -v p="$p_fps" 'BEGIN{printf "RESULT ratio_pipeline_c_vs_ariautils_like %.1f x  (%s / %s files/s; C also tokenizes)\n", c/p, c, p}'
        [ "$c_files" = "$p_files" ] || echo "WARNING: C parse set ($c_files bytes) != peer corpus ($p_files bytes); see bench.err / peer.err"
    } | tee "$LOG_DIR/ratios.txt"
fi

echo
if want cli; then
    echo "== CLI: ./aria (snapshot $LOG_DIR/aria) tokenize --jobs 1 vs --jobs 2 over all corpus files (hyperfine, $HF_RUNS runs)"
    # The file list is too long for one `sh -c` string (128 KiB limit per
    # argument), so each command is a small script that expands it.
    find "$CORPUS" -type f \( -iname '*.mid' -o -iname '*.midi' \) | LC_ALL=C sort > "$LOG_DIR/files.txt"
    echo "files: $(wc -l < "$LOG_DIR/files.txt"); one file has no notes, so aria exits non-zero: hyperfine -i"
    # 1. "disk": out-dir from mktemp -d under /tmp, what a user gets. aria writes
    #    every output atomically (temp file, fsync, rename, fsync of the
    #    directory), so this is largely file-system time and swings with the
    #    other I/O on the machine.
    # 2. "tmpfs": the same with the out-dirs under /dev/shm, where fsync costs
    #    nothing: the CPU side of the command.
    cli_pair() {  # TAG PARENT_DIR
        local tag=$1 work j
        work=$(mktemp -d "$2/aria-bench-out.XXXXXX")
        for j in 1 2; do
            cat > "$LOG_DIR/tokenize_${tag}_jobs$j.sh" <<EOF
#!/usr/bin/env bash
mapfile -t F < "$LOG_DIR/files.txt"
exec "$LOG_DIR/aria" tokenize --out-dir "\$(mktemp -d -p "$work")" --jobs $j "\${F[@]}" 2>/dev/null
EOF
            chmod +x "$LOG_DIR/tokenize_${tag}_jobs$j.sh"
        done
        echo "-- out-dirs under $2 ($tag)"
        load "before-hyperfine-$tag" | tee -a "$LOG_DIR/machine.txt"
        hyperfine -i --warmup 1 --runs "$HF_RUNS" \
            --prepare "rm -rf $work/tmp.*" \
            --export-json "$LOG_DIR/hyperfine_$tag.json" --export-markdown "$LOG_DIR/hyperfine_$tag.md" \
            -n "aria tokenize --jobs 1 ($tag)" "$LOG_DIR/tokenize_${tag}_jobs1.sh" \
            -n "aria tokenize --jobs 2 ($tag)" "$LOG_DIR/tokenize_${tag}_jobs2.sh" | tee "$LOG_DIR/hyperfine_$tag.txt"
        load "after-hyperfine-$tag" | tee -a "$LOG_DIR/machine.txt"
        rm -rf "$work"
        # medians (hyperfine's summary shows means)
        "$PYTHON" -c '
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    name = r["command"].split("(")[0].split()[-1]  # "1" / "2"
    print("RESULT hf_%s_jobs%s_median_s %.4g s min=%.4g max=%.4g user=%.3g sys=%.3g n=%d"
          % (sys.argv[2], name, r["median"], r["min"], r["max"], r["user"], r["system"], len(r["times"])))
' "$LOG_DIR/hyperfine_$tag.json" "$tag" | tee -a "$LOG_DIR/ratios.txt"
    }
    cli_pair disk "${TMPDIR:-/tmp}"
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then cli_pair tmpfs /dev/shm; fi
fi

echo
echo "raw outputs: $LOG_DIR"
