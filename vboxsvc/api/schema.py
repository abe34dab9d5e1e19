"""The one schema of the Main API: interfaces, attributes and methods, in xidl names.

The text in `interfaces.py` lists every interface the bus carries with VirtualBox's own
(camelCase) member names; this module parses it once and derives the Python names with
the mechanical snake_case mapping (createMachine -> create_machine, CPUCount -> cpu_count).
The server dispatcher, the client proxies and the argument checks all read this schema,
so they cannot drift apart (tests/unit/vboxsvc/test_schema.py checks the implementations).
"""

from __future__ import annotations

from .interfaces import SCHEMA_TEXT

_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGIT = frozenset("0123456789")


_SNAKE: dict[str, str] = {}


def snake(name: str) -> str:
    """VirtualBox name -> Python name (see _snake), remembered: a client converts the same few
    names again and again."""
    out = _SNAKE.get(name)
    if out is None:
        out = _snake(name)
        if len(_SNAKE) < 8192:
            _SNAKE[name] = out
    return out


def _snake(name: str) -> str:
    """VirtualBox name -> Python name: createMachine -> create_machine,
    HWVirtExProperty -> hw_virt_ex_property,
    is64Bit -> is64_bit, acceleration3DAvailable -> acceleration3d_available.

    An underscore goes before a capital that follows a lower-case letter, and before a capital that
    starts a word (a lower-case letter follows) after a capital or a digit; done by hand in one pass
    rather than with `re` (every client parses names at start-up)."""
    out = []
    last = len(name) - 1
    for i, c in enumerate(name):
        if i and c in _UPPER:
            before = name[i - 1]
            if before in _LOWER or ((before in _UPPER or before in _DIGIT) and i < last
                                    and name[i + 1] in _LOWER):
                out.append("_")
        out.append(c)
    return "".join(out).lower()


def _word(text: str) -> bool:
    """`\\w+` in ASCII (isalnum in C rather than a loop over the characters)."""
    return text.isascii() and text.replace("_", "a").isalnum()


def _type_text(text: str) -> bool:
    """`\\[?\\w+\\]?`: a word, maybe in brackets."""
    return _word(text[text.startswith("["):len(text) - text.endswith("]")] if text else "")


def _method_line(line: str) -> tuple[str, str, str | None] | None:
    """`name(params) [-> type]` -> (name, params, return type or None)."""
    name, paren, rest = line.partition("(")
    close = rest.rfind(")")
    if not paren or not _word(name) or close < 0:
        return None
    tail = rest[close + 1:].strip()
    if not tail:
        return name, rest[:close], None
    if tail.startswith("->") and _type_text(tail[2:].strip()):
        return name, rest[:close], tail[2:].strip()
    return None


def _attribute_line(line: str) -> tuple[str, str, bool] | None:
    """`name: type [rw]` -> (name, type, writable)."""
    name, colon, rest = line.partition(":")
    words = rest.split()
    if not colon or not _word(name.rstrip()) or not 1 <= len(words) <= 2:
        return None
    if len(words) == 2 and words[1] != "rw":
        return None
    if not _type_text(words[0]):
        return None
    return name.rstrip(), words[0], len(words) == 2


_ENUM_CACHE: dict = {}


def _enum(name: str):
    from . import enums  # on the first enum-typed value: a client reading only strings never builds them

    return getattr(enums, name, None)
SCALARS = {"str": str, "int": int, "bool": bool, "bytes": bytes, "float": float, "any": object}


class _Value:
    """Small immutable records (plain classes: importing dataclasses would slow every client down)."""

    __slots__ = ()

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _key(self):
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and other._key() == self._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Type(_Value):
    """A member type: a scalar, an enum, an interface (object reference), an event value, or a list of one."""

    __slots__ = ("name", "is_list")

    def __init__(self, name: str, is_list: bool = False):
        super().__init__(name, is_list)

    @property
    def is_interface(self) -> bool:
        return self.name.startswith("I") and self.name[1:2].isupper()

    @property
    def enum(self):
        try:
            return _ENUM_CACHE[self.name]
        except KeyError:
            e = _ENUM_CACHE[self.name] = _enum(self.name) if not self.is_interface else None
            return e

    def __str__(self) -> str:
        return f"[{self.name}]" if self.is_list else self.name


