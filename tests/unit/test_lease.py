"""The controller lease: one holder at a time, renewal, expiry, release."""

from __future__ import annotations

from pathlib import Path

from modelyard.control.lease import holder_of, release, try_acquire
from modelyard.core.clock import FakeClock
from modelyard.registry.registry import Registry


def test_one_holder_renewal_expiry_and_release(tmp_path: Path) -> None:
    clock = FakeClock()
    reg = Registry(tmp_path / "r", clock=clock)
    assert try_acquire(reg, "controller", "a", ttl_s=10)
    assert not try_acquire(reg, "controller", "b", ttl_s=10)  # a second one waits
    assert holder_of(reg, "controller") == "a"
    clock.advance(5)
    assert try_acquire(reg, "controller", "a", ttl_s=10)  # renewal moves expiry
    clock.advance(8)
    assert not try_acquire(reg, "controller", "b", ttl_s=10)
    clock.advance(3)  # a stopped renewing 11 s ago: expired
    assert holder_of(reg, "controller") is None
    assert try_acquire(reg, "controller", "b", ttl_s=10)
    release(reg, "controller", "a")  # not a's any more: no effect
    assert holder_of(reg, "controller") == "b"
    release(reg, "controller", "b")
    assert try_acquire(reg, "controller", "a", ttl_s=10)
    reg.close()
