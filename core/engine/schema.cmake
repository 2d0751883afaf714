# schema.cmake — included by core/CMakeLists.txt (paths are relative to core/): embeds sql/*/*.sql into
# the engine (see embed_sql.cmake).
file(GLOB cpb_sql_files CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/sql/*/*.sql")
add_custom_command(
  OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/schema_sql.c"
  COMMAND ${CMAKE_COMMAND} -DSQL_DIR=${PROJECT_SOURCE_DIR}/sql
          -DOUT=${CMAKE_CURRENT_BINARY_DIR}/schema_sql.c
          -P ${CMAKE_CURRENT_SOURCE_DIR}/engine/embed_sql.cmake
  DEPENDS ${cpb_sql_files} ${CMAKE_CURRENT_SOURCE_DIR}/engine/embed_sql.cmake
  COMMENT "Embedding the SQL schema")
target_sources(cpbcore PRIVATE "${CMAKE_CURRENT_BINARY_DIR}/schema_sql.c")
