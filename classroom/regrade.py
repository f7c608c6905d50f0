"""Re-grade every submission of an assignment, each in a sandboxed Python process: the grade of record.

Usage: ``python classroom/regrade.py lesson01 [--course DIR] [--jobs 2] [--time-limit 60] [--memory 4]``

For each ``submitted/<student>/<assignment>/<notebook>.ipynb`` of the nbgrader course folder:

1. A fresh interpreter runs the student's code in a **sandbox** (bubblewrap, ``bwrap``): its
   own user, PID, network, IPC and mount namespaces; it sees the system's and the Python
   environment's folders read-only, the installed ``vae_lite`` package, and a private
   scratch folder, nothing else (not the course folder, no other submission, not the
   grader's files, no network); it dies with the grader, and everything it started dies
   with it; memory, CPU time and file sizes are limited. The interpreter starts without
   ``site`` (``python -I -S``), so no ``.pth`` file runs code in it. Without a working
   ``bwrap`` the re-grade refuses to run unless told ``--unsafe``.
2. That process runs, in an IPython shell as the notebook would (magics included), the
   lesson's import lines (taken from the instructor's ``source/`` version), then the
   student's solution cells and the cells the student added, in the notebook's order;
   never a test cell. Before the student's first cell, each exercise's library answer
   is replaced by a tripwire (:mod:`vae_lite._tripwires`): a call of it while the student's
   function is being graded, by any route, fails that exercise ("uses the library's own
   answer"); a comment, a string or a self-check at the top of a cell never counts.
3. For each exercise, that process runs the visible check helper, captured before the
   student's code ran; its message is the feedback.
4. The exercise's hidden tests, taken from the instructor's version, run HERE, in this
   process, on fresh random inputs: each call of the student's function is sent to the
   student's process, which only returns the outputs (``.npz`` without pickle); the
   references and the comparison never run where the student's code does. Where the
   student writes classes (lesson 6's modules, its training step), the hidden tests send a
   *driver*, a function of theirs (``drive(driver, *arrays)``) that runs in the student's
   process, builds the student's modules from the arrays it is given and returns their
   outputs as arrays; the comparison again happens here.
5. The student's code (comments and strings left out) is scanned for signs of reaching
   into the grader: flagged for the instructor, never a lost point.

An exercise earns its points when the visible check and the hidden tests pass and no
tripwire of its answer was reached. A student's process that runs past ``--time-limit``
seconds on one exercise, exits, dies or floods is killed and replaced: that exercise fails,
the others are graded. A submission that cannot be read fails alone. After every sandbox is
gone, writes, atomically, ``regrade/<assignment>.csv`` (one row per student and exercise,
with nbgrader's autograde points when ``autograded/`` has them),
``regrade/<assignment>-flags.csv`` (disagreements with autograde, code that reaches into the
grader) and ``regrade/<assignment>.sha256`` (both files' SHA-256, also printed: compare with
``--verify``), and prints a summary.
"""

import argparse
import ast
import base64
import builtins
import concurrent.futures
import csv
import functools
import hashlib
import importlib.metadata
import io
import json
import marshal
import os
import re
import select
import shutil
import site
import struct
import subprocess
import sys
import tempfile
import time
import tokenize
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from vae_lite._checking import describe as _describe  # "Type: first line", even for an unprintable error

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
CHECK_CALL = re.compile(r"grading\.(check_\w+)\((\w+)\)")
MAX_FRAME = 512 * 2**20  # bytes: a student's output larger than this fails the exercise
SCRATCH_MIB = 256  # the sandbox's private scratch folder and /tmp, each (memory-backed)
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
    """A frame whose arrays would unpack to more than :data:`MAX_FRAME` bytes, or that holds compressed members."""


def _parse_frame(data):
    # np.savez stores its members uncompressed: a compressed member is refused before anything is unpacked,
    # so a small frame cannot make the grader unpack gigabytes, and the frame's size bounds what it holds
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    if any(m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size for m in members):
        raise FrameTooLarge("the output holds compressed members (a frame the grader never sends or expects)")
    unpacked = sum(info.file_size for info in members)
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


def _text(error):
    """``str(error)``, or a placeholder where the student's exception cannot be printed."""
    try:
        return str(error)
    except BaseException:  # noqa: BLE001 - a __str__ that raises (or exits) is described, not propagated
        return f"<unprintable {type(error).__name__}>"




def _limit_resources(limits):
    """Hard limits on this process and everything it starts: address space, CPU seconds, file size, no core."""
    import resource

    memory = int(limits["memory_gib"] * 2**30)
    for which, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, int(limits["cpu_s"])),
                         (resource.RLIMIT_FSIZE, SCRATCH_MIB * 2**20), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


