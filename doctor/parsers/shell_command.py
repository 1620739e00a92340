"""The llama-server command inside a user's own launch script, read without running it.

People start llama-server from a script like the guide's: variables with defaults
(``MODEL="${MODEL:-/models/x.gguf}"``), exported environment, a bash array of arguments
with comments between them, then ``exec taskset -c "${CPU_RANGE}" "${cmd[@]}"``; or one
line with backslash continuations. ``read_command`` follows exactly that much of the shell
(assignments, ``${VAR:-default}``, ``$VAR``, arrays, ``export``, ``env``/``taskset``/
``numactl``/``nice`` prefixes, ``exec``) and nothing more: no command substitution is run,
no file is sourced; a word it cannot expand is kept as written and named in ``unresolved``.
"""

from __future__ import annotations

import os
import re
import shlex

from msgspec import Struct, field

SERVER_NAMES = ("llama-server",)
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_ARRAY_START = re.compile(r"^\s*(?:local\s+|declare\s+-a\s+)?([A-Za-z_][A-Za-z0-9_]*)=\(")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARRAY_ALL = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\[[@*]\]\}$")
_LEADING = ("then ", "do ", "else ", "{ ")
_KEYWORDS = ("fi", "done", "then", "else", "do", "esac", "{", "}")
_OPENERS = ("if ", "elif ", "while ", "until ", "for ", "case ", "[ ", "[[ ", "test ")
NOT_COMMANDS = ("echo", "printf", "command", "which", "type", "test", "[", "[[", "if", "!",
                "cat", "ls", "exit", "return", "set", "cd", "source", ".")


class CommandError(ValueError):
    """No llama-server command found in the text."""


class ShellCommand(Struct):
    """The llama-server command a user's script or unit runs, with its arguments expanded."""
    server: str  # the llama-server path as the script names it
    args: list[str]  # its arguments, expanded
    env: dict[str, str] = field(default_factory=dict)  # exported or prefixed (env A=1, A=1 cmd)
    cpu_list: str | None = None  # taskset -c LIST
    prefix: list[str] = field(default_factory=list)  # what ran before it (taskset, numactl...)
    unresolved: list[str] = field(default_factory=list)  # words with $(...) or unknown vars


def read_command(text: str) -> ShellCommand:
    """The llama-server command the script runs: the first ``exec`` of it (the process
    ends there), else the last one."""
    variables: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    exported: dict[str, str] = {}
    found: list[ShellCommand] = []
    for statement in _statements(text):
        array = _ARRAY_START.match(statement)
        if array and statement.endswith(")"):
            body = statement[array.end():-1]
            arrays[array.group(1)] = _expand_words(body, variables, arrays, [])
            continue
        try:
            words = shlex.split(statement)
        except ValueError:
            continue
        if words and words[0] in ("export", "readonly", "local", "declare"):
            for word in words[1:]:
                if (match := _ASSIGN.match(word)):
                    value = expand(match.group(2), variables, [])
                    variables[match.group(1)] = value
                    if words[0] == "export":
                        exported[match.group(1)] = value
        elif len(words) == 1 and (match := _ASSIGN.match(words[0])):
            name, value = match.groups()
            # A command's output is not known without running it: the name stands for it.
            variables[name] = ("${" + name + "}" if "$(" in value or "`" in value
                               else expand(value, variables, []))
        elif words and words[0] not in NOT_COMMANDS:
            command = _command(statement, variables, arrays)
            if command is not None:
                command.env = {**exported, **command.env}
                found.append(command)
    if not found:
        raise CommandError("no llama-server command found (a line or array naming "
                           "llama-server)")
    return next((c for c in found if c.prefix[:1] == ["exec"]), found[-1])


def _statements(text: str) -> list[str]:
    """Logical lines without comments: continuations joined, a NAME=( ... ) array
    gathered whole, ``if ...; then X; fi`` cut into its commands."""
    lines = text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()
    statements: list[str] = []
    buffer: list[str] = []
    for line in lines:
        stripped = _strip_comment(line).strip()
        if buffer:
            buffer.append(stripped)
            if stripped.endswith(")"):
                statements.append(" ".join(buffer))
                buffer = []
            continue
        if _ARRAY_START.match(stripped) and not stripped.endswith(")"):
            buffer = [stripped]
            continue
        for part in _split_commands(stripped):
            while part.startswith(_LEADING):
                part = part.split(None, 1)[1] if " " in part else ""
            if part and part not in _KEYWORDS and not part.startswith(_OPENERS):
                statements.append(part)
    return statements


