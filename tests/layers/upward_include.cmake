# Test of cmake/CheckLayers.cmake: the real tree passes; the same tree with one upward include planted (the comm layer
# including the job's config schema, as it once did) is refused, naming the file, the header and both layers.
#   cmake -DSOURCE_DIR=<project> -DWORK=<scratch folder> -P upward_include.cmake
set(check "${SOURCE_DIR}/cmake/CheckLayers.cmake")
execute_process(COMMAND "${CMAKE_COMMAND}" -DSRC=${SOURCE_DIR}/src -P "${check}" RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the tree itself breaks the layering:\n${out}")
endif()
file(REMOVE_RECURSE "${WORK}")
file(COPY "${SOURCE_DIR}/src/" DESTINATION "${WORK}/src")
file(APPEND "${WORK}/src/comm/world.hpp" "\n#include \"llmft/config.hpp\"\n")
execute_process(COMMAND "${CMAKE_COMMAND}" -DSRC=${WORK}/src -P "${check}" RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "an upward include (comm -> llmft/config.hpp) was not refused")
endif()
if(NOT out MATCHES "src/comm/world.hpp:[0-9]+ includes llmft/config.hpp \\(layer train\\) from layer comm")
  message(FATAL_ERROR "the refusal does not name the file, header and layers:\n${out}")
endif()
file(REMOVE_RECURSE "${WORK}")
message(STATUS "upward include refused as expected")
