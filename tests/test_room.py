"""The workshop room's store and round rules (portfolio_sim.room): votes, ties, timeouts, double votes,
isolation, expiry, restart from SQLite, and the shared simulation, debrief and export."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from portfolio_sim.decisions import Decisions, loads_decisions
from portfolio_sim.kernel import derive_seeds, single_run, yearly_table
from portfolio_sim.room import sim
from portfolio_sim.room.store import ALPHABET, RoomError, RoomStore, normalize_code, pretty_code
from portfolio_sim.scenario import load_scenario


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def small(seeds: int = 2, years: int = 4):
    s = load_scenario("baseline")
    s.district.students, s.district.schools, s.district.neighbourhoods = 2500, 12, 9
    s.run.seeds, s.run.years = seeds, years
    return s


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    st = RoomStore(tmp_path / "rooms.sqlite", clock=clock)
    yield st
    st.close()


def board(store, code, n):
    return [store.join(code, f"Member {i}", "board") for i in range(n)]


def test_codes_are_long_unambiguous_and_validated():
    from portfolio_sim.room.store import new_code
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000 and all(len(c) == 8 and set(c) <= set(ALPHABET) for c in codes)
    assert not set("01OIL") & set(ALPHABET)
    c = next(iter(codes))
    assert normalize_code(pretty_code(c).lower()) == c and normalize_code(f" {c[:4]} {c[4:]} ") == c
    for bad in ("", "ABC", "ABCD-EFG0", "<script>", "ABCDEFGHJ"):
        with pytest.raises(RoomError, match="is not a room code: a code is 8 letters and digits"):
            normalize_code(bad)


def test_a_round_majority_applies_and_the_year_steps(store):
    room, key = store.create_room(small())
    sup = store.join(room.code, "Sam", "superintendent")
    members = board(store, room.code, 3)
    union = store.join(room.code, "Una", "union")
    assert sim.step(store, room.code, key) == 1                  # year 1 by the rules (no round open)
    store.open_round(room.code, key)
    store.propose(room.code, sup.token, "intervention", "close")
    store.propose(room.code, key, "board", "protect")            # the facilitator, chairing, may move too
    with pytest.raises(RoomError, match="do not propose"):
        store.propose(room.code, union.token, "applications", "approve")
    store.call_vote(room.code, key, seconds=60)
    with pytest.raises(RoomError, match="do not vote"):
        store.vote(room.code, sup.token, "intervention:-1", "yes")
    store.vote(room.code, members[0].token, "intervention:-1", "yes")
    store.vote(room.code, members[1].token, "intervention:-1", "yes")
    store.vote(room.code, members[2].token, "intervention:-1", "no")
    store.vote(room.code, members[0].token, "board:-1", "no")
    store.vote(room.code, members[1].token, "board:-1", "abstain")
    assert store.room(room.code).phase == "voting"
    store.vote(room.code, members[2].token, "board:-1", "yes")   # tie 1-1 with one abstention
    room_now = store.room(room.code)
    assert room_now.phase == "decided"                            # everyone voted on everything
    tallies = {t.motion.point: t for t in store.tally(room.code)}
    assert (tallies["intervention"].yes, tallies["intervention"].no) == (2, 1) and tallies["intervention"].carried
    assert tallies["board"].tied and not tallies["board"].carried
    assert store.outcome(room.code, 2).closed_by == "all voted"
    assert store.adopted(room.code) == {2: Decisions(intervention="close")}
    assert sim.step(store, room.code, key) == 2
    assert store.room(room.code).phase == "waiting" and store.room(room.code).year == 2


def test_timeout_closes_the_vote_and_late_votes_are_refused(store, clock):
    room, key = store.create_room(small())
    sup = store.join(room.code, "Sam", "superintendent")
    members = board(store, room.code, 4)
    store.open_round(room.code, key)
    store.propose(room.code, sup.token, "applications", "deny")
    store.call_vote(room.code, key, seconds=30)
    store.vote(room.code, members[0].token, "applications:-1", "yes")
    clock.t += 31
    with pytest.raises(RoomError, match="Too late"):
        store.vote(room.code, members[1].token, "applications:-1", "no")
    o = store.outcome(room.code, 1)
    assert o.closed_by == "deadline" and o.decisions == Decisions(applications="deny")
    assert o.tallies[0]["yes"] == 1 and o.tallies[0]["not_voted"] == 3


def test_timeout_with_no_votes_is_a_tie_and_the_rule_applies(store, clock):
    room, key = store.create_room(small())
    board(store, room.code, 2)
    store.open_round(room.code, key)
    store.propose(room.code, key, "renewal", "not_renew")
    store.call_vote(room.code, key, seconds=10)
    clock.t += 11
    r = store.room(room.code)                                    # reading the room closes the vote
    assert r.phase == "decided"
    o = store.outcome(room.code, 1)
    assert o.closed_by == "deadline" and o.decisions.by_rule and o.tallies[0]["verdict"].startswith("tied")


def test_no_double_votes_and_no_voting_in_another_room(store):
    a, key_a = store.create_room(small())
    b, key_b = store.create_room(small())
    assert a.code != b.code
    ma = store.join(a.code, "Ana", "board")
    store.join(a.code, "Ben", "board")
    mb = store.join(b.code, "Ana", "board")                      # the same name is fine in another room
    for code, key in ((a.code, key_a), (b.code, key_b)):
        store.open_round(code, key)
        store.propose(code, key, "board", "reverse")
        store.call_vote(code, key)
    store.vote(a.code, ma.token, "board:-1", "yes")
    with pytest.raises(RoomError, match="already voted"):
        store.vote(a.code, ma.token, "board:-1", "no")
    with pytest.raises(RoomError, match="not a participant of this room"):
        store.vote(b.code, ma.token, "board:-1", "yes")          # a token of room A in room B
    with pytest.raises(RoomError, match="Only this room's facilitator"):
        store.close_vote(a.code, key_b)                          # room B's key in room A
    with pytest.raises(RoomError, match="Only this room's facilitator"):
        store.open_round(a.code, "guess")
    assert [t.yes for t in store.tally(b.code)] == [0]
    store.vote(b.code, mb.token, "board:-1", "no")
    assert [(t.yes, t.no) for t in store.tally(a.code)] == [(1, 0)]
    with pytest.raises(RoomError, match="already called 'ana'"):
        store.join(a.code, " ana ", "observer")
    with pytest.raises(RoomError, match="No room has the code"):
        store.join("ZZZZ-ZZZZ", "X", "board")
    with pytest.raises(RoomError, match="not a role"):
        store.join(a.code, "Y", "mayor")


def test_rounds_refuse_out_of_order_actions(store):
    room, key = store.create_room(small())
    with pytest.raises(RoomError, match="Open the agenda first"):
        store.call_vote(room.code, key)
    store.open_round(room.code, key)
    with pytest.raises(RoomError, match="No motion is on the table"):
        store.call_vote(room.code, key)
    with pytest.raises(RoomError, match="still open"):
        store.open_round(room.code, key)
    with pytest.raises(RoomError, match="not a choice"):
        store.propose(room.code, key, "intervention", "demolish")
    with pytest.raises(RoomError, match="cannot be decided school by school"):
        store.propose(room.code, key, "board", "protect", school=3)


def test_room_survives_a_restart_and_rebuilds_the_same_numbers(tmp_path, clock):
    path = tmp_path / "rooms.sqlite"
    st = RoomStore(path, clock=clock)
    room, key = st.create_room(small())
    sup = st.join(room.code, "Sam", "superintendent")
    m = st.join(room.code, "Mia", "board")
    sim.step(st, room.code, key)
    st.open_round(room.code, key)
    st.propose(room.code, sup.token, "intervention", "spare")
    st.call_vote(room.code, key)
    st.vote(room.code, m.token, "intervention:-1", "yes")
    sim.step(st, room.code, key)
    before = sim.snapshot(st, room.code).yearly.copy()
    st.open_round(room.code, key)
    st.propose(room.code, sup.token, "board", "protect")
    st.call_vote(room.code, key)
    st.close()
    sim.forget(room.code)                                        # the process ends: models gone

    st2 = RoomStore(path, clock=clock)
    r = st2.room(room.code)
    assert (r.year, r.phase, r.round_year) == (2, "voting", 3)   # mid-vote, where it was
    assert st2.participant(room.code, m.token).name == "Mia"     # her device's token still works
    assert sim.same_numbers(sim.snapshot(st2, room.code).yearly, before)
    st2.vote(room.code, m.token, "intervention:-1" if False else "board:-1", "yes")
    assert st2.room(room.code).phase == "decided"
    assert sim.step(st2, room.code, key) == 3
    # the stepped room equals the kernel's run of the same decisions on the same seeds
    s = r.scenario()
    runs = [single_run(s, seed, years=3, decisions=st2.adopted(room.code))
            for seed in derive_seeds(s.run.seed, s.run.seeds)]
    assert sim.same_numbers(sim.snapshot(st2, room.code).yearly, yearly_table(runs))
    st2.close()


def test_rooms_expire_and_closed_rooms_refuse_actions(tmp_path, clock):
    st = RoomStore(tmp_path / "r.sqlite", ttl_hours=1, clock=clock)
    old, _ = st.create_room(small())
    clock.t += 1800
    live, key = st.create_room(small())
    st.close_room(live.code, key)
    with pytest.raises(RoomError, match="has been closed"):
        st.join(live.code, "Late", "board")
    assert st.room(live.code).is_closed                          # still readable (debrief, export)
    clock.t += 2000                                              # old: 3800 s untouched, live: 2000 s
    assert st.expire() == 1
    with pytest.raises(RoomError, match="No room has the code"):
        st.room(old.code)
    assert st.room(live.code).is_closed
    clock.t += 1700
    assert st.expire() == 1                                      # the closed one too, an hour after its last use
    with pytest.raises(RoomError, match="No room has the code"):
        st.room(live.code)
    st.close()


def test_debrief_export_and_cli_replay(tmp_path, store):
    s = small(seeds=1, years=3)
    room, key = store.create_room(s)
    sup = store.join(room.code, "Sam", "superintendent")
    m = board(store, room.code, 3)
    sim.step(store, room.code, key)
    for year in (2, 3):
        store.open_round(room.code, key)
        snap = sim.snapshot(store, room.code)
        assert snap.year == year - 1
        store.propose(room.code, sup.token, "intervention", "spare")
        store.propose(room.code, sup.token, "applications", "approve")
        store.call_vote(room.code, key)
        for i, member in enumerate(m):
            store.vote(room.code, member.token, "intervention:-1", "yes")
            store.vote(room.code, member.token, "applications:-1", "no" if i else "yes")
        sim.step(store, room.code, key)
    assert store.room(room.code).phase == "done"
    assert store.adopted(room.code) == {2: Decisions(intervention="spare"), 3: Decisions(intervention="spare")}
    d = sim.debrief(store, room.code, "proposals")
    assert set(d.paths) == {"This room", "Rules only", d.other_label}
    assert list(d.table["year"]) == [1, 2, 3] and d.table.loc[0, "decided"] == "by the rules"
    # the proposals path adopted 'approve' too: it differs from the room's path only through that
    assert d.table.filter(like="room - rules").iloc[0].abs().max() == 0      # year 1: same decisions
    html = sim.summary_html(store, room.code)
    assert "Decisions and votes" in html and "Replay" in html
    blob = sim.session_zip(store, room.code)
    z = zipfile.ZipFile(io.BytesIO(blob))
    assert {"scenario.toml", "decisions.toml", "votes.csv", "yearly.csv", "summary.html"} <= set(z.namelist())
    assert loads_decisions(z.read("decisions.toml").decode()) == store.adopted(room.code)
    votes = pd.read_csv(io.BytesIO(z.read("votes.csv")))
    assert list(votes["yes"]) == [3, 1, 3, 1] and "Member 1: No" in votes.loc[1, "votes"]
    for name in ("scenario.toml", "decisions.toml"):
        (tmp_path / name).write_bytes(z.read(name))
    out = tmp_path / "replay"
    subprocess.run([sys.executable, "-m", "portfolio_sim.cli", "run", str(tmp_path / "scenario.toml"),
                    "--decisions", str(tmp_path / "decisions.toml"), "--out", str(out), "--quiet"], check=True)
    replayed = pd.read_csv(out / "yearly.csv")
    exported = pd.read_csv(io.BytesIO(z.read("yearly.csv")))
    pd.testing.assert_frame_equal(replayed, exported)


def test_stories_tell_what_followed_a_school_decision(store):
    s = small(seeds=1, years=5)
    s.accountability.consecutive_years, s.accountability.min_years_rated = 1, 1
    # (45, was 25: a school must be at the trigger in year 2; under issue 11's school effects seed 1 has none below 25)
    s.accountability.closure_percentile, s.accountability.intervention = 45.0, "close"
    room, key = store.create_room(s)
    m = store.join(room.code, "Mia", "board")
    sim.step(store, room.code, key)
    # spare every school at the trigger in year 2, then close them by the rules afterwards
    store.open_round(room.code, key)
    store.propose(room.code, key, "intervention", "spare")
    store.call_vote(room.code, key)
    store.vote(room.code, m.token, "intervention:-1", "yes")
    for _ in range(3):
        sim.step(store, room.code, key)
    d = sim.debrief(store, room.code)
    spared = [t for t in d.stories if t.startswith("You spared")]
    assert spared, d.stories
    assert all("in year 2" in t and "By the rules" in t for t in spared)


def test_a_motion_for_one_school_takes_precedence(store):
    room, key = store.create_room(small(seeds=1))
    m = board(store, room.code, 3)
    store.open_round(room.code, key)
    store.propose(room.code, key, "intervention", "close")
    store.propose(room.code, key, "intervention", "spare", school=4, school_name="Middle 4")
    store.propose(room.code, key, "renewal", "not_renew", school=7, school_name="High 7")
    store.call_vote(room.code, key)
    for member, (a, b, c) in zip(m, (("yes", "yes", "no"), ("yes", "no", "no"), ("no", "yes", "yes"))):
        store.vote(room.code, member.token, "intervention:-1", a)
        store.vote(room.code, member.token, "intervention:4", b)
        store.vote(room.code, member.token, "renewal:7", c)
    texts = [t.motion.text for t in store.tally(room.code)]
    assert texts[1] == "Middle 4: another year." and texts[2] == "High 7: do not renew."
    adopted = store.adopted(room.code)[1]
    assert adopted == Decisions(intervention="close", schools=((4, "intervention", "spare"),))
    assert adopted.choice("intervention", 4) == "spare" and adopted.choice("intervention", 5) == "close"
    assert adopted.choice("renewal", 7) == "rule"            # 1 yes, 2 no: fails


def test_the_rooms_file_defaults_to_the_users_data_directory(monkeypatch, tmp_path):
    from portfolio_sim.room.store import default_db_path
    monkeypatch.delenv("PORTFOLIO_SIM_ROOMS_DB", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "portfolio_sim" / "rooms.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "portfolio_sim" / "rooms.sqlite"
    monkeypatch.setenv("PORTFOLIO_SIM_ROOMS_DB", str(tmp_path / "x.sqlite"))
    assert default_db_path() == tmp_path / "x.sqlite"


def test_serve_gives_participants_a_reachable_address():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "dashboards"))
    import serve
    assert serve.public_url("127.0.0.1", 8765, None) == "http://127.0.0.1:8765"
    assert serve.public_url("0.0.0.0", 8080, "http://room.local:8080/") == "http://room.local:8080"
    lan = serve.public_url("0.0.0.0", 8080, None)
    assert lan.startswith("http://") and lan.endswith(":8080") and "0.0.0.0" not in lan


def test_room_scenarios_are_kept_small_enough_to_step_live():
    s = small()
    sim.check_room_scenario(s)
    s.run.seeds = 6
    with pytest.raises(RoomError, match="6 seeds: a room steps all of them live; allowed 1 to 5"):
        sim.check_room_scenario(s)


def test_hostile_motions_and_names_are_refused(store):
    """Issue 15 re-audit: school=10**30 raised OverflowError out of SQLite; -5 and True were stored as
    motions; a 100 KB choice was echoed whole; names with terminal escapes or NUL were shown to the room."""
    import numpy as np

    room, key = store.create_room(small())
    store.open_round(room.code, key)
    for school in (10**30, -5, True, 2.0, "3"):
        with pytest.raises(RoomError, match="is not a school"):
            store.propose(room.code, key, "intervention", "spare", school=school)
    store.propose(room.code, key, "intervention", "spare", school=np.int64(2))      # numpy ids are fine
    with pytest.raises(RoomError, match="is not a choice") as info:
        store.propose(room.code, key, "intervention", "x" * 100_000)
    assert len(str(info.value)) < 300
    for name in ("\x1b[31mred", "nul\x00byte"):
        with pytest.raises(RoomError, match="no control characters"):
            store.join(room.code, name, "parents")
    parent = store.join(room.code, "Pat", "parents")
    store.call_vote(room.code, key, seconds=60)
    with pytest.raises(RoomError, match="you joined as Parents"):
        store.vote(room.code, parent.token, "intervention:2", "yes")
