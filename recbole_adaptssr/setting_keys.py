"""Settings are exact: every key a user sets is one that this package or RecBole reads, each value has the shape
its key declares, keys that contradict each other are refused, and a command-line value is read as a literal,
never evaluated.

**Known keys** (:func:`unknown_keys`): the keys of every YAML of defaults (RecBole's ``overall.yaml``, its data set
and quick-start YAMLs and the YAML of every RecBole model; ours under ``properties/``, every pretext task, backbone
and task kind included), the keys RecBole's source reads (``config["..."]``: ``nproc``, ``world_size``, ``ip``,
``port``, ``offset``, ``local_rank``, ...), the entry points' own flags (``config_files``, ``model``, ``dataset``),
the keys of the YAMLs this Config loaded (a pretext task of your own brings its ``config_file``), and these forms:

* ``<stage>_<key>``: a pretext task's name (built-in, or in ``pretrain_stages``) before any known key
  (``mlm_learning_rate``, ``ssr_epochs``) or before a key the trainer reads per stage (``min_epochs``);
* ``<kind>_<key>``: a task kind before a known key or before a key of another kind (``binary_topk``);
* ``<backbone>_<key>``: a user model's prefix (``sasrec``, ``gru4rec``, ...) before a known key
  (``sasrec_n_layers``);
* ``finetune_<key>``, ``baseline_<key>``, ``baseline_pretrain_<key>``: before any known key.

An unknown key is an error naming where it was set (the file, the command line or ``config_dict``) with the
nearest known keys (``ssr_lamda_mode``: did you mean ssr_lambda_mode?).

**Declared types** (:func:`declared_types`): the ``# (type)`` comment of a key's line in a YAML of defaults (RecBole
and this package write one for nearly every key: ``(str)``, ``(list or int or None)``, ``(str|bool)``), else the
type of the default value; ``<prefix>_<key>`` has the type of ``<key>``.

**Command-line values** (:func:`parse_value`) are literals read by the declared type: a ``str`` key keeps the text
(``--data_path=2024`` is the folder ``2024``), a list key reads ``[a, b]`` (Python literal or YAML flow list with
bare words: ``--downstream_tasks=[bin]`` is ``['bin']``), numbers and ``True``/``False`` are numbers and booleans,
``None``/``null``/``~`` is ``None``; nothing is ever evaluated (RecBole's ``Config`` calls ``eval`` on them).

**Shapes** (:func:`shape_errors`): a mapping where a list or a scalar is declared, a list where a scalar or a
mapping is declared, or a scalar where only a mapping is declared, is an error naming the key and where it was set.

**Conflicts** (:data:`CONFLICTS`): two keys of which only one can apply are an error when both are set.
"""

from __future__ import annotations

import ast
import difflib
import functools
import glob
import os
import re

from recbole_adaptssr.setting_errors import SettingError

#: the entry points' own flags, which RecBole's Config also reads from the command line (and their types)
ENTRY_POINT_FLAGS = {"config_files": "str", "model": "str", "dataset": "str", "nproc": "int", "world_size": "int",
                     "ip": "str", "port": "str", "group_offset": "int", "offset": "int"}
#: prefixes of role keys: finetune_<key> (downstream runs), baseline_<key>, baseline_pretrain_<key> (RecBole baselines)
ROLE_PREFIXES = ("finetune", "baseline", "baseline_pretrain")
#: keys the trainer reads per stage (``<stage>_<key>``) that have no general default
TRAINER_STAGE_KEYS = ("min_epochs",)
#: (key, key, why): set together, one would be silently ignored
CONFLICTS = (
    ("downstream_task", "downstream_tasks", "downstream_task runs a model on ONE task, downstream_tasks selects the "
                                            "pipeline's tasks: set one of them"),
    ("pretrain_methods", "recbole_baselines", "the comparison of pre-training methods and RecBole's baselines are two "
                                              "commands: run them one after the other"),
)
_NULLS = ("None", "null", "~")
_TYPE_WORDS = {"str": "str", "string": "str", "int": "int", "integer": "int", "float": "float", "bool": "bool",
               "list": "list", "dict": "dict", "none": "none"}
