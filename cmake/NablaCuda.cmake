# The CUDA backend switch: NABLA_CUDA = AUTO (on iff nvcc is found), ON (nvcc required), OFF.
#
# With CUDA on this enables the CUDA language for CMAKE_CUDA_ARCHITECTURES (90-real;80-virtual
# unless the user set it), and finds the CUDA toolkit libraries, CCCL (Thrust/CUB/libcu++) and cuDNN.
# Result: NABLA_WITH_CUDA (ON/OFF).

set(NABLA_WITH_CUDA OFF)
if(NABLA_CUDA STREQUAL "OFF")
  message(STATUS "nabla: CUDA backend off (NABLA_CUDA=OFF)")
  return()
endif()

# nvcc is often installed outside PATH; look in the usual CUDA folder before giving up.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(NABLA_NVCC nvcc
    HINTS ${CUDAToolkit_ROOT} ENV CUDAToolkit_ROOT ENV CUDA_PATH ENV CUDA_HOME
    PATHS /usr/local/cuda
    PATH_SUFFIXES bin)
  mark_as_advanced(NABLA_NVCC)
  if(NABLA_NVCC)
    set(ENV{CUDACXX} "${NABLA_NVCC}")  # read by check_language and enable_language
  endif()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(NABLA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "nabla: NABLA_CUDA=ON but no CUDA compiler (nvcc) was found. Put nvcc on "
      "PATH, or pass -DCMAKE_CUDA_COMPILER=/path/to/nvcc, or configure with -DNABLA_CUDA=OFF.")
  endif()
  message(STATUS "nabla: CUDA backend off (NABLA_CUDA=AUTO and no nvcc found)")
  return()
endif()

# CUDA 13 defaults to sm_75, and "native" fails on machines without a GPU (like CI). Unless told
# otherwise (-DCMAKE_CUDA_ARCHITECTURES=... or the CUDAARCHS variable): real code for Hopper
# (sm_90: the H100/H200 nabla is tuned on) and compute_80 PTX, which the driver compiles at load
# time for every GPU from Ampere on (sm_80, sm_86, sm_89, and Blackwell). One PTX target and no
# more real ones: each real one costs a full device compile of every .cu file, which CI pays.
# A GPU older than sm_80 gets a nabla::Error at its first use naming this option.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "90-real;80-virtual" CACHE STRING "CUDA architectures to build for")
endif()
# The shared runtime, the one cuBLAS and cuDNN use (CMake's default is the static one).
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
enable_language(CUDA)

# C++20 in .cu files. CMake 3.25 knows no C++20 flag for nvcc ("requires the language dialect
# CUDA20 ... does not know the flags"); nvcc >= 12 has -std=c++20, so supply it. Set after
# enable_language: the compiler checks it runs must not ask for CUDA20 either.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION OR CMAKE_CUDA20_STANDARD_COMPILE_OPTION STREQUAL "")
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
    message(FATAL_ERROR "nabla: CUDA ${CMAKE_CUDA_COMPILER_VERSION} found; nabla needs nvcc >= 12 "
      "for C++20 (or configure with -DNABLA_CUDA=OFF)")
  endif()
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)

find_package(CUDAToolkit REQUIRED)
# CUDA 13 moved Thrust/CUB/libcu++ under include/cccl: nvcc finds them by itself, g++ needs
# CCCL::CCCL. Its package config ships with the toolkit.
find_package(CCCL CONFIG REQUIRED PATHS "${CUDAToolkit_LIBRARY_DIR}/cmake" "${CUDAToolkit_LIBRARY_ROOT}/lib64/cmake")
find_package(CUDNN REQUIRED)

set(NABLA_WITH_CUDA ON)
message(STATUS "nabla: CUDA backend on: CUDA ${CUDAToolkit_VERSION}, "
  "architectures ${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${CUDNN_VERSION}, CCCL ${CCCL_VERSION}")
