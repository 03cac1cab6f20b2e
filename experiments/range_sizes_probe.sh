#!/usr/bin/env bash
# Kernel sandbox for Note [dK/dV by key range] (one device call): the backward at 1M GQA 8, where
# the sets take key ranges, once per setting of its three sizes: SL_RANGE_DQ_MIB (f32 dQ rows of
# a chunk), SL_RANGE_SLICE_PAIRS (pairs per tile build of a range) and SL_RANGE_ACC_MIB (the
# range's f32 dK/dV accumulators). SL_PROBE_SETTINGS: "dq,slice,acc ..." Files in $OUT:
# env.txt, sizes.md (time and workspace per setting) and probe.err.
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
echo "| dq MiB | slice pairs | acc MiB | fwd ms | bwd ms | bwd TFLOP/s | bwd workspace MiB |" > "$OUT/sizes.md"
echo "|---|---|---|---|---|---|---|" >> "$OUT/sizes.md"
for set in ${SL_PROBE_SETTINGS:-256,2097152,128}; do
  IFS=, read -r dq slice acc <<< "$set"
  SL_RANGE_DQ_MIB=$dq SL_RANGE_SLICE_PAIRS=$slice SL_RANGE_ACC_MIB=$acc \
    ./build-device/superlinear bench attention --L "${SL_PROBE_L:-1M}" --gqa 8 --no-dense \
    --out "/tmp/sizes-$dq-$slice-$acc" >> "$OUT/probe.err" 2>&1 || echo "bench failed: $set"
  row=$(grep -E "^\| [0-9]" "/tmp/sizes-$dq-$slice-$acc/attention.md" | head -1)
  echo "$row" | awk -F'|' -v s="| $dq | $slice | $acc |" '{print s $6 "|" $8 "|" $9 "|" $12 "|"}' \
    | tee -a "$OUT/sizes.md"
done
