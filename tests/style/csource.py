"""csource.py - the little C reading the style tests share: the C files of lib/ and
services/ (tests/ excluded), their text with comments and literals blanked, and their
function definitions (name, first and last line)."""
import os
import pathlib
import re

ROOT = pathlib.Path(os.environ.get("POLYSHOP_SOURCE_DIR",
                                   pathlib.Path(__file__).resolve().parents[2]))
SCANNED = ("lib", "services")


def sources():
    """Every .c and .h under lib/ and services/, outside tests/ folders, sorted."""
    out = []
    for top in SCANNED:
        for p in (ROOT / top).rglob("*"):
            if p.suffix in (".c", ".h") and "tests" not in p.relative_to(ROOT).parts:
                out.append(p)
    return sorted(out)


def blank(text):
    """The text with comments, string and character literals replaced by spaces (newlines
    kept), so that what remains is code and line numbers stay true."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _name_before(code, brace):
    """The function name when the '{' at index brace opens a function body, else None."""
    j = brace - 1
    while j >= 0 and code[j].isspace():
        j -= 1
    if j < 0 or code[j] != ")":
        return None
    depth = 0
    while j >= 0:
        if code[j] == ")":
            depth += 1
        elif code[j] == "(":
            depth -= 1
            if depth == 0:
                break
        j -= 1
    m = re.search(r"([A-Za-z_]\w*)\s*$", code[:j])
    if not m or m.group(1) in ("if", "for", "while", "switch", "return", "sizeof"):
        return None
    return m.group(1), m.start(1)


def functions(code):
    """[(name, first_line, last_line, body_start_index, body_end_index)] of the function
    definitions in blanked code; lines count from 1, the first is the line of the name."""
    found = []
    depth = 0
    current = None
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                hit = _name_before(code, i)
                current = (hit[0], code.count("\n", 0, hit[1]) + 1, i) if hit else None
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and current:
                name, first, start = current
                found.append((name, first, code.count("\n", 0, i) + 1, start, i))
                current = None
    return found


def rel(path):
    return path.relative_to(ROOT).as_posix()


def read_allow_list(path, nkeys):
    """Entries of an allow-list file: lines of nkeys whitespace-separated fields then a
    reason after '#'. Blank lines and lines starting with '#' are comments. Returns
    {tuple(keys): reason}; a line without a reason raises ValueError."""
    entries = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        keys, _, reason = s.partition("#")
        fields = keys.split()
        if len(fields) != nkeys or not reason.strip():
            raise ValueError(f"{path.name}:{lineno}: want {nkeys} fields and '# reason': {line!r}")
        entries[tuple(fields)] = reason.strip()
    return entries
