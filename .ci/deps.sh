#!/usr/bin/env bash
# Installs what CI needs beyond the machine image (Debian 12, gcc, CMake,
# Ninja, pyenv Pythons): the Ice 3.7 interop peer for the system
# interpreter, Ice 3.7's slice2py (the Slice parser's oracle), IceGrid's
# registry and admin tool (the locator tests' real registry), and clang
# with its compiler-rt (libFuzzer) and python3-dev for .ci/fuzz.sh.
# apt-get by package name only; nothing is run when all is present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

updated=
apt_install() {
  [ -n "$updated" ] || { apt-get update -qq; updated=1; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The interop peer: ZeroC Ice 3.7 for the system interpreter.
if ! /usr/bin/python3 -c "import Ice" >/dev/null 2>&1; then
  apt_install python3-zeroc-ice
fi

# OpenSSL's headers: the TLS engine (cpp/tls) and ssl endpoints.
dpkg -s libssl-dev >/dev/null 2>&1 || apt_install libssl-dev openssl

# The system interpreter's headers and libpython: .ci/fuzz.sh embeds it in
# fuzz_typed (the typed decoder builds Python objects).
dpkg -s python3-dev >/dev/null 2>&1 || apt_install python3-dev

# Ice 3.7's Slice compiler: the Slice parser's tests check that it agrees.
command -v slice2py >/dev/null || apt_install zeroc-ice-compilers

# IceGrid 3.7: icegridregistry (zeroc-icegrid) and icegridadmin (zeroc-ice-utils)
# for tests/interop/test_icegrid.py.
command -v icegridregistry >/dev/null || apt_install zeroc-icegrid
command -v icegridadmin >/dev/null || apt_install zeroc-ice-utils

# clang, then the compiler-rt of its own version (libFuzzer, ASan, UBSan).
command -v clang++ >/dev/null || apt_install clang
llvm=$(clang++ --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
resource=$(clang++ -print-resource-dir)
if [ ! -f "$resource/lib/linux/libclang_rt.fuzzer-x86_64.a" ]; then
  apt_install "libclang-rt-$llvm-dev"
fi

# gcc's sanitizer runtimes (they come with gcc; checked, not assumed).
for lib in libasan.so libubsan.so libtsan.so; do
  [ -f "$(gcc -print-file-name=$lib)" ] || { echo "deps: gcc has no $lib" >&2; exit 1; }
done
for tool in cmake ninja; do
  command -v $tool >/dev/null || { echo "deps: $tool is missing from the machine" >&2; exit 1; }
done
echo "deps: Ice peer $(/usr/bin/python3 -c 'import Ice; print(Ice.stringVersion())'), $(slice2py --version 2>&1 | sed 's/^/slice2py /'), clang $llvm, $(cmake --version | head -n 1)"
