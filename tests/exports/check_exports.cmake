# The shared libraries export the public API and nothing else of flashattn's: every
# flashattn symbol `nm -D` finds is named in the public headers, or is one of the
# internals flashattn::ring builds on (src/core/problem.hpp, src/core/memory.hpp) or the
# allocation counters `flashattn bench --baseline-lib` reads (src/core/memory.hpp).
# Arguments: NM, LIBRARIES (;-separated by |).
set(allowed
  # flashattn/attention.hpp, tensor.hpp, isa.hpp, error.hpp
  "flashattn::forward" "flashattn::backward" "flashattn::dropout_keep" "flashattn::to_string"
  "flashattn::TensorView::contiguous" "flashattn::TensorView::strided" "flashattn::TensorView::numel"
  "flashattn::parse_isa" "flashattn::isa_names" "flashattn::supported_isas" "flashattn::default_isa" "flashattn_abi_fingerprint"
  "typeinfo for flashattn::Error" "typeinfo name for flashattn::Error" "vtable for flashattn::Error"
  # flashattn/block_sparse.hpp, kvcache.hpp
  "flashattn::make_block_mask" "flashattn::local_global_blocks" "flashattn::fixed_stride_blocks"
  "flashattn::butterfly_blocks" "flashattn::random_blocks" "flashattn::forward_with_kvcache"
  "flashattn_kvcache_abi_fingerprint"
  # flashattn/ring.hpp
  "flashattn::ring::forward" "flashattn::ring::backward" "flashattn::ring::to_string" "flashattn::ring::chunks"
  "flashattn::ring::local_length" "flashattn::ring::shard" "flashattn::ring::unshard"
  # for flashattn::ring
  "flashattn::make_forward_problem" "flashattn::make_backward_problem" "flashattn::Buffer::Buffer"
  "flashattn::Buffer::~Buffer" "flashattn::Buffer::operator="
  # for flashattn bench --baseline-lib
  "flashattn::allocated_bytes" "flashattn::peak_allocated_bytes" "flashattn::reset_peak_allocated_bytes")
string(REPLACE "|" ";" libraries "${LIBRARIES}")
set(exported 0)
foreach(library IN LISTS libraries)
  execute_process(COMMAND ${NM} -D -C --defined-only ${library} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${NM} failed on ${library}: ${rc}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  foreach(line IN LISTS lines)
    # "<address> <type> <name>(<arguments>)": the name before its argument list.
    if(NOT line MATCHES "^[0-9a-f]+ [A-Za-z] (.*)$")
      continue()
    endif()
    set(symbol "${CMAKE_MATCH_1}")
    string(REGEX REPLACE "\\(.*$" "" name "${symbol}")
    if(NOT name MATCHES "flashattn")
      continue()  # the standard library's template instantiations
    endif()
    math(EXPR exported "${exported} + 1")
    list(FIND allowed "${name}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "${library} exports ${symbol}, which no public header declares")
    endif()
  endforeach()
endforeach()
if(exported LESS 20)
  message(FATAL_ERROR "only ${exported} flashattn symbols exported: is the public API missing?")
endif()
message(STATUS "${exported} flashattn symbols exported, each declared public")
