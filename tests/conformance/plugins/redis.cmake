# The Redis plugin runs the whole suite against a real redis-server that a ctest fixture starts
# on a temporary Unix socket (scripts/redis-test-server waits until it answers) and stops.
# The suite's clock is simulated, so the plugin uses the engine's time (clock=engine) and a
# long TTL grace, so that keys outlive the real seconds the suite takes.
# Unix socket paths are limited to 107 bytes, so the socket lives in /tmp, named after the
# build tree so that two build trees never share a server.
string(MD5 build_hash "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${build_hash}" 0 12 build_hash)
set(sock /tmp/sluice-conformance-redis-${build_hash}.sock)
set(server ${PROJECT_SOURCE_DIR}/scripts/redis-test-server)
add_test(NAME conformance_redis_start COMMAND ${server} start ${sock})
add_test(NAME conformance_redis_stop COMMAND ${server} stop ${sock})
set_tests_properties(conformance_redis_start PROPERTIES FIXTURES_SETUP redis_server
                     LABELS "conformance;redis")
set_tests_properties(conformance_redis_stop PROPERTIES FIXTURES_CLEANUP redis_server
                     LABELS "conformance;redis")
sluice_add_conformance(redis
  CONFIG "url=unix://${sock},clock=engine,ttl_grace_ms=86400000,prefix=conformance:"
  PROPERTIES FIXTURES_REQUIRED redis_server RESOURCE_LOCK conformance_redis)
