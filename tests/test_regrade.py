"""The clean re-grade (``classroom/regrade.py``) survives one bad submission: the rest of the class is graded.

A corrupt notebook used to abort the whole re-grade with no CSV for anyone, and a small compressed
reply from a student's process could make the grader unpack gigabytes. The course here is lesson 1
as the instructor's source, with two submissions: the instructor's own solutions and a corrupt file.
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


def test_a_small_compressed_reply_that_unpacks_too_large_is_refused(monkeypatch):
    monkeypatch.setattr(regrade, "MAX_FRAME", 2**20)
    bomb = _frame([np.zeros(4 * 2**20, np.uint8)], compressed=True)  # 4 MiB of zeros in a few kB
    assert len(bomb) < 2**16
    with pytest.raises(regrade.FrameTooLarge, match="4 MiB unpacked"):
        regrade._parse_frame(bomb)
    header, arrays = regrade._parse_frame(_frame([np.arange(5.0)], compressed=True))  # small ones pass
    assert header == {"ok": True} and arrays[0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_one_corrupt_submission_costs_only_its_own_points(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "lesson01").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / LESSON, course / "source" / "lesson01" / LESSON)
    for student in ("honest", "broken"):
        (course / "submitted" / student / "lesson01").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / LESSON, course / "submitted" / "honest" / "lesson01" / LESSON)
    (course / "submitted" / "broken" / "lesson01" / LESSON).write_text('{"cells": [ not a notebook')

    results = regrade.regrade(course, "lesson01", jobs=2, time_limit=60)

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
