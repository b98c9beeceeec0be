"""The workshop room's pages (Solara): join, participant, facilitator console, presenter view, debrief.

Routes (dashboards/app.py): ``/room`` (enter a code), ``/room/CODE`` (join: name and role),
``/room/CODE/p/TOKEN`` (a participant's own page; the token in the address is the device's identity, so a
reload or a reconnect lands in the current round), ``/room/CODE/console/KEY`` (the facilitator),
``/room/CODE/present`` (the projector) and ``/room/CODE/debrief``.

What a room shares lives in the process-wide SQLite store (portfolio_sim.room.store), never in a page:
every page polls its room's version twice a second and re-reads the room when it changes (or while a
vote counts down), so every device shows the same year, round and numbers.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import ipyvuetify as v
import reacton.ipyvuetify as rv
import solara
import traitlets

from portfolio_sim.dashboard import figures, workshop
from portfolio_sim.dashboard.components import PageFixes, PlotlyChart, PlotlyView, Txt, ref
from portfolio_sim.dashboard.simulation import RunSnapshot
from portfolio_sim.decisions import CHOICES, QUESTIONS, SCHOOL_CHOICES
from portfolio_sim.room import sim
from portfolio_sim.room.store import (ALL_SCHOOLS, ROLES, SIGNALS, VOTES, Room, RoomError, default_store,
                                      normalize_code, pretty_code)

log = logging.getLogger("portfolio_sim.dashboard")
CSS = (Path(__file__).parent / "room.css").read_text(encoding="utf-8")
DEBRIEF_CHARTS = ("mean_achievement", "share_below_bar", "closures", "restarts")
PRESENTER_CHARTS = ("achievement", "below_bar", "enrollment", "politics")
PHASE_TEXT = {"waiting": "Between rounds", "agenda": "Agenda open: the superintendent proposes",
              "voting": "The board is voting", "decided": "The vote is in", "done": "All years done: debrief"}


def esc(value: Any) -> str:
    return html.escape(str(value))


def base_url() -> str:
    """Where participants reach this server (PORTFOLIO_SIM_ROOM_URL, set by dashboards/serve.py)."""
    return os.environ.get("PORTFOLIO_SIM_ROOM_URL", "http://127.0.0.1:8765").rstrip("/")


def join_url(code: str) -> str:
    return f"{base_url()}/room/{pretty_code(code)}"


def qr_svg(text: str) -> str:
    """A QR code as inline SVG, drawn here (qrcode, no network)."""
    import qrcode
    import qrcode.image.svg

    img = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    svg = img.to_string(encoding="unicode")
    return svg.replace("<svg ", '<svg role="img" aria-label="QR code of the join address" ', 1)


class TextInput(v.VuetifyTemplate):
    """A labelled text box whose <input> itself carries the data-testid (Vuetify puts attributes on its
    wrapper), so automated browsers can fill it."""

    template = traitlets.Unicode("""
<template><label class="room-field"><span class="room-field-label">{{ label }}</span>
<input class="room-field-input" :data-testid="testid" :maxlength="maxlength" v-model="value"
       :autocapitalize="caps ? 'characters' : 'sentences'" autocomplete="off" @keyup.enter="enter" /></label></template>
