#!/usr/bin/env python3
"""Validate NDJSON events against a JSON Schema (draft 2020-12).

Usage: validate.py SCHEMA.json EVENTS.ndjson
Prints one line per invalid event and exits 1 if any, 0 when every line is valid.
"""
import json
import sys

from jsonschema import Draft202012Validator


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as handle:
        schema = json.load(handle)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    invalid = 0
    checked = 0
    with open(sys.argv[2], encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            checked += 1
            for error in validator.iter_errors(json.loads(line)):
                invalid += 1
                path = "/".join(str(part) for part in error.absolute_path) or "(root)"
                print(f"line {number}: {path}: {error.message}")
    print(f"{checked} events checked, {invalid} errors")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