def child_main(reply_fd, limits):
    """Serve the parent: run cells, run visible checks, call the student's functions."""
    _limit_resources(limits)
    from IPython.core.interactiveshell import InteractiveShell

    from vae_lite import _tripwires, grading

    checks = {name: getattr(grading, name) for name in dir(grading) if name.startswith("check_")}  # before any student code
    replies = os.fdopen(reply_fd, "wb")
    requests = sys.stdin.buffer
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    shell = InteractiveShell.instance(user_ns=namespace)  # the notebook's transformations: magics, `!`, `?`
    while True:
        try:
            header, arrays = _parse_frame(_read_exactly(requests, struct.unpack("<Q", _read_exactly(requests, 8))[0]))
        except EOFError:
            return
        out_arrays, op = [], header["op"]
        try:
            if op == "exec":
                result = shell.run_cell(header["code"], store_history=False, silent=True)
                reply = {"ok": result.success}
            elif op == "wire":  # after the lesson's imports, before the student's first cell
                _tripwires.install(header["answers"])
                _tripwires.rebind(namespace)
                reply = {"ok": True}
            elif op == "check":  # the check arms the tripwires while it calls the student's function
                reply = {"passed": True, "message": str(checks[header["check"]](namespace.get(header["function"])))}
            elif op == "drive":  # the hidden tests' driver: builds the student's modules, returns their outputs
                driver = _decode(header["driver"], arrays)
                args = [_decode(spec, arrays) for spec in header["args"]]
                with _tripwires.armed():
                    out = driver(namespace, *args)
                reply = {"out": _encode_output(out, out_arrays)}
            else:
                fn = namespace.get(header["function"])
                if not callable(fn):
                    raise NameError(f"{header['function']} is not defined as a function")
                args = [_decode(spec, arrays) for spec in header["args"]]
                with _tripwires.armed():
                    out = fn(*args)
                reply = {"out": _encode_output(out, out_arrays)}
        except AssertionError as error:
            reply = {"passed": False, "message": _text(error)} if op == "check" else {"error": _describe(error)}
        except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, a tripwire: all one failure
            reply = {"passed": False, "message": _describe(error)} if op == "check" else {"error": _describe(error)}
        reply["tripped"] = _tripwires.tripped()
        _write_frame(replies, reply, out_arrays)


# ------------------------------------------------------------------ this process: the grader
class ChildGone(Exception):
    """The student's process ran out of time, exited or died; it has been killed."""


class SandboxUnavailable(RuntimeError):
    """No working bubblewrap on this machine: the re-grade will not run students' code unconfined."""


# The child starts without `site` (no .pth file runs), so it is given the package folders itself.
_BOOT = ("import sys; paths, script = sys.argv[1], sys.argv[2]; sys.path[:0] = paths.split({sep!r}); "
         "sys.argv = [script, *sys.argv[3:]]; import runpy; runpy.run_path(script, run_name='__main__')")


def _package_paths():
    """The folders the child needs on ``sys.path``: this environment's site-packages and vae_lite's parent."""
    import vae_lite

    package = Path(vae_lite.__file__).resolve().parent
    return [*dict.fromkeys([*site.getsitepackages(), str(package.parent)])], package


def _sandbox_binds(paths, package):
    """bwrap arguments: the system and the Python environment read-only, vae_lite alone from its checkout."""
    args = ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):  # merged /usr: links; otherwise the folders themselves
        path = Path("/") / link
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/fonts"):
        args += ["--ro-bind-try", path, path]
    prefixes = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, Path(sys.executable).resolve().parent.parent)}
    folders = {*prefixes, package, *(Path(p).resolve() for p in paths if Path(p).resolve() != package.parent)}
    for folder in sorted(folders):  # a folder inside another is already there
        if folder.is_dir() and not any(other != folder and other in folder.parents for other in folders):
            if folder != Path("/usr") and Path("/usr") not in folder.parents:  # /usr is already there
                args += ["--ro-bind", str(folder), str(folder)]
    return args


def child_command(write_fd, limits, sandbox=True):
    """The command that starts one student's process (inside bwrap unless ``sandbox`` is False)."""
    paths, package = _package_paths()
    python = [sys.executable, "-I", "-S", "-c", _BOOT.format(sep=os.pathsep), os.pathsep.join(paths)]
    limits = json.dumps(limits)
    if not sandbox:
        return [*python, str(Path(__file__).resolve()), "--child", str(write_fd), limits]
    # the private /tmp first: an environment or a checkout under /tmp is then bound inside it, not hidden by it
    return ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(SCRATCH_MIB * 2**20), "--tmpfs", "/tmp",
            "--size", str(SCRATCH_MIB * 2**20), "--tmpfs", "/scratch",
            *_sandbox_binds(paths, package),
            "--ro-bind", str(Path(__file__).resolve()), "/grader/regrade.py", "--chdir", "/scratch",
            "--", *python, "/grader/regrade.py", "--child", str(write_fd), limits]


