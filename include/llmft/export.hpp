// Symbol visibility for the llmft shared library: everything is hidden unless marked LLMFT_API.
#pragma once

#if defined(_WIN32)
#  if defined(LLMFT_BUILDING_LIBRARY)
#    define LLMFT_API __declspec(dllexport)
#  else
#    define LLMFT_API __declspec(dllimport)
#  endif
#else
#  define LLMFT_API __attribute__((visibility("default")))
#endif
