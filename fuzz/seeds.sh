#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/:
# images the builder makes (every word size, several segments with and
# without gaps, the prefix, both format numbers of each width), their
# headers, their composed-image .ston files, and, when SPUR_CORPUS names the
# real image corpus, its images of 300 KiB or less. Nothing here is
# committed: the builder is deterministic, so the seeds are the same on
# every machine.
set -euo pipefail
cd "$(dirname "$0")"
cargo run --release --locked -q -p spur-seedgen -- corpus "${SPUR_CORPUS:-}"
