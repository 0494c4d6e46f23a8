"""autotest.client.shared (legacy API)."""
