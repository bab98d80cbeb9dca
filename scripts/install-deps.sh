#!/bin/sh
# Installs what aria.c needs to build and test on Debian/Ubuntu:
#   gcc, make          build
#   libcriterion-dev   the test framework (make test)
#   libdnnl-dev        oneDNN, the fast path of large matrix products
#                      (optional: the Makefile builds without it)
#   libopenmpi-dev, openmpi-bin   MPI for data-parallel `aria train` under
#                      mpirun (optional: without it the Makefile leaves MPI
#                      out and tests/test_dist.c skips)
#   python3-pytest, python3-numpy, python3-mido   the Python binding's tests
#                      (make test-python, with /usr/bin/python3)
#   libfluidsynth-dev  FluidSynth, MIDI -> audio for `aria render` (optional:
#                      without it the Makefile leaves it out, render says how
#                      to get it and its tests skip)
#   fluid-soundfont-gm the General MIDI soundfont `aria render` uses by default
#                      (/usr/share/sounds/sf2/FluidR3_GM.sf2, MIT licence, the
#                      FluidR3 set FluidSynth is made with; docs/render.md)
#   libpng-dev         PNG output of `aria roll` (optional, as FluidSynth)
#   curl               scripts/get-model.sh (and its test, over file:// and a
#                      loopback HTTP server)
# Optional, not installed here: clang + libclang-rt-14-dev (make fuzz),
# hyperfine (bench/run.sh), fluidsynth (the peer of bench/run_render.sh).
set -eu
need=""
for p in gcc make libc6-dev libcriterion-dev libdnnl-dev libopenmpi-dev openmpi-bin \
         python3-pytest python3-numpy python3-mido \
         libfluidsynth-dev fluid-soundfont-gm libpng-dev curl; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
