"""``Config``: RecBole's, plus our YAML defaults, list settings on the command line and a per-run override layer."""

from __future__ import annotations

import os
import sys

from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_adaptssr import compat, setting_keys, setup
from recbole_adaptssr.names import check_plain_name
from recbole_adaptssr.plugins import PROPERTIES_DIR, properties_file
from recbole_adaptssr.setting_errors import MissingFileError, SettingError
from recbole_adaptssr.utils import get_model

# list-valued settings of ours; on the command line ``--finetune_from=[ssr,none]`` arrives as a string
LIST_KEYS = ("pretrain_stages", "finetune_from", "downstream_tasks", "augmentations", "task_split",
             "pretext_modules", "metrics", "topk", "pretrain_methods", "pretrain_methods_file",
             "recbole_baselines", "baseline_pretrain")

# settings the experiment layer sets per run as plumbing (where a run writes), never reported as overridden
PLUMBING_KEYS = ("checkpoint_dir",)

# settings a downstream run takes from its task kind (<kind>_metrics, ...) and task_split: a user value is rejected
PER_KIND_KEYS = ("metrics", "topk", "valid_metric", "eval_args")

# the key that signs checkpoints: kept out of the settings (never logged, recorded or saved in a checkpoint)
SIGNING_KEY = "checkpoint_hmac_key"


