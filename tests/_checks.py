"""What the tests of the graded checks share (not a test module): run a check on a wrong answer."""

import pytest


def fails_with(check, fn, *fragments):
    """Run ``check(fn)``; expect an AssertionError whose message contains every fragment and no traceback."""
    with pytest.raises(AssertionError) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message:\n{message}"
    assert "Traceback" not in message
    return message


def hidden_tests(notebook, grade_id):
    """The hidden tests of the graded cell ``grade_id`` of ``notebook`` (a path), as source that defines
    ``_hidden_test`` without calling it on the lesson's own answer."""
    import json
    import re

    cells = json.loads(notebook.read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    hidden = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, re.S).group(1)
    return re.sub(r"_hidden_test\(\w+\)\ndel _hidden_test\n", "", hidden)
