# test_parallel runs whole pipelines with the real stages from the build's
# stage directory, on threads of one process: build the stages first.
add_dependencies(test_parallel stage_source_file stage_validate stage_create_order
                 stage_update_qty stage_sync_status)
# Label "threads": scripts/test.sh also runs these under ThreadSanitizer.
set_tests_properties(test_parallel PROPERTIES LABELS "threads")