_COMMENT_TYPE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:.*?#\s*\(([^)]*)\)")


# ------------------------------------------------------------------------------------------------- the YAMLs
def _recbole_root() -> str:
    import recbole

    return os.path.dirname(os.path.abspath(recbole.__file__))


@functools.lru_cache(maxsize=1)
def defaults_files() -> tuple:
    """Every YAML of defaults: RecBole's (settings only: not its download URL tables) and ours (not the methods
    table, whose keys are method names)."""
    from recbole_adaptssr.plugins import PROPERTIES_DIR

    recbole = sorted(glob.glob(os.path.join(_recbole_root(), "properties", "**", "*.yaml"), recursive=True))
    ours = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True))
    skip = {"url.yaml", "kg_url.yaml", "methods.yaml"}
    return tuple(p for p in recbole + ours if os.path.basename(p) not in skip)


def _load_yaml(path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    return loaded if isinstance(loaded, dict) else {}


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    """``{key: [default values]}`` over every YAML of defaults."""
    values = {}
    for path in defaults_files():
        for key, value in _load_yaml(path).items():
            values.setdefault(str(key), []).append(value)
    return values


def default_value(key: str):
    """The default of ``key`` in the YAMLs of defaults (ours after RecBole's: the last one), for code that reads a
    setting without a Config (a study's summary); ``KeyError`` when no YAML has it."""
    return _defaults()[key][-1]


@functools.lru_cache(maxsize=1)
def _recbole_source_keys() -> frozenset:
    """Keys RecBole's code reads (``config["key"]``, ``config.get("key")``, ``final_config_dict["key"]`` or
    ``.get("key")``)."""
    keys = set()
    pattern = re.compile(r'(?:config\[|config\.get\(|config_dict\[|config_dict\.get\()\s*["\'](\w+)["\']')
    for path in glob.glob(os.path.join(_recbole_root(), "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            keys.update(pattern.findall(f.read()))
    return frozenset(keys)


@functools.lru_cache(maxsize=1)
def base_keys() -> frozenset:
    """Every key known without a prefix rule (see the module docstring)."""
    return frozenset(_defaults()) | _recbole_source_keys() | frozenset(ENTRY_POINT_FLAGS)


def _types_of(value) -> frozenset:
    if isinstance(value, bool):
        return frozenset({"bool"})
    if isinstance(value, (int, float)):
        return frozenset({"int", "float"})
    if isinstance(value, str):
        return frozenset({"str"})
    if isinstance(value, (list, tuple)):
        return frozenset({"list"})
    if isinstance(value, dict):
        return frozenset({"dict"})
    return frozenset()


@functools.lru_cache(maxsize=1)
def declared_types() -> dict:
    """``{key: frozenset of type words}`` (str, int, float, bool, list, dict, none); see the module docstring."""
    commented = {}
    for path in defaults_files():
        with open(path, encoding="utf-8") as f:
            for line in f:
                match = _COMMENT_TYPE.match(line)
                if match:
                    found = re.split(r"[^A-Za-z]+", match.group(2).lower())
                    words = {_TYPE_WORDS[w] for w in found if w in _TYPE_WORDS}
                    if words:
                        commented[match.group(1)] = commented.get(match.group(1), frozenset()) | frozenset(words)
    types = {}
    for key, values in _defaults().items():
        found = frozenset().union(*(_types_of(v) for v in values))
        types[key] = commented.get(key) or found
    for key, kind in ENTRY_POINT_FLAGS.items():
        types.setdefault(key, frozenset({kind}))
    return types


# ------------------------------------------------------------------------------------------------- known keys
@functools.lru_cache(maxsize=1)
def _builtin_names() -> tuple:
    """(pretext tasks and backbone prefixes, task kinds) shipped in this package."""
    from recbole_adaptssr.downstream.base import builtin_task_kinds
    from recbole_adaptssr.encoder.base import builtin_user_models, get_user_model
    from recbole_adaptssr.pretext.base import builtin_pretext_tasks

    backbones = [get_user_model(name).prefix() for name in builtin_user_models()]
    return tuple(builtin_pretext_tasks()) + tuple(backbones), tuple(builtin_task_kinds())


@functools.lru_cache(maxsize=1)
def _kind_keys() -> frozenset:
    """The ``<key>`` of every ``<kind>_<key>`` our task kinds' YAMLs define (a kind's view reads any of them)."""
    _, kinds = _builtin_names()
    return frozenset(key[len(kind) + 1:] for key in _defaults() for kind in kinds if key.startswith(kind + "_"))


def base_of(key: str, prefixes=()) -> str | None:
    """The known key that ``key`` applies through a prefix rule (``mlm_learning_rate`` -> ``learning_rate``),
    ``key`` itself if it is a base key, else None; ``prefixes``: this run's stage and backbone names besides the
    built-in ones (a pretext task or a user model of your own)."""
    known = base_keys()
    if key in known:
        return key
    pretext, kinds = _builtin_names()
    for prefix in (*ROLE_PREFIXES, *pretext, *prefixes):
        rest = key[len(prefix) + 1:] if key.startswith(prefix + "_") else None
        if rest and (rest in known or (prefix not in ROLE_PREFIXES and rest in TRAINER_STAGE_KEYS)):
            return rest
    for kind in kinds:
        rest = key[len(kind) + 1:] if key.startswith(kind + "_") else None
        if rest and (rest in known or rest in _kind_keys()):
            return rest
    return None


def unknown_keys(keys, prefixes=(), loaded=()) -> list:
    """The keys of ``keys`` that no rule knows (``loaded``: keys of YAMLs this run loaded besides ours)."""
    loaded = set(loaded)
    return [key for key in keys if key not in loaded and base_of(str(key), prefixes) is None]


def suggestions(key: str, prefixes=(), extra=()) -> list:
    """Up to three known keys close to ``key`` (a known prefix is kept: ``mlm_learing_rate`` -> mlm_learning_rate)."""
    known = sorted(base_keys() | set(extra))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    pretext, kinds = _builtin_names()
    for prefix in (*ROLE_PREFIXES, *pretext, *kinds, *prefixes):
        if key.startswith(prefix + "_"):
            rest = difflib.get_close_matches(key[len(prefix) + 1:], known, n=2, cutoff=0.75)
            close += [f"{prefix}_{k}" for k in rest if not k.startswith(prefix + "_")]
    return [k for k in dict.fromkeys(close) if base_of(k, prefixes) is not None or k in extra][:3]


def check_known(sources: dict, prefixes=(), loaded=(), options=()) -> None:
    """``sources``: ``{where: {key: value}}`` (a file's path, ``the command line``, ``config_dict``). Raise
    :class:`SettingError` listing every unknown key with where it was set and a did-you-mean; ``options``: the
    command's own options (``--num_samples``), suggested when a key is close to one of them."""
    problems = []
    for where, values in sources.items():
        for key in unknown_keys(values, prefixes, loaded):
            close = suggestions(str(key), prefixes, loaded)
            option = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.75)
            hint = [f"did you mean {' or '.join(close + [f'the option --{o}' for o in option])}?"] if close or option \
                else []
            problems.append(f"{key!r} ({'; '.join([where, *hint])})")
    if problems:
        error = SettingError("unknown setting(s): " + ", ".join(problems) + ". A setting is a key of RecBole's or "
                             "recbole-adaptssr's YAMLs of defaults, or <stage>_<key>, <kind>_<key>, finetune_<key>, "
                             "baseline_<key> of one (README, 'Which settings apply where')")
        error.unknown = [k for values in sources.values() for k in unknown_keys(values, prefixes, loaded)]
        raise error


# ------------------------------------------------------------------------------------------------- values
def types_of_key(key: str, prefixes=()) -> frozenset:
    """The declared types of ``key`` (of its base key for a prefixed key); empty when unknown."""
    base = base_of(key, prefixes) or key
    return declared_types().get(key) or declared_types().get(base, frozenset())


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _flow(text: str):
    """A YAML flow collection with bare words (``[bin, cls]``, ``{RS: [0.8, 0.1, 0.1]}``), safely, else ``text``."""
    import yaml

    try:
        return _numbers_in(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def _numbers_in(value):
    """Strings that read as numbers become numbers (YAML 1.1 reads ``1e-8`` as a string)."""
    if isinstance(value, list):
        return [_numbers_in(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_in(v) for k, v in value.items()}
    if isinstance(value, str):
        return _number(value, value)
    return value


def _number(text: str, otherwise):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return otherwise


def parse_value(key: str, text: str, prefixes=()):
    """The value of ``--key=text`` (see the module docstring): a literal by the key's declared type, never
    evaluated; text that reads as nothing the key declares stays text (the settings checks then name it)."""
    types = types_of_key(key, prefixes)
    stripped = text.strip()
    if stripped in _NULLS:
        return None
    if types == {"str"} or types == {"str", "none"}:
        return text
    if "list" in types and stripped.startswith("["):
        value = _literal(stripped)
        value = value if isinstance(value, (list, tuple)) else _flow(stripped)
        return list(value) if isinstance(value, (list, tuple)) else text
    if "dict" in types and stripped.startswith("{"):
        value = _literal(stripped)
        value = value if isinstance(value, dict) else _flow(stripped)
        return value if isinstance(value, dict) else text
    if "bool" in types and stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if types & {"int", "float"}:
        number = _number(stripped, None)
        if number is not None:
            return number
    if "str" in types:
        return text
    value = _literal(stripped)  # no declared type: a Python literal (numbers, lists, True, ...) or the text
    if isinstance(value, tuple) and "list" in types:
        return list(value)
    if value is text or isinstance(value, str):
        if stripped.lower() in ("true", "false"):
            return stripped.lower() == "true"
        return text
    return value


def normalise(key: str, value, prefixes=()):
    """A value from a file or ``config_dict``: a number given for a key declared only ``str`` becomes its text
    (``data_path: 2024`` is the folder ``2024``); anything else is kept."""
    types = types_of_key(key, prefixes)
    if types and types <= {"str", "none"} and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


_SHAPE_WORDS = {"list": "a list (e.g. [a, b])", "dict": "a mapping (key: value)", "str": "a text",
                "int": "a number", "float": "a number", "bool": "True or False"}


def _shape(value) -> str | None:
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    return None if value is None else "scalar"


def shape_errors(values: dict, where: str, prefixes=()) -> list:
    """Messages for the values of ``values`` whose shape their key does not declare (see the module docstring)."""
    problems = []
    for key, value in values.items():
        types = types_of_key(str(key), prefixes)
        shape = _shape(value)
        if not types or shape is None:
            continue
        scalars = types & {"str", "int", "float", "bool"}
        ok = (shape == "dict" and "dict" in types) or (shape == "list" and "list" in types) or (
            shape == "scalar" and (scalars or "list" in types))
        if not ok:
            expected = " or ".join(dict.fromkeys(_SHAPE_WORDS[t] for t in sorted(types) if t in _SHAPE_WORDS))
            got = {"dict": "a mapping", "list": "a list", "scalar": f"{type(value).__name__}"}[shape]
            problems.append(f"{key} must be {expected}, got {got} {value!r} ({where})")
    return problems


def conflict_errors(values: dict) -> list:
    """Messages for the pairs of :data:`CONFLICTS` set together (``None`` counts as unset)."""
    return [f"{a} and {b} are both set ({a}={values[a]!r}, {b}={values[b]!r}): {why}"
            for a, b, why in CONFLICTS if values.get(a) is not None and values.get(b) is not None]
