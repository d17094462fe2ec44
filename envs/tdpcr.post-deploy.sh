#!/usr/bin/env bash
# Snakemake runs this inside every conda env it creates from envs/tdpcr.yaml (--sdm conda),
# right after `conda env create` (Snakemake's "post-deployment scripts"). It installs what an
# env file cannot: satellite-cloud-generator without its unused torchvision requirement, and
# tdpcr from the workflow's checkout, editable, so jobs run the checkout's code.
# TDPCR_SOURCE is that checkout; workflow/rules/common.smk sets it for the Snakemake process,
# whose environment the script inherits. By hand: TDPCR_SOURCE=$PWD bash envs/tdpcr.post-deploy.sh
set -euo pipefail
source="${TDPCR_SOURCE:?TDPCR_SOURCE is not set: the tdpcr checkout to install (set by the workflow)}"
python -m pip install --no-deps -r "$source/envs/requirements-nodeps.txt" -e "$source"
