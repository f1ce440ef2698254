#!/usr/bin/env bash
# Set up the course workspace on this machine. Idempotent: a second run skips what is done.
#
#   ./setup.sh                      # ci-sized datasets (default)
#   COURSE_PROFILE=full ./setup.sh  # also the realistic-size datasets
#
# Needs: Python 3.11, Java 17+, and the package registries (PyPI, Maven Central) once.
# After it, nothing is downloaded: notebooks run offline.
#
# The terminal gets the course's own lines (`==>` steps, the doctor's ✔/✘ table); everything the tools
# print (uv, the JVM, Spark, MLflow, progress bars) goes to build/setup.log, whose end is shown on failure.
# Exit codes: 1 for a missing prerequisite, else the failed command's own.
set -euo pipefail
cd "$(dirname "$0")"

log=build/setup.log
mkdir -p build
: >"$log"
if [ -t 1 ]; then bold=$'\033[1m' red=$'\033[31m' plain=$'\033[0m'; else bold='' red='' plain=''; fi

say() { printf '%s==> %s%s\n' "$bold" "$*" "$plain"; printf '==> %s\n' "$*" >>"$log"; }
die() { printf '%ssetup.sh: %s%s\n' "$red" "$*" "$plain" >&2; exit 1; }
# Stop with the failed command's exit code, showing the end of the log (where its output is).
fail() {
  local status=$1; shift
  printf '%ssetup.sh: `%s` failed (exit %s). The end of %s:%s\n' "$red" "$*" "$status" "$log" "$plain" >&2
  tail -n 40 "$log" >&2
  printf '%sFull log: %s%s\n' "$red" "$log" "$plain" >&2
  exit "$status"
}
# Run a command with all its output going to the log.
quietly() {
  local status=0
  "$@" >>"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || fail "$status" "$*"
}
started=$(date +%s)

# 1. Java 17+ (Spark 4 needs it) -------------------------------------------------------------
java_hint="Install Java 17+:
  Debian/Ubuntu: sudo apt-get install openjdk-17-jdk-headless
  macOS:         brew install openjdk@17
  conda:         conda env create -f environment.yml && conda activate ml-in-production
then point JAVA_HOME to it (or put it on PATH) and run ./setup.sh again."
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if [ -n "${JAVA_HOME:-}" ] && [ ! -x "$java_bin" ]; then
  # Spark's launcher uses JAVA_HOME whenever it is set, so a java on PATH would not help.
  on_path=$(command -v java || true)
  die "JAVA_HOME=$JAVA_HOME has no bin/java, and Spark uses JAVA_HOME when it is set. Point JAVA_HOME at a Java 17+ installation, or unset it${on_path:+ to use the java on PATH ($on_path)}."
fi
command -v "$java_bin" >/dev/null 2>&1 || die "Java was not found; Spark 4 needs Java 17+. $java_hint"
java_version=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n1)
java_major=${java_version%%.*}
[ "$java_major" = "1" ] && java_major=$(echo "$java_version" | cut -d. -f2)
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || die "Java ${java_version:-unknown} found; Spark 4 needs Java 17+. $java_hint"
say "Java $java_version"

# 2. Python 3.11 virtual environment from the lock file ---------------------------------------
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin=$candidate; break
    fi
  done
fi
[ -n "$python_bin" ] || die "Python 3.11 was not found (the lock file is for 3.11). Install it, or set PYTHON=/path/to/python3.11."

# The stamp also names the install options, so a change to them re-syncs an existing .venv.
install_options="compile-bytecode"
lock_hash=$( (cat requirements.lock pyproject.toml; echo "$install_options") | sha256sum | cut -c1-16)
stamp=.venv/.course-lock-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ] && [ -x .venv/bin/course ]; then
  say ".venv matches requirements.lock (skipped)"
else
  say "Creating .venv and installing requirements.lock"
  [ -x .venv/bin/python ] || quietly "$python_bin" -m venv .venv
  uv_version=$(sed -n 's/^uv==//p' requirements.lock)
  [ -x .venv/bin/uv ] && [ "$(.venv/bin/uv --version | cut -d' ' -f2)" = "$uv_version" ] \
    || quietly .venv/bin/python -m pip install --disable-pip-version-check "uv==$uv_version"
  export UV_LINK_MODE=copy
  # Bytecode is compiled at install time: many machines (and CI images) set PYTHONDONTWRITEBYTECODE,
  # and without .pyc files every kernel and every MLflow subprocess recompiles mlflow/pyspark/sklearn
  # from source (measured: `import mlflow` 11.8 s without, ~2 s with).
  quietly .venv/bin/uv pip sync --compile-bytecode --python .venv/bin/python requirements.lock
  quietly .venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
  echo "$lock_hash" > "$stamp"
fi

# 3. Jupyter kernel under the fixed name the notebooks' metadata use --------------------------
kernel_dir=.venv/share/jupyter/kernels/ml-in-production
if [ -f "$kernel_dir/kernel.json" ]; then
  say "Jupyter kernel ml-in-production (skipped)"
else
  say "Registering the Jupyter kernel ml-in-production"
  quietly .venv/bin/python -m ipykernel install --sys-prefix --name ml-in-production --display-name "ML in Production (.venv)"
fi
# JupyterLab's settings for the course (no news pop-up, no update checks: the course runs offline),
# copied every time so a changed file in the repository takes effect (course_utils.jupyter names both paths).
install -D -m 644 jupyter/lab-overrides.json .venv/share/jupyter/lab/settings/overrides.d/ml-in-production.json

# 4. Git filter that strips notebook outputs on commit (only inside a git checkout) ----------
if git rev-parse --git-dir >/dev/null 2>&1; then
  if ! git config --get filter.nbstripout.clean >/dev/null; then
    say "Installing the nbstripout git filter"
    quietly .venv/bin/nbstripout --install
  fi
  # A fresh clone's files are as new as its index, so git cannot trust their timestamps and the first
  # `git status` runs the filter (a Python process) on every notebook: ~60 s, paid by the first lesson
  # that tags runs with the code version. Refreshing the index through a byte-for-byte filter is instant
  # and exact for the stripped notebooks of a checkout; a notebook saved with outputs stays modified.
  quietly git -c filter.nbstripout.clean=cat status --porcelain
fi

# 5. Delta jars, once, into .cache/jars (Spark never downloads at run time) ------------------
say "Delta jars"
quietly .venv/bin/course fetch-jars

# 5b. A JVM class-data-sharing archive, once: Spark's driver then starts in about half the time --
say "JVM class archive"
quietly .venv/bin/course jvm-archive

# 6. Datasets ---------------------------------------------------------------------------------
say "Datasets"
quietly .venv/bin/course datasets generate --profile ci
if [ "${COURSE_PROFILE:-ci}" = "full" ]; then
  quietly .venv/bin/course datasets generate --profile full
fi

# 7. Check everything works (the Spark and MLflow round trips only when their inputs changed) -----
say "course doctor"
# The doctor's report starts at its first ✔/✘ line; before it come MLflow's own prints ("View run" links).
status=0
.venv/bin/course doctor --skip-unchanged 2>>"$log" | tee -a "$log" | awk '/^(✔|✘) /{report=1} report' || status=$?
[ "$status" -eq 0 ] || fail "$status" ".venv/bin/course doctor --skip-unchanged"
say "Set-up finished in $(( $(date +%s) - started )) s (tools' output: $log). Next: .venv/bin/pytest   or   .venv/bin/course lab"
