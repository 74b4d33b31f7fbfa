"""Search spaces in RecBole's params-file syntax (``run_hyper.py --params_file``), plus Ray's ``grid`` and ``same``.

One dimension per line, ``KEY KIND VALUES``; blank lines and ``#`` comments are ignored::

    learning_rate   loguniform -9.2 -4.6      # exp(U(-9.2, -4.6)): 1e-4 .. 1e-2 (RecBole's meaning, see below)
    hidden_dropout_prob uniform 0.0 0.5       # U(0.0, 0.5)
    head_hidden_size choice [32, 64, 128]     # one of the values, drawn at random
    train_batch_size quniform 64 256 64       # 64, 128, 192 or 256 (integers: all three bounds are integers)
    finetune_epochs randint 5 11              # an integer 5 <= x < 11 (upper bound excluded, as Ray and hyperopt)
    mask_ratio      grid [0.1, 0.5, 0.9]      # EVERY value: one trial each (times --num_samples)
    crop_ratio      same mask_ratio           # the value another key got in this trial

Bounds may be separated by commas (RecBole writes ``loguniform -8,0``) or spaces. Lists are Python literals
(``[64, 96]``, ``['[64,64]', '[128]']`` as RecBole writes them) or YAML flow lists with bare words
(``[[mlm, ssr], [mlm, cl4srec]]``, ``[none, 1e-8]``).

What each kind means, and how it maps to Ray Tune:

* ``choice [v, ...]``      ``tune.choice``: one value drawn uniformly per trial (hyperopt's ``hp.choice``).
* ``grid [v, ...]``        ``tune.grid_search``: every value; ``num_samples`` repeats the whole grid.
* ``uniform a b``          ``tune.uniform(a, b)``.
* ``loguniform a b``       RecBole's meaning, which is hyperopt's: ``exp(uniform(a, b))``, i.e. the BOUNDS ARE
                           NATURAL LOGARITHMS (``loguniform -8 0`` draws from e^-8 = 3.4e-4 .. 1). RecBole's own
                           Ray route does the same (``tune.loguniform(exp(a), exp(b))``); so do we. Bounds that look
                           like values (``loguniform 0.0001 0.01``) draw from 1.0001 .. 1.01: a warning says so.
* ``quniform a b q``       hyperopt/Ray: ``round(uniform(a, b) / q) * q``; when a, b and q are all integers the
                           values are integers (``tune.qrandint``), so sizes (``hidden_size quniform 32 128 32``)
                           are ints, not RecBole's floats (64.0).
* ``randint a b``          ``tune.randint(a, b)``: an integer with a <= x < b (RecBole's file parser has none).
* ``same other``           not a draw: this key takes the value ``other`` got (``tune.sample_from``), e.g. one
                           augmentation proportion for mask, crop and reorder.

Every error names the file and the line: ``space.hyper:3: loguniform needs 2 bounds (a b), got '1e-4'``.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass

KINDS = ("choice", "grid", "uniform", "loguniform", "quniform", "randint", "same")
_BOUNDS = {"uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@-]*$")


class SpaceError(ValueError):
    """A line of a search-space file that cannot be used; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``name``, ``kind`` (one of :data:`KINDS`), its parsed ``args`` and where it was written."""

    name: str
    kind: str
    args: tuple
    source: str = "<string>"
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def values(self) -> list | None:
        """The finite list of values (choice, grid, randint), or None for continuous dimensions and ``same``."""
        if self.kind in ("choice", "grid"):
            return list(self.args[0])
        if self.kind == "randint":
            return list(range(self.args[0], self.args[1]))
        if self.kind == "quniform" and all(float(v).is_integer() for v in self.args):
            low, high, q = (int(v) for v in self.args)
            return list(range(_qround(low, q), _qround(high, q) + 1, q))
        return None

    def upper(self) -> float | None:
        """The largest value this dimension can take (None for non-numeric or ``same``)."""
        values = self.values()
        if values is not None:
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            return max(numbers) if numbers else None
        if self.kind == "loguniform":
            return math.exp(self.args[1])
        if self.kind in ("uniform", "quniform"):
            return self.args[1]
        return None

    def describe(self) -> str:
        if self.kind in ("choice", "grid"):
            return f"{self.kind} {list(self.args[0])}"
        if self.kind == "loguniform":
            a, b = self.args
            return f"loguniform {a:g} {b:g} (values exp(a) .. exp(b) = {math.exp(a):.3g} .. {math.exp(b):.3g})"
        return f"{self.kind} " + " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.args)


def _qround(value: int, q: int) -> int:
    return int(round(value / q) * q)


def _strip_comment(text: str) -> str:
    """``text`` without a ``#`` comment; a ``#`` inside quotes is kept."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return text[:i]
    return text


