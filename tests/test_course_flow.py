"""The whole nbgrader course flow, with nbgrader's own commands, on lessons 1 and 4.

``generate_assignment`` -> submissions placed as ``nbgrader collect`` leaves them ->
``nbgrader autograde`` -> the gradebook's scores -> ``generate_feedback``, and
``classroom/regrade.py`` on the same submissions. Synthetic students: correct, blank, one
exercise done, a typical wrong answer, an endless loop, a function that kills the kernel
(``os._exit(0)``), two ways of tampering with the grader in the student's kernel, and the
library alias. Each must get exactly its honest points from autograde and from the regrade.

To keep CI short, the lessons are trimmed to their import lines and exercise cells (the rest
of a lesson cannot change a grade: it neither defines nor tests the exercises).
"""

import ast
import csv
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "classroom"))
import build_assignments  # noqa: E402 - lives in classroom/, not in the package
import regrade  # noqa: E402

LESSONS = {"lesson01": "01_data_likelihood.ipynb", "lesson04": "04_elbo.ipynb"}

# per exercise: the student's code for each behaviour (the cell's whole source)
CODE = {
    "ex01_image_log_lik": {
        "correct": "def image_log_likelihood(x, p):\n    return jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))",
        "wrong": "def image_log_likelihood(x, p):\n    return -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))",
        "alias": "image_log_likelihood = factorization.image_log_likelihood",
        "check": "check_image_log_likelihood",
        "name": "image_log_likelihood",
    },
    "ex01_shared_theta": {
        "correct": "def shared_theta_log_marginal(x, a, b):\n    k, n = jnp.sum(x), x.shape[0]\n"
                   "    return betaln(a + k, b + n - k) - betaln(a, b)",
        "check": "check_shared_theta_log_marginal",
        "name": "shared_theta_log_marginal",
    },
    "ex04_elbo": {
        "correct": "def elbo_estimate(key, log_joint, mu, log_var, num_samples):\n"
                   "    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))\n"
                   "    return jnp.mean(jax.vmap(log_joint)(z) - distributions.log_normal_diag(z, mu, log_var))",
        "wrong": "def elbo_estimate(key, log_joint, mu, log_var, num_samples):\n"
                 "    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))\n"
                 "    return jnp.mean(jax.vmap(log_joint)(z))",
        "check": "check_elbo",
        "name": "elbo_estimate",
    },
    "ex04_kl": {
        "correct": "def kl_to_standard_normal(mu, log_var):\n"
                   "    return 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var)",
        "alias": "kl_to_standard_normal = distributions.kl_normal_std",
        "check": "check_kl_normal_std",
        "name": "kl_to_standard_normal",
    },
}
ENDLESS = "def {name}(*args):\n    while True:\n        pass"
KILL = "import os\n\n\ndef {name}(*args):\n    os._exit(0)"
REBIND = "from vae_lite import grading as _g\n\n_g.{check} = lambda *a, **k: 'passed'\n\n\ndef {name}(*args):\n" \
         "    raise NotImplementedError()"
STACK = ("import inspect\n\nimport numpy as np\n\n\ndef {name}(*args):\n    for info in inspect.stack():\n"
         "        for value in list(info.frame.f_locals.values()):\n"
         "            if isinstance(value, np.ndarray) and value.flags.writeable:\n                value[...] = 0\n"
         "    return jnp.float32(0.0)")


def students(first, second, points):
    """``{student: ({solution grade_id: code or None (blank)}, honest points)}`` for one lesson, from its first two
    exercises (any later one is left blank by every student).

    ``points``: ``{solution grade_id: the points of its graded test cell}`` (exercises are
    weighted by difficulty, so the honest total depends on which exercise a student got right).
    """
    a, b = CODE[first], CODE[second]
    fill = {"name": a["name"], "check": a["check"]}
    wrong_first = "wrong" in a
    aliased = (first, a) if "alias" in a else (second, b)
    other = second if aliased[0] == first else first
    return {
        "correct": ({first: a["correct"], second: b["correct"]}, points[first] + points[second]),
        "blank": ({}, 0),
        "one_done": ({first: a["correct"]}, points[first]),
        "wrong": ({first: a["wrong"], second: b["correct"]} if wrong_first else {second: b["wrong"], first: a["correct"]},
                  points[second] if wrong_first else points[first]),
        "endless": ({first: ENDLESS.format(**fill), second: b["correct"]}, points[second]),
        "kills_kernel": ({first: KILL.format(**fill), second: b["correct"]}, points[second]),
        "rebinds_check": ({first: REBIND.format(**fill),
                           second: REBIND.format(name=b["name"], check=b["check"])}, 0),
        "overwrites_inputs": ({first: STACK.format(**fill), second: b["correct"]}, points[second]),
        "library_alias": ({aliased[0]: aliased[1]["alias"], other: CODE[other]["correct"]}, points[other]),
    }


