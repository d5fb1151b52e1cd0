# install(EXPORT) generates the imported target llmft::llmft for find_package(llmft).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS llmft EXPORT llmftTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/llmft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT llmftTargets NAMESPACE llmft:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/llmft)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/llmftConfig.cmake.in
  ${PROJECT_BINARY_DIR}/llmftConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/llmft)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/llmftConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/llmftConfig.cmake ${PROJECT_BINARY_DIR}/llmftConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/llmft)
# pkg-config, for C hosts and build systems other than CMake (llmft.h needs nothing else).
file(RELATIVE_PATH LLMFT_PC_UP "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")  # "../.." for lib/pkgconfig
configure_file(${PROJECT_SOURCE_DIR}/cmake/llmft.pc.in ${PROJECT_BINARY_DIR}/llmft.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/llmft.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
