# test_drift applies orders through the real engine with the stages from the
# build's stage directory before it checks drift: build them first.
add_dependencies(test_drift stage_source_file stage_validate stage_create_order stage_update_qty)
