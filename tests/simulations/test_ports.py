"""Ports for the services a launcher starts: free, below the ephemeral range, never twice."""

import socket

from simulations import ports


def test_ports_are_free_below_the_ephemeral_range_and_never_repeat():
    lo, _ = ports.ephemeral_range()
    picked = [ports.free_port() for _ in range(300)]  # a Ray node takes 22 at once; more than ten nodes' worth
    assert len(set(picked)) == len(picked)
    assert all(ports.LOWEST <= p < lo for p in picked)
    for p in picked[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # bindable right after the pick


def test_a_port_someone_listens_on_is_not_bindable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not ports.bindable(s.getsockname()[1])


def test_the_ephemeral_range_is_read_from_the_kernel_file_or_the_default(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("40000\t50000\n")
    bad.write_text("not a range\n")
    assert ports.ephemeral_range(good) == (40000, 50000)
    assert ports.ephemeral_range(bad) == ports.EPHEMERAL_DEFAULT
    assert ports.ephemeral_range(tmp_path / "missing") == ports.EPHEMERAL_DEFAULT


def test_with_no_room_below_the_ephemeral_range_the_kernel_picks(tmp_path, monkeypatch):
    real_lo, real_hi = ports.ephemeral_range()  # where the kernel's bind(port 0) picks
    low = tmp_path / "range"
    low.write_text(f"{ports.LOWEST + 10} 60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_FILE", low)
    picked = [ports.free_port() for _ in range(20)]
    assert len(set(picked)) == 20
    assert all(real_lo <= p <= real_hi for p in picked)
