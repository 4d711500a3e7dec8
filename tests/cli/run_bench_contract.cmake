cmake_policy(SET CMP0007 NEW)

# The `flashattn bench --json` contract other tools read: every record is one JSON object
# per line with the fields the speed issue defines; bad flags exit 2 with a usage message.
execute_process(COMMAND ${FLASHATTN} bench --impl flash,standard --pass fwd,bwd --seqlen 40,70
                        --seqlen-k 50 --headdim 24 --heads 4 --heads-k 2 --causal --dropout 0.1
                        --threads 2 --repeat 1 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc)
  message(FATAL_ERROR "bench failed (${rc}): ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
list(FILTER lines EXCLUDE REGEX "^$")
list(LENGTH lines count)
if(NOT count EQUAL 9)  # the sgemm record, then 2 impls x 2 passes x 2 lengths
  message(FATAL_ERROR "expected 9 JSON lines, got ${count}:\n${out}")
endif()
list(GET lines 0 first)
string(JSON impl GET "${first}" impl)
string(JSON gflops GET "${first}" gflops)
if(NOT impl STREQUAL "sgemm" OR NOT gflops GREATER 0)
  message(FATAL_ERROR "first record is not the SGEMM rate: ${first}")
endif()
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  foreach(field impl pass batch heads heads_k seqlen_q seqlen_k headdim causal dropout threads isa
                ms gflops peak_bytes max_err sgemm_ratio)
    string(JSON value ERROR_VARIABLE missing GET "${line}" ${field})
    if(missing)
      message(FATAL_ERROR "field ${field} missing in ${line}")
    endif()
  endforeach()
  string(JSON heads_k GET "${line}" heads_k)
  string(JSON seqlen_k GET "${line}" seqlen_k)
  string(JSON causal GET "${line}" causal)
  string(JSON max_err GET "${line}" max_err)
  if(NOT heads_k EQUAL 2 OR NOT seqlen_k EQUAL 50 OR NOT causal STREQUAL "ON" OR max_err GREATER 1e-4)
    message(FATAL_ERROR "record does not describe the requested case or failed its check: ${line}")
  endif()
endforeach()

foreach(bad "--bogus" "--seqlen;abc" "--headdim;300" "--heads;6;--heads-k;4" "--dropout;1.5" "--impl;fast")
  execute_process(COMMAND ${FLASHATTN} bench ${bad} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: flashattn bench")
    message(FATAL_ERROR "`flashattn bench ${bad}` should exit 2 with a usage message, got ${rc}: ${err}")
  endif()
endforeach()

# Block-sparse records carry the mask's density and pattern.
execute_process(COMMAND ${FLASHATTN} bench --impl blocksparse --pass fwd,bwd --seqlen 300 --headdim 32
                        --heads 2 --mask-block 64 --density 0.4 --repeat 1 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"blocksparse\",\"pass\":\"bwd\"[^\n]*\"block_q\":64,\"block_k\":64,\"density\":0.4,\"mask\":\"random\"")
  message(FATAL_ERROR "blocksparse record without its mask fields:\n${out}${err}")
endif()

# A case over the memory cap is reported as skipped, not run.
execute_process(COMMAND ${FLASHATTN} bench --impl flash,standard --pass fwd --seqlen 3000 --headdim 16
                        --heads 1 --repeat 1 --no-check --mem-cap-mib 20 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"standard\",\"pass\":\"fwd\"[^\n]*\"skipped\":\"memory cap\""
   OR NOT out MATCHES "\"impl\":\"flash\",\"pass\":\"fwd\"[^\n]*\"sgemm_ratio\"")
  message(FATAL_ERROR "the memory cap should skip standard (36 MiB of scores) and run flash:\n${out}${err}")
endif()

# FLASHATTN_ISA forces the kernel build; an unknown name is an error, not a crash.
execute_process(COMMAND ${CMAKE_COMMAND} -E env FLASHATTN_ISA=portable
                        ${FLASHATTN} bench --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1 --repeat 1 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"flash\"[^\n]*\"isa\":\"portable\"")
  message(FATAL_ERROR "FLASHATTN_ISA=portable did not select the portable build:\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env FLASHATTN_ISA=sse9
                        ${FLASHATTN} bench --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1 --repeat 1
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "FLASHATTN_ISA: unknown value 'sse9'")
  message(FATAL_ERROR "FLASHATTN_ISA=sse9 should fail with a message, got ${rc}: ${err}")
endif()
