# Installs a nabla build into a fresh prefix, builds tests/install against it with
# find_package(nabla), runs the program and checks what it prints.
#
#   cmake -DNABLA_BUILD_DIR=<build> -DCONSUMER_SOURCE_DIR=<tests/install> -DWORK_DIR=<scratch>
#         [-DCONSUMER_GENERATOR=...] [-DCONSUMER_CXX_COMPILER=...] [-DCONSUMER_LAUNCHER=...]
#         [-DCONFIG=Release] -P run_install_test.cmake
foreach(v NABLA_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_install_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step("install" ${CMAKE_COMMAND} --install ${NABLA_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
foreach(f include/nabla/core/tensor.h include/nabla/core/error.h include/nabla/core/device.h)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install test: ${prefix}/${f} was not installed")
  endif()
endforeach()
# Internal headers stay out of the install tree: the backends and the test hooks.
foreach(f include/nabla/cuda include/nabla/cpu include/nabla/core/test_hooks.h)
  if(EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install test: ${prefix}/${f} was installed, but it is internal")
  endif()
endforeach()

set(configure_args -S ${CONSUMER_SOURCE_DIR} -B ${build} -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_BUILD_TYPE=${CONFIG})
if(CONSUMER_GENERATOR)
  list(APPEND configure_args -G ${CONSUMER_GENERATOR})
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER})
endif()
if(CONSUMER_LAUNCHER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER_LAUNCHER=${CONSUMER_LAUNCHER})
endif()
step("configure consumer" ${CMAKE_COMMAND} ${configure_args})
step("build consumer" ${CMAKE_COMMAND} --build ${build} --config ${CONFIG})

find_program(consumer nabla_consumer PATHS ${build} ${build}/${CONFIG} NO_DEFAULT_PATH
  NO_CACHE REQUIRED)
step("run consumer" ${consumer})
message("${step_output}")
if(NOT step_output MATCHES "nabla consumer OK: sum 21")
  message(FATAL_ERROR "install test: unexpected consumer output:\n${step_output}")
endif()
message(STATUS "install test passed: ${prefix}")
