#!/usr/bin/env bash
# The mix family for attribution and contamination tests (examples/checkpoints/mix-*).
# A 3x3 design: arithmetic share at 0.04, 0.10, 0.25 and kv share at 0.01, 0.02, 0.04,
# independently (kv facts are memorised by a share of 0.10: higher shares only saturate); code
# constant at 0.40 (the large "base" slice); prose (filler) takes the rest, 0.31-0.55. The kv
# slice is its facts variant (--kv-facts) so closed-book recall is learnable at this size.
# Plus mix-planted: a middle mix whose prose slice also holds half of contam_arith_mc's items
# verbatim, 30 copies each. Every run shares tiny-base's tokenizer and seed 0.
# Usage: bash examples/train_mix_family.sh [python]   (about 40 s of CPU per checkpoint)
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=examples/checkpoints
COMMON=(--tokenizer "$OUT/tiny-base" --kv-facts --steps 600 --batch-size 16 --seq-len 64
        --hidden 64 --intermediate 128 --layers 2 --heads 2 --kv-heads 1 --max-positions 128
        --warmup 30 --sample-docs 100 --save-dtype float16 --timestamp 2026-11-27
        --log-every 200 --threads 1)
# One thread: on a shared, oversubscribed machine two OpenMP threads spin against each other
# (a 17 s run took 15 min); results do not depend on the thread count beyond float rounding.
for a in 0.04 0.10 0.25; do
  for k in 0.01 0.02 0.04; do
    f=$(python3 -c "print(round(0.60 - $a - $k, 2))")
    name="mix-a${a#0.}-k${k#0.}"
    [ -e "$OUT/$name/model.safetensors" ] && continue  # resumable
    "$PY" examples/train_tiny.py --out "$OUT/$name" "${COMMON[@]}" \
      --mix "arithmetic=$a,kv=$k,prose=$f,code=0.40"
  done
done
[ -e "$OUT/mix-planted/model.safetensors" ] ||
"$PY" examples/train_tiny.py --out "$OUT/mix-planted" "${COMMON[@]}" \
  --mix "arithmetic=0.10,kv=0.10,prose=0.40,code=0.40" \
  --plant examples/planted_contam_arith.txt --plant-slice prose --plant-repeats 30
