"""pipelines/Jenkinsfile read as Jenkins reads it: a tree of statements, and the rules of the
declarative syntax checked on that tree.

The tree is the one tools/jenkinsfile-check/jenkinsfile_tree.groovy prints from Groovy's own AST
(tests compare the two where `groovy` is installed), so the structure tests and the command
tests also run where it is not:
    call:   {"call": NAME, "line": N, "strings": [string arguments], "body": [...] | None | "opaque"}
    assign: {"assign": NAME, "line": N, "function": NAME | None, "strings": [...]}
        (`X = credentials('id')`: function "credentials", strings ["id"]; `X = 'v'`: None, ["v"])
    other:  {"other": "statement", "line": N}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Node = dict[str, Any]

# Sections and directives as the Declarative Pipeline syntax reference lists them.
PIPELINE_SECTIONS = {"agent", "stages", "options", "triggers", "parameters", "environment",
                     "post", "tools", "libraries"}  # fmt: skip
STAGE_SECTIONS = {"agent", "environment", "options", "when", "input", "post", "tools", "failFast"}
STAGE_BODIES = {"steps", "stages", "parallel", "matrix"}
POST_CONDITIONS = {"always", "changed", "fixed", "regression", "aborted", "failure", "success",
                   "unstable", "unsuccessful", "cleanup"}  # fmt: skip
AGENT_TYPES = {"any", "none", "label", "node", "docker", "dockerfile", "kubernetes"}
# Sections whose body is a list of plain calls (no nested blocks, no statements).
LEAF_SECTIONS = {"options", "triggers", "parameters", "tools"}

_TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?\*/)
      |(?P<string>'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
      |(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
      |(?P<number>[0-9][0-9_.]*[A-Za-z]?)
      |(?P<newline>\n)
      |(?P<space>[ \t\r]+)
      |(?P<op>->|==|!=|<=|>=|<<|\+\+|--|&&|\|\||.)""",
    re.DOTALL | re.VERBOSE,
)
# Statements that are Groovy, not calls: `def x = 1`, `if (...) {}`, `return x`, ...
_KEYWORDS = {"def", "if", "else", "for", "while", "do", "switch", "try", "catch", "finally",
             "return", "throw", "break", "continue", "final", "new", "assert", "import"}  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "$": "$"}


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, gstring, number, op, newline
    text: str
    line: int


def tokens(source: str) -> list[Token]:
    found: list[Token] = []
    line = 1
    for match in _TOKEN.finditer(source):
        kind, text = match.lastgroup or "op", match.group()
        if kind == "string":
            found.append(_string(text, line))
        elif kind not in ("comment", "space"):
            found.append(Token(kind, text, line))
        line += text.count("\n")
    return found


def _string(text: str, line: int) -> Token:
    quote = 3 if text[:3] in ("'''", '"""') else 1
    body = text[quote:-quote]
    # A double-quoted string with `$` is a GString: Groovy's AST holds no constant for it.
    if text[0] == '"' and re.search(r"(?<!\\)\$", body):
        return Token("gstring", "<gstring>", line)
    value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)
    return Token("string", value, line)


