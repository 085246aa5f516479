"""`reader.wire`: the public name of the wire reader (`WireReader`) and its line faults; the
link layer itself lives in `reader.link`."""

from reader.link.wire import Faults, LinkError, WireReader, explain_log

__all__ = ["Faults", "LinkError", "WireReader", "explain_log"]
