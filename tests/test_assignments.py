"""Classroom assignments: the graded cells are well formed and follow the exercise catalogue,
the nbgrader student versions leak no solution, every graded test of a student version
FAILS (nbgrader's Validator with invert=True), and the solution notebooks pass them.

Solution notebooks: nbval (``make test``) re-executes every notebook, so a graded cell that
raises fails the suite; here the committed outputs of the graded cells are also graded with
nbgrader's own rule (no error, no stderr), which nbval does not check. The tooling is also
tested end to end on a small fixture lesson, so these tests mean something whatever
lessons exist yet.
"""

import copy
import functools
import multiprocessing
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "classroom"))
import build_assignments  # noqa: E402 - lives in classroom/, not in the package

NOTEBOOKS = ROOT / "notebooks"
STUDENT_CELL_TIMEOUT_S = 120  # a safety net; a student notebook normally fails its tests in seconds

# lesson -> [(grade_id, student function, check helper)], as in the team's exercise catalogue
CATALOGUE = {
    1: [("ex01_image_log_lik", "image_log_likelihood", "check_image_log_likelihood"),
        ("ex01_shared_theta", "shared_theta_log_marginal", "check_shared_theta_log_marginal")],
    2: [("ex02_mixture_sample", "sample_mixture", "check_mixture_sampling"),
        ("ex02_fair_generator", "sample_fitted_gaussian", "check_fair_generator")],
    3: [("ex03_grid_normalize", "normalize_on_grid", "check_grid_normalization"),
        ("ex03_naive_mc", "naive_log_evidence", "check_naive_log_evidence")],
    4: [("ex04_elbo", "elbo_estimate", "check_elbo"), ("ex04_kl", "kl_to_standard_normal", "check_kl_normal_std"),
        ("ex04_iwae", "iwae_bound", "check_iwae_bound")],
    5: [("ex05_reparam", "reparameterize", "check_reparameterized_sample"),
        ("ex05_score_loo", "score_function_loo", "check_score_function_loo")],
    6: [("ex06_vae_loss", "negative_elbo_loss", "check_negative_elbo"),
        ("ex06_encoder", "Encoder", "check_encoder"),
        ("ex06_decoder", "Decoder", "check_decoder"),
        ("ex06_model_loss", "vae_loss", "check_vae_loss"),
        ("ex06_train_step", "train_step", "check_train_step")],
    7: [("ex07_mf_step", "mean_field_step", "check_mean_field_step"),
        ("ex07_refine", "refine", "check_refinement"),
        ("ex07_full_cov", "full_covariance_elbo", "check_full_covariance_elbo")],
    8: [("ex08_interpolate", "interpolate", "check_interpolation"),
        ("ex08_inverse_cdf", "inverse_cdf_grid", "check_inverse_cdf_grid")],
}

# lesson -> grade_ids of its manually graded written answers (predict or interpret; graded in formgrader)
WRITTEN = {2: ["ex02_written_generation"], 6: ["ex06_written_beta"], 7: ["ex07_written_amortization"],
           8: ["ex08_written_typical_set"]}


def read_lessons(folder):
    return {name: nbformat.read(path, as_version=4)
            for name, path in build_assignments.lesson_notebooks(folder).items()}


def nbgrader_meta(cell):
    return build_assignments.nbgrader_meta(cell)


