"""The JSON results cxlvmm-lat printed in a guest's serial log, in order
(a line cut by the console or by a crash is left out)."""
import json


def lat_results(log):
    text = open(log, "rb").read().decode(errors="replace").replace("\r", "")
    out = []
    for line in text.splitlines():
        if line.startswith('{"tool":"cxlvmm-lat"'):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
