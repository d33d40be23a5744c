"""Sphinx hooks of the recgym site: API pages, build-time figures, references to re-exports.

- ``config-inited``: writes ``api/<package>.md`` from ``API_SECTIONS`` in ``conf.py``
  (autosummary then writes one stub page per name under ``api/generated/``), and draws the
  results figures into ``_generated/`` (:mod:`results_figures`). Both folders are build
  outputs, ignored by git.
- ``missing-reference``: the docstrings name objects where they are defined
  (``recgym.env.BatchedRecEnv``), the reference documents them where users import them
  (``recgym.BatchedRecEnv``); such references are resolved to the documented name.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

LOG = logging.getLogger(__name__)
PACKAGES = ("recgym", "rewards", "agents")
_MISSING = object()
_TARGETS: dict[str, str] = {}
"""Filled by :func:`on_config_inited`: see :func:`reexport_targets`."""
PACKAGE_BLURB = {
    "recgym": "datasets, splits, evaluation, the synthetic true user and the batched env.",
    "rewards": "learned discriminators as reward models, reference rewards and wrappers.",
    "agents": "policies, MLE, policy gradient, the adversarial loop and the baselines.",
}


def api_index(sections: dict[str, list[tuple[str, list[str]]]]) -> str:
    """The ``api/index.md`` page: one entry per package."""
    lines = ["# API reference", "", "The public names of the three packages (their ``__all__``),"]
    lines += ["layered one way: `agents → rewards → recgym`.", ""]
    lines += [f"- [`{pkg}`]({pkg}.md): {PACKAGE_BLURB.get(pkg, '')}" for pkg in sections]
    lines += ["", "```{toctree}", ":hidden:", "", *sections, "```", ""]
    return "\n".join(lines)


def api_page(
    package: str, sections: list[tuple[str, list[str]]], documented: dict[int, str]
) -> str:
    """The ``api/<package>.md`` page: the package docstring, then one autosummary per section.

    ``documented`` maps ``id(obj)`` to the name an earlier package's page documents it under
    (and is updated): such re-exports are listed as links to it, not documented twice.
    """
    module = importlib.import_module(package)
    lines = [f"# `{package}`", "", "```{eval-rst}", f".. automodule:: {package}", "   :no-members:"]
    lines += ["", f".. currentmodule:: {package}", "```", ""]
    for title, names in sections:
        objects = {name: getattr(module, name) for name in names}
        fresh = [name for name, obj in objects.items() if id(obj) not in documented]
        again = [name for name in names if name not in fresh]
        lines += [f"## {title}", "", "```{eval-rst}", ".. autosummary::", "   :toctree: generated",
                  "   :nosignatures:", ""]
        lines += [f"   {name}" for name in fresh]
        lines += ["```", ""]
        for name in again:
            home = documented[id(objects[name])]
            lines.append(f"- `{package}.{name}`: the same object as {{py:obj}}`{home}`")
        lines += [""] if again else []
        documented.update({id(objects[name]): f"{package}.{name}" for name in fresh})
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (keeps incremental builds incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api_pages(srcdir: Path, sections: dict[str, list[tuple[str, list[str]]]]) -> None:
    """Write the API pages; drop autosummary stubs of names the pages no longer document."""
    write_if_changed(srcdir / "api" / "index.md", api_index(sections))
    documented: dict[int, str] = {}
    for package, package_sections in sections.items():
        page = api_page(package, package_sections, documented)
        write_if_changed(srcdir / "api" / f"{package}.md", page)
    expected = set(documented.values())
    for stub in (srcdir / "api" / "generated").glob("*.rst"):
        if stub.stem not in expected:
            stub.unlink()


def skip_namedtuple_fields(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any):
    """Leave out NamedTuple fields: the class docstring's ``Attributes:`` documents them."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def reexport_targets(sections: dict[str, list[tuple[str, list[str]]]]) -> dict[str, str]:
    """``defining.module.Name`` → the documented ``package.Name`` (the first package wins)."""
    targets: dict[str, str] = {}
    for package, package_sections in sections.items():
        module = importlib.import_module(package)
        for _, names in package_sections:
            for name in names:
                obj = getattr(module, name)
                home = getattr(obj, "__module__", None)
                qualname = getattr(obj, "__qualname__", None)
                if isinstance(home, str) and isinstance(qualname, str):
                    targets.setdefault(f"{home}.{qualname}", f"{package}.{name}")
                targets.setdefault(f"{package}.{name}", f"{package}.{name}")
    return targets


