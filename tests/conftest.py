"""Shared test configuration. Fixtures for services live in tests/integration/conftest.py."""
