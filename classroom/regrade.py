"""Re-grade every submission of an assignment, each in a fresh Python process: the grade of record.

Usage: ``python classroom/regrade.py lesson01 [--course DIR] [--jobs 2] [--time-limit 60]``

For each ``submitted/<student>/<assignment>/<notebook>.ipynb`` of the nbgrader course folder:

1. A fresh interpreter (``python -I``, an empty working folder, the installed ``vae_lite``)
   runs the lesson's import lines, taken from the instructor's ``source/`` version, and the
   student's solution cells, nothing else (no test cell, no cell the student added).
2. For each exercise, that process runs the visible check helper, captured before the
   student's code ran; its message is the feedback.
3. The exercise's hidden tests, taken from the instructor's version, run HERE, in this
   process, on fresh random inputs: each call of the student's function is sent to the
   student's process, which only returns the outputs (``.npz`` without pickle); the
   references and the comparison never run where the student's code does. Where the
   student writes classes (lesson 6's modules, its training step), the hidden tests send a
   *driver*, a function of theirs (``drive(driver, *arrays)``) that runs in the student's
   process, builds the student's modules from the arrays it is given and returns their
   outputs as arrays; the comparison again happens here.
4. The student's solution code is scanned for the library's own answer (a point is lost)
   and for signs of reaching into the grader (flagged only).

An exercise earns its points when the visible check and the hidden tests pass and the code
does not use the library's answer. A student's process that runs past ``--time-limit``
seconds on one exercise, exits, or dies is killed and replaced: that exercise fails, the
others are graded. Writes, atomically, ``regrade/<assignment>.csv`` (one row per student
and exercise, with nbgrader's autograde points when ``autograded/`` has them) and
``regrade/<assignment>-flags.csv`` (disagreements with autograde, code that reaches into
the grader), and prints a summary.
"""

import argparse
import ast
import builtins
import concurrent.futures
import csv
import io
import json
import marshal
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
CHECK_CALL = re.compile(r"grading\.(check_\w+)\((\w+)\)")
MAX_FRAME = 512 * 2**20  # bytes: a student's output larger than this fails the exercise
TAMPERING = re.compile(
    r"\b(grading|_checking|inspect|_getframe|f_locals|f_back|f_globals|setprofile|settrace|__code__|gc|"
    r"builtins|__builtins__|ctypes|importlib|sys\.modules|signal|_exit|exit)\b")


# ------------------------------------------------------------------ frames between the processes
def _write_frame(stream, header, arrays=()):
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(json.dumps(header)), **{f"a{i}": a for i, a in enumerate(arrays)})
    data = buffer.getvalue()
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


class FrameTooLarge(ValueError):
    """A frame whose arrays would unpack to more than :data:`MAX_FRAME` bytes."""


