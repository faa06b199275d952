"""Root pytest configuration: shared fixtures live in tests/fixtures/."""

pytest_plugins = ["tests.fixtures.aio", "tests.fixtures.etcd"]
