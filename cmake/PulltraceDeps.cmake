# Every dependency comes from a Debian package; pkg-config gives imported targets.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
# Agent reports: simdjson checks the whole document, then its tape is walked
# straight into typed structs (src/server/json_walk.cpp).
pkg_check_modules(SIMDJSON REQUIRED IMPORTED_TARGET simdjson)
# The event stream's writes to many readers in one system call (src/core/send_batch.c).
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)
# TLS on the server's API port (PULLTRACE_TLS_CERT/KEY); libcurl uses the same OpenSSL.
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl)
# kubeconfig files (YAML) for running the server outside a cluster.
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
# The server's pull history (PULLTRACE_DATA_DIR, docs/history.md).
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(GRPC REQUIRED IMPORTED_TARGET grpc)
pkg_check_modules(LUA REQUIRED IMPORTED_TARGET lua5.4)
pkg_check_modules(LUACJSON REQUIRED IMPORTED_TARGET lua5.4-cjson)
pkg_check_modules(CMOCKA IMPORTED_TARGET cmocka)

find_program(PROTOC_C protoc-c REQUIRED)

# llhttp: node-llhttp ships the C sources; they are compiled into the build.
set(LLHTTP_SRC_DIR /usr/share/llhttp)
set(LLHTTP_INC_DIR /usr/share/include/llhttp)
if(NOT EXISTS ${LLHTTP_SRC_DIR}/llhttp.c OR NOT EXISTS ${LLHTTP_INC_DIR}/llhttp.h)
  message(FATAL_ERROR "llhttp sources not found: install the node-llhttp package")
endif()
add_library(pt_llhttp STATIC ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c ${LLHTTP_SRC_DIR}/http.c)
target_include_directories(pt_llhttp SYSTEM PUBLIC ${LLHTTP_INC_DIR})
target_compile_options(pt_llhttp PRIVATE -w)
set_target_properties(pt_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
