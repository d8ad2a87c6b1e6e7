# Run at install time (install(SCRIPT)): the systemd unit and /etc/sluice/policy.yaml. Like
# GNUInstallDirs, a /usr prefix (the Debian package) puts the configuration in /etc; any other
# prefix keeps it under the prefix, so `cmake --install --prefix /opt/sluice` writes nothing
# outside /opt/sluice. DESTDIR (cpack's staging root) is honoured by file(INSTALL).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc_dir "/etc/sluice")
else()
  set(etc_dir "${CMAKE_INSTALL_PREFIX}/etc/sluice")
endif()
set(SLUICE_BINDIR "${CMAKE_INSTALL_PREFIX}/bin")
set(SLUICE_DOCDIR "${CMAKE_INSTALL_PREFIX}/share/doc/sluice")
set(staging "${SLUICE_INSTALL_SCRATCH}/system-files")
configure_file("${SLUICE_SOURCE_DIR}/packaging/sluiced.service.in" "${staging}/sluiced.service"
               @ONLY)
configure_file("${SLUICE_SOURCE_DIR}/policies/default.yaml" "${staging}/policy.yaml" COPYONLY)
file(INSTALL "${staging}/sluiced.service"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
file(INSTALL "${staging}/policy.yaml" DESTINATION "${etc_dir}")
