"""The README is the one source of the commands a user types: every shell block in it is run by a journey
(tests/journeys/test_NAME.py for `<!-- journey: NAME -->`) or exempt with a reason, and the parser reads
blocks the way a shell would."""

from pathlib import Path

from tests.support import readme

HERE = Path(__file__).parent
MOST_EXEMPTIONS = 3  # the install commands and the Docker cluster; every other block runs in a test


def test_every_shell_block_is_claimed_by_a_journey_with_a_test_module_or_exempt_with_a_reason():
    problems = []
    for block in readme.blocks():
        if block.journey is None:
            problems.append(f"{block.where}: no `<!-- journey: NAME -->` (or `none (reason)`) on the line before it")
        elif block.journey == "none":
            if not block.reason:
                problems.append(f"{block.where}: exempt without a reason: `<!-- journey: none (why) -->`")
        elif not (HERE / f"test_{block.journey}.py").exists():
            problems.append(
                f"{block.where}: journey {block.journey!r} has no test module "
                f"(tests/journeys/test_{block.journey}.py), so nothing runs these commands: "
                + "; ".join(block.commands)
            )
    assert not problems, "\n".join(problems)


def test_exemptions_stay_few():
    exempt = [f"{b.where}: {b.reason}" for b in readme.blocks() if b.journey == "none"]
    assert len(exempt) <= MOST_EXEMPTIONS, "\n".join(exempt)


def test_no_fence_hides_commands_from_the_journeys():
    unlabeled = [f"README.md:{f.line}" for f in readme.fences() if not f.language]
    assert not unlabeled, f"fenced blocks need a language (```sh for commands): {', '.join(unlabeled)}"


def test_each_journey_module_runs_blocks_the_readme_has():
    named = {b.journey for b in readme.blocks()}
    modules = {p.stem.removeprefix("test_") for p in HERE.glob("test_*.py")} - {"readme_coverage"}
    assert modules <= named, f"journey modules with no README block: {sorted(modules - named)}"


def test_blocks_are_read_as_a_shell_reads_them():
    text = """# Title

## Part

<!-- journey: demo -->
```sh
X=$(cxmpute storage put a.txt)   # prints a CID
cxmpute run flows/t.yaml \\
    --input topic="a # not a comment"
echo '#kept' ${#X}
```

- an item:

  <!-- journey: none (needs a second machine) -->
  ```console
  $ cxmpute agents list
  io.template  ...
  $ curl -s host/healthz \\
      -H 'x: y'
  {"status":"ok"}
  ```

```
bare
```
"""
    blocks, fences = readme.parse(text)
    first, second = blocks
    assert first.headings == ("Title", "Part") and first.journey == "demo" and first.line == 6
    assert first.commands == [
        "X=$(cxmpute storage put a.txt)",
        'cxmpute run flows/t.yaml --input topic="a # not a comment"',
        "echo '#kept' ${#X}",
    ]
    assert second.journey == "none" and second.reason == "needs a second machine"
    assert second.commands == ["cxmpute agents list", "curl -s host/healthz -H 'x: y'"]
    assert [f.language for f in fences] == ["sh", "console", ""]
