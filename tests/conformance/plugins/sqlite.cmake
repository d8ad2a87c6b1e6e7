# The SQLite plugin runs the whole suite in both durability modes, one file per mode. An open
# plugin holds its file's lock for its lifetime, so when ctest runs two tests of one mode at
# once the second waits for the first at open (a long busy_timeout_ms) instead of failing.
foreach(mode interval commit)
  sluice_add_conformance(sqlite NAME sqlite_${mode}
    CONFIG "path=${CMAKE_CURRENT_BINARY_DIR}/conformance-sqlite-${mode}.db,durability=${mode},busy_timeout_ms=120000")
endforeach()
