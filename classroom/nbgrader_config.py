"""nbgrader configuration of the vae-lite course.

`make assignments` copies this file into the course folder (assignments/course/), where the
nbgrader commands run. Put site settings (exchange root, course id on your JupyterHub) in
~/.jupyter/nbgrader_config.py or edit the copy: nbgrader reads both.
"""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades


class ClearHiddenTestsAndTheirTracebacks(ClearHiddenTests):
    """nbgrader's ClearHiddenTests (it removes the hidden tests from a test cell's code) that also
    cuts the traceback of the cell's error output down to its last line, ``AssertionError: <message>``.

    The traceback of an autograded test cell quotes the cell's code around the failing line
    (the hidden tests below a failed visible check; the hidden test itself when it fails), so
    clearing the code alone would still show the tests. The message is what the checks write for
    the student: it says what went wrong.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        had_hidden_tests = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden_tests:
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}" if output.evalue else output.ename]
        return cell, resources


c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "vae-lite"

# One assignment per lesson: source/lesson01/01_data_likelihood.ipynb -> release/lesson01/...
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# What a blank exercise looks like in the student version; the graders report it as
# "not implemented yet".
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Autograding executes whole lessons. With an empty model cache a lesson trains its model
# (up to ~2 minutes on a laptop CPU), so allow long cells; the graded test cells themselves
# take seconds.
c.Execute.timeout = 600

# The feedback (HTML of each autograded notebook) must not show the hidden tests: by default
# generate_feedback renders the test cells as autograde ran them, hidden tests included
# (jupyter/nbgrader#917). nbgrader's two default steps, then the one above; GetGrades reads the
# scores from the gradebook first, so clearing code and tracebacks changes no score shown.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTestsAndTheirTracebacks]
