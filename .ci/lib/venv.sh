# Sourced by the checks in .ci/checks/: a Python virtual environment of the check's own (under
# target/, so that no check pins another's dependencies) with pinned packages from PyPI.
#
#   venv_python DIR NAME==VERSION…   creates the virtual environment DIR (python3 -m venv) unless it
#                                    has a python already, installs with pip those of the pinned
#                                    packages it does not hold at that version, and prints the
#                                    path of its python: PY=$(venv_python target/ci-venv-x x==1.2)
#
# Messages (and pip's output) go to standard error, so the command substitution takes the path
# alone. Fails (status 1) when the environment cannot be made or a package cannot be installed.

venv_python() {
    local dir=$1 spec missing=()
    shift
    for spec in "$@"; do
        case "$spec" in
            ?*==?*) ;;
            *) echo "venv_python: '$spec' is not pinned as NAME==VERSION" >&2; return 1 ;;
        esac
    done
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir" >&2 || { echo "venv_python: cannot create $dir" >&2; return 1; }
    fi
    for spec in "$@"; do
        "$dir/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "${spec%%==*}" "${spec#*==}" 2>/dev/null \
            || missing+=("$spec")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "venv: installing ${missing[*]} into $dir" >&2
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2 \
            || { echo "venv_python: pip could not install ${missing[*]} into $dir" >&2; return 1; }
    fi
    echo "$dir/bin/python"
}
