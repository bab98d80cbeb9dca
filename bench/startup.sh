#!/usr/bin/env bash
# bench/startup.sh - what a short `aria` command costs, process start
# included, beside a bare process, in one run.
#
#   bench/startup.sh [ARIA] [MIDI]   (defaults ./aria, examples/waltz.mid)
#
# Knobs: RUNS [500] runs of each command, the commands taking turns
# (bench/spawn_time.c, built here into $BUILD [build-startup-bench]), so
# load changes fall on all alike; medians and percentiles in ms.
#
# Then what the loader does for each: the libraries `ldd` lists for ARIA,
# and those a run of `aria tokenize --ids` and of `aria --version
# --verbose` (which opens every optional library on purpose) actually
# maps, from LD_DEBUG=files. Optional libraries (oneDNN, MPI, FluidSynth,
# libpng) are opened at first use (src/base/dynlib.h), so the first two
# must list only libc and libm.
set -euo pipefail

cd "$(dirname "$0")/.."
ARIA=${1:-./aria}
MIDI=${2:-examples/waltz.mid}
RUNS=${RUNS:-500}
BUILD=${BUILD:-build-startup-bench}

mkdir -p "$BUILD"
cc -O2 -std=c11 -D_GNU_SOURCE bench/spawn_time.c -o "$BUILD/spawn_time"

echo "== machine"
echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:    $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) online CPUs"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg)"
echo "aria:   $ARIA ($(stat -c %s "$ARIA") bytes), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + changes')"

echo
echo "== wall time, $RUNS runs each, alternating"
"$BUILD/spawn_time" "$RUNS" /bin/true --- "$ARIA" --help --- "$ARIA" tokenize --ids "$MIDI"

echo
echo "== ldd $ARIA"
ldd "$ARIA" | awk '{print "  " $1}'

loaded() { # the libraries a command maps, as the loader reports them
    LD_DEBUG=files "$@" 2>&1 >/dev/null | sed -n 's/.*file=\([^ ]*\).*\[0\].*;  needed by.*/\1/p; s/.*file=\([^ ]*\).*\[0\].*;  dynamically loaded by.*/\1 (dlopen)/p' |
        sort -u | awk '{print "  " $0}'
}
echo
echo "== mapped by: aria tokenize --ids $MIDI"
loaded "$ARIA" tokenize --ids "$MIDI"
echo
echo "== mapped by: aria --version --verbose (opens every optional library; direct ones shown)"
"$ARIA" --version --verbose | sed 's/^/  /'
loaded "$ARIA" --version --verbose | grep -E 'dnnl|mpi|fluidsynth|png' || true
