"""python-etcd3 (PyPI `etcd3`) against a running Synod cluster.

Run by crates/synod/tests/interop_python.rs inside a venv made from requirements.txt
beside this file:

    python interop_etcd3.py --leader 127.0.0.1:PORT --follower 127.0.0.1:PORT

`--leader` and `--follower` are the client addresses of two different members (the
Rust test reads their roles from /status). Every check prints one `ok` line; the first
failed check prints `FAILED <check>: <why>` and the script exits 1. A watchdog ends the
script (exit 1, with every thread's stack) if the whole run hangs.

python-etcd3 0.12.0 has no election API (its generated stubs cover only KV, Watch,
Lease, Cluster, Maintenance and Auth; Lock is its own recipe on KV, Lease and Watch),
so elections are not checked here.
"""

import argparse
import faulthandler
import os
import queue
import sys
import threading
import time
import traceback

import etcd3
import etcd3.events
import etcd3.exceptions
import etcd3.leases

# Per-RPC deadline given to every client, and the default deadline of a poll.
RPC_TIMEOUT = 10
DEADLINE = 15
# The whole run: far beyond what it takes (a few seconds), short of the Rust side's.
WATCHDOG = 240


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_eq(got, want, what):
    if got != want:
        raise CheckFailed("%s: got %r, want %r" % (what, got, want))


