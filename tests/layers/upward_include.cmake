cmake_minimum_required(VERSION 3.20)
# Test of cmake/CheckLayers.cmake: the real tree passes; the same tree with one upward include planted (the comm layer
# including the job's config schema, as it once did) is refused, naming the file, the header and both layers.
# Then the build's own wall: each layer target compiles with an include path holding only its layer and the layers
# below it (src/CMakeLists.txt), so a header of a higher layer is not even found there.
#   cmake -DSOURCE_DIR=<project> -DWORK=<scratch folder> -DCXX=<compiler> -DLAYER_INCLUDE=<build/src/layer_include>
#         -DDEPS_<layer>=<a:b:c> ...
#         -P upward_include.cmake
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

# layer | a header it must find | a header of a higher layer it must not find
set(cases "comm|util/check.hpp|model/decoder.hpp" "comm|comm/world.hpp|train/setup.hpp"
          "jinja|tokenizer/jinja.hpp|tokenizer/tokenizer_impl.hpp" "data|tokenizer/chat.hpp|io/safetensors.hpp"
          "model|comm/communicator.hpp|optim/schedule.hpp" "util|util/file.hpp|tokenizer/bpe.hpp")
file(MAKE_DIRECTORY "${WORK}")
foreach(c IN LISTS cases)
  string(REPLACE "|" ";" parts "${c}")
  list(GET parts 0 layer)
  list(GET parts 1 own)
  list(GET parts 2 higher)
  file(WRITE "${WORK}/probe.cpp" "#if !__has_include(\"${own}\")\n#error ${layer} does not see ${own}\n#endif\n"
             "#if __has_include(\"${higher}\")\n#error ${layer} sees ${higher}\n#endif\n")
  # The include path of that layer's target: its folder and those of the layers it links (read from the build).
  file(GLOB visible LIST_DIRECTORIES true "${LAYER_INCLUDE}/*")
  set(flags "")
  foreach(d IN LISTS visible)
    get_filename_component(name "${d}" NAME)
    string(REPLACE ":" ";" allowed "${DEPS_${layer}}")  # the layers that target links (its LLMFT_LAYER_DEPS)
    if(name STREQUAL layer OR name IN_LIST allowed)
      list(APPEND flags "-I${d}")
    endif()
  endforeach()
  execute_process(COMMAND "${CXX}" -E ${flags} "${WORK}/probe.cpp" -o "${WORK}/probe.i" RESULT_VARIABLE rc
                  ERROR_VARIABLE err OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "layer ${layer}'s include path is wrong:\n${err}")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
message(STATUS "upward include refused as expected; each layer's include path holds only itself and the layers below")
