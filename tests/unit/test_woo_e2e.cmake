# test_woo_e2e runs the real engine with every stage of a production
# pipeline loaded from the build's stage directory: build them first.
add_dependencies(test_woo_e2e stage_source_woo stage_validate stage_create_order stage_update_qty
                 stage_sync_status)
