"""The bench view: a live page per card `sscard serve` serves (docs/bench-view.md).

`sscard serve ... --web [HOST:]PORT` shows each card's state (ATR, power, selection, both
applications' lifecycle, PIN and key try counters, ATC, the activation deadline, the DF04
medical records), the APDU stream decoded by `reader.decode`, exportable as an `.apdu` trace,
and buttons that send control lines (remove, insert, reset, switch, fault, date, keypad) to the
serve loop. The layers:

- `reader.web.feed`: one card's stream, handed from the serve thread to the web loop through a
  bounded deque (no lock, no waiting on the serve side), decoded and batched there;
- `reader.web.state`: the card's state as the page shows it, taken in the serve thread from the
  applications' own `describe()` (what `sscard info` prints);
- `reader.web.app`: the Starlette application (pages, state, Server-Sent Events, export, the
  guarded control endpoint); `reader.web.bench`: the view attached to a running serve, uvicorn
  in a thread of its own.

Nothing of a card's keys or PINs reaches the page: the applications' descriptions hold none,
the decoder never prints PIN digits, and the data of a PIN command is withheld (`feed.withheld`).
"""
