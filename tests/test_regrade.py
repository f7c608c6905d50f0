"""The clean re-grade (``classroom/regrade.py``): its parts, and one bad submission costing only its own points.

A corrupt notebook used to abort the whole re-grade with no CSV for anyone, and a small compressed
reply from a student's process could make the grader unpack gigabytes. The course of the last test
is lesson 1 as the instructor's source, with two submissions: the instructor's own solutions and a
corrupt file. The students who go after the grade itself are in ``tests/test_course_flow.py``.
"""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "classroom"))
import regrade  # noqa: E402 - lives in classroom/, not in the package

LESSON = "01_data_likelihood.ipynb"


def _frame(arrays, compressed):
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, header=np.array(json.dumps({"ok": True})), **{f"a{i}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def test_a_compressed_reply_is_refused_before_anything_is_unpacked(monkeypatch):
    bomb = _frame([np.zeros(4 * 2**20, np.uint8)], compressed=True)  # 4 MiB of zeros in a few kB
    assert len(bomb) < 2**16
    for frame in (bomb, _frame([np.arange(5.0)], compressed=True)):  # the grader never sends one: none passes
        with pytest.raises(regrade.FrameTooLarge, match="compressed members"):
            regrade._parse_frame(frame)
    monkeypatch.setattr(regrade, "MAX_FRAME", 2**20)
    with pytest.raises(regrade.FrameTooLarge, match="2 MiB unpacked"):
        regrade._parse_frame(_frame([np.zeros(2 * 2**20, np.uint8)], compressed=False))
    header, arrays = regrade._parse_frame(_frame([np.arange(5.0)], compressed=False))  # what the processes send
    assert header == {"ok": True} and arrays[0].tolist() == [0, 1, 2, 3, 4]


def test_the_tampering_scan_reads_code_not_comments_or_strings():
    code = 'import inspect  # not grading\nx = "gc and sys.modules"\n# os._exit(0)\ninspect.stack()'
    assert set(regrade.TAMPERING.findall(regrade._code_only(code))) == {"inspect"}
    assert regrade._code_only("def f(:\n") == "def f(:\n"  # unreadable code is scanned as it is


def test_cells_a_student_added_run_with_the_solutions_in_the_notebooks_order():
    import nbformat

    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import jax"),
        nbformat.v4.new_code_cell("def f(x):\n    pass", metadata={"nbgrader": {"grade_id": "ex_f", "solution": True}}),
        nbformat.v4.new_code_cell("grading.check_f(f)", metadata={"nbgrader": {"grade_id": "ex_f_test", "grade": True}}),
    ])
    lesson = regrade.Lesson("lesson", "x.ipynb", "import jax", [], ["ex_f"],
                            {c.id for c in source.cells} | {c.source for c in source.cells})
    student = nbformat.from_dict(source)
    student.cells[1].source = "def f(x):\n    return helper(x)"
    student.cells.insert(1, nbformat.v4.new_code_cell("def helper(x):\n    return x"))
    student.cells.insert(3, nbformat.v4.new_code_cell("%timeit f(1)"))
    student.cells.insert(0, nbformat.v4.new_code_cell("import jax"))  # a copy of the instructor's cell: not added
    program, tests = regrade._program(lesson, student)
    assert [(label, src.splitlines()[0]) for label, src, _ in program] == [
        ("added cell 3", "def helper(x):"), ("ex_f", "def f(x):"), ("added cell 5", "%timeit f(1)")]
    assert tests == {"ex_f_test": 5} and all(position < 5 for *_, position in program)


def test_a_pth_file_no_package_installed_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(regrade.site, "getsitepackages", lambda: [str(tmp_path)])
    monkeypatch.setattr(regrade.site, "getusersitepackages", lambda: str(tmp_path / "none"))
    (tmp_path / "planted.pth").write_text("import os; os.system('true')\n")
    assert regrade.foreign_startup_files() == [tmp_path / "planted.pth"]
    (tmp_path / "planted.pth").unlink()
    assert regrade.foreign_startup_files() == []


def test_a_changed_grade_file_fails_verification(tmp_path):
    grades, flags = tmp_path / "regrade" / "a.csv", tmp_path / "regrade" / "a-flags.csv"
    grades.parent.mkdir()
    grades.write_text("student,exercise,points\nbob,ex1,0\n")
    flags.write_text("student,exercise,reason\n")
    regrade._write_text(tmp_path / "regrade" / "a.sha256",
                        "".join(f"{regrade._digest(p)}  {p.name}\n" for p in (grades, flags)))
    assert regrade.verify(tmp_path, "a") == [("a.csv", True), ("a-flags.csv", True)]
    grades.write_text("student,exercise,points\nbob,ex1,3\n")
    assert regrade.verify(tmp_path, "a") == [("a.csv", False), ("a-flags.csv", True)]
    assert regrade.main(["a", "--course", str(tmp_path), "--verify"]) == 1


@pytest.mark.slow
def test_one_corrupt_submission_costs_only_its_own_points(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "lesson01").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / LESSON, course / "source" / "lesson01" / LESSON)
    for student in ("honest", "broken"):
        (course / "submitted" / student / "lesson01").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / LESSON, course / "submitted" / "honest" / "lesson01" / LESSON)
    (course / "submitted" / "broken" / "lesson01" / LESSON).write_text('{"cells": [ not a notebook')

    unsafe = regrade.sandbox_problem() is not None  # the sandbox where the machine has one
    results = regrade.regrade(course, "lesson01", jobs=2, time_limit=60, unsafe=unsafe)

    by_student = {}
    for r in results:
        by_student.setdefault(r.student, []).append(r)
    assert {r.grade_id for r in by_student["honest"]} == {r.grade_id for r in by_student["broken"]}
    assert all(r.points == r.max_points > 0 for r in by_student["honest"]), [r.message for r in by_student["honest"]]
    for r in by_student["broken"]:
        assert r.points == 0 and "could not be read" in r.message and "grade this submission by hand" in r.flags[0]
    with open(course / "regrade" / "lesson01.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["student"] for row in rows} == {"honest", "broken"}  # the class's grades were written
    with open(course / "regrade" / "lesson01-flags.csv") as f:
        assert {row["student"] for row in csv.DictReader(f)} == {"broken"}


def test_an_environment_under_tmp_is_bound_inside_the_sandboxs_private_tmp(tmp_path, monkeypatch):
    """bwrap mounts in order: a private /tmp mounted after the binds would hide a checkout or venv under /tmp
    (a clone in /tmp, pytest's course folders), so both sandboxes mount it first."""
    import autograde

    package = tmp_path / "checkout" / "vae_lite"
    package.mkdir(parents=True)
    monkeypatch.setattr(regrade, "_package_paths", lambda: ([str(tmp_path / "checkout")], package))
    for command in (regrade.child_command(3, {"memory_gib": 1, "cpu_s": 10}),
                    autograde.sandbox_command(tmp_path / "course", ["lesson01"])):
        private_tmp = command.index("/tmp", command.index("--tmpfs"))
        binds = [i for i, arg in enumerate(command) if arg.startswith(str(tmp_path))]
        assert binds and min(binds) > private_tmp, command
