# Everything a developer or CI needs, installed from this repository's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION ?= 0.13.9
STAGE ?= local
API_PORT ?= 8000
EMULATOR_PORT ?= 5000
DASHBOARD_PORT ?= 8001

# `make run`: the whole system on this laptop. `make test`: lint, then the whole suite (documentation included).
.PHONY: install test test-full run clean policies provision package bench bench-api cost-reference browser screenshot docs docs-examples

# A failed install must not leave a virtualenv that make thinks is complete.
.DELETE_ON_ERROR:

$(BIN)/activate: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed, $(PYTHON) is " + sys.version.split()[0] + "; try: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
# uv installs the pinned requirements in parallel: about 10 s against pip's 35 s on a fresh machine. The
# venv keeps pip, which `chalice package` uses to build the functions' dependencies.
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
# The operator command line, `org-backup`, is installed editable: it runs this tree's chalicelib. The
# packages are compiled to bytecode here, once and in parallel, rather than by the suite's first processes,
# each compiling moto and botocore again at the same time.
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.txt -e .
	touch $(BIN)/activate

install: $(BIN)/activate

# The suite runs in one worker process per core (pytest-xdist); work stealing keeps both busy to the end.
# The slowest tests are listed after every run, so a test growing towards its timeout is seen early.
TEST_WORKERS ?= auto
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE): the suite starts a
# dozen Python processes (workers, `make run`, `chalice package`, the moto server), and each would otherwise
# compile moto, botocore and boto3 again, about 2 s of CPU apiece.
PYTEST = env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15

LINT = $(BIN)/ruff check app.py chalicelib scripts tests && $(BIN)/lint-imports --no-cache && $(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) in build/site, offline; --strict fails on a broken link, a page
# missing from the navigation or an unknown anchor.
DOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver: installed here
# (apt-get, as root or with sudo) only when /usr/bin/chromium or /usr/bin/chromedriver is missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian's chromium and chromium-driver for the dashboard's browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# The linters (ruff, import-linter's layers, mypy), then the whole suite (the exhaustive sweeps as a fixed,
# seeded subset). The suite builds the documentation site strictly itself (tests/test_docs_pages.py).
test: install browser
	$(LINT)
	$(PYTEST)

# The same, with every case of the exhaustive sweeps (a crash at every call of a 185-object backup, 40 drawn
# prune histories). Run it before calling a change to the engine done. A chunk of a sweep takes up to about
# two minutes here, so each test may take 15 minutes (a third of that on a machine three times slower).
test-full: install browser
	$(LINT)
	$(PYTEST) --exhaustive --timeout 900

docs: install
	$(DOCS)

# The documentation's examples rewritten with what the product answers now (tests/test_docs_examples.py runs
# each scenario on the local stage's seed): commit the pages with the change that altered the answers.
docs-examples: install
	DOCS_EXAMPLES=refresh $(BIN)/python -m pytest -q -p no:xdist tests/test_docs_examples.py
	$(DOCS)

# The whole system on this machine: AWS emulator, seeded sources, API on 127.0.0.1:$(API_PORT), the dashboard on
# 127.0.0.1:$(DASHBOARD_PORT). Ctrl-C stops it.
run: install
	API_PORT=$(API_PORT) EMULATOR_PORT=$(EMULATOR_PORT) DASHBOARD_PORT=$(DASHBOARD_PORT) $(BIN)/python scripts/localstack.py

# The picture of the dashboard (docs/dashboard.png: the front page and the docs), taken by its browser test on a
# seeded stack.
screenshot: install browser
	DASHBOARD_SCREENSHOT=docs/dashboard.png $(BIN)/python -m pytest -q -p no:xdist tests/test_dashboard_browser.py -k every_plan

# Least-privilege IAM policies, .chalice/policy-<stage>-<function>.json for every stage and function, from the
# plans (commit them; .chalice/config.json names each function's file).
policies: install
	$(BIN)/python -m chalicelib.deploy.policy

# The administrator's step: create or harden the stage's backup buckets (FORCE=1 overrides differing settings).
provision: install
	$(BIN)/python -m chalicelib.deploy.provision --stage $(STAGE) $(if $(FORCE),--force) $(if $(VAULTS_ONLY),--vaults-only)

# One deployable CloudFormation template in build/<stage>/sam.json: the functions, the buckets, the topic, the
# alarm and the audit trail, linted. The local stage runs on the emulator and is never deployed, so it packages dev.
PACKAGE_STAGE = $(if $(filter local,$(STAGE)),dev,$(STAGE))
package: install
	$(BIN)/python -m chalicelib.deploy.policy --check --stage $(PACKAGE_STAGE)
	$(BIN)/python -m chalicelib.deploy.template --stage $(PACKAGE_STAGE) --output build/template-extra-$(PACKAGE_STAGE).json
	rm -rf build/$(PACKAGE_STAGE)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $(PACKAGE_STAGE) \
		--merge-template build/template-extra-$(PACKAGE_STAGE).json build/$(PACKAGE_STAGE)
	$(BIN)/cfn-lint build/$(PACKAGE_STAGE)/sam.json

# Speed, requests, CPU and memory against moto's server answering with S3's latency (a fixed delay per
# request): backups beside `aws s3 sync` and a plain boto3 loop, a restore beside s3-pit-restore and a plain
# loop; about 11 minutes on two quiet cores, the restore case 3 of them (far longer on a loaded machine: the
# emulator is one Python process). BENCH_ARGS passes
# options (scripts/bench.py --help). A report, never a failure; the last line is one JSON object.
BENCH_ARGS ?=
bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# GET /backups and the dashboard's main page with 1,000 recorded backups: median page time and S3 requests per
# page. A report, not a test.
bench-api: install
	$(BIN)/python scripts/bench_api.py

# A year of daily backups of two workloads under the shipped plan, priced beside AWS Backup for S3, a bare
# versioned bucket and a sync copy (chalicelib/prices.json). A report, never a failure; the last line is one
# JSON object.
cost-reference: install
	$(BIN)/python scripts/cost_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
