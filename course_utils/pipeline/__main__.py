"""``python -m course_utils.pipeline STEP --day N``: the MLflow Project entry points call this."""

import sys

from course_utils.pipeline.cli import main

sys.exit(main())
