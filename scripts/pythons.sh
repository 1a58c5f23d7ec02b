# Sourced by the scripts: makes python3.11, python3.12 and python3.13 callable for the test matrix.
# pyenv's shims answer only for the versions PYENV_VERSION selects: select every installed 3.11-3.13
# (newest first, so `python3` stays the newest). Without pyenv, they must be on PATH already.
if command -v pyenv >/dev/null 2>&1; then
  PYENV_VERSION="$(pyenv versions --bare | grep -E '^3\.1[123]\.[0-9]+$' | sort -t. -k2,2nr -k3,3nr | paste -sd: -)"
  export PYENV_VERSION
fi
for version in 3.11 3.12 3.13; do
  if ! command -v "python$version" >/dev/null 2>&1 || ! "python$version" -c "" 2>/dev/null; then
    echo "python$version is missing: the test matrix runs Python 3.11, 3.12 and 3.13" \
      "(install it with your distribution's packages or 'pyenv install $version')" >&2
    exit 1
  fi
done
