cmake_policy(SET CMP0007 NEW)
include(${CMAKE_CURRENT_LIST_DIR}/json_lines.cmake)

# The `flashattn bench --json` contract other tools read: every record is one JSON object
# per line with the fields the speed issue defines; bad flags exit 2 with a usage message.
run_json_lines(lines out ${FLASHATTN} bench --out none --impl flash,standard --pass fwd,bwd --seqlen 40,70
                        --seqlen-k 50 --headdim 24 --heads 4 --heads-k 2 --causal --dropout 0.1
                        --threads 2 --repeat 1 --json -)
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
execute_process(COMMAND ${FLASHATTN} bench --out none --impl blocksparse --pass fwd,bwd --seqlen 300 --headdim 32
                        --heads 2 --mask-block 64 --density 0.4 --repeat 1 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"blocksparse\",\"pass\":\"bwd\"[^\n]*\"block_q\":64,\"block_k\":64,\"density\":0.4,\"mask\":\"random\"")
  message(FATAL_ERROR "blocksparse record without its mask fields:\n${out}${err}")
endif()

# A case over the memory cap is reported as skipped, not run.
execute_process(COMMAND ${FLASHATTN} bench --out none --impl flash,standard --pass fwd --seqlen 3000 --headdim 16
                        --heads 1 --repeat 1 --no-check --mem-cap-mib 20 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"standard\",\"pass\":\"fwd\"[^\n]*\"skipped\":\"memory cap\""
   OR NOT out MATCHES "\"impl\":\"flash\",\"pass\":\"fwd\"[^\n]*\"sgemm_ratio\"")
  message(FATAL_ERROR "the memory cap should skip standard (36 MiB of scores) and run flash:\n${out}${err}")
endif()

# FLASHATTN_ISA forces the kernel build; an unknown name is an error, not a crash.
execute_process(COMMAND ${CMAKE_COMMAND} -E env FLASHATTN_ISA=portable
                        ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1 --repeat 1 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "\"impl\":\"flash\"[^\n]*\"isa\":\"portable\"")
  message(FATAL_ERROR "FLASHATTN_ISA=portable did not select the portable build:\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env FLASHATTN_ISA=sse9
                        ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1 --repeat 1
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "FLASHATTN_ISA: unknown value 'sse9'")
  message(FATAL_ERROR "FLASHATTN_ISA=sse9 should fail with a message, got ${rc}: ${err}")
endif()

# The report run: variants (dropout and padding on fwdbwd only), a case over the memory cap
# shown as "OOM (skipped)", and the files under --out.
file(REMOVE_RECURSE "${WORK_DIR}/report")
run_json_lines(lines out ${FLASHATTN} bench --impl flash,standard,blocksparse --pass fwd,fwdbwd --seqlen 64,2048
                        --headdim 16 --mask-block 32 --repeat 1 --mem-cap-mib 12 --out ${WORK_DIR}/report --json -)
list(LENGTH lines count)
if(NOT count EQUAL 25)  # sgemm; plain 3 impls x 2 passes x 2 lengths; dropout, padding 3 x 1 x 2 each
  message(FATAL_ERROR "expected 25 JSON lines, got ${count}:\n${out}")
endif()
if(NOT out MATCHES "\"impl\":\"flash\",\"pass\":\"fwdbwd\"[^\n]*\"dropout\":0.1[^\n]*\"variant\":\"dropout\",\"key_padding\":false"
   OR NOT out MATCHES "\"impl\":\"standard\",\"pass\":\"fwdbwd\"[^\n]*\"variant\":\"padding\",\"key_padding\":true"
   OR NOT out MATCHES "\"impl\":\"standard\"[^\n]*\"seqlen_q\":2048[^\n]*\"skipped\":\"memory cap\"")
  message(FATAL_ERROR "variant or skipped records missing:\n${out}")
endif()
if(NOT ERR MATCHES "100%")
  message(FATAL_ERROR "no progress bar on stderr:\n${ERR}")
endif()
foreach(f report.md results.csv results.jsonl)
  if(NOT EXISTS "${WORK_DIR}/report/${f}")
    message(FATAL_ERROR "--out did not write ${f}")
  endif()
endforeach()
file(READ "${WORK_DIR}/report/report.md" report)
foreach(part "## Machine" "Runtime \\(ms\\), fwdbwd, padding" "OOM \\(skipped\\)" "## Memory footprint"
             "Figure 2 \\(left\\)" "## IO model" "\\| flash \\| fwd \\| 64 \\|")
  if(NOT report MATCHES "${part}")
    message(FATAL_ERROR "report.md lacks ${part}:\n${report}")
  endif()
endforeach()
file(STRINGS "${WORK_DIR}/report/results.csv" csv)
list(LENGTH csv rows)
if(NOT rows EQUAL 25)  # header + 24 cases
  message(FATAL_ERROR "results.csv has ${rows} lines")
endif()
find_program(GNUPLOT gnuplot)
if(GNUPLOT AND NOT EXISTS "${WORK_DIR}/report/runtime_fwd.png")
  message(FATAL_ERROR "gnuplot is installed but runtime_fwd.png was not drawn:\n${report}")
endif()
if(NOT GNUPLOT AND NOT report MATCHES "plot not drawn: gnuplot not found")
  message(FATAL_ERROR "without gnuplot the report should say why there is no plot")
endif()

# maskmod: causal written as a mask_mod callable, checked against the reference.
run_json_lines(lines out ${FLASHATTN} bench --out none --impl maskmod --pass fwd,bwd --seqlen 200 --seqlen-k 230
               --headdim 16 --heads 2 --mask-block 64 --repeat 1 --variant plain --json -)
if(NOT out MATCHES "\"impl\":\"maskmod\",\"pass\":\"bwd\"[^\n]*\"mask\":\"mask_mod causal\"")
  message(FATAL_ERROR "no maskmod record:\n${out}")
endif()
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  string(JSON max_err GET "${line}" max_err)
  if(max_err GREATER 1e-4)
    message(FATAL_ERROR "maskmod failed its check: ${line}")
  endif()
endforeach()