def _parse_frame(data):
    # the arrays' sizes as the archive declares them (zipfile never unpacks more than that): a small
    # compressed frame must not make the grader unpack gigabytes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_FRAME:
        raise FrameTooLarge(f"the output is too large ({unpacked / 2**20:.0f} MiB unpacked)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
        arrays = [npz[f"a{i}"] for i in range(len(npz.files) - 1)]
    return header, arrays


def _read_exactly(stream, size):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("the other process closed the connection")
        data += chunk
    return data


# ------------------------------------------------------------------ the student's process
def _decode(spec, arrays):
    import jax
    import jax.numpy as jnp

    kind, value = next(iter(spec.items()))
    if kind == "py":
        return value
    if kind == "array":
        return jnp.asarray(arrays[value])
    if kind == "key":
        return jax.random.wrap_key_data(jnp.asarray(arrays[value]))
    if kind == "module":
        return __import__(value, fromlist=["_"])
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "function":
        code = marshal.loads(arrays[value["code"]].tobytes())
        cells = tuple(types.CellType(_decode(c, arrays)) for c in value["closure"])
        return types.FunctionType(code, {"__builtins__": builtins}, value["name"], None, cells or None)
    raise ValueError(f"unknown argument kind {kind!r}")


def _encode_output(value, arrays):
    if isinstance(value, (tuple, list)):
        return {"tuple": [_encode_output(v, arrays) for v in value]}
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - whatever the student returned, described by its type
        array = None
    if array is None or array.dtype == object:
        return {"other": type(value).__name__}
    arrays.append(array)
    return {"array": len(arrays) - 1}


def _describe(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def child_main(reply_fd):
    """Serve the parent: exec cells, run visible checks, call the student's functions."""
    from vae_lite import grading

    checks = {name: getattr(grading, name) for name in dir(grading) if name.startswith("check_")}  # before any student code
    replies = os.fdopen(reply_fd, "wb")
    requests = sys.stdin.buffer
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        try:
            header, arrays = _parse_frame(_read_exactly(requests, struct.unpack("<Q", _read_exactly(requests, 8))[0]))
        except EOFError:
            return
        out_arrays, op = [], header["op"]
        try:
            if op == "exec":
                exec(compile(header["code"], f"<{header['cell']}>", "exec"), namespace)  # noqa: S102 - the point
                reply = {"ok": True}
            elif op == "check":
                reply = {"passed": True, "message": str(checks[header["check"]](namespace.get(header["function"])))}
            elif op == "drive":  # the hidden tests' driver: builds the student's modules, returns their outputs
                driver = _decode(header["driver"], arrays)
                args = [_decode(spec, arrays) for spec in header["args"]]
                reply = {"out": _encode_output(driver(namespace, *args), out_arrays)}
            else:
                fn = namespace.get(header["function"])
                if not callable(fn):
                    raise NameError(f"{header['function']} is not defined as a function")
                args = [_decode(spec, arrays) for spec in header["args"]]
                reply = {"out": _encode_output(fn(*args), out_arrays)}
        except AssertionError as error:
            reply = {"passed": False, "message": str(error)} if op == "check" else {"error": _describe(error)}
        except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt: all one failure
            reply = {"passed": False, "message": _describe(error)} if op == "check" else {"error": _describe(error)}
        _write_frame(replies, reply, out_arrays)


# ------------------------------------------------------------------ this process: the grader
class ChildGone(Exception):
    """The student's process ran out of time, exited or died; it has been killed."""


class Child:
    """One fresh interpreter that runs one student's code."""

    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="regrade-")
        read_fd, write_fd = os.pipe()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.folder.name,
               "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), "--child", str(write_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,), cwd=self.folder.name, env=env, start_new_session=True)
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "rb", buffering=0)

    def request(self, header, arrays=(), deadline=None):
        try:
            _write_frame(self.process.stdin, header, arrays)
            size = struct.unpack("<Q", self._read(8, deadline))[0]
            if size > MAX_FRAME:
                raise ChildGone(f"the output is too large ({size / 2**20:.0f} MiB)")
            return _parse_frame(self._read(size, deadline))
        except FrameTooLarge as error:
            self.close()
            raise ChildGone(str(error)) from None
        except (OSError, EOFError, ValueError, KeyError, struct.error, zipfile.BadZipFile) as error:
            self.close()
            raise ChildGone(f"the student's process ended or sent garbage ({type(error).__name__})") from None
        except ChildGone:
            self.close()
            raise

    def _read(self, size, deadline):
        data = b""
        while len(data) < size:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise ChildGone("took longer than the time limit")
            chunk = self.replies.read(min(size - len(data), 1 << 20))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def close(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
        self.process.wait()
        for stream in (self.process.stdin, self.replies):
            try:
                stream.close()
            except OSError:
                pass
        self.folder.cleanup()


def _encode_arg(value, arrays):
    import jax
    import jax.numpy as jnp

    if isinstance(value, (bool, int, float, str)) or value is None:
        return {"py": value}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, (list, tuple)):
        return {"list": [_encode_arg(v, arrays) for v in value]}
    if isinstance(value, types.FunctionType):
        arrays.append(np.frombuffer(marshal.dumps(value.__code__), dtype=np.uint8))
        code = len(arrays) - 1
        closure = [_encode_arg(c.cell_contents, arrays) for c in value.__closure__ or ()]
        return {"function": {"code": code, "closure": closure, "name": value.__name__}}
    if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        arrays.append(np.asarray(jax.random.key_data(value)))
        return {"key": len(arrays) - 1}
    arrays.append(np.asarray(value))
    return {"array": len(arrays) - 1}


def _decode_output(spec, arrays):
    kind, value = next(iter(spec.items()))
    if kind == "tuple":
        return tuple(_decode_output(v, arrays) for v in value)
    if kind == "array":
        return arrays[value]
    return f"<{value}>"  # not an array: the hidden test's comparison fails on it


@dataclass
class Exercise:
    grade_id: str  # of the test cell, e.g. "ex01_image_log_lik_test"
    solution_id: str  # of the solution cell just before it
    check: str  # "check_image_log_likelihood"
    function: str  # "image_log_likelihood"
    points: float
    hidden: str  # the hidden tests' code


@dataclass
class Lesson:
    name: str
    notebook: str  # file name
    imports: str  # the import statements of the lesson's other cells
    exercises: list
    solution_ids: list  # every solution cell, in notebook order