""").tag(sync=True)
    value = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    testid = traitlets.Unicode("").tag(sync=True)
    maxlength = traitlets.Int(80).tag(sync=True)
    caps = traitlets.Bool(False).tag(sync=True)
    submits = traitlets.Int(0).tag(sync=True)

    def vue_enter(self, *_: Any) -> None:
        self.submits += 1


def Field(label: str, value: str, on_value, testid: str, maxlength: int = 80, caps: bool = False,
          on_enter=None):
    kw = {"on_submits": lambda _n: on_enter()} if on_enter else {}
    return TextInput.element(label=label, value=value, on_value=on_value, testid=testid, maxlength=maxlength,
                             caps=caps, **kw)


# ------------------------------------------------------------------------------------------------
# Live state: a page follows its room through the store
# ------------------------------------------------------------------------------------------------

class _Followers:
    """One thread for the whole server that watches every followed room and nudges the pages that show
    it (each in its own Solara context). One thread, outside any page's context, rather than one per
    page: a page's thread ending while Solara closes that page's context races Solara's clean-up."""

    def __init__(self) -> None:
        self.subs: dict[int, list] = {}          # id -> [code, context, tick, last signature]
        self.lock = threading.Lock()
        self.ids = iter(range(1, 1 << 62))
        self.thread: threading.Thread | None = None

    def add(self, code: str, tick) -> Any:
        from solara.server import kernel_context

        with self.lock:
            sid = next(self.ids)
            self.subs[sid] = [code, kernel_context.get_current_context(), tick, None]
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="room-followers", daemon=True)
                self.thread.current_context = None   # type: ignore[attr-defined]  # no page's context
                self.thread.start()
        return lambda: self.subs.pop(sid, None)

    def _loop(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                subs = list(self.subs.values())
            signatures: dict[str, Any] = {}
            for sub in subs:
                code, ctx, tick, last = sub
                if code not in signatures:
                    try:
                        r = default_store().room(code)
                        signatures[code] = (r.version, r.seconds_left())
                    except RoomError as exc:
                        signatures[code] = str(exc)
                    except Exception:  # noqa: BLE001 - the store closing at shutdown
                        signatures[code] = None
                sig = signatures[code]
                if sig == last or getattr(ctx, "kernel", None) is None:
                    continue
                sub[3] = sig
                try:
                    with ctx:
                        tick.value += 1
                except Exception:  # noqa: BLE001 - a page closing meanwhile
                    log.debug("could not nudge a room page", exc_info=True)


FOLLOWERS = _Followers()


def use_room(code: str) -> tuple[Room | None, str]:
    """The room, re-read whenever the store says it changed (and every second during a vote)."""
    tick = solara.use_reactive(0)
    solara.use_effect(lambda: FOLLOWERS.add(code, tick), [code])
    _ = tick.value
    try:
        return default_store().room(code), ""
    except RoomError as exc:
        return None, str(exc)


def use_snapshot(room: Room) -> RunSnapshot | None:
    return solara.use_memo(lambda: sim.snapshot(default_store(), room.code), [room.code, room.year])


@solara.component
def Problem(text: str):
    return solara.HTML(tag="div", unsafe_innerHTML=esc(text), classes=["room-error"],
                       attributes={"data-testid": "room-error", "role": "alert"})


def _act(set_error, fn, *args, **kw) -> bool:
    try:
        fn(*args, **kw)
        set_error("")
        return True
    except RoomError as exc:
        set_error(str(exc))
        return False


# ------------------------------------------------------------------------------------------------
# Pieces every view shows
# ------------------------------------------------------------------------------------------------

def year_text(room: Room, snap: RunSnapshot | None) -> str:
    start = snap.start_year if snap is not None else room.scenario().run.start_year
    if room.year == 0:
        return f"Before year 1 ({start + 1}) of {room.years}"
    return f"Year {room.year} ({start + room.year}) of {room.years}"


@solara.component
def YearBadge(room: Room, snap: RunSnapshot | None, big: bool = False):
    with solara.Row(classes=["room-yearline", "room-big" if big else ""], gap="12px") as main:
        Txt(year_text(room, snap), classes=["room-year"], testid="current-year")
        Txt(PHASE_TEXT.get(room.phase, room.phase) if not room.is_closed else "Room closed",
            classes=["room-phase", f"room-phase-{room.phase}"], testid="room-phase")
        if room.phase == "voting":
            Txt(f"{room.seconds_left()} s left", classes=["room-countdown"], testid="vote-countdown")
    return main


NUMBERS = ("mean_achievement", "share_below_bar", "autonomous_schools", "closures", "political_support",
           "enrollment_outside")


def numbers_html(snap: RunSnapshot | None) -> str:
    if snap is None:
        return '<p class="room-help">The district is simulated when the facilitator steps year 1.</p>'
    rows = [r for r in figures.key_numbers(snap) if r["metric"] in NUMBERS]
    tiles = "".join(f'<div class="room-num" data-metric="{esc(r["metric"])}"><div class="room-num-label">'
                    f'{esc(r["label"])}</div><div class="room-num-value">{esc(figures.fmt_value(r["median"], r["kind"]))}'
                    "</div></div>" for r in rows)
    seeds = len(snap.seeds)
    note = "one district" if seeds == 1 else f"median of {seeds} possible futures (seeds)"
    return f'<div class="room-nums">{tiles}</div><p class="room-help">{snap.start_year + snap.year}: {note}.</p>'


@solara.component
def Numbers(snap: RunSnapshot | None):
    return solara.HTML(tag="div", unsafe_innerHTML=numbers_html(snap), attributes={"data-testid": "room-numbers"})


@solara.component
def Agenda(room: Room, snap: RunSnapshot | None):
    rows = [(t, x) for t, x in workshop.agenda(snap) if t != "Start"] if snap is not None else []
    body = "".join(f"<tr><th>{esc(t)}</th><td>{esc(x)}</td></tr>" for t, x in rows)
    return solara.HTML(tag="div", unsafe_innerHTML=(f'<table class="room-agenda">{body}</table>' if body else
                                                    '<p class="room-help">No agenda yet: the district\'s first year '
                                                    "comes first.</p>"),
                       attributes={"data-testid": "room-agenda"})


def tally_html(room: Room) -> str:
    st = default_store()
    if room.phase in ("voting",):
        tallies = [{"text": t.motion.text, "yes": t.yes, "no": t.no, "abstain": t.abstain,
                    "not_voted": t.not_voted, "verdict": ""} for t in st.tally(room.code)]
        head = f"Voting: {room.seconds_left()} s left"
    else:
        o = st.outcome(room.code, room.round_year)
        if o is None or not o.tallies:
            return '<p class="room-help">No vote this round.</p>' if room.round_year else ""
        tallies = list(o.tallies)
        head = {"deadline": "Closed: time ran out", "all voted": "Closed: every board member voted",
                "facilitator": "Closed by the facilitator"}.get(o.closed_by, o.closed_by)
    rows = []
    for t in tallies:
        total = max(1, t["yes"] + t["no"] + t["abstain"] + t["not_voted"])
        bar = "".join(f'<span class="room-bar room-bar-{k}" style="width:{100 * t[k] / total:.0f}%"></span>'
                      for k in ("yes", "no", "abstain"))
        verdict = f'<span class="room-verdict room-{t["verdict"].split(":")[0].split()[0]}">{esc(t["verdict"])}</span>' \
            if t["verdict"] else ""
        rows.append(f'<div class="room-tally-row"><div class="room-motion">{esc(t["text"])}</div>'
                    f'<div class="room-bars">{bar}</div><div class="room-counts">Yes {t["yes"]} · No {t["no"]} · '
                    f'Abstain {t["abstain"]} · not voted {t["not_voted"]} {verdict}</div></div>')
    return f'<div class="room-tally"><div class="room-tally-head">{esc(head)}</div>{"".join(rows)}</div>'


@solara.component
def TallyView(room: Room):
    return solara.HTML(tag="div", unsafe_innerHTML=tally_html(room), attributes={"data-testid": "vote-tally"})


@solara.component
def MotionsView(room: Room):
    motions = default_store().motions(room.code) if room.round_year else []
    if room.phase in ("waiting", "done") or not motions:
        return solara.HTML(tag="div", unsafe_innerHTML="" if room.phase != "agenda" else
                           '<p class="room-help">No motion on the table yet.</p>')
    items = "".join(f"<li>{esc(m.text)}</li>" for m in motions)
    return solara.HTML(tag="div", unsafe_innerHTML=f'<div class="room-motions"><div class="room-h3">Motions for '
                       f'year {room.round_year}</div><ol>{items}</ol></div>', attributes={"data-testid": "room-motions"})


@solara.component
def MotionEditor(room: Room, snap: RunSnapshot | None, actor: str, set_error):
    """The superintendent's (or chairing facilitator's) motions: one choice per decision point, and per
    school when the room has one seed."""
    st = default_store()
    current = {(m.point, m.school): m.choice for m in st.motions(room.code)}
    relevant = [p for p in QUESTIONS if p != "applications" or room.scenario().has_autonomy_policy]
    with solara.Div(classes=["room-editor", "room-stack"], attributes={"data-testid": "motion-editor"}) as main:
        for point in relevant:
            with solara.Column(gap="4px", classes=["room-point"]):
                solara.Text(QUESTIONS[point], classes=["room-question"])
                with solara.Row(gap="6px", classes=["room-choices"], style={"flex-wrap": "wrap"}):
                    for value, label in CHOICES[point].items():
                        chosen = current.get((point, ALL_SCHOOLS), "rule") == value
                        solara.Button("No motion (the rule)" if value == "rule" else label,
                                      outlined=not chosen, color="primary" if chosen else None,
                                      classes=["room-choice"],
                                      attributes={"data-testid": f"propose-{point}-{value}",
                                                  "data-chosen": str(chosen).lower()},
                                      on_click=lambda p=point, v=value: _act(set_error, st.propose, room.code,
                                                                             actor, p, v))
        for point, rows in workshop.decidable_by_school(snap).items():
            for _, row in rows.iterrows():
                sid, label = int(row["school_id"]), workshop.school_label(row)
                with solara.Column(gap="4px", classes=["room-point"]):
                    solara.Text(f"{label}: {'at the trigger' if point == 'intervention' else 'contract ending'}",
                                classes=["room-question"])
                    with solara.Row(gap="6px", style={"flex-wrap": "wrap"}):
                        for value, text in SCHOOL_CHOICES[point].items():
                            chosen = current.get((point, sid), "rule") == value
                            solara.Button(text, outlined=not chosen, color="primary" if chosen else None,
                                          small=True, on_click=lambda p=point, v=value, s=sid, n=str(row["name"]):
                                          _act(set_error, st.propose, room.code, actor, p, v, s, n))
    return main


@solara.component
def CommentsView(room: Room, limit: int = 12):
    items = default_store().comments(room.code, limit=limit)
    if not items:
        return solara.HTML(tag="div", unsafe_innerHTML='<p class="room-help">No comments yet.</p>')
    rows = "".join(
        f'<li class="room-{c.kind}"><b>{esc(c.name)}</b> <span class="room-help">({esc(ROLES[c.role].label)}, '
        f'year {c.year})</span>: {esc(SIGNALS.get(c.text, c.text)) if c.kind == "signal" else esc(c.text)}</li>'
        for c in items)
    return solara.HTML(tag="div", unsafe_innerHTML=f'<ul class="room-comments">{rows}</ul>',
                       attributes={"data-testid": "room-comments"})


# ------------------------------------------------------------------------------------------------
# Join
# ------------------------------------------------------------------------------------------------

@solara.component
def EnterCode(message: str = ""):
    text, set_text = solara.use_state("")
    error, set_error = solara.use_state(message)
    router = solara.use_router()

    def go_to() -> None:
        try:
            code = normalize_code(text)
            default_store().room(code)
            router.push(f"/room/{pretty_code(code)}")
        except RoomError as exc:
            set_error(str(exc))

    with solara.Column(classes=["room-page", "room-narrow"], gap="14px") as main:
        solara.Text("Join a workshop room", classes=["room-h1"])
        Field("Room code (on the facilitator's screen)", text, set_text, "room-code-input", 12, caps=True,
              on_enter=go_to)
        solara.Button("Go to the room", color="primary", on_click=go_to, attributes={"data-testid": "room-code-submit"})
        if error:
            Problem(error)
    return main


@solara.component
def JoinRoom(code: str):
    room, problem = use_room(code)
    name, set_name = solara.use_state("")
    role, set_role = solara.use_state("board")
    error, set_error = solara.use_state("")
    router = solara.use_router()
    if room is None:
        return EnterCode(problem)

    def join() -> None:
        try:
            p = default_store().join(code, name, role)
        except RoomError as exc:
            set_error(str(exc))
            return
        router.push(f"/room/{pretty_code(code)}/p/{p.token}")

    with solara.Column(classes=["room-page", "room-narrow"], gap="14px") as main:
        solara.Text(f"Room {room.pretty}", classes=["room-h1"])
        solara.Text(room.name, classes=["room-help"])
        if room.is_closed:
            return Problem(f"Room {room.pretty} has been closed by its facilitator.")
        Field("Your name", name, set_name, "join-name", 40)
        solara.Text("Your role", classes=["room-h3"])
        with solara.Div(classes=["room-roles", "room-stack"], attributes={"data-testid": "role-picker",
                                                                          "role": "radiogroup"}):
            for r in ROLES.values():
                chosen = r.key == role
                solara.Button(f"{r.label}: {r.does}", outlined=not chosen, color="primary" if chosen else None,
                              classes=["room-role"], on_click=lambda k=r.key: set_role(k),
                              attributes={"data-role": r.key, "role": "radio", "aria-checked": str(chosen).lower()})
        solara.Button("Join the room", color="primary", on_click=join, classes=["room-join"],
                      attributes={"data-testid": "join-submit"})
        if error:
            Problem(error)
        YearBadge(room, None)
    return main


# ------------------------------------------------------------------------------------------------
# A participant's own page
# ------------------------------------------------------------------------------------------------

@solara.component
def ParticipantPage(code: str, token: str):
    room, problem = use_room(code)
    error, set_error = solara.use_state("")
    comment, set_comment = solara.use_state("")
    st = default_store()
    if room is None:
        return EnterCode(problem)
    try:
        me = st.participant(code, token)
    except RoomError as exc:
        return EnterCode(str(exc))
    snap = use_snapshot(room)
    role = ROLES[me.role]
    with solara.Column(classes=["room-page", "room-narrow", "room-participant"], gap="12px") as main:
        with solara.Row(classes=["room-me"], gap="8px"):
            Txt(me.name, classes=["room-name"], testid="me-name")
            Txt(role.label, classes=["room-role-chip"], testid="me-role")
            Txt(f"room {room.pretty}", classes=["room-help"])
        YearBadge(room, snap)
        if room.is_closed:
            solara.Text("The facilitator has closed this room. Thank you for taking part.", classes=["room-help"])
        if error:
            Problem(error)
        if room.phase == "voting" and role.votes:
            mine = st.my_votes(code, token)
            for m in st.motions(code):
                with solara.Div(classes=["room-card", "room-vote", "room-stack"], attributes={"data-motion": m.key}):
                    solara.Text(m.text, classes=["room-question"])
                    if m.key in mine:
                        Txt(f"You voted {VOTES[mine[m.key]]}.", classes=["room-voted"], testid="my-vote")
                    with solara.Row(gap="8px", style={"flex-wrap": "wrap"}):
                        for v, label in VOTES.items():
                            solara.Button(label, color={"yes": "success", "no": "error"}.get(v),
                                          outlined=v == "abstain", disabled=m.key in mine, classes=["room-vote-btn"],
                                          attributes={"data-testid": "vote-option", "data-choice": v,
                                                      "data-motion": m.key},
                                          on_click=lambda k=m.key, v=v: _act(set_error, st.vote, code, token, k, v))
        elif room.phase == "agenda" and role.proposes:
            with solara.Column(classes=["room-card"], gap="8px"):
                solara.Text(f"Your motions for year {room.round_year}", classes=["room-h3"])
                solara.Text("Pick what the central office recommends; the board votes on each motion.",
                            classes=["room-help"])
                MotionEditor(room, snap, token, set_error)
        else:
            MotionsView(room)
        if room.phase in ("voting", "decided") or (room.phase == "waiting" and room.round_year):
            TallyView(room)
        if room.phase in ("agenda", "voting") or room.phase == "waiting":
            with solara.Details("On the agenda", expand=room.phase == "agenda"):
                Agenda(room, snap)
        Numbers(snap)
        if not room.is_closed:
            with solara.Column(classes=["room-card"], gap="6px"):
                solara.Text("Signal or comment (everyone sees it on the facilitator's screen)", classes=["room-h3"])
                with solara.Row(gap="6px", style={"flex-wrap": "wrap"}):
                    for key, label in SIGNALS.items():
                        solara.Button(label, outlined=True, small=True, attributes={"data-signal": key},
                                      on_click=lambda k=key: _act(set_error, st.comment, code, token, k, "signal"))
                Field("Comment", comment, set_comment, "comment-text", 280)
                solara.Button("Send", small=True, on_click=lambda: _act(set_error, st.comment, code, token, comment)
                              and set_comment(""), attributes={"data-testid": "comment-send"})
        if room.phase == "done":
            solara.Button("Open the debrief", href=f"/room/{room.pretty}/debrief", target="_blank", text=True)
    return main


# ------------------------------------------------------------------------------------------------
# The facilitator's console
# ------------------------------------------------------------------------------------------------

@solara.component
def Console(code: str, key: str):
    room, problem = use_room(code)
    error, set_error = solara.use_state("")
    seconds, set_seconds = solara.use_state(0)
    busy, set_busy = solara.use_state(False)
    st = default_store()
    if room is None:
        return EnterCode(problem)
    if not st.is_facilitator(code, key) and not room.is_closed:
        return Problem("This address is not this room's console (the facilitator's key is wrong).")
    snap = use_snapshot(room)
    people = st.participants(code)
    nxt = room.year + 1

    def step() -> None:
        set_busy(True)
        try:
            _act(set_error, sim.step, st, code, key)
        finally:
            set_busy(False)

    with solara.Column(classes=["room-page", "room-console"], gap="14px") as main:
        with solara.Row(classes=["room-head"], gap="24px", style={"align-items": "flex-start", "flex-wrap": "wrap"}):
            with solara.Column(gap="4px"):
                solara.Text("Facilitator console", classes=["room-help"])
                Txt(room.pretty, classes=["room-code"], testid="room-code")
                Txt(join_url(code), classes=["room-url"], testid="room-join-url")
                solara.Text(room.name, classes=["room-help"])
                with solara.Row(gap="8px"):
                    solara.Button("Presenter view", href=f"/room/{room.pretty}/present", target="_blank",
                                  outlined=True, attributes={"data-testid": "room-presenter-link"})
                    solara.Button("Debrief", href=f"/room/{room.pretty}/debrief", target="_blank", outlined=True,
                                  attributes={"data-testid": "room-debrief-link"})
            solara.HTML(tag="div", unsafe_innerHTML=qr_svg(join_url(code)), classes=["room-qr"],
                        attributes={"data-testid": "room-qr"})
            with solara.Column(gap="4px", classes=["room-people"]):
                solara.Text(f"{len(people)} participant(s)", classes=["room-h3"])
                counts = {r: sum(1 for p in people if p.role == r) for r in ROLES}
                solara.Text(", ".join(f"{ROLES[r].label}: {n}" for r, n in counts.items() if n) or "nobody yet",
                            classes=["room-help"])
                with solara.Details("Roles"):
                    for p in people:
                        with solara.Row(gap="6px", style={"align-items": "center"}):
                            solara.Text(p.name, style={"min-width": "8rem"})
                            rv.Select(items=[{"title": r.label, "value": r.key} for r in ROLES.values()],
                                      v_model=p.role, dense=True, hide_details=True,
                                      on_v_model=lambda v, pid=p.pid: _act(set_error, st.set_role, code, key, pid, v))
        YearBadge(room, snap, big=True)
        if error:
            Problem(error)
        if room.is_closed:
            solara.Text("This room is closed: the debrief and the export remain until it expires.",
                        classes=["room-help"])
        else:
            with solara.Row(gap="8px", classes=["room-controls"], style={"flex-wrap": "wrap", "align-items": "center"}):
                if room.phase == "waiting":
                    if room.year >= 1:
                        solara.Button(f"Open the agenda for year {nxt}", color="primary", disabled=busy,
                                      on_click=lambda: _act(set_error, st.open_round, code, key),
                                      attributes={"data-testid": "room-open-agenda"})
                    solara.Button(f"Step year {nxt} by the rules" if room.year else "Simulate year 1 (the district "
                                  "as it is)", outlined=room.year >= 1, color="primary", disabled=busy,
                                  on_click=step, attributes={"data-testid": "room-step-rules"})
                elif room.phase == "agenda":
                    Field("Vote time (seconds)", str(seconds or room.vote_seconds),
                          lambda v: set_seconds(int(v) if str(v).strip().isdigit() else 0), "room-vote-seconds", 3)
                    solara.Button("Call the vote", color="primary", disabled=busy,
                                  on_click=lambda: _act(set_error, st.call_vote, code, key, seconds or None),
                                  attributes={"data-testid": "room-call-vote"})
                    solara.Button(f"Skip the vote: step year {nxt} by the rules", outlined=True, disabled=busy,
                                  on_click=step, attributes={"data-testid": "room-step-rules"})
                elif room.phase == "voting":
                    solara.Button("Close the vote now", color="primary",
                                  on_click=lambda: _act(set_error, st.close_vote, code, key),
                                  attributes={"data-testid": "room-close-vote"})
                elif room.phase == "decided":
                    solara.Button(f"Apply the decision and step year {nxt}", color="primary", disabled=busy,
                                  on_click=step, attributes={"data-testid": "room-step"})
                elif room.phase == "done":
                    solara.Button("Open the debrief", color="primary", href=f"/room/{room.pretty}/debrief",
                                  target="_blank")
                solara.Button("Close the room", text=True, color="error",
                              on_click=lambda: _act(set_error, st.close_room, code, key),
                              attributes={"data-testid": "room-close"})
        with solara.Row(gap="16px", classes=["room-cols"], style={"align-items": "flex-start", "flex-wrap": "wrap"}):
            with solara.Column(gap="10px", classes=["room-col"]):
                if room.phase == "agenda":
                    solara.Text("Motions (the superintendent's; you may move them as chair)", classes=["room-h3"])
                    MotionEditor(room, snap, key, set_error)
                else:
                    MotionsView(room)
                TallyView(room)
                solara.Text(f"On the agenda for year {nxt}", classes=["room-h3"])
                Agenda(room, snap)
            with solara.Column(gap="10px", classes=["room-col"]):
                Numbers(snap)
                solara.Text("Comments and signals", classes=["room-h3"])
                CommentsView(room)
                ExportButtons(room)
    return main


@solara.component
def ExportButtons(room: Room):
    st = default_store()
    with solara.Row(gap="8px", style={"flex-wrap": "wrap"}) as main:
        with solara.FileDownload(lambda: sim.session_zip(st, room.code), filename=f"room-{room.pretty}.zip",
                                 mime_type="application/zip"):
            solara.Button("Export the session (.zip)", icon_name="mdi-download", outlined=True,
                          attributes={"data-testid": "room-export"})
        with solara.FileDownload(lambda: sim.summary_html(st, room.code), filename=f"room-{room.pretty}-summary.html",
                                 mime_type="text/html"):
            solara.Button("Printable summary (.html)", icon_name="mdi-printer", outlined=True,
                          attributes={"data-testid": "room-summary"})
    return main


# ------------------------------------------------------------------------------------------------
# Presenter view (the projector)
# ------------------------------------------------------------------------------------------------

def _big(fig: go.Figure, height: int = 300) -> go.Figure:
    fig.update_layout(height=height, font={"size": 16}, title={"font": {"size": 20}}, legend={"font": {"size": 14}},
                      margin={"l": 60, "r": 20, "t": 50, "b": 30})
    fig.update_xaxes(title=None)
    return fig


@solara.component
def Presenter(code: str):
    room, problem = use_room(code)
    if room is None:
        return EnterCode(problem)
    snap = use_snapshot(room)
    figs = solara.use_memo(lambda: [ref(_big(figures.build_chart(k, snap))) for k in PRESENTER_CHARTS]
                           if snap is not None else [], [room.code, room.year])
    with solara.Column(classes=["room-page", "room-presenter"], gap="10px") as main:
        solara.Div(children=[PlotlyView.element(figure="", height=0)], style="display: none")
        with solara.Row(classes=["room-present-head"], gap="24px", style={"align-items": "center"}):
            with solara.Column(gap="0px", style={"flex": "1 1 auto"}):
                YearBadge(room, snap, big=True)
                solara.Text(room.name, classes=["room-present-name"])
            with solara.Column(gap="0px", classes=["room-present-join"]):
                Txt(f"Join: {join_url(code)}", classes=["room-present-url"])
                Txt(room.pretty, classes=["room-code", "room-code-present"], testid="room-code")
            if room.year == 0 or room.phase == "waiting":
                solara.HTML(tag="div", unsafe_innerHTML=qr_svg(join_url(code)), classes=["room-qr", "room-qr-present"])
        with solara.Row(gap="18px", classes=["room-present-body"], style={"align-items": "flex-start"}):
            with solara.Column(gap="8px", classes=["room-present-left"]):
                if room.phase in ("voting", "decided") or (room.phase == "waiting" and room.round_year):
                    TallyView(room)
                else:
                    MotionsView(room)
                if room.phase == "agenda":       # one thing at a time on the projector
                    Agenda(room, snap)
                Numbers(snap)
            with solara.Div(classes=["room-present-charts"]):
                for fig in figs:
                    PlotlyChart(fig, filename="room-chart")
    return main


# ------------------------------------------------------------------------------------------------
# Debrief
# ------------------------------------------------------------------------------------------------

def _path_figure(d: sim.Debrief, metric: str, label: str) -> go.Figure:
    fig = go.Figure()
    colors = ["#1b4f80", "#6b7280", "#d97706"]
    for (name, frame), color in zip(d.paths.items(), colors):
        med = frame[frame["year"] >= 1].groupby("year")[metric].median()
        fig.add_trace(go.Scatter(x=[d.start_year + y for y in med.index], y=med.values, name=name, mode="lines+markers",
                                 line={"color": color, "width": 3, "dash": "dot" if name == "Rules only" else "solid"}))
    fig.update_layout(title=label, height=320, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2}, template="plotly_white",
                      xaxis={"dtick": 1, "tickformat": "d"})
    return fig


