"""The README's code snippets are pieces of example hosts that the suite builds and runs: each fenced block after a
`<!-- snippet: FILE -->` marker must appear in FILE, line by line in order (other lines may come between).
    python3 tests/readme_snippets.py SOURCE_DIR"""
import pathlib
import re
import sys


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"<!-- snippet: (\S+) -->\n```\w*\n(.*?)```", readme, re.S)
    if not blocks:
        print("README.md has no snippet markers")
        return 1
    failures = 0
    for name, body in blocks:
        source = (root / name).read_text().splitlines()
        at = 0
        for line in body.splitlines():
            if not line.strip():
                continue
            while at < len(source) and source[at].rstrip() != line.rstrip():
                at += 1
            if at == len(source):
                print(f"README.md: the snippet from {name} has a line that is not in it (in that order): {line!r}")
                failures += 1
                break
            at += 1
    print(f"{len(blocks)} snippets checked, {failures} stale")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
