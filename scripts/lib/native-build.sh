# Shared by the quick start and the benchmarks (sourced, not run): the
# flags of the release build users get.
#
# native_build_flags   exports RUSTFLAGS="-C target-cpu=native" and, on
#                      x86_64, CFLAGS/CXXFLAGS that keep AMX out of
#                      llama.cpp: llama.cpp (through llama-cpp-sys-2)
#                      follows Rust's target CPU, and -march=native on an
#                      AMX host puts most weights in the AMX buffer type,
#                      whose batch-1 kernels decode single streams slower;
#                      and some VMs advertise AMX without enabling its tile
#                      state, where those kernels crash (SIGILL, or a
#                      general protection fault in the decode thread).
#                      Explicit -mno-* flags win over -march=native.
# native_build_clean TARGET
#                      llama-cpp-sys-2 never reconfigures an existing CMake
#                      build, so a cached build in TARGET made with other
#                      flags is cleaned first.

NATIVE_NO_AMX=""
if [ "$(uname -m)" = x86_64 ]; then
  NATIVE_NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi

native_build_flags() {
  export RUSTFLAGS="-C target-cpu=native"
  if [ -n "$NATIVE_NO_AMX" ]; then
    export CFLAGS="${CFLAGS:-} $NATIVE_NO_AMX"
    export CXXFLAGS="${CXXFLAGS:-} $NATIVE_NO_AMX"
  fi
}

native_build_clean() {
  local target=$1 cache
  [ -n "$NATIVE_NO_AMX" ] || return 0
  for cache in "$target"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; do
    [ -e "$cache" ] || continue
    if ! grep -q -e "^CMAKE_CXX_FLAGS:STRING=.*$NATIVE_NO_AMX" "$cache"; then
      echo "llama.cpp in $target was built with other flags; rebuilding it" >&2
      CARGO_TARGET_DIR="$target" cargo clean -q --release -p llama-cpp-sys-2
      return 0
    fi
  done
}
