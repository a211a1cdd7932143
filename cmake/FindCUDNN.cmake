# FindCUDNN: cuDNN has no CMake package config of its own.
#
# Looks for cudnn.h (or cudnn_v9.h) and libcudnn.so (or libcudnn.so.9) under, in order:
# CUDNN_ROOT (variable or environment), the CUDA toolkit, and the Debian/Ubuntu multiarch
# folders where the libcudnn9-dev-cuda-* packages put them.
#
# Result:
#   CUDNN_FOUND, CUDNN_VERSION (e.g. 9.19.0), CUDNN_INCLUDE_DIR, CUDNN_LIBRARY
#   imported target CUDNN::cudnn
#
# The version comes from cudnn_version.h (or cudnn_version_v9.h).

set(_cudnn_hints)
if(CUDNN_ROOT)
  list(APPEND _cudnn_hints ${CUDNN_ROOT})
endif()
if(DEFINED ENV{CUDNN_ROOT})
  list(APPEND _cudnn_hints $ENV{CUDNN_ROOT})
endif()
if(CUDAToolkit_INCLUDE_DIRS)
  list(APPEND _cudnn_hints ${CUDAToolkit_INCLUDE_DIRS})
endif()
if(CUDAToolkit_LIBRARY_DIR)
  list(APPEND _cudnn_hints ${CUDAToolkit_LIBRARY_DIR})
endif()
if(CUDAToolkit_ROOT)
  list(APPEND _cudnn_hints ${CUDAToolkit_ROOT})
endif()

find_path(CUDNN_INCLUDE_DIR
  NAMES cudnn.h cudnn_v9.h
  HINTS ${_cudnn_hints}
  PATHS /usr/local/cuda /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr
  PATH_SUFFIXES include)

find_library(CUDNN_LIBRARY
  NAMES cudnn libcudnn.so.9
  HINTS ${_cudnn_hints}
  PATHS /usr/local/cuda /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr
  PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu)

set(CUDNN_VERSION "")
if(CUDNN_INCLUDE_DIR)
  foreach(_cudnn_version_header cudnn_version.h cudnn_version_v9.h cudnn.h)
    if(EXISTS "${CUDNN_INCLUDE_DIR}/${_cudnn_version_header}")
      file(STRINGS "${CUDNN_INCLUDE_DIR}/${_cudnn_version_header}" _cudnn_version_lines
        REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
      if(_cudnn_version_lines)
        foreach(_part MAJOR MINOR PATCHLEVEL)
          string(REGEX MATCH "CUDNN_${_part} +([0-9]+)" _m "${_cudnn_version_lines}")
          set(_cudnn_${_part} "${CMAKE_MATCH_1}")
        endforeach()
        set(CUDNN_VERSION "${_cudnn_MAJOR}.${_cudnn_MINOR}.${_cudnn_PATCHLEVEL}")
        break()
      endif()
    endif()
  endforeach()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION "${CUDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
  if(TARGET CUDA::cudart)
    # cudnn.h includes cuda_runtime_api.h.
    set_property(TARGET CUDNN::cudnn APPEND PROPERTY INTERFACE_LINK_LIBRARIES CUDA::cudart)
  endif()
endif()

mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
unset(_cudnn_hints)
