# Shared by scripts/build-site and scripts/run-tests (source it; not executable on its own).
# Creates/updates the project venv (.venv) from requirements.txt, and makes the repository's
# `models` package importable in it (a .pth file), so chapters run from book/ and from JupyterLab.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run apt-get only as root with apt-get present; otherwise tell the user what to install.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if [ -z "${_APT_UPDATED:-}" ]; then
      log "apt-get update"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      _APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  else
    die "missing system packages: $* -- install them (Debian: sudo apt-get install $*) and re-run"
  fi
}

ensure_venv() {
  local base_python="${PYTHON:-python3}"
  command -v "$base_python" >/dev/null || die "python3 (3.11) not found; install Debian's python3"
  if [ ! -x "$PY" ] || ! "$PY" -c 'import sys' 2>/dev/null; then
    log "creating $VENV"
    rm -rf "$VENV"
    if ! "$base_python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$base_python" -m venv "$VENV"
    fi
  fi
  local want have
  want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  have="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    log "installing requirements.txt into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
    echo "$want" > "$VENV/.requirements.sha256"
  fi
  # `import models` from anywhere in this venv (chapters execute with cwd=book/).
  local site
  site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$ROOT" > "$site/go-memory-book.pth"
}
