# test_cp_stages calls the three Counterpoint stages directly (linked in as
# objects) and runs them through the engine (their modules must be built).
target_link_libraries(test_cp_stages PRIVATE stage_validate_static stage_create_order_static
                                             stage_update_qty_static)
add_dependencies(test_cp_stages stage_validate stage_create_order stage_update_qty)