@solara.component
def DebriefPage(code: str):
    room, problem = use_room(code)
    other, set_other = solara.use_state("proposals")
    if room is None:
        return EnterCode(problem)
    st = default_store()
    paths = sim.other_paths(st, code)
    d = solara.use_memo(lambda: sim.debrief(st, code, other) if room.year else None, [room.code, room.year, other])
    figs = solara.use_memo(lambda: [ref(_path_figure(d, m, label)) for m, label, _ in sim.DEBRIEF_METRICS if m in DEBRIEF_CHARTS]
                           if d is not None else [], [d])
    with solara.Div(classes=["room-page", "room-debrief", "room-stack"], attributes={"data-testid": "debrief"}) as main:
        solara.Div(children=[PlotlyView.element(figure="", height=0)], style="display: none")
        solara.Text(f"Debrief: room {room.pretty}, {room.name}", classes=["room-h1"])
        YearBadge(room, None)
        if d is None:
            solara.Text("Nothing simulated yet.", classes=["room-help"])
            return main
        solara.Text(f"The room's path, the rules-only path and one other path, on the same {len(d.seeds)} seed(s) "
                    "(common random numbers: the same districts and the same random draws, so every difference is "
                    "the decisions'). Medians across seeds; differences paired seed by seed.", classes=["room-help"])
        rv.Select(label="Compare with", items=[{"title": label, "value": k} for k, (label, _) in paths.items()],
                  v_model=other, on_v_model=set_other, outlined=True, dense=True, hide_details=True,
                  style_="max-width: 34rem", attributes={"data-testid": "debrief-other"})
        if d.stories:
            solara.Text("What followed the room's decisions", classes=["room-h3"])
            solara.HTML(tag="ul", unsafe_innerHTML="".join(f"<li>{esc(s)}</li>" for s in d.stories),
                        classes=["room-stories"], attributes={"data-testid": "debrief-stories"})
        else:
            solara.Text("No decision was taken school by school, so there are no school stories; the table shows "
                        "what the decisions changed.", classes=["room-help"])
        solara.Text("Year by year: room / rules (room − rules; other − rules)", classes=["room-h3"])
        solara.HTML(tag="div", unsafe_innerHTML=sim.debrief_table_html(d), classes=["room-scroll"],
                    attributes={"data-testid": "debrief-table"})
        with solara.Div(classes=["room-debrief-charts"]):
            for fig in figs:
                PlotlyChart(fig, filename="debrief")
        ExportButtons(room)
    return main


