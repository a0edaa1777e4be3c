"""Sharding's pure parts: rendezvous ownership, the share with its hand-over grace, the
locally observed liveness of Leases, and the SHARD_* settings."""
import random
import statistics
import socket

import pytest

from painchain_connector.settings import Settings, SettingsError, load_settings
from painchain_connector.sharding.handover import Move, Share
from painchain_connector.sharding.leases import MemberView, micro_time
from painchain_connector.sharding.membership import ShardTiming
from painchain_connector.sharding.ownership import assign, moved, owner_of, share_of

IDS = [f"cl{random.Random(7).getrandbits(64):x}{i}" for i in range(1000)]
MEMBERS = [f"painchain-kubernetes-{i}" for i in range(10)]


# -- ownership ---------------------------------------------------------------------------

def test_every_replica_computes_the_same_owner_whatever_the_order_of_members():
    shuffled = MEMBERS[:5]
    reordered = list(reversed(shuffled))
    assert assign(IDS, shuffled) == assign(IDS, reordered)
    assert all(owner in shuffled for owner in assign(IDS, shuffled).values())


def test_each_integration_has_exactly_one_owner_among_the_shares():
    members = MEMBERS[:3]
    shares = [share_of(m, IDS, members) for m in members]
    assert sum(len(s) for s in shares) == len(IDS)
    assert set().union(*shares) == set(IDS)


def test_a_joining_replica_takes_about_one_in_n_plus_one_and_only_for_itself():
    for n in range(2, 10):
        before, after = MEMBERS[:n], MEMBERS[:n + 1]
        changes = moved(IDS, before, after)
        assert all(target == MEMBERS[n] for _source, target in changes.values())
        assert abs(len(changes) / len(IDS) - 1 / (n + 1)) < 0.05, (n, len(changes))


def test_a_leaving_replica_moves_only_its_own_integrations():
    before, after = MEMBERS[:5], MEMBERS[:2] + MEMBERS[3:5]
    changes = moved(IDS, before, after)
    assert changes and all(source == MEMBERS[2] for source, _target in changes.values())
    assert len(changes) == len(share_of(MEMBERS[2], IDS, before))


def test_load_over_five_replicas_is_within_fifteen_percent_of_the_mean_nine_times_in_ten():
    # Each integration's owner is an independent fair draw (that is what makes ownership
    # depend on nothing but the id and the members), so the spread is a multinomial's:
    # judged over many id sets, not one lucky or unlucky set.
    rng = random.Random(15)
    ratios = []
    for _ in range(60):
        ids = [f"cl{rng.getrandbits(96):024x}" for _ in range(1000)]
        owners = assign(ids, MEMBERS[:5]).values()
        ratios.append(max(list(owners).count(m) for m in MEMBERS[:5]) / 200)
    assert statistics.median(ratios) <= 1.10 and sum(r <= 1.15 for r in ratios) >= 0.9 * len(ratios), sorted(ratios)


def test_no_members_means_no_owner_and_a_non_member_owns_nothing():
    assert owner_of("x", []) is None
    assert share_of("stranger", IDS, MEMBERS[:3]) == set()


# -- the share and its hand-over ---------------------------------------------------------

def _share(me="a", members=("a", "b"), handover=10.0):
    share = Share(me=me, handover=handover)
    share.members = tuple(members)
    return share


def test_integrations_lost_to_a_new_member_are_watched_until_the_handover_ends():
    ids = IDS[:60]
    share = _share()
    first, _ = share.select(ids, now=0.0)
    share.members = ("a", "b", "c")
    watched, moves = share.select(ids, now=1.0)
    lost = first - share.owned
    assert lost and lost == {m.integration_id for m in moves if m.source == "a"}
    assert all(m.target == "c" for m in moves)
    assert watched == first  # nothing stops at once
    assert share.next_deadline() == 11.0
    later, _ = share.select(ids, now=11.0)
    assert later == share.owned == first - lost


def test_an_integration_coming_back_during_its_handover_is_simply_owned_again():
    ids = IDS[:60]
    share = _share()
    share.select(ids, now=0.0)
    share.members = ("a", "b", "c")
    share.select(ids, now=1.0)
    share.members = ("a", "b")
    watched, moves = share.select(ids, now=2.0)
    assert share.releasing == {} and watched == share.owned
    assert moves and all(m.target == "a" and m.source == "c" for m in moves)


def test_gained_integrations_name_their_previous_owner():
    ids = IDS[:60]
    share = _share(me="b", members=("a", "b", "c"))
    share.select(ids, now=0.0)
    share.members = ("a", "b")
    _, moves = share.select(ids, now=1.0)
    assert moves and all(m == Move(m.integration_id, "c", "b") for m in moves)


def test_a_cut_off_replica_watches_nothing_and_resumes_its_share_when_back():
    ids = IDS[:30]
    share = _share()
    mine, _ = share.select(ids, now=0.0)
    share.cut_off = True
    assert share.select(ids, now=1.0)[0] == set() and share.releasing == {}
    share.cut_off = False
    assert share.select(ids, now=2.0)[0] == mine