def eventually(what, f, timeout=DEADLINE, every=0.05):
    """Polls f until it returns a true value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = f()
            if v:
                return v
            last = v
        except CheckFailed as e:
            last = e
        if time.monotonic() >= deadline:
            raise CheckFailed("%s within %ss (last: %r)" % (what, timeout, last))
        time.sleep(every)


def take(q, n, what, timeout=DEADLINE):
    """The events of the next watch responses put on `q`, until there are n of them.

    A response that is an exception (python-etcd3 hands stream errors to callbacks)
    fails the check."""
    deadline = time.monotonic() + timeout
    events = []
    while len(events) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CheckFailed("%s: %d of %d events within %ss: %s"
                              % (what, len(events), n, timeout, describe(events)))
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            continue
        if isinstance(item, Exception):
            raise CheckFailed("%s: the watch failed: %r" % (what, item))
        events.extend(item.events)
    return events


def take_iter(iterator, n, what, timeout=DEADLINE, raw_errors=False):
    """The next n items of a blocking iterator, read on a helper thread so a missing
    item fails the check instead of hanging; StopIteration ends the list early. An
    exception from the iterator fails the check, or is raised as it is with
    raw_errors."""
    out = []
    errors = []
    done = threading.Event()

    def run():
        try:
            for _ in range(n):
                out.append(next(iterator))
        except StopIteration:
            pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout):
        raise CheckFailed("%s: %d of %d items within %ss: %s"
                          % (what, len(out), n, timeout, describe(out)))
    if errors and raw_errors:
        raise errors[0]
    if errors:
        raise CheckFailed("%s: the iterator failed: %r" % (what, errors[0]))
    return out


def describe(events):
    return [
        (type(e).__name__, e.key, e.value, e.mod_revision) for e in events
    ]


def expect_events(events, want, what):
    """want: (class, key, value, mod_revision) per event, in order."""
    got = [(type(e), e.key, e.value, e.mod_revision) for e in events]
    if got != want:
        raise CheckFailed("%s:\n  got  %s\n  want %s" % (what, describe(events), [
            (c.__name__, k, v, r) for (c, k, v, r) in want]))


def rev(resp):
    return resp.header.revision


# Every key starts with this; main() makes it unique to the run, so the script can run
# again on the same cluster.
P = "/py"


def kb(suffix):
    """The key P + suffix as bytes, as python-etcd3 returns keys."""
    return (P + suffix).encode()

Put = etcd3.events.PutEvent
Delete = etcd3.events.DeleteEvent


# ------------------------------------------------------------------------ checks


def check_kv(c, f):
    """put/get/delete on one member, read back through the other."""
    r1 = c.put(P + "/kv/a", "hello")
    expect(rev(r1) > 0, "put returns a header revision")
    value, meta = c.get(P + "/kv/a")
    expect_eq(value, b"hello", "get after put")
    expect_eq(meta.key, kb("/kv/a"), "key of the get")
    expect_eq(meta.version, 1, "version of a new key")
    expect_eq(meta.create_revision, rev(r1), "create_revision is the put's revision")
    expect_eq(meta.mod_revision, rev(r1), "mod_revision is the put's revision")
    expect_eq(meta.lease_id, 0, "lease of a key put without one")

    r2 = f.put(P + "/kv/a", "world")
    expect_eq(rev(r2), rev(r1) + 1, "a put through the other member is the next revision")
    value, meta = c.get(P + "/kv/a")
    expect_eq(value, b"world", "get of a key updated through the other member")
    expect_eq((meta.version, meta.create_revision, meta.mod_revision),
              (2, rev(r1), rev(r2)), "version, create and mod revision after the update")
    value, _ = f.get(P + "/kv/a")
    expect_eq(value, b"world", "linearizable get through the other member")

    c.put(P + "/kv/b", "2")
    c.put(P + "/kv/c", "3")
    got = [(m.key, v) for (v, m) in f.get_prefix(P + "/kv/", sort_order="ascend")]
    expect_eq(got, [(kb("/kv/a"), b"world"), (kb("/kv/b"), b"2"), (kb("/kv/c"), b"3")],
              "get_prefix")
    expect_eq(c.get(P + "/kv/missing"), (None, None), "get of a missing key")
    expect_eq(f.delete(P + "/kv/b"), True, "delete of an existing key")
    expect_eq(c.delete(P + "/kv/b"), False, "delete of a missing key")
    expect_eq(c.get(P + "/kv/b"), (None, None), "get after delete")

    ok, _ = c.transaction(
        compare=[c.transactions.value(P + "/kv/a") == "world"],
        success=[c.transactions.put(P + "/kv/a", "txn")],
        failure=[],
    )
    expect_eq(ok, True, "txn whose compare holds")
    ok, responses = f.transaction(
        compare=[f.transactions.value(P + "/kv/a") == "world"],
        success=[],
        failure=[f.transactions.get(P + "/kv/a")],
    )
    expect_eq(ok, False, "txn whose compare fails")
    expect_eq([v for (v, _) in responses[0]], [b"txn"], "the failure branch's get")

    status = c.status()
    expect(status.leader is not None, "status names a leader among the members")
    expect_eq(f.status().leader.id, status.leader.id, "both members name the same leader")
    expect_eq(len(list(c.members)), 3, "member count")
    return "put/get/get_prefix/delete/txn across two members; status; members"


def check_watch_events(c, f):
    """A prefix watch sees puts and deletes from either member, in order, with their
    keys, values and revisions, and nothing outside the prefix; cancel is
    acknowledged by the server and stops the events."""
    raw = queue.Queue()
    watcher = c.watcher
    handle = watcher._handle_response

    def recording(rs):
        raw.put(rs)
        return handle(rs)

    # python-etcd3 drops the server's answer to a cancel; record every raw response
    # on the watch stream to see it.
    watcher._handle_response = recording

    events = queue.Queue()
    wid = c.add_watch_prefix_callback(P + "/watch/", events.put)
    r1 = c.put(P + "/watch/a", "1")
    f.put(P + "/watchX", "outside the prefix")
    r2 = f.put(P + "/watch/b", "2")
    r3 = c.put(P + "/watch/a", "3")
    c.put(P + "/other", "outside the prefix")
    r4 = f.delete(P + "/watch/a", return_response=True)
    got = take(events, 4, "prefix watch")
    expect_events(got, [
        (Put, kb("/watch/a"), b"1", rev(r1)),
        (Put, kb("/watch/b"), b"2", rev(r2)),
        (Put, kb("/watch/a"), b"3", rev(r3)),
        (Delete, kb("/watch/a"), b"", rev(r4)),
    ], "prefix watch events")
    expect_eq([e.version for e in got[:3]], [1, 1, 2], "versions in the events")
    expect_eq(got[2].create_revision, rev(r1), "create_revision in the update's event")

    c.cancel_watch(wid)
    seen = []  # every raw response so far, in order

    def cancel_answered():
        seen.extend(drain(raw))
        return next((i + 1 for (i, rs) in enumerate(seen)
                     if rs.watch_id == wid and rs.canceled), None)

    after_ack = eventually("the server's answer to canceling watch %d" % wid,
                           cancel_answered)
    # A barrier watch on the same stream: once it has seen the next put, a watch that
    # was still live would have seen it too.
    barrier = queue.Queue()
    bid = c.add_watch_prefix_callback(P + "/watch/", barrier.put)
    expect(bid != wid, "a new watch on the stream reuses canceled watch id %d" % wid)
    r5 = f.put(P + "/watch/after-cancel", "x")
    expect_events(take(barrier, 1, "barrier watch"),
                  [(Put, kb("/watch/after-cancel"), b"x", rev(r5))], "barrier watch")
    seen.extend(drain(raw))
    late = [rs for rs in seen[after_ack:] if rs.watch_id == wid]
    expect_eq(late, [], "responses for watch %d after its cancel was answered" % wid)
    expect(events.empty(), "no event reached the canceled watch's callback")
    c.cancel_watch(bid)
    watcher._handle_response = handle
    return "4 events in order with type/key/value/revision/version; cancel acknowledged"


def drain(q):
    """What is on q now, without waiting."""
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def check_watch_history(c, f):
    """watch(start_revision=...) replays history from that revision, then goes on
    live; cancel ends the iterator."""
    r1 = c.put(P + "/hist", "v1")
    r2 = f.put(P + "/hist", "v2")
    r3 = rev(c.delete(P + "/hist", return_response=True))
    r4 = f.put(P + "/hist", "v3")
    iterator, cancel = f.watch(P + "/hist", start_revision=rev(r1) + 1)
    expect_events(take_iter(iterator, 3, "replay from revision %d" % (rev(r1) + 1)), [
        (Put, kb("/hist"), b"v2", rev(r2)),
        (Delete, kb("/hist"), b"", r3),
        (Put, kb("/hist"), b"v3", rev(r4)),
    ], "replayed history")
    r5 = c.put(P + "/hist", "v4")
    expect_events(take_iter(iterator, 1, "live event after the replay"),
                  [(Put, kb("/hist"), b"v4", rev(r5))], "live event after the replay")
    cancel()
    expect_eq(take_iter(iterator, 1, "iterator after cancel"), [],
              "items from the iterator after cancel")

    # The whole history, through the other member.
    iterator, cancel = c.watch(P + "/hist", start_revision=rev(r1))
    got = take_iter(iterator, 5, "replay from the key's first revision")
    expect_eq([e.mod_revision for e in got], [rev(r1), rev(r2), r3, rev(r4), rev(r5)],
              "revisions replayed from the key's first revision")
    cancel()

    # watch_once: the first event of a new watch (put again until the watch, set up
    # on another thread, has seen one).
    done = queue.Queue()
    threading.Thread(
        target=lambda: done.put(f.watch_once(P + "/once", timeout=DEADLINE)),
        daemon=True).start()
    puts = []

    def put_and_look():
        puts.append(rev(c.put(P + "/once", "x")))
        try:
            return [done.get(timeout=0.2)]
        except queue.Empty:
            return None

    got = eventually("watch_once returns an event", put_and_look)
    expect(got[0].mod_revision in puts, "watch_once's event is one of the puts")
    expect_events(got, [(Put, kb("/once"), b"x", got[0].mod_revision)], "watch_once's event")

    # After a compaction, a watch from before it is canceled as compacted, with the
    # compact revision; one from the compact revision itself (where a client resumes
    # after that cancel) and one from after it start normally.
    r6 = c.put(P + "/hist", "v5")
    c.compact(rev(r5))
    iterator, cancel = c.watch(P + "/hist", start_revision=rev(r4))
    try:
        got = take_iter(iterator, 1, "watch from a compacted revision", raw_errors=True)
        raise CheckFailed("watch from a compacted revision gave %s" % describe(got))
    except etcd3.exceptions.RevisionCompactedError as e:
        expect_eq(e.compacted_revision, rev(r5), "compacted_revision of the canceled watch")
    cancel()
    iterator, cancel = f.watch(P + "/hist", start_revision=rev(r5))
    expect_events(take_iter(iterator, 2, "watch from the compact revision"),
                  [(Put, kb("/hist"), b"v4", rev(r5)), (Put, kb("/hist"), b"v5", rev(r6))],
                  "watch from the compact revision")
    cancel()
    iterator, cancel = f.watch(P + "/hist", start_revision=rev(r5) + 1)
    expect_events(take_iter(iterator, 1, "watch from after the compaction"),
                  [(Put, kb("/hist"), b"v5", rev(r6))], "watch from after the compaction")
    cancel()
    return ("start_revision replay (mid-history and whole), live after replay, cancel, "
            "watch_once, compacted start revision")


def check_lease(c, f, where):
    """Grant, attach, TimeToLive (remaining, granted, keys), refresh, revoke; a short
    lease's key expires. `c` grants; `f` is the other member."""
    key = P + "/lease/%s/a" % where
    lease = c.lease(20)
    expect(lease.id != 0, "the server chose a lease id")
    expect_eq(lease.ttl, 20, "granted TTL in the grant's answer")
    r = f.put(key, "v", lease=lease)
    value, meta = c.get(key)
    expect_eq((value, meta.lease_id), (b"v", lease.id), "the key carries the lease")
    expect_eq(lease.granted_ttl, 20, "granted_ttl")
    remaining = lease.remaining_ttl
    expect(0 < remaining <= 20, "0 < remaining_ttl <= 20, got %r" % remaining)
    expect_eq(list(lease.keys), [key.encode()], "lease.keys")
    other = etcd3.leases.Lease(lease.id, 20, etcd_client=f)
    expect_eq((other.granted_ttl, list(other.keys)), (20, [key.encode()]),
              "granted_ttl and keys through the other member")

    refreshed = lease.refresh()
    expect_eq(len(refreshed), 1, "one keep-alive answer per refresh")
    expect_eq((refreshed[0].ID, refreshed[0].TTL), (lease.id, 20), "keep-alive answer")
    refreshed = other.refresh()
    expect_eq((len(refreshed), refreshed[0].ID, refreshed[0].TTL), (1, lease.id, 20),
              "keep-alive answer through the other member")

    lease.revoke()
    expect_eq(f.get(key), (None, None), "the key after revoke")
    expect_eq(c.get_lease_info(lease.id).TTL, -1, "TimeToLive of a revoked lease")
    gone = lease.refresh()
    expect_eq((len(gone), gone[0].TTL), (1, 0), "keep-alive of a revoked lease")
    expect_eq(rev(f.put(key, "no lease")), rev(r) + 2, "revoke was one revision")

    # A refresh puts the remaining TTL back to the granted one.
    lease = c.lease(4)
    eventually("remaining_ttl of a 4 s lease drops to 2", lambda: lease.remaining_ttl <= 2,
               every=0.2)
    expect_eq(lease.refresh()[0].TTL, 4, "TTL in the refresh's answer")
    expect(lease.remaining_ttl >= 3, "remaining_ttl back near 4 after the refresh")
    lease.revoke()

    # A short lease (Synod's minimum TTL is 2 s) expires and takes its key along.
    short_key = P + "/lease/%s/short" % where
    start = time.monotonic()
    short = c.lease(2)
    f.put(short_key, "short", lease=short)
    expect_eq(c.get(short_key)[0], b"short", "the short lease's key right after the put")
    eventually("the 2 s lease's key expires", lambda: c.get(short_key) == (None, None))
    took = time.monotonic() - start
    expect(took >= 1.9, "the 2 s lease lived at least ~2 s, not %.2f s" % took)
    eventually("TimeToLive of the expired lease is -1",
               lambda: f.get_lease_info(short.id).TTL == -1)
    return "grant/attach/ttl/keys/refresh/revoke; 2 s lease expired after %.1f s" % took


