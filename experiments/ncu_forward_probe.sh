#!/usr/bin/env bash
# Nsight Compute over the forward's stages at one length (one device call): build, then
# - the search kernel with the sections that say what bounds it and a report for its SASS
#   stall samples ($OUT/search-sass.csv, the hottest lines);
# - the sort and merge stages' kernels (every launch of one forward), speed of light only.
# ncu runs with --clock-control none, so durations are at the card's own clocks.
# SL_NCU_L (default 64K) and SL_NCU_GQA (default 8) pick the case; SL_NCU_SEARCH=0 skips the
# search's profile; SL_SEARCH_KERNEL=int8 profiles the int8 search (search_q8_kernel; Note [int8
# search]) instead of the bf16 one, SL_SEARCH_KERNEL=stream the stream search's kernel
# (search_stream_kernel; Note [stream search]). SL_NCU_KERNEL (a regex) names another kernel to
# profile in its place (e.g. rescore_kernel). The tile kernel is in the speed-of-light list too;
# SL_NCU_STAGES=0 skips that list.
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
L="${SL_NCU_L:-64K}" gqa="${SL_NCU_GQA:-8}"
bench=(./build-device/superlinear bench attention --L "$L" --gqa "$gqa" --no-dense --out /tmp/ncu-bench)
if [ "${SL_NCU_SEARCH:-1}" = 1 ]; then
ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section Occupancy --section SchedulerStats --section WarpStateStats --section LaunchStats \
  --section InstructionStats --section SourceCounters \
  -k regex:"${SL_NCU_KERNEL:-search_(mma|q8|stream)_kernel}" --launch-count 1 -f -o /tmp/search "${bench[@]}" > "$OUT/ncu-run.log" 2>&1
ncu --import /tmp/search.ncu-rep --page details > "$OUT/search-details.txt" 2>&1
ncu --import /tmp/search.ncu-rep --page source --print-source sass --csv > /tmp/sass.csv 2>&1
python3 - "$OUT" <<'PY'
import csv, sys
rows = list(csv.reader(open('/tmp/sass.csv')))
hdr = next(i for i, r in enumerate(rows) if 'Source' in r)
h = rows[hdr]; body = rows[hdr + 1:]
col = next((i for i, c in enumerate(h) if c.startswith('Warp Stall Sampling (All')), None)
with open(sys.argv[1] + '/search-sass.csv', 'w') as f:
    w = csv.writer(f); w.writerow(h)
    for r in body: w.writerow(r)
if col is not None:
    tot = sum(float(r[col] or 0) for r in body if len(r) > col)
    top = sorted(body, key=lambda r: -float(r[col] or 0) if len(r) > col else 0)[:40]
    print('total stall samples', tot)
    for r in top: print(round(100 * float(r[col] or 0) / tot, 1), r[:3])
PY
fi
[ "${SL_NCU_STAGES:-1}" = 1 ] || exit 0
ncu --clock-control none --section SpeedOfLight \
  -k regex:'pair_|Radix|run_tiles|tile_|Scan|merge|span_tile|quantize_k|head_absmax' \
  --launch-count 40 --csv --page details "${bench[@]}" > "$OUT/stages-sol.csv" 2>&1
python3 - "$OUT/stages-sol.csv" <<'PY'
import csv, sys, collections, re
lines = open(sys.argv[1]).read().splitlines()  # ncu's own lines come before the table
rows = list(csv.reader(lines[next(i for i, l in enumerate(lines) if l.startswith('"ID"')):]))
h = rows[0]; ki = h.index('Kernel Name'); mi = h.index('Metric Name'); vi = h.index('Metric Value'); ii = h.index('ID')
per = collections.OrderedDict()
for r in rows[1:]:
    if len(r) > vi: per.setdefault(int(r[ii]), [re.search(r'\w*(Kernel|_kernel)\w*', r[ki]).group(0), {}])[1][r[mi]] = r[vi]
for i, (k, m) in per.items():
    print(i, k, *(f"{n}={m.get(n)}" for n in ('Duration', 'Memory Throughput', 'DRAM Throughput', 'Compute (SM) Throughput')))
PY
