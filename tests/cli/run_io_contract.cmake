cmake_policy(SET CMP0007 NEW)
include(${CMAKE_CURRENT_LIST_DIR}/json_lines.cmake)
cmake_policy(SET CMP0054 NEW)

# `flashattn io`: the JSON records other tools read, the fitted exponents of Theorem 2, the
# files under --out, and usage errors for bad flags.
run_json_lines(lines out ${FLASHATTN} io --seqlen 512,1024,2048 --headdim 32 --sram 1024,2048,4096
                        --impl standard,flash,blocksparse --pass fwd,bwd --no-time --measure none
                        --fig-seqlen 128 --fig-heads 1 --blocks 16,32 --json -)
set(sweep 0)
foreach(line IN LISTS lines)
  string(JSON section GET "${line}" section)
  string(JSON impl GET "${line}" impl)
  string(JSON pass GET "${line}" pass)
  string(JSON tiles ERROR_VARIABLE no_tiles GET "${line}" tiles)
  if(no_tiles)
    message(FATAL_ERROR "field tiles missing in ${line}")
  endif()
  if(section STREQUAL "fit")
    string(JSON a GET "${line}" a)
    string(JSON b GET "${line}" b)
    if(impl STREQUAL "flash" AND (a LESS 1.8 OR a GREATER 2.1 OR b LESS -1.3 OR b GREATER -0.8))
      message(FATAL_ERROR "flash should scale as N^2 M^-1: ${line}")
    endif()
    # Along the paper's loops and tiles, Theorem 2's exponent itself.
    if(impl STREQUAL "flash" AND tiles STREQUAL "paper" AND (b LESS -1.05 OR b GREATER -0.95))
      message(FATAL_ERROR "flash along the paper's Algorithm 1 should scale as M^-1: ${line}")
    endif()
    if(impl STREQUAL "standard" AND (a LESS 1.8 OR b LESS -0.05 OR b GREATER 0.05))
      message(FATAL_ERROR "standard should scale as N^2 and not with M: ${line}")
    endif()
    continue()
  endif()
  foreach(field impl pass seqlen headdim sram_elems block_r block_c slow_reads slow_writes flops lower_bound)
    string(JSON value ERROR_VARIABLE missing GET "${line}" ${field})
    if(missing)
      message(FATAL_ERROR "field ${field} missing in ${line}")
    endif()
  endforeach()
  if(section STREQUAL "sweep")
    math(EXPR sweep "${sweep} + 1")
  endif()
endforeach()
if(NOT sweep EQUAL 90)  # (standard + flash and blocksparse under two tile rules) x 2 passes x 3 lengths x 3 sizes
  message(FATAL_ERROR "expected 54 sweep records, got ${sweep}:\n${out}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}/out")
execute_process(COMMAND ${FLASHATTN} io --seqlen 256,512 --headdim 16 --sram 512,1024 --no-time --measure none
                        --fig-seqlen 64 --fig-heads 1 --blocks 16 --out ${WORK_DIR}/out
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT EXISTS "${WORK_DIR}/out/io.md" OR NOT EXISTS "${WORK_DIR}/out/io.csv")
  message(FATAL_ERROR "io --out did not write io.md and io.csv (${rc}): ${out}${err}")
endif()
file(READ "${WORK_DIR}/out/io.md" md)
if(NOT md MATCHES "Figure 2 \\(left\\)" OR NOT md MATCHES "a \\(N\\^a\\)")
  message(FATAL_ERROR "io.md lacks its tables:\n${md}")
endif()

foreach(bad "--bogus" "--seqlen;abc" "--seqlen;0" "--sram;0" "--headdim;0" "--headdim;300" "--measure;magic"
            "--impl;fast" "--tiles;square" "--density;2" "--pass;fwdbwd" "--sram;200;--headdim;64")
  execute_process(COMMAND ${FLASHATTN} io ${bad} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: flashattn io")
    message(FATAL_ERROR "`flashattn io ${bad}` should exit 2 with a usage message, got ${rc}: ${err}")
  endif()
endforeach()

# A flag given twice takes its last value.
execute_process(COMMAND ${FLASHATTN} io --seqlen 100 --seqlen 300 --headdim 16 --sram 1024 --impl flash --pass fwd
                        --no-time --measure none --fig-seqlen 64 --fig-heads 1 --blocks 16 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"section\":\"sweep\"[^\n]*\"seqlen\":300" OR out MATCHES "\"section\":\"sweep\"[^\n]*\"seqlen\":100")
  message(FATAL_ERROR "a repeated --seqlen should take its last value (${rc}):\n${out}${err}")
endif()

execute_process(COMMAND ${FLASHATTN} io --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(rc OR NOT out MATCHES "--sram M" OR NOT out MATCHES "--measure SOURCE")
  message(FATAL_ERROR "io --help does not describe its flags: ${out}")
endif()
execute_process(COMMAND ${FLASHATTN} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(rc OR NOT out MATCHES "bench" OR NOT out MATCHES "io ")
  message(FATAL_ERROR "flashattn --help does not list bench and io: ${out}")
endif()
execute_process(COMMAND ${FLASHATTN} frobnicate RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "unknown command")
  message(FATAL_ERROR "an unknown command should exit 2: ${rc} ${err}")
endif()
