# Installs the already-built tree into WORK_DIR/prefix, then configures, builds and runs
# the consumer project against it with find_package(flashattn).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
# A sanitized library needs a consumer built with the same flags (ASan's runtime must come
# first in the link).
string(REPLACE ";" " " flags "${CONSUMER_FLAGS}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix "-DCMAKE_CXX_FLAGS=${flags}"
                        "-DCMAKE_EXE_LINKER_FLAGS=${flags}" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer gave a wrong answer: ${rc}")
endif()
# The ring component, run by two ranks on this machine only.
if(EXISTS ${WORK_DIR}/build/ring_consumer AND MPIRUN)
  string(REPLACE "|" ";" mpirun "${MPIRUN}")  # the launch line tests/CMakeLists.txt gives every MPI test
  set(ENV{OMPI_ALLOW_RUN_AS_ROOT} 1)
  set(ENV{OMPI_ALLOW_RUN_AS_ROOT_CONFIRM} 1)
  set(ENV{ASAN_OPTIONS} detect_leaks=0)
  execute_process(COMMAND ${mpirun} -n 2 ${WORK_DIR}/build/ring_consumer RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "the ring consumer gave a wrong answer: ${rc}")
  endif()
elseif(MPIRUN)
  message(FATAL_ERROR "the package was built with flashattn::ring but the consumer did not find it")
endif()
