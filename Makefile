# Two commands: `make demo` and `make test`. Each creates .venv on a fresh machine and installs
# the exact versions in requirements.lock (regenerate it with `make lock`).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
PIP_VERSION := 26.3
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install lock clean

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q pip==$(PIP_VERSION)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunesmith demo

test: $(STAMP)
	$(PY) -m pytest -q

# Re-resolve every package (transitive ones included) to the newest releases pyproject.toml's
# ranges allow, with torch pinned to the CPU wheel; commit the result.
lock:
	python3 -m pip install -q uv
	python3 -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --find-links /opt/wheels \
	  --constraint scripts/lock-constraints.txt --upgrade \
	  --output-file $(LOCK)

clean:
	rm -rf $(VENV) runs