def documented_name(target: str, targets: dict[str, str]) -> str | None:
    """The documented name of ``target`` or of its owner (``a.b.Class.method``), else None."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in targets:
            return ".".join([targets[head], *parts[cut:]])
    return None


def resolve_attr(root: Any, dotted: str) -> Any:
    """``root.a.b`` for ``dotted = "a.b"``, else a sentinel ``_MISSING``."""
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            break
    return obj


def stub_object(docname: str) -> Any:
    """The object an autosummary stub page (``api/generated/<package>.<Name>``) documents."""
    if not docname.startswith("api/generated/"):
        return _MISSING
    package, _, name = docname.removeprefix("api/generated/").partition(".")
    if package not in PACKAGES:
        return _MISSING
    return resolve_attr(importlib.import_module(package), name)


def internal_object(
    target: str, module: str | None, klass: str | None, docname: str = ""
) -> Any:
    """The object of our packages that ``target`` names (absolute, or from the docstring's
    context: its class or the stub page's object, then the module it is defined in), else
    ``_MISSING``.
    """
    head = target.split(".")[0]
    if head in PACKAGES:
        for cut in range(target.count(".") + 1, 0, -1):
            name = ".".join(target.split(".")[:cut])
            try:
                found = importlib.import_module(name)
            except ImportError:
                continue
            rest = ".".join(target.split(".")[cut:])
            return resolve_attr(found, rest) if rest else found
        return _MISSING
    if not module or module.split(".")[0] not in PACKAGES:
        return _MISSING
    context = resolve_attr(importlib.import_module(module), klass) if klass else _MISSING
    if context is _MISSING:
        context = stub_object(docname)
    scopes = [context] if context is not _MISSING else []
    home = getattr(context, "__module__", None) if scopes else module
    if isinstance(home, str) and home in sys.modules:
        scopes.append(sys.modules[home])
    for scope in scopes:
        found = resolve_attr(scope, target)
        if found is not _MISSING:
            return found
    return _MISSING


def on_missing_reference(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve re-exports to their documented name; render other existing internals as code."""
    if node.get("refdomain") != "py":
        return None
    target = re.sub(r"\s+", "", node["reftarget"])  # a reference wrapped over two lines
    candidates = [target]
    if "." not in target:  # a bare name inside a page: any package that exports it
        candidates += [f"{package}.{target}" for package in app.config.API_SECTIONS]
    domain = env.get_domain("py")
    for candidate in candidates:
        name = documented_name(candidate, _TARGETS)
        if name is None or name == node["reftarget"]:
            continue
        resolved = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
        )
        if resolved is not None:
            return resolved
    # A private helper or submodule that exists but is not in the public reference.
    context = node.get("py:module"), node.get("py:class"), node.get("refdoc", "")
    if internal_object(target, *context) is not _MISSING:
        return contnode
    return None


def on_config_inited(app: Sphinx, config: Config) -> None:
    srcdir = Path(app.srcdir)
    write_api_pages(srcdir, config.API_SECTIONS)
    _TARGETS.update(reexport_targets(config.API_SECTIONS))
    import results_figures

    for path in results_figures.draw_all(srcdir, srcdir / "_generated"):
        LOG.info("recgym_docs: drew %s", path.relative_to(srcdir))


def factory_defaults(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: Any,
                     return_annotation: Any):
    """Show a dataclass field's ``default_factory`` as a call (``dict()``), not ``<factory>``,
    which Sphinx cannot parse as a signature."""
    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    for field in dataclasses.fields(obj):
        if field.default_factory is not dataclasses.MISSING:
            call = f"{getattr(field.default_factory, '__name__', 'factory')}()"
            signature = signature.replace("<factory>", call, 1)
    return signature, return_annotation


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("API_SECTIONS", {}, "env")
    app.connect("config-inited", on_config_inited)
    app.connect("missing-reference", on_missing_reference)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    app.connect("autodoc-process-signature", factory_defaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
