"""Names other libraries and modules accept, read without importing them (no torch at validate time).

``import timm`` imports torch and takes seconds; ``validate`` must answer in well under one. timm
registers every model with ``@register_model`` on a function of that name (and old names with
``register_model_deprecations``); our torch modules register with ``REGISTRY.register("name")``
(augmentation ops, attention modules). Reading those source files gives the same names as
``timm.list_models()``, ``AUGMENTATIONS.names()`` and ``ATTENTION.names()`` in milliseconds
(``tests/orchestrator/test_checks.py`` holds both equal).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

__all__ = [
    "attention_names", "augmentation_names", "module_literal", "registered_names", "smp_encoder_names", "timm_model_names",
    "timm_pretrained_tags",
]

_REGISTER_MODEL = re.compile(r"@register_model\s*\n\s*def\s+(\w+)\s*\(")
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_DEPRECATED_NAME = re.compile(r"""['"](\w+)['"]\s*:""")
_TAGGED_CFG = re.compile(r"""['"](\w+)\.(\w+)['"]\s*:""")  # 'resnet18.a1_in1k': _cfg(...) in generate_default_cfgs


def _source(module: str) -> Path:
    """The source file of ``module`` (a package: its folder), found without importing it or its parents.

    ``importlib.util.find_spec("a.b.c")`` imports ``a.b``, and ``trainables.models`` imports torch.
    """
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{top} is not installed")
    if not rest:
        return Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    return path if path.is_dir() else path.with_suffix(".py")


@functools.lru_cache(maxsize=None)
def timm_model_names() -> frozenset[str]:
    """Every model name ``timm.create_model`` accepts (current and deprecated), without a pretrained tag.

    timm's own models and the ones corrotune registers with timm (``trainables/models``:
    ``esg_convnext_<size>``, usable as a classifier backbone).
    """
    names: set[str] = set()
    sources = [*(_source("timm") / "models").glob("*.py"), *_source("trainables.models").glob("*.py")]
    for path in sorted(sources):
        text = path.read_text(encoding="utf-8")
        names.update(_REGISTER_MODEL.findall(text))
        for block in _DEPRECATIONS.findall(text):
            names.update(_DEPRECATED_NAME.findall(block))
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def timm_pretrained_tags() -> dict[str, frozenset[str]]:
    """Model name -> the pretrained tags its timm source lists (``resnet18`` -> ``{"a1_in1k", ...}``).

    Read from the ``'<model>.<tag>': _cfg(...)`` keys of each model file's default configs. A few
    models build their tags in code, so an empty entry means "not known here", never "no tags";
    where a model lists any, it lists all of them (``tests/orchestrator/test_checks.py`` holds
    this against ``timm.list_pretrained()``).
    """
    tags: dict[str, set[str]] = {}
    for path in sorted((_source("timm") / "models").glob("*.py")):
        for model, tag in _TAGGED_CFG.findall(path.read_text(encoding="utf-8")):
            tags.setdefault(model, set()).add(tag)
    return {model: frozenset(found) for model, found in tags.items()}


@functools.lru_cache(maxsize=None)
def smp_encoder_names() -> tuple[str, ...]:
    """Every encoder name of segmentation-models-pytorch (``tu-<timm model>`` aside), sorted.

    smp merges one ``<family>_encoders = {"name": {...}, ...}`` dict literal per module of
    ``segmentation_models_pytorch/encoders`` into ``encoders``; their keys are the names.
    """
    names: set[str] = set()
    for path in sorted((_source("segmentation_models_pytorch") / "encoders").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            if isinstance(node.value if targets else None, ast.Dict) and any(
                isinstance(t, ast.Name) and t.id.endswith("_encoders") for t in targets
            ):
                names.update(k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return tuple(sorted(names))


@functools.lru_cache(maxsize=None)
def registered_names(module: str, registry: str) -> tuple[str, ...]:
    """Names registered in ``module`` with ``REGISTRY.register("name")``, sorted (without importing it)."""
    text = _source(module).read_text(encoding="utf-8")
    pattern = re.compile(re.escape(registry) + r"""\.register\(\s*['"]([\w-]+)['"]\s*\)""")
    return tuple(sorted(set(pattern.findall(text))))


def augmentation_names() -> tuple[str, ...]:
    """Every op and preset name of ``trainables.data.augment.AUGMENTATIONS``."""
    return registered_names("trainables.data.augment", "AUGMENTATIONS")


def attention_names() -> tuple[str, ...]:
    """Every module name of ``trainables.models.attention.ATTENTION``."""
    return registered_names("trainables.models.attention", "ATTENTION")


@functools.lru_cache(maxsize=None)
def module_literal(module: str, name: str) -> Any:
    """The literal value assigned to ``name`` at the top of ``module`` (a dict of names, say)."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(target, ast.Name) and target.id == name:
                return ast.literal_eval(node.value)
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):  # a, b = "x", "y"
                for element, value in zip(target.elts, node.value.elts):
                    if isinstance(element, ast.Name) and element.id == name:
                        return ast.literal_eval(value)
    raise LookupError(f"{module}.{name} is not a top-level literal")
