from vmm.tm import FakeClock


def test_fake_clock_fires_in_deadline_order_and_rearm():
    c = FakeClock()
    seen = []
    a = c.new_timer(lambda: seen.append(("a", c.now_ns())))
    b = c.new_timer(lambda: seen.append(("b", c.now_ns())))
    b.arm(200)
    a.arm(100)
    assert c.next_deadline() == 100
    assert c.advance(150) == 1
    assert seen == [("a", 100)]
    b.cancel()
    assert c.advance(1000) == 0
    a.arm_in(10)
    a.arm_in(20)          # re-arming replaces the earlier deadline
    c.advance(15)
    assert len(seen) == 1
    c.advance(10)
    assert seen[-1] == ("a", 1170)
