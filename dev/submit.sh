#!/usr/bin/env bash
# dev/submit.sh — package finished train_golf runs as a records folder of openai/parameter-golf.
#
#   dev/submit.sh [options] RUN_DIR [RUN_DIR ...] NAME
#
# Each RUN_DIR is a train_golf OUT_DIR (train.log + final_model.golf), one per seed, from train_golf itself or from a
# record's train_gpt.py. Writes RECORDS/<date>_<NAME>/:
#   train_gpt.py          all the code, counted: golf's sources (xz + base85) and the runs' config in one file that
#                         `torchrun --standalone --nproc_per_node=8 train_gpt.py` runs (dev/train_gpt_stub.py)
#   README.md             results per seed and their mean, artifact bytes, hardware, times, config, command line
#   submission.json       name, date, val_bpb and val_loss (means over the seeds of the final roundtrip), bytes_total
#                         (train_gpt.py + the largest blob), bytes_model, bytes_code (train_gpt.py), seeds, seed_results
#   train_seed<S>.log     each run's log;  final_model_seed<S>.golf  each run's blob
#   golf_infer.c          the blob's CPU scorer (also inside train_gpt.py)
# Refuses, naming the file and changing nothing, when a blob is not an intact .golf blob, train_gpt.py + a blob exceeds
# 16,000,000 bytes, training or evaluation exceeded 600 s, a log did not finish, a log disagrees with its blob, with the
# packaged code (its code: line, or the size of the train_gpt.py it ran) or with the other logs, the config cannot be
# carried (INIT_CKPT, DUMP_GRADS, PLAN_MEMORY), or the folder exists (without --force). The folder is built beside its
# final place and renamed into it at the end.
# Options:
#   --records DIR     where the folder goes (default: ./records)
#   --date YYYY-MM-DD the folder's and submission.json's date (default: today, UTC)
#   --code DIR        folder holding the sources that ran (default: this repository)
#   --baseline LOSS   add the p-value of the challenge's 0.005-nat rule against this val_loss (2+ seeds)
#   --author A  --github-id G  --blurb TEXT     submission.json metadata
#   --force           replace an existing folder of the same name
# Needs python3 (standard library only; $PYTHON overrides).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "submit: error: $*" >&2; exit 1; }
usage_error() { echo "submit: $* (--help shows the usage)" >&2; exit 2; }

records=records date=$(date -u +%Y-%m-%d) code=$(dirname "$HERE") force=0
extra=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --force) force=1; shift ;;
    --records|--date|--code|--baseline|--author|--github-id|--blurb)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case "$1" in
        --records) records=$2 ;;
        --date) date=$2 ;;
        --code) code=$2 ;;
        *) extra+=("$1=$2") ;;
      esac
      shift 2 ;;
    --) shift; args+=("$@"); break ;;
    -*) usage_error "unknown option '$1'" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -ge 2 ] || usage_error "need at least one RUN_DIR and a NAME"
name=${args[${#args[@]}-1]}
runs=("${args[@]:0:${#args[@]}-1}")
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || usage_error "NAME '$name' must be letters, digits, '.', '_' or '-' (it names a folder)"
[[ "$date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || usage_error "--date '$date' is not YYYY-MM-DD"
"$PY" -c 'import datetime, sys; datetime.date.fromisoformat(sys.argv[1])' "$date" 2>/dev/null || usage_error "--date '$date' is not a calendar date"
for e in ${extra[@]+"${extra[@]}"}; do
  case "$e" in --baseline=*) [[ "${e#*=}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "--baseline '${e#*=}' is not a positive val_loss (e.g. 2.0727)" ;; esac
done
for r in "${runs[@]}"; do [ -d "$r" ] || fail "$r: not a folder (a RUN_DIR is train_golf's OUT_DIR)"; done

dest=$records/${date}_$name
if [ -e "$dest" ] && [ "$force" != 1 ]; then fail "$dest already exists: pass --force to replace it, or choose another NAME"; fi
made_records=0
[ -d "$records" ] || made_records=1   # a records folder made here goes again when the runs are refused
mkdir -p "$records" || fail "$records: cannot create it"
stage=$(mktemp -d "$records/.submit_${name}.XXXXXX") || fail "$records: cannot create a temporary folder there"
trap 'rm -rf "$stage"; [ "$made_records" = 0 ] || rmdir "$records" 2>/dev/null || true' EXIT

"$PY" "$HERE/golf_log.py" submission --out "$stage" --name "$name" --date "$date" --code "$code" ${extra[@]+"${extra[@]}"} \
  -- "${runs[@]}" || exit 1

chmod 755 "$stage"
if [ -e "$dest" ]; then   # --force: the old folder goes only once the new one is complete
  old=$(mktemp -d "$records/.submit_old.XXXXXX")
  mv "$dest" "$old/" && mv "$stage" "$dest" && rm -rf "$old"
else
  mv "$stage" "$dest"
fi
trap - EXIT
echo "submit: wrote $dest:"
ls -l "$dest" | tail -n +2 | awk '{printf "  %-32s %12s bytes\n", $NF, $5}'
grep -E '"(val_bpb|val_loss|bytes_total)"' "$dest/submission.json" | head -3 | sed 's/^ */  /'
