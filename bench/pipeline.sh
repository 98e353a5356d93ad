#!/usr/bin/env bash
# bench/pipeline: the scheduler against the pipeline model on this machine,
# P = 2 and 4 stages (processes), stage cost 2 ms (sleep + copy), M in
# {1,2,4,8,16}. Writes bench/results/pipeline-<date>-<host>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build}"
pb="$B/bench/pipeline_bench"; run="$B/tppp-run"
[ -x "$pb" ] || { echo "missing $pb: build first"; exit 1; }
out="bench/results/pipeline-$(date -u +%Y-%m-%d)-$(hostname).md"
raw=$(for P in 2 4; do "$run" -n $P -- "$pb" | sed 's/^\[[0-9]*\] //'; done)
{
  echo "# bench/pipeline — $(date -u +%Y-%m-%d), host $(hostname) ($(nproc) cores)"
  echo
  echo "One process per stage (tp=1), activations [16 rows, 1024] f32 per micro-batch, a stage function that"
  echo "sleeps 2 ms and copies its input (t_stage below is its measured mean). Step time = the slowest stage's"
  echo "wall time for one batch, median of 5 runs. t_p2p = one activation hop, measured in the same run."
  echo
  echo "## Fill-drain: step time vs (M+P-1)*t_stage + (P-1)*t_p2p"
  echo
  echo "| P | M | t_p2p us | t_stage ms | step ms | model ms | off by |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  while read -r k P M step model ts; do
    hop=$(awk -v p="$P" '$1=="p2p" && $2==p {print $4}' <<<"$raw")
    echo "| $P | $M | $hop | $ts | $step | $model | $(awk -v a="$step" -v b="$model" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}') |"
  done < <(grep '^fill' <<<"$raw")
  echo
  echo "## Decode ring (16 steps): mean stage utilisation (busy / wall)"
  echo
  echo "Steady state is min(M,P)/P; a run of S steps also fills and drains, so its ideal is"
  echo "S*M / (S*max(M,P) + P - 1)."
  echo
  echo "| P | M | measured | steady state min(M,P)/P | finite-run ideal | measured vs ideal |"
  echo "|---:|---:|---:|---:|---:|---:|"
  while read -r k P M u st fin; do
    echo "| $P | $M | $u | $st | $fin | $(awk -v a="$u" -v b="$fin" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}') |"
  done < <(grep '^ring' <<<"$raw")
} | tee "$out"
echo "written to $out" >&2
