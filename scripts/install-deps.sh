#!/bin/sh
# Installs what aria.c needs to build and test on Debian/Ubuntu:
#   gcc, make          build
#   libcriterion-dev   the test framework (make test)
#   libdnnl-dev        oneDNN, the fast path of large matrix products
#                      (optional: the Makefile builds without it)
#   libopenmpi-dev, openmpi-bin   MPI for data-parallel `aria train` under
#                      mpirun (optional: without it the Makefile leaves MPI
#                      out and tests/test_dist.c skips)
# Optional, not installed here: clang + libclang-rt-14-dev (make fuzz),
# python3-mido and hyperfine (bench/run.sh).
set -eu
need=""
for p in gcc make libc6-dev libcriterion-dev libdnnl-dev libopenmpi-dev openmpi-bin; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