def test_removed_integrations_are_neither_owned_nor_handed_over():
    share = _share(members=("a",))
    share.select(["x", "y"], now=0.0)
    watched, moves = share.select(["x"], now=1.0)
    assert watched == {"x"} and moves == [] and share.releasing == {}


def test_new_integrations_are_not_reported_as_moves():
    share = _share(members=("a",))
    share.select(["x"], now=0.0)
    assert share.select(["x", "y"], now=1.0) == ({"x", "y"}, [])


# -- liveness as observed here -----------------------------------------------------------

def lease(name, renew, *, duration=4, holder=None):
    return {"metadata": {"name": name}, "spec": {"holderIdentity": name if holder is None else holder,
                                                 "renewTime": renew, "leaseDurationSeconds": duration}}


def test_a_lease_is_alive_while_its_renewals_are_seen_whatever_its_holders_clock_says():
    view = MemberView()
    view.observe([lease("a", "1999-01-01T00:00:00.000000Z"), lease("b", "2999-01-01T00:00:00.000000Z")], now=100.0)
    assert view.alive(103.9) == ("a", "b")
    view.observe([lease("a", "1999-01-01T00:00:01.000000Z"), lease("b", "2999-01-01T00:00:00.000000Z")], now=103.0)
    assert view.alive(104.5) == ("a",)  # b's record did not change for its 4 s duration
    assert view.alive(107.1) == ()


def test_released_and_deleted_leases_are_not_members():
    view = MemberView()
    view.observe([lease("a", "t1"), lease("b", "t1", holder="")], now=0.0)
    assert view.alive(0.0) == ("a",)
    view.observe([], now=1.0)
    assert view.alive(1.0) == ()


def test_after_a_blind_spell_live_members_get_a_settle_time_not_a_death_sentence():
    view = MemberView(settle=1.0)
    view.observe([lease("a", "t1"), lease("gone", "t0")], now=0.0)
    view.observe([lease("a", "t1"), lease("gone", "t0")], now=3.0)  # "gone" stops renewing at 0
    view.failed(now=3.5)  # then nothing can be read for a while
    view.failed(now=10.0)
    view.observe([lease("a", "t1"), lease("gone", "t0")], now=12.0)
    assert view.alive(12.5) == ("a", "gone")  # alive when we went blind: 1 s to show a renewal
    assert view.alive(13.1) == ()
    view.observe([lease("a", "t2"), lease("gone", "t0")], now=13.2)
    assert view.alive(13.2) == ("a",)


def test_micro_time_has_six_fraction_digits_in_utc():
    from datetime import datetime, timezone
    assert micro_time(datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)) == "2024-05-01T10:00:00.000000Z"


# -- timing and settings -----------------------------------------------------------------

def test_default_timing_follows_client_go_leader_election():
    timing = ShardTiming()
    assert (timing.lease, timing.renew_interval, timing.request_timeout) == (15, 2.0, 10.0)
    assert timing.partition_grace == 45.0


def test_sharding_is_off_by_default_and_on_with_a_lease_namespace():
    assert not load_settings(environ={}).sharded
    s = load_settings(environ={"SHARD_LEASE_NAMESPACE": "painchain", "POD_NAME": "connector-2",
                               "SHARD_LEASE_SECONDS": "4", "SHARD_HANDOVER_SECONDS": "3"})
    assert s.sharded and s.shard_identity == "connector-2" and s.shard_group == "painchain-kubernetes"
    assert (s.shard_lease_seconds, s.shard_handover_seconds) == (4, 3.0)


def test_identity_defaults_to_the_hostname_without_pod_name():
    s = load_settings(environ={"SHARD_LEASE_NAMESPACE": "painchain"})
    assert s.shard_identity == socket.gethostname().lower()


@pytest.mark.parametrize("env, variable", [
    ({"SHARD_LEASE_NAMESPACE": "Not_A_Namespace"}, "SHARD_LEASE_NAMESPACE"),
    ({"SHARD_LEASE_NAMESPACE": "ns", "SHARD_IDENTITY": "UPPER_case"}, "SHARD_IDENTITY"),
    ({"SHARD_LEASE_NAMESPACE": "ns", "SHARD_LEASE_SECONDS": "0"}, "SHARD_LEASE_SECONDS"),
    ({"SHARD_LEASE_NAMESPACE": "ns", "SHARD_GROUP": "a" * 64}, "SHARD_GROUP"),
])
def test_bad_shard_settings_fail_naming_the_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ=env)


def test_unusable_host_cluster_credentials_fail_at_start_naming_the_setting(tmp_path):
    from painchain_connector.metrics import Metrics
    from painchain_connector.sharding import build_sharding

    settings = load_settings(environ={"SHARD_LEASE_NAMESPACE": "painchain",
                                      "SHARD_KUBECONFIG": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="SHARD_KUBECONFIG"):
        build_sharding(settings, metrics=Metrics())
    assert build_sharding(load_settings(environ={}), metrics=Metrics()) is None
    with pytest.raises(SettingsError, match="SHARD_IDENTITY"):
        build_sharding(Settings(shard_lease_namespace="painchain"), metrics=Metrics())
