# ccache for C++ and CUDA compiles when NABLA_CCACHE is on and ccache is installed.
# A launcher the user set (-DCMAKE_CXX_COMPILER_LAUNCHER=...) is left alone.

if(NOT NABLA_CCACHE)
  return()
endif()
find_program(NABLA_CCACHE_PROGRAM ccache)
mark_as_advanced(NABLA_CCACHE_PROGRAM)
if(NOT NABLA_CCACHE_PROGRAM)
  message(STATUS "nabla: ccache not found, compiling without it")
  return()
endif()
foreach(_lang CXX CUDA)
  if(NOT CMAKE_${_lang}_COMPILER_LAUNCHER)
    set(CMAKE_${_lang}_COMPILER_LAUNCHER "${NABLA_CCACHE_PROGRAM}")
  endif()
endforeach()
message(STATUS "nabla: compiling through ${NABLA_CCACHE_PROGRAM}")
