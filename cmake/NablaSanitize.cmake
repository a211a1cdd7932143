# NABLA_SANITIZE: a comma-separated list of sanitizers (e.g. "address,undefined") for the
# library, the tests and everything else this project builds. Empty (the default) builds without.
#
# The flags go on every C++ compile and link of the project (not only the library): a test that
# overflows a buffer handed to it by libnabla must be seen too, and ASan needs its runtime in the
# executable. -fno-sanitize-recover=undefined makes a UBSan report abort the test (UBSan would
# otherwise print and continue, and the test would pass). CPU only: nvcc cannot build device code
# with these flags, so NABLA_CUDA=AUTO becomes OFF here and NABLA_CUDA=ON is an error.
# Must be included before NablaCuda.
#
# NABLA_FUZZ=ON (clang only) is such a build for the libFuzzer targets of tests/fuzz: the
# sanitizers default to address,undefined, and everything is also compiled with
# -fsanitize=fuzzer-no-link (coverage for libFuzzer; the fuzz targets link libFuzzer itself).
#
# Result: NABLA_SANITIZE_FLAGS (the compile flags), empty when off.

set(NABLA_SANITIZE "" CACHE STRING
  "Sanitizers for a CPU-only build, e.g. address,undefined (empty: none)")
option(NABLA_FUZZ "Build the libFuzzer targets of tests/fuzz (clang; implies a sanitized CPU build)" OFF)
set(NABLA_SANITIZE_FLAGS "")
if(NABLA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "nabla: NABLA_FUZZ=ON needs clang (libFuzzer), but the C++ compiler is "
      "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER}: configure a fresh build folder with "
      "-DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz.sh does)")
  endif()
  if(NABLA_SANITIZE STREQUAL "")
    set(NABLA_SANITIZE address,undefined)
  endif()
endif()
if(NABLA_SANITIZE STREQUAL "")
  return()
endif()

if(NABLA_CUDA STREQUAL "ON")
  message(FATAL_ERROR "nabla: NABLA_SANITIZE=${NABLA_SANITIZE} is for CPU-only builds, and "
    "NABLA_CUDA is ON: configure with -DNABLA_CUDA=OFF (or AUTO, which a sanitized build turns "
    "off). The CUDA code is checked with compute-sanitizer instead.")
elseif(NABLA_CUDA STREQUAL "AUTO")
  message(STATUS "nabla: NABLA_SANITIZE is set: CUDA backend off (sanitized builds are CPU only)")
  set(NABLA_CUDA OFF)
endif()
if(NOT NABLA_SANITIZE MATCHES "^[a-z,]+$")
  message(FATAL_ERROR "nabla: NABLA_SANITIZE must be a comma-separated list of sanitizer names "
    "(e.g. address,undefined), not '${NABLA_SANITIZE}'")
endif()

set(NABLA_SANITIZE_FLAGS -fsanitize=${NABLA_SANITIZE} -fno-omit-frame-pointer)
if(NABLA_SANITIZE MATCHES "undefined")
  list(APPEND NABLA_SANITIZE_FLAGS -fno-sanitize-recover=undefined)
endif()

include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=${NABLA_SANITIZE}")
set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=${NABLA_SANITIZE}")
check_cxx_source_compiles("int main() { return 0; }" NABLA_SANITIZE_WORKS)
unset(CMAKE_REQUIRED_FLAGS)
unset(CMAKE_REQUIRED_LINK_OPTIONS)
if(NOT NABLA_SANITIZE_WORKS)
  message(FATAL_ERROR "nabla: ${CMAKE_CXX_COMPILER} cannot compile and link with "
    "-fsanitize=${NABLA_SANITIZE} (is its sanitizer runtime, e.g. libasan, installed?)")
endif()

if(NABLA_FUZZ)
  list(APPEND NABLA_SANITIZE_FLAGS -fsanitize=fuzzer-no-link)
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${NABLA_SANITIZE_FLAGS}>")
add_link_options(-fsanitize=${NABLA_SANITIZE})
message(STATUS "nabla: sanitizers on: ${NABLA_SANITIZE}")