@functools.cache
def sandbox_problem():
    """Why the sandbox cannot be used on this machine, or None when it works."""
    if shutil.which("bwrap") is None:
        return ("bubblewrap (`bwrap`) is not installed: on Debian/Ubuntu `sudo apt-get install bubblewrap`, "
                "on Fedora `sudo dnf install bubblewrap`")
    probe = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                            "--dev", "/dev", "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return (f"bwrap cannot create a sandbox here ({probe.stderr.strip()[:200]}): unprivileged user namespaces "
                "are probably disabled (sysctl kernel.unprivileged_userns_clone=1, or "
                "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04)")
    return None


class Child:
    """One fresh interpreter, in its sandbox, that runs one student's code."""

    def __init__(self, limits, sandbox=True):
        self.folder = tempfile.TemporaryDirectory(prefix="regrade-")  # its working folder when not sandboxed
        read_fd, write_fd = os.pipe()
        home = "/scratch" if sandbox else self.folder.name
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "MPLCONFIGDIR": f"{home}/.matplotlib", "MPLBACKEND": "Agg",
               "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            child_command(write_fd, limits, sandbox), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(write_fd,), cwd=self.folder.name, env=env, start_new_session=True)
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
        except (OSError, EOFError, ValueError, KeyError, MemoryError, struct.error, zipfile.BadZipFile) as error:
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
    given: set = field(default_factory=set)  # the ids and sources of the instructor's cells: the rest a student added


def read_lesson(source_nb, name):
    """The exercises of the instructor's notebook ``source_nb`` (a path)."""
    nb = nbformat.read(source_nb, as_version=4)
    imports, exercises, solution_ids = [], [], []
    given = {cell.get("id") for cell in nb.cells if cell.get("id")} | {cell.source.strip() for cell in nb.cells}
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
    return Lesson(name, Path(source_nb).name, "\n".join(dict.fromkeys(imports)), exercises, solution_ids, given)


@dataclass
class Result:
    student: str
    grade_id: str
    points: float
    max_points: float
    message: str
    autograde: object = None  # nbgrader's points, or None
    flags: list = field(default_factory=list)


def _library_names(check):
    from vae_lite import grading

    return [dotted for dotted in getattr(getattr(grading, check), "library_answers", ())]


def _code_only(source):
    """``source`` without its comments and string literals (what the tampering scan reads)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return source
    return " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING))


def _program(lesson, nb):
    """``[(label, source, position of the next graded test cell)]``: the student's solution cells and the cells
    the student added, in the notebook's order; and ``{test grade_id: position}``."""
    program, tests = [], {}
    for position, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in lesson.solution_ids:
            program.append((grade_id, cell.source, position))
        elif grade_id:
            tests[grade_id] = position
        elif cell.get("id") not in lesson.given and cell.source.strip() not in lesson.given and cell.source.strip():
            program.append((f"added cell {position + 1}", cell.source, position))
    return program, tests


