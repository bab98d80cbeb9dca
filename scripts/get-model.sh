#!/bin/sh
# get-model.sh - downloads a released Aria checkpoint from its Hugging Face
# repository with curl, checks it, and prints the aria command that uses it.
#
#   scripts/get-model.sh [options] NAME...
#   scripts/get-model.sh --list
#
# NAME is a model of the manifest (models/checkpoints.tsv): aria-medium-base,
# aria-medium-gen, aria-medium-embedding, aria-medium-demo. Each of its files
# goes to DIR/NAME/FILE (DIR: models/ of this checkout):
#   - downloaded to FILE.part beside it (an interrupted download resumes
#     from there on the next run), from BASE/REPOSITORY/resolve/main/FILE;
#   - its size and SHA-256 checked against the manifest; a mismatch is
#     refused: the .part is deleted and nothing is left at FILE;
#   - renamed to FILE (atomic: FILE is either absent or complete).
# Where the manifest has no size or checksum yet (nobody here has been able
# to see the real files), the script checks nothing, prints the size and
# SHA-256 it computed and says the file is unverified.
#
# Options:
#   --dir DIR         where the models go (default: models/ of this checkout)
#   --manifest FILE   the manifest (default: models/checkpoints.tsv)
#   --base-url URL    where the repositories are (default: $ARIA_HF_BASE, else
#                     https://huggingface.co); file:///path and
#                     http://127.0.0.1:PORT serve the tests
#   --list            the models of the manifest and what each is for
#
# Exit status: 0 all files there and not refused; 1 a download failed or was
# refused; 2 bad usage or an unknown NAME.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/models"
manifest="$root/models/checkpoints.tsv"
base="${ARIA_HF_BASE:-https://huggingface.co}"
list=0
names=""

usage() {
    echo "usage: scripts/get-model.sh [--dir DIR] [--manifest FILE] [--base-url URL] NAME... | --list" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --manifest) [ $# -ge 2 ] || usage; manifest=$2; shift 2 ;;
    --base-url) [ $# -ge 2 ] || usage; base=$2; shift 2 ;;
    --list) list=1; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "get-model.sh: unknown option '$1'" >&2; usage ;;
    *) names="$names $1"; shift ;;
    esac
done

[ -r "$manifest" ] || { echo "get-model.sh: $manifest: cannot read the manifest" >&2; exit 2; }
# the manifest's lines without comments
entries() { grep -v '^[[:space:]]*#' "$manifest" | grep -v '^[[:space:]]*$' || true; }
tab=$(printf '\t')

if [ $list = 1 ]; then
    entries | awk -F '\t' '!seen[$1]++ { printf "%-24s %s/%s  %s\n", $1, "https://huggingface.co/" $2, "", $6 }' | sed 's|/  |  |'
    exit 0
fi
[ -n "$names" ] || usage
for n in $names; do
    if ! entries | cut -f1 | grep -qxF "$n"; then
        echo "get-model.sh: unknown model '$n'; the manifest has: $(entries | cut -f1 | sort -u | tr '\n' ' ')" >&2
        exit 2
    fi
done
command -v curl >/dev/null || { echo "get-model.sh: curl is needed (Debian: sudo apt-get install curl)" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
size_of() { wc -c <"$1" | tr -d ' '; }

# check FILE BYTES SHA: 0 when what is known matches (prints why not, else)
check() {
    if [ -n "$2" ] && [ "$(size_of "$1")" != "$2" ]; then
        echo "$(size_of "$1") bytes, the manifest says $2"
        return 1
    fi
    if [ -n "$3" ]; then
        got=$(sha256_of "$1")
        if [ "$got" != "$3" ]; then
            echo "sha256 $got, the manifest says $3"
            return 1
        fi
    fi
    return 0
}

status=0
for n in $names; do
    # empty fields become "-": read would merge two tabs into one
    entries | awk -F '\t' -v OFS='\t' -v n="$n" '$1 == n { for (i = 1; i <= 6; i++) if ($i == "") $i = "-"; print }' \
        >"${TMPDIR:-/tmp}/get-model.$$"
    mkdir -p "$dir/$n"
    while IFS="$tab" read -r name repo file bytes sha what; do
        [ "$bytes" != "-" ] || bytes=""
        [ "$sha" != "-" ] || sha=""
        dest="$dir/$n/$file"
        url="$base/$repo/resolve/main/$file"
        if [ -f "$dest" ]; then
            if why=$(check "$dest" "$bytes" "$sha"); then
                echo "$dest: already there"
                continue
            fi
            echo "get-model.sh: $dest: $why; remove it to download it again" >&2
            status=1
            continue
        fi
        echo "$n: $file from $url" >&2
        progress="-sS"
        [ -t 2 ] && progress="--progress-bar"
        if ! curl -fL $progress --retry 3 --connect-timeout 20 -C - -o "$dest.part" "$url"; then
            # an HTTP error leaves nothing worth resuming
            [ -s "$dest.part" ] && echo "get-model.sh: $dest.part kept: run again to resume" >&2 || rm -f "$dest.part"
            echo "get-model.sh: $url: download failed" >&2
            status=1
            continue
        fi
        if ! why=$(check "$dest.part" "$bytes" "$sha"); then
            rm -f "$dest.part"
            echo "get-model.sh: $url: refused: $why (a corrupted or changed file; nothing kept)" >&2
            status=1
            continue
        fi
        if [ -z "$sha" ] || [ -z "$bytes" ]; then
            echo "get-model.sh: $dest: unverified: $(size_of "$dest.part") bytes, sha256 $(sha256_of "$dest.part")" \
                 "(the manifest has no checksum for it yet: compare with the file's page on the hub)" >&2
        fi
        mv -f "$dest.part" "$dest"
        echo "$dest: ok"
    done <"${TMPDIR:-/tmp}/get-model.$$"
    rm -f "${TMPDIR:-/tmp}/get-model.$$"
    rmdir "$dir/$n" 2>/dev/null || true # nothing came: no empty folder
done

[ $status = 0 ] || exit 1
# paths as the user will type them: from the checkout when run there
aria="$root/aria"
[ "$(pwd)" = "$root" ] && aria=./aria
rel() { case "$1" in "$root"/*) [ "$aria" = ./aria ] && echo "${1#"$root"/}" || echo "$1" ;; *) echo "$1" ;; esac; }
for n in $names; do
    m=$(rel "$dir/$n")
    case "$n" in
    *embedding*) echo "$aria embed --model $m/model.safetensors -o emb.npy a.mid b.mid" ;;
    *demo*) echo "# $m/model-demo.safetensors: the real-time demo's checkpoint (its own tokenizer and an"
            echo "# embedding adapter; docs/models.md): aria.c has not been run on it yet" ;;
    *) echo "$aria generate --model $m/model.safetensors --prompt $(rel "$root/examples/waltz.mid") --render --roll --out-dir out/" ;;
    esac
done
