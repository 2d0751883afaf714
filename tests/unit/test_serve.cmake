# test_serve runs the built cpbridge program as `cpbridge serve` with the
# stages of a production pipeline: build them first.
add_dependencies(test_serve cpbridge stage_source_woo stage_validate stage_create_order
                 stage_update_qty)
# The server is threads (the HTTP server's, the workers): ThreadSanitizer
# runs it too (scripts/test.sh builds the "threads" tests with CPB_TSAN).
set_tests_properties(test_serve PROPERTIES LABELS threads)
