# OpenBLAS for the CPU GEMM.
#
# Prefers the OpenMP build (Debian: libopenblas-openmp-dev), whose threads are OpenMP threads and
# so cooperate with the OpenMP loops of cpu/. Accepts the pthread build (e.g. Ubuntu hosts that
# only have libopenblas0-pthread); then cpu/ gets NABLA_OPENBLAS_PTHREAD=1 so it can keep
# OpenBLAS's own threads from oversubscribing the cores inside OpenMP regions.
#
# Result: BLAS::BLAS, NABLA_CBLAS_INCLUDE_DIR (the folder holding the matching cblas.h),
# NABLA_OPENBLAS_VARIANT (openmp, pthread or unknown).

set(BLA_VENDOR OpenBLAS)

# Debian and Ubuntu install each variant in its own multiarch folder; the unversioned
# /usr/lib/<arch>/libopenblas.so is whichever update-alternatives picked. Search the OpenMP
# folder first so it wins when both are installed.
set(_nabla_blas_saved_library_path "${CMAKE_LIBRARY_PATH}")
if(CMAKE_LIBRARY_ARCHITECTURE)
  list(PREPEND CMAKE_LIBRARY_PATH
    /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
    /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread)
endif()
find_package(BLAS REQUIRED)
set(CMAKE_LIBRARY_PATH "${_nabla_blas_saved_library_path}")

set(NABLA_OPENBLAS_VARIANT unknown)
foreach(_lib IN LISTS BLAS_LIBRARIES)
  get_filename_component(_real "${_lib}" REALPATH)
  if(_real MATCHES "openblas-openmp|openblaso")
    set(NABLA_OPENBLAS_VARIANT openmp)
  elseif(_real MATCHES "openblas-pthread")
    set(NABLA_OPENBLAS_VARIANT pthread)
  endif()
  if(NOT NABLA_OPENBLAS_VARIANT STREQUAL "unknown")
    break()
  endif()
endforeach()

set(_nabla_cblas_hints)
if(CMAKE_LIBRARY_ARCHITECTURE AND NOT NABLA_OPENBLAS_VARIANT STREQUAL "unknown")
  list(APPEND _nabla_cblas_hints
    /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-${NABLA_OPENBLAS_VARIANT})
endif()
find_path(NABLA_CBLAS_INCLUDE_DIR cblas.h
  HINTS ${_nabla_cblas_hints}
  PATH_SUFFIXES openblas-openmp openblas-pthread openblas
  PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} /usr/include
  REQUIRED)

if(NABLA_OPENBLAS_VARIANT STREQUAL "openmp")
  message(STATUS "nabla: OpenBLAS, OpenMP variant: ${BLAS_LIBRARIES}")
elseif(NABLA_OPENBLAS_VARIANT STREQUAL "pthread")
  message(STATUS "nabla: OpenBLAS, pthread variant (${BLAS_LIBRARIES}); the OpenMP one "
    "(Debian: libopenblas-openmp-dev) is preferred, GEMM will limit OpenBLAS threads inside "
    "OpenMP regions")
else()
  message(STATUS "nabla: OpenBLAS of unknown threading variant: ${BLAS_LIBRARIES}")
endif()
unset(_nabla_cblas_hints)
unset(_nabla_blas_saved_library_path)
