"""The lesson lifecycle: names, paths, recorded results, reset."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from course_utils.config import load_settings
from course_utils.lesson import UnknownLessonError, known_lessons, start_lesson


@pytest.fixture()
def settings(tmp_path):
    return replace(load_settings({}), workspace=tmp_path / "workspace")


def test_known_lessons_are_the_notebooks(settings) -> None:
    assert "00_course_overview" in known_lessons(settings)


def test_unknown_lesson_suggests_close_names_and_lists_all(settings) -> None:
    with pytest.raises(UnknownLessonError, match=r"'00_course_overveiw' is not a lesson.*Did you mean 00_course_overview"):
        start_lesson("00_course_overveiw", settings=settings)
    assert not (settings.workspace / "lessons").exists(), "a bad name must leave the workspace as it was"


def test_bad_profile_is_refused(settings) -> None:
    with pytest.raises(ValueError, match="profile='big'"):
        start_lesson("00_course_overview", settings=settings, profile="big")


def test_lesson_paths_are_private_to_the_lesson(settings) -> None:
    lesson = start_lesson("00_course_overview", settings=settings, seed=7)
    assert lesson.dir == settings.workspace / "lessons" / "00_course_overview"
    assert lesson.delta_path("customers").startswith(str(lesson.dir))
    assert lesson.seed == 7 and lesson.profile == "ci"
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        lesson.delta_path("../escape")


def test_record_keeps_values_as_plain_json(settings) -> None:
    lesson = start_lesson("00_course_overview", settings=settings)
    assert lesson.record("rows", np.int64(5)) == 5
    lesson.record("share", np.float32(0.5))
    lesson.record("where", settings.root)
    stored = json.loads(lesson.results_path.read_text())
    assert stored["rows"] == 5 and stored["share"] == 0.5 and stored["where"] == str(settings.root)
    assert stored["params"] == {}


def test_reset_removes_the_lesson_folder_and_results(settings) -> None:
    lesson = start_lesson("00_course_overview", settings=settings)
    (lesson.path("delta", "t", "part.parquet")).write_text("x")
    lesson.record("rows", 1)
    again = start_lesson("00_course_overview", settings=settings, reset=True)
    assert not (again.dir / "delta").exists()
    assert again.results() == {"params": {}}
