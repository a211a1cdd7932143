# Runs a job that fails on purpose (programs/rank_throws.cpp) and checks how it ends:
#   cmake -DMPIEXEC=... -DPROGRAM=... -DMODE=throw|abort|timeout -DEXPECT=<text in the output>
#         -DMAX_SECONDS=<n> [-DMIN_SECONDS=<n>] -P failure_test.cmake
# The job must end within MAX_SECONDS (and, for a timeout, not before MIN_SECONDS), with a
# non-zero status and EXPECT in its output. A hung job is killed at 3 * MAX_SECONDS, so that
# a failure of this test does not stall the suite.
foreach(var MPIEXEC PROGRAM MODE EXPECT MAX_SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "failure_test.cmake: -D${var}=... is missing")
  endif()
endforeach()
if(NOT DEFINED MIN_SECONDS)
  set(MIN_SECONDS 0)
endif()

math(EXPR kill_after "${MAX_SECONDS} * 3")
string(TIMESTAMP start "%s%f")
execute_process(COMMAND ${MPIEXEC} -n 2 ${PROGRAM} ${MODE}
  TIMEOUT ${kill_after}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
string(TIMESTAMP end "%s%f")
math(EXPR elapsed_ms "(${end} - ${start}) / 1000")
message(STATUS "mpiexec -n 2 ${PROGRAM} ${MODE}: status '${status}' after ${elapsed_ms} ms; output:\n${out}")

if(status STREQUAL "0")
  message(FATAL_ERROR "the job exited with status 0; expected a failure")
endif()
if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself: ${status}")
endif()
string(FIND "${out}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the output lacks '${EXPECT}'")
endif()
math(EXPR max_ms "${MAX_SECONDS} * 1000")
math(EXPR min_ms "${MIN_SECONDS} * 1000")
if(elapsed_ms GREATER max_ms)
  message(FATAL_ERROR "the job took ${elapsed_ms} ms to end; expected at most ${MAX_SECONDS} s")
endif()
if(elapsed_ms LESS min_ms)
  message(FATAL_ERROR "the job ended after ${elapsed_ms} ms; expected at least ${MIN_SECONDS} s (the timeout)")
endif()