def read_lesson(source_nb, name):
    """The exercises of the instructor's notebook ``source_nb`` (a path)."""
    nb = nbformat.read(source_nb, as_version=4)
    imports, exercises, solution_ids = [], [], []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("grade"):
            call = CHECK_CALL.search(cell.source)
            hidden = HIDDEN.search(cell.source)
            if not call or not hidden:
                raise ValueError(f"{source_nb} cell {i}: a graded test cell needs grading.check_*(fn) and hidden tests")
            previous = nb.cells[i - 1].metadata.get("nbgrader", {})
            exercises.append(Exercise(meta["grade_id"], previous.get("grade_id", ""), call.group(1), call.group(2),
                                      float(meta.get("points", 0)), hidden.group(1)))
        elif meta.get("solution"):
            solution_ids.append(meta["grade_id"])
        if not meta.get("solution"):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            imports += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return Lesson(name, Path(source_nb).name, "\n".join(dict.fromkeys(imports)), exercises, solution_ids)


@dataclass
class Result:
    student: str
    grade_id: str
    points: float
    max_points: float
    message: str
    autograde: object = None  # nbgrader's points, or None
    flags: list = field(default_factory=list)


def _names_library_function(code, dotted):
    """Whether ``code`` writes ``module.name`` or imports ``name`` from ``vae_lite.module`` (dotted = "module.name")."""
    module, name = dotted.split(".")
    return bool(re.search(rf"\b{module}\s*\.\s*{name}\b", code)
                or re.search(rf"from\s+vae_lite\.{module}\s+import[^\n]*\b{name}\b", code))


def _library_names(check):
    from vae_lite import grading

    return [dotted for dotted in getattr(getattr(grading, check), "library_answers", ())]


def regrade_submission(lesson, student, notebook, time_limit):
    """``[Result]`` for one student's ``notebook`` (path), one fresh process at a time."""
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as error:  # noqa: BLE001 - a corrupt submission costs its own points, nobody else's
        return _unreadable(lesson, student, f"the submitted notebook could not be read ({_describe(error)})")
    cells = {}
    for cell in nb.cells:  # the solution cells, found by the instructor's cell ids
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id in lesson.solution_ids:
            cells[grade_id] = cell.source
    order = [grade_id for grade_id in lesson.solution_ids if grade_id in cells]
    child, executed, skipped, results = None, set(), set(), []
    for exercise in lesson.exercises:
        deadline = time.monotonic() + time_limit
        code = cells.get(exercise.solution_id, "")
        flags = [f"the solution code mentions {m!r}: possible tampering with the grader"
                 for m in sorted(set(TAMPERING.findall(code)))]
        used = [d for d in _library_names(exercise.check) if _names_library_function(code, d)]
        message = ""
        try:
            if child is None:
                child, executed = Child(), set()
                child.request({"op": "exec", "code": lesson.imports, "cell": "imports"}, deadline=deadline)
            upto = lesson.solution_ids.index(exercise.solution_id) if exercise.solution_id in lesson.solution_ids else -1
            for grade_id in order:
                if lesson.solution_ids.index(grade_id) <= upto and grade_id not in executed | skipped:
                    skipped.add(grade_id)  # until it has run: a cell that hangs or kills is not run again
                    child.request({"op": "exec", "code": cells[grade_id], "cell": grade_id}, deadline=deadline)
                    skipped.discard(grade_id)
                    executed.add(grade_id)
            header, _ = child.request({"op": "check", "check": exercise.check, "function": exercise.function},
                                      deadline=deadline)
            passed, message = bool(header.get("passed")), str(header.get("message", ""))[:2000]
            if passed:
                _run_hidden(exercise, child, deadline)
        except ChildGone as gone:
            child, passed = None, False
            message = f"{exercise.function}: {gone} ({time_limit:.0f} s per exercise); the process was stopped"
        except AssertionError as error:  # the hidden tests failed
            passed, message = False, f"hidden tests on fresh inputs: {error}"
        except Exception as error:  # noqa: BLE001 - anything else from the hidden tests is a failed test
            passed, message = False, f"hidden tests on fresh inputs: {_describe(error)}"
        if used:
            passed = False
            message = f"uses vae_lite.{used[0]}, the library's own answer to this exercise: write it yourself"
        results.append(Result(student, exercise.grade_id, exercise.points if passed else 0.0, exercise.points,
                              message, flags=flags))
    if child is not None:
        child.close()
    return results


