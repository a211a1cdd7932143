# Uses a nabla build the way a program outside the project would, in one of four modes:
#
#   install     (default) installs it into a fresh prefix, checks what was installed (public
#               headers only, the SONAME), builds tests/install against the prefix with
#               find_package(nabla), runs the program and checks what it prints;
#   build-tree  the same program, configured with -Dnabla_DIR=<build>: no install;
#   pkg-config  installs, then builds tests/install/main.cpp with
#               `c++ -std=c++20 main.cpp $(pkg-config --cflags --libs nabla)`, runs it;
#   headers     installs, then compiles each installed header alone (a one-line .cpp that
#               includes it, -fsyntax-only) against the prefix only, with the public flags:
#               a header that includes something not installed fails.
#
#   cmake -DNABLA_BUILD_DIR=<build> -DCONSUMER_SOURCE_DIR=<tests/install> -DWORK_DIR=<scratch>
#         -DNABLA_VERSION=<x.y.z> [-DMODE=install|build-tree|pkg-config|headers]
#         [-DCONSUMER_GENERATOR=...] [-DCONSUMER_CXX_COMPILER=...] [-DCONSUMER_LAUNCHER=...]
#         [-DPUBLIC_FLAGS=flag|flag|...] [-DCONFIG=Release] -P run_install_test.cmake
foreach(v NABLA_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR NABLA_VERSION)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_install_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()
if(NOT MODE)
  set(MODE install)
endif()
if(NOT MODE MATCHES "^(install|build-tree|pkg-config|headers)$")
  message(FATAL_ERROR "run_install_test.cmake: unknown MODE '${MODE}'")
endif()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${MODE} test: ${name} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# Runs the consumer program and checks its output: the tensor's sum, and the library's version.
function(check_consumer_run program)
  step("run consumer" ${ARGN} ${program})
  message("${step_output}")
  if(NOT step_output MATCHES "nabla consumer OK: sum 21")
    message(FATAL_ERROR "${MODE} test: unexpected consumer output:\n${step_output}")
  endif()
  if(NOT step_output MATCHES "nabla ${NABLA_VERSION} \\(headers ${NABLA_VERSION}\\)")
    message(FATAL_ERROR "${MODE} test: the consumer did not report version ${NABLA_VERSION}:\n${step_output}")
  endif()
endfunction()

if(NOT MODE STREQUAL "build-tree")
  step("install" ${CMAKE_COMMAND} --install ${NABLA_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
  foreach(f include/nabla/core/tensor.h include/nabla/core/error.h include/nabla/core/device.h
      include/nabla/export.h include/nabla/version.h)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "${MODE} test: ${prefix}/${f} was not installed")
    endif()
  endforeach()
  # Internal headers stay out of the install tree: the backends and the test hooks.
  foreach(f include/nabla/cuda include/nabla/cpu include/nabla/core/test_hooks.h)
    if(EXISTS ${prefix}/${f})
      message(FATAL_ERROR "${MODE} test: ${prefix}/${f} was installed, but it is internal")
    endif()
  endforeach()
  file(GLOB_RECURSE libs LIST_DIRECTORIES false RELATIVE ${prefix} ${prefix}/lib*/libnabla.so)
  if(NOT libs)
    message(FATAL_ERROR "${MODE} test: no lib*/libnabla.so under ${prefix}")
  endif()
  list(GET libs 0 lib)
  get_filename_component(libdir ${prefix}/${lib} DIRECTORY)
endif()

if(MODE STREQUAL "install")
  # The SONAME: major.minor while the major version is 0 (any 0.x minor may break the ABI),
  # the major alone from 1.0 on.
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _ "${NABLA_VERSION}")
  if(CMAKE_MATCH_1 EQUAL 0)
    set(soname libnabla.so.${CMAKE_MATCH_1}.${CMAKE_MATCH_2})
  else()
    set(soname libnabla.so.${CMAKE_MATCH_1})
  endif()
  find_program(readelf NAMES readelf NO_CACHE REQUIRED)
  step("readelf" ${readelf} -d ${libdir}/libnabla.so)
  if(NOT step_output MATCHES "\\(SONAME\\)[^\n]*\\[${soname}\\]")
    message(FATAL_ERROR "install test: libnabla.so's SONAME is not ${soname}:\n${step_output}")
  endif()
  if(NOT EXISTS ${libdir}/${soname} OR NOT EXISTS ${libdir}/libnabla.so.${NABLA_VERSION})
    message(FATAL_ERROR "install test: ${libdir} lacks ${soname} or libnabla.so.${NABLA_VERSION}")
  endif()
  message(STATUS "SONAME ${soname}")
