# pt_embed_files(OUT_C VAR_PREFIX BASE_DIR FILES...)
# Generates a C file with one byte array per file plus a table
# `const struct pt_embedded_file VAR_PREFIX_files[]` ending with a NULL name.
function(pt_embed_files out_c prefix base_dir)
  set(files ${ARGN})
  add_custom_command(
    OUTPUT ${out_c}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out_c} -DPREFIX=${prefix} -DBASE=${base_dir}
            "-DFILES=${files}" -P ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
    DEPENDS ${files} ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
    COMMENT "Embedding ${prefix} files"
    VERBATIM)
endfunction()