def _unreadable(lesson, student, reason):
    """0 points on every exercise of one submission that could not be graded, each flagged for the instructor."""
    reason = f"{reason}: grade this submission by hand, or ask for a notebook that opens in Jupyter"
    return [Result(student, e.grade_id, 0.0, e.points, reason, flags=[reason]) for e in lesson.exercises]


def _run_hidden(exercise, child, deadline):
    """Run the hidden tests here, with each call of the student's function made in ``child``."""

    def student_function(*args):
        arrays = []
        spec = [_encode_arg(a, arrays) for a in args]
        header, out = child.request({"op": "call", "function": exercise.function, "args": spec}, arrays, deadline)
        if "error" in header:
            raise AssertionError(f"{exercise.function} raised {header['error']}")
        return _decode_output(header["out"], out)

    def drive(driver, *args):
        # a driver (a function of the hidden tests) runs where the student's code does: it builds the
        # student's classes and returns their outputs; the comparison with the references stays here
        arrays = []
        spec = {"driver": _encode_arg(driver, arrays), "args": [_encode_arg(a, arrays) for a in args]}
        header, out = child.request({"op": "drive", **spec}, arrays, deadline)
        if "error" in header:
            raise AssertionError(f"{exercise.function}: {header['error']}")
        return _decode_output(header["out"], out)

    exec(compile(exercise.hidden, f"<hidden tests of {exercise.grade_id}>", "exec"),  # noqa: S102 - our own code
         {"__name__": "__hidden__", exercise.function: student_function, "drive": drive})


def _autograde_points(course, assignment, student, notebook_name):
    """``{grade_id: points}`` from nbgrader's autograded notebook, or {} if there is none."""
    from nbgrader.utils import determine_grade

    path = Path(course) / "autograded" / student / assignment / notebook_name
    if not path.exists():
        return {}
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - no autograded notebook to compare with: no autograde column
        return {}
    points = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            points[meta["grade_id"]] = determine_grade(cell)[0]
    return points


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(out.name, path)


def regrade(course, assignment, jobs=2, time_limit=60.0):
    """Re-grade every submission of ``assignment``; returns ``[Result]`` and writes the CSV files."""
    course = Path(course)
    sources = sorted((course / "source" / assignment).glob("*.ipynb"))
    if len(sources) != 1:
        raise ValueError(f"expected one notebook in {course / 'source' / assignment}, found {len(sources)}")
    lesson = read_lesson(sources[0], assignment)
    submissions = sorted((p.parent.parent.name, p) for p in (course / "submitted").glob(f"*/{assignment}/{lesson.notebook}"))
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(regrade_submission, lesson, student, path, time_limit) for student, path in submissions]
        results = []
        for (student, _), future in zip(submissions, futures, strict=True):
            try:
                results += future.result()
            except Exception as error:  # noqa: BLE001 - one submission must not stop the class's grades
                results += _unreadable(lesson, student, f"the re-grade failed on this submission ({_describe(error)})")
    for student, _ in submissions:
        autograde = _autograde_points(course, assignment, student, lesson.notebook)
        for r in results:
            if r.student == student and r.grade_id in autograde:
                r.autograde = autograde[r.grade_id]
                if r.autograde != r.points:
                    r.flags.append(f"autograde gave {r.autograde:g} points, the clean re-grade {r.points:g}: "
                                   "possible tampering in the notebook")
    out = course / "regrade"
    _write_csv(out / f"{assignment}.csv", ["student", "exercise", "points", "max_points", "autograde_points", "message"],
               [[r.student, r.grade_id, f"{r.points:g}", f"{r.max_points:g}",
                 "" if r.autograde is None else f"{r.autograde:g}", r.message] for r in results])
    _write_csv(out / f"{assignment}-flags.csv", ["student", "exercise", "reason"],
               [[r.student, r.grade_id, flag] for r in results for flag in r.flags])
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", help="e.g. lesson01")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1] / "assignments" / "course",
                        help="nbgrader course folder (default: assignments/course)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per exercise before the process is killed")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        results = regrade(args.course, args.assignment, args.jobs, args.time_limit)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    students = sorted({r.student for r in results})
    for student in students:
        mine = [r for r in results if r.student == student]
        print(f"{student:<20} {sum(r.points for r in mine):g}/{sum(r.max_points for r in mine):g}")
    flagged = [(r.student, r.grade_id, f) for r in results for f in r.flags]
    for student, grade_id, flag in flagged:
        print(f"FLAG {student} {grade_id}: {flag}")
    print(f"{len(students)} submissions in {time.monotonic() - start:.0f} s; "
          f"{args.course / 'regrade' / (args.assignment + '.csv')}")
    print("(autograded exercises only: written answers are graded by hand in formgrader)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
