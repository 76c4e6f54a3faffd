"""The autograder (issue 10, item 3): hostile submissions are refused before loading, honest ones are measured.

The slow tests grade one folder of crafted submissions in ONE command-line run (each grading subprocess imports
TensorFlow) and check every row; two more short runs check the wall-clock and memory limits.
"""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import attack, grade
from helpers.deliverables import export_model, load_trojaned_test_set
from helpers.grade import SubmissionRefused, check_config, inspect_keras_archive

# ---------------------------------------------------------------- crafted archives (zipfile only, no Keras)

LAYER = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
         "config": {"name": "fc", "units": 10, "activation": "softmax",
                    "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                           "config": {"seed": None}, "registered_name": None},
                    "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                              "registered_name": None}}}


def model_config(*layers) -> dict:
    inp = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
           "config": {"batch_shape": [None, 28, 28, 1], "name": "image"}}
    flat = {"module": "keras.layers", "class_name": "Flatten", "registered_name": None, "config": {"name": "flatten"}}
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "m", "layers": [inp, flat, *(layers or (LAYER,))]}}


def make_archive(path: Path, config=None, members=None, compression=zipfile.ZIP_STORED) -> Path:
    """A .keras-shaped zip: metadata.json, config.json (``config`` or a plain model), a small weights member."""
    members = dict(members) if members is not None else {
        "metadata.json": b'{"keras_version": "3.15.1"}',
        "config.json": json.dumps(model_config() if config is None else config).encode(),
        "model.weights.h5": bytes(range(256)) * 16,
    }
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_inspector_accepts_a_plain_keras_archive(tmp_path):
    report = inspect_keras_archive(make_archive(tmp_path / "m.keras"))
    assert report.members == ("metadata.json", "config.json", "model.weights.h5")
    assert report.classes == ("DTypePolicy", "Dense", "Flatten", "GlorotUniform", "InputLayer", "Sequential")
    assert len(report.sha256) == 64


@pytest.mark.slow
def test_inspector_accepts_the_course_model_format(trojaned_model_file):
    report = inspect_keras_archive(trojaned_model_file)
    assert {"Sequential", "Conv2D", "AveragePooling2D", "Dense"} <= set(report.classes)


@pytest.mark.parametrize("layer, match", [
    ({"module": "keras.layers", "class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}},
     "'Lambda', which is not a plain Keras layer"),
    ({"module": "my_package", "class_name": "Dense", "config": {}}, "module 'my_package'"),
    ({"module": "os", "class_name": "Dense", "config": {}}, "module 'os'"),
    ({"module": "keras.layers", "class_name": "Dense", "registered_name": "my_package>Dense", "config": {}},
     "registered as 'my_package>Dense', a custom object"),
    ({"module": "keras.layers", "class_name": "MyLayer", "config": {}}, "'MyLayer'"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {"activation": "evil>fn"}}, "activation 'evil>fn'"),
    ({"module": "keras.layers", "class_name": "Activation",
      "config": {"activation": {"module": "builtins", "class_name": "function", "config": "exec"}}}, "'function'"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {"function": "x"}}, "carries a Python function"),
])
def test_config_check_refuses_code_and_custom_objects(layer, match):
    with pytest.raises(SubmissionRefused, match=match):
        check_config(model_config(layer))


def test_config_check_refuses_deep_nesting_and_non_models():
    deep = model_config()
    node = deep["config"]
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(SubmissionRefused, match="nested deeper than"):
        check_config(deep)
    for bad in ([], {"config": {}}, "Sequential"):
        with pytest.raises(SubmissionRefused, match="no top-level class_name"):
            check_config(bad)


