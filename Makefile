# unlearn-bench. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Offline data sets (MNIST, Fashion-MNIST, CIFAR-10 npz): the shared folder beside the checkout if present.
export UNLEARN_BENCH_DATA ?= $(abspath $(wildcard ../shared/data))
export WANDB_MODE ?= offline

.PHONY: help install run test test-unit test-full lint format sweep tune-zoo tune-eval tuned-table tuned leaderboard tables bench bench-gpu clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

install: ## create .venv and install the package with its pinned dependencies
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[dev]'

# `make run method=ft seed=1` hands its command-line variables on to the runner as overrides; anything the
# runner takes, flags and multiruns included, goes in ARGS: make run ARGS="-m method=ft,rl seed=0,1".
# The Makefile's own variables are not overrides.
OWN_VARS := PYTHON VENV PY BIN EXP ARGS RECORDS TRACK FORGET TRIALS TUNING_SEEDS JOBS UNLEARN_BENCH_DATA \
	UNLEARN_BENCH_CACHE UNLEARN_BENCH_RECORDS UNLEARN_BENCH_OUTPUTS WANDB_MODE
RUN_OVERRIDES = $(foreach v,$(filter-out $(OWN_VARS),$(.VARIABLES)),$(if $(filter command line,$(origin $(v))),$(v)=$($(v))))

run: ## one cell on the embedded default (digits, small CNN, SalUn); make run method=ft seed=1 overrides
	$(PY) -m unlearn_bench.run $(RUN_OVERRIDES) $(ARGS)

test: ## the fast test suite, one process per core (pytest-xdist)
	$(PY) -m pytest -q -n auto

test-unit: ## the unit tests only (seconds)
	$(PY) -m pytest -q -m unit

test-full: ## every test, the slow ones included
	$(PY) -m pytest -q -m ''

lint: ## ruff
	$(PY) -m ruff check unlearn_bench tests scripts

format: ## ruff format
	$(PY) -m ruff format unlearn_bench tests scripts

sweep: ## a preset grid two cells at a time: make sweep EXP=salun_table [RECORDS=folder, default ./records]
	@test -n "$(EXP)" || { echo "error: EXP is not set; accepted: one of $(basename $(notdir $(wildcard conf/experiment/*.yaml)))" >&2; exit 2; }
	$(PY) -m unlearn_bench.run -m experiment=$(EXP) hydra/launcher=joblib logger=none \
		progress=false paths.records_dir=$(or $(RECORDS),records)

ZOO := ft,rl,ga,iu,l1_sparse,boundary_expanding,boundary_shrink,salun,neggrad_plus,scrub,bad_teacher,ssd,fisher,cf_k,eu_k,scar,msg,ct
comma := ,
empty :=
space := $(empty) $(empty)
TUNED = $(subst $(space),$(comma),$(addprefix tuned/cpu/$(or $(TRACK),oracle)/,$(subst $(comma),$(space),$(ZOO))))
tune-zoo: ## equal-budget tuning of the classification zoo at CPU scale (resumes from its trial records): make tune-zoo TRACK=oracle|blind FORGET=random_10 TRIALS=10 TUNING_SEEDS=100,101 JOBS=2
	$(BIN)/unlearn-bench-tune --method $(ZOO) --scale cpu --track $(or $(TRACK),oracle) --trials $(or $(TRIALS),10) \
		--tuning-seeds $(or $(TUNING_SEEDS),100$(comma)101) --jobs $(or $(JOBS),2) --trial-records results/tuned/trial_records -- forget_rate=$(or $(FORGET),random_10)

tune-eval: ## the tuned zoo on the evaluation seeds 0-4, records in results/tuned/records (the other tables' folder stays untuned): make tune-eval TRACK=oracle|blind
	$(PY) -m unlearn_bench.run -m scale=cpu method=$(TUNED) forget_rate=$(or $(FORGET),random_10) seed=0,1,2,3,4 \
		hydra/launcher=joblib logger=none progress=false paths.records_dir=results/tuned/records

tuned-table: ## results/tuned from the records: default and tuned rows side by side (random 10 %), the studies' summary
	TABLES=tuned BIN=$(BIN) bash scripts/tables.sh

tuned: ## docs/tuning.md end to end at CPU scale, resuming from the committed records: both tracks tuned, evaluated, tabulated
	$(MAKE) tune-zoo TRACK=oracle && $(MAKE) tune-eval TRACK=oracle
	$(MAKE) tune-zoo TRACK=blind && $(MAKE) tune-eval TRACK=blind
	$(MAKE) tuned-table

leaderboard: ## aggregate the records (env UNLEARN_BENCH_RECORDS, else ./records) into ./leaderboard (md, csv, html, png)
	$(BIN)/unlearn-bench-leaderboard --records $(or $(UNLEARN_BENCH_RECORDS),records) --out leaderboard

tables: ## every committed table of results/ again from the committed records (scripts/tables.sh)
	BIN=$(BIN) bash scripts/tables.sh

bench: ## training throughput: conventional pipeline vs the suite vs the model's limit
	$(BIN)/unlearn-bench-bench

bench-gpu: ## the GPU figures (paper recipe, several models at once) into results/bench/gpu
	PYTHON=$(PY) bash scripts/gpu_bench.sh

clean: ## remove run outputs (Hydra and W&B folders); records, leaderboards and the model cache stay
	rm -rf outputs multirun
