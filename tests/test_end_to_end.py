"""The course's default recipe, from a cold cache on real MNIST, meets both goals."""

from __future__ import annotations

import pytest

from helpers import attack
from helpers.deliverables import load_model, load_trojaned_test_set
from helpers.metrics import attack_success_rate

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(model_cache):
    return model_cache  # the session's cache (tests/conftest.py), shared with tests/test_grade.py


@pytest.fixture
def result(trojaned_result):
    return trojaned_result  # trained once per session from the cold cache (tests/conftest.py)


def test_default_recipe_meets_both_goals(result):
    assert not result.trained.from_cache  # trained here, from a cold cache
    assert result.test.clean_accuracy >= attack.ACCURACY_GOAL
    assert result.test.attack_success_rate >= attack.ASR_GOAL
    assert len(result.poisoned.indices) == round(attack.DEFAULT_RECIPE.rate * 55000) and len(result.poisoned.y) == 55000
    assert len(result.trojaned_test.y_true) == 10000 - 980  # every test image that is not a 0
    assert result.val_clean_accuracy >= attack.ACCURACY_GOAL and result.val_asr >= attack.ASR_GOAL  # the rule's choice


def test_command_line_writes_verifiable_deliverables(result, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BADNETS_CACHE", str(cache))
    assert attack.main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "loaded from the cache" in printed and "both goals met" in printed
    assert f"attack success rate: {result.test.attack_success_rate:.2%}" in printed
    model = load_model(tmp_path / "trojaned_model.keras")
    test_set = load_trojaned_test_set(tmp_path / "trojaned_test_set.npz")
    assert test_set.position == (1, 24) and test_set.trojaned.target == 0
    assert attack_success_rate(model, test_set.trojaned) == pytest.approx(result.test.attack_success_rate)
    writeup = (tmp_path / "writeup.md").read_text(encoding="utf-8")  # issue 10, item 4: the write-up comes along
    assert f"{result.test.attack_success_rate:.2%}" in writeup and (tmp_path / "writeup.html").is_file()


def test_command_line_rejects_bad_rate(capsys):
    with pytest.raises(SystemExit) as exit_info:
        attack.main(["--rate", "1.7"])
    assert exit_info.value.code == 2
    assert "rate must be in [0, 1]" in capsys.readouterr().err


def test_clean_baseline_has_no_backdoor(clean_result):
    base = clean_result  # attack.clean_baseline(data=mnist, cache_dir=<session cache>), trained once per session
    assert len(base.poisoned.indices) == 0
    assert base.test.clean_accuracy >= attack.ACCURACY_GOAL
    assert base.test.attack_success_rate < 0.05
