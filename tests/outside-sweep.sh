#!/usr/bin/env bash
# The outside sweep: randomly damaged copies of real images, run against the
# release binary. Every run of `vm-loader verify` (in place), `launch
# --headless --relocate` (a dry run, and a run of the interpreter for at most
# 20000 bytecodes or 5 seconds: a damaged image may wait for a far timer),
# `stats`, `vm-loader load --relocate` and `vm-loader info` must end with exit
# code 0, 1, 2 or 3 (a run that stopped) and a message, within the time limit:
# a panic (101), an abort or a signal, a hang, or silence fails the sweep.
#
#   tests/outside-sweep.sh [COPIES_PER_IMAGE [SEED [IMAGE...]]]
#
# Defaults: 200 copies of each Spur image of $SPUR_CORPUS (../shared/images
# when unset), seed 1, 10 seconds per run. TIME_LIMIT overrides the limit.
# Copies are written by `spur-damage` (tests/src/bin) to a temporary folder
# and removed afterwards, except those that failed, which are kept and named.
set -euo pipefail
cd "$(dirname "$0")/.."

copies="${1:-200}"
seed="${2:-1}"
shift $(( $# > 2 ? 2 : $# ))
limit="${TIME_LIMIT:-10}"
corpus="${SPUR_CORPUS:-$(cd .. && pwd)/shared/images}"
if [ $# -gt 0 ]; then
  images=("$@")
else
  images=("$corpus"/*.image)
fi

cargo build --release --locked -q -p vm-loader -p spur-tests --bin vm-loader --bin spur-damage
bin=target/release/vm-loader

work="$(mktemp -d)"
kept="$work/failed"
mkdir -p "$kept"
cleanup() {
  if [ -n "$(ls -A "$kept")" ]; then
    echo "failing copies kept in $kept"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

runs=0
declare -A codes=()
failed=0
start=$SECONDS
for image in "${images[@]}"; do
  name="$(basename "$image" .image)"
  dir="$work/$name"
  target/release/spur-damage "$image" "$dir" "$copies" "$seed" > "$work/$name.manifest"
  while IFS=$'\t' read -r copy damage; do
    for cmd in "verify" "load --relocate" "info" "launch --headless --relocate --dry-run" \
      "launch --headless --relocate --max-bytecodes 20000 --timeout 5" "stats"; do
      set +e
      # shellcheck disable=SC2086 # $cmd is a subcommand and its flag
      timeout -k 2 "$limit" "$bin" $cmd "$dir/$copy" > "$work/out" 2> "$work/err"
      rc=$?
      set -e
      runs=$((runs + 1))
      codes[$rc]=$(( ${codes[$rc]:-0} + 1 ))
      why=""
      case $rc in
        0 | 1 | 2 | 3)
          if [ ! -s "$work/out" ] && [ ! -s "$work/err" ]; then
            why="exit $rc without a message"
          elif grep -q "panicked" "$work/err"; then
            why="exit $rc after a panic"
          fi
          ;;
        124 | 137) why="no answer within ${limit}s" ;;
        101) why="panic" ;;
        *) why="exit code $rc (signal $((rc > 128 ? rc - 128 : 0)))" ;;
      esac
      if [ -n "$why" ]; then
        failed=$((failed + 1))
        cp "$dir/$copy" "$kept/"
        echo "FAIL $copy ($damage): vm-loader $cmd: $why"
        sed 's/^/    /' "$work/err" | head -5
      fi
    done
  done < "$work/$name.manifest"
  rm -rf "$dir"
done

summary=""
for rc in $(printf '%s\n' "${!codes[@]}" | sort -n); do
  summary+=" exit $rc: ${codes[$rc]};"
done
echo "outside sweep: $runs runs over ${#images[@]} images x $copies copies (seed $seed) in $((SECONDS - start))s;${summary} $failed failed"
[ "$failed" -eq 0 ]
