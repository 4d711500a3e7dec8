# run_json_lines(LINES OUT command...): runs the command, fails the test with its stderr if
# it exits non-zero, and sets LINES to the non-empty lines of its stdout, OUT to all of it
# and ERR to its stderr.
function(run_json_lines lines_var out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "`${ARGN}` failed (${rc}): ${err}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  list(FILTER lines EXCLUDE REGEX "^$")
  set(${lines_var} "${lines}" PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(ERR "${err}" PARENT_SCOPE)
endfunction()

# require_fields(LINE FIELD...): fails the test naming the first FIELD the JSON object LINE
# lacks; sets a variable named after each FIELD to its value.
function(require_fields line)
  foreach(field IN LISTS ARGN)
    string(JSON value ERROR_VARIABLE missing GET "${line}" ${field})
    if(missing)
      message(FATAL_ERROR "field ${field} missing in ${line}")
    endif()
    set(${field} "${value}" PARENT_SCOPE)
  endforeach()
endfunction()
