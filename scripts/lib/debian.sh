# Debian packages for scripts/setup and scripts/try (sourced by both): which
# are missing, and installing them quietly as root.

# as_root CMD...: run CMD as root: directly when we are root, else through
# sudo, which may ask for a password only when a terminal can answer.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
  else echo "need root for: $*" >&2; return 1
  fi
}

# can_install: apt-get is here, and so is a way to run it as root.
can_install() {
  command -v apt-get >/dev/null 2>&1 \
    && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }
}

# missing_packages PKG...: print those of PKG that dpkg does not have installed.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || echo "$p"
  done
}

# apt_install PKG...: refresh the package lists and install PKG, without
# questions or recommended extras.
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
