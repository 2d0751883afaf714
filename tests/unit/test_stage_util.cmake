# test_stage_util compiles the stages' shared helpers (plugins/common) into
# itself, as each stage does, and calls them with the engine's real host
# services (cpbcore) on real databases.
target_sources(test_stage_util PRIVATE ${PROJECT_SOURCE_DIR}/plugins/common/stage_util.c)
target_include_directories(test_stage_util PRIVATE ${PROJECT_SOURCE_DIR}/plugins/common
                                                   ${PROJECT_SOURCE_DIR}/core/include)
