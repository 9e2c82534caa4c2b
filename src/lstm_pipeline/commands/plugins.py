"""``lstm-pipeline plugins [--check]`` and ``lstm-pipeline plugins new <name> --group <group>``: the
registered components per entry-point group, their import check, and the plugin scaffold."""
from __future__ import annotations

import sys

from ..registry import ALL, API_VERSION, RegistryError, check_entry
from ..scaffold import main as scaffold_main

PLUGINS_USAGE = """usage: lstm-pipeline plugins [--check]
       lstm-pipeline plugins new <name> --group <group>[:<component>] [--group ...] [--dir D]

Lists the components registered in each entry-point group and the distribution that provides
each. Listing imports nothing; --check imports every component and reports, per entry, its plugin
API version or the error it fails with, and names registered by two distributions (exit status 1
if any). `plugins new` writes a plugin package holding one component per --group (see
`lstm-pipeline plugins new --help` and docs/plugins.md)."""


def run(args: list[str]) -> int:
    """List (or ``--check``) the registered components, or scaffold a plugin (``new``); returns the exit status."""

    if args and args[0] == "new":
        return scaffold_main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(PLUGINS_USAGE)
        return 0
    unknown = [a for a in args if a != "--check"]
    if unknown:
        print(f"lstm-pipeline plugins: unknown argument '{unknown[0]}'.\n{PLUGINS_USAGE}", file=sys.stderr)
        return 2
    check = "--check" in args
    status = 0
    if check:
        print(f"plugin API provided: {API_VERSION}")
    for reg in ALL:
        print(f"{reg.group}" + (f"   (select with {reg.select})" if reg.select else ""))
        try:
            entries = reg.entries()
        except RegistryError as exc:
            print(f"  ERROR: {exc}")
            status = 1
            continue
        dups = reg.duplicates()
        for name, e in entries.items():
            line = f"  {name:<22} {e.distribution:<28} {e.value}"
            if name in dups:  # selecting it is an error; the group's other names work
                line += f"\n    DUPLICATE: {reg.duplicate_error(name, dups[name])}"
                status = 1
            elif check:
                st = check_entry(reg, e)
                if st.ok:
                    line += f"   ok (API {st.api})" if st.api else (
                        f"   ok (API {API_VERSION}: built in)" if e.distribution == "lstm-pipeline" else
                        f"   ok, but declares no plugin API (taken as {API_VERSION}): set "
                        f"LSTM_PIPELINE_API = \"{API_VERSION}\" in its package")
                else:
                    line += f"\n    FAILED: {st.error}"
                    status = 1
            print(line)
        if not entries:
            print("  (none)")
    return status
