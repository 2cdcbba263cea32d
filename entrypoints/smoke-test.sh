#!/bin/sh
# In-image smoke test (the Dockerfile's `test` stage and `make image-test`):
# info -> demo-data -> prep -> mpirun -np 2 train (a few steps) -> eval -> check eval_results.json
# -> export -> predict one image with the export (the workstation's use of the image).
set -eu
work=${1:-/tmp/hvdtrain-smoke}
rm -rf "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
case "$(mpirun --version 2>&1 | head -n 1)" in   # the MPI actually in the image
  *"Intel(R) MPI"*) MPIRUN="mpirun -np 2 -genv I_MPI_FABRICS shm -genv FI_PROVIDER ${FI_PROVIDER:-tcp}" ;;
  *)                MPIRUN="mpirun -np 2 --oversubscribe --bind-to none" ;;
esac
hvdtrain info
hvdtrain demo-data "$work/raw"
hvdtrain prep --raw-data-dir "$work/raw" --output-dir "$work/records" --train-shards 4 \
  --validation-shards 2 --no-progress
hvdtrain verify "$work/records"
$MPIRUN hvdtrain train --data-dir "$work/records" --model-dir "$work/model" --model resnet18 \
  --image-size 32 --train-batch-size 64 --train-steps 30 --warmup-steps 5 --peak-lr 0.2 \
  --min-crop-area 0.35 --no-random-flip --log-every-steps 10
$MPIRUN hvdtrain eval --data-dir "$work/records" --model-dir "$work/model" --eval-batch-size 100
python3 - "$work/model/eval_results.json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
# The pipeline works in the image: every validation image scored once, the trained step restored,
# a finite loss. (Convergence is asserted by tests/integration, not by a 30-step smoke run.)
assert r["num_images"] == 364 and r["global_step"] == 30, r
assert math.isfinite(r["loss"]) and 0 <= r["top1"] <= r["top5"] <= 1, r
print(f"eval in the image: top-1 {r['top1']:.4f}, top-5 {r['top5']:.4f} on {r['num_images']} images")
PY
hvdtrain export --model-dir "$work/model" --output-dir "$work/export"
image=$(find "$work/raw/validation" -name '*.JPEG' | sort | head -n 1)
hvdtrain predict "$image" --export "$work/export" --json > "$work/predict.json"
python3 - "$work/predict.json" <<'PY'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
assert len(lines) == 1 and len(lines[0]["top_k"]) == 5, lines
print(f"smoke test passed: export + predict in the image ({lines[0]['top_k'][0]['synset']})")
PY