def structure_problems(notebooks):
    """What is wrong with the graded cells of ``{assignment: notebook}`` (empty list: nothing)."""
    problems, seen = [], {}
    for name, nb in notebooks.items():
        for i, cell in enumerate(nb.cells):
            meta = nbgrader_meta(cell)
            if not meta:
                continue
            grade_id = meta.get("grade_id")
            if grade_id in seen:
                problems.append(f"{name} cell {i}: grade_id {grade_id!r} already used in {seen[grade_id]}")
            seen[grade_id] = f"{name} cell {i}"
            if meta.get("solution") and not meta.get("grade"):
                if cell.cell_type == "code" and not re.search(r"### BEGIN SOLUTION\n.*### END SOLUTION", cell.source, re.S):
                    problems.append(f"{name} cell {i}: solution cell {grade_id!r} has no BEGIN/END SOLUTION region")
            if not meta.get("grade"):
                continue
            if cell.cell_type == "markdown":  # a manually graded written answer
                before = nb.cells[i - 1] if i > 0 else None
                if not meta.get("solution"):
                    problems.append(f"{name} cell {i}: graded Markdown cell {grade_id!r} is not a solution (written answer)")
                if meta.get("locked"):
                    problems.append(f"{name} cell {i}: written answer {grade_id!r} is locked: students cannot write it")
                if not meta.get("points", 0) > 0:
                    problems.append(f"{name} cell {i}: graded cell {grade_id!r} has no points")
                if before is None or before.cell_type != "markdown" or nbgrader_meta(before):
                    problems.append(f"{name} cell {i}: written answer {grade_id!r} does not follow its question (Markdown)")
                continue
            if not meta.get("points", 0) > 0:
                problems.append(f"{name} cell {i}: graded cell {grade_id!r} has no points")
            if not meta.get("locked"):
                problems.append(f"{name} cell {i}: graded cell {grade_id!r} is not locked")
            if not re.search(r"### BEGIN HIDDEN TESTS\n.*\S.*### END HIDDEN TESTS", cell.source, re.S):
                problems.append(f"{name} cell {i}: graded cell {grade_id!r} has no hidden tests")
            before = nbgrader_meta(nb.cells[i - 1]) if i > 0 else {}
            if not (before.get("solution") and not before.get("grade") and nb.cells[i - 1].cell_type == "code"):
                problems.append(f"{name} cell {i}: graded cell {grade_id!r} is not right after a solution cell")
        count = len(build_assignments.graded_tests(nb))
        if count < 2:
            problems.append(f"{name}: {count} graded exercise(s), at least 2 needed")
    total = sum(len(build_assignments.graded_tests(nb)) for nb in notebooks.values())
    if total < 2 * len(notebooks):
        problems.append(f"{total} graded exercises in {len(notebooks)} lessons, at least {2 * len(notebooks)} needed")
    return problems


# ------------------------------------------------------------ a small fixture lesson
def _code(source, nbgrader=None, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, "locked": False, "grade": False,
                                     "solution": False, **nbgrader}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    return cell