class JenkinsfileSyntaxError(ValueError):
    pass


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokens(source)
        self.at = 0

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise JenkinsfileSyntaxError("unexpected end of file (an unclosed block?)")
        self.at += 1
        return token

    def looking_at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def skip_newlines(self) -> None:
        while (token := self.peek()) is not None and (token.kind == "newline" or token.text == ";"):
            self.at += 1

    def block(self, closing: bool) -> list[Node]:
        """Statements up to the `}` closing this block (or the end of the file)."""
        nodes: list[Node] = []
        while True:
            self.skip_newlines()
            token = self.peek()
            if token is None:
                if closing:
                    raise JenkinsfileSyntaxError("unexpected end of file: a `{` is never closed")
                return nodes
            if token.text == "}":
                if not closing:
                    raise JenkinsfileSyntaxError(f"line {token.line}: `}}` closes no block")
                self.at += 1
                return nodes
            nodes.append(self.statement())

    def statement(self) -> Node:
        first, second, third = self.peek(), self.peek(1), self.peek(2)
        assert first is not None
        typed = bool(second and second.kind == "name" and third and third.text == "=")  # `int x =`
        if first.kind == "name" and first.text not in _KEYWORDS and second and not typed:
            if second.text == "=":
                self.at += 2
                return {"assign": first.text, "line": first.line, **self.assigned()}
            if second.text == "(" or second.text == "{" or _starts_argument(second):
                return self.call()
        self.rest_of_statement()
        return {"other": "statement", "line": first.line}

    def call(self) -> Node:
        name = self.next()
        found: list[str] = []
        if self.looking_at("("):
            self.next()
            found += self.until(")")
        elif not self.looking_at("{"):
            found += self.command_arguments()
        body: list[Node] | str | None = None
        if self.looking_at("{"):
            self.next()
            if name.text == "script":
                self.skip_block()
                body = "opaque"
            else:
                body = self.block(closing=True)
        return {"call": name.text, "line": name.line, "strings": found, "body": body}

    def until(self, closing: str) -> list[str]:
        """The string arguments up to the bracket closing this one (nesting followed)."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        found: list[str] = []
        while (token := self.next()).text != closing:
            if token.kind in ("string", "gstring"):
                found.append(token.text)
            elif token.text in pairs:
                found += self.until(pairs[token.text])
        return found

    def command_arguments(self) -> list[str]:
        """`sh 'x'`, `junit a: 1, b: 'c'`: arguments up to the end of the line."""
        found: list[str] = []
        while (token := self.peek()) is not None:
            if token.kind == "newline" or token.text in ("}", ";"):
                return found
            self.at += 1
            if token.kind in ("string", "gstring"):
                found.append(token.text)
            elif token.text in ("(", "["):
                found += self.until(")" if token.text == "(" else "]")
        return found

    def assigned(self) -> dict[str, Any]:
        """The right-hand side of `NAME = ...`: a call's name and string arguments, or one
        string; anything else is neither (Groovy's tree says the same)."""
        start = self.at
        self.rest_of_statement()
        right = self.tokens[start : self.at]
        if len(right) == 1 and right[0].kind in ("string", "gstring"):
            return {"function": None, "strings": [right[0].text]}
        if (
            len(right) >= 3
            and right[0].kind == "name"
            and right[1].text == "("
            and right[-1].text == ")"
        ):
            self.at, end = start + 2, self.at
            found = self.until(")")
            if self.at == end:  # the `)` closing the call ends the statement
                return {"function": right[0].text, "strings": found}
            self.at = end
        return {"function": None, "strings": []}

    def skip_block(self) -> None:
        depth = 1
        while depth:
            text = self.next().text
            depth += {"{": 1, "}": -1}.get(text, 0)

    def rest_of_statement(self) -> None:
        """Any other statement: up to a newline outside brackets, blocks included."""
        depth = 0
        while (token := self.peek()) is not None:
            if depth == 0 and (token.kind == "newline" or token.text in ";}"):
                return
            self.at += 1
            depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(token.text, 0)


def _starts_argument(token: Token) -> bool:
    return token.kind in ("string", "gstring", "number") or (
        token.kind == "name" and token.text not in ("in", "instanceof", "as")
    )


def parse(source: str) -> list[Node]:
    return _Parser(source).block(closing=False)


# ---- the declarative rules ------------------------------------------------------------------


def calls(nodes: Any, name: str | None = None) -> list[Node]:
    if not isinstance(nodes, list):
        return []
    return [n for n in nodes if "call" in n and (name is None or n["call"] == name)]


def assignments(nodes: Any) -> list[Node]:
    """Every `NAME = value` in the tree (environment blocks), depth first."""
    if not isinstance(nodes, list):
        return []
    found: list[Node] = []
    for node in nodes:
        if "assign" in node:
            found.append(node)
        elif "call" in node:
            found += assignments(node["body"])
    return found


def walk(nodes: Any) -> list[Node]:
    """Every call in the tree, depth first, `script` bodies excluded."""
    found: list[Node] = []
    for node in calls(nodes):
        found.append(node)
        found += walk(node["body"])
    return found


def declarative_problems(tree: list[Node]) -> list[str]:
    """What Jenkins' Declarative validator would refuse, one line each (`line N: ...`)."""
    problems: list[str] = []
    pipelines = calls(tree, "pipeline")
    outside = [n for n in tree if n not in pipelines]
    problems += [f"line {n['line']}: only one `pipeline {{}}` block belongs here" for n in outside]
    if len(pipelines) != 1:
        return [*problems, f"expected exactly one `pipeline` block, found {len(pipelines)}"]
    pipeline = pipelines[0]
    body = pipeline["body"]
    if not isinstance(body, list):
        return [*problems, f"line {pipeline['line']}: `pipeline` needs a {{ }} block"]
    problems += _sections(body, PIPELINE_SECTIONS, "pipeline", pipeline["line"])
    for required in ("agent", "stages"):
        if not calls(body, required):
            problems.append(f"line {pipeline['line']}: `pipeline` has no `{required}` section")
    for section in calls(body):
        problems += _section(section)
    return problems


def _sections(body: list[Node], allowed: set[str], where: str, line: int) -> list[str]:
    problems = []
    names = [n.get("call") for n in body]
    for node in body:
        if node.get("call") not in allowed:
            what = node.get("call") or node.get("assign") or node.get("other")
            problems.append(f"line {node['line']}: `{what}` is not allowed directly in `{where}`")
    for name in sorted({n for n in names if n and names.count(n) > 1}):
        problems.append(f"line {line}: `{where}` has more than one `{name}`")
    return problems


def _section(node: Node) -> list[str]:
    name, line, body = node["call"], node["line"], node["body"]
    if name == "agent":
        if body is None:
            return []  # `agent any` / `agent none`
        kinds = calls(body)
        if len(kinds) != 1 or kinds[0]["call"] not in AGENT_TYPES:
            return [f"line {line}: `agent` needs exactly one of {sorted(AGENT_TYPES)}"]
        return []
    if not isinstance(body, list):
        return [f"line {line}: `{name}` needs a {{ }} block"]
    if name == "stages":
        return _stages(body, line)
    if name == "post":
        return _post(body, line)
    if name == "environment":
        return [f"line {n['line']}: `environment` holds only NAME = value lines"
                for n in body if "assign" not in n]  # fmt: skip
    if name in LEAF_SECTIONS:
        return [f"line {n['line']}: `{name}` holds only directive calls" for n in body
                if "call" not in n or n["body"] is not None]  # fmt: skip
    return []


def _stages(body: list[Node], line: int) -> list[str]:
    problems = []
    if not body:
        problems.append(f"line {line}: `stages` has no stage")
    names: list[str] = []
    for node in body:
        if node.get("call") != "stage":
            problems.append(f"line {node['line']}: `stages` holds only `stage('name') {{ }}`")
            continue
        problems += _stage(node)
        names += node["strings"][:1]
    problems += [f"line {line}: stage {n!r} is declared twice" for n in sorted(set(names))
                 if names.count(n) > 1]  # fmt: skip
    return problems


def _stage(node: Node) -> list[str]:
    line, body = node["line"], node["body"]
    if len(node["strings"]) != 1 or not isinstance(body, list):
        return [f"line {line}: a stage is `stage('name') {{ ... }}`"]
    name = node["strings"][0]
    problems = _sections(body, STAGE_SECTIONS | STAGE_BODIES, f"stage {name!r}", line)
    kinds = [n["call"] for n in calls(body) if n["call"] in STAGE_BODIES]
    if len(kinds) != 1:
        problems.append(f"line {line}: stage {name!r} needs exactly one of steps, stages, "
                        f"parallel or matrix (has {kinds or 'none'})")  # fmt: skip
    for section in calls(body):
        kind, inner = section["call"], section["body"]
        if kind == "steps":
            problems += _steps(inner, section["line"], f"stage {name!r}")
        elif kind in ("stages", "parallel") and isinstance(inner, list):
            problems += _stages(inner, section["line"])
        elif kind in ("stages", "parallel"):
            problems.append(f"line {section['line']}: `{kind}` needs a {{ }} block")
        elif kind in ("post", "environment", "options", "tools", "agent"):
            problems += _section(section)
    return problems


def _post(body: list[Node], line: int) -> list[str]:
    problems = _sections(body, POST_CONDITIONS, "post", line)
    for condition in calls(body):
        problems += _steps(condition["body"], condition["line"], f"post {condition['call']}")
    return problems


def _steps(body: Any, line: int, where: str) -> list[str]:
    """A list of steps: calls only (plain Groovy belongs in `script {}`), blocks nested."""
    if not isinstance(body, list):
        return [f"line {line}: `{where}` needs a {{ }} block of steps"]
    if not body:
        return [f"line {line}: `{where}` has no step"]
    problems = []
    for node in body:
        if "call" not in node:
            problems.append(f"line {node['line']}: plain Groovy in the steps of {where}: "
                            "wrap it in `script { }`")  # fmt: skip
        elif isinstance(node["body"], list):
            problems += _steps(node["body"], node["line"], where)
    return problems


def misplaced_scripts(tree: list[Node]) -> list[str]:
    """`script {}` outside the steps of a stage or a post condition."""
    problems: list[str] = []

    def visit(nodes: Any, in_steps: bool) -> None:
        for node in calls(nodes):
            if node["call"] == "script" and not in_steps:
                problems.append(f"line {node['line']}: `script` outside `steps`")
            inside = in_steps or node["call"] == "steps" or node["call"] in POST_CONDITIONS
            visit(node["body"], inside)

    visit(tree, False)
    return problems


def stages(tree: list[Node]) -> list[Node]:
    """The top-level stages in order."""
    [pipeline] = calls(tree, "pipeline")
    [section] = calls(pipeline["body"], "stages")
    return calls(section["body"], "stage")


def declared_parameters(tree: list[Node]) -> list[str]:
    """The names of the build parameters the pipeline's `parameters {}` declares, in order
    (a `string(name: ...)` elsewhere, such as a `build` step's, declares nothing)."""
    [pipeline] = calls(tree, "pipeline")
    return [node["strings"][0] for section in calls(pipeline["body"], "parameters")
            for node in calls(section["body"])]  # fmt: skip


def environment(block: Node) -> dict[str, Node]:
    """NAME -> its assignment, of the `environment {}` directly in a pipeline or stage."""
    return {
        node["assign"]: node
        for section in calls(block["body"], "environment")
        for node in assignments(section["body"])
    }


def shell_commands(node: Node) -> list[str]:
    """The `sh` scripts a block runs, nested blocks included, `script {}` excluded."""
    return [c["strings"][0] for c in walk(node["body"]) if c["call"] == "sh" and c["strings"]]


def post_commands(stage: Node, condition: str) -> list[str]:
    return [
        command
        for post in calls(stage["body"], "post")
        for when in calls(post["body"], condition)
        for command in shell_commands(when)
    ]


def steps_commands(stage: Node) -> list[str]:
    return [command for steps in calls(stage["body"], "steps") for command in shell_commands(steps)]


def script_source(source: str, stage: str) -> str:
    """The Groovy inside the `script { }` of a stage's steps, as written."""
    start = source.index(f"stage('{stage}')")
    opened = re.compile(r"\bscript\s*\{").search(source, start)
    assert opened is not None, f"stage {stage!r} has no script block"
    depth = 1
    for match in _TOKEN.finditer(source, opened.end()):  # strings and comments are skipped whole
        depth += {"{": 1, "}": -1}.get(match.group(), 0)
        if depth == 0:
            return source[opened.end() : match.start()]
    raise JenkinsfileSyntaxError(f"the script block of stage {stage!r} is never closed")
