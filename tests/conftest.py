"""Settings shared by every test."""

from hypothesis import HealthCheck, settings

# CI runs on 2 shared cores next to QEMU guests: generation speed and per-
# example deadlines are not what these property tests check.
settings.register_profile(
    "mhm", deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("mhm")
