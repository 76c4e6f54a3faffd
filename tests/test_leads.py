"""The clean-label leads (helpers.leads): the committed results/clean_label_leads.json, ART's metric, and one lead
recomputed against the committed file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import leads


def test_committed_leads_have_every_lead_and_provenance():
    raw = leads.load_leads()
    assert set(raw["leads"]) == set(leads.LEADS)
    prov = raw["provenance"]
    assert prov["victim_epochs"] == leads.VICTIM_EPOCHS and prov["pgd"]["eps"] == 5.0
    assert prov["versions"]["tensorflow"] and prov["machine"]["simd_flags"]
    for row in raw["leads"].values():
        assert row["misread"] >= row["asr"] and row["n_poisoned"] > 0
    assert raw["leads"]["small-victim"]["n_poisoned"] < raw["leads"]["pattern"]["n_poisoned"]  # a third of fewer zeros


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["leads"].pop("blend"), None),
    (lambda d: d["leads"]["pattern"].update(asr=1.5), "fraction"),
    (lambda d: d["leads"]["pattern"].update(misread=0.0, asr=0.5), "impossible"),
    (lambda d: d["leads"].update(other=d["leads"]["pattern"]), "must be one of"),
    (lambda d: d.pop("provenance"), "provenance"),
])
def test_load_leads_rejects_edited_files(tmp_path, edit, words):
    raw = json.loads(leads.LEADS_FILE.read_text())
    edit(raw)
    path = tmp_path / "leads.json"
    path.write_text(json.dumps(raw))
    if words is None:  # a missing lead is allowed by the reader; the committed-file test insists on all of them
        assert set(leads.load_leads(path)["leads"]) == set(leads.LEADS) - {"blend"}
        return
    with pytest.raises(ValueError, match=words):
        leads.load_leads(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable"):
        leads.load_leads(tmp_path / "bad.json")


def test_run_lead_rejects_an_unknown_lead():
    with pytest.raises(ValueError, match="lead"):
        leads.run_lead("bigger-budget")


def test_misread_rate_counts_every_wrong_reading_so_it_bounds_the_asr():
    from helpers.poisoning import TrojanedSet

    def fixed(x, training=False):  # a stand-in model: answers 0 for the first half of a batch, 5 for the rest
        out = np.zeros((len(x), 10), np.float32)
        out[: len(x) // 2, 0] = 1
        out[len(x) // 2 :, 5] = 1
        return out

    x = np.zeros((8, 28, 28), np.uint8)
    y_true = np.array([1, 2, 3, 5, 5, 5, 7, 8], np.uint8)
    t = TrojanedSet(x, y_true, np.zeros(8, np.uint8), np.arange(8), 0, "all-to-one")
    rate = leads.misread_rate(fixed, t)
    assert rate == pytest.approx(6 / 8)  # the four read as 0 are all misread; of the four read as 5, two are 5s


@pytest.mark.slow
def test_the_small_victim_lead_recomputes_within_tolerance(tmp_path):
    committed = leads.load_leads()["leads"]["small-victim"]
    fresh = leads.run_lead("small-victim", cache_dir=tmp_path)  # a fresh cache: computed, not read back
    assert fresh["n_poisoned"] == committed["n_poisoned"]
    for key, tol in leads.LEAD_TOLERANCE.items():
        assert abs(fresh[key] - committed[key]) <= tol, (key, committed[key], fresh[key])
