#!/usr/bin/env bash
# The loader's tests under valgrind's memcheck: the unit tests of the
# format, memory and loader crates, and the integration tests over the
# corpus, the builder's images, composed folders, hand-made hostile images
# and (SPUR_SWEEP_LIMIT mutations of each image, 300 by default) the
# mutation sweep; and the C interface's test of bad input
# (crates/spur-capi/tests/c/abuse.c, linked against the static library,
# over a builder image and a 32-bit corpus image). Fails if memcheck
# reports any error or a definite leak, or if a test fails.
#
#   tests/valgrind.sh [TEST...]      # default: all of the above
#
# --aspace-minaddr keeps valgrind's own mappings, and the dynamic linker it
# loads for the program, above 4 GiB: by default it puts ld.so at 0x4000000,
# inside the old range of a 32-bit corpus image, and the loader (rightly)
# relocates that image instead of loading it in place.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPUR_CORPUS="${SPUR_CORPUS:-$(cd .. && pwd)/shared/images}"
export SPUR_SWEEP_LIMIT="${SPUR_SWEEP_LIMIT:-300}"
# A damaged image that loads in milliseconds takes a second or more here,
# and one whose header asks for a 4 GiB eden some 25 s (memcheck shadows the
# whole new-space mapping the interpreter's run reserves; natively it takes
# milliseconds), more on a busy machine.
export SPUR_SWEEP_SLOW="${SPUR_SWEEP_SLOW:-240}"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(spur_format spur_mem spur_loader corpus synth composed hostile sweep capi)
fi

# The C test: built with the system compiler against libspur_capi.a, run
# with its arguments (an image, a scratch folder) under the same memcheck.
capi_runs() {
  cargo build --release --locked -p spur-capi -p vm-loader >/dev/null 2>&1
  local scratch
  scratch="$(mktemp -d)"
  cc -std=c99 -Wall -Wextra -Werror -g -Iinclude crates/spur-capi/tests/c/abuse.c \
    target/release/libspur_capi.a -lpthread -ldl -lm -lrt -lutil -o "$scratch/abuse"
  target/release/vm-loader synth "$scratch/w64.image" --heap-kib 1024 --segments 2 >/dev/null
  local corpus32="$SPUR_CORPUS/pharo-tiny-codeparadise-client-32.image"
  if [ ! -f "$corpus32" ]; then
    echo "capi: $corpus32 is missing (SPUR_CORPUS=$SPUR_CORPUS does not hold the corpus)" >&2
    rm -rf "$scratch"
    return 1
  fi
  local images=("$scratch/w64.image" "$corpus32")
  local failed=0 image
  for image in "${images[@]}"; do
    local work log rc start=$SECONDS
    work="$(mktemp -d -p "$scratch")"
    log="$(mktemp)"
    set +e
    valgrind --tool=memcheck --aspace-minaddr=0x100000000 \
      --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
      "$scratch/abuse" "$image" "$work" > "$log" 2>&1
    rc=$?
    set -e
    echo "capi $(basename "$image"): exit $rc in $((SECONDS - start))s; $(grep -E '^[0-9]+ passed' "$log"); $(grep 'ERROR SUMMARY' "$log" | tail -1 | sed 's/^==[0-9]*== //')"
    if [ "$rc" -ne 0 ]; then
      failed=1
      cp "$log" target/valgrind-capi.log
      grep -E 'FAILED|Invalid|uninitialised|definitely lost: [1-9]' "$log" | head -20
      echo "the whole output is in target/valgrind-capi.log"
    fi
    rm -f "$log"
  done
  rm -rf "$scratch"
  return $failed
}

# Build every test binary and learn their paths from cargo's own listing.
listing="$(cargo test --release --locked -p spur-format -p spur-mem -p spur-loader -p spur-tests --no-run 2>&1)"
failed=0
for t in "${tests[@]}"; do
  if [ "$t" = capi ]; then
    capi_runs || failed=1
    continue
  fi
  bin="$(printf '%s\n' "$listing" | sed -n "s#.*(\(target/release/deps/${t}-[0-9a-f]*\)).*#\1#p" | head -1)"
  if [ -z "$bin" ]; then
    echo "no test binary named $t" >&2
    exit 2
  fi
  log="$(mktemp)"
  start=$SECONDS
  set +e
  (cd tests && valgrind --tool=memcheck --aspace-minaddr=0x100000000 \
    --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    "../$bin" --test-threads=1 --include-ignored) > "$log" 2>&1
  rc=$?
  set -e
  result="$(grep -E '^test result' "$log" | tail -1)"
  errors="$(grep 'ERROR SUMMARY' "$log" | sed 's/^==[0-9]*== //')"
  echo "$t: exit $rc in $((SECONDS - start))s; $result; $errors"
  if [ "$rc" -ne 0 ]; then
    failed=1
    kept="target/valgrind-$t.log"
    cp "$log" "$kept"
    grep -E 'panicked|failed|took|Invalid|uninitialised|definitely lost: [1-9]' "$log" | head -20
    echo "the whole output is in $kept"
  fi
  rm -f "$log"
done
exit $failed
