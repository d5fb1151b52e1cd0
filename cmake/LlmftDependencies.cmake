# Finds what llmft builds against: Debian 12 packages (scripts/deps.sh installs them), libtorch 2.x, and, when the
# libtorch is a CUDA build, the CUDA toolkit and NCCL for the GPU paths.
#
# libtorch comes from the project's Python environment (LLMFT_VENV, default .venv, made by scripts/deps.sh): CMake
# asks its torch for torch.utils.cmake_prefix_path. Any other libtorch 2.x works through CMAKE_PREFIX_PATH (the
# official zip, a conda environment); a CUDA libtorch's CMake package then needs a CUDA toolkit (CUDA_TOOLKIT_ROOT_DIR).
find_program(LLMFT_CCACHE ccache)
if(LLMFT_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${LLMFT_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${LLMFT_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${LLMFT_CCACHE})
endif()

find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
# libtorch's include directory carries a copy of fmt 12 (compiled into libtorch, its symbols hidden). Every llmft
# translation unit must see the fmt it links, Debian's, so that one's headers come first: a folder holding only a link
# to them goes ahead of every other include directory (torch's are -isystem too).
get_target_property(LLMFT_FMT_INCLUDE fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
if(NOT EXISTS "${LLMFT_FMT_INCLUDE}/fmt/format.h")
  message(FATAL_ERROR "fmt's headers are not where its CMake package says (${LLMFT_FMT_INCLUDE})")
endif()
file(MAKE_DIRECTORY "${PROJECT_BINARY_DIR}/fmt-first")
file(CREATE_LINK "${LLMFT_FMT_INCLUDE}/fmt" "${PROJECT_BINARY_DIR}/fmt-first/fmt" SYMBOLIC)
include_directories(BEFORE SYSTEM "${PROJECT_BINARY_DIR}/fmt-first")
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(simdjson REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(Eigen3 REQUIRED NO_MODULE)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

# --- libtorch ------------------------------------------------------------------------------------------------------
set(LLMFT_TORCH_MIN_VERSION 2.6)
set(_venv_default "${PROJECT_SOURCE_DIR}/.venv")
if(DEFINED ENV{LLMFT_VENV})
  set(_venv_default "$ENV{LLMFT_VENV}")
endif()
set(LLMFT_VENV "${_venv_default}" CACHE PATH "Python environment with torch (scripts/deps.sh makes it; $LLMFT_VENV)")
set(LLMFT_PYTHON "" CACHE FILEPATH "Python of the test oracles and benchmarks (default: LLMFT_VENV's)")
if(NOT LLMFT_PYTHON AND EXISTS "${LLMFT_VENV}/bin/python")
  set(LLMFT_PYTHON "${LLMFT_VENV}/bin/python" CACHE FILEPATH "" FORCE)
endif()
if(NOT Torch_DIR AND LLMFT_PYTHON)
  execute_process(COMMAND ${LLMFT_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  if(_rc EQUAL 0 AND _torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  endif()
endif()
# The CUDA toolkit that scripts/deps.sh assembles from PyPI's nvidia-* wheels, unless one is given.
if(EXISTS "${LLMFT_VENV}/cuda/bin/nvcc" AND NOT CUDA_TOOLKIT_ROOT_DIR AND NOT DEFINED ENV{CUDA_HOME})
  set(CUDA_TOOLKIT_ROOT_DIR "${LLMFT_VENV}/cuda" CACHE PATH "CUDA toolkit")
  set(CUDAToolkit_ROOT "${LLMFT_VENV}/cuda")
  if(NOT CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_COMPILER "${LLMFT_VENV}/cuda/bin/nvcc" CACHE FILEPATH "CUDA compiler")
  endif()
endif()
# GPU code is compiled for Hopper (H100 / H200) unless told otherwise.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures of the GPU code")
endif()

find_package(Torch QUIET)
if(NOT Torch_FOUND)
  message(FATAL_ERROR "llmft needs libtorch >= ${LLMFT_TORCH_MIN_VERSION}: run scripts/deps.sh build (it makes "
          "${LLMFT_VENV} with PyPI's torch), or point CMAKE_PREFIX_PATH at a libtorch (Torch_DIR: ${Torch_DIR})")
endif()
if(Torch_VERSION VERSION_LESS LLMFT_TORCH_MIN_VERSION)
  message(FATAL_ERROR "llmft needs libtorch >= ${LLMFT_TORCH_MIN_VERSION}; ${Torch_DIR} is ${Torch_VERSION}")
endif()
if(TORCH_CXX_FLAGS)
  separate_arguments(LLMFT_TORCH_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")
endif()
set(LLMFT_TORCH_CUDA OFF)
if(CAFFE2_USE_CUDA)
  set(LLMFT_TORCH_CUDA ON)
endif()
get_filename_component(LLMFT_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)

# --- c10d's Gloo backend -------------------------------------------------------------------------------------------
# ProcessGroupGloo.hpp needs Gloo's headers at the commit libtorch was built with (README.md, Dependencies); the
# symbols are libtorch_cpu's own. scripts/deps.sh unpacks the matching headers into LLMFT_VENV/gloo/include.
find_path(LLMFT_GLOO_INCLUDE gloo/rendezvous/store.h HINTS "${LLMFT_VENV}/gloo/include" NO_DEFAULT_PATH)
if(NOT LLMFT_GLOO_INCLUDE)
  message(FATAL_ERROR "Gloo headers for c10d's ProcessGroupGloo not found: run scripts/deps.sh build, or set "
          "LLMFT_GLOO_INCLUDE to Gloo's headers at the commit of your libtorch's third_party/gloo")
endif()

# --- CUDA and NCCL (the GPU paths) ---------------------------------------------------------------------------------
set(LLMFT_HAVE_NCCL OFF)
if(LLMFT_WITH_NCCL AND LLMFT_TORCH_CUDA)
  if(NOT CUDAToolkit_FOUND)  # libtorch's CMake package has usually looked already
    find_package(CUDAToolkit REQUIRED)
  endif()
  find_path(LLMFT_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
  find_library(LLMFT_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
  if(LLMFT_NCCL_INCLUDE AND LLMFT_NCCL_LIBRARY)
    set(LLMFT_HAVE_NCCL ON)
  endif()
endif()
message(STATUS "llmft: torch ${Torch_VERSION} from ${Torch_DIR} (CUDA: ${LLMFT_TORCH_CUDA}), "
               "gloo headers: ${LLMFT_GLOO_INCLUDE}, NCCL: ${LLMFT_HAVE_NCCL}, python: ${LLMFT_PYTHON}")
