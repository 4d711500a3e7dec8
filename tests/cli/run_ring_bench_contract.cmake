cmake_policy(SET CMP0007 NEW)
include(${CMAKE_CURRENT_LIST_DIR}/json_lines.cmake)

# `mpirun -np 2 flashattn bench --impl ring --json -`: one record per (pass, layout) with the
# bench's fields plus the ring's, then the scaling model's records; bad flags exit 2.
set(ENV{OMPI_ALLOW_RUN_AS_ROOT} 1)
set(ENV{OMPI_ALLOW_RUN_AS_ROOT_CONFIRM} 1)
set(ENV{OMP_NUM_THREADS} 1)
set(ENV{ASAN_OPTIONS} detect_leaks=0)  # Open MPI's own allocations live to exit (sanitized builds)
string(REPLACE "|" ";" mpirun "${MPIRUN}")  # the launch line tests/CMakeLists.txt gives every MPI test
list(APPEND mpirun -n 2)
run_json_lines(lines out ${mpirun} ${FLASHATTN} bench --impl ring --seqlen 96 --heads 2 --heads-k 1 --headdim 16
                        --causal --runs 2 --threads 1 --model --json -)
set(rings 0)
set(models 0)
foreach(line IN LISTS lines)
  string(JSON impl GET "${line}" impl)
  if(impl STREQUAL "ring_model")
    require_fields("${line}" node_gflops link_gbps nodes seqlen step_ms forward_s efficiency)
    math(EXPR models "${models} + 1")
    continue()
  endif()
  require_fields("${line}" impl pass batch heads heads_k seqlen headdim causal ms ms_min ms_max runs gflops ranks
                 layout bytes_sent comm_ms comm_alone_ms overlap compute_imbalance memory_mb single_ms model_ms)
  if(NOT ranks EQUAL 2 OR NOT seqlen EQUAL 96 OR NOT heads_k EQUAL 1 OR NOT causal STREQUAL "ON"
     OR NOT bytes_sent GREATER 0 OR NOT ms GREATER 0)
    message(FATAL_ERROR "record does not describe the requested case: ${line}")
  endif()
  math(EXPR rings "${rings} + 1")
endforeach()
if(NOT rings EQUAL 4 OR models EQUAL 0)  # fwd and bwd x contiguous and zigzag, then the model
  message(FATAL_ERROR "expected 4 ring records and the model's, got ${rings} and ${models}:\n${out}")
endif()

foreach(bad "--layout;spiral" "--heads;6;--heads-k;4" "--impl;ring,flash")
  execute_process(COMMAND ${FLASHATTN} bench --impl ring ${bad} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: ")
    message(FATAL_ERROR "`flashattn bench --impl ring ${bad}` should exit 2 with a usage message, got ${rc}: ${err}")
  endif()
endforeach()
