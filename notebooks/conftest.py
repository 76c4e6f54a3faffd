"""nbval, comparing numbers at the precision that reproduces across machines.

nbval compares a lesson's fresh outputs with the committed ones as text. Most
outputs are exact on every machine (data, counts, shapes, hashes, the rule's
wording), and those stay exact. A trained model's metrics are not: another CPU
(AVX2 or AVX-512, oneDNN on or off, other thread counts, a GPU) rounds
differently at every training step, so an accuracy printed as 98.95 % here
can be 98.97 % there.

A cell whose output holds such numbers states its tolerance in its metadata::

    "nbval": {"approx": {"abs": 0.3, "rel": 0.0}}

and its output then matches when the text is the same once numbers are taken
out (runs of spaces count as one, so column padding may shift) and every number
is within ``abs + rel * |committed|`` of the committed one, in the units it is
printed in (0.3 means 0.3 percentage points for ``98.95%``). Everything else
about the comparison is nbval's own. The lessons' key numbers are checked
again, each with its own tolerance, against ``results/*.json``
(:mod:`helpers.results`).
"""

from __future__ import annotations

import re

from nbval.plugin import IPyNbCell

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TEXT_KEYS = ("text/plain", "text/markdown", "text/html", "text/latex")


def approx_settings(cell) -> tuple[float, float] | None:
    """``(abs, rel)`` from the cell's ``nbval.approx`` metadata, or None for an exact comparison."""
    spec = cell.get("metadata", {}).get("nbval", {}).get("approx")
    if spec is None:
        return None
    return float(spec.get("abs", 0.0)), float(spec.get("rel", 0.0))


def skeleton(text: str) -> str:
    """``text`` with every number replaced by ``#`` and runs of blanks squeezed."""
    return re.sub(r"[ \t]+", " ", NUMBER.sub("#", text))


def approx_equal(reference: str, fresh: str, abs_tol: float, rel_tol: float) -> bool:
    """Same text apart from numbers, and every number within ``abs_tol + rel_tol * |reference|``."""
    if skeleton(reference) != skeleton(fresh):
        return False
    ref_numbers = [float(n) for n in NUMBER.findall(reference)]
    new_numbers = [float(n) for n in NUMBER.findall(fresh)]
    return len(ref_numbers) == len(new_numbers) and all(
        abs(a - b) <= abs_tol + rel_tol * abs(a) + 1e-9 for a, b in zip(ref_numbers, new_numbers)
    )


def _join(value):
    return "".join(value) if isinstance(value, list) else value


_nbval_compare = IPyNbCell.compare_outputs


def compare_outputs(self, test, ref, skip_compare=None):
    """nbval's comparison, after replacing each fresh text that is approximately equal by the committed one."""
    settings = approx_settings(self.cell)
    if settings is None:
        return _nbval_compare(self, test, ref, skip_compare)
    for new, old in zip(test, ref):  # both already coalesced by nbval: one stream output per run of prints
        if new.get("output_type") != old.get("output_type") or new.get("name") != old.get("name"):
            continue
        if "text" in new and "text" in old:
            a, b = self.sanitize(_join(old["text"])), self.sanitize(_join(new["text"]))
            if approx_equal(a, b, *settings):
                new["text"] = old["text"]
        for key in TEXT_KEYS:
            if key in new.get("data", {}) and key in old.get("data", {}):
                a, b = self.sanitize(_join(old["data"][key])), self.sanitize(_join(new["data"][key]))
                if approx_equal(a, b, *settings):
                    new["data"][key] = old["data"][key]
    return _nbval_compare(self, test, ref, skip_compare)


IPyNbCell.compare_outputs = compare_outputs
