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
