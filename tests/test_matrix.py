"""The detection matrix (helpers.matrix): the committed results/detection_matrix.json and one row recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import matrix


def test_committed_matrix_has_every_cell_and_consistent_verdicts():
    mx = matrix.load_matrix()  # checks every verdict against its cell
    assert set(mx["cells"]) == set(matrix.ATTACKS)
    assert all(set(row) == set(matrix.DEFENCES) for row in mx["cells"].values())
    assert set(v for row in mx["verdicts"].values() for v in row.values()) <= {"caught", "missed", "false alarm", "quiet"}
    assert set(mx["verdicts"]["none"].values()) <= {"false alarm", "quiet"}  # nothing to catch on the clean model
    prov = mx["provenance"]
    assert prov["rate"] == matrix.MATRIX_RATE and prov["versions"]["tensorflow"] and prov["machine"]["simd_flags"]
    for row in mx["cells"].values():
        for cell in row.values():
            for key, value in cell.items():
                if key in ("far", "frr", "precision", "recall", "flagged_fraction", "asr_after", "asr_before",
                           "clean_accuracy_after"):
                    assert 0.0 <= value <= 1.0, (key, value)


def test_load_matrix_rejects_an_edited_verdict_and_a_missing_cell(tmp_path):
    good = json.loads(matrix.MATRIX_FILE.read_text())
    edited = json.loads(json.dumps(good))
    a, d = "pattern", "STRIP"
    edited["verdicts"][a][d] = "missed" if good["verdicts"][a][d] == "caught" else "caught"
    missing = json.loads(json.dumps(good))
    del missing["cells"]["blend"]["fine-pruning"]
    for name, obj in (("edited", edited), ("missing", missing)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(obj))
        with pytest.raises(ValueError):
            matrix.load_matrix(path)
    (tmp_path / "bad.json").write_text("[")
    with pytest.raises(ValueError, match="not a readable"):
        matrix.load_matrix(tmp_path / "bad.json")


@pytest.mark.parametrize("attack, defence, cell, verdict", [
    ("L", "STRIP", {"far": 0.01, "frr": 0.018}, "caught"),
    ("L", "STRIP", {"far": 0.3, "frr": 0.01}, "missed"),
    ("none", "STRIP", {"far": 1.0, "frr": 0.03}, "false alarm"),
    ("blend", "activation clustering", {"precision": 1.0, "recall": 0.0, "flagged": 0, "flagged_fraction": 0.0}, "missed"),
    ("none", "spectral signatures", {"precision": 0.0, "recall": 0.0, "flagged": 9000, "flagged_fraction": 0.16},
     "false alarm"),
    ("L", "fine-pruning", {"asr_after": 0.02, "clean_accuracy_after": 0.988}, "caught"),
    ("L", "Neural Cleanse", {"flags": [1] + [0] * 9}, "caught"),
    ("L", "Neural Cleanse", {"flags": [1, 1] + [0] * 8}, "missed"),
    ("all-to-all", "Neural Cleanse", {"flags": [0, 0, 1] + [0] * 7}, "caught"),
    ("none", "Neural Cleanse", {"flags": [0] * 10}, "quiet"),
])
def test_verdict_rules(attack, defence, cell, verdict):
    target = None if attack in ("all-to-all", "none") else 0
    assert matrix.verdict(attack, defence, cell, target) == verdict


@pytest.mark.slow
def test_the_pattern_row_recomputes_within_tolerance(tmp_path):
    committed = matrix.load_matrix()
    v = matrix.victim("pattern")
    for d in matrix.DEFENCES:
        fresh = matrix.run_cell(v, d, cache_dir=tmp_path)  # a fresh cache: computed, not read back
        ref = committed["cells"]["pattern"][d]
        for key, value in ref.items():
            if key == "seconds":
                continue
            if key in ("flagged", "n_pruned"):  # counts: within the tolerance of the set they count
                scale = 55_000 if key == "flagged" else 512
                assert abs(fresh[key] - value) <= matrix.CELL_TOLERANCE * scale, (d, key, value, fresh[key])
            elif key in ("flags", "n_flagged"):
                assert np.array_equal(fresh[key], value), (d, key)
            else:
                assert abs(fresh[key] - value) <= matrix.CELL_TOLERANCE, (d, key, value, fresh[key])
