#!/bin/sh
# run_render.sh - render speed of `aria render` beside its peer, the fluidsynth
# command (Debian package fluidsynth, the same library's own MIDI file player,
# `fluidsynth -ni -F OUT.wav`), on the same files with the same soundfont,
# sample rate and gain. Each is run RUNS times per file; the median wall time
# (process start to exit, soundfont loading included) is reported with the
# seconds of audio written and their ratio (seconds of audio per second).
#
#   sh bench/run_render.sh [ARIA_BIN] [RUNS]      (default ./aria, 5)
set -eu
cd "$(dirname "$0")/.."
aria=${1:-./aria}
runs=${2:-5}
sf=/usr/share/sounds/sf2/FluidR3_GM.sf2
corpus=../shared/midi/corpus
files="examples/waltz.mid
$corpus/pop909/POP909/001/001.mid
$corpus/giantmidi-piano/transcriptions/Scarlatti_Keyboard_Sonata_in_D_minor_K9_PzzKSiUS-X0_cut.mid"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
# seconds of audio in a 16-bit stereo WAV whose data chunk ends the file
audio_s() { echo "$(wc -c <"$1") 44 44100" | awk '{ printf "%.1f", ($1 - $2) / 4 / $3 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-34s %-10s %8s %9s %10s\n' file renderer audio_s median_s audio_s/s
echo "$files" | while read -r f; do
    [ -f "$f" ] || { echo "skip $f (not here)"; continue; }
    for who in aria fluidsynth; do
        : >"$tmp/times"
        for _ in $(seq "$runs"); do
            t0=$(now)
            if [ $who = aria ]; then
                "$aria" render "$f" -o "$tmp/out.wav" --soundfont "$sf" --rate 44100 --gain 0.6 2>/dev/null
            else
                fluidsynth -ni -q -F "$tmp/out.wav" -T wav -O s16 -r 44100 -g 0.6 "$sf" "$f" >/dev/null 2>&1
            fi
            t1=$(now)
            echo "$t1 $t0" | awk '{ print $1 - $2 }' >>"$tmp/times"
        done
        m=$(median <"$tmp/times")
        a=$(audio_s "$tmp/out.wav")
        printf '%-34.34s %-10s %8s %9.3f %10.1f\n' "$(basename "$f")" $who "$a" "$m" "$(echo "$a $m" | awk '{ print $1 / $2 }')"
    done
done
