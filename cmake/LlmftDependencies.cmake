# Finds what llmft builds against. Every package here is a Debian 12 package (scripts/deps.sh installs them);
# CUDA and NCCL are optional and only enable the GPU paths.
find_program(LLMFT_CCACHE ccache)
if(LLMFT_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${LLMFT_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${LLMFT_CCACHE})
endif()

find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(simdjson REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(Eigen3 REQUIRED NO_MODULE)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

# libtorch: Debian's libtorch-dev (CPU, 1.13) here, a CUDA build (2.x) through CMAKE_PREFIX_PATH on GPU machines.
find_package(Torch REQUIRED)
set(LLMFT_TORCH_CUDA OFF)
if(TORCH_CXX_FLAGS)
  separate_arguments(LLMFT_TORCH_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")
endif()
if(CAFFE2_USE_CUDA OR USE_CUDA)
  set(LLMFT_TORCH_CUDA ON)
endif()

# c10d's Gloo backend: the header is empty unless USE_C10D_GLOO is defined, and it needs libgloo-dev's headers.
find_path(LLMFT_GLOO_INCLUDE gloo/config.h)

set(LLMFT_HAVE_NCCL OFF)
if(LLMFT_WITH_NCCL)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    find_path(LLMFT_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
    find_library(LLMFT_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
    if(LLMFT_NCCL_INCLUDE AND LLMFT_NCCL_LIBRARY)
      set(LLMFT_HAVE_NCCL ON)
    endif()
  endif()
endif()
message(STATUS "llmft: torch ${Torch_VERSION} (CUDA: ${LLMFT_TORCH_CUDA}), gloo headers: ${LLMFT_GLOO_INCLUDE}, NCCL: ${LLMFT_HAVE_NCCL}")
