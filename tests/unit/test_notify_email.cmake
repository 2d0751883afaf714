# test_notify_email links the notify-email stage in statically (its
# descriptor by name) and calls libcurl and libcrypto itself.
target_link_libraries(test_notify_email PRIVATE stage_notify_email_static PkgConfig::CURL
                      PkgConfig::CRYPTO PkgConfig::LIBCONFIG)
