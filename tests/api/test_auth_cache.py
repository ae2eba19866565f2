"""Verified tokens are cached, but their expiry is checked on every use."""

from __future__ import annotations

import time

import pytest

from orrange.api.auth import AuthError, decode_token, issue_token

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret"


def test_a_cached_token_still_expires() -> None:
    token = issue_token(SECRET, "alice", ttl_s=2, now=int(time.time()) - 1)  # ~1 s left
    assert decode_token(SECRET, token).user == "alice"
    assert decode_token(SECRET, token).user == "alice"  # from the cache
    time.sleep(1.5)
    with pytest.raises(AuthError) as err:
        decode_token(SECRET, token)
    assert err.value.reason == "expired_token"


def test_the_cache_does_not_accept_a_token_under_another_secret() -> None:
    token = issue_token(SECRET, "bob")
    assert decode_token(SECRET, token).user == "bob"
    with pytest.raises(AuthError) as err:
        decode_token("another-secret-another-secret-xx", token)
    assert err.value.reason == "invalid_token"
