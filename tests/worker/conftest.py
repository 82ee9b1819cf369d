"""Property-test profiles for the worker tests (hypothesis).

A bounded run in `make test`; a long one on request:
``pytest tests/worker/test_session_fuzz.py --hypothesis-profile=fuzz``.
"""

from hypothesis import settings

settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile("default")
