"""Colours that survive the common colour-vision deficiencies, with a second cue for lines.

Okabe & Ito's eight colours (2008) stay distinguishable under deuteranopia, protanopia and tritanopia;
ordered so that the first ones are the most separable (blue, orange, bluish green, reddish purple,
vermillion, sky blue, yellow, black). Lines that must be told apart also differ in dash and marker, so a
chart printed in grey still reads. The map's rating scale is cividis (monotone in lightness: the 0th and
100th percentile never look alike).
"""

from __future__ import annotations

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot", "solid", "dash"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "triangle-down", "star", "cross"]

# cividis (plotly's built-in scale, written out so exports do not depend on plotly's names)
CIVIDIS = [[0.0, "#00224e"], [0.1, "#123570"], [0.2, "#3b496c"], [0.3, "#575d6d"], [0.4, "#707173"],
           [0.5, "#8a8678"], [0.6, "#a59c74"], [0.7, "#c3b369"], [0.8, "#e1cc55"], [0.9, "#fee838"],
           [1.0, "#fee838"]]


def style(i: int) -> dict:
    """Colour, dash and marker of the i-th line."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "dash": DASHES[i % len(DASHES)],
            "symbol": SYMBOLS[i % len(SYMBOLS)]}