def as_list(value):
    """``[a, b]``, ``a,b``, ``a`` or a list -> list (numbers converted), so lists work unquoted on the CLI."""
    if value is None or isinstance(value, (list, tuple)):
        return None if value is None else list(value)
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items = [piece.strip().strip("'\"") for piece in text.split(",") if piece.strip()]
    return [_number(piece) for piece in items]


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Config(RecBoleConfig):
    """RecBole's ``Config`` with these additions (RecBole-GNN's pattern):

    * model names resolve through :func:`recbole_adaptssr.utils.get_model` (our package first, then RecBole);
    * after RecBole's own defaults come our package's YAMLs: ``overall.yaml``, ``model/<Model>.yaml`` (ours only),
      ``pretext/<task>.yaml`` of every pretext task in ``pretrain_stages``, ``encoder/user_model.yaml`` and
      ``encoder/<user_model>.yaml`` (the backbone's), ``downstream/<kind>.yaml`` of every task kind, and
      ``dataset/<dataset>.yaml`` if it exists;
    * ``overrides``: settings of one run of an experiment (task, seed, stage, epochs, metrics, split), applied
      ABOVE the command line; :meth:`overridden_user_settings` says which of the user's settings they replace;
    * :meth:`derive` builds the Config of a run from the same sources plus that run's overrides (and, for RecBole's
      models as baselines, another model);
    * list settings (``finetune_from``, ``pretrain_stages``, ...) may be written ``[a,b]`` or ``a,b``;
    * settings are exact (:mod:`recbole_adaptssr.setting_keys`): an unknown key, a value of the wrong shape or two
      contradicting keys are an error naming where they were set; command-line (and ``config_dict`` text) values
      are literals read by the key's declared type, never evaluated; the data set's name is a plain name; a
      setting this class refuses (these, an unknown model, a config file that is missing or not a mapping, a device
      that is not there) is a :class:`~recbole_adaptssr.setting_errors.SettingError`;
    * ``checkpoint_hmac_key`` is taken out of the settings (never logged or saved) and signs the checkpoints this
      process writes and verifies those it reads (:mod:`recbole_adaptssr.checkpoint`);
    * the model type follows the stage: a model may declare ``model_type_for(train_stage)``, and any model run on
      a downstream task is GENERAL, so RecBole's loaders treat a sample as a task record and rank per user.

    Precedence, lowest first: RecBole's defaults < our YAMLs < config files < config_dict < command line < overrides.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, overrides=None):
        setup()
        self.run_config_dict = dict(overrides or {})
        self._sources = (model, dataset, config_file_list, config_dict)
        self._origins = {}  # key -> the config file that set it last
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        self._take_signing_key()

    def derive(self, model=None, **overrides) -> "Config":
        """The Config of one run: the same data set, files, dict and command line, plus ``overrides`` on top of this
        Config's own overrides; the same model, or ``model`` (a RecBole model run on the same settings, whose
        YAML defaults it then loads)."""
        own, _, files, variables = self._sources
        model = model if model is not None else own if own is not None else self.model
        return Config(model=model, dataset=self.dataset, config_file_list=files, config_dict=variables,
                      overrides={**self.run_config_dict, **overrides})

    def _convert_config_dict(self, config_dict):
        """Command-line and ``config_dict`` text read as literals by each key's declared type, never evaluated
        (RecBole's calls ``eval``): see :func:`recbole_adaptssr.setting_keys.parse_value`."""
        return {key: setting_keys.parse_value(key, value) if isinstance(value, str) else
                setting_keys.normalise(key, value) for key, value in (config_dict or {}).items()}

    def _load_cmd_line(self):
        """RecBole's, with its refusal of a key given twice with two values as a setting error naming the key and
        both values (RecBole raised a ``SyntaxError`` quoting only the second)."""
        try:
            return super()._load_cmd_line()
        except SyntaxError:
            given = {}
            for arg in sys.argv[1:]:
                if arg.startswith("--") and arg.count("=") == 1:
                    key, value = arg[2:].split("=")
                    given.setdefault(key, []).append(value)
            twice = {key: values for key, values in given.items() if len(set(values)) > 1}
            raise SettingError("; ".join(f"--{key} is given {len(values)} times with different values ("
                                         + ", ".join(repr(v) for v in values) + "): give it once"
                                         for key, values in twice.items()) or "the command line gives a key twice "
                               "with different values") from None

    def _load_config_files(self, file_list):
        """RecBole's, with errors that name the file: a missing file, a YAML syntax error, or a file that is not a
        mapping of settings (RecBole reported ``<unicode string>`` or a bare TypeError)."""
        import yaml

        settings = {}
        for path in file_list or []:
            if not os.path.isfile(path):
                raise MissingFileError(f"config file not found: {path} (config_files)")
            with open(path, encoding="utf-8") as f:
                try:
                    loaded = yaml.load(f.read(), Loader=self.yaml_loader)
                except yaml.YAMLError as error:
                    raise SettingError(f"{path}: not valid YAML: {error}") from None
            if loaded is None:
                continue
            if not isinstance(loaded, dict):
                raise SettingError(f"{path}: a config file must map settings to values (key: value), "
                                   f"got a {type(loaded).__name__}")
            settings.update({key: setting_keys.normalise(key, value) for key, value in loaded.items()})
            self._origins.update({key: path for key in loaded})
        return settings

    def _merge_external_config_dict(self):
        super()._merge_external_config_dict()
        self.user_config_dict = dict(self.external_config_dict)  # files < dict < command line
        self.external_config_dict.update(self.run_config_dict)

    def overridden_user_settings(self) -> dict:
        """``{key: (user value, run value)}`` for the user's settings this run's overrides replace."""
        return {
            key: (self.user_config_dict[key], value)
            for key, value in self.run_config_dict.items()
            if key in self.user_config_dict and key not in PLUMBING_KEYS and self.user_config_dict[key] != value
        }

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError("model must be given: --model=NAME, a config file, a config dict or the model argument")
        if isinstance(model, str):
            model = get_model(model)  # an unknown model: a SettingError naming close matches
        model, model_class, dataset = super()._get_model_and_dataset(model, dataset)
        check_plain_name(dataset, "data set", where="dataset")  # before anything is read or written under it
        return model, model_class, dataset

    def _check_user_settings(self):
        """Every key the user set is known, of its declared shape, and not contradicted by another (see
        :mod:`recbole_adaptssr.setting_keys`); the error names where each was set."""
        stages = self.external_config_dict.get("pretrain_stages", self.internal_config_dict.get("pretrain_stages"))
        backbone = self.external_config_dict.get("user_model", self.internal_config_dict.get("user_model"))
        prefixes = [s for s in (as_list(stages) if isinstance(stages, (str, list)) else []) if isinstance(s, str)]
        prefixes += [backbone.lower()] if isinstance(backbone, str) else []  # <backbone>_<key>
        sources = {}
        for key, value in self.file_config_dict.items():
            sources.setdefault(self._origins.get(key, "a config file"), {})[key] = value
        sources["config_dict"] = self.variable_config_dict
        sources["the command line"] = self.cmd_config_dict
        sources = {where: values for where, values in sources.items() if values}
        setting_keys.check_known(sources, prefixes, loaded=self.internal_config_dict)
        problems = [p for where, values in sources.items() for p in setting_keys.shape_errors(values, where, prefixes)]
        problems += setting_keys.conflict_errors(self.user_config_dict)
        if problems:
            raise SettingError("; ".join(problems))

    def _take_signing_key(self):
        """Move ``checkpoint_hmac_key`` out of every settings dict into the checkpoint module (None: the
        environment's ``RECBOLE_ADAPTSSR_HMAC_KEY``, if any)."""
        from recbole_adaptssr import checkpoint

        key = self.final_config_dict.get(SIGNING_KEY)
        for values in (self.final_config_dict, self.user_config_dict, self.external_config_dict,
                       self.file_config_dict, self.variable_config_dict, self.cmd_config_dict):
            values.pop(SIGNING_KEY, None)
        checkpoint.set_signing_key(None if key is None else str(key))

    def _set_default_parameters(self):
        super()._set_default_parameters()
        list_keys = set(LIST_KEYS) | {k for k, v in self.internal_config_dict.items() if isinstance(v, list)}
        for key, value in self.final_config_dict.items():
            if isinstance(value, str) and (key in list_keys or any(key.endswith("_" + k) for k in list_keys)):
                self.final_config_dict[key] = as_list(value)

    def _init_device(self):
        """The device as the settings say (:func:`resolve_device`), where RecBole 1.2.1 takes CUDA whenever it is
        available and sets ``CUDA_VISIBLE_DEVICES=gpu_id`` for the whole process. In a process a launcher started as
        one of several (``torchrun``, or ``--nproc=N``: see :mod:`recbole_adaptssr.distributed`), the process group
        is joined once (NCCL on GPUs, gloo on CPUs, ``ddp_backend`` to choose) and every Config of the process reads
        its rank: RecBole's ``single_spec``/``local_rank``/``world_size`` keys, the device ``cuda:<LOCAL_RANK>`` or
        the CPU, and on ranks other than 0 no progress bars and only errors in the log."""
        from recbole_adaptssr import distributed

        settings = self.final_config_dict
        if not distributed.launched_distributed() and not distributed.is_distributed():
            if "local_rank" in settings:  # RecBole's own multi-process convention (its run_recbole's --nproc)
                return super()._init_device()
            given = {**self.user_config_dict, **self.run_config_dict}
            settings["gpu_id"] = ",".join(map(str, settings["gpu_id"])) if isinstance(
                settings.get("gpu_id"), (tuple, list)) else str(settings.get("gpu_id", ""))
            device = resolve_device(settings.get("device"), settings.get("use_gpu", True), settings["gpu_id"],
                                    use_gpu_given="use_gpu" in given, gpu_id_given="gpu_id" in given)
            # use_gpu as RecBole's trainer reads it (GPU memory in its progress bars): whether the run is on a GPU
            settings.update(single_spec=True, local_rank=0, device=device, use_gpu=device.type == "cuda")
            if settings["device"].type == "cuda":
                import torch

                torch.cuda.set_device(settings["device"])  # Triton kernels and CUDA graphs use the current device
            return None
        import torch

        use_gpu = bool(settings.get("use_gpu", True)) and torch.cuda.is_available()
        if use_gpu and "CUDA_VISIBLE_DEVICES" not in os.environ and str(settings.get("gpu_id", "")).strip():
            os.environ["CUDA_VISIBLE_DEVICES"] = str(settings["gpu_id"])
        backend = settings.get("ddp_backend")
        if backend not in (None, "nccl", "gloo"):
            raise SettingError(f"ddp_backend must be nccl, gloo or ~ (NCCL on GPUs, gloo on CPUs), got {backend!r}")
        distributed.init_distributed(backend, use_gpu=use_gpu)
        gpu = use_gpu and torch.distributed.get_backend() == "nccl"
        settings.update(single_spec=False, local_rank=distributed.local_rank(), world_size=distributed.world_size(),
                        nproc=distributed.world_size(),
                        device=torch.device("cuda", distributed.local_rank()) if gpu else torch.device("cpu"))
        if distributed.rank() != 0:
            settings.update(state="error", show_progress=False, verbose=False)

    def _defaults_files(self, model, model_class, dataset) -> list:
        """Our YAMLs of defaults for this run, in load order (see the class docstring)."""
        files = [properties_file("overall.yaml")]
        ours = model_class.__module__.startswith("recbole_adaptssr.")
        if ours:
            files.append(properties_file("model", f"{model}.yaml"))
        files += [properties_file("downstream", f"{kind}.yaml") for kind in _builtin_task_kinds()]
        files.append(properties_file("recbole_baselines.yaml"))  # RecBole's models as baselines on our tasks
        return files

    def _check_downstream_settings(self, model_class):
        downstream = getattr(model_class, "uses_pretext_tasks", False) or self.external_config_dict.get(
            "downstream_task") or self.external_config_dict.get("downstream_tasks")
        given = [key for key in PER_KIND_KEYS if key in self.user_config_dict]
        if downstream and given:
            raise SettingError(
                f"{given} cannot be set for downstream runs: each task kind has its own, e.g. "
                "recommendation_metrics, recommendation_topk, recommendation_valid_metric, binary_metrics, "
                "multiclass_valid_metric (see properties/downstream/*.yaml); the split is task_split"
            )

    def _load_internal_config_dict(self, model, model_class, dataset):
        self._check_downstream_settings(model_class)
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in self._defaults_files(model, model_class, dataset):
            self._update_internal_config_dict(path)
        if getattr(model_class, "uses_pretext_tasks", False):
            self._load_pretext_defaults()
            self._load_user_model_defaults()
        dataset_file = properties_file("dataset", f"{dataset}.yaml", required=False)
        if dataset_file:
            self._update_internal_config_dict(dataset_file)
        stage = self.external_config_dict.get("train_stage", self.internal_config_dict.get("train_stage"))
        if hasattr(model_class, "model_type_for"):
            self.internal_config_dict["MODEL_TYPE"] = model_class.model_type_for(stage)
        elif self.external_config_dict.get("downstream_task"):
            # RecBole's models on one of our tasks: samples are task records, ranked per user (GENERAL type)
            self.internal_config_dict["MODEL_TYPE"] = ModelType.GENERAL
        if self.internal_config_dict["MODEL_TYPE"] == ModelType.GENERAL and model_class.type == ModelType.SEQUENTIAL:
            # RecBole's sequential.yaml sets repeatable: True, whose sampler records no user history, so the
            # full-sort evaluation would mask nothing; a task record ranks items the user has not had yet
            self.internal_config_dict["repeatable"] = False
        compat.default_train_neg_sampling(
            self.internal_config_dict, self.external_config_dict, self.internal_config_dict["MODEL_TYPE"]
        )
        self._check_user_settings()

    def _load_pretext_defaults(self):
        """Defaults of every pretext task named in ``pretrain_stages`` (and ``pretrain_methods``' stages)."""
        from recbole_adaptssr.pretext.base import check_defaults_namespace, get_pretext_task, task_defaults_file

        def setting(key):
            value = self.external_config_dict.get(key, self.internal_config_dict.get(key))
            return as_list(value) if isinstance(value, str) else value

        modules = setting("pretext_modules") or []
        for name in dict.fromkeys(str(s) for s in (setting("pretrain_stages") or [])):
            task_class = get_pretext_task(name, modules)
            path = task_defaults_file(task_class)
            if path is not None:
                check_defaults_namespace(task_class, self._update_internal_config_dict(path) or {}, path)

    def _load_user_model_defaults(self):
        """``properties/encoder/user_model.yaml`` (``user_model``, ``user_model_pooling``), then the defaults of the
        backbone ``user_model`` names (``properties/encoder/<user_model>.yaml``); an unknown name fails here."""
        from recbole_adaptssr.encoder.base import check_defaults_namespace, defaults_file, get_user_model

        self._update_internal_config_dict(properties_file("encoder", "user_model.yaml"))
        name = self.external_config_dict.get("user_model", self.internal_config_dict.get("user_model"))
        encoder_class = get_user_model(name)
        path = defaults_file(encoder_class)
        if path is not None:
            check_defaults_namespace(encoder_class, self._update_internal_config_dict(path) or {}, path)


DEVICES = ("cpu", "cuda", "cuda:N")


def resolve_device(device, use_gpu=True, gpu_id="0", use_gpu_given=False, gpu_id_given=False):
    """The ``torch.device`` of a single-process run, as the settings say.

    * ``device`` (``cpu``, ``cuda``, ``cuda:N``; N counts the GPUs this process sees, as in torch) is honoured as
      written: a GPU that is not there is an error, never a silent fall-back to the CPU; ``device: cuda`` is the
      GPU of ``gpu_id``.
    * Without ``device``: the CPU when ``use_gpu`` is False, ``gpu_id`` is empty or CUDA is unavailable, else the GPU
      of ``gpu_id``.
    * ``gpu_id`` (RecBole's: the id of a GPU, as ``nvidia-smi`` numbers it; the first one of a list) picks a GPU
      without hiding the others: under ``CUDA_VISIBLE_DEVICES`` the id is looked up in that list. Unset, it is the
      first GPU this process sees.
    ``CUDA_VISIBLE_DEVICES`` is never changed (RecBole sets it to ``gpu_id`` for the whole process)."""
    import torch

    text = str(device).strip().lower() if device is not None else None
    if text is not None and text != "cpu" and text != "cuda" and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise SettingError(f"device must be one of {list(DEVICES)}, got {device!r}")
    if text == "cpu":
        return torch.device("cpu")
    if text is not None:
        if not torch.cuda.is_available():
            raise SettingError(f"device={device!r}, but CUDA is not available on this machine "
                               "(torch.cuda.is_available() is False): set device=cpu, or run where a GPU is visible")
        if use_gpu_given and not use_gpu:
            raise SettingError(f"device={device!r} and use_gpu=False contradict each other: drop one of them")
        index = int(text[5:]) if ":" in text else _gpu_index(gpu_id, gpu_id_given)
        if index >= torch.cuda.device_count():
            raise SettingError(f"device={device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if not use_gpu or not str(gpu_id).strip() or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", _gpu_index(gpu_id, gpu_id_given))


def _gpu_index(gpu_id, given: bool) -> int:
    """The torch index of the GPU ``gpu_id`` names (see :func:`resolve_device`)."""
    first = str(gpu_id).split(",")[0].strip()
    if not given or not first:
        return 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        if not first.isdigit():
            raise SettingError(f"gpu_id must be a GPU number (or a comma-separated list of them), got {gpu_id!r}")
        return int(first)
    if first not in visible:
        raise SettingError(f"gpu_id={gpu_id!r}, but this process sees only the GPUs CUDA_VISIBLE_DEVICES="
                           f"{os.environ['CUDA_VISIBLE_DEVICES']!r}: name one of them, or use device=cuda:N")
    return visible.index(first)


def _builtin_task_kinds() -> list:
    from recbole_adaptssr.downstream.base import builtin_task_kinds

    return builtin_task_kinds()


__all__ = ["Config", "as_list", "resolve_device", "PROPERTIES_DIR"]
