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

# The same suite on a Redis Cluster of 3 masters (scripts/redis-test-cluster, no replicas),
# through one seed node: every test's keys share one hash tag, so each batch is one slot. The
# ports start from a base named after the build tree too; the fixture fails loudly if one is
# taken. The random sequences are left out: they check the script, which is the same on one
# Redis, and take 20 s; what Cluster adds (routing, batches, concurrency) the others cover.
string(SUBSTRING "${build_hash}" 0 4 port_hash)
math(EXPR cluster_base "21000 + (0x${port_hash} % 8000)")
set(cluster_dir /tmp/sluice-conformance-cluster-${build_hash})
set(cluster_script ${PROJECT_SOURCE_DIR}/scripts/redis-test-cluster)
add_test(NAME conformance_redis_cluster_start
         COMMAND env CLUSTER_REPLICAS=0 BASE_PORT=${cluster_base} ${cluster_script} start
                 ${cluster_dir} cluster)
add_test(NAME conformance_redis_cluster_stop COMMAND ${cluster_script} stop ${cluster_dir})
set_tests_properties(conformance_redis_cluster_start PROPERTIES FIXTURES_SETUP redis_cluster
                     LABELS "conformance;redis")
set_tests_properties(conformance_redis_cluster_stop PROPERTIES FIXTURES_CLEANUP redis_cluster
                     LABELS "conformance;redis")
sluice_add_conformance(redis NAME redis_cluster
  CONFIG "cluster=127.0.0.1:${cluster_base},clock=engine,ttl_grace_ms=86400000,prefix=conformance:"
  FILTER "-*RandomSequencesMatchReference*"
  PROPERTIES FIXTURES_REQUIRED redis_cluster RESOURCE_LOCK conformance_redis_cluster)
