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
string(JSON tolerance GET "${first}" pulse_tolerance)
if(NOT impl STREQUAL "sgemm" OR NOT gflops GREATER 0 OR NOT tolerance EQUAL 0.07)
  message(FATAL_ERROR "first record is not the SGEMM rate with the default disturbance tolerance: ${first}")
endif()
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  require_fields("${line}" impl pass batch heads heads_k seqlen_q seqlen_k headdim causal dropout threads isa
                 ms gflops peak_bytes max_err sgemm_ratio)
  string(JSON heads_k GET "${line}" heads_k)
  string(JSON seqlen_k GET "${line}" seqlen_k)
  string(JSON causal GET "${line}" causal)
  string(JSON max_err GET "${line}" max_err)
  if(NOT heads_k EQUAL 2 OR NOT seqlen_k EQUAL 50 OR NOT causal STREQUAL "ON" OR max_err GREATER 1e-4)
    message(FATAL_ERROR "record does not describe the requested case or failed its check: ${line}")
  endif()
endforeach()

foreach(bad "--bogus" "--seqlen;abc" "--headdim;300" "--heads;6;--heads-k;4" "--dropout;1.5" "--impl;fast"
            "--pulse-tolerance;0" "--pulse-tolerance;1")
  execute_process(COMMAND ${FLASHATTN} bench ${bad} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: flashattn bench")
    message(FATAL_ERROR "`flashattn bench ${bad}` should exit 2 with a usage message, got ${rc}: ${err}")
  endif()
endforeach()

# The decode suite: every (batch, seqlen_k) with standard, flash and kvcache (contiguous and
# paged), each record with the K+V bytes read, its GB/s and the bandwidth measured beside it:
# the suite's pulse, a streaming read after every run (run_read_ms, one per run).
run_json_lines(lines out ${FLASHATTN} bench --out none --pass decode --batch 1,2 --seqlen-k 256,512 --heads 4
                        --heads-k 2 --headdim 32 --page-size 0,16 --threads 2 --repeat 1 --json -)
list(LENGTH lines count)
if(NOT count EQUAL 17)  # the sgemm record, then 2 batches x 2 lengths x (standard, flash, kvcache x 2 pages)
  message(FATAL_ERROR "expected 17 JSON lines, got ${count}:\n${out}")
endif()
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  require_fields("${line}" impl pass batch heads heads_k seqlen_q seqlen_k headdim ms gflops peak_bytes max_err
                 err_fraction ok variant page_size bytes_read gbps bandwidth_gbps bandwidth_ratio runs run_read_ms)
  math(EXPR want "2 * ${batch} * ${seqlen_k} * 2 * 32 * 4")
  string(JSON n_reads LENGTH "${line}" run_read_ms)
  string(JSON sgemm_pulses ERROR_VARIABLE no_sgemm_pulses GET "${line}" run_sgemm_ms)
  if(NOT pass STREQUAL "decode" OR NOT seqlen_q EQUAL 1 OR NOT bytes_read EQUAL want OR NOT bandwidth_ratio GREATER 0
     OR NOT ok STREQUAL "ON" OR NOT n_reads EQUAL runs OR NOT no_sgemm_pulses)
    message(FATAL_ERROR "decode record does not describe its case (bytes_read ${want} expected) or failed: ${line}")
  endif()
endforeach()
if(NOT out MATCHES "\"impl\":\"kvcache\"[^\n]*\"page_size\":16[^\n]*\"variant\":\"paged16\"")
  message(FATAL_ERROR "no paged kvcache record:\n${out}")
endif()
# With the paper's suite, the decode suite's sweeps are taken between the paper suite's (so
# that both sample the whole session): decode's first sweep before the paper's second. The
# decode suite keeps its shapes; the memory cap leaves its smallest (8 MiB of K and V).
run_json_lines(lines out ${FLASHATTN} bench --out none --impl flash --pass fwd,decode --seqlen 64 --headdim 16
                        --heads 1 --batch 1 --mem-cap-mib 10 --repeat 2 --sweeps 2 --json -)
string(FIND "${ERR}" "decode batch 1 seqlen_k 1024 f32 (sweep 1 of 2)" decode_first)
string(FIND "${ERR}" "N=64 d=16 plain (sweep 2 of 2)" paper_second)
string(FIND "${ERR}" "decode batch 1 seqlen_k 1024 f32 (sweep 2 of 2)" decode_second)
string(REGEX MATCH "{\"impl\":\"flash\",\"pass\":\"decode\"[^\n]*\"seqlen_k\":1024[^\n]*}" decode_line "${out}")
if(decode_line STREQUAL "")
  message(FATAL_ERROR "no decode record of the cache that fits:\n${out}")
endif()
string(JSON decode_runs GET "${decode_line}" runs)
if(decode_runs LESS 2)
  message(FATAL_ERROR "the decode record should hold both sweeps' runs: ${decode_line}")
endif()
if(decode_first EQUAL -1 OR paper_second EQUAL -1 OR decode_second EQUAL -1 OR NOT decode_first LESS paper_second
   OR NOT paper_second LESS decode_second)
  message(FATAL_ERROR "the decode sweeps should alternate with the paper suite's:\n${ERR}")
endif()
execute_process(COMMAND ${FLASHATTN} bench --pass decode --seqlen-k 100 --page-size 16
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "--page-size 16 must divide every --seqlen-k")
  message(FATAL_ERROR "a page size that does not divide the cache should be a usage error, got ${rc}: ${err}")
endif()

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
foreach(part "## Machine" "Runtime \\(ms, median\\), fwdbwd, padding" "## How the figures were taken" "## Flags" "OOM \\(skipped\\)" "## Memory footprint"
             "Figure 2 \\(left\\)" "## IO model" "\\| flash \\| paper \\| fwd \\| 64 \\|")
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

# Every timed record carries its spread: at least --repeat quiet runs (5 by default) unless
# unstable, the median within [ms_min, ms_max], each run and the pulse after it.
run_json_lines(lines out ${FLASHATTN} bench --out none --impl flash,standard --pass fwd,bwd,fwdbwd --seqlen 64
               --headdim 16 --heads 1 --variant plain --case-seconds 0 --json -)
list(GET lines 0 first)
require_fields("${first}" ms ms_min ms_max runs)
list(REMOVE_AT lines 0)
foreach(line IN LISTS lines)
  require_fields("${line}" ms_min ms_max ms_q1 ms_q3 runs discarded spread noisy unstable run_ms run_sgemm_ms
                 err_fraction ok remeasured flops)
  string(JSON ms GET "${line}" ms)
  string(JSON lo GET "${line}" ms_min)
  string(JSON hi GET "${line}" ms_max)
  string(JSON runs GET "${line}" runs)
  string(JSON unstable GET "${line}" unstable)
  string(JSON ok GET "${line}" ok)
  string(JSON n_runs LENGTH "${line}" run_ms)
  string(JSON n_pulses LENGTH "${line}" run_sgemm_ms)
  if(ms LESS lo OR ms GREATER hi OR NOT n_runs EQUAL runs OR NOT n_pulses EQUAL runs OR NOT ok STREQUAL "ON")
    message(FATAL_ERROR "record's spread does not hold together: ${line}")
  endif()
  if(NOT unstable STREQUAL "ON" AND runs LESS 5)
    message(FATAL_ERROR "a stable record needs at least 5 quiet runs: ${line}")
  endif()
  string(JSON pass GET "${line}" pass)
  string(JSON consistent ERROR_VARIABLE missing GET "${line}" consistent)
  if(pass STREQUAL "fwdbwd" AND missing)
    message(FATAL_ERROR "fwdbwd record without its consistency: ${line}")
  endif()
endforeach()

# The accuracy gate: a case whose error exceeds --err-limit times the allowed error is
# FAIL in the table, "ok": false in the JSON, and the command exits 1.
execute_process(COMMAND ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1
                        --variant plain --repeat 1 --err-limit 0
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT out MATCHES "FAIL" OR NOT err MATCHES "FAILED their accuracy check")
  message(FATAL_ERROR "--err-limit 0 should fail the case and exit 1, got ${rc}:\n${out}${err}")
endif()
execute_process(COMMAND ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --headdim 16 --heads 1
                        --variant plain --repeat 1 --err-limit 0 --json -
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT out MATCHES "\"ok\":false")
  message(FATAL_ERROR "a failed case should read \"ok\":false in the JSON, got ${rc}:\n${out}")
endif()

# --compare: B 3% slower than A with 1% noise is resolved; a file against itself is not.
set(a_runs "[100,101,99,100.5,99.5,100.2]")
set(b_runs "[103,104,102,103.5,102.5,103.2]")
set(pulses "[200,200,200,200,200,200]")
set(head "\"pass\":\"fwd\",\"batch\":1,\"heads\":8,\"heads_k\":8,\"seqlen_q\":1024,\"seqlen_k\":1024,\"headdim\":64,\"causal\":false,\"dropout\":0,\"threads\":2,\"mask\":\"none\",\"variant\":\"plain\",\"key_padding\":false")
file(WRITE "${WORK_DIR}/a.jsonl" "{\"impl\":\"sgemm\",\"pass\":\"gemm\",\"ms\":200}\n{\"impl\":\"flash\",${head},\"ms\":100.1,\"run_ms\":${a_runs},\"run_sgemm_ms\":${pulses}}\n")
file(WRITE "${WORK_DIR}/b.jsonl" "{\"impl\":\"flash\",${head},\"ms\":103.1,\"run_ms\":${b_runs},\"run_sgemm_ms\":${pulses}}\n")
run_json_lines(lines out ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/b.jsonl)
if(NOT out MATCHES "B slower by 3\\.[0-9]%" OR NOT out MATCHES "1 case\\(s\\) matched")
  message(FATAL_ERROR "--compare did not resolve a 3% difference:\n${out}")
endif()
if(NOT out MATCHES "overlap in 0 of 1 rows; apart in 1")
  message(FATAL_ERROR "--compare's summary should count the row apart:\n${out}")
endif()
run_json_lines(lines out ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/b.jsonl --json -)
list(GET lines 0 line)
string(JSON significant GET "${line}" significant)
string(JSON lo GET "${line}" ratio_lo)
string(JSON hi GET "${line}" ratio_hi)
if(NOT significant STREQUAL "ON" OR NOT lo GREATER 1.0 OR NOT hi GREATER 1.03 OR NOT lo LESS 1.03)
  message(FATAL_ERROR "--compare's interval should hold 1.03 and exclude 1: ${line}")
endif()
# The two spreads, [99, 101] and [102, 104], lie apart: a steady machine leaves 6 runs a side
# apart with chance 2 / C(12, 6) = 2 / 924.
string(JSON overlap GET "${line}" ranges_overlap)
string(JSON chance GET "${line}" chance_apart)
if(NOT overlap STREQUAL "OFF" OR chance LESS 0.00216 OR chance GREATER 0.00217)
  message(FATAL_ERROR "--compare should find the spreads apart, with chance 2/924: ${line}")
endif()
# The same runs with pulses 3% slower too (the whole machine slower in B's process): apart as
# times, overlapping as times over their pulses.
file(WRITE "${WORK_DIR}/c.jsonl" "{\"impl\":\"flash\",${head},\"ms\":103.1,\"run_ms\":${b_runs},\"run_sgemm_ms\":[206,206,206,206,206,206]}\n")
run_json_lines(lines out ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/c.jsonl --by pulse --json -)
string(JSON overlap GET "${lines}" ranges_overlap)
string(JSON pulse_overlap GET "${lines}" pulse_ranges_overlap)
if(NOT overlap STREQUAL "OFF" OR NOT pulse_overlap STREQUAL "ON")
  message(FATAL_ERROR "--by pulse: the times lie apart, their ratios to the pulses overlap: ${lines}")
endif()
run_json_lines(lines out ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/c.jsonl --by pulse)
if(NOT out MATCHES "\\) overlap in 0 of 1 rows" OR NOT out MATCHES "over its pulse overlap in 1 of 1 rows; apart in 0")
  message(FATAL_ERROR "--by pulse's summary should count both:\n${out}")
endif()
run_json_lines(lines out ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/a.jsonl,${WORK_DIR}/a.jsonl)
if(NOT out MATCHES "no significant difference" OR NOT out MATCHES "overlap in 1 of 1 rows; apart in 0")
  message(FATAL_ERROR "a file compared with itself should show no difference:\n${out}")
endif()
execute_process(COMMAND ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "two lists of JSON-lines files")
  message(FATAL_ERROR "--compare with one file should be a usage error, got ${rc}: ${err}")
endif()
execute_process(COMMAND ${FLASHATTN} bench --compare ${WORK_DIR}/a.jsonl ${WORK_DIR}/missing.jsonl
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "cannot read '.*missing.jsonl'")
  message(FATAL_ERROR "--compare with a missing file should say so, got ${rc}: ${err}")
endif()

# --baseline-lib: a copy of this build's library timed beside it (A/A): twin records
# "<impl>@baseline", and this build's records carry the paired ratio with its interval.
file(GLOB libs "${LIBRARY_DIR}/libflashattn.so.*.*.*")
list(GET libs 0 lib)
file(COPY_FILE "${lib}" "${WORK_DIR}/baseline_copy.so")
# (Two copies of one library in a process define every global twice, which AddressSanitizer
# reports as an ODR violation in a sanitized build: by design here.)
run_json_lines(lines out ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_odr_violation=0
               ${FLASHATTN} bench --out none --impl flash --pass fwd,bwd --seqlen 96 --headdim 16 --heads 2
               --variant plain --case-seconds 0 --baseline-lib ${WORK_DIR}/baseline_copy.so --json -)
list(LENGTH lines count)
if(NOT count EQUAL 5  # the pulse; flash fwd, its twin, flash bwd, its twin
   OR NOT out MATCHES "\"impl\":\"flash@baseline\",\"pass\":\"bwd\"[^\n]*\"ok\":true"
   OR NOT out MATCHES "\"impl\":\"flash\",\"pass\":\"fwd\"[^\n]*\"baseline_ratio\":[0-9.]+,\"baseline_ratio_lo\":[0-9.]+,\"baseline_ratio_hi\"")
  message(FATAL_ERROR "--baseline-lib should add twin records and paired ratios:\n${out}")
endif()
# Each twin's peak_bytes is counted by the copy's own allocator: the same code allocates the
# same bytes, and some (the forward's packed K and V, the backward's scratch).
foreach(at 1 3)
  math(EXPR twin_at "${at} + 1")
  list(GET lines ${at} mine)
  list(GET lines ${twin_at} twin)
  string(REGEX MATCH "\"peak_bytes\":([0-9]+)" _ "${mine}")
  set(mine_bytes "${CMAKE_MATCH_1}")
  string(REGEX MATCH "\"peak_bytes\":([0-9]+)" _ "${twin}")
  if(NOT mine_bytes GREATER 0 OR NOT CMAKE_MATCH_1 EQUAL mine_bytes)
    message(FATAL_ERROR "--baseline-lib's twin should count its own peak_bytes, as this build does:\n${mine}\n${twin}")
  endif()
endforeach()
execute_process(COMMAND ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --repeat 1
                        --baseline-lib ${WORK_DIR}/no_such_library.so
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "--baseline-lib: cannot load '.*no_such_library.so'")
  message(FATAL_ERROR "a missing --baseline-lib should say so, got ${rc}: ${err}")
endif()
# The decode suite takes the baseline too: each case (forward_with_kvcache's among them) has
# its twin, checked against the reference, and carries the paired ratio.
run_json_lines(lines out ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_odr_violation=0
               ${FLASHATTN} bench --out none --pass decode --impl flash,kvcache --page-size 0,16 --batch 1
               --seqlen-k 256 --heads 4 --heads-k 2 --headdim 32 --dtype f32,bf16 --repeat 3 --case-seconds 0
               --baseline-lib ${WORK_DIR}/baseline_copy.so --json -)
list(LENGTH lines count)
string(REGEX MATCHALL "\"baseline_ratio\":[0-9.]+,\"baseline_ratio_lo\"" ratios "${out}")
list(LENGTH ratios n_ratios)
string(REGEX MATCHALL "\"impl\":\"(flash|kvcache)@baseline\"[^\n]*\"ok\":true" twins "${out}")
list(LENGTH twins n_twins)
if(NOT count EQUAL 13 OR NOT n_ratios EQUAL 6 OR NOT n_twins EQUAL 6  # the pulse; 2 dtypes x 3 cases x 2 builds
   OR NOT out MATCHES "\"impl\":\"kvcache@baseline\",\"pass\":\"decode\"[^\n]*\"variant\":\"paged16\"")
  message(FATAL_ERROR "decode with --baseline-lib should add checked twins and paired ratios:\n${out}")
endif()
# The program holds the library's code statically, so this build's own shared library is a
# second copy, loaded beside it like any baseline (an A/A comparison).
execute_process(COMMAND ${FLASHATTN} bench --out none --impl flash --pass fwd --seqlen 64 --headdim 16 --repeat 1
                        --case-seconds 0 --baseline-lib ${lib} --json - RESULT_VARIABLE rc OUTPUT_VARIABLE out
                        ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\"impl\":\"flash@baseline\"")
  message(FATAL_ERROR "this build's own shared library should run as a baseline, got ${rc}: ${err}")
endif()

# FLOPs are counted once: causal written as a block mask under --causal computes the same
# scores as causal alone (the mask's blocks hold every causal score), not half of them.
run_json_lines(lines out ${FLASHATTN} bench --out none --impl flash,blocksparse --pass fwd --seqlen 256 --headdim 16
               --heads 1 --batch 1 --causal --mask causal --mask-block 64 --variant plain --repeat 1 --json -)
string(REGEX MATCH "\"impl\":\"flash\"[^\n]*\"flops\":([0-9]+)" m "${out}")
set(flash_flops "${CMAKE_MATCH_1}")
string(REGEX MATCH "\"impl\":\"blocksparse\"[^\n]*\"flops\":([0-9]+)" m "${out}")
set(sparse_flops "${CMAKE_MATCH_1}")
math(EXPR expected "4 * 256 * 256 * 16 / 2")
if(NOT flash_flops EQUAL expected OR NOT sparse_flops EQUAL expected)
  message(FATAL_ERROR "causal flops should be ${expected} for flash and the causal block mask, got "
                      "${flash_flops} and ${sparse_flops}:\n${out}")
endif()
