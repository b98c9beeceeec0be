"""The comparison tab's robustness card: "check across plausible worlds" and what the check found, in
words (logic and the session's settings: portfolio_sim.dashboard.robust)."""

from __future__ import annotations

import reacton.ipyvuetify as rv
import solara

from portfolio_sim.dashboard.components import H2, Message, Txt, _duration, esc
from portfolio_sim.dashboard.robust import SEEDS_PER_WORLD, WORLD_CHOICES, headline, sentences
from portfolio_sim.dashboard.state import DashboardState

_ICON = {"better": "▲", "worse": "▼", "mixed": "◆", "same": "="}


@solara.component
def RobustnessCard(state: DashboardState):
    offer = state.robustness
    store = state.compare.value
    busy = state.status.value.busy
    worlds = offer.worlds.value
    pair = offer.pair(store)
    check = offer.current()
    last = offer.result.value
    with solara.Column(classes=["pz-card", "pz-robust"], gap="6px") as main:
        H2("Is the difference robust? Check across plausible worlds")
        solara.Text("The comparison above varies only the lottery seeds. Every coefficient of the model is an "
                    "assumption with a plausible range, and the evidence pins many of them down poorly. This check "
                    f"runs both designs in {worlds} plausible worlds (each a draw of every assumption from its "
                    f"range) on the same {SEEDS_PER_WORLD} seeds each, and counts the worlds in which the design "
                    "does better than the reference ★.", classes=["pz-help"])
        if pair is None:
            Txt("Add a second scenario to the comparison to check it against the reference.", classes=["pz-help"],
                testid="robust-why")
            return main
        design, ref = pair
        options = offer.candidates(store)
        with solara.Row(gap="12px", style={"align-items": "center", "flex-wrap": "wrap"}):
            if len(options) > 1:
                rv.Select(label="Design to check", items=[{"title": e.label, "value": e.key} for e in options],
                          v_model=design.key, on_v_model=offer.design.set, density="compact", variant="outlined",
                          hide_details=True, style_="max-width: 300px")
            else:
                Txt(f"Design: {design.label}", classes=["pz-lever-label"])
            Txt(f"against the reference ★ {ref.label}", classes=["pz-lever-label"])
            with solara.Row(gap="6px", style={"align-items": "center"}):
                Txt("Plausible worlds:", classes=["pz-lever-label"])
                solara.ToggleButtonsSingle(value=str(worlds), values=[str(w) for w in WORLD_CHOICES],
                                           on_value=lambda v: offer.worlds.set(int(v)), classes=["pz-robust-worlds"])
        why = offer.why_not()
        with solara.Row(gap="8px", style={"align-items": "center", "flex-wrap": "wrap"}):
            solara.Button(f"Check across plausible worlds (about {_duration(offer.estimate())})",
                          icon_name="mdi-earth", color="primary", outlined=True, disabled=busy or bool(why),
                          on_click=offer.start, classes=["pz-robust-check"])
            solara.Button("Cancel", icon_name="mdi-stop", outlined=True, color="error", disabled=not busy,
                          on_click=state.cancel, classes=["pz-robust-cancel"])
        if why:
            Txt(why, classes=["pz-help"], testid="robust-why")
        if check is not None:
            found = sentences(check)
            items = "".join(f"<li class='pz-robust-{s['tone']}'><span aria-hidden='true'>{_ICON[s['tone']]}</span> "
                            f"{esc(s['text'])}</li>" for s in found)
            solara.HTML(tag="div", attributes={"data-testid": "robust-result"}, unsafe_innerHTML=(
                f"<p class='pz-help'>{esc(headline(check))}</p><ul class='pz-clear'>{items}</ul>"
                "<p class='pz-help'>Better in N% of plausible worlds: the share of worlds in which the design's "
                "result, averaged over the seeds, beats the reference's in the outcome's good direction. The range "
                "is the 10th to 90th percentile of the difference (design minus reference) across worlds. "
                "'Depends most on' names an assumption only when the difference follows it clearly across these "
                "worlds (rank correlation, corrected for the number of assumptions tried).</p>"))
        elif last is not None and not busy:
            Message("warning", "The comparison changed since the last check (designs, years, seeds, board flip or "
                    "worlds): check again to see the designs as they are now.", testid="robust-stale")
    return main