def fixture_lesson():
    """A lesson with two exercises in the team's format, one with a hidden test."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Fixture lesson\nTwo graded exercises."),
        _code("import jax.numpy as jnp\n\nfrom vae_lite import grading"),
        _code("def kl_to_standard_normal(mu, log_var):\n    ### BEGIN SOLUTION\n"
              "    return 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var)\n    ### END SOLUTION",
              {"grade_id": "ex99_kl", "solution": True}),
        _code("print(grading.check_kl_normal_std(kl_to_standard_normal))\n### BEGIN HIDDEN TESTS\n"
              "assert float(kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3))) == 0.0\n### END HIDDEN TESTS",
              {"grade_id": "ex99_kl_test", "grade": True, "locked": True, "points": 2},
              outputs=["check_kl_normal_std: passed on 3 test inputs.\n"]),
        _code("def interpolate(z0, z1, t):\n    ### BEGIN SOLUTION\n    weights = jnp.asarray(t)[:, None]\n"
              "    return (1.0 - weights) * z0 + weights * z1\n    ### END SOLUTION",
              {"grade_id": "ex99_interp", "solution": True}, outputs=["a solution cell's output\n"]),
        _code("print(grading.check_interpolation(interpolate))\n### BEGIN HIDDEN TESTS\n"
              "assert interpolate(jnp.zeros(2), jnp.ones(2), jnp.array([0.25])).shape == (1, 2)\n"
              "### END HIDDEN TESTS",
              {"grade_id": "ex99_interp_test", "grade": True, "locked": True, "points": 3}),
        nbformat.v4.new_markdown_cell("**Written answer.** Why is the KL to the prior never negative?"),
        nbformat.v4.new_markdown_cell("**Model answer.** Because Gibbs' inequality holds for every pair of densities, "
                                      "with equality only when they are the same."),
        _code("print('the lesson goes on with the library')", outputs=["the lesson goes on with the library\n"]),
    ]
    nb.cells[-2].metadata["nbgrader"] = {"schema_version": 3, "task": False, "locked": False, "grade": True,
                                         "solution": True, "grade_id": "ex99_written", "points": 1}
    return nb


@pytest.fixture(scope="module")
def fixture_course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fixture")
    (folder / "notebooks").mkdir()
    nbformat.write(fixture_lesson(), folder / "notebooks" / "01_fixture.ipynb")
    return build_assignments.build(folder / "notebooks", folder / "course")


def test_fixture_lesson_is_well_formed():
    assert structure_problems({"lesson01": fixture_lesson()}) == []


def test_structure_check_finds_bad_cells():
    nb = fixture_lesson()
    nb.cells[3].metadata.nbgrader.update(locked=False, points=0)
    nb.cells[3].source = "print(grading.check_kl_normal_std(kl_to_standard_normal))"  # no hidden tests
    nb.cells[5].metadata.nbgrader["grade_id"] = "ex99_kl_test"
    del nb.cells[4]  # the interpolation test now follows a test cell, not a solution cell
    single = fixture_lesson()
    single.cells = single.cells[:4]
    problems = "\n".join(structure_problems({"lesson01": nb, "lesson02": single}))
    for expected in ("is not locked", "has no points", "already used", "not right after a solution cell",
                     "at least 2 needed", "has no hidden tests"):
        assert expected in problems
    bad_written = fixture_lesson()
    (index,) = [i for i, c in enumerate(bad_written.cells) if nbgrader_meta(c).get("grade_id") == "ex99_written"]
    bad_written.cells[index].metadata.nbgrader.update(locked=True, solution=False, points=0)
    bad_written.cells.insert(index, _code("x = 1"))
    problems = "\n".join(structure_problems({"lesson01": bad_written}))
    for expected in ("is not a solution", "is locked", "has no points", "does not follow its question"):
        assert expected in problems


def test_fixture_student_version_has_blanks_and_no_leaks(fixture_course):
    (assignment,) = fixture_course
    assert (assignment.name, assignment.exercises, assignment.written, assignment.points) == (
        "lesson01", [("ex99_kl_test", 2), ("ex99_interp_test", 3)], [("ex99_written", 1)], 6)
    student = nbformat.read(assignment.release, as_version=4)
    (written,) = [c for c in student.cells if build_assignments.nbgrader_meta(c).get("grade_id") == "ex99_written"]
    assert written.cell_type == "markdown" and written.source.strip() == build_assignments.WRITTEN_STUB
    text = "\n".join(cell.source for cell in student.cells)
    assert text.count("raise NotImplementedError()") == 2
    assert "jnp.exp(log_var)" not in text and "HIDDEN" not in text and "jnp.zeros(3)" not in text
    assert not any(cell.get("outputs") for cell in student.cells)
    assert build_assignments.find_leaks(fixture_lesson(), student) == []


def test_leak_finder_catches_shown_solutions(fixture_course):
    solution = fixture_lesson()
    student = nbformat.read(fixture_course[0].release, as_version=4)
    shown = copy.deepcopy(student)
    shown.cells.append(_code("kl = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var)  # the answer"))
    assert "solution code" in "".join(build_assignments.find_leaks(solution, shown))
    hidden = copy.deepcopy(student)
    hidden.cells.append(_code("assert float(kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3))) == 0.0"))
    assert "hidden tests code" in "".join(build_assignments.find_leaks(solution, hidden))
    with_output = copy.deepcopy(student)
    with_output.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="4.2\n")]
    assert "still has outputs" in "".join(build_assignments.find_leaks(solution, with_output))
    assert "marker" in "".join(build_assignments.find_leaks(solution, solution))
    answered = copy.deepcopy(student)  # the model answer left in, or copied into another cell
    (index,) = [i for i, c in enumerate(answered.cells) if build_assignments.nbgrader_meta(c).get("grade_id") == "ex99_written"]
    answered.cells[index].source = solution.cells[index].source
    assert "'ex99_written' is not blank" in "".join(build_assignments.find_leaks(solution, answered))
    copied = copy.deepcopy(student)
    copied.cells.append(nbformat.v4.new_markdown_cell(solution.cells[index].source))
    assert "shows the model answer of 'ex99_written'" in "".join(build_assignments.find_leaks(solution, copied))
    # one library call that a longer solution also uses is part of the lesson, not a leak
    partial = copy.deepcopy(student)
    partial.cells.append(_code("w = (1.0 - weights) * z0 + weights * z1"))
    assert build_assignments.find_leaks(solution, partial) == []


@pytest.mark.slow
def test_fixture_validates_with_nbgrader(fixture_course):
    """nbgrader's verdicts: the student version fails every graded test, the solution passes."""
    (assignment,) = fixture_course
    student = build_assignments.validate(assignment.release, invert=True, timeout=STUDENT_CELL_TIMEOUT_S)
    assert student.results == {}, student.results  # with invert=True, a graded cell that passes is listed
    assert [g.grade_id for g in student.graded] == ["ex99_kl_test", "ex99_interp_test"]
    assert all(g.score == 0 and "not implemented yet" in g.error for g in student.graded), student.graded
    assert student.other_errors == []
    solution = build_assignments.validate(assignment.source, timeout=STUDENT_CELL_TIMEOUT_S)
    assert solution.results == {}, solution.results
    assert all(g.score == g.max_score and not g.error for g in solution.graded), solution.graded