def regrade_submission(lesson, student, notebook, time_limit, limits=None, sandbox=True):
    """``[Result]`` for one student's ``notebook`` (path), one fresh sandboxed process at a time."""
    limits = limits or {"memory_gib": 4.0, "cpu_s": 3600}
    try:
        nb = nbformat.read(notebook, as_version=4)
        program, tests = _program(lesson, nb)
    except Exception as error:  # noqa: BLE001 - a corrupt submission costs its own points, nobody else's
        return _unreadable(lesson, student, f"the submitted notebook could not be read ({_describe(error)})")
    solutions = {label: source for label, source, _ in program}
    answers = sorted({d for e in lesson.exercises for d in _library_names(e.check)})
    child, executed, broken, results = None, set(), set(), []
    for exercise in lesson.exercises:
        deadline = time.monotonic() + time_limit
        code = _code_only(solutions.get(exercise.solution_id, ""))
        flags = [f"the solution code mentions {m!r}: possible tampering with the grader"
                 for m in sorted(set(TAMPERING.findall(code)))]
        own = set(_library_names(exercise.check))
        upto = tests.get(exercise.grade_id, max((p for label, _, p in program if label == exercise.solution_id),
                                                default=-1))
        message, tripped = "", []
        try:
            if child is None:  # the first, or a fresh one after a process was stopped: the cells run again
                child, executed = Child(limits, sandbox), set()
                child.request({"op": "exec", "code": lesson.imports}, deadline=deadline)
                child.request({"op": "wire", "answers": answers}, deadline=deadline)
            for label, source, position in program:
                if position < upto and label not in executed | broken:
                    broken.add(label)  # until it has run: a cell that hangs or kills its process is not run again
                    child.request({"op": "exec", "code": source}, deadline=deadline)
                    broken.discard(label)
                    executed.add(label)
            header, _ = child.request({"op": "check", "check": exercise.check, "function": exercise.function},
                                      deadline=deadline)
            passed, message = bool(header.get("passed")), str(header.get("message", ""))[:2000]
            tripped = header.get("tripped", [])
            if passed and not own & set(tripped):
                tripped = _run_hidden(exercise, child, deadline)
        except ChildGone as gone:
            child, passed = None, False
            message = f"{exercise.function}: {gone} ({time_limit:.0f} s per exercise); the process was stopped"
        except AssertionError as error:  # the hidden tests failed
            passed, message = False, f"hidden tests on fresh inputs: {error}"
        except Exception as error:  # noqa: BLE001 - anything else from the hidden tests is a failed test
            passed, message = False, f"hidden tests on fresh inputs: {_describe(error)}"
        used = [d for d in tripped if d in own]
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
    """Run the hidden tests here, with each call of the student's function made in ``child``; returns the
    tripwires reached (an AssertionError when a test fails)."""
    tripped = []

    def student_function(*args):
        arrays = []
        spec = [_encode_arg(a, arrays) for a in args]
        header, out = child.request({"op": "call", "function": exercise.function, "args": spec}, arrays, deadline)
        tripped[:] = header.get("tripped", [])
        if "error" in header:
            raise AssertionError(f"{exercise.function} raised {header['error']}")
        return _decode_output(header["out"], out)

    def drive(driver, *args):
        # a driver (a function of the hidden tests) runs where the student's code does: it builds the
        # student's classes and returns their outputs; the comparison with the references stays here
        arrays = []
        spec = {"driver": _encode_arg(driver, arrays), "args": [_encode_arg(a, arrays) for a in args]}
        header, out = child.request({"op": "drive", **spec}, arrays, deadline)
        tripped[:] = header.get("tripped", [])
        if "error" in header:
            raise AssertionError(f"{exercise.function}: {header['error']}")
        return _decode_output(header["out"], out)

    exec(compile(exercise.hidden, f"<hidden tests of {exercise.grade_id}>", "exec"),  # noqa: S102 - our own code
         {"__name__": "__hidden__", exercise.function: student_function, "drive": drive})
    return tripped


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


def foreign_startup_files():
    """``.pth`` files of this environment that no installed package recorded (with its hash, where the package's
    RECORD has one): a submission run unconfined (nbgrader autograde) can plant one, and it runs in every later
    Python process of the environment, this one included."""
    recorded = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.name.endswith(".pth"):
                recorded.setdefault(str(dist.locate_file(file)), []).append(file.hash)
    foreign = []
    for folder in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()]):
        for path in sorted(Path(folder).glob("*.pth")):
            digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
            hashes = recorded.get(str(path))
            if hashes is None or not any(h is None or h.value == digest for h in hashes):
                foreign.append(path)
    return foreign


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(course, assignment):
    """``[(file, ok)]``: whether each file matches the digest the re-grade wrote in ``regrade/<assignment>.sha256``."""
    folder = Path(course) / "regrade"
    lines = (folder / f"{assignment}.sha256").read_text().split("\n")
    pairs = [line.split("  ", 1) for line in lines if line.strip()]
    return [(name, (folder / name).exists() and _digest(folder / name) == digest) for digest, name in pairs]


