"""Every command in the project's documents runs as written, at least syntactically.

The documents are README.md, CONTRIBUTING.md, docs/*.md and examples/*.md. Their fenced ``python`` blocks must
compile; in their shell blocks (``sh``, ``bash``, ``shell``, ``console``) every ``nox -s`` session must exist,
every ``python -m linear_operator_fork`` command line must be accepted by its parser, every ``python -c`` program
must compile, every ``python FILE.py`` must name a file of the repository, every ``pip install`` must install
something, and no command may keep a placeholder such as ``<owner>`` that the reader has no way to fill in. The
documents' relative links must point to files that exist. Nothing is run but ``nox -l`` and argparse.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from linear_operator_fork.__main__ import parser

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
PYTHON_LANGUAGES = {"python", "py"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"<[A-Za-z_][^<>=,;]*>")  # <owner>, <you>, <first line of X>; not pkg<2,>=1 nor 2>&1
SEPARATORS = {"&&", "||", ";", "|"}
NOX_SESSION_OPTIONS = {"-s", "-e", "--session", "--sessions"}
PIP_OPTIONS_WITH_VALUE = {
    "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
    "--prefix", "--root", "--platform", "--python-version", "--implementation", "--abi", "--only-binary",
    "--no-binary", "--progress-bar", "--config-settings", "-C", "--src", "--upgrade-strategy", "--trusted-host",
}  # fmt: skip
PIP_REQUIREMENT_OPTIONS = {"-r", "--requirement", "-e", "--editable"}
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?")  # [text](target), also the outer link of [![badge](img)](target)
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Block:
    """A fenced code block: ``line`` is the document's line (1-based) of the opening fence."""

    document: str
    line: int
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}-{self.language}"


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block: ``line`` is the block's line (1-based) its logical line starts on."""

    line: int
    source: str
    words: list[str]


def documents() -> list[Path]:
    candidates = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    candidates += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "examples").glob("*.md"))
    return [path for path in candidates if path.is_file()]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def extract_blocks(text: str, document: str) -> list[Block]:
    """The fenced blocks of a markdown text whose language is a shell's or Python's (others are ignored)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if not opening:
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        words = opening["info"].split()
        language = words[0].lower() if words else ""
        start, body = number, []
        while number < len(lines):
            line = lines[number]
            number += 1
            if re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", line):
                break
            body.append(re.sub(rf"^ {{0,{indent}}}", "", line))
        if language in SHELL_LANGUAGES | PYTHON_LANGUAGES:
            blocks.append(Block(document, start, language, "\n".join(body) + "\n"))
    return blocks


def split_words(line: str) -> list[str]:
    """The words of a shell line as the shell sees them: quotes removed, comments dropped, ``&&``, ``;`` alone."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def shell_commands(text: str, console: bool = False) -> list[Command]:
    """The simple commands of a shell block (``console``: only the lines after a ``$`` prompt are commands).

    Lines ending in a backslash, and lines inside an open quotation, continue on the next line. Raises
    ``ValueError`` naming the line that the shell could not split.
    """
    lines = text.splitlines()
    if console and any(line.startswith("$") for line in lines):
        prompted, continued = [], False
        for line in lines:
            if line.startswith("$"):
                prompted.append(line[1:].lstrip())
            else:
                prompted.append(line if continued else "")
            continued = prompted[-1].endswith("\\")
        lines = prompted
    commands: list[Command] = []
    pending, start = "", 0
    for number, line in enumerate(lines, 1):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = number
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            words = split_words(pending)
        except ValueError as exc:
            if "No closing quotation" in str(exc) and number < len(lines):
                pending += "\n"
                continue
            raise ValueError(f"line {start}: {exc}: {pending.strip()}") from None
        command: list[str] = []
        for word in [*words, ";"]:
            if word not in SEPARATORS:
                command.append(word)
            elif command:
                commands.append(Command(start, pending, command))
                command = []
        pending = ""
    if pending:
        raise ValueError(f"line {start}: the block ends inside a command: {pending.strip()}")
    return commands


def nox_session_names(words: list[str]) -> list[str]:
    """The sessions a ``nox`` or ``python -m nox`` command selects (empty for any other command)."""
    if words[:1] == ["nox"]:
        arguments = words[1:]
    elif len(words) > 2 and PYTHON.match(Path(words[0]).name) and words[1:3] == ["-m", "nox"]:
        arguments = words[3:]
    else:
        return []
    names: list[str] = []
    taking = False
    for word in arguments:
        if word == "--":
            break
        if word in NOX_SESSION_OPTIONS:
            taking = True
        elif word.startswith(("--session=", "--sessions=")):
            names.append(word.split("=", 1)[1])
        elif word.startswith("-"):
            taking = False
        elif taking:
            names.append(word)
    return names


