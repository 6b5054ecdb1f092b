"""
The node's shared poll channels (L{httpstream.node.sharedpoll.SharedPolls}) on a fake clock with a fake backend:
one backend call per key per cycle whatever the number of trackers, batches, versions, versionless numbering,
removals, epochs, errors logged once per cycle, and cycles that never overlap.
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.node.sharedpoll import KeyedUpdate, SharedPolls
from httpstream.testing.sharedpoll import FakeKeyedSubscriber, FakePollBackend

VERSIONED = SharedPollOptions("backend", versionless=False, refreshInterval=1.0, batchSize=3)
VERSIONLESS = SharedPollOptions("backend", versionless=True, refreshInterval=1.0, batchSize=3)


class SharedPollsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = FakePollBackend()
        self.polls = SharedPolls(self.clock, self.backend.refresh, random.Random(7))
        self.errors: list[dict] = []

        def observe(event: dict) -> None:
            if event.get("log_level") == LogLevel.error and "shared poll" in event.get("log_format", ""):
                self.errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def subscribers(self, n: int, keys: list[str], options: SharedPollOptions = VERSIONED,
                    channel: str = "poll:c") -> list[FakeKeyedSubscriber]:
        subs = []
        for _ in range(n):
            sub = FakeKeyedSubscriber()
            self.polls.join(channel, options, sub)
            self.polls.track(channel, sub, keys)
            subs.append(sub)
        return subs

    def test_onePollPerKeyPerCycle(self) -> None:
        """A hundred subscribers tracking the same two keys: each cycle asks about each key once."""
        self.backend.state = {"k1": (b'{"a":1}', 1), "k2": (b'{"b":1}', 1)}
        subs = self.subscribers(100, ["k1", "k2"])
        self.clock.advance(0)  # the first poll of keys new to the node
        self.assertEqual(self.backend.keysAsked(), ["k1", "k2"])
        self.assertEqual({tuple(s.received()) for s in subs},
                         {(("k1", 1, b'{"a":1}', False), ("k2", 1, b'{"b":1}', False))})
        for _ in range(5):
            self.clock.advance(1.0)
        self.assertEqual(self.backend.keysAsked(), ["k1", "k2"] * 6)
        self.assertEqual(self.polls.cycles["poll:c"], 5)
        # Nothing changed: nothing more was delivered.
        self.assertEqual(len(subs[0].updates), 2)

    def test_batches(self) -> None:
        """Seven keys, batches of three: three requests a cycle, every key once, versions sent."""
        keys = [f"k{i}" for i in range(7)]
        self.backend.state = {k: (b"1", 5) for k in keys}
        self.subscribers(2, keys)
        self.clock.advance(0)
        self.backend.calls.clear()
        self.clock.advance(1.0)
        self.assertEqual([len(items) for _, _, items in self.backend.calls], [3, 3, 1])
        self.assertEqual(sorted(self.backend.keysAsked()), sorted(keys))
        self.assertEqual({i.version for _, _, items in self.backend.calls for i in items}, {5})
        self.assertEqual({(proxy, channel) for proxy, channel, _ in self.backend.calls}, {("backend", "poll:c")})

    def test_versions(self) -> None:
        """Versioned: only a higher version is delivered, with the backend's version."""
        self.backend.state = {"k": (b"1", 3)}
        (sub,) = self.subscribers(1, ["k"])
        self.clock.advance(0)
        self.backend.state = {"k": (b"2", 3)}  # same version: no change
        self.clock.advance(1.0)
        self.backend.state = {"k": (b"3", 7)}
        self.clock.advance(1.0)
        self.assertEqual(sub.received(), [("k", 3, b"1", False), ("k", 7, b"3", False)])
        self.assertEqual(self.polls.latest("poll:c", "k"), (7, b"3"))

    def test_versionless(self) -> None:
        """Versionless: the node numbers each change of data; the same data twice is no change; an 8-char epoch."""
        sub = FakeKeyedSubscriber()
        epoch = self.polls.join("poll:c", VERSIONLESS, sub)
        self.assertEqual(len(epoch), 8)
        self.backend.state = {"a": (b"1", 0), "b": (b"x", 0)}
        self.polls.track("poll:c", sub, ["a", "b"])
        self.clock.advance(0)
        self.clock.advance(1.0)
        self.backend.state["a"] = (b"2", 0)
        self.clock.advance(1.0)
        self.assertEqual(sub.received(), [("a", 1, b"1", False), ("b", 2, b"x", False), ("a", 3, b"2", False)])
        self.assertEqual({i.version for _, _, items in self.backend.calls for i in items}, {0})
        # Another channel has its own epoch; the versioned one has none until its backend names one.
        self.assertNotEqual(self.polls.join("poll:d", VERSIONLESS, FakeKeyedSubscriber()), epoch)
        self.assertEqual(self.polls.join("poll:e", VERSIONED, FakeKeyedSubscriber()), "")

    def test_removed(self) -> None:
        self.backend.state = {"k": (b"1", 1)}
        (sub,) = self.subscribers(1, ["k"])
        self.clock.advance(0)
        self.backend.removed = {"k"}
        self.clock.advance(1.0)
        self.assertEqual(sub.received()[-1], ("k", 1, b"", True))
        self.assertEqual(self.polls.tracked("poll:c"), [])

    def test_untrack(self) -> None:
        """A key nobody tracks is no longer polled; the channel stops polling with no key left."""
        a, b = self.subscribers(2, ["k1", "k2"])
        self.clock.advance(0)
        self.polls.untrack("poll:c", a, ["k1", "k2"])
        self.polls.untrack("poll:c", b, ["k2"])
        self.backend.calls.clear()
        self.clock.advance(1.0)
        self.assertEqual(self.backend.keysAsked(), ["k1"])
        self.polls.leave("poll:c", b, ["k1"])
        self.polls.leave("poll:c", a, [])
        self.backend.calls.clear()
        self.clock.advance(5.0)
        self.assertEqual(self.backend.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_errorsLoggedOncePerCycle(self) -> None:
        """A backend down: subscribers keep the last state; one error line per cycle, not per batch or key."""
        self.backend.state = {f"k{i}": (b"1", 1) for i in range(7)}
        subs = self.subscribers(10, list(self.backend.state))
        self.clock.advance(0)
        self.errors.clear()
        self.backend.failing = "connection refused"
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual(len(self.errors), 2)
        self.assertEqual((self.errors[0]["failed"], self.errors[0]["total"]), (3, 3))
        self.assertIn("connection refused", self.errors[0]["reason"])
        self.assertEqual(len(subs[0].updates), 7)
        self.assertEqual(self.polls.latest("poll:c", "k0"), (1, b"1"))
        # Back up: polling goes on.
        self.backend.failing = None
        self.backend.state["k0"] = (b"2", 2)
        self.clock.advance(1.0)
        self.assertEqual(subs[0].received()[-1], ("k0", 2, b"2", False))

    def test_noOverlap(self) -> None:
        """A cycle due while the previous one waits on a slow backend runs after it, never alongside it."""
        self.backend.state = {"k": (b"1", 1)}
        (sub,) = self.subscribers(1, ["k"])
        self.backend.hold = True
        self.clock.advance(0)
        for _ in range(5):
            self.clock.advance(1.0)
        self.assertEqual(len(self.backend.calls), 1)  # still waiting: nothing else asked
        self.backend.hold = False
        self.backend.release()
        self.assertEqual(sub.received(), [("k", 1, b"1", False)])
        # The cycle that came due meanwhile runs now (once), then every interval again.
        self.assertEqual(len(self.backend.calls), 2)
        self.clock.advance(1.0)
        self.assertEqual(len(self.backend.calls), 3)

    def test_newKeysPolledAtOnce(self) -> None:
        """A key new to the node is polled in the next reactor turn, in one request with the others new then."""
        (sub,) = self.subscribers(1, ["a"])
        self.polls.track("poll:c", sub, ["b"])
        self.assertEqual(self.backend.calls, [])
        self.clock.advance(0)
        self.assertEqual([[i.key for i in items] for _, _, items in self.backend.calls], [["a", "b"]])

    def test_epochChange(self) -> None:
        """A versioned backend naming another epoch: every subscriber is told its state is lost."""
        self.backend.state = {"k": (b"1", 1)}
        a, b = self.subscribers(2, ["k"])
        self.clock.advance(0)
        self.backend.epoch = "e2"
        self.clock.advance(1.0)
        self.assertEqual((a.lost, b.lost), (1, 1))
        self.assertEqual(self.polls.join("poll:c", VERSIONED, a), "e2")

    def test_stop(self) -> None:
        self.subscribers(1, ["k"])
        self.polls.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def sizes(self) -> dict[str, int]:
        return {name: len(value) for name, value in vars(self.polls).items() if isinstance(value, (list, dict))}

    def test_noStateGrowsWithCycles(self) -> None:
        """A node polls for months: nothing it keeps grows with the number of cycles run."""
        self.backend.state = {"k1": (b"1", 1)}
        self.subscribers(1, ["k1"])
        for _ in range(5):
            self.clock.advance(1.0)
        before = self.sizes()
        for _ in range(200):
            self.clock.advance(1.0)
        self.assertEqual(self.sizes(), before)

    def test_noStateLeftOfChannelsGone(self) -> None:
        """Channels come and go (their last subscriber leaves): nothing is kept of them (a versioned one keeps its epoch)."""
        for n in range(50):
            channel = f"poll:{n}"
            sub = FakeKeyedSubscriber()
            self.polls.join(channel, VERSIONLESS, sub)
            self.polls.track(channel, sub, ["k"])
            self.clock.advance(1.0)
            self.polls.leave(channel, sub, ["k"])
        self.assertEqual(max(self.sizes().values()), 0)

    def test_publishedNewerVersionReachesTrackers(self) -> None:
        """
        The application's own update (shared_poll_publish): delivered when newer than the node's version, kept
        (a poll answering the older version is no change), ignored when not newer or not tracked here.
        """
        self.backend.state = {"k": (b"1", 1)}
        a, b = self.subscribers(2, ["k"])
        (other,) = self.subscribers(1, ["j"])
        self.clock.advance(0)
        self.polls.publish("poll:c", "k", 5, "", b"5")
        self.polls.publish("poll:c", "k", 4, "", b"4")  # older than what the node has now
        self.polls.publish("poll:c", "nobody", 9, "", b"9")
        self.polls.publish("poll:elsewhere", "k", 9, "", b"9")
        self.clock.advance(1.0)  # the backend still says version 1
        for sub in (a, b):
            self.assertEqual(sub.received(), [("k", 1, b"1", False), ("k", 5, b"5", False)])
        self.assertEqual(other.received(), [])
        self.assertEqual(self.polls.latest("poll:c", "k"), (5, b"5"))
        self.assertEqual(self.polls.latest("poll:c", "nobody"), None)

    def test_publishedEpochChange(self) -> None:
        """A published epoch other than the channel's starts versions over; an empty one is no epoch at all."""
        self.backend.state = {"k": (b"1", 1)}
        (a,) = self.subscribers(1, ["k"])
        self.clock.advance(0)
        self.polls.publish("poll:c", "k", 2, "", b"2")
        self.assertEqual(a.lost, 0)
        self.polls.publish("poll:c", "k", 1, "e2", b"x")
        self.assertEqual(a.lost, 1)
        self.assertEqual(self.polls.join("poll:c", VERSIONED, FakeKeyedSubscriber()), "e2")
        self.assertEqual(a.received()[-1], ("k", 1, b"x", False))  # versions started over: 1 is new

    def test_publishIgnoredOnVersionless(self) -> None:
        (a,) = self.subscribers(1, ["k"], VERSIONLESS)
        self.polls.publish("poll:c", "k", 9, "e", b"9")
        self.assertEqual((a.received(), a.lost), ([], 0))


class KeyedUpdateTests(SynchronousTestCase):
    def test_frames(self) -> None:
        update = KeyedUpdate("poll:c", "k", 3, b'{"a":1}')
        frame = update.frame("json")
        assert frame is not None
        self.assertEqual(frame, b'{"push":{"channel":"poll:c","pub":{"key":"k","data":{"a":1},"version":3}}}')
        self.assertIs(update.frame("json"), frame)  # encoded once
        self.assertEqual(KeyedUpdate("poll:c", "k", 1, removed=True).frame("json", True),
                         b'{"channel":"poll:c","pub":{"key":"k","removed":true}}')
        self.assertIsNotNone(update.frame("protobuf"))
        self.assertIsNone(KeyedUpdate("poll:c", "k", 1, b"\xff").frame("json"))


