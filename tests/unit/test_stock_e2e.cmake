# test_stock_e2e runs the real engine with the stock pipeline's stages
# loaded from the build's stage directory, and the cpbridge program for
# `cpbridge records ... retry`: build them first.
add_dependencies(test_stock_e2e cpbridge stage_source_cp_stock stage_push_woo_stock)