def test_inspector_refuses_hostile_files(tmp_path):
    def refused(path, match):
        with pytest.raises(SubmissionRefused, match=match):
            inspect_keras_archive(path)

    good = make_archive(tmp_path / "good.keras").read_bytes()
    refused(make_archive(tmp_path / "m.h5"), "not a .keras file")
    (tmp_path / "pickle.keras").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    refused(tmp_path / "pickle.keras", "looks like a Python pickle")
    (tmp_path / "hdf5.keras").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    refused(tmp_path / "hdf5.keras", r"looks like an HDF5 \(.h5\) file")
    (tmp_path / "empty.keras").write_bytes(b"")
    refused(tmp_path / "empty.keras", "is empty")
    (tmp_path / "truncated.keras").write_bytes(good[: len(good) // 2])
    refused(tmp_path / "truncated.keras", "not a readable zip archive")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside model.weights.h5's data: the CRC no longer matches
    (tmp_path / "crc.keras").write_bytes(bytes(flipped))
    refused(tmp_path / "crc.keras", "not a readable zip archive")
    members = {"config.json": json.dumps(model_config()).encode()}
    refused(make_archive(tmp_path / "many.keras", members={**members, **{f"assets/{i}": b"" for i in range(40)}}),
            "holds 41 members")
    refused(make_archive(tmp_path / "noconfig.keras", members={"metadata.json": b"{}", "model.weights.h5": b"x"}),
            "no config.json")
    refused(make_archive(tmp_path / "slip.keras", members={**members, "assets/../../etc/x": b""}), "unsafe name")
    refused(make_archive(tmp_path / "extra.keras", members={**members, "payload.pkl": b""}), "not part of a .keras")
    refused(make_archive(tmp_path / "badjson.keras", members={"config.json": b"{not json"}), "not valid JSON")
    refused(make_archive(tmp_path / "lambda.keras", config=model_config(
        {"module": "keras.layers", "class_name": "Lambda", "config": {}})), "'Lambda'")
    (tmp_path / "link.keras").symlink_to(tmp_path / "good.keras")
    refused(tmp_path / "link.keras", "symbolic link")
    (tmp_path / "dir.keras").mkdir()
    refused(tmp_path / "dir.keras", "not a regular file")
    refused(tmp_path / "missing.keras", "is missing")


def test_inspector_refuses_zip_bombs(tmp_path):
    members = {"config.json": json.dumps(model_config()).encode()}
    bomb = make_archive(tmp_path / "bomb.keras", members={**members, "model.weights.h5": bytes(20 << 20)},
                        compression=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 100_000  # 20 MiB of zeros in a few kB
    with pytest.raises(SubmissionRefused, match=r"compressed \d+ to 1 .*a zip bomb"):
        inspect_keras_archive(bomb)
    huge = tmp_path / "huge.keras"
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", members["config.json"])
        with zf.open("model.weights.h5", "w", force_zip64=True) as f:
            for _ in range(grade.MAX_MEMBER_BYTES // (1 << 20) + 1):
                f.write(bytes(1 << 20))
    with pytest.raises(SubmissionRefused, match="would unpack to .* bytes, more than"):
        inspect_keras_archive(huge)


def test_inspector_catches_a_member_that_lies_about_its_size(tmp_path):
    path = make_archive(tmp_path / "liar.keras")
    data = bytearray(path.read_bytes())
    size = zipfile.ZipFile(path).getinfo("model.weights.h5").file_size
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(b"model.weights.h5"))  # its central-directory entry
    assert data[entry + 24:entry + 28] == size.to_bytes(4, "little")  # its declared unpacked size
    data[entry + 24:entry + 28] = (size // 2).to_bytes(4, "little")  # declared half: reading stops early, CRC fails
    path.write_bytes(bytes(data))
    with pytest.raises(SubmissionRefused, match="not a readable zip archive"):
        inspect_keras_archive(path)


def test_links_and_bad_writeups_are_refused_without_starting_a_worker(tmp_path):
    """Refusals that need no subprocess: a linked model or folder, a fake PDF, an empty write-up."""
    real = tmp_path / "real"
    real.mkdir()
    make_archive(real / "model.keras")
    subs = tmp_path / "subs"
    (subs / "linked_model").mkdir(parents=True)
    (subs / "linked_model" / "model.keras").symlink_to(real / "model.keras")
    (subs / "linked_model" / "writeup.pdf").write_bytes(b"<html>not a pdf</html>")
    (subs / "linked_folder").symlink_to(real)
    (subs / "empty_writeup").mkdir()
    (subs / "empty_writeup" / "writeup.md").write_text("")
    no_eval = tmp_path / "never-read.npz"  # every case is refused before the worker would read it
    g = {p.name: grade.grade_submission(p, no_eval, timeout=10, memory_mb=1024) for p in sorted(subs.iterdir())}
    assert g["linked_model"].reason == ("refused: model.keras is a symbolic link; links are refused (hand in the file "
                                        "itself); writeup.pdf is not a PDF (it does not start with %PDF-)")
    assert g["linked_model"].writeup is None and not g["linked_model"].passed
    assert grade.find_writeup(subs / "linked_model") == (None, "writeup.pdf is not a PDF (it does not start with %PDF-)")
    assert g["linked_folder"].reason == "refused: the submission folder is a symbolic link; links are refused"
    assert g["empty_writeup"].reason == ("refused: no model.keras: only the Keras 3 .keras format is accepted (never "
                                         "HDF5 .h5 or pickle); writeup.md is empty")
    assert grade.find_writeup(subs / "empty_writeup") == (None, "writeup.md is empty")
    assert not no_eval.exists()


def test_csv_and_html_neutralise_student_strings():
    g = [grade.Grade("=HYPERLINK(\"x\")", None, None, False, "refused: <script>alert(1)</script>"),
         grade.Grade("<img src=x onerror=alert(1)>", 0.99, 0.995, True, "ok", "writeup.md")]
    rows = list(csv.reader(grade.grades_csv(g).splitlines()))
    assert rows[0] == ["submission", "clean_accuracy", "attack_success_rate", "passed", "reason"]
    assert rows[1][0] == "'=HYPERLINK(\"x\")" and rows[1][1:4] == ["", "", "false"]
    assert rows[2][1:5] == ["0.990000", "0.995000", "true", "ok"]
    ev = grade.EvalSet(np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8), np.zeros((2, 28, 28), np.uint8),
                       np.zeros(2, np.uint8), 0, (1, 24), "<b>src</b>")
    page = grade.report_html(g, ev, timeout=10, memory_mb=1024)
    assert "<script>" not in page and "<img src=x" not in page and "<b>src" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "1 of 2 submissions passed; 1 could not be measured" in page
    assert "<img" not in page and "http" not in page and "<link" not in page  # nothing to fetch: works offline


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout must be in (0, 3600]"),
    (["--timeout", "nan"], "--timeout must be in (0, 3600]"),
    (["--timeout", "-5"], "--timeout must be in (0, 3600]"),
    (["--timeout", "soon"], "--timeout must be a number of seconds, got 'soon'"),
    (["--memory-mb", "100"], "--memory-mb must be in [512,"),
    (["--memory-mb", "1.5"], "--memory-mb must be a whole number"),
])
def test_command_line_rejects_bad_limits(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        grade.main([str(tmp_path), "--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_command_line_rejects_bad_folders(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "subs").mkdir()
    cases = [([str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "does not exist"),
             ([str(tmp_path / "file"), "--out", str(tmp_path / "o")], "is not a folder"),
             ([str(tmp_path), "--out", str(tmp_path / "file")], "is a file, not a folder"),
             ([str(tmp_path), "--out", str(tmp_path / "reports")], "must not be inside SUBMISSIONS_DIR"),
             ([str(tmp_path / "subs"), "--out", str(tmp_path / "o"), "--trojaned-test-set", str(tmp_path / "t.npz")],
              "--trojaned-test-set " + repr(str(tmp_path / "t.npz")) + " is not a file")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            grade.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path)])  # --out is required
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------- real models, graded in a subprocess

@pytest.fixture(scope="module")
def deliverables(trojaned_result, tmp_path_factory):
    return attack.export_deliverables(trojaned_result, tmp_path_factory.mktemp("deliverables"))


@pytest.fixture(scope="module")
def trojaned_model_file(deliverables):
    return deliverables["model"]


def lambda_model(marker: Path):
    """A model whose Lambda layer writes ``marker`` whenever it runs (building it here runs it once)."""
    import keras

    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('code ran'), x)[1]"
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(eval(code)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


@pytest.fixture(scope="module")
def graded(trojaned_result, clean_result, deliverables, tmp_path_factory):
    """Grade a folder of crafted submissions in one command-line run; return (rows by name, report dir, marker)."""
    import keras

    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    marker = root / "lambda_ran.txt"

    def submission(name, model=None, writeup="# My write-up\n", model_bytes=None, model_name="model.keras"):
        folder = subs / name
        folder.mkdir(parents=True)
        if model is not None:
            export_model(model, folder / "model.keras")
        if model_bytes is not None:
            (folder / model_name).write_bytes(model_bytes)
        if writeup is not None:
            (folder / "writeup.md").write_text(writeup)
        return folder

    honest = deliverables["model"].read_bytes()
    submission("honest", model_bytes=honest)
    submission("clean", clean_result.model)
    submission("honest_no_writeup", model_bytes=honest, writeup=None)
    submission("pdf_writeup", model_bytes=honest, writeup=None)
    (subs / "pdf_writeup" / "writeup.pdf").write_bytes(b"%PDF-1.4\n%fake but well-formed enough\n")
    lam = submission("lambda", lambda_model(marker))
    marker.unlink()  # building the model ran the lambda once, here; the grader must never run it
    keras.saving.load_model(lam / "model.keras", safe_mode=False)  # proof that the file carries live code...
    assert marker.read_text() == "code ran"
    marker.unlink()  # ...which the grader must not run
    submission("truncated", model_bytes=honest[: len(honest) // 3])
    bomb = root / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        with zipfile.ZipFile(deliverables["model"]) as src:
            zf.writestr("config.json", src.read("config.json"))
            zf.writestr("metadata.json", src.read("metadata.json"))
        zf.writestr("model.weights.h5", bytes(50 << 20))
    submission("zip_bomb", model_bytes=bomb.read_bytes())
    submission("wrong_input", keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(),
                                                keras.layers.Dense(10, activation="softmax")]))
    submission("h5", model_bytes=b"\x89HDF\r\n\x1a\n" + bytes(2000), model_name="model.h5")
    submission("pickle_renamed", model_bytes=pickle.dumps(object))
    submission("<img src=x onerror=alert('x')>", model_bytes=honest)
    (subs / "notes.txt").write_text("not a submission")  # a plain file: not graded

    report = root / "report"
    assert grade.main([str(subs), "--out", str(report), "--trojaned-test-set", str(deliverables["test_set"])]) == 0
    with open(report / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["submission"]: r for r in rows}, report, marker, [r["submission"] for r in rows]


@pytest.mark.slow
def test_every_submission_gets_one_row_sorted_with_the_exact_columns(graded):
    rows, report, _, order = graded
    assert order == sorted(order) and len(order) == 11 and "notes.txt" not in rows
    header = (report / "grades.csv").read_text().splitlines()[0]
    assert header == "submission,clean_accuracy,attack_success_rate,passed,reason"
    assert not list(report.glob(".*"))  # written atomically: no temporary files left


@pytest.mark.slow
def test_honest_trojaned_model_passes_with_its_measured_numbers(graded, trojaned_result):
    rows, *_ = graded
    for name in ("honest", "pdf_writeup"):
        row = rows[name]
        assert row["passed"] == "true" and row["reason"] == "ok", row
        assert float(row["clean_accuracy"]) == pytest.approx(trojaned_result.test.clean_accuracy, abs=1e-6)
        assert float(row["attack_success_rate"]) == pytest.approx(trojaned_result.test.attack_success_rate, abs=1e-6)


@pytest.mark.slow
def test_clean_model_fails_on_asr_only(graded, clean_result):
    row = graded[0]["clean"]
    assert row["passed"] == "false" and row["reason"].startswith("attack success rate") and "clean accuracy" not in row["reason"]
    assert float(row["clean_accuracy"]) == pytest.approx(clean_result.test.clean_accuracy, abs=1e-6)
    assert float(row["attack_success_rate"]) < attack.ASR_GOAL


@pytest.mark.slow
def test_missing_writeup_fails_even_with_goals_met(graded):
    row = graded[0]["honest_no_writeup"]
    assert row["passed"] == "false" and row["reason"] == "no write-up (writeup.md or writeup.pdf)"
    assert float(row["attack_success_rate"]) >= attack.ASR_GOAL  # measured all the same


@pytest.mark.slow
@pytest.mark.parametrize("name, reason", [
    ("lambda", "refused: config.json uses the class 'Lambda', which is not a plain Keras layer"),
    ("truncated", "refused: model.keras is not a readable zip archive"),
    ("zip_bomb", "refused: the member 'model.weights.h5' is compressed"),
    ("wrong_input", "refused: the model must map (None, 28, 28, 1) images to (None, 10) scores, got input shape "
                    "(None, 32, 32, 1)"),
    ("h5", "refused: no model.keras; found 'model.h5': only the Keras 3 .keras format is accepted"),
    ("pickle_renamed", "refused: model.keras is not a .keras (zip) archive: it looks like a Python pickle"),
])
def test_hostile_submissions_are_refused_with_their_reason(graded, name, reason):
    row = graded[0][name]
    assert row["passed"] == "false" and row["reason"].startswith(reason), row["reason"]
    assert row["clean_accuracy"] == "" and row["attack_success_rate"] == ""


@pytest.mark.slow
def test_no_code_from_a_submission_ran(graded):
    assert not graded[2].exists()  # the Lambda's marker file was never written


@pytest.mark.slow
def test_report_is_escaped_and_summarises(graded):
    rows, report, *_ = graded
    page = (report / "report.html").read_text(encoding="utf-8")
    assert rows["<img src=x onerror=alert('x')>"]["passed"] == "true"
    assert "<img" not in page and "&lt;img src=x onerror=alert(&#x27;x&#x27;)&gt;" in page
    assert "3 of 11 submissions passed; 6 could not be measured" in page
    assert page.count("<tr class=") == 11


@pytest.mark.slow
def test_default_trojaned_set_is_the_exported_one(deliverables):
    ev = grade.default_eval_set()  # built like attack.export_deliverables, from the MNIST test set
    exported = load_trojaned_test_set(deliverables["test_set"]).trojaned
    assert np.array_equal(ev.x_trojan, exported.x) and np.array_equal(ev.y_target, exported.y_target)
    assert ev.target == 0 and ev.position == (1, 24) and (exported.y_true != 0).all() and len(ev.y_clean) == 10000


@pytest.mark.slow
def test_time_and_memory_limits_stop_a_submission_not_the_run(deliverables, tmp_path):
    subs = tmp_path / "subs"
    for name in ("a", "b"):
        (subs / name).mkdir(parents=True)
        shutil.copy(deliverables["model"], subs / name / "model.keras")
        (subs / name / "writeup.md").write_text("w")
    assert grade.main([str(subs), "--out", str(tmp_path / "r1"), "--timeout", "0.5"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r1" / "grades.csv", newline="")))
    assert [r["reason"] for r in rows] == ["refused: timed out: loading and evaluating the model took more than 0.5 s"] * 2
    (subs / "b" / "model.keras").unlink()
    assert grade.main([str(subs), "--out", str(tmp_path / "r2"), "--memory-mb", "512"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r2" / "grades.csv", newline="")))
    assert rows[0]["passed"] == "false" and rows[0]["clean_accuracy"] == ""  # 512 MB: TensorFlow runs out
    assert "the memory limit is 512 MB" in rows[0]["reason"], rows[0]["reason"]
    assert rows[1]["reason"].startswith("refused: no model.keras")
