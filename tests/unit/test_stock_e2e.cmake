# test_stock_e2e runs the real engine with the stock pipeline's stages
# loaded from the build's stage directory, and the cpbridge program for
# `cpbridge records ... retry`, and the orders pipeline's stages for the
# sale an orders pipeline applies: build them first.
add_dependencies(test_stock_e2e cpbridge stage_source_cp_stock stage_push_woo_stock
                 stage_source_file stage_validate stage_create_order stage_update_qty)
