# Sourced by scripts/demo and scripts/test: installs what they need, once.
# Debian/Ubuntu: system packages with apt-get (as root, or through sudo);
# Python packages into .venv beside this repository.

PYTHON=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
have_dovecot() { command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; }
have_dovecot || need_apt+=(dovecot-imapd)
# SMTP with OAuth2 in the tests: Dovecot's submission service checks the same tokens as its IMAP.
[ -x /usr/lib/dovecot/submission ] || need_apt+=(dovecot-submissiond)
# tests/integration/test_systemd.py: systemd-analyze, -sysusers and -tmpfiles check the files in systemd/
# (Debian container images lack the systemd package), verify wants ExecReload='s /bin/kill, strace
# traces the daemon for the unit's system call filter.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
[ -x /bin/kill ] || need_apt+=(procps)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
# The PostgreSQL store's tests start a private cluster (initdb, postgres) from Debian's server package.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
# tests/integration/test_junk.py: a real SpamAssassin marks mail before it is appended (spamd is its own package).
[ -x /usr/sbin/spamd ] || need_apt+=(spamassassin spamc spamd)
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# tests/integration/test_digest.py renders the digest page in headless Chromium (Debian's chromium); only
# scripts/test wants it, and where it cannot be installed that test skips, so a failure here stops nothing.
if [ "${0##*/}" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium for the browser test"
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } \
    || echo "chromium could not be installed: the browser test will skip"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "mailsvc needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
}

# Reinstall only when the project's dependencies changed.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
