"""Run ``nbgrader autograde`` in a sandbox, so that no submission can touch what the grade of record rests on.

Usage: ``python classroom/autograde.py lesson01 [--course DIR] [--memory 8] [--unsafe] [-- nbgrader options]``

``nbgrader autograde`` executes every submission in a kernel that runs as you. Run bare, a
submission can start a process that outlives the kernel, rewrite the installed
``vae_lite`` (its checks) or the course's hidden tests, or plant a ``.pth`` file that runs in
every later Python process of the environment, the re-grade's included. Here nbgrader and
its kernels run in a bubblewrap sandbox (as ``classroom/regrade.py`` does for one
submission): their own user, PID, network and IPC namespaces, so every process a submission
starts dies when autograde ends; the system, the Python environment and ``vae_lite``
read-only; of the course folder, ``source/``, ``release/``, ``submitted/`` and
``nbgrader_config.py`` read-only, ``regrade/`` and ``feedback/`` hidden, and only
``autograded/`` and the gradebook writable (nbgrader writes them); a private home and
``/tmp``; no network; a memory limit per process.

What it does not change: all submissions share one sandbox, so a submission can read the
others' notebooks or alter the gradebook's autograde scores. The clean re-grade, one sandbox
per submission, is the grade of record, and flags every exercise where the two disagree.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import regrade  # noqa: E402 - a sibling script, not a package


def sandbox_command(course, nbgrader_args, memory_gib=8.0):
    """The bwrap command that runs ``nbgrader autograde`` with ``nbgrader_args`` in ``course`` (a resolved path)."""
    paths, package = regrade._package_paths()
    # the private /tmp and home first: an environment or a course under /tmp is then bound inside them
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home/grader",
            *regrade._sandbox_binds(paths, package),
            "--setenv", "HOME", "/home/grader", "--bind", str(course), str(course)]
    for name in ("source", "release", "submitted", "nbgrader_config.py"):
        if (course / name).exists():
            args += ["--ro-bind", str(course / name), str(course / name)]
    for name in ("regrade", "feedback"):
        if (course / name).is_dir():
            args += ["--tmpfs", str(course / name)]
    nbgrader = Path(sys.executable).parent / "nbgrader"
    limit = ["prlimit", f"--as={int(memory_gib * 2**30)}", "--core=0", "--"]
    return [*args, "--chdir", str(course), "--", *limit, str(nbgrader), "autograde", *nbgrader_args]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", help="e.g. lesson01")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1] / "assignments" / "course",
                        help="nbgrader course folder (default: assignments/course)")
    parser.add_argument("--memory", type=float, default=8.0, help="GiB of address space per process (default 8)")
    parser.add_argument("--unsafe", action="store_true", help="run nbgrader autograde unconfined where bwrap is unavailable")
    args, rest = parser.parse_known_args(argv)
    rest = [a for a in rest if a != "--"]
    course = args.course.resolve()
    if not (course / "source" / args.assignment).is_dir():
        print(f"error: {course / 'source' / args.assignment} does not exist: expected an nbgrader course folder "
              "(make assignments builds assignments/course)", file=sys.stderr)
        return 1
    problem = regrade.sandbox_problem()
    if problem:
        if not args.unsafe:
            print(f"error: the sandbox is unavailable: {problem}. Submissions would run as you, with your files; "
                  "re-run with --unsafe to autograde anyway (and re-create the environment before the re-grade)",
                  file=sys.stderr)
            return 1
        command = [str(Path(sys.executable).parent / "nbgrader"), "autograde", args.assignment, *rest]
    else:
        for name in ("autograded", "regrade", "feedback"):  # hidden or written inside, never made there
            (course / name).mkdir(exist_ok=True)
        command = sandbox_command(course, [args.assignment, *rest], args.memory)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, cwd=course, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
