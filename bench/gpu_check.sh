#!/usr/bin/env bash
# bench/gpu_check.sh: the GPU path in one short run (under 8 minutes), with a summary at the end.
#
#   bash bench/gpu_check.sh                  # from the checkout's root, or from anywhere
#   GPU_CHECK_OUT=/tmp/gpu bash bench/gpu_check.sh   # keep the logs there (default: a fresh temp dir)
#
# On a machine with a CUDA device it runs, each step under its own time limit:
#   1. tests_cuda   the model, decoding and export tests with LSTM_PIPELINE_TEST_DEVICE=cuda (tests/conftest.py
#                   makes cuda torch's default device, so the models and tensors they build live on the GPU)
#   2. bench_train  bench/bench_train.py --device cuda: bare loop vs pipeline (and bf16), word and char level
#   3. bench_gen    bench/bench_generate.py --device cuda --quick: decoding speed at batch 1 and 64, beam search
#   4. train_gpu    lstm-pipeline train trainer=gpu (bf16-mixed autocast) on the bundled corpus, 1 GPU
#   5. generate     lstm-pipeline generate / evaluate of that run with device=cuda
#   6. ddp_1        trainer=ddp, 1 process on 1 GPU
#   7. ddp_2        trainer=ddp, 2 processes on 2 GPUs (NCCL); skipped with one GPU
# Without a CUDA device it prints why and exits 0 having run nothing (exit 1: torch cannot be imported).
# Exit status: 0 when every step that ran passed, 1 otherwise; logs in $GPU_CHECK_OUT/<step>.log.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's code, installed or not
BUDGET=${GPU_CHECK_BUDGET:-470}                            # seconds for all steps (< 8 minutes)

info="$("$PY" -c '
import torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
names = ": " + ", ".join(torch.cuda.get_device_name(i) for i in range(n)) if n else ""
print(n, f"torch {torch.__version__} (CUDA build {torch.version.cuda}), {n} CUDA device(s){names}")
' 2>&1)"
if [ $? -ne 0 ]; then
  echo "gpu_check: cannot import torch with $PY: ${info##*$'\n'}"
  exit 1
fi
NGPU="${info%% *}"
echo "gpu_check: ${info#* }"
if [ "$NGPU" -lt 1 ]; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check. Run it on a machine with an NVIDIA GPU and a CUDA build of torch."
  exit 0
fi

OUT="${GPU_CHECK_OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$OUT"
CORPUS="$("$PY" -c 'from lstm_pipeline.data.sources import bundled_corpus; print(bundled_corpus())')"
CLI=("$PY" -m lstm_pipeline.cli)
SMALL=(data=text "data.path=$CORPUS" model.hidden_size=256 batching.batch_size=32 batching.bptt=64
       trainer.max_steps=120 trainer.val_check_interval=60 trainer.enable_progress_bar=false sample.max_new_tokens=40)
START=$SECONDS
declare -a RESULTS=()

# step NAME LIMIT_SECONDS PATTERN COMMAND...: run COMMAND under timeout (capped by what is left of the budget),
# log it, record its status and the last log line matching PATTERN (grep -E) for the summary
step() {
  local name=$1 limit=$2 pattern=$3; shift 3
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then RESULTS+=("$name|SKIP|0|out of the ${BUDGET}s budget"); return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "--- $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$? dt=$((SECONDS - t0)) status=PASS
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=TIMEOUT; elif [ $rc -ne 0 ]; then status="FAIL(rc $rc)"; fi
  RESULTS+=("$name|$status|$dt|$(grep -E "$pattern" "$OUT/$name.log" 2>/dev/null | tail -1 | cut -c1-110)")
  tail -n 4 "$OUT/$name.log" | sed 's/^/    /'
}

step tests_cuda 150 "passed|failed|error" env LSTM_PIPELINE_TEST_DEVICE=cuda \
  "$PY" -m pytest -q -p no:cacheprovider tests/models/test_model.py tests/cells/test_cells_contract.py \
  tests/kernels/test_step_weight.py tests/models/test_regularisation.py tests/generation/test_decoding.py \
  tests/generation/test_decoding_beam.py tests/generation/test_continuation.py tests/artifacts/test_export.py
step bench_train 90 "^(word|char) +pipeline" \
  "$PY" bench/bench_train.py --device cuda --levels word char --steps 10 --warmup 3 --rounds 1 --bf16
step bench_gen 50 "nucleus top_p=0.9|ratio" "$PY" bench/bench_generate.py --device cuda --quick --repeats 2
step train_gpu 45 "val_loss|Exported" "${CLI[@]}" train "${SMALL[@]}" trainer=gpu "hydra.run.dir=$OUT/train_gpu"
step generate 30 "ppl|loss" bash -c '"$0" -m lstm_pipeline.cli generate run="$1" device=cuda max_new_tokens=60 seed=0 \
  && "$0" -m lstm_pipeline.cli evaluate run="$1" device=cuda' "$PY" "$OUT/train_gpu"
step ddp_1 45 "val_loss|Exported" "${CLI[@]}" train "${SMALL[@]}" trainer=ddp trainer.accelerator=gpu trainer.devices=1 \
  "hydra.run.dir=$OUT/ddp_1"
if [ "$NGPU" -ge 2 ]; then
  step ddp_2 60 "val_loss|Exported" "${CLI[@]}" train "${SMALL[@]}" trainer=ddp trainer.accelerator=gpu trainer.devices=2 \
    "hydra.run.dir=$OUT/ddp_2"
else
  RESULTS+=("ddp_2|SKIP|0|one GPU: the 2-process run needs 2")
fi

echo
echo "gpu_check summary (${info#* }; $((SECONDS - START)) s; logs in $OUT):"
failed=0
for r in "${RESULTS[@]}"; do
  IFS='|' read -r name status dt line <<<"$r"
  printf '  %-12s %-12s %4ss  %s\n' "$name" "$status" "$dt" "$line"
  case $status in PASS|SKIP) ;; *) failed=1 ;; esac
done
exit $failed