def _split_commands(line: str) -> list[str]:
    """The commands of one line, cut at ``;``, ``&&`` and ``||`` outside quotes."""
    parts, quote, start, index = [], None, 0, 0
    while index < len(line):
        char = line[index]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";" or line.startswith(("&&", "||"), index):
            parts.append(line[start:index].strip())
            index += 1 if char == ";" else 2
            start = index
            continue
        index += 1
    parts.append(line[start:].strip())
    return [part for part in parts if part]


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a # inside quotes or a word is kept)."""
    quote, index = None, 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == quote:
                quote = None
            elif char == "\\" and quote == '"':
                index += 1
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
        index += 1
    return line


def expand(value: str, variables: dict[str, str], unresolved: list[str]) -> str:
    """``$NAME``, ``${NAME}``, ``${NAME:-default}`` (nested) replaced; what is unknown and
    has no default stays as written and is listed in ``unresolved``."""
    if "$(" in value or "`" in value:
        unresolved.append(value)
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char != "$" or index + 1 >= len(value):
            out.append(char)
            index += 1
            continue
        if value[index + 1] == "{":
            end = _closing(value, index + 1)
            out.append(_parameter(value[index + 2:end], variables, unresolved))
            index = end + 1
            continue
        name = _NAME.match(value, index + 1)
        if name is None:
            out.append(char)
            index += 1
            continue
        if name.group(0) in variables:
            out.append(variables[name.group(0)])
        else:
            unresolved.append("$" + name.group(0))
            out.append("$" + name.group(0))
        index = name.end()
    return "".join(out)


def _closing(value: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(value)):
        if value[index] == "{":
            depth += 1
        elif value[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return len(value) - 1


def _parameter(inner: str, variables: dict[str, str], unresolved: list[str]) -> str:
    name = _NAME.match(inner)
    if name is None:
        unresolved.append("${" + inner + "}")
        return "${" + inner + "}"
    rest = inner[name.end():]
    known = name.group(0) in variables and (variables[name.group(0)] or not rest.startswith(":"))
    if known and not rest.startswith((":+", "+")):
        return variables[name.group(0)]
    if rest[:2] in (":-", ":=") or rest[:1] in ("-", "="):
        return expand(rest[2:] if rest[:1] == ":" else rest[1:], variables, unresolved)
    unresolved.append("${" + inner + "}")
    return "${" + inner + "}"


def _expand_words(body: str, variables: dict[str, str], arrays: dict[str, list[str]],
                  unresolved: list[str]) -> list[str]:
    words: list[str] = []
    for word in shlex.split(body, comments=True):
        whole = _ARRAY_ALL.match(word)
        if whole and whole.group(1) in arrays:
            words += arrays[whole.group(1)]
        else:
            words.append(expand(word, variables, unresolved))
    return words


def _command(statement: str, variables: dict[str, str], arrays: dict[str, list[str]]
             ) -> ShellCommand | None:
    """The statement as a llama-server command: prefixes (exec, env, VAR=value, taskset,
    numactl, nice...) then the server itself; None where it runs something else."""
    unresolved: list[str] = []
    try:
        words = _expand_words(statement, variables, arrays, unresolved)
    except ValueError:
        return None
    index = next((i for i, word in enumerate(words) if not any(c.isspace() for c in word)
                  and os.path.basename(word) in SERVER_NAMES), None)
    if index is None or any(word in NOT_COMMANDS for word in words[:1]):
        return None
    prefix = words[:index]
    env: dict[str, str] = {}
    cpu_list = None
    for position, word in enumerate(prefix):
        match = _ASSIGN.match(word)
        if match and not word.startswith("-"):
            env[match.group(1)] = match.group(2)
        elif word in ("-c", "--cpu-list") and "taskset" in prefix[:position]:
            cpu_list = prefix[position + 1] if position + 1 < len(prefix) else None
    unresolved += [word for word in words if "${" in word or "$(" in word]
    return ShellCommand(words[index], words[index + 1:], env, cpu_list, prefix,
                        list(dict.fromkeys(unresolved)))
