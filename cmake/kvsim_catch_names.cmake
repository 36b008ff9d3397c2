# kvsim_catch_names(<prefix> <executable> [<test spec>]): the Catch2 test cases of <executable>
# (those matching the spec, if given). Sets <prefix>_keys to a list of SHA1 keys and
# <prefix>_<key> to each name: the names themselves are no CMake list, where ';' or an unmatched
# '[' in a name would split or join them.
function(kvsim_catch_names prefix executable)
  execute_process(COMMAND "${executable}" ${ARGN} --list-test-names-only OUTPUT_VARIABLE names RESULT_VARIABLE rc)
  # Catch2 exits with the number of tests listed.
  if(NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${executable} ${ARGN} --list-test-names-only: ${rc}")
  endif()
  set(keys "")
  while(NOT names STREQUAL "")
    string(FIND "${names}" "\n" nl)
    if(nl EQUAL -1)
      set(name "${names}")
      set(names "")
    else()
      string(SUBSTRING "${names}" 0 ${nl} name)
      math(EXPR rest "${nl} + 1")
      string(SUBSTRING "${names}" ${rest} -1 names)
    endif()
    if(NOT name STREQUAL "")
      string(SHA1 key "${name}")
      set(${prefix}_${key} "${name}" PARENT_SCOPE)
      list(APPEND keys ${key})
    endif()
  endwhile()
  set(${prefix}_keys "${keys}" PARENT_SCOPE)
endfunction()