def lock_name(what):
    """A lock name unique to the run (python-etcd3 keeps it at /locks/<name>)."""
    return P.strip("/").replace("/", "-") + "-" + what


def check_lock(c, f):
    """python-etcd3's Lock recipe (a /locks/<name> key on a lease, taken by a txn on
    create_revision == 0, waited for with watch_once)."""
    a = c.lock(lock_name("lock"), ttl=10)
    b = f.lock(lock_name("lock"), ttl=10)
    expect_eq(a.acquire(timeout=5), True, "first acquire")
    expect_eq((a.is_acquired(), b.is_acquired()), (True, False), "is_acquired with a holding")
    value, meta = f.get("/locks/" + lock_name("lock"))
    expect_eq((value, meta.lease_id), (a.uuid, a.lease.id), "the lock key")

    t = time.monotonic()
    expect_eq(b.acquire(timeout=1), False, "acquire while the lock is held")
    waited = time.monotonic() - t
    expect(waited >= 0.9, "a held lock's acquire(timeout=1) waited, not %.2f s" % waited)

    result = queue.Queue()
    watches = len(f.watcher._callbacks)
    threading.Thread(target=lambda: result.put((b.acquire(timeout=20), time.monotonic())),
                     daemon=True).start()
    # Release only once b waits on its watch, so the watch's event is what wakes it.
    eventually("the second acquire waiting on its watch",
               lambda: len(f.watcher._callbacks) > watches and result.empty())
    released_at = time.monotonic()
    expect_eq(a.release(), True, "release by the holder")
    try:
        got, acquired_at = result.get(timeout=DEADLINE)
    except queue.Empty:
        raise CheckFailed("the waiting acquire did not return within %ss" % DEADLINE)
    expect_eq(got, True, "the waiting acquire after release")
    expect(acquired_at - released_at < 5,
           "the release woke the waiter (%.2f s after it)" % (acquired_at - released_at))
    expect_eq((a.is_acquired(), b.is_acquired()), (False, True), "is_acquired after handover")
    expect_eq(a.release(), False, "release by a non-holder")
    expect_eq(b.release(), True, "release by the new holder")
    expect_eq(c.get("/locks/" + lock_name("lock")), (None, None), "the lock key after release")

    with c.lock(lock_name("ctx"), ttl=10) as held:
        expect(held.is_acquired(), "acquired inside `with`")
        expect_eq(len(held.refresh()), 1, "lock.refresh()")
    expect_eq(c.get("/locks/" + lock_name("ctx")), (None, None), "the lock key after `with`")

    # A holder that never releases: its lease expires and the waiter gets the lock.
    dead = c.lock(lock_name("ttl"), ttl=2)
    expect_eq(dead.acquire(timeout=5), True, "acquire with ttl=2")
    t = time.monotonic()
    heir = f.lock(lock_name("ttl"), ttl=10)
    expect_eq(heir.acquire(timeout=DEADLINE), True, "acquire after the holder's lease expired")
    waited = time.monotonic() - t
    expect(waited >= 1.5, "the heir waited for the 2 s lease, not %.2f s" % waited)
    expect_eq((dead.is_acquired(), heir.is_acquired()), (False, True),
              "is_acquired after expiry")
    heir.release()
    return "contended acquire waits and fails, release hands over, expiry hands over"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--leader", required=True, help="host:port of the leader")
    ap.add_argument("--follower", required=True, help="host:port of a follower")
    ap.add_argument("--prefix", default="/py-%d-%d" % (os.getpid(), time.time()),
                    help="the first part of every key (unique to the run by default)")
    args = ap.parse_args()
    global P
    P = args.prefix
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)

    def client(ep):
        host, port = ep.rsplit(":", 1)
        return etcd3.client(host=host, port=int(port), timeout=RPC_TIMEOUT)

    leader, follower = client(args.leader), client(args.follower)
    checks = [
        ("kv", lambda: check_kv(leader, follower)),
        ("watch events and cancel", lambda: check_watch_events(leader, follower)),
        ("watch history", lambda: check_watch_history(leader, follower)),
        ("lease via the leader", lambda: check_lease(leader, follower, "leader")),
        ("lease via a follower", lambda: check_lease(follower, leader, "follower")),
        ("lock", lambda: check_lock(leader, follower)),
    ]
    for name, run in checks:
        t = time.monotonic()
        try:
            what = run()
        except CheckFailed as e:
            print("FAILED %s: %s" % (name, e), flush=True)
            traceback.print_exc()
            return 1
        except Exception as e:  # noqa: BLE001 - a library error is a failed check too
            print("FAILED %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            traceback.print_exc()
            return 1
        print("ok %s (%.1f s): %s" % (name, time.monotonic() - t, what), flush=True)
    election = [n for n in dir(etcd3.Etcd3Client) + dir(etcd3.etcdrpc)
                if "elect" in n.lower() or "campaign" in n.lower()]
    if election:
        print("FAILED election: python-etcd3 %s has an election API now (%s): check it here"
              % (etcd3.__version__, ", ".join(election)), flush=True)
        return 1
    print("skipped election: python-etcd3 %s has no election API" % etcd3.__version__)
    print("python-etcd3 %s: all %d checks passed" % (etcd3.__version__, len(checks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
