# comfypack — the two commands of the README's quick start are `make setup` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE ?= text_tools
PORT ?= 3000
export COMFYPACK_HOME ?= $(CURDIR)/.cache

.PHONY: setup serve-example bento base-image test test-current test-unit test-integration test-e2e test-browser test-container ui-examples bench lint clean-cache

setup:  ## create .venv, install everything, provision ComfyUI (repeatable)
	bash scripts/setup.sh

serve-example: ## serve examples/workflows/$(EXAMPLE) on http://127.0.0.1:$(PORT)
	$(BIN)/comfypack serve examples/workflows/$(EXAMPLE)/workflow_api.json --port $(PORT)

bento:  ## build the example service into a Bento (bentofile.yaml; `comfypack build PACK` for a pack)
	$(BIN)/bentoml build

base-image:  ## the base image `comfypack containerize` builds on, made locally (Debian + Python 3.11; installs buildah as root)
	bash scripts/base_image.sh

test:  ## every test (unit, integration, e2e, browser) on the default ComfyUI, then on the current line
	bash scripts/test_matrix.sh

test-current:  ## integration, e2e and browser suites on the current ComfyUI line only (.cache/current)
	COMFYPACK_REQUIRE_COMFYUI=1 .cache/current/venv/bin/python -m pytest -q tests/integration tests/e2e tests/browser

test-unit:
	$(BIN)/python -m pytest -q tests/unit

test-integration:
	COMFYPACK_REQUIRE_COMFYUI=1 $(BIN)/python -m pytest -q tests/integration

test-e2e:
	COMFYPACK_REQUIRE_COMFYUI=1 $(BIN)/python -m pytest -q tests/e2e

test-browser:  ## UI → API conversion vs ComfyUI's real frontend (headless Chromium)
	COMFYPACK_REQUIRE_COMFYUI=1 $(BIN)/python -m pytest -q tests/browser

test-container: base-image  ## a pack → OCI image (buildah) → run read-only, non-root, models fetched at start (slow, ~30 GB free disk)
	COMFYPACK_CONTAINER_TESTS=1 COMFYPACK_REQUIRE_COMFYUI=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/container

ui-examples:  ## regenerate examples/workflows/*/workflow.json with ComfyUI's frontend
	$(BIN)/python scripts/make_ui_examples.py

bench:  ## every benchmark; each prints a table with ratios against a baseline from the same run
	$(BIN)/python bench/serve_overhead.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/hash.py

lint:  ## ruff over the whole tree; mypy over everything that ships; the stage layers (import-linter) and declared imports (deptry)
	$(BIN)/ruff check comfypack custom_nodes service scripts tests bench
	$(BIN)/ruff format --check comfypack custom_nodes service scripts tests bench
	$(BIN)/mypy comfypack custom_nodes/comfypack_nodes service scripts --ignore-missing-imports
	$(BIN)/lint-imports --no-cache
	$(BIN)/deptry comfypack
