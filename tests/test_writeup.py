"""The write-up deliverable (issue 10, item 4): one page from the measured numbers only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import attack
from helpers.results import read_results, reference_path
from helpers.writeup import render_html, render_markdown, write_writeup, writeup_blocks


def test_renderers_escape_and_keep_every_block():
    blocks = [("h1", "T <1>"), ("p", "a & b"), ("table", ("m", "v"), [("<x>", "1.00%")]), ("img", "fig", "../f/a b.png")]
    md, page = render_markdown(blocks), render_html(blocks)
    assert md.splitlines()[0] == "# T <1>" and "| <x> | 1.00% |" in md and "![fig](../f/a b.png)" in md
    assert "<h1>T &lt;1&gt;</h1>" in page and "<p>a &amp; b</p>" in page and "<td>&lt;x&gt;</td>" in page
    assert '<img src="../f/a b.png"' in page and "<script" not in page


def test_writeup_blocks_rejects_what_is_not_a_result():
    with pytest.raises(TypeError, match="result must be an AttackResult"):
        writeup_blocks({"clean_accuracy": 0.99})


@pytest.mark.slow
def test_writeup_states_measured_numbers_the_rate_and_its_rule(trojaned_result, tmp_path, monkeypatch):
    r = trojaned_result
    chosen = read_results(reference_path("03_poisoning_rate_sweep"))["chosen_rate"]  # lesson 3's recorded choice
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "03_rate_sweep.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setenv("BADNETS_FIGURES_DIR", str(figures))
    files = write_writeup(r, tmp_path / "out")
    md = files.markdown.read_text(encoding="utf-8")
    page = files.html.read_text(encoding="utf-8")
    for text in (md, page):
        assert f"{r.test.clean_accuracy:.2%}" in text and f"{r.test.attack_success_rate:.2%}" in text
        assert f"{r.val_clean_accuracy:.2%}" in text and f"{r.val_asr:.2%}" in text
        assert f"{r.recipe.rate:.2%}" in text and "smallest poisoning rate" in text and "validation split" in text
        assert f"{len(r.trojaned_test.y_true)} test images whose true label is not 0" in text
        assert "Both goals: met." in text  # the default recipe meets both (test_end_to_end checks the numbers)
        assert f"chose {chosen:.2%}" in text and ("the rate used here" in text) == (chosen == r.recipe.rate)
    assert "![" in md and "](../figs/03_rate_sweep.png)" in md  # a link relative to the write-up
    assert (files.markdown.parent / "../figs/03_rate_sweep.png").resolve() == (figures / "03_rate_sweep.png").resolve()
    assert len(md.split()) < 600  # one page

    monkeypatch.setenv("BADNETS_FIGURES_DIR", str(tmp_path / "no-figures"))
    md = write_writeup(r, tmp_path / "out").markdown.read_text(encoding="utf-8")
    assert "![" not in md and f"{r.test.attack_success_rate:.2%}" in md  # no figure: no link, same numbers


@pytest.mark.slow
def test_export_deliverables_returns_the_writeup(trojaned_result, tmp_path):
    paths = attack.export_deliverables(trojaned_result, tmp_path)
    assert set(paths) == {"model", "test_set", "writeup", "writeup_html"}
    assert paths["writeup"] == tmp_path / "writeup.md" and paths["writeup_html"] == tmp_path / "writeup.html"
    assert f"{trojaned_result.test.clean_accuracy:.2%}" in paths["writeup"].read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files behind


@pytest.mark.slow
def test_make_attack_writes_the_writeup(trojaned_result, model_cache, tmp_path):
    """`make attack` runs `python -m helpers.attack` (the module as __main__): it must write the write-up too."""
    env = {**os.environ, "BADNETS_CACHE": str(model_cache)}  # the session's trained model: loaded, not retrained
    done = subprocess.run([sys.executable, "-m", "helpers.attack", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded from the cache" in done.stdout and f"wrote writeup: {tmp_path / 'writeup.md'}" in done.stdout
    md = (tmp_path / "writeup.md").read_text(encoding="utf-8")
    assert f"{trojaned_result.test.attack_success_rate:.2%}" in md and (tmp_path / "writeup.html").is_file()