class Param(_Value):
    __slots__ = ("name", "xidl", "type", "has_default", "default")  # name: the Python (snake) name

    def __init__(self, name, xidl, type, has_default=False, default=None):
        super().__init__(name, xidl, type, has_default, default)


class Attribute(_Value):
    __slots__ = ("name", "xidl", "type", "readonly", "interface")


class Method(_Value):
    __slots__ = ("name", "xidl", "params", "returns", "interface")


class Interface:
    def __init__(self, name: str, doc: str = ""):
        self.name = name
        self.doc = doc
        self.attributes: dict[str, Attribute] = {}
        self.methods: dict[str, Method] = {}

    def member(self, name: str) -> Attribute | Method | None:
        return self.attributes.get(name) or self.methods.get(name)




def _type(text: str, where: str, strict: bool = True) -> Type:
    text = text.strip()
    is_list = text.startswith("[")
    name = text.strip("[]")
    t = Type(name, is_list)
    if not name.isidentifier() or (strict and name not in SCALARS and not t.is_interface and t.enum is None
                                   and name != "IEvent"):
        raise ValueError(f"schema: unknown type {text!r} in {where}")
    return t


def _params(text: str, where: str, strict: bool) -> tuple[Param, ...]:
    out = []
    for part in filter(None, (p.strip() for p in _split(text))):
        decl, eq, default = part.partition("=")
        pname, _, ptype = decl.partition(":")
        out.append(Param(snake(pname.strip()), pname.strip(), _type(ptype, where, strict), bool(eq),
                         _literal(default.strip()) if eq else None))
    return tuple(out)


def _literal(text: str):
    """A default value: the common ones without the ast module, the rest through it."""
    if text in _LITERALS:
        return _LITERALS[text]
    if text.lstrip("-").isdigit():
        return int(text)
    import ast

    return ast.literal_eval(text)


_LITERALS = {"None": None, "True": True, "False": False, '""': "", "''": "", "[]": []}


def _split(text: str) -> list[str]:
    # commas inside [..] or quotes do not separate parameters
    parts, depth, cur, quote = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts


def parse(text: str, strict: bool = True) -> dict[str, Interface]:
    """Interfaces of a schema text; `strict` resolves every enum type at once (the lazy loader
    below leaves that to first use, and tests/unit/vboxsvc/test_schema.py checks they all resolve)."""
    ifaces: dict[str, Interface] = {}
    cur: Interface | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        where = f"line {lineno}"
        if not raw.startswith(" "):
            name = line.rstrip(":").strip()
            cur = ifaces.setdefault(name, Interface(name))
            continue
        assert cur is not None, where
        member = _member(line.strip(), cur.name, where, strict)
        if member is None:
            raise ValueError(f"schema: cannot parse {where}: {raw!r}")
        (cur.methods if isinstance(member, Method) else cur.attributes)[member.name] = member
    return ifaces


def _member(line: str, iface: str, where: str, strict: bool) -> Attribute | Method | None:
    """One member line (comment stripped) of interface `iface`; None if it is neither kind."""
    if m := _method_line(line):
        xidl, params, ret_text = m
        name = snake(xidl)
        ret = _type(ret_text, where, strict) if ret_text else None
        return Method(name, xidl, _params(params, where, strict), ret, iface)
    if a := _attribute_line(line):
        xidl, type_text, writable = a
        name = snake(xidl)
        return Attribute(name, xidl, _type(type_text, where, strict), not writable, iface)
    return None