endif()

if(MODE STREQUAL "install" OR MODE STREQUAL "build-tree")
  set(configure_args -S ${CONSUMER_SOURCE_DIR} -B ${build} -DCMAKE_BUILD_TYPE=${CONFIG})
  if(MODE STREQUAL "install")
    list(APPEND configure_args -DCMAKE_PREFIX_PATH=${prefix})
  else()
    list(APPEND configure_args -Dnabla_DIR=${NABLA_BUILD_DIR})
  endif()
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
  # tests/install/CMakeLists.txt prints "consumer: nabla <version> from <nabla_DIR>".
  if(MODE STREQUAL "install")
    set(want_dir ${prefix}/)
  else()
    set(want_dir ${NABLA_BUILD_DIR})
  endif()
  string(FIND "${step_output}" "nabla ${NABLA_VERSION} from ${want_dir}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${MODE} test: the consumer did not find nabla ${NABLA_VERSION} in ${want_dir}:\n${step_output}")
  endif()
  step("build consumer" ${CMAKE_COMMAND} --build ${build} --config ${CONFIG})
  find_program(consumer nabla_consumer PATHS ${build} ${build}/${CONFIG} NO_DEFAULT_PATH
    NO_CACHE REQUIRED)
  check_consumer_run(${consumer})
endif()

if(MODE STREQUAL "pkg-config")
  find_program(pkg_config NAMES pkg-config pkgconf NO_CACHE REQUIRED)
  if(NOT CONSUMER_CXX_COMPILER)
    set(CONSUMER_CXX_COMPILER c++)
  endif()
  # As a user would type it, through the shell; only nabla.pc's folder is added to the search path.
  step("build consumer with pkg-config" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${libdir}/pkgconfig
    sh -c "\"${CONSUMER_CXX_COMPILER}\" -std=c++20 \"${CONSUMER_SOURCE_DIR}/main.cpp\" -o \"${WORK_DIR}/consumer\" \$(\"${pkg_config}\" --cflags --libs nabla)")
  step("pkg-config" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${libdir}/pkgconfig
    ${pkg_config} --cflags --libs nabla)
  message(STATUS "pkg-config --cflags --libs nabla: ${step_output}")
  # nabla.pc finds its prefix from its own folder: -I<prefix>/lib/pkgconfig/../../include.
  string(REGEX MATCH "-I([^ \n]+)" _ "${step_output}")
  get_filename_component(include_dir "${CMAKE_MATCH_1}" REALPATH)
  get_filename_component(want_include_dir "${prefix}/include" REALPATH)
  if(NOT include_dir STREQUAL want_include_dir OR NOT step_output MATCHES "-lnabla")
    message(FATAL_ERROR "pkg-config test: the flags do not name ${prefix}/include and -lnabla:\n${step_output}")
  endif()
  check_consumer_run(${WORK_DIR}/consumer ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir})
endif()

if(MODE STREQUAL "headers")
  if(NOT CONSUMER_CXX_COMPILER)
    set(CONSUMER_CXX_COMPILER c++)
  endif()
  string(REPLACE "|" ";" public_flags "${PUBLIC_FLAGS}")
  file(GLOB_RECURSE headers LIST_DIRECTORIES false RELATIVE ${prefix}/include ${prefix}/include/*)
  list(SORT headers)
  set(failed "")
  set(n 0)
  foreach(h IN LISTS headers)
    if(NOT h MATCHES "\\.h$")
      message(FATAL_ERROR "headers test: ${prefix}/include/${h} is installed but is not a .h header")
    endif()
    string(MAKE_C_IDENTIFIER "${h}" id)
    set(src ${WORK_DIR}/${id}.cpp)
    file(WRITE ${src} "#include <${h}>\n")
    # Only the prefix: -nostdinc++ is not used (the standard library is a system header), but no
    # source or build folder of nabla is on the path.
    execute_process(COMMAND ${CONSUMER_CXX_COMPILER} -std=c++20 -fsyntax-only -Wall -Wextra
        -I${prefix}/include ${public_flags} ${src}
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      string(APPEND failed "\n--- ${h}:\n${out}")
    endif()
    math(EXPR n "${n} + 1")
  endforeach()
  if(failed)
    message(FATAL_ERROR "headers test: installed headers that do not compile alone:${failed}")
  endif()
  if(n LESS 10)
    message(FATAL_ERROR "headers test: only ${n} headers installed under ${prefix}/include")
  endif()
  message(STATUS "headers test: ${n} installed headers compile alone")
endif()

message(STATUS "${MODE} test passed")
