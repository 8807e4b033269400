#!/bin/bash
# The GPU checks of issue 11, from the project root on a device machine (its own torch, no
# package registry; the project is imported from source):  bash benchmarks/gpu/run.sh
# About 4 minutes on an H100; record the step ratios in BENCHMARKS.md with the card's name.
export PYTHONPATH="$PWD"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch, torchvision; print('torch', torch.__version__, 'tv', torchvision.__version__)"
echo "== correctness: CUDA float32 vs CPU float64"
timeout 240 python benchmarks/gpu/check_layers.py 2>&1 | grep -v Warning
echo "== ResNet-18 step, bf16, channels_last, batch 128 (eager and torch.compile)"
timeout 300 python benchmarks/norm_speed.py --device cuda --batch 128 --channels-last --bf16 \
  --compile --repeats 30 \
  --norms gnplus:fused gnplus:kernels gnplus:compiled gnplus-gn_first:kernels gnplus-bn_first:kernels cn bgn
