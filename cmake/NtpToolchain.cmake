# Compiler launcher, warnings and sanitizers shared by every target of ours.

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # Without this sloppiness ccache refuses every compile that uses a precompiled
  # header (all of ours); base_dir lets another checkout reuse the cache.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} ${CCACHE_PROGRAM})
endif()

option(NTP_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(NTP_SANITIZE_THREAD "Build with ThreadSanitizer" OFF)
option(NTP_FUZZ "Build the libFuzzer targets in fuzz/ (clang only)" OFF)
if(NTP_SANITIZE_THREAD AND (NTP_SANITIZE OR NTP_FUZZ))
  message(FATAL_ERROR "NTP_SANITIZE_THREAD cannot be combined with NTP_SANITIZE or NTP_FUZZ")
endif()
if(NTP_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "NTP_FUZZ needs clang (libFuzzer); use the fuzz preset")
endif()

# Warnings as errors apply to our code only (third-party headers are SYSTEM).
function(ntp_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  if(NTP_SANITIZE)
    # GCC 12 misreads Asio's coroutine-frame operator delete under the sanitizers
    # (-Wmismatched-new-delete on every awaitable): a false positive. The vptr
    # check reads /proc/self/maps on a cache miss and reports a bogus type error
    # when the process is out of descriptors, which one end-to-end test causes.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined
                                             -fno-sanitize=vptr -Wno-mismatched-new-delete)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr)
  endif()
  if(NTP_SANITIZE_THREAD)
    # Same GCC false positive as above on Asio's coroutine frames. -Wno-tsan: GCC
    # warns that TSan does not model the atomic_thread_fence in Asio's handler
    # completion (fenced_block); the scheduler's mutex, which TSan does see, is
    # what orders a handler across threads.
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer
                                             -Wno-mismatched-new-delete -Wno-tsan)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
  if(NTP_FUZZ)
    # Every library the fuzz targets link is instrumented for coverage; only the
    # targets themselves link libFuzzer's main (fuzz/CMakeLists.txt). clang 14's
    # -fsanitize=function breaks the backend on coroutines ("Cannot represent a
    # difference across sections", llvm/llvm-project#49689), so it is left out.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined
                                             -fno-sanitize=function -fno-sanitize-recover=undefined
                                             -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=function)
  endif()
endfunction()