# a written answer graded by hand, added to one trimmed lesson: (assignment, grade_id, points, a student's answer)
WRITTEN = ("lesson04", "ex04_written_check", 2, "The KL is zero only when q equals the prior, so it is never negative.")


def written_answer_cells():
    """A question and a manually graded written answer in the lessons' format (a model answer inside)."""
    question = nbformat.v4.new_markdown_cell("### Written answer (graded by your instructor)\nWhy is a KL never negative?")
    answer = nbformat.v4.new_markdown_cell("**Model answer.** By Jensen's inequality, since the log is concave.")
    answer.metadata["nbgrader"] = {"grade": True, "grade_id": WRITTEN[1], "locked": False, "points": WRITTEN[2],
                                   "schema_version": 3, "solution": True, "task": False}
    return [question, answer]


def trimmed_lesson(path):
    """The lesson's import lines and its exercise cells (solution + graded test), nothing else."""
    nb = nbformat.read(path, as_version=4)
    imports, cells = [], []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.metadata.get("nbgrader"):
            cells.append(cell)
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        imports += [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    nb.cells = [nbformat.v4.new_code_cell("\n".join(dict.fromkeys(imports))), *cells]
    return nb


def make_course(folder, num_copies=1):
    """A course with the trimmed lessons, released, and every synthetic student's submission."""
    notebooks = folder / "notebooks"
    notebooks.mkdir(parents=True)
    for name, file_name in LESSONS.items():
        nb = trimmed_lesson(ROOT / "notebooks" / file_name)
        if name == WRITTEN[0]:
            nb.cells += written_answer_cells()
        nbformat.write(nb, notebooks / file_name)
    course = folder / "course"
    assignments = build_assignments.build(notebooks, course)
    honest = {}
    for assignment in assignments:
        released = nbformat.read(assignment.release, as_version=4)
        weights = {grade_id.removesuffix("_test"): p for grade_id, p in assignment.exercises}
        for student, (code, points) in students(*list(weights)[:2], weights).items():
            for copy in range(num_copies):
                name = student if num_copies == 1 else f"{student}{copy:02d}"
                nb = nbformat.from_dict(released)
                answers = {WRITTEN[1]: WRITTEN[3]} if student == "correct" and assignment.name == WRITTEN[0] else {}
                for cell in nb.cells:
                    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                    if grade_id in code or grade_id in answers:
                        cell.source = {**code, **answers}[grade_id]
                target = course / "submitted" / name / assignment.name
                target.mkdir(parents=True)
                nbformat.write(nb, target / assignment.release.name)
                (target / "timestamp.txt").write_text("2026-11-27 12:00:00.000000 UTC")
                honest[(assignment.name, name)] = points
    return course, honest


# Where bubblewrap cannot sandbox (no user namespaces), both graders run unconfined, as the README's
# --unsafe does; the route students below need the sandbox and are skipped there.
UNSAFE = regrade.sandbox_problem() is not None


def autograde(course, assignment, fails_for=()):
    """``python classroom/autograde.py <assignment> --force``: nbgrader autograde in its sandbox, as the README says.

    ``fails_for``: students whose kernel dies, for which nbgrader reports an error (and exits 1) and grades nothing.
    """
    command = [sys.executable, str(ROOT / "classroom" / "autograde.py"), assignment, "--course", str(course), "--force"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(command + ["--unsafe"] * UNSAFE, env=env, capture_output=True, text=True, timeout=900)
    errors = set(re.findall(r"error processing assignment '\w+' for student '(\w+)'", done.stdout + done.stderr))
    assert errors == set(fails_for), done.stdout[-2000:] + done.stderr[-4000:]
    assert done.returncode == (1 if fails_for else 0), done.stdout[-2000:] + done.stderr[-4000:]


def nbgrader(course, *args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_course_flow_autograde_regrade_and_feedback(tmp_path):
    start = time.monotonic()
    course, honest = make_course(tmp_path)
    with ThreadPoolExecutor(2) as pool:  # one autograde per lesson: the CI has 2 cores
        list(pool.map(lambda a: autograde(course, a), LESSONS))
    from nbgrader.api import Gradebook

    autograded = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for assignment, student in honest:
            autograded[(assignment, student)] = gradebook.find_submission(assignment, student).score
    regraded = {}
    for assignment in LESSONS:
        results = regrade.regrade(course, assignment, jobs=2, time_limit=60, unsafe=UNSAFE)
        for r in results:
            regraded[(assignment, r.student)] = regraded.get((assignment, r.student), 0) + r.points
    report = "\n".join(f"{key}: honest {honest[key]}, autograde {autograded[key]}, regrade {regraded[key]}"
                       for key in sorted(honest))
    print(report)
    assert autograded == honest, report
    assert regraded == honest, report
    # the written answer: nbgrader leaves it for manual grading where the student wrote one, and
    # scores it 0 on its own where the cell still holds the blank "YOUR ANSWER HERE"
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        source = nbformat.read(course / "source" / WRITTEN[0] / LESSONS[WRITTEN[0]], as_version=4)
        auto_points = sum(build_assignments.nbgrader_meta(c)["points"] for _, c in build_assignments.graded_tests(source))
        assert gradebook.find_assignment(WRITTEN[0]).max_score == auto_points + WRITTEN[2]
        assert gradebook.find_submission(WRITTEN[0], "correct").needs_manual_grade
        assert not gradebook.find_submission(WRITTEN[0], "blank").needs_manual_grade
        written = gradebook.find_grade(WRITTEN[1], "04_elbo", WRITTEN[0], "correct")
        assert written.auto_score is None and written.manual_score is None and written.max_score == WRITTEN[2]
    flags = (course / "regrade" / "lesson01-flags.csv").read_text()
    assert "rebinds_check" in flags and "overwrites_inputs" in flags and "correct," not in flags

    nbgrader(course, "generate_feedback", "lesson04", "--force")
    feedback = (course / "feedback" / "wrong" / "lesson04" / "04_elbo.html").read_text()
    assert "forgot the entropy term" in feedback
    # nbgrader_config.py: the feedback shows the scores and the checks' messages, never the hidden tests
    # (nor the tracebacks that quote them), also where a hidden test itself failed (rebinds_check)
    assert f"04_elbo (Score: {float(honest[('lesson04', 'wrong')])} / " in feedback
    bypassed = (course / "feedback" / "rebinds_check" / "lesson04" / "04_elbo.html").read_text()
    assert "NotImplementedError" in bypassed
    for page in (feedback, bypassed):
        for hidden in ("BEGIN HIDDEN TESTS", "_hidden_test", "secrets", "most recent call last"):
            assert hidden not in page, hidden
    print(f"course flow: {time.monotonic() - start:.0f} s")


# ------------------------------------------------------------ lesson 6: the student's own networks, loss and step
TRAINING_LESSON = ("lesson06", "06_training_a_vae.ipynb")
STEP = ("@nnx.jit\ndef train_step(model, optimizer, x, key):\n"
        "    loss, grads = nnx.value_and_grad(vae_loss)(model, x, key)\n"
        "    optimizer.update(model, grads)\n    return loss")
TRAINING_CODE = {
    "ex06_vae_loss": "def negative_elbo_loss(x, logits, mu, log_var):\n"
                     "    kl = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)\n"
                     "    return -jnp.mean(distributions.log_bernoulli(x, logits) - kl)",
    "ex06_encoder": "class Encoder(nnx.Module):\n    def __init__(self, num_pixels, hidden, latent_dim, *, rngs):\n"
                    "        self.hidden = nnx.Linear(num_pixels, hidden, rngs=rngs)\n"
                    "        self.mu = nnx.Linear(hidden, latent_dim, rngs=rngs)\n"
                    "        self.log_var = nnx.Linear(hidden, latent_dim, rngs=rngs)\n\n    def __call__(self, x):\n"
                    "        h = jax.nn.relu(self.hidden(x))\n        return self.mu(h), self.log_var(h)",
    "ex06_decoder": "class Decoder(nnx.Module):\n    def __init__(self, latent_dim, hidden, num_pixels, *, rngs):\n"
                    "        self.hidden = nnx.Linear(latent_dim, hidden, rngs=rngs)\n"
                    "        self.logits = nnx.Linear(hidden, num_pixels, rngs=rngs)\n\n    def __call__(self, z):\n"
                    "        return self.logits(jax.nn.relu(self.hidden(z)))",
    "ex06_model_loss": "def vae_loss(model, x, key):\n    mu, log_var = model.encoder(x)\n"
                       "    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)\n"
                       "    return negative_elbo_loss(x, model.decoder(z), mu, log_var)",
    "ex06_train_step": STEP,
}
NO_KL_LOSS = ("def vae_loss(model, x, key):\n    mu, log_var = model.encoder(x)\n"
              "    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)\n"
              "    return -jnp.mean(distributions.log_bernoulli(x, model.decoder(z)))")
NEVER_UPDATES = ("@nnx.jit\ndef train_step(model, optimizer, x, key):\n"
                 "    loss, grads = nnx.value_and_grad(vae_loss)(model, x, key)\n    return loss")


def training_students(points):
    """``{student: ({grade_id: code}, honest points)}``; a step on a loss without its KL term trains the wrong
    objective, so it fails with the loss (the step is compared with a correct step)."""
    everything = sum(points.values())
    return {
        "correct": (TRAINING_CODE, everything),
        "blank": ({}, 0),
        "wrong_loss": ({**TRAINING_CODE, "ex06_model_loss": NO_KL_LOSS},
                       everything - points["ex06_model_loss"] - points["ex06_train_step"]),
        "never_updates": ({**TRAINING_CODE, "ex06_train_step": NEVER_UPDATES}, everything - points["ex06_train_step"]),
    }


@pytest.mark.slow
def test_training_lesson_grades_students_networks_loss_and_step(tmp_path):
    """Lesson 6 through nbgrader's autograde and the clean re-grade, whose hidden tests drive the student's
    classes in the student's process (regrade's ``drive``): each student gets exactly the honest points."""
    start = time.monotonic()
    assignment_name, file_name = TRAINING_LESSON
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(trimmed_lesson(ROOT / "notebooks" / file_name), notebooks / file_name)
    course = tmp_path / "course"
    (assignment,) = build_assignments.build(notebooks, course)
    assert assignment.name == assignment_name
    points = {grade_id.removesuffix("_test"): p for grade_id, p in assignment.exercises}
    assert set(points) == set(TRAINING_CODE)
    released = nbformat.read(assignment.release, as_version=4)
    honest = {}
    for student, (code, total) in training_students(points).items():
        nb = nbformat.from_dict(released)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in code:
                cell.source = code[grade_id]
        target = course / "submitted" / student / assignment_name
        target.mkdir(parents=True)
        nbformat.write(nb, target / file_name)
        (target / "timestamp.txt").write_text("2026-11-27 12:00:00.000000 UTC")
        honest[student] = total
    autograde(course, assignment_name)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        autograded = {s: gradebook.find_submission(assignment_name, s).score for s in honest}
    regraded = {}
    for r in regrade.regrade(course, assignment_name, jobs=2, time_limit=60, unsafe=UNSAFE):
        regraded[r.student] = regraded.get(r.student, 0) + r.points
    report = "\n".join(f"{s}: honest {honest[s]}, autograde {autograded[s]}, regrade {regraded[s]}" for s in honest)
    print(report)
    assert autograded == honest, report
    assert regraded == honest, report
    print(f"training lesson course flow: {time.monotonic() - start:.0f} s")


# ------------------------------------------------------------ students who go after the grade itself (lesson 4)
MARKER = "vae-lite-route-student"  # in the command line of every process a route student starts
KL, ELBO = "ex04_kl", "ex04_elbo"
FORGER = '''import subprocess
import sys

FORGE = """
import pathlib, time
csv = pathlib.Path({course!r}) / "regrade" / "lesson04.csv"
for _ in range(1500):
    if csv.exists():
        rows = csv.read_text().splitlines()
        csv.write_text("\\\\n".join(r.replace(",0,", ",3,") if r.startswith("forger,") else r for r in rows) + "\\\\n")
        (csv.parent / "lesson04-flags.csv").write_text("student,exercise,reason\\\\n")
        break
    time.sleep(0.2)
"""
subprocess.Popen([sys.executable, "-c", FORGE, "{marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kl_to_standard_normal(mu, log_var):
    raise NotImplementedError()'''
PLANTER = '''import site

for folder in site.getsitepackages():
    try:
        with open(folder + "/zz_vae_lite_planted.pth", "w") as pth:
            pth.write("import sys  # {marker}\\n")
    except OSError:
        pass


''' + CODE[KL]["correct"]
COPYCAT = '''import glob
import json

for path in glob.glob({course!r} + "/submitted/correct/lesson04/*.ipynb"):
    for cell in json.load(open(path))["cells"]:
        if "def kl_to_standard_normal" in "".join(cell["source"]):
            exec("".join(cell["source"]))'''
ALIASES = {
    "getattr_alias": 'def kl_to_standard_normal(mu, log_var):\n    return getattr(distributions, "kl_normal_std")(mu, log_var)',
    "import_alias": 'def kl_to_standard_normal(mu, log_var):\n'
                    '    return __import__("vae_lite.distributions", fromlist=["_"]).kl_normal_std(mu, log_var)',
    "vars_alias": 'def kl_to_standard_normal(mu, log_var):\n    return vars(distributions)["kl_normal_std"](mu, log_var)',
    "code_alias": "import types\n\nkl_to_standard_normal = types.FunctionType(distributions.kl_normal_std.__code__, "
                  "vars(distributions))",
}
NAMES_LIBRARY = ("# the same formula as distributions.kl_normal_std, written out\n" + CODE[KL]["correct"]
                 + "\n\n\nassert jnp.allclose(kl_to_standard_normal(jnp.ones(3), jnp.zeros(3)), "
                 "distributions.kl_normal_std(jnp.ones(3), jnp.zeros(3)))  # my self-check")
HELPER_CELL = "def half_sum(terms):\n    return 0.5 * jnp.sum(terms)"
USES_HELPER = "def kl_to_standard_normal(mu, log_var):\n    return half_sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var)"
KILL_NOW = "import os\n\n\ndef elbo_estimate(*args):\n    os.kill(os.getpid(), 9)"
TIMEIT = CODE[KL]["correct"] + "\n\n\n%timeit -n 2 -r 1 kl_to_standard_normal(jnp.ones(3), jnp.zeros(3))"
FRAME_BOMB = '''import io
import os
import struct
import sys
import time
import zipfile

import numpy as np


def kl_to_standard_normal(mu, log_var):
    # the re-grade's reply pipe: a 1 GiB array in a ~1 MB deflated frame
    reply = int(sys.argv[sys.argv.index("--child") + 1])
    frame = io.BytesIO()
    with zipfile.ZipFile(frame, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("header", np.array('{"out": {"array": 0}}')), ("a0", np.zeros(2**27))):
            member = io.BytesIO()
            np.save(member, array)
            archive.writestr(name + ".npy", member.getvalue())
    os.write(reply, struct.pack("<Q", len(frame.getvalue())) + frame.getvalue())
    time.sleep(600)'''


def route_students(course):
    """``{student: ({grade_id: code}, honest points, whether nbgrader's autograde can be fooled)}``; each
    student also writes the correct ELBO estimator (2 points) unless said otherwise."""
    elbo, kl = CODE[ELBO]["correct"], CODE[KL]["correct"]
    fill = {"course": str(course), "marker": MARKER}
    students = {
        "correct": ({ELBO: elbo, KL: kl}, 5, False),
        "forger": ({ELBO: elbo, KL: FORGER.format(**fill)}, 2, False),
        "pth_planter": ({ELBO: elbo, KL: PLANTER.format(**fill)}, 5, False),
        "copycat": ({ELBO: elbo, KL: COPYCAT.format(**fill)}, 2, True),
        "names_library": ({ELBO: elbo, KL: NAMES_LIBRARY}, 5, False),
        "helper_in_added_cell": ({ELBO: elbo, KL: USES_HELPER, "added": (KL, HELPER_CELL)}, 5, False),
        # the grader's process dies in the first exercise: a fresh one runs the added cell again for the second
        "kills_then_needs_helper": ({ELBO: KILL_NOW, KL: USES_HELPER, "added": (ELBO, HELPER_CELL)}, 3, True),
        "timeit_line": ({ELBO: elbo, KL: TIMEIT}, 5, False),
        "frame_bomb": ({ELBO: elbo, KL: FRAME_BOMB}, 2, False),
    }
    students.update({name: ({ELBO: elbo, KL: code}, 2, True) for name, code in ALIASES.items()})
    return students


def leftover_processes():
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if MARKER in line and "ps -eo" not in line]


def planted_files():
    import site

    return [p for folder in site.getsitepackages() for p in Path(folder).glob("zz_vae_lite_planted*")]


@pytest.mark.slow
def test_sandboxed_grading_holds_against_students_who_go_after_the_grade(tmp_path):
    """Lesson 4 through the sandboxed autograde and the sandboxed re-grade, with students who forge the CSV
    from a detached process, plant a .pth file, copy a classmate at grading time, reach the library's
    answer through getattr/__import__/vars/its code object, flood the reply pipe with a compressed frame,
    or hand in a corrupt notebook; and honest students whose comment and self-check name the library,
    whose helper lives in a cell they added, or who time their function with %timeit. Each gets exactly
    its honest points from the re-grade, the others' grades are intact, and nothing outlives the sandbox."""
    if UNSAFE:
        pytest.skip(f"no sandbox on this machine: {regrade.sandbox_problem()}")
    start = time.monotonic()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(trimmed_lesson(ROOT / "notebooks" / LESSONS["lesson04"]), notebooks / LESSONS["lesson04"])
    course = tmp_path / "course"
    (assignment,) = build_assignments.build(notebooks, course)
    released = nbformat.read(assignment.release, as_version=4)
    students = route_students(course)
    for student, (code, _, _) in students.items():
        nb = nbformat.from_dict(released)
        cells = []
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if "added" in code and grade_id == code["added"][0]:  # a cell of the student's own, just before
                cells.append(nbformat.v4.new_code_cell(code["added"][1]))
            if grade_id in code:
                cell.source = code[grade_id]
            cells.append(cell)
        nb.cells = cells
        target = course / "submitted" / student / assignment.name
        target.mkdir(parents=True)
        nbformat.write(nb, target / assignment.release.name)
        (target / "timestamp.txt").write_text("2026-11-27 12:00:00.000000 UTC")
    try:
        autograde(course, assignment.name, fails_for=["kills_then_needs_helper"])
        assert not leftover_processes() and not planted_files()
        corrupt = course / "submitted" / "corrupt" / assignment.name
        corrupt.mkdir(parents=True)
        (corrupt / assignment.release.name).write_bytes(b'{"cells": [{"cell_type": "code", "source": "\x00')
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            autograded = {s: gradebook.find_submission(assignment.name, s).score for s in students
                          if s != "kills_then_needs_helper"}  # nbgrader grades nothing of a notebook whose kernel died
        results = regrade.regrade(course, assignment.name, jobs=2, time_limit=60)
        time.sleep(2)  # a forger that outlived its sandbox would have rewritten the CSV by now
        assert all(ok for _, ok in regrade.verify(course, assignment.name))
        assert not leftover_processes() and not planted_files()
    finally:
        for path in planted_files():
            path.unlink()
    regraded = {}
    for r in results:
        regraded[r.student] = regraded.get(r.student, 0) + r.points
    honest = {s: points for s, (_, points, _) in students.items()} | {"corrupt": 0}
    report = "\n".join(f"{s}: honest {honest[s]}, autograde {autograded.get(s)}, regrade {regraded[s]}" for s in honest)
    print(report)
    assert regraded == honest, report
    fooled = {s for s, (_, _, can_fool) in students.items() if can_fool}
    assert {s: autograded[s] for s in students if s not in fooled} == {s: honest[s] for s in students if s not in fooled}
    rows = list(csv.DictReader((course / "regrade" / "lesson04.csv").read_text().splitlines()))
    flags = list(csv.DictReader((course / "regrade" / "lesson04-flags.csv").read_text().splitlines()))
    flagged = {f["student"] for f in flags}
    assert {s for s in fooled if autograded.get(s) != honest[s]} <= flagged, report  # autograde fooled or silent: flagged
    assert "corrupt" in flagged and "correct" not in flagged and "names_library" not in flagged
    messages = {(r["student"], r["exercise"]): r["message"] for r in rows}
    for alias in ALIASES:
        assert "library's own answer" in messages[(alias, f"{KL}_test")], messages[(alias, f"{KL}_test")]
    assert "library" not in messages[("names_library", f"{KL}_test")]
    assert "too large" in messages[("frame_bomb", f"{KL}_test")] or "compressed" in messages[("frame_bomb", f"{KL}_test")]
    print(f"route students: {time.monotonic() - start:.0f} s")
