# Sourced (without arguments) by test.sh and check.sh: installs and activates the locked .venv, or .venv-latest
# when the caller's first argument is --latest, which it then drops from the caller's "$@".
if [ "${1:-}" = "--latest" ]; then
  shift
  export VENV=${VENV:-.venv-latest}
  bash scripts/setup.sh --latest
else
  export VENV=${VENV:-.venv}
  bash scripts/setup.sh
fi
. "$VENV/bin/activate"
