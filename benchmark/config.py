"""A run's configuration in its one form: typed, validated once, serialised once.

A ``bench run`` (or one cell of an experiment grid, or ``bench tune``) starts as a flat mapping of
settings, e.g. ``{"model": "svm", "corpus": "urdu", "classes": "4", "model_params": {"C": 3}}``.
:func:`resolve` turns it into a frozen :class:`RunConfig` whose every value has been checked
against the type and range its owner declares -- the model's ``__init__`` annotations, the feature
set's config dataclass, the protocol's ``Params`` dataclass -- before any MLflow run exists.
:meth:`RunConfig.to_dict` is the one serialised form: it is logged as MLflow params (flattened),
stored in a logged model's metadata, and read back by ``bench predict`` and ``bench report`` with
:meth:`RunConfig.from_dict`, the same code.

Defaults live with their owners: a model's parameters in its ``__init__``, its feature set in
``default_features``, a protocol's parameters in its ``Params``, the task's here in :class:`Task`.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Annotated, Any, Iterable, Mapping

from annotated_types import Ge, Interval

from .errors import BenchError

# A seed numpy and scikit-learn accept (the task's and every model's own `seed` parameter).
Seed = Annotated[int, Interval(ge=0, le=2**32 - 1)]


def member_seeds(seed: int, ensemble: int) -> list[int]:
    """The seeds of an ensemble's K members: ``seed``, ``seed + 1``, ..., wrapped to stay a Seed.
    One rule for the networks that train them and for `bench fuse --by-members`, which checks them."""
    return [(seed + k) % 2**32 for k in range(ensemble)]

# Settings that are not a component's own parameters.
TASK_KEYS = ("classes", "norm", "seed", "map")
SLICE_KEYS = ("max_per_speaker_class", "max_speakers")
TOP_KEYS = ("model", "features", "protocol", "model_params", "feature_params", "protocol_params", "final_model")
MODEL_SHORTCUTS = ("epochs", "batch_size")  # `--epochs 5` is `--param epochs=5` for models that train in epochs


@dataclass(frozen=True)
class Task:
    """What is asked of the model, whatever the protocol: which emotions, how features are
    normalised, and the seed every random step derives from."""

    classes: str = "all"  # "all", a named set ("2", "4", "5", "6", "7") or "anger,sadness,..."
    norm: str = "global"  # see benchmark.normalise.MODES
    seed: Seed = 0
    map: str = ""  # emotion renames applied when utterances load, "calm=neutral,..." (benchmark.vocabulary)


@dataclass(frozen=True)
class Slice:
    """A small slice of each corpus, for tests and quick looks (0 keeps everything)."""

    max_per_speaker_class: Annotated[int, Ge(0)] = 0
    max_speakers: Annotated[int, Ge(0)] = 0


@dataclass(frozen=True)
class Component:
    """A registered model, feature set or protocol: its name and every parameter, resolved."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (and nothing that does not: see ``Runtime``)."""

    model: Component
    features: Component
    protocol: Component
    task: Task = Task()
    slice: Slice = Slice()
    final_model: bool = True

    # -- objects a run uses -------------------------------------------------------------------
    def model_class(self):
        from .models import MODELS

        return MODELS.lookup(self.model.name)

    def build_model(self, overrides: Mapping[str, Any] | None = None):
        """A fresh, unfitted model; ``overrides`` (tuned parameters) are validated like the rest."""
        params = dict(self.model.params)
        if overrides:
            params.update(validate_params(self.model_class(), {**params, **overrides}, f"model {self.model.name}"))
        return self.model_class()(**params)

    def changed_model_params(self, tuned: Iterable[str] = ()) -> dict[str, Any]:
        """The model parameters that differ from the model's defaults: what makes this run's recipe
        different from another run of the same model, for report rows. Left out: the seed, the
        model's ``runtime_params`` (threads, verbosity) and the ``tuned`` ones (their values are
        the study's, per fold)."""
        model_class = self.model_class()
        defaults = _init_signature(model_class)
        skip = {"seed", *model_class.runtime_params, *tuned}
        return {name: value for name, value in sorted(self.model.params.items())
                if name not in skip and name in defaults and value != defaults[name][1]}

    def build_features(self):
        from .features import FEATURE_SETS

        return FEATURE_SETS.lookup(self.features.name)(**self.features.params)

    def build_protocol(self):
        from .protocols import PROTOCOLS

        cls = PROTOCOLS.lookup(self.protocol.name)
        return cls(cls.Params(**self.protocol.params), classes=self.task.classes, seed=self.task.seed)

    # -- the one serialised form ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"model": {"name": self.model.name, "params": dict(self.model.params)},
                "features": {"name": self.features.name, "params": dict(self.features.params)},
                "protocol": {"name": self.protocol.name, "params": dict(self.protocol.params)},
                "task": asdict(self.task), "slice": asdict(self.slice), "final_model": self.final_model}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Read back what :meth:`to_dict` wrote (a logged model's metadata), validating it again."""
        try:
            settings = {"model": data["model"]["name"], "model_params": data["model"]["params"],
                        "features": data["features"]["name"], "feature_params": data["features"]["params"],
                        "protocol": data["protocol"]["name"], "protocol_params": data["protocol"]["params"],
                        **data.get("task", {}), **data.get("slice", {}),
                        "final_model": data.get("final_model", True)}
        except (KeyError, TypeError) as exc:
            raise BenchError(f"not a ser-bench run configuration (missing {exc})") from None
        return resolve(settings)

    def mlflow_params(self) -> dict[str, str]:
        """Flat MLflow params; every key is dotted (``model.C``, ``protocol.corpus``), so none can
        collide with the plain parameter names ``mlflow run`` logs for an MLproject entry point."""
        flat = {"model.name": self.model.name, "features.name": self.features.name,
                "protocol.name": self.protocol.name, "final_model": str(self.final_model)}
        for section, values in (("model", self.model.params), ("features", self.features.params),
                                ("protocol", self.protocol.params), ("task", asdict(self.task)),
                                ("slice", asdict(self.slice))):
            flat.update({f"{section}.{key}": param_text(value)[:6000] for key, value in values.items()})
        return flat

    def label(self) -> str:
        return f"{self.model.name}-{self.features.name}-{self.protocol.name}"


def param_text(value: Any) -> str:
    """A tuple of names (``--train-corpus emodb,urdu``) is logged as it is typed."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# -- validation -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _type_adapter(annotation):
    import pydantic

    if is_dataclass(annotation):
        return pydantic.TypeAdapter(annotation)
    return pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(arbitrary_types_allowed=True))


def _first_error(exc, what: str, values: Mapping[str, Any]) -> BenchError:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int)) or "value"
    given = values.get(where.split(".")[0], error.get("input"))
    return BenchError(f"{what}: {where}={given!r} is invalid ({error['msg'].lower()})")


@functools.lru_cache(maxsize=None)
def _init_signature(cls) -> dict[str, tuple[Any, Any]]:
    """{parameter: (annotation, default)} of a model's ``__init__`` (sklearn keeps params there)."""
    import inspect

    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    out = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        out[name] = (hints.get(name, Any), parameter.default)
    return out


def validate_params(model_cls, params: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check ``params`` against the types and ranges annotated on ``model_cls.__init__``."""
    import pydantic

    signature = _init_signature(model_cls)
    unknown = sorted(set(params) - set(signature))
    if unknown:
        raise BenchError(f"{what}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(signature))}")
    checked = {}
    for name, value in params.items():
        try:
            checked[name] = _type_adapter(signature[name][0]).validate_python(value)
        except pydantic.ValidationError as exc:
            raise BenchError(f"{what}: parameter {name}={value!r} is invalid "
                             f"({exc.errors()[0]['msg'].lower()})") from None
    return checked


def validate_dataclass(cls, values: Mapping[str, Any], what: str):
    """An instance of the (frozen) dataclass ``cls`` from ``values``, every field type-checked."""
    import pydantic

    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BenchError(f"{what}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}")
    try:
        return _type_adapter(cls).validate_python(dict(values))
    except pydantic.ValidationError as exc:
        raise _first_error(exc, what, values) from None


def _classes_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v).strip() for v in value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BenchError(f"classes={value!r} is invalid; use all, 2, 4, 5, 6, 7 or a list like anger,sadness")
    return str(value).strip()


def resolve(settings: Mapping[str, Any]) -> RunConfig:
    """Validate flat ``settings`` (CLI options, an experiment cell) into a :class:`RunConfig`.

    Raises :class:`BenchError` with one line naming the setting and what it expects.
    """
    from .features import FEATURE_SETS, split_spec
    from .models import MODELS
    from .normalise import MODES
    from .protocols import PROTOCOLS, requested_classes

    settings = {key: value for key, value in settings.items() if value is not None}
    if "model" not in settings:
        raise BenchError("no model given; e.g. --model svm (models: " + MODELS.names() + ")")
    for key in ("model", "features", "protocol"):
        if key in settings and not isinstance(settings[key], str):
            raise BenchError(f"{key}={settings[key]!r} is invalid; expected a name")
    for key in ("model_params", "feature_params", "protocol_params"):
        if not isinstance(settings.get(key, {}), Mapping):
            raise BenchError(f"{key}={settings[key]!r} is invalid; expected a mapping such as {{C: 3}}")

    model_cls = MODELS.lookup(settings["model"])
    protocol_cls = PROTOCOLS.lookup(settings.get("protocol", "within_corpus"))
    protocol_fields = {f.name for f in fields(protocol_cls.Params)}
    other_protocol_fields = {f.name for cls in PROTOCOLS.values() for f in fields(cls.Params)} - protocol_fields
    known = set(TOP_KEYS) | set(TASK_KEYS) | set(SLICE_KEYS) | set(MODEL_SHORTCUTS) | protocol_fields
    for key in settings:
        if key in other_protocol_fields:
            raise BenchError(f"{key} does not apply to protocol {protocol_cls.name} (its parameters: "
                             f"{', '.join(sorted(protocol_fields))})")
        if key not in known:
            raise BenchError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")

    task_values = {k: settings[k] for k in TASK_KEYS if k in settings}
    if "classes" in task_values:
        task_values["classes"] = _classes_text(task_values["classes"])
        requested_classes(task_values["classes"])  # raises on an unknown set or a single emotion
    if "map" in task_values:
        from .vocabulary import format_map, parse_map

        task_values["map"] = format_map(parse_map(task_values["map"]))
    if "norm" in task_values and task_values["norm"] not in MODES:
        raise BenchError(f"--norm {task_values['norm']}: use one of {', '.join(MODES)}")
    task = validate_dataclass(Task, task_values, "task")
    slice_ = validate_dataclass(Slice, {k: settings[k] for k in SLICE_KEYS if k in settings}, "slice")

    model_params = dict(settings.get("model_params", {}))
    signature = _init_signature(model_cls)
    for key in MODEL_SHORTCUTS:
        if key in settings:
            if key not in signature:
                raise BenchError(f"--{key.replace('_', '-')} applies to models trained in epochs, not {model_cls.name}")
            model_params.setdefault(key, settings[key])
    if "seed" in signature and "seed" not in model_params:
        model_params["seed"] = task.seed
    given = validate_params(model_cls, model_params, f"model {model_cls.name}")
    model_params = {name: given.get(name, default) for name, (_, default) in signature.items()}

    feature_name, feature_values = split_spec(settings.get("features") or model_cls.default_features,
                                              dict(settings.get("feature_params", {})))
    feature_cls = FEATURE_SETS.lookup(feature_name)
    feature_config = feature_cls(**feature_values).config  # the set's own defaults and checks apply
    if model_cls.input_kind == "sequence" and feature_cls.level != "frame":
        frame_sets = ", ".join(sorted(n for n, c in FEATURE_SETS.items() if c.level == "frame"))
        raise BenchError(f"feature set {feature_name} has no frame-level features; model {model_cls.name} needs "
                         f"sequences (use one of {frame_sets})")

    protocol_values = {**settings.get("protocol_params", {}),
                       **{k: settings[k] for k in protocol_fields if k in settings}}
    protocol_params = validate_dataclass(protocol_cls.Params, protocol_values, f"protocol {protocol_cls.name}")

    final_model = settings.get("final_model", True)
    if not isinstance(final_model, bool):
        raise BenchError(f"final_model={final_model!r} is invalid; expected true or false")

    config = RunConfig(Component(model_cls.name, model_params),
                       Component(feature_name, asdict(feature_config)),
                       Component(protocol_cls.name, asdict(protocol_params)), task, slice_, final_model)
    config.build_protocol().validate()
    return config
