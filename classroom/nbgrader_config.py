"""nbgrader configuration of the vae-lite course.

`make assignments` copies this file into the course folder (assignments/course/), where the
nbgrader commands run. Put site settings (exchange root, course id on your JupyterHub) in
~/.jupyter/nbgrader_config.py or edit the copy: nbgrader reads both.
"""

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
