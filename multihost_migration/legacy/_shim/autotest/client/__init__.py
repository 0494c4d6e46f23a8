"""autotest.client (legacy API)."""
