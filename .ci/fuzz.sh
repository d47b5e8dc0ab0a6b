#!/usr/bin/env bash
# Bounded fuzzing of the C++ blob loader (issue #8), for CI and by hand. Needs ./setup.sh first
# (the venv's ExecuTorch wheel and pip cmake, Debian's flatc).
#
#   .ci/fuzz.sh              install clang if missing, build build-fuzz/, replay the committed
#                            corpus (seeds + crash regressions), then fuzz for FUZZ_SECONDS (60)
#   FUZZ_SECONDS=600 .ci/fuzz.sh
#
# libFuzzer + AddressSanitizer + UBSan (clang-14 and libclang-rt-14-dev from Debian). Any crash,
# sanitizer report, hang (> 10 s per input) or the verifier's broken one-line-message contract
# fails the script; the reproducer lands in build-fuzz/artifacts/ (copy it into
# tests/fixtures/fuzz_corpus/regress-*.bin once fixed, so every later run replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CC_FUZZ=${CC_FUZZ:-clang-14}
CXX_FUZZ=${CXX_FUZZ:-clang++-14}
if ! command -v "$CXX_FUZZ" >/dev/null || [ ! -d /usr/lib/llvm-14/lib/clang ] \
   || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null; }
fi
. .venv/bin/activate
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINT4_CUDA_FUZZ=ON \
  -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_CXX_COMPILER="$CXX_FUZZ" >/dev/null
cmake --build build-fuzz --target int4_cuda_blob_fuzzer -j"$(nproc)"
FUZZER=build-fuzz/runtime/fuzz/int4_cuda_blob_fuzzer
SEEDS=tests/fixtures/fuzz_corpus
WORK=build-fuzz/corpus
mkdir -p "$WORK" build-fuzz/artifacts
# 1. Replay: every committed seed and past crash must run clean.
"$FUZZER" -runs=0 -timeout=10 $SEEDS/*.bin 2>&1 | tail -n 3
# 2. Fuzz for a bounded time (new inputs go to the git-ignored build-fuzz/corpus).
"$FUZZER" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix=build-fuzz/artifacts/ "$WORK" "$SEEDS" 2>&1 \
  | grep -av -e '	NEW ' -e '	REDUCE ' -e '	pulse ' | tail -n 40
exit "${PIPESTATUS[0]}"
