# The single entry point. A fresh machine needs only Python 3 (3.10-3.13);
# the slides also need npm once (to fetch reveal.js & co.) and the slides test needs chromium.
#   make series   set up, run every lesson top to bottom, refresh figures/, render slides/, print a summary
#   make test     set up, then run every test: pytest (helpers, results, slides), then nbval (every lesson,
#                 on another numeric path: oneDNN limited to AVX2); make test-onednn-off: nbval with oneDNN off
#   make lab      open the lessons in JupyterLab
#   make attack   just the default attack, end to end, deliverables in artifacts/
#   make slides   just render the slides from the committed lessons; make present: serve them for a lecture
#   make student  the student edition (student/); make instructor: regenerate the instructor guide (instructor/)
#   make grid     BadNets' 90 single-target attacks on Ray (local workers, or $RAY_ADDRESS): results/grid.json
#   make matrix   every defence against every attack and a clean model: results/detection_matrix.json
#   make leads    the clean-label attack's leads, one change from ART's setting at a time: results/clean_label_leads.json
#   make bench    measure training speed and memory, and the series' wall time
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout=1800

.PHONY: setup series test test-onednn-off lab attack grid matrix leads slides bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

series: setup
	$(PY) scripts/run_series.py

# nbval runs on another numeric path than the one that committed the lessons (oneDNN limited to AVX2; the lessons
# were committed on an AVX-512 machine), with its own model cache, and writes its fresh key numbers and figures to
# scratch folders: results/ and figures/ stay the reference. `make test-onednn-off` does the same with oneDNN off
# (TensorFlow's own kernels: another numeric path again, about twice as slow to train).
SCRATCH = BADNETS_RESULTS_DIR=$(CURDIR)/.cache/results-fresh BADNETS_FIGURES_DIR=$(CURDIR)/.cache/figures-fresh
AVX2 := TF_ENABLE_ONEDNN_OPTS=1 ONEDNN_MAX_CPU_ISA=AVX2 BADNETS_CACHE=$(CURDIR)/.cache/models-avx2 $(SCRATCH)
ONEDNN_OFF := TF_ENABLE_ONEDNN_OPTS=0 BADNETS_CACHE=$(CURDIR)/.cache/models-onednn-off $(SCRATCH)

test: setup
	$(PY) -m pytest tests
	$(AVX2) $(PY) -m pytest notebooks $(NBVAL)

test-onednn-off: setup
	$(ONEDNN_OFF) $(PY) -m pytest notebooks $(NBVAL)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

attack: setup
	$(PY) -m helpers.attack --out artifacts

grid: setup
	$(PY) scripts/run_grid.py

matrix: setup
	$(PY) scripts/run_matrix.py

leads: setup
	$(PY) -m helpers.leads

slides: setup
	$(PY) scripts/render_slides.py

bench: setup
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_series.py
	$(PY) benchmarks/bench_defences.py

clean:
	rm -rf .cache artifacts slides student .pytest_cache .hypothesis

# the instructor guide (instructor/*.md), generated from results/, benchmarks/results/ and the committed lessons
.PHONY: instructor
instructor: setup
	$(PY) scripts/make_instructor.py

# the student edition, student/: the lessons with each exercise's solution replaced by a scaffold (docstring, TODO,
# NotImplementedError), helpers/ and a README; instructor/ and its hidden tests stay out
.PHONY: student
student: setup
	$(PY) scripts/make_student.py

# present the rendered decks (their sliders switch in the browser, no kernel needed) on http://127.0.0.1:8000/;
# for live code, `make lab` with View > Presentation Mode (README: "Presenting with a live kernel")
.PHONY: present
present: slides
	@echo "decks: http://127.0.0.1:8000/ (Ctrl-C to stop)"
	$(PY) -m http.server --bind 127.0.0.1 --directory slides 8000

# the README's screenshots (figures/screenshots/), taken from the real decks in Debian's chromium
.PHONY: screenshots
screenshots: setup
	$(PY) scripts/screenshots.py
