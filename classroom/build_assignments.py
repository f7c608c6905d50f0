"""Build the student versions of the lessons with nbgrader (``make assignments``).

Sets up an nbgrader course folder (default ``assignments/course/``, not committed) with one
assignment per lesson, ``notebooks/0N_<name>.ipynb`` -> ``source/lesson0N/0N_<name>.ipynb``,
runs nbgrader's ``generate_assignment`` for each (solutions replaced by
``raise NotImplementedError()``, hidden tests removed, all outputs cleared) into
``release/lesson0N/``, checks that no solution leaked into a student version, and prints
the points per assignment. The gradebook (``gradebook.db``) of an existing course folder is
kept, so re-running after editing a lesson is safe.

Usage: ``python classroom/build_assignments.py [--notebooks DIR] [--course DIR]``
"""

import argparse
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("nbgrader_config.py")
LESSON = re.compile(r"^0(\d)_\w+\.ipynb$")
SECRET = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)
WRITTEN_STUB = "YOUR ANSWER HERE"  # nbgrader's ClearSolutions.text_stub (its default)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@dataclass
class Assignment:
    """One lesson as an nbgrader assignment."""

    name: str  # e.g. "lesson01"
    source: Path  # the lesson notebook with solutions
    release: Path  # the generated student version
    exercises: list  # [(grade_id of the autograded test cell, points)]
    written: list = field(default_factory=list)  # [(grade_id of a manually graded written answer, points)]

    @property
    def points(self):
        """All points: the autograded exercises' and the written answers' (graded by hand in formgrader)."""
        return sum(points for _, points in self.exercises + self.written)


def lesson_notebooks(notebooks_dir):
    """``{"lesson01": Path(".../01_data_likelihood.ipynb"), ...}`` for the lessons that exist."""
    found = {}
    for path in sorted(Path(notebooks_dir).glob("0*.ipynb")):
        match = LESSON.match(path.name)
        if match:
            found[f"lesson{int(match.group(1)):02d}"] = path
    return found


def nbgrader_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_tests(nb):
    """``[(index, cell)]`` of the autograded test cells (graded code cells)."""
    return [(i, cell) for i, cell in enumerate(nb.cells) if nbgrader_meta(cell).get("grade") and cell.cell_type == "code"]


def written_answers(nb):
    """``[(index, cell)]`` of the manually graded written answers: Markdown cells that are both a
    solution and graded (nbgrader's "manually graded answer"). The lesson holds a model answer;
    ``generate_assignment`` replaces the whole cell with "YOUR ANSWER HERE"."""
    return [(i, cell) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "markdown" and nbgrader_meta(cell).get("grade") and nbgrader_meta(cell).get("solution")]


def _secret_regions(nb, min_length=20):
    """``[(kind, snippets)]``: the code of each solution / hidden-test region, line by line.

    Lines shorter than ``min_length`` and import lines are too generic to recognise. ``return expr`` and
    ``name = expr`` count by their ``expr``, so the same expression shown elsewhere is caught.
    """
    regions = []
    for cell in nb.cells:
        for kind, region in SECRET.findall(cell.source):
            snippets = set()
            for line in region.splitlines():
                line = re.sub(r"^(return\s+|[\w, ]+=\s*)", "", line.split("#")[0].strip()).strip()
                if len(line) >= min_length and not re.match(r"(import|from)\s", line):  # imports are no secret
                    snippets.add(line)
            if snippets:
                regions.append((kind, sorted(snippets)))
    return regions


def _cell_texts(cell):
    yield cell.source
    for output in cell.get("outputs", []):
        if "text" in output:
            yield "".join(output["text"])
        for value in output.get("data", {}).values():
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield "".join(v for v in value if isinstance(v, str))
        yield "\n".join(output.get("traceback", []))


