#!/bin/bash
# The GPU checks, from the project root on a device machine (its own torch, no package
# registry; the project is imported from source):  bash benchmarks/gpu/run.sh [OUT_DIR]
# About 8 minutes on an H100. Each part's output is also written to OUT_DIR (default: ./gpu-out).
# Record the step ratios in BENCHMARKS.md with the card's name.
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${1:-gpu-out}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, torchvision; print('torch', torch.__version__, 'tv', torchvision.__version__)"
} 2>&1 | tee "$out/machine.txt"
echo "== correctness: CUDA float32 vs CPU float64"
timeout 150 python benchmarks/gpu/check_layers.py 2>&1 | grep -v Warning | tee "$out/correctness.txt"
echo "== layers alone and ResNet-18 step, bf16, channels_last, batch 128, eager"
timeout 120 python benchmarks/norm_speed.py --device cuda --batch 128 --channels-last --bf16 \
  --repeats 30 --norms gnplus:fused gnplus:kernels gnplus-gn_first:kernels \
  gnplus-bn_first:kernels cn bgn 2>&1 | grep -v Warning | tee "$out/step-eager.txt"
echo "== ResNet-18 step, eager and torch.compile(model)"
timeout 200 python benchmarks/norm_speed.py --device cuda --batch 128 --channels-last --bf16 \
  --repeats 30 --compile --norms gnplus:kernels 2>&1 | grep -v Warning | tee "$out/step-compiled.txt"
echo "== the project's training path on CUDA (bf16, channels_last, compile)"
timeout 150 python benchmarks/gpu/train_check.py 2>&1 | grep -v Warning | tee "$out/train.txt"
echo "== gradients under torch.compile vs eager, and the compiled step"
timeout 200 python benchmarks/gpu/compiled_grads.py cuda --time 2>&1 | grep -v -i warn | tee "$out/compiled-grads.txt"
