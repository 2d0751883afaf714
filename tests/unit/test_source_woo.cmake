# test_source_woo loads the source-woo stage as the engine does (so the
# stage must be built first) and links the stage's objects for the OAuth
# signing it checks against the reference test vector (woo_oauth.h).
add_dependencies(test_source_woo stage_source_woo)
target_link_libraries(test_source_woo PRIVATE stage_source_woo_static)
target_include_directories(test_source_woo PRIVATE ${PROJECT_SOURCE_DIR}/plugins/source-woo)