def find_leaks(solution_nb, student_nb):
    """Problems that would hand a solution to students (empty list: none).

    Looks for nbgrader markers and outputs left in the student version, any line of a hidden
    test, and solutions shown elsewhere: a solution region all of whose lines (see
    :func:`_secret_regions`) appear in the student version's code cells. (A single library
    call that a longer solution also uses is part of the lesson, and the exercise text in
    Markdown may spell out what to write.)
    """
    problems = []
    texts = []
    for i, cell in enumerate(student_nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {i} still has outputs")
        if cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
            problems.append(f"cell {i} is folded away (source_hidden): the student would not see it")
        for text in _cell_texts(cell):
            problems += [f"cell {i} contains the marker {m!r}" for m in MARKERS if m in text]
            if cell.cell_type == "code":
                texts.append(text)
    everything = "\n".join(texts)
    student_cells = {nbgrader_meta(c).get("grade_id"): c for c in student_nb.cells if nbgrader_meta(c)}
    all_text = "\n".join(t for c in student_nb.cells for t in _cell_texts(c))
    for _, cell in written_answers(solution_nb):
        grade_id = nbgrader_meta(cell)["grade_id"]
        released = student_cells.get(grade_id)
        if released is None or released.source.strip() != WRITTEN_STUB:
            problems.append(f"written answer {grade_id!r} is not blank ({WRITTEN_STUB!r}) in the student version")
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", cell.source) if len(s.strip()) >= 40]
        problems += [f"the student version shows the model answer of {grade_id!r}: {s[:60]!r}"
                     for s in sentences if s in all_text]
    for kind, snippets in _secret_regions(solution_nb):
        shown = [s for s in snippets if s in everything]
        if shown and (kind == "HIDDEN TESTS" or len(shown) == len(snippets)):
            problems += [f"the student version shows {kind.lower()} code: {s!r}" for s in shown]
    return problems


def setup_course(course_dir, notebooks):
    """Create/refresh ``course_dir`` with its nbgrader_config.py and ``source/<assignment>/`` copies."""
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONFIG, course_dir / "nbgrader_config.py")
    for name, path in notebooks.items():
        source = course_dir / "source" / name
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:  # the lessons fold their solutions and tests away for self-learners; students and
            cell.get("metadata", {}).get("jupyter", {}).pop("source_hidden", None)  # instructors see every cell
        nbformat.write(nb, source / path.name)


def generate(course_dir, names):
    """Run nbgrader's generate_assignment for each assignment (in this process, config from the course)."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course_dir = Path(course_dir).resolve()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    config.CourseDirectory.root = str(course_dir)
    for name in names:
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = name
        app = GenerateAssignment(coursedir=coursedir, config=config)
        app.force = True
        app.log.setLevel("WARNING")
        try:
            app.start()
        except Exception as error:  # nbgrader reports what is wrong in its log and the exception
            raise RuntimeError(f"nbgrader generate_assignment {name} failed: {error}") from error


def build(notebooks_dir=ROOT / "notebooks", course_dir=ROOT / "assignments" / "course"):
    """Build the student versions of every lesson in ``notebooks_dir``.

    Returns:
        a list of :class:`Assignment`. Raises ``RuntimeError`` if nbgrader fails or a
        solution leaks into a student version.
    """
    notebooks = lesson_notebooks(notebooks_dir)
    if not notebooks:
        raise RuntimeError(f"no lesson notebooks (0N_<name>.ipynb) in {notebooks_dir}")
    setup_course(course_dir, notebooks)
    generate(course_dir, list(notebooks))
    assignments, problems = [], []
    for name, path in notebooks.items():
        release = Path(course_dir) / "release" / name / path.name
        solution_nb, student_nb = nbformat.read(path, as_version=4), nbformat.read(release, as_version=4)
        tests, written = ([(nbgrader_meta(cell)["grade_id"], nbgrader_meta(cell).get("points", 0)) for _, cell in cells]
                          for cells in (graded_tests(solution_nb), written_answers(solution_nb)))
        assignments.append(Assignment(name, path, release, tests, written))
        problems += [f"{name}: {problem}" for problem in find_leaks(solution_nb, student_nb)]
    if problems:
        raise RuntimeError("solutions leak into the student versions:\n  " + "\n  ".join(problems))
    return assignments


@dataclass
class GradedResult:
    """How one graded test cell fared when nbgrader executed the notebook."""

    grade_id: str
    score: float
    max_score: float
    error: str  # "ename: evalue" of its error output, stderr text, or ""


@dataclass
class Validation:
    """What nbgrader's Validator found in one notebook."""

    results: dict  # nbgrader's verdict: {} when it validates, else "failed"/"passed"/"changed" cells
    graded: list  # a GradedResult per graded test cell
    other_errors: list  # [(cell index, "ename: evalue")] of the other code cells that raised