# ------------------------------------------------------------------------------------------------
# The route, and the dashboard's "Create room"
# ------------------------------------------------------------------------------------------------

def _route_page(path: str):
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        return EnterCode()
    try:
        code = normalize_code(parts[1])
    except RoomError as exc:
        return EnterCode(str(exc))
    rest = parts[2:]
    if not rest:
        return JoinRoom(code)
    if rest[0] == "p" and len(rest) == 2:
        return ParticipantPage(code, rest[1])
    if rest[0] == "console" and len(rest) == 2:
        return Console(code, rest[1])
    if rest[0] == "present":
        return Presenter(code)
    if rest[0] == "debrief":
        return DebriefPage(code)
    return EnterCode(f"'{'/'.join(rest)}' is not a page of a room; allowed: /room/CODE, /room/CODE/present, "
                     "/room/CODE/debrief")


@solara.component
def RoomRoute():
    """Everything under /room (see the module docstring for the addresses)."""
    router = solara.use_router()
    with solara.Div(classes=["room-app"]) as main:
        solara.Style(CSS)
        PageFixes.element()            # page language, zoomable viewport, accessible names
        solara.Title("Workshop room")
        _route_page(router.path)
    return main


@solara.component
def RoomLauncher(scenario):
    """In the dashboard's workshop card: start a room on the current levers (one shared simulation that
    participants join from their devices)."""
    created, set_created = solara.use_state(None)
    error, set_error = solara.use_state("")

    def create() -> None:
        s = scenario.model_copy(deep=True)
        s.run.seeds = min(s.run.seeds, 3)
        try:
            sim.check_room_scenario(s)
            room, key = default_store().create_room(s)
        except RoomError as exc:
            set_error(str(exc))
            return
        set_error("")
        set_created((room.pretty, key))

    with solara.Column(gap="6px", classes=["pz-room-launch"]) as main:
        solara.Text("Workshop room: participants join from their own phones or laptops, the board votes, "
                    "everyone sees the same year.", classes=["pz-help"])
        solara.Button("Create room", icon_name="mdi-account-group", outlined=True, on_click=create,
                      attributes={"data-testid": "room-create"})
        if error:
            Problem(error)
        if created:
            pretty, key = created
            Txt(pretty, classes=["room-code-small"], testid="room-code")
            solara.Button("Open the facilitator console", href=f"/room/{pretty}/console/{key}", target="_blank",
                          color="primary", attributes={"data-testid": "room-console-link"})
            solara.Text(f"Participants open {join_url(normalize_code(pretty))}. Keep the console's address to "
                        "yourself: it holds the facilitator's key.", classes=["pz-help"])
    return main


__all__ = ["RoomRoute", "RoomLauncher"]
