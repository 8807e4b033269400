#!/bin/bash
# Issue 22's GPU measurements of impl="triton", from the project root on a device machine:
#   bash benchmarks/gpu/triton.sh [OUT_DIR]
# About 5 minutes on an H100 (the first call of each kernel specialization compiles). Record the
# ratios in BENCHMARKS.md ("GN+ on Triton kernels") with the card and the torch version.
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${1:-gpu-out}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$out/machine.txt"
echo "== correctness: CUDA float32 on triton vs CPU float64"
timeout 120 python benchmarks/gpu/check_layers.py cuda triton 2>&1 | grep -v Warning \
  | tee "$out/triton-correctness.txt"
for layout in --channels-last ""; do
  echo "== layers alone and ResNet-18 step, bf16, batch 128, eager ${layout:-(NCHW)}"
  timeout 150 python benchmarks/norm_speed.py --device cuda --batch 128 $layout --bf16 \
    --repeats 30 --norms gnplus:kernels gnplus:triton gnplus-gn_first:triton \
    gnplus-bn_first:triton cn:kernels cn:triton bgn:kernels bgn:triton 2>&1 | grep -v Warning \
    | tee "$out/triton-resnet18${layout:+-cl}.txt"
done
for batch in 8 64; do
  echo "== ResNet-20 width 8 step (the suites' network), float32, batch $batch, eager"
  timeout 90 python benchmarks/norm_speed.py --device cuda --model resnet20-w8 --batch $batch \
    --repeats 50 --norms gnplus:kernels gnplus:triton 2>&1 | grep -v Warning \
    | tee "$out/triton-resnet20-b$batch.txt"
done
