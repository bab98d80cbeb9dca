#!/bin/sh
# Installs what aria.c needs to build and test on Debian/Ubuntu:
#   gcc, make          build
#   libcriterion-dev   the test framework (make test)
# Optional, not installed here: clang + libclang-rt-14-dev (make fuzz),
# python3-mido and hyperfine (bench/run.sh).
set -eu
need=""
for p in gcc make libc6-dev libcriterion-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
