"""Plug-ins found by name, and the package's YAML defaults.

:class:`Registry` is the one registry class of the package: pretext tasks (``pretext/``), user-model backbones
(``encoder/``), downstream task kinds (``downstream/``), augmentation operators (``augment/``), our models
(``model/``) and the execution's unit kinds each have one. A plug-in is registered under its name when its module
is imported (a class's ``__init_subclass__``, a decorator, or a call); :meth:`Registry.lookup` imports
``<package>.<module of the name>`` first when the name is not registered yet, then the modules the user names
(``pretext_modules``), and reports an unknown name with the known ones and the closest matches.

This module imports nothing but the standard library (the execution package and the pure tensor modules use it).
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


def did_you_mean(name, known, n: int = 3, cutoff: float = 0.6, fold_case: bool = False) -> str:
    """``"; did you mean a, b?"`` with up to ``n`` names of ``known`` close to ``name``, or ``""``."""
    if fold_case:
        by_lower = {str(k).lower(): k for k in known}
        close = [by_lower[k] for k in difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=cutoff)]
    else:
        close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(close)}?" if close else ""


class Registry(dict):
    """``{name: plug-in}`` of one family (a dict, in registration order).

    ``what`` names the family in messages; ``package`` is where its built-in plug-ins live, one module each
    (``module_name(name)`` is the module of a name, e.g. lower-cased); ``not_plugins`` are modules of that folder
    that hold none. ``unknown(name, registry)`` is the message of an unknown name (default: ``unknown <what>
    'x'; known: [...]; did you mean ...?``)."""

    def __init__(self, what: str, package: str | None = None, module_name=None, not_plugins=("base",),
                 unknown=None):
        super().__init__()
        self.what, self.package = what, package
        self.module_name = module_name or (lambda name: name)
        self.not_plugins = tuple(not_plugins)
        self.unknown = unknown or (lambda name, registry: f"unknown {what} {name!r}; known: {registry.known()}"
                                   + did_you_mean(name, registry.known()))

    def add(self, name: str, item, replace: bool = False):
        """Register ``item`` as ``name``; another item under a registered name is an error unless ``replace``.
        Returns ``item`` (so it can decorate)."""
        if name in self and self[name] != item and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered ({self[name]!r})")
        self[name] = item
        return item

    def builtin_modules(self) -> list:
        """The plug-in modules of ``package`` (sorted names)."""
        if self.package is None:
            return []
        folder = os.path.dirname(importlib.import_module(self.package).__file__)
        return sorted(m.name for m in pkgutil.iter_modules([folder]) if m.name not in self.not_plugins)

    def import_builtins(self) -> None:
        """Import every plug-in module of ``package`` (each registers what it holds)."""
        for module in self.builtin_modules():
            import_plugin(self.package, module)

    def known(self) -> list:
        """The registered names and the built-in modules' names, sorted."""
        return sorted(set(self) | set(self.builtin_modules()))

    def find(self, name, modules=()):
        """The plug-in ``name``, importing its built-in module, then each of ``modules``, until it is registered;
        None if it is not."""
        if name not in self and self.package is not None and isinstance(name, str):
            module = self.module_name(name)
            if module not in self.not_plugins:
                import_plugin(self.package, module)
        for module in modules or ():
            if name in self:
                break
            importlib.import_module(module)
        return super().get(name)

    def lookup(self, name, modules=()):
        """:meth:`find`, and an unknown name is a ``ValueError`` (:attr:`unknown`)."""
        item = self.find(name, modules)
        if item is None:
            raise ValueError(self.unknown(name, self))
        return item


def import_plugin(package: str, name) -> None:
    """Import ``<package>.<name>`` if such a module exists (plug-ins register themselves on import); a missing
    module is not an error here (the caller reports the unknown name), an import error inside it is."""
    if not (isinstance(name, str) and name.isidentifier()):
        return
    try:
        importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{package}.{name}":
            raise


def properties_file(*parts: str, required: bool = True) -> str | None:
    """Path of a YAML of defaults shipped in the package (``properties/<parts>``).

    A missing required file is an error: a package installed without its data must not run on RecBole's
    defaults without a word.
    """
    path = os.path.join(PROPERTIES_DIR, *parts)
    if os.path.isfile(path):
        return path
    if required:
        raise FileNotFoundError(
            f"default settings file {path} is missing: the recbole-adaptssr installation is incomplete "
            "(reinstall the package; its properties/*.yaml are package data)"
        )
    return None


def plugin_defaults_file(plugin_class: type, package: str, folder: str, what: str) -> str | None:
    """The YAML of a plug-in's defaults (a pretext task, a user model): its ``config_file`` if it names one (a
    missing file is an error naming it), ``properties/<folder>/<name>.yaml`` for a plug-in shipped in ``package``
    (required), else None."""
    if plugin_class.config_file is None:
        if plugin_class.__module__.startswith(package + "."):
            return properties_file(folder, f"{plugin_class.name}.yaml")
        return None
    if not os.path.isfile(plugin_class.config_file):
        raise FileNotFoundError(f"{what} {plugin_class.name!r}: its config_file {plugin_class.config_file} is missing")
    return plugin_class.config_file


def check_plugin_namespace(defaults: dict, prefix: str, owner: str, path: str) -> None:
    """A plug-in's YAML of defaults may only define keys ``<prefix>_...``; ``owner`` names the plug-in in the error."""
    foreign = [key for key in defaults if not key.startswith(f"{prefix}_")]
    if foreign:
        raise ValueError(f"{path}: {owner} may only define settings prefixed {prefix}_, found {foreign}")
