"""Graded checks for labs: a ``FILL_IN`` placeholder and a grader that gives hints, not answers.

A generated lab replaces the solution's code by ``FILL_IN`` (see :mod:`course_utils.labs`).
Using the placeholder in any meaningful way raises a ``NotImplementedError`` that tells the
learner what to do. The lab ends with graded checks::

    grader = Grader("01c tuning lab")
    grader.check("the best model beats the baseline",
                 lambda: best_rmse < baseline_rmse,
                 hint="compare against the mean predictor from section 2")
    grader.summary()            # prints "1/1 checks passed"

Pass the condition as a callable: an exception inside it (for example from ``FILL_IN``)
then counts as a failed check that shows the hint and the exception's type and message,
never a traceback. Solution notebooks call ``grader.assert_all_passed()`` so CI proves the
checks pass on the reference solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

__all__ = ["FILL_IN", "FILL_IN_MESSAGE", "GradeReport", "Grader", "is_fill_in"]

FILL_IN_MESSAGE = "This is a FILL_IN placeholder: replace it with your code (see the TODO above)."

_PASS_MARK = "✅"
_FAIL_MARK = "❌"


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    """Any use of the placeholder ends here."""
    raise NotImplementedError(FILL_IN_MESSAGE)


class _FillIn:
    """The type of the ``FILL_IN`` sentinel: every meaningful use raises NotImplementedError."""

    __slots__ = ()
    # Let numpy and pandas defer to our reflected operators, which refuse.
    __array_ufunc__ = None

    def __repr__(self) -> str:
        return "FILL_IN"

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):
            # Protocol and library probes (copy, pickle, ``__array__``, ``_repr_html_``)
            # must see a plain miss; learners only use public names.
            raise AttributeError(f"FILL_IN has no attribute {name!r}")
        raise NotImplementedError(FILL_IN_MESSAGE)

    def __reduce__(self) -> str:
        return "FILL_IN"  # pickles and copies as the same singleton

    def __copy__(self) -> _FillIn:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _FillIn:
        return self

    # Calling, truth, containers, conversion and formatting.
    __call__ = __bool__ = __iter__ = __len__ = __contains__ = _refuse
    __getitem__ = __setitem__ = __delitem__ = _refuse
    __int__ = __float__ = __complex__ = __index__ = __str__ = __format__ = _refuse
    __enter__ = __exit__ = _refuse
    # Arithmetic, in both directions, and ordering (equality stays identity, so
    # ``value is FILL_IN`` and dict/set membership keep working).
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _refuse
    __mod__ = __rmod__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _refuse
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _refuse
    __neg__ = __pos__ = __abs__ = __invert__ = __round__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = _refuse


FILL_IN: Any = _FillIn()


def is_fill_in(value: object) -> bool:
    """Whether ``value`` is the ``FILL_IN`` placeholder (not yet replaced by the learner)."""
    return value is FILL_IN


@dataclass(frozen=True)
class GradeReport:
    """The outcome of a lab's checks: how many passed, and the descriptions that failed."""

    lab: str
    passed: int
    total: int
    failures: list[str] = field(default_factory=list)

    @property
    def all_passed(self) -> bool:
        """Whether at least one check ran and none failed."""
        return self.total > 0 and not self.failures


class Grader:
    """Runs a lab's checks, printing ✅ or ❌ with a hint for each."""

    def __init__(self, lab: str) -> None:
        if not lab.strip():
            raise ValueError("Grader needs the lab's name, e.g. Grader('01c tuning lab')")
        self.lab = lab
        # Keyed by description, so re-running a check cell replaces the earlier result.
        self._results: dict[str, bool] = {}

    def check(self, description: str, condition: Callable[[], object] | object, hint: str) -> bool:
        """Evaluate one check, print its outcome (with the hint on failure) and return it."""
        if not description.strip():
            raise ValueError("check() needs a description of what is being checked")
        if not hint.strip():
            raise ValueError(f"check {description!r} needs a hint to show when it fails")
        error: str | None = None
        try:
            outcome = condition() if callable(condition) else condition
            passed = bool(outcome)
        except Exception as exc:  # a learner's bug is a failed check, not a crash
            passed = False
            error = f"{type(exc).__name__}: {exc}"
        self._results[description] = passed
        if passed:
            print(f"{_PASS_MARK} {description}")
        elif error is None:
            print(f"{_FAIL_MARK} {description} — hint: {hint}")
        else:
            print(f"{_FAIL_MARK} {description} — hint: {hint} (your code raised {error})")
        return passed

    def report(self) -> GradeReport:
        """The current outcome of the checks, without printing."""
        failures = [description for description, passed in self._results.items() if not passed]
        total = len(self._results)
        return GradeReport(lab=self.lab, passed=total - len(failures), total=total, failures=failures)

    def summary(self) -> GradeReport:
        """Print "N/M checks passed" and return the report."""
        report = self.report()
        print(f"{report.passed}/{report.total} checks passed ({self.lab})")
        return report

    def assert_all_passed(self) -> GradeReport:
        """Raise AssertionError listing the failed checks (or if none ran); used by solutions in CI."""
        report = self.report()
        if report.total == 0:
            raise AssertionError(f"{self.lab}: no checks were run")
        if report.failures:
            failed = "; ".join(report.failures)
            raise AssertionError(
                f"{self.lab}: {len(report.failures)} of {report.total} checks failed: {failed}"
            )
        return report
