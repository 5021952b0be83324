"""A version's model configuration, in the terms of Triton's ``model_config.proto``. Pure.

ModelYard keeps no configuration file per model: everything is derived from the manifest of the
version a request resolves to. When the serving core batches that version (``batching_enabled``:
the same rule the dataplane applies), ``max_batch_size`` is the manifest's batching hint, the
dynamic batcher's wait is ``max_queue_delay_us``, and ``dims`` leave out the batch dimension, as
Triton's do; otherwise ``max_batch_size`` is 0 and ``dims`` are the full signature shapes (-1 for
a variable dimension). A tensor left with no dims (one value per row, or a scalar) is written
Triton's way: ``dims [1]`` with ``reshape []``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelyard.core.batch_policy import batching_enabled
from modelyard.manifest import Manifest
from modelyard.types import ConfigTensor, ModelConfig, TensorSpec


def config_tensors(specs: Iterable[TensorSpec], *, batched: bool) -> tuple[ConfigTensor, ...]:
    """The signature's tensors as configuration entries; ``batched`` drops the first dim."""
    out = []
    for spec in specs:
        dims = spec.shape[1:] if batched else spec.shape
        if dims:
            out.append(ConfigTensor(spec.name, spec.datatype, tuple(dims)))
        else:
            out.append(ConfigTensor(spec.name, spec.datatype, (1,), reshape=()))
    return tuple(out)


def derive_model_config(
    name: str,
    version: str,
    manifest: Manifest,
    *,
    instance_count: int,
    parameters: Mapping[str, str] | None = None,
) -> ModelConfig:
    """The configuration of ``version`` served under ``name`` (a model or an endpoint name).

    ``instance_count``: how many predictions may run at once (the inference threads; every
    version shares them). ``parameters`` are added to ``served_version``.
    """
    signature = manifest.signature
    hints = manifest.batching
    batched = batching_enabled(hints.max_batch_size, (s.shape for s in signature.inputs))
    return ModelConfig(
        name=name,
        version=version,
        platform=manifest.runtime,
        backend=manifest.runtime,
        max_batch_size=hints.max_batch_size if batched else 0,
        inputs=config_tensors(signature.inputs, batched=batched),
        outputs=config_tensors(signature.outputs, batched=batched),
        max_queue_delay_us=hints.max_wait_us if batched else None,
        instance_count=instance_count,
        parameters={"served_version": version, **(parameters or {})},
    )