def validate(notebook, invert=False, timeout=120, stop_after_last_graded=False):
    """Execute ``notebook`` with nbgrader's Validator (what ``nbgrader validate [--invert]`` runs).

    Args:
        notebook: path of a solution or student notebook.
        invert: as ``nbgrader validate --invert``: complain about graded cells that pass.
        timeout: seconds allowed per cell.
        stop_after_last_graded: validate a copy without the cells after the last graded
            test cell (they run after it, so they cannot change any grade; saves time).

    Returns:
        a :class:`Validation`; its ``results`` is nbgrader's verdict, empty when the notebook
        validates (otherwise with key ``"failed"``, or ``"passed"`` when ``invert``, or ``"changed"``).
    """
    from nbgrader import utils
    from nbgrader.preprocessors import NbGraderPreprocessor
    from nbgrader.validator import Validator
    from traitlets.config import Config

    config = Config()
    config.Execute.timeout = timeout
    executed = []

    class KeepExecuted(NbGraderPreprocessor):  # last in the list: keeps the notebook that validate() drops
        def preprocess(self, nb, resources):
            executed.append(nb)
            return nb, resources

    # nbgrader's public `preprocessors` trait: its own list (check metadata, clear, execute) plus ours
    preprocessors = [*Validator().preprocessors, KeepExecuted]

    path = Path(notebook).resolve()
    if stop_after_last_graded:
        nb = nbformat.read(path, as_version=4)
        last = max((i for i, _ in graded_tests(nb)), default=len(nb.cells) - 1)
        nb.cells = nb.cells[: last + 1]
        path = path.with_name(f"{path.stem}.until_last_graded{path.suffix}")
        nbformat.write(nb, path)
    try:
        results = Validator(config=config, invert=invert, preprocessors=preprocessors).validate(str(path))
    finally:
        if stop_after_last_graded:
            path.unlink()
    graded, other_errors = [], []
    for i, cell in enumerate(executed[-1].cells if executed else []):
        if cell.cell_type != "code":
            continue
        errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
        if nbgrader_meta(cell).get("grade"):
            score, max_score = utils.determine_grade(cell)
            errors += ["stderr: " + o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
            graded.append(GradedResult(nbgrader_meta(cell)["grade_id"], score, max_score, "\n".join(errors)))
        elif errors:
            other_errors.append((i, errors[0]))
    return Validation(results, graded, other_errors)


def _shown(path):
    try:
        return Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        return Path(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="lesson notebooks")
    parser.add_argument("--course", type=Path, default=ROOT / "assignments" / "course", help="nbgrader course folder")
    args = parser.parse_args(argv)
    try:
        assignments = build(args.notebooks, args.course)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Student versions (nbgrader release folder): {_shown(args.course / 'release')}/")
    for a in assignments:
        ids = ", ".join(f"{grade_id.removesuffix('_test')} ({points})" for grade_id, points in a.exercises + a.written)
        print(f"  {a.name}  {a.source.name:<40} {len(a.exercises)} exercises + {len(a.written)} written, "
              f"{a.points:>2} points: {ids}")
    total = sum(a.points for a in assignments)
    manual = sum(points for a in assignments for _, points in a.written)
    print(f"  total: {sum(len(a.exercises) for a in assignments)} autograded exercises and "
          f"{sum(len(a.written) for a in assignments)} written answers, {total} points "
          f"({manual} of them graded by hand in formgrader: nbgrader autograde leaves written answers ungraded)")
    print(f"Next: cd {_shown(args.course)} && nbgrader release_assignment lesson01  (see README, 'For instructors')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