# ------------------------------------------------------------ the lessons
def test_graded_cells_are_well_formed():
    notebooks = read_lessons(NOTEBOOKS)
    if not notebooks:
        pytest.skip("no lesson notebooks yet")
    assert structure_problems(notebooks) == []


def test_exercises_follow_the_catalogue():
    problems = []
    for name, nb in read_lessons(NOTEBOOKS).items():
        cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells}
        for grade_id, function, check in CATALOGUE[int(name[-2:])]:
            solution, test = cells.get(grade_id), cells.get(f"{grade_id}_test")
            if solution is None or test is None:
                problems.append(f"{name}: no cells {grade_id!r} and {grade_id + '_test'!r}")
                continue
            if not re.search(rf"^(def {function}\(|class {function}\()", solution.source, re.M):
                problems.append(f"{name}: solution cell {grade_id!r} does not define {function}()")
            if f"grading.{check}({function})" not in test.source:
                problems.append(f"{name}: test cell {grade_id}_test does not call grading.{check}({function})")
    assert problems == []


def test_written_answers_follow_the_catalogue():
    """At least four manually graded written answers across the series, where the catalogue says."""
    found = {int(name[-2:]): [nbgrader_meta(c)["grade_id"] for _, c in build_assignments.written_answers(nb)]
             for name, nb in read_lessons(NOTEBOOKS).items()}
    assert {k: v for k, v in found.items() if v} == WRITTEN
    assert sum(len(v) for v in WRITTEN.values()) >= 4


def test_points_are_weighted_by_difficulty():
    """Not every exercise is worth the same: each lesson has a harder exercise worth more than its easiest one."""
    flat = []
    for name, nb in read_lessons(NOTEBOOKS).items():
        points = [nbgrader_meta(c)["points"] for _, c in build_assignments.graded_tests(nb)]
        if max(points) <= min(points):
            flat.append(f"{name}: every exercise is worth {points[0]} points")
    assert flat == []


def test_committed_solution_notebooks_pass_their_graded_cells():
    """Graded with nbgrader's rule (an error OR any stderr output fails a cell) on the saved outputs."""
    from nbgrader.utils import determine_grade

    problems = []
    for name, nb in read_lessons(NOTEBOOKS).items():
        for i, cell in build_assignments.graded_tests(nb):
            score, max_score = determine_grade(cell)
            printed = "".join(o.get("text", "") for o in cell.outputs)
            if score != max_score or "passed" not in printed:
                problems.append(f"{name} cell {i}: score {score}/{max_score}, outputs {printed!r}")
    assert problems == [], "execute the notebooks and save them with outputs; failing graded cells:\n" + "\n".join(
        problems)


