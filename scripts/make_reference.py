"""Write vidstyle/configs/reference.toml from the settings in vidstyle/config.py.

Run it after adding or changing a setting: `python scripts/make_reference.py`.
`--check` writes nothing and exits 1 when the checked-in file is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vidstyle.cli.reference import reference_toml

TARGET = Path(__file__).resolve().parent.parent / "vidstyle" / "configs" / "reference.toml"


def main(argv: list[str]) -> int:
    text = reference_toml()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date; run python scripts/make_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