@cache
def nox_sessions() -> frozenset[str] | None:
    """Every session of noxfile.py, as ``name(params)`` and as ``name``; None when nox is not installed."""
    if importlib.util.find_spec("nox") is not None:
        program = [sys.executable, "-m", "nox"]
    elif shutil.which("nox"):
        program = ["nox"]
    else:
        return None
    # --json lists the selected sessions only, by default nox.options.sessions: a keyword that matches every
    # session selects them all.
    listing = subprocess.run(
        [*program, "-l", "--json", "-k", "not __no_such_session__"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, f"nox -l --json failed:\n{listing.stderr}"
    sessions = json.loads(listing.stdout)
    return frozenset(s["session"] for s in sessions) | frozenset(s["name"] for s in sessions)


def parser_error(arguments: list[str]) -> str | None:
    """argparse's message when ``python -m linear_operator_fork ARGUMENTS`` is refused, else None."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser().parse_args(arguments)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {exc.code}"
    return None


def compile_error(source: str, name: str) -> str | None:
    try:
        compile(source, name, "exec")
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno} of the program)"
    return None


def pip_install_problems(arguments: list[str]) -> list[str]:
    """What is wrong with ``pip install ARGUMENTS``: nothing to install, or a placeholder left in."""
    problems = [f"unresolved placeholder {match}" for word in arguments for match in PLACEHOLDER.findall(word)]
    requirements, skip = 0, False
    for word in arguments:
        if skip:
            skip = False
        elif word in PIP_REQUIREMENT_OPTIONS:
            requirements, skip = requirements + 1, True
        elif word in PIP_OPTIONS_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            requirements += 1
    if not requirements:
        problems.append("pip install without a requirement or path")
    return problems


def command_problems(words: list[str], sessions: frozenset[str] | None) -> list[str]:
    """What would keep a command from running as written (``sessions`` None: nox's sessions are not checked)."""
    problems = ["unresolved placeholder <owner>" for word in words if "<owner>" in word][:1]
    while words and ASSIGNMENT.match(words[0]):  # VAR=value command ...
        words = words[1:]
    if not words:
        return problems
    python = bool(PYTHON.match(Path(words[0]).name))
    if sessions is not None:
        problems += [f"nox has no session {name!r}" for name in nox_session_names(words) if name not in sessions]
    if python and words[1:3] == ["-m", "linear_operator_fork"]:
        arguments = words[3:]
        skip = "--help" in arguments or "-h" in arguments or (arguments and PLACEHOLDER.fullmatch(arguments[0]))
        error = None if skip else parser_error(arguments)
        if error:
            problems.append(f"python -m linear_operator_fork refuses {shlex.join(arguments)!r}: {error}")
    elif python and words[1:2] == ["-c"] and len(words) > 2:
        error = compile_error(words[2], "python -c")
        if error:
            problems.append(f"python -c: {error}")
    elif python and len(words) > 1 and words[1].endswith(".py"):
        script = ROOT / words[1]
        if not script.is_file():
            problems.append(f"no such file: {words[1]}")
        else:
            error = compile_error(script.read_text(), words[1])
            if error:
                problems.append(f"{words[1]}: {error}")
    elif words[:2] in (["pip", "install"], ["pip3", "install"]):
        problems += pip_install_problems(words[2:])
    elif python and words[1:4] == ["-m", "pip", "install"]:
        problems += pip_install_problems(words[4:])
    return list(dict.fromkeys(problems))


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in extract_blocks(path.read_text(), relative(path))]


@pytest.mark.parametrize("block", all_blocks(), ids=lambda block: block.id)
def test_documented_code_runs_as_written(block: Block) -> None:
    if block.language in PYTHON_LANGUAGES:
        try:
            compile(block.text, block.id, "exec")
        except SyntaxError as exc:
            pytest.fail(f"{block.document}:{block.line + (exc.lineno or 1)}: SyntaxError: {exc.msg}", pytrace=False)
        return
    try:
        commands = shell_commands(block.text, console=block.language == "console")
    except ValueError as exc:
        pytest.fail(f"{block.id}: the shell cannot split {exc}", pytrace=False)
    needs_nox = any(nox_session_names(command.words) for command in commands)
    sessions = nox_sessions() if needs_nox else frozenset()
    failures = [
        f"{block.document}:{block.line + command.line}: {problem}\n    {command.source.strip()}"
        for command in commands
        for problem in command_problems(command.words, sessions)
    ]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    if sessions is None:
        pytest.skip("nox is not installed: the sessions named were not checked")


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of each link outside code whose target is a path: no scheme, not an anchor of the page."""
    links: list[tuple[int, str]] = []
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if opening and (not fence or opening["fence"].startswith(fence)):
            fence = "" if fence else opening["fence"]
            continue
        if fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        targets = LINK.findall(line) + [match[1] for match in [REFERENCE_LINK.match(line)] if match]
        links += [(number, target) for target in targets if not SCHEME.match(target) and not target.startswith("#")]
    return links


@pytest.mark.parametrize("document", documents(), ids=relative)
def test_no_placeholder_a_reader_cannot_resolve(document: Path) -> None:
    """Nowhere, not in a command, a link or a badge: a reader cannot know what <owner> stands for."""
    lines = [number for number, line in enumerate(document.read_text().splitlines(), 1) if "<owner>" in line]
    assert not lines, f"{relative(document)}: <owner> on line(s) {lines}"


@pytest.mark.parametrize("document", documents(), ids=relative)
def test_relative_links_point_to_files(document: Path) -> None:
    missing = []
    for line, target in relative_links(document.read_text()):
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = ROOT / path.lstrip("/") if path.startswith("/") else document.parent / path
        if not resolved.exists():
            missing.append(f"{relative(document)}:{line}: {target} (no such file)")
    if missing:
        pytest.fail("\n".join(missing), pytrace=False)


# The extraction itself.

MARKDOWN = """\
# Title

```sh
nox -s differential  # a comment
```

```yaml
ignored: true
```

- a list item:

  ```python
  x = 1
  ```

~~~console
$ echo "a # b"
a # b
~~~
"""


def test_extract_blocks_finds_shell_and_python_blocks_with_their_lines() -> None:
    blocks = extract_blocks(MARKDOWN, "DOC.md")
    assert [(block.id, block.text) for block in blocks] == [
        ("DOC.md:3-sh", "nox -s differential  # a comment\n"),
        ("DOC.md:13-python", "x = 1\n"),
        ("DOC.md:17-console", '$ echo "a # b"\na # b\n'),
    ]


def test_shell_commands_joins_continuations_and_drops_comments() -> None:
    text = (
        "# a whole-line comment\n"
        "pip install \\\n"
        "    gpytorch==1.15.2   # pinned\n"
        "cd build && git commit -m 'fix #12'; ls\n"
    )
    assert [(command.line, command.words) for command in shell_commands(text)] == [
        (2, ["pip", "install", "gpytorch==1.15.2"]),
        (4, ["cd", "build"]),
        (4, ["git", "commit", "-m", "fix #12"]),
        (4, ["ls"]),
    ]


def test_shell_commands_of_a_console_block_are_the_prompted_lines() -> None:
    text = '$ echo "a # b" \\\n  c\na # b c\n$ ls\n'
    assert [command.words for command in shell_commands(text, console=True)] == [["echo", "a # b", "c"], ["ls"]]


def test_shell_commands_reports_an_unclosed_quote() -> None:
    with pytest.raises(ValueError, match="line 1: No closing quotation"):
        shell_commands("echo 'oops\n")


def test_nox_session_names_are_unquoted_and_stop_at_posargs() -> None:
    (command,) = shell_commands("""nox -s "upstream(variant='fork')" lint -- -s not-a-session\n""")
    assert nox_session_names(command.words) == ["upstream(variant='fork')", "lint"]
    sessions = frozenset({"upstream(variant='fork')", "upstream", "lint"})
    assert command_problems(command.words, sessions) == []
    assert command_problems(["nox", "-s", "lnt"], sessions) == ["nox has no session 'lnt'"]


def test_a_placeholder_left_in_a_command_is_reported() -> None:
    (command,) = shell_commands('pip install "git+https://github.com/<owner>/linear_operator_fork"  # the URL\n')
    assert command_problems(command.words, None) == ["unresolved placeholder <owner>"]
    assert command_problems(["git", "clone", "https://github.com/<owner>/x"], None) == [
        "unresolved placeholder <owner>"
    ]
    assert command_problems(["pip", "install", "linear_operator<0.7,>=0.6"], None) == []
    assert command_problems(["pip", "install", "-U"], None) == ["pip install without a requirement or path"]


def test_commands_of_the_command_line_must_parse() -> None:
    words = ["python", "-m", "linear_operator_fork"]
    assert command_problems([*words, "pin", "version"], None) == []
    assert command_problems([*words, "differential", "replay", "KEY"], None) == []
    assert command_problems([*words, "<subcommand>", "--help"], None) == []
    (problem,) = command_problems([*words, "no-such-command"], None)
    assert "invalid choice: 'no-such-command'" in problem
    assert command_problems(["python3", "-c", "print(1"], None) != []
    assert command_problems(["python", "examples/no_such_example.py"], None) == [
        "no such file: examples/no_such_example.py"
    ]


def test_relative_links_skip_urls_anchors_and_code() -> None:
    text = "[a](docs/x.md#part) [b](https://e.org) [c](#here)\n```sh\n[d](nowhere.md)\n```\n[![i](img.svg)](y.md)\n"
    assert relative_links(text) == [(1, "docs/x.md#part"), (5, "img.svg"), (5, "y.md")]
