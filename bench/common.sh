# bench/common.sh - shared by bench/run_model.sh and bench/run_train.sh,
# which source it from the repository root after setting their knobs
# (OPT, PYTHON, OPENBLAS_DIR, THREADS, LOG_DIR): the build snapshot, the
# machine and load records, a timed step of the run, and the helpers of
# the summary table. Functions only; nothing runs when it is sourced.

has() { case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac; } # has WORD "LIST"

# bench_build PROGRAM: make all and PROGRAM's rule (bench_x: bench-x), then
# snapshot build/PROGRAM into LOG_DIR (others rebuild while this runs)
bench_build() {
    echo "== build (OPT=$OPT)"
    make -s OPT="$OPT" all "${1//_/-}"
    snapshot "$1"
}
snapshot() { cp "build/$1" "$LOG_DIR/$1"; }

# peer_env: the env prefix of the PyTorch peer's commands, OpenBLAS for its
# float32 matmuls where OPENBLAS_DIR holds it (Debian's python3-torch links
# the reference BLAS by default)
set_peer_env() {
    peer_env=()
    if [ -f "$OPENBLAS_DIR/libblas.so.3" ]; then
        peer_env=(env "LD_LIBRARY_PATH=$OPENBLAS_DIR" "OPENBLAS_NUM_THREADS=$THREADS")
    fi
}

# machine SETTINGS [available]: the machine record (machine.txt), SETTINGS
# its last line; "available" adds the memory free at the start
machine() {
    local mem='/^Mem:/{print $2" GiB"}' rev dirty
    [ "${2:-}" = available ] && mem='/^Mem:/{print $2" GiB total, "$7" GiB available"}'
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:     $(uname -srm)"
    echo "cpu:       $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) online CPUs," \
         "family $(lscpu | sed -n 's/^CPU family:[[:space:]]*//p') model $(lscpu | sed -n 's/^Model:[[:space:]]*//p')"
    echo "           $(lscpu | grep -E '^(L2|L3) cache' | tr -s ' ' | paste -sd ';')"
    echo "flags:     $(grep -o -w -E 'avx512f|avx512bw|avx512_bf16|amx_bf16|amx_tile|amx_int8' /proc/cpuinfo | sort -u | paste -sd ' ')" \
         "$(grep -q -w amx_bf16 /proc/cpuinfo || echo '(no AMX)')"
    echo "memory:    $(free -g | awk "$mem")"
    echo "compiler:  $(${CC:-cc} --version | head -1), OPT=$OPT"
    echo "oneDNN:    $(dpkg-query -W -f '${Package} ${Version}' libdnnl-dev 2>/dev/null || echo 'libdnnl-dev not installed')"
    echo "python:    $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' 2>/dev/null || echo 'no torch')"
    echo "peer BLAS: $([ -f "$OPENBLAS_DIR/libblas.so.3" ] && echo "OpenBLAS from $OPENBLAS_DIR" || echo 'system default (see update-alternatives libblas.so.3)')"
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain 2>/dev/null | wc -l || true)
    if [ "$dirty" -gt 0 ]; then
        echo "git:       $rev + dirty tree ($dirty paths modified/untracked; figures are of the working tree)"
    else
        echo "git:       $rev (clean)"
    fi
    echo "settings:  $1"
}

load() { # noise record: the machine is shared
    echo "load [$1]: $(cut -d' ' -f1-3 /proc/loadavg); busiest: $(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | tr -s ' ' | paste -sd ',')"
}

# run_step TITLE TAG OUT COMMAND...: prints "== TITLE", records the load
# (before-TAG) in machine.txt, runs COMMAND, its output also into OUT
run_step() {
    local title=$1 tag=$2 out=$3
    shift 3
    echo
    echo "== $title"
    load "before-$tag" | tee -a "$LOG_DIR/machine.txt"
    "$@" | tee "$out"
}

# ---- the table --------------------------------------------------------------
get() { [ -f "$1" ] && awk -v k="$2" '$1=="RESULT" && $2==k {print $3; exit}' "$1" || true; } # get FILE METRIC: the median
num() { [ -n "$1" ] && echo "$1" || echo "nan"; }
fmt() { awk -v x="$(num "$1")" 'BEGIN{ if (x=="nan") print "–"; else if (x>=100) printf "%.0f", x; else if (x>=10) printf "%.1f", x; else printf "%.2f", x }'; }
ratio() { awk -v a="$(num "$1")" -v b="$(num "$2")" -v d="${3:-1}" 'BEGIN{ if (a=="nan"||b=="nan"||b==0) print "–"; else printf "%." d "f×", a/b }'; } # ratio A B [DECIMALS]
pct() { awk -v a="$(num "$1")" -v b="$(num "$2")" 'BEGIN{ if (a=="nan"||b=="nan"||b==0) print "–"; else printf "%.0f %%", 100*a/b }'; }
maxof() { awk -v a="$(num "$1")" -v b="$(num "$2")" 'BEGIN{ if (a=="nan") print b; else if (b=="nan" || a>=b) print a; else print b }'; }
