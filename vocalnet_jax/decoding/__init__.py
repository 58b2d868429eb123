"""Decoding: AR with a KV cache and block diffusion with few-step commit rules."""
from vocalnet_jax.decoding import ar, block_diffusion, sampling, step_rules
from vocalnet_jax.decoding.ar import ARConfig
from vocalnet_jax.decoding.block_diffusion import BlockDiffusionConfig, decode_block
from vocalnet_jax.decoding.lm import CachedLM, DecodeOutput, decoder_lm, prefill

__all__ = ["ar", "block_diffusion", "sampling", "step_rules", "ARConfig", "BlockDiffusionConfig",
           "decode_block", "CachedLM", "DecodeOutput", "decoder_lm", "prefill"]
