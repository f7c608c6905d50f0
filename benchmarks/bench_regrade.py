"""The grade of record's cost: ``classroom/regrade.py`` on every lesson, with and without its sandbox.

For each lesson the instructor's own solutions are handed in as one submission and re-graded,
one submission at a time (``--jobs 1``), once in the bubblewrap sandbox and once ``--unsafe``
(the same fresh ``python -I -S`` process, unconfined), so the table shows what a submission
costs and what the sandbox adds. Every row must show full marks: the instructor's solutions
are the lessons' own.

Run: ``python benchmarks/bench_regrade.py`` (about 2 minutes on 2 cores); prints a Markdown table.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "classroom"))
import build_assignments  # noqa: E402 - classroom/ scripts, not a package
import regrade  # noqa: E402


def main():
    problem = regrade.sandbox_problem()
    modes = ["sandbox", "unsafe"] if problem is None else ["unsafe"]
    with tempfile.TemporaryDirectory() as folder:
        course = Path(folder) / "course"
        assignments = build_assignments.build(ROOT / "notebooks", course)
        for assignment in assignments:
            source = next((course / "source" / assignment.name).glob("*.ipynb"))
            target = course / "submitted" / "instructor" / assignment.name
            target.mkdir(parents=True)
            shutil.copy(source, target / source.name)
        print(f"| lesson | points | {' | '.join(f'{m} (s)' for m in modes)} |")
        print(f"|---|---|{'---|' * len(modes)}")
        for assignment in assignments:
            times, points = [], ""
            for mode in modes:
                start = time.monotonic()
                results = regrade.regrade(course, assignment.name, jobs=1, unsafe=mode == "unsafe")
                times.append(time.monotonic() - start)
                points = f"{sum(r.points for r in results):g}/{sum(r.max_points for r in results):g}"
            print(f"| {assignment.name} | {points} | {' | '.join(f'{t:.1f}' for t in times)} |")
    if problem:
        print(f"\n(no sandbox on this machine: {problem})")


if __name__ == "__main__":
    main()
