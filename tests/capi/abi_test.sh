#!/usr/bin/env bash
# The C ABI check (capi/abi/check.sh): the built library matches the baseline in the repository, and the check does
# fail, naming what changed, when the baseline has a function the library lost (a copy of the baseline with one
# function renamed), a struct whose size differs (a copy with llmft_features one field smaller) or a status whose
# value differs (a copy of capi/abi/constants.txt).
#   tests/capi/abi_test.sh LIBRARY WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
lib=$1 work=$2
check=$here/capi/abi/check.sh
"$check" check "$lib"
command -v abidiff > /dev/null || exit 77
mkdir -p "$work"
sed "s/'llmft_version'/'llmft_version_of_old'/g" "$here/capi/abi/llmft.abi" > "$work/removed.abi"
grep -q "llmft_version_of_old" "$work/removed.abi" || { echo "the baseline has no llmft_version to rename"; exit 1; }
if LLMFT_ABI_BASELINE=$work/removed.abi "$check" check "$lib" > "$work/removed.log" 2>&1; then
  cat "$work/removed.log"; echo "a removed function was not refused"; exit 1
fi
grep -q "llmft_version_of_old" "$work/removed.log" || { cat "$work/removed.log"; echo "the refusal does not name it"; exit 1; }
sed "s/<class-decl name='llmft_features' size-in-bits='\([0-9]*\)'/<class-decl name='llmft_features' size-in-bits='32'/" \
  "$here/capi/abi/llmft.abi" > "$work/resized.abi"
if LLMFT_ABI_BASELINE=$work/resized.abi "$check" check "$lib" > "$work/resized.log" 2>&1; then
  cat "$work/resized.log"; echo "a struct whose size changed was not refused"; exit 1
fi
grep -q "struct 'llmft_features' changed\|struct llmft_features' changed" "$work/resized.log" \
  || { cat "$work/resized.log"; echo "the refusal does not name llmft_features"; exit 1; }
sed "s/^LLMFT_E_IO .*/LLMFT_E_IO -33/" "$here/capi/abi/constants.txt" > "$work/constants.txt"
if LLMFT_ABI_CONSTANTS=$work/constants.txt "$check" check "$lib" > "$work/constants.log" 2>&1; then
  cat "$work/constants.log"; echo "a renumbered status was not refused"; exit 1
fi
grep -q "LLMFT_E_IO is -3, was -33" "$work/constants.log" || { cat "$work/constants.log"; echo "the refusal does not name LLMFT_E_IO"; exit 1; }
echo "a removed function, a resized struct and a renumbered status are refused, naming them"
