#!/usr/bin/env bash
# Fails if an ELF binary needs a glibc symbol version newer than the one given.
# JetPack 5 (Ubuntu 20.04) has glibc 2.31, so that is the default ceiling.
#   board/check-glibc.sh target/aarch64-unknown-linux-gnu/release/linesight [2.31]
set -euo pipefail
bin=${1:?usage: check-glibc.sh BINARY [MAX_GLIBC]}
max=${2:-2.31}
need=$(readelf -W --version-info "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ -n "$need" ] || { echo "check-glibc: $bin references no versioned glibc symbols"; exit 1; }
newest=$(printf '%s\n%s\n' "$need" "$max" | sort -V | tail -1)
if [ "$newest" != "$max" ]; then
  echo "check-glibc: FAIL: $bin needs glibc $need, newer than $max; symbols:"
  readelf -W --dyn-syms "$bin" | grep -E "GLIBC_$need( |$)" | head -20
  exit 1
fi
echo "check-glibc: ok: $bin needs glibc $need at most (ceiling $max)"
