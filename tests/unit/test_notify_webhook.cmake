# test_notify_webhook links the notify-webhook stage in statically and
# checks signatures with libcrypto; it also loads the built module.
target_link_libraries(test_notify_webhook PRIVATE stage_notify_webhook_static PkgConfig::CRYPTO)
add_dependencies(test_notify_webhook stage_notify_webhook)
