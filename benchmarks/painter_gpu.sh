#!/usr/bin/env bash
# The 256 px painter on one GPU (issue 20): H100-sized widths, sized for ~10 minutes of training (not yet
# measured: no GPU was lent), scored exactly as the CPU row (benchmarks/painter.py: Lite2 FD/KID against
# the training paintings, held-out reals and their TAEF2 reconstructions, diversity, consistency, reach).
#
#   SRC=runs/real0 bash benchmarks/painter_gpu.sh                  # on a machine with CUDA
#   SRC=runs/demo_t STEPS=4 DEVICE=cpu BATCH=4 G_CH=16 D_CH=16 N_PER_CLASS=4 N_FD=12 \
#     OUT=/tmp/painter_gpu_smoke.json RUN=/tmp/painter_gpu_smoke bash benchmarks/painter_gpu.sh   # CPU smoke test (a demo run)
#
# SRC is a run directory with data/ (art manifest incl. the unlabelled paintings), align/, image/
# and classifier/ (see BENCHMARKS.md > Paintings for how runs/real0 is built).  The paintings it
# names must be readable where this runs; the TAEF2 latents are encoded there once at 256 px
# (cached; ~0.2 s per painting on a 2-core CPU, far less on the GPU).
# Widths 128/64 at batch 64: ~4x the CPU recipe's work per step at twice the side.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-runs/real0}
RUN=${RUN:-runs/painter256_gpu}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-20000}
BATCH=${BATCH:-64}
G_CH=${G_CH:-128}
D_CH=${D_CH:-64}
N_PER_CLASS=${N_PER_CLASS:-100}
N_FD=${N_FD:-500}
OUT=${OUT:-benchmarks/results/painter_gpu256.json}
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" benchmarks/painter.py --source-run "$SRC" --run "$RUN" --device "$DEVICE" \
  --threads "$(nproc)" --no-latency --n-per-class "$N_PER_CLASS" --n-fd "$N_FD" --out "$OUT" \
  --set gan.image_size=256 --set gan.steps="$STEPS" --set gan.batch_size="$BATCH" \
  --set gan.g_ch="$G_CH" --set gan.d_ch="$D_CH" --set gan.ema_start=2000 \
  --set gan.sample_every=2000 --set gan.ckpt_every=2000
