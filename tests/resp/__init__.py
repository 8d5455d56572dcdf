"""The Redis protocol: against a real redis-server, with redis-py, redis-cli and redis-benchmark, and hostile input."""
