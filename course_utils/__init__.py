"""Helpers for the Machine Learning in Production course workspace.

Nothing happens at import time: importing this package starts no Spark session and no
server. Lessons begin with ``start_lesson``; everything else is in one module per concern
(config, spark, services, tracking, datasets, labs, checks, runner, doctor, cli).
"""

from course_utils.config import Settings, load_settings
from course_utils.lesson import Lesson, start_lesson
from course_utils.spark import get_spark

__all__ = ["Lesson", "Settings", "get_spark", "load_settings", "start_lesson"]
