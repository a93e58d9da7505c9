#!/usr/bin/env bash
# A Slurm job array that splits one capacity sweep over 16 GPUs: task i runs the trials
# t ≡ i (mod 16) of every point, then one `dam merge` joins the shards.
#
#   sbatch scripts/slurm-capacity.sh            # the array
#   dam merge runs/n24/shard-* --out runs/n24   # after it finished
#
#SBATCH --job-name=dam-capacity
#SBATCH --array=0-15
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=02:00:00
#SBATCH --output=runs/n24/slurm-%a.log
set -euo pipefail
SHARDS=16
dam capacity --patterns spherical --dim 24 --energy lse --beta 1 \
    --alpha 0.56:0.68:0.005 --trials 1024 --seed 1 --device wgpu \
    --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" \
    --out "runs/n24/shard-${SLURM_ARRAY_TASK_ID}"
