# What each optional part of sluice needs. A part that is switched on (SLUICE_BUILD_GUI,
# SLUICE_BUILD_TESTS) and misses something stops the configure with one sentence naming the
# Debian packages to install and the option that switches the part off: a missing dependency
# never turns into a smaller build. scripts/install-deps installs every package named here.

# sluice-admin and its tests: Qt 6 Widgets, Network, Charts and Test. A macro, not a function:
# Qt's CMake functions read variables that its package files set in the caller's scope.
macro(sluice_require_qt)
  find_package(Qt6 6.2 QUIET COMPONENTS Widgets Network Charts Test)
  set(_sluice_qt_missing "")
  foreach(_component Widgets Network Charts Test)
    if(NOT Qt6${_component}_FOUND)
      list(APPEND _sluice_qt_missing Qt6::${_component})
    endif()
  endforeach()
  if(_sluice_qt_missing)
    list(JOIN _sluice_qt_missing ", " _sluice_qt_missing)
    message(FATAL_ERROR
      "sluice-admin needs Qt 6 (${_sluice_qt_missing} not found): install the Debian packages "
      "qt6-base-dev qt6-charts-dev libqt6opengl6-dev (scripts/install-deps does), or configure "
      "with -DSLUICE_BUILD_GUI=OFF to build everything but sluice-admin.")
  endif()
endmacro()

# The tests: redis-server for the Redis plugin's suites, and a Python interpreter that sees
# Debian's python3-* packages for the Python client's suite. /usr/bin/python3 comes first:
# a python3 that another install puts earlier on PATH may not see Debian's packages.
function(sluice_require_test_tools)
  find_program(SLUICE_REDIS_SERVER redis-server)
  find_program(SLUICE_REDIS_CLI redis-cli)
  if(NOT SLUICE_REDIS_SERVER OR NOT SLUICE_REDIS_CLI)
    message(FATAL_ERROR
      "the Redis plugin's tests need redis-server and redis-cli: install the Debian packages "
      "redis-server redis-tools (scripts/install-deps does), or configure with "
      "-DSLUICE_BUILD_TESTS=OFF.")
  endif()

  find_program(SLUICE_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(SLUICE_PYTHON python3)
  set(modules pytest fastapi uvicorn httpx redis mypy)
  list(JOIN modules ", " imports)
  if(SLUICE_PYTHON)
    execute_process(COMMAND ${SLUICE_PYTHON} -c "import ${imports}"
                    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE why)
  endif()
  if(NOT SLUICE_PYTHON OR NOT rc EQUAL 0)
    string(STRIP "${why}" why)
    message(FATAL_ERROR
      "the Python client's tests need python3 with ${imports} (${SLUICE_PYTHON}: ${why}): "
      "install the Debian packages python3 python3-pytest python3-fastapi python3-uvicorn "
      "python3-httpx python3-redis mypy (scripts/install-deps does), or configure with "
      "-DSLUICE_BUILD_TESTS=OFF.")
  endif()
endfunction()

# libyaml: the policy reader parses with it (yaml-cpp's parser alone takes 1.6 s for a policy
# of 100,000 resources, libyaml 0.2 s). Not optional: sluiced reads no policy without it.
function(sluice_require_libyaml)
  pkg_check_modules(LIBYAML QUIET IMPORTED_TARGET GLOBAL yaml-0.1)
  if(NOT LIBYAML_FOUND)
    message(FATAL_ERROR
      "sluice needs libyaml (pkg-config module yaml-0.1 not found): install the Debian package "
      "libyaml-dev (scripts/install-deps does).")
  endif()
endfunction()

# Howard Hinnant's date library with its tz part: calendar windows (calendar_day, _week,
# _month) start at local midnight in a named time zone, read from the system's tz database
# (tzdata). libstdc++ 12 has no std::chrono::tzdb. Not optional: the policy reader checks
# time-zone names with it.
function(sluice_require_date_tz)
  find_package(date CONFIG QUIET)
  if(NOT TARGET date::date-tz OR NOT EXISTS /usr/share/zoneinfo/UTC)
    message(FATAL_ERROR
      "sluice needs the date library's time zones (date::date-tz) and the tz database: "
      "install the Debian packages libhowardhinnant-date-dev tzdata (scripts/install-deps does).")
  endif()
endfunction()
