# test_sync_status loads sync-status (and, for the run through the runner,
# source-woo and the fixture step) as the engine does: build them first.
add_dependencies(test_sync_status stage_sync_status stage_source_woo fixture_test_step)
