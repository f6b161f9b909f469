# Shared CMake helpers for masep. No file(GLOB): every source is listed by hand.

# masep_add_library(NAME SOURCES a.cpp b.cpp DEPS x y)
# A static library for one folder, with its public headers under <folder>/include.
function(masep_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>)
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# masep_add_test(NAME SOURCES a.cpp DEPS lib LABELS unit [golden] [gpu])
# One GoogleTest executable registered with ctest under the given labels. Tests run from the
# source root so that scenario paths like scenarios/paper.yaml resolve.
function(masep_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/common)
  target_compile_definitions(${name} PRIVATE MASEP_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  # GPU tests print "[  SKIPPED ]" and return 0 when no device is present; ctest reports
  # them as skipped through the skip regular expression.
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
                                          SKIP_REGULAR_EXPRESSION "MASEP_GPU_SKIP")
endfunction()

# masep_embed_files(OUT_CPP NAMESPACE ns FUNCTION fn FILES a.yaml b.yaml)
# Generates a C++ source that holds each file's text, so built-in descriptions travel inside
# the binary (a laptop user needs no checkout). The function returns
# std::span<const masep::EmbeddedFile>.
function(masep_embed_files out_cpp)
  cmake_parse_arguments(ARG "" "NAMESPACE;FUNCTION" "FILES" ${ARGN})
  set(deps)
  foreach(f ${ARG_FILES})
    list(APPEND deps ${CMAKE_CURRENT_SOURCE_DIR}/${f})
  endforeach()
  list(JOIN deps "|" deps_joined)
  add_custom_command(
    OUTPUT ${out_cpp}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out_cpp} -DNS=${ARG_NAMESPACE} -DFN=${ARG_FUNCTION}
            "-DFILES=${deps_joined}" -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    DEPENDS ${deps} ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    COMMENT "Embedding ${ARG_FUNCTION} descriptions" VERBATIM)
endfunction()