def _chunks(text: str) -> dict[str, str]:
    """Interface name -> its text, split cheaply so each interface is parsed on first use."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            cur = line.split("#", 1)[0].strip().rstrip(":")
            out[cur] = [line]
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


class LazyMapping:
    """A read-only mapping whose values are made on first use: __getitem__, __iter__ and __len__ by
    the subclass, the rest here (collections.abc.Mapping would cost a short-lived client the
    import of `collections`)."""

    __slots__ = ()

    def __contains__(self, name) -> bool:
        try:
            self[name]
        except KeyError:
            return False
        return True

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def keys(self):
        return list(self)

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]


class _Interfaces(LazyMapping):
    """The parsed schema, interface by interface on demand (client start-up stays fast)."""

    def __init__(self, text: str):
        self._text = _chunks(text)
        self._parsed: dict[str, Interface] = {}
        self._lines: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self._low: dict[str, str | None] = {}

    def member(self, iface: str, name: str, kind: type | None = None) -> Attribute | Method | None:
        """One member by its Python name (a Method before an Attribute of the same name, unless
        `kind` asks for one), parsing only its own line: a client building a proxy pays for the
        members it uses, not for the whole interface. None when the interface has no such member."""
        parsed = self._parsed.get(iface)
        if parsed is not None:
            if kind is not Attribute and name in parsed.methods:
                return parsed.methods[name]
            return parsed.attributes.get(name) if kind is not Method else None
        lines = self._lines.get(iface)
        if lines is None:
            text = self._text.get(iface)
            if text is None:
                return None
            lines = self._lines[iface] = {}
        key = name.replace("_", "")
        candidates = lines.get(key)
        if candidates is None:
            candidates = lines[key] = self._lines_named(iface, key)
        found = [m for m in (_member(line, iface, iface, False)
                             for xidl, line in candidates if snake(xidl) == name)
                 if m is not None]
        for wanted in ((Method, Attribute) if kind is None else (kind,)):
            for m in found:
                if isinstance(m, wanted):
                    return m
        return None

    def _lines_named(self, iface: str, key: str) -> list[tuple[str, str]]:
        """The member lines of `iface` whose name, without case or underscores, is `key` (what snake()
        keeps of it): found with str.find in the lower-cased text rather than by splitting every
        line of the interface (a client looks up a few of its members, not all)."""
        text = self._text[iface]
        low = self._low.get(iface)
        if low is None:
            low = self._low[iface] = text.lower() if text.isascii() else None
        if low is None:  # lower() could change lengths: split the lines instead
            found = []
            for raw in text.splitlines()[1:]:
                line = raw.split("#", 1)[0].strip()
                xidl = line.split("(", 1)[0].split(":", 1)[0].strip()
                if line and xidl.lower().replace("_", "") == key:
                    found.append((xidl, line))
            return found
        found = []
        start = 0
        while True:
            at = low.find(key, start)
            if at < 0:
                break
            start = at + 1
            begin = low.rfind("\n", 0, at) + 1
            if begin == 0 or low[begin:at].strip() or low[begin] == "#":
                continue  # not at the start of a member line (the interface's own line, a parameter)
            end = low.find("\n", at)
            line = text[begin:end if end >= 0 else len(text)].split("#", 1)[0].strip()
            xidl = line.split("(", 1)[0].split(":", 1)[0].strip()
            if xidl.lower() == key:  # VirtualBox.xidl's member names have no underscores
                found.append((xidl, line))
        return found

    def get(self, name, default=None):
        iface = self._parsed.get(name)  # the service asks this for every call: parsed ones first
        if iface is not None:
            return iface
        return super().get(name, default)

    def __getitem__(self, name: str) -> Interface:
        iface = self._parsed.get(name)
        if iface is None:
            iface = parse(self._text[name], strict=False)[name]  # KeyError for unknown names
            self._parsed[name] = iface
        return iface

    def __contains__(self, name) -> bool:
        return name in self._text  # without parsing it

    def __iter__(self):
        return iter(self._text)

    def __len__(self) -> int:
        return len(self._text)


INTERFACES: _Interfaces = _Interfaces(SCHEMA_TEXT)


def interface(name: str) -> Interface:
    try:
        return INTERFACES[name]
    except KeyError:
        raise KeyError(f"unknown interface {name!r}") from None
