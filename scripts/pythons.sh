# Sourced by the scripts: puts python3.11, python3.12 and python3.13 on PATH for the test matrix.
# With pyenv, each installed 3.11-3.13's own bin directory goes first (newest first, so `python3` is
# the newest): pyenv's shims answer only for the versions PYENV_VERSION selects, which tox does not
# pass on. Without pyenv, they must be on PATH already (the distribution's packages).
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare | grep -E '^3\.1[123]\.[0-9]+$' | sort -t. -k2,2n -k3,3n); do
    PATH="$(pyenv root)/versions/$version/bin:$PATH"
  done
  export PATH
fi
for version in 3.11 3.12 3.13; do
  if ! "python$version" -c "" 2>/dev/null; then
    echo "python$version is missing: the test matrix runs Python 3.11, 3.12 and 3.13" \
      "(install it with your distribution's packages or 'pyenv install $version')" >&2
    exit 1
  fi
done