@pytest.fixture(scope="module")
def lesson_course(tmp_path_factory):
    if not build_assignments.lesson_notebooks(NOTEBOOKS):
        pytest.skip("no lesson notebooks yet")
    return build_assignments.build(NOTEBOOKS, tmp_path_factory.mktemp("course"))


@pytest.mark.slow
def test_student_versions_build_without_leaks(lesson_course):
    """build() raises if a marker, an output, a hidden test or a whole solution reaches a student."""
    for assignment in lesson_course:
        student = nbformat.read(assignment.release, as_version=4)
        assert build_assignments.find_leaks(nbformat.read(assignment.source, as_version=4), student) == []
        assert len(build_assignments.graded_tests(student)) == len(assignment.exercises)


@pytest.mark.slow
def test_student_versions_fail_every_graded_test(lesson_course):
    """nbgrader validate --invert on every student version (two at a time: the CI has 2 cores).

    Every graded cell must be executed and fail because its exercise is blank ("not
    implemented yet"), not for an unrelated reason.
    """
    validate_student = functools.partial(build_assignments.validate, invert=True, timeout=STUDENT_CELL_TIMEOUT_S,
                                         stop_after_last_graded=True)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        verdicts = pool.map(validate_student, [a.release for a in lesson_course])
        outcomes = list(zip(lesson_course, verdicts, strict=True))
    problems = []
    for assignment, found in outcomes:
        if found.results:
            problems.append(f"{assignment.name}: nbgrader validate --invert complains: {found.results}")
        if [g.grade_id for g in found.graded] != [grade_id for grade_id, _ in assignment.exercises]:
            problems.append(f"{assignment.name}: graded cells executed {[g.grade_id for g in found.graded]}")
        for g in found.graded:
            if g.score != 0 or "not implemented yet" not in g.error:
                problems.append(f"{assignment.name} {g.grade_id}: score {g.score}, error {g.error[:300]!r}")
        for index, error in found.other_errors:  # the lesson must go on with the library after a blank
            if "NotImplementedError" in error or "not implemented yet" in error:
                problems.append(f"{assignment.name} cell {index} uses a blank exercise: {error[:200]!r}")
    assert problems == [], "\n".join(problems)


def test_solutions_and_their_tests_open_folded_in_the_lessons():
    """A self-learner meets the task before the answer: every solution cell, graded test cell and model answer of
    the lessons opens folded (JupyterLab's ``source_hidden``); the student versions unfold them (``find_leaks``)."""
    unfolded = [f"{name} {nbgrader_meta(cell)['grade_id']}" for name, nb in read_lessons(NOTEBOOKS).items()
                for cell in nb.cells if nbgrader_meta(cell).get("solution") or nbgrader_meta(cell).get("grade")
                if not cell.metadata.get("jupyter", {}).get("source_hidden")]
    assert unfolded == [], unfolded


def test_student_versions_unfold_what_the_lessons_fold(tmp_path):
    lesson = fixture_lesson()
    for cell in lesson.cells:
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    (tmp_path / "notebooks").mkdir()
    nbformat.write(lesson, tmp_path / "notebooks" / "01_fixture.ipynb")
    (assignment,) = build_assignments.build(tmp_path / "notebooks", tmp_path / "course")
    for version in (assignment.release, tmp_path / "course" / "source" / "lesson01" / "01_fixture.ipynb"):
        assert not any(c.metadata.get("jupyter", {}).get("source_hidden")
                       for c in nbformat.read(version, as_version=4).cells), version
    student = nbformat.read(assignment.release, as_version=4)
    student.cells[-1].metadata.setdefault("jupyter", {})["source_hidden"] = True
    assert any("folded away" in p for p in build_assignments.find_leaks(lesson, student))
