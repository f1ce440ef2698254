"""The base class of every error the course explains to a learner.

The ``course`` command catches :class:`CourseError` and prints its message (the problem and the
fix) in one line instead of a traceback. It lives in its own module so that catching it costs
no imports: the command's error path stays as fast as its help.
"""

from __future__ import annotations


class CourseError(Exception):
    """An expected failure whose message says what was wrong and what to do."""
