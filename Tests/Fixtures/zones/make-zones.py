#!/usr/bin/env python3
"""Writes zones.json: where local days and months begin, as UTC instants, computed by Python's zoneinfo
from the same tzdata, independently of the ledger's TZif reader. Run once when the test was written:

    python3 make-zones.py > zones.json

For a local time that clocks skipped (a DST change at midnight), zoneinfo with fold=0 takes the offset
before the change, which is the instant of the change: the first instant of that local day."""
import datetime, json, zoneinfo

CASES = [
    # (zone, first local date, last local date (exclusive), why)
    ("Europe/Berlin", (2026, 3, 1), (2026, 11, 5), "northern DST: 23-hour day 2026-03-29, 25-hour 2026-10-25"),
    ("Australia/Sydney", (2026, 3, 25), (2026, 10, 15), "southern DST: ends 2026-04-05, starts 2026-10-04"),
    ("America/Santiago", (2026, 3, 30), (2026, 9, 12),
     "changes at midnight: 2026-04-05 repeats 23h, 2026-09-06 starts at 01:00"),
    ("Asia/Kolkata", (2026, 1, 25), (2026, 3, 5), "+05:30: days begin at 18:30Z"),
    ("Asia/Kathmandu", (1985, 12, 25), (1986, 1, 5), "+05:30 to +05:45 on 1986-01-01"),
    ("America/Sao_Paulo", (2018, 10, 30), (2019, 3, 1),
     "rules changed: DST 2018-11-04 (a day from 01:00), none after 2019"),
    ("Europe/Moscow", (2014, 10, 20), (2014, 11, 3), "rules changed: +04 to +03 on 2014-10-26"),
    ("Europe/Berlin", (2040, 3, 20), (2040, 4, 5), "after the file's last transition: the footer's rule"),
]

def first_instant(zone, y, m, d):
    local = datetime.datetime(y, m, d, tzinfo=zone)
    return local.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

out = []
for name, start, end, why in CASES:
    zone = zoneinfo.ZoneInfo(name)
    day = datetime.date(*start)
    days, months = [], []
    while day < datetime.date(*end):
        days.append(first_instant(zone, day.year, day.month, day.day))
        if day.day == 1:
            months.append(first_instant(zone, day.year, day.month, 1))
        day += datetime.timedelta(days=1)
    out.append({"zone": name, "from": "%04d-%02d-%02d" % start, "to": "%04d-%02d-%02d" % end, "why": why,
                "day_starts": days, "month_starts": months})
print(json.dumps(out, indent=1))