def regrade(course, assignment, jobs=2, time_limit=60.0, memory_gib=4.0, unsafe=False):
    """Re-grade every submission of ``assignment``; returns ``[Result]`` and writes the CSV files.

    Raises :class:`SandboxUnavailable` where bubblewrap does not work, unless ``unsafe`` (then the students'
    processes run unconfined, as the instructor's user); ``ValueError`` for a course folder it cannot use, or
    an environment holding a ``.pth`` file no package installed.
    """
    problem = sandbox_problem()
    if problem and not unsafe:
        raise SandboxUnavailable(f"the sandbox is unavailable: {problem}. Students' code would run as you, with "
                                 "your files; re-run with --unsafe to grade anyway")
    foreign = foreign_startup_files()
    if foreign and not unsafe:
        raise ValueError(f"{', '.join(map(str, foreign))}: a .pth file no installed package recorded; it runs code "
                         "in every Python process of this environment (a submission run by nbgrader autograde can "
                         "plant one). Read and delete it, or re-create the environment, then re-grade")
    course = Path(course)
    sources = sorted((course / "source" / assignment).glob("*.ipynb"))
    if len(sources) != 1:
        raise ValueError(f"expected one notebook in {course / 'source' / assignment}, found {len(sources)}")
    lesson = read_lesson(sources[0], assignment)
    submissions = sorted((p.parent.parent.name, p) for p in (course / "submitted").glob(f"*/{assignment}/{lesson.notebook}"))
    limits = {"memory_gib": memory_gib, "cpu_s": time_limit * (len(lesson.exercises) + 1) * (os.cpu_count() or 1)}
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(regrade_submission, lesson, student, path, time_limit, limits, not unsafe)
                   for student, path in submissions]
        results = []
        for (student, _), future in zip(submissions, futures, strict=True):
            try:
                results += future.result()
            except Exception as error:  # noqa: BLE001 - one submission must not stop the class's grades
                results += _unreadable(lesson, student, f"the re-grade failed on this submission ({_describe(error)})")
    # every sandbox is gone now (each submission closes its own): only this process writes the results
    for student, _ in submissions:
        autograde = _autograde_points(course, assignment, student, lesson.notebook)
        if not autograde and (course / "autograded").is_dir():
            for r in results:
                if r.student == student:
                    r.flags.append("nbgrader autograde left no graded notebook (its kernel died?): the gradebook "
                                   "has no points for it, the re-grade's stand")
        for r in results:
            if r.student == student and r.grade_id in autograde:
                r.autograde = autograde[r.grade_id]
                if r.autograde != r.points:
                    r.flags.append(f"autograde gave {r.autograde:g} points, the clean re-grade {r.points:g}: "
                                   "possible tampering in the notebook")
    if unsafe and problem:
        for r in results:
            r.flags.append(f"graded without a sandbox (--unsafe): {problem}")
    out = course / "regrade"
    grades, flags = out / f"{assignment}.csv", out / f"{assignment}-flags.csv"
    _write_csv(grades, ["student", "exercise", "points", "max_points", "autograde_points", "message"],
               [[r.student, r.grade_id, f"{r.points:g}", f"{r.max_points:g}",
                 "" if r.autograde is None else f"{r.autograde:g}", r.message] for r in results])
    _write_csv(flags, ["student", "exercise", "reason"], [[r.student, r.grade_id, flag] for r in results for flag in r.flags])
    _write_text(out / f"{assignment}.sha256", "".join(f"{_digest(p)}  {p.name}\n" for p in (grades, flags)))
    return results


def _write_text(path, text):
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as out:
        out.write(text)
    os.replace(out.name, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(int(argv[1]), json.loads(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", help="e.g. lesson01")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1] / "assignments" / "course",
                        help="nbgrader course folder (default: assignments/course)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per exercise before the process is killed")
    parser.add_argument("--memory", type=float, default=4.0, help="GiB of address space per student's process (default 4)")
    parser.add_argument("--unsafe", action="store_true",
                        help="grade without the sandbox where bubblewrap is unavailable (students' code runs as you)")
    parser.add_argument("--verify", action="store_true",
                        help="only check regrade/<assignment>.csv and -flags.csv against the digests the re-grade printed")
    args = parser.parse_args(argv)
    if args.verify:
        try:
            checked = verify(args.course, args.assignment)
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for name, ok in checked:
            print(f"{'ok      ' if ok else 'CHANGED '} {name}")
        return 0 if all(ok for _, ok in checked) else 1
    start = time.monotonic()
    try:
        results = regrade(args.course, args.assignment, args.jobs, args.time_limit, args.memory, args.unsafe)
    except (ValueError, OSError, SandboxUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    students = sorted({r.student for r in results})
    for student in students:
        mine = [r for r in results if r.student == student]
        print(f"{student:<20} {sum(r.points for r in mine):g}/{sum(r.max_points for r in mine):g}")
    flagged = [(r.student, r.grade_id, f) for r in results for f in r.flags]
    for student, grade_id, flag in flagged:
        print(f"FLAG {student} {grade_id}: {flag}")
    folder = args.course / "regrade"
    print(f"{len(students)} submissions in {time.monotonic() - start:.0f} s; {folder / (args.assignment + '.csv')}")
    print((folder / f"{args.assignment}.sha256").read_text().rstrip())
    print("(autograded exercises only: written answers are graded by hand in formgrader)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
