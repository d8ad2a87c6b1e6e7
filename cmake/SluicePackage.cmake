# Installing and packaging. Three install components:
#   runtime  sluiced, sluicectl, the storage plugins, the shipped policies, the systemd unit
#            and /etc/sluice/policy.yaml            -> Debian package `sluice`
#   admin    sluice-admin                            -> Debian package `sluice-admin`
#   dev      sluice/storage_plugin.h and the CMake package (find_package(sluice),
#            target sluice::plugin_abi)              -> Debian package `sluice-dev`
# `cpack -G DEB` in the build directory writes the three .deb files.
include(CMakePackageConfigHelpers)

set(SLUICE_CMAKE_DIR lib/cmake/sluice)
install(EXPORT sluiceTargets NAMESPACE sluice:: DESTINATION ${SLUICE_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(cmake/sluiceConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/sluiceConfig.cmake INSTALL_DESTINATION ${SLUICE_CMAKE_DIR})
# The plugin ABI's major version is the package's compatibility line; the header-only target
# is the same for every architecture.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/sluiceConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/cmake/sluiceConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/sluiceConfigVersion.cmake
        DESTINATION ${SLUICE_CMAKE_DIR} COMPONENT dev)

install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
install(CODE "set(SLUICE_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
set(SLUICE_INSTALL_SCRATCH \"${PROJECT_BINARY_DIR}/install-scratch\")" COMPONENT runtime)
install(SCRIPT cmake/install_system_files.cmake COMPONENT runtime)

set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VENDOR "sluice")
set(CPACK_PACKAGE_CONTACT "sluice maintainers <sluice@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "policy-driven rate limiting for machine-learning APIs")
set(CPACK_PACKAGE_DESCRIPTION
  "sluiced holds a YAML policy (tiers, per-model limits on requests, tokens, batch items and\n"
  "requests in flight, warm-up) and answers allow/deny decisions over a Unix socket that\n"
  "speaks RESP2, with counters kept by a storage plugin (memory, SQLite or Redis).")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL runtime dev)
if(SLUICE_BUILD_GUI)
  list(APPEND CPACK_COMPONENTS_ALL admin)
endif()
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME sluice)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "redis-tools")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_ADMIN_PACKAGE_NAME sluice-admin)
set(CPACK_DEBIAN_ADMIN_PACKAGE_RECOMMENDS "sluice")
set(CPACK_DEBIAN_ADMIN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME sluice-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "the sluiced daemon, sluicectl and the storage plugins")
set(CPACK_COMPONENT_ADMIN_DESCRIPTION "sluice-admin, the Qt 6 desktop app that edits a running sluiced's policy")
set(CPACK_COMPONENT_DEV_DESCRIPTION "the storage plugin ABI header and CMake package (find_package(sluice))")
include(CPack)
