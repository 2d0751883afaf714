# packaging/cpack.cmake — the Debian package (CPack DEB) and the install
# rules of the packaging files: systemd units, the cron file, the Task
# Scheduler template and packaging/README.md. Included by the top-level
# CMakeLists.txt. Build the package from a tree configured for /usr:
#
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release \
#         -DBUILD_TESTING=OFF
#   cmake --build build-deb -j && (cd build-deb && cpack -G DEB)
#
# The prefix must be /usr at configure time, not only at packaging time: the
# binary has its stage directory (CPB_STAGE_INSTALL_DIR) compiled in, so
# `cpack` refuses a tree configured for any other prefix.

set(CPB_PKG_DIR "${CMAKE_CURRENT_LIST_DIR}")

# System files outside the prefix (/lib/systemd/system, /etc/cron.d) are
# installed only for a /usr install (the package, or a distribution-style
# install), so `cmake --install` of a /usr/local developer build leaves /etc
# and /lib alone.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(cpb_system_files_default ON)
else()
  set(cpb_system_files_default OFF)
endif()
option(CPB_INSTALL_SYSTEM_FILES
       "Install the systemd units to /lib/systemd/system and the cron file to /etc/cron.d"
       ${cpb_system_files_default})
set(CPB_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH "Where the systemd units are installed")
set(CPB_PACKAGE_MAINTAINER "cpbridge maintainers <maintainers@cpbridge.invalid>"
    CACHE STRING "Maintainer field of the Debian package")

if(CPB_INSTALL_SYSTEM_FILES)
  install(FILES "${CPB_PKG_DIR}/systemd/cpbridge@.service" "${CPB_PKG_DIR}/systemd/cpbridge@.timer"
                "${CPB_PKG_DIR}/systemd/cpbridge-serve@.service"
          DESTINATION "${CPB_SYSTEMD_UNIT_DIR}"
          PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  install(FILES "${CPB_PKG_DIR}/cron/cpbridge" DESTINATION "/${CMAKE_INSTALL_SYSCONFDIR}/cron.d"
          PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
install(FILES "${CPB_PKG_DIR}/README.md" DESTINATION "${CMAKE_INSTALL_DOCDIR}" RENAME PACKAGING.md)
install(FILES "${CPB_PKG_DIR}/windows/cpbridge-task.xml"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples/windows")

# ---------------------------------------------------------------- CPack --
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "cpbridge")
set(CPACK_PACKAGE_VENDOR "cpbridge")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${CPB_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
# The extended description: lines under 80 columns, as Debian asks.
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "cpbridge moves web orders from WooCommerce stores into NCR Counterpoint.\n"
  "It runs a pipeline of stages, shared objects loaded at run time and\n"
  "declared in a libconfig file: sources fetch orders, steps validate them\n"
  "and write the Counterpoint order document with its inventory commitment\n"
  "in one database transaction, after-commit steps report the status back\n"
  "to the store and notifiers send alerts.\n"
  "\n"
  "The package installs the cpbridge command, the bundled stages, a systemd\n"
  "service and timer template (cpbridge@NAME.timer, not enabled), a service\n"
  "template for the webhook receiver (cpbridge-serve@NAME.service, not\n"
  "enabled), a cron file (commented out), example pipelines, and the header\n"
  "and pkg-config file for writing stages.")
# Install with DESTDIR so the absolute destinations (/lib/systemd/system,
# /etc/cron.d, the stage directory) land in the package, never on the host.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME "cpbridge")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPB_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "misc")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies come from dpkg-shlibdeps over the binary and every
# stage (libmicrohttpd among them, for `cpbridge serve`); adduser runs in
# postinst; odbcinst registers the ODBC drivers.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, odbcinst")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libsqliteodbc")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "odbc-postgresql, tdsodbc")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CPB_PKG_DIR}/debian/postinst" "${CPB_PKG_DIR}/debian/prerm"
    "${CPB_PKG_DIR}/debian/postrm")
# conffiles takes no comments, so it is written here; it must list only
# files the package holds.
if(CPB_INSTALL_SYSTEM_FILES)
  file(WRITE "${CMAKE_BINARY_DIR}/packaging/conffiles" "/etc/cron.d/cpbridge\n")
  list(APPEND CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${CMAKE_BINARY_DIR}/packaging/conffiles")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_SOURCE_GENERATOR "TGZ")
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/var/")

# Checked by cpack itself, after the build: refuse a tree not configured for
# /usr (its binary would look for stages under another prefix).
set(CPACK_PROJECT_CONFIG_FILE "${CMAKE_BINARY_DIR}/CPackProjectConfig.cmake")
file(WRITE "${CPACK_PROJECT_CONFIG_FILE}" [=[
# Generated by packaging/cpack.cmake: checks done by cpack for each generator.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR
    "cpbridge: the Debian package needs a build configured with "
    "-DCMAKE_INSTALL_PREFIX=/usr (this one uses '${CPACK_PACKAGING_INSTALL_PREFIX}'); "
    "configure a separate build directory for packaging (packaging/README.md).")
endif()
]=])

include(CPack)