def _numbers_in(value):
    """Strings that read as numbers become numbers (YAML 1.1 reads ``1e-8`` as a string)."""
    if isinstance(value, list):
        return [_numbers_in(v) for v in value]
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _literal_list(text: str, where: str, kind: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        import yaml

        try:
            value = _numbers_in(yaml.safe_load(text))
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            raise SpaceError(f"{where}: {kind} needs a list such as [1, 2] or [a, b], got {text!r} "
                             f"({problem})") from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise SpaceError(f"{where}: {kind} needs a list such as [1, 2] or [a, b], got {text!r}")
    if not value:
        raise SpaceError(f"{where}: {kind} needs at least one value, got an empty list")
    return value


def _bounds(text: str, count: int, where: str, kind: str) -> tuple:
    pieces = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    names = {"uniform": "a b", "loguniform": "a b", "quniform": "a b q", "randint": "a b"}[kind]
    if len(pieces) != count:
        raise SpaceError(f"{where}: {kind} needs {count} bounds ({names}), got {text.strip()!r}")
    numbers = []
    for piece in pieces:
        try:
            number = float(piece)
        except ValueError:
            raise SpaceError(f"{where}: {kind} bound {piece!r} is not a number") from None
        if not math.isfinite(number):
            raise SpaceError(f"{where}: {kind} bound {piece!r} is not finite")
        numbers.append(number)
    if kind == "randint":
        if not all(n.is_integer() for n in numbers):
            raise SpaceError(f"{where}: randint needs integer bounds, got {text.strip()!r}")
        numbers = [int(n) for n in numbers]
    low, high = numbers[0], numbers[1]
    if not low < high:
        raise SpaceError(f"{where}: {kind} needs a < b, got a={pieces[0]} b={pieces[1]}")
    if kind == "quniform" and not numbers[2] > 0:
        raise SpaceError(f"{where}: quniform needs q > 0, got q={pieces[2]}")
    if kind == "loguniform" and 0 < low and high <= 1:
        warnings.warn(
            f"{where}: loguniform {pieces[0]} {pieces[1]} draws exp(U(a, b)) = {math.exp(low):.4g} .. "
            f"{math.exp(high):.4g} (RecBole's bounds are natural logarithms); for values "
            f"{low:g} .. {high:g} write: loguniform {math.log(low):.4g} {math.log(high):.4g}",
            stacklevel=3,
        )
    return tuple(numbers)


def parse_line(text: str, source: str = "<string>", line: int = 0) -> Dimension | None:
    """One line -> a :class:`Dimension`, or None for a blank or comment line."""
    body = _strip_comment(text).strip()
    if not body:
        return None
    where = f"{source}:{line}"
    match = re.match(r"^(\S+)\s+(\S+)(?:\s+(.*))?$", body)
    if not match:
        raise SpaceError(f"{where}: expected 'KEY KIND VALUES' (e.g. 'learning_rate choice [0.001, 0.01]'), "
                         f"got {body!r}")
    name, kind, rest = match.group(1), match.group(2), (match.group(3) or "").strip()
    if not _KEY.match(name):
        raise SpaceError(f"{where}: {name!r} is not a setting name")
    if kind not in KINDS:
        raise SpaceError(f"{where}: unknown kind {kind!r} for {name}; use one of {', '.join(KINDS)}")
    if not rest:
        raise SpaceError(f"{where}: {name} {kind} has no values")
    if kind in ("choice", "grid"):
        args = (tuple(_literal_list(rest, where, kind)),)
    elif kind == "same":
        if not _KEY.match(rest):
            raise SpaceError(f"{where}: same needs the name of another key of this space, got {rest!r}")
        if rest == name:
            raise SpaceError(f"{where}: {name} cannot be the same as itself")
        args = (rest,)
    else:
        args = _bounds(rest, _BOUNDS[kind], where, kind)
    return Dimension(name, kind, args, source, line)


def parse_space(text: str, source: str = "<string>") -> list:
    """Every dimension of a search-space text, checked as a whole (no key twice, every ``same`` resolvable)."""
    dims = []
    for number, raw in enumerate(text.splitlines(), start=1):
        dim = parse_line(raw, source, number)
        if dim is not None:
            dims.append(dim)
    return check_space(dims)


def read_space(path) -> list:
    """Parse the search-space file ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise SpaceError(f"{path}: cannot read the search space file ({error.strerror})") from None
    return parse_space(text, str(path))


def merge_space(dims: list, extra: list) -> list:
    """``dims`` with each dimension of ``extra`` replacing the one of the same name (or appended)."""
    out = {d.name: d for d in dims}
    for d in extra:
        out[d.name] = d
    return check_space(list(out.values()), allow_replaced=True)


def check_space(dims: list, allow_replaced: bool = False) -> list:
    seen = {}
    for d in dims:
        if d.name in seen and not allow_replaced:
            raise SpaceError(f"{d.where}: {d.name} is already searched at {seen[d.name].where}")
        seen[d.name] = d
    if not dims:
        raise SpaceError("the search space is empty: write at least one line 'KEY KIND VALUES'")
    for d in dims:
        if d.kind != "same":
            continue
        target, chain = d.args[0], [d.name]
        while True:
            if target not in seen:
                raise SpaceError(f"{d.where}: {d.name} same {d.args[0]}: {target} is not a key of this space")
            if target in chain:
                raise SpaceError(f"{d.where}: same-as cycle: {' -> '.join(chain + [target])}")
            if seen[target].kind != "same":
                break
            chain.append(target)
            target = seen[target].args[0]
    return dims


def grid_size(dims: list) -> int:
    """Trials one sample of the space makes (the product of the grid dimensions' lengths)."""
    size = 1
    for d in dims:
        if d.kind == "grid":
            size *= len(d.args[0])
    return size


def upper_bound(dims: list, key: str):
    """The largest value ``key`` can take in this space, or None if it is not searched (or not numeric)."""
    for d in dims:
        if d.name == key:
            return d.upper()
    return None


class SameAs:
    """``tune.sample_from`` function: the value ``name`` got in this trial (a class, so experiment state pickles)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, spec):
        return spec.config[self.name]

    def __repr__(self):
        return f"same as {self.name}"


def same_roots(dims: list) -> dict:
    """``{key: the drawn key whose value it takes}`` for every ``same`` line, chains followed (check_space rejected
    cycles)."""
    by_name = {d.name: d for d in dims}
    roots = {}
    for d in dims:
        root = d.name
        while by_name[root].kind == "same":
            root = by_name[root].args[0]
        if root != d.name:
            roots[d.name] = root
    return roots


def to_param_space(dims: list) -> dict:
    """Ray Tune's ``param_space`` for these dimensions (see the module docstring for each kind)."""
    from ray import tune

    roots = same_roots(dims)
    space = {}
    for d in dims:
        a = d.args
        if d.kind == "choice":
            space[d.name] = tune.choice(list(a[0]))
        elif d.kind == "grid":
            space[d.name] = tune.grid_search(list(a[0]))
        elif d.kind == "uniform":
            space[d.name] = tune.uniform(a[0], a[1])
        elif d.kind == "loguniform":
            space[d.name] = tune.loguniform(math.exp(a[0]), math.exp(a[1]))
        elif d.kind == "quniform":
            if all(float(v).is_integer() for v in a):
                space[d.name] = tune.qrandint(int(a[0]), int(a[1]), int(a[2]))
            else:
                space[d.name] = tune.quniform(a[0], a[1], a[2])
        elif d.kind == "randint":
            space[d.name] = tune.randint(a[0], a[1])
        elif d.kind == "same":
            space[d.name] = tune.sample_from(SameAs(roots[d.name]))
    return space


def space_text(dims: list) -> str:
    """A readable listing of the space (for logs and the study summary)."""
    width = max(len(d.name) for d in dims)
    return "\n".join(f"{d.name:<{width}}  {d.describe()}" for d in dims)
