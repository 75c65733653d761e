"""FreeVC voice conversion synthesizer (OlaWod/FreeVC ``models.SynthesizerTrn``), inference only.

WavLM content features [B, 1024, T] (50 frames/s) and a speaker embedding go in; a waveform
comes out: 16 kHz (``freevc``, ``freevc-s``) or 24 kHz (``freevc-24``), ``hop`` samples per
content frame. The pipeline is the official ``infer``:

    m_p, logs_p = enc_p(c)                           # prior encoder (WN, 16 layers)
    z_p = m_p + noise_scale * eps * exp(logs_p)      # eps = randn_like(m_p)
    z = flow.reverse(z_p, g)                         # 4 mean-only couplings
    wav = dec(z, g)                                  # HiFi-GAN

``freevc`` / ``freevc-24`` take ``g`` from the resemblyzer speaker encoder; ``freevc-s``
computes it from a log-mel of the target speech with its own ``enc_spk`` LSTM.

The training-only posterior encoder ``enc_q`` is in every official checkpoint: the loader
checks its keys and shapes (so the file is verified as a whole) and drops it.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from . import _checkpoint
from .errors import ModelLoadError
from .freevc_mel import mel_spectrogram
from .freevc_modules import ContentEncoder, Generator, ResidualCouplingBlock, SpeakerEncoder

__all__ = ["CONFIGS", "FreeVCConfig", "SynthesizerTrn", "load_freevc", "mel_spectrogram"]


@dataclass(frozen=True)
class FreeVCConfig:
    """The numbers of one official FreeVC config that shape the inference network.

    The ``model`` entries of the official JSON files; ``filter_channels``, ``n_heads``,
    ``n_layers``, ``kernel_size`` and ``p_dropout`` are listed there but unused by
    ``SynthesizerTrn``. The encoder and flow sizes below are hard-coded in the official class.
    """

    name: str
    sampling_rate: int                       # output waveform rate, Hz
    use_spk: bool                            # True: g comes from outside (resemblyzer)
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    ssl_dim: int = 1024                      # WavLM-Large feature size
    inter_channels: int = 192
    hidden_channels: int = 192
    gin_channels: int = 256                  # speaker embedding size
    spec_channels: int = 641                 # enc_q input: filter_length // 2 + 1
    enc_kernel_size: int = 5                 # enc_p / enc_q WN
    enc_layers: int = 16
    flow_kernel_size: int = 5
    flow_layers: int = 4
    flow_count: int = 4
    n_mels: int = 80                         # freevc-s speaker path
    spk_partial_frames: int = 128
    spk_partial_hop: int = 64

    @property
    def hop(self) -> int:
        """Output samples per content frame (320 at 16 kHz, 480 at 24 kHz)."""
        return math.prod(self.upsample_rates)


CONFIGS: dict[str, FreeVCConfig] = {
    "freevc": FreeVCConfig("freevc", 16000, True, (10, 8, 2, 2)),
    "freevc-s": FreeVCConfig("freevc-s", 16000, False, (10, 8, 2, 2)),
    "freevc-24": FreeVCConfig("freevc-24", 24000, True, (10, 6, 4, 2)),
}


class SynthesizerTrn(nn.Module):
    """The FreeVC generator path: ``enc_p``, ``flow``, ``dec`` (+ ``enc_spk`` for freevc-s)."""

    def __init__(self, cfg: FreeVCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_p = ContentEncoder(cfg.ssl_dim, cfg.inter_channels, cfg.hidden_channels,
                                    cfg.enc_kernel_size, cfg.enc_layers)
        self.dec = Generator(cfg.inter_channels, cfg.resblock_kernel_sizes,
                             cfg.resblock_dilation_sizes, cfg.upsample_rates,
                             cfg.upsample_initial_channel, cfg.upsample_kernel_sizes,
                             cfg.gin_channels)
        self.flow = ResidualCouplingBlock(cfg.inter_channels, cfg.hidden_channels,
                                          cfg.flow_kernel_size, cfg.flow_layers, cfg.flow_count,
                                          cfg.gin_channels)
        if not cfg.use_spk:
            self.enc_spk = SpeakerEncoder(cfg.n_mels, cfg.gin_channels, cfg.gin_channels)

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def sampling_rate(self) -> int:
        return self.cfg.sampling_rate

    def _param(self) -> torch.Tensor:
        return self.dec.conv_pre.weight

    @torch.no_grad()
    def speaker_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """freevc-s only: log-mel [B, 80, F] (from :func:`mel_spectrogram`) -> g [B, 256].

        The official ``enc_spk.embed_utterance`` (windows of 128 frames, hop 64; plain mean,
        not renormalised), applied to each batch item. Cache the result and pass it to
        :meth:`infer` as ``g`` to skip the LSTM on later calls for the same speaker.
        """
        if self.cfg.use_spk:
            raise ValueError(f"config {self.cfg.name!r} has no speaker encoder of its own: "
                             "its g comes from the resemblyzer speaker encoder")
        p = self._param()
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels or mel.shape[2] < 1:
            raise ValueError(f"mel must be [B, {self.cfg.n_mels}, F] with F >= 1, "
                             f"got {tuple(mel.shape)}")
        mel = mel.to(device=p.device, dtype=p.dtype)
        return self.enc_spk.embed_utterance(mel.transpose(1, 2), self.cfg.spk_partial_frames,
                                            self.cfg.spk_partial_hop)

    @torch.no_grad()
    def infer(self, c: torch.Tensor, g: torch.Tensor | None = None,
              mel: torch.Tensor | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """Convert content to speech in the target voice.

        c: WavLM features [B, 1024, T]. g: speaker embedding [B, 256] (required for freevc and
        freevc-24; for freevc-s, an embedding from :meth:`speaker_embedding` may replace
        ``mel``). mel: freevc-s target log-mel [B, 80, F]. noise_scale: 1.0 is the official
        sampled path (one ``torch.randn_like`` draw from the global generator, as the
        official encoder makes it, so a ``torch.manual_seed`` reproduces it); 0 is the
        deterministic mean path z_p = m_p.

        Returns the waveform [B, 1, T * hop] in (-1, 1) at ``sampling_rate``. Inputs are moved
        to the model's device and dtype.
        """
        cfg = self.cfg
        p = self._param()
        if c.dim() != 3 or c.shape[1] != cfg.ssl_dim or c.shape[2] < 1:
            raise ValueError(f"c must be WavLM content [B, {cfg.ssl_dim}, T] with T >= 1, "
                             f"got {tuple(c.shape)}")
        if noise_scale < 0 or not math.isfinite(noise_scale):
            raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale}")
        c = c.to(device=p.device, dtype=p.dtype)
        if cfg.use_spk:
            if mel is not None:
                raise ValueError(f"config {cfg.name!r} takes g (a resemblyzer embedding), not mel")
            if g is None:
                raise ValueError(f"config {cfg.name!r} needs g: the target speaker's "
                                 f"[B, {cfg.gin_channels}] resemblyzer embedding")
        elif mel is not None:
            if g is not None:
                raise ValueError("freevc-s takes mel or a precomputed g, not both")
            g = self.speaker_embedding(mel)
        elif g is None:
            raise ValueError("config 'freevc-s' needs mel: the target speech's log-mel "
                             f"[B, {cfg.n_mels}, F] from mel_spectrogram() "
                             "(or g from speaker_embedding())")
        if g.dim() != 2 or g.shape[1] != cfg.gin_channels:
            raise ValueError(f"g must be [B, {cfg.gin_channels}], got {tuple(g.shape)}")
        if g.shape[0] != c.shape[0]:
            raise ValueError(f"batch sizes differ: c has {c.shape[0]}, the speaker "
                             f"embedding {g.shape[0]}")
        g = g.to(device=p.device, dtype=p.dtype).unsqueeze(-1)

        m_p, logs_p = self.enc_p(c)
        if noise_scale > 0:
            # the official Encoder draws exactly this tensor, in this order
            z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * noise_scale
        else:
            z_p = m_p
        z = self.flow.reverse(z_p, g)
        return self.dec(z, g)


def _file_layout(net: SynthesizerTrn) -> nn.Module:
    """A meta-device module whose state_dict keys/shapes are the official checkpoint's:
    the inference network plus the training-only posterior encoder ``enc_q``."""
    cfg = net.cfg
    layout = nn.Module()
    for name, child in net.named_children():
        layout.add_module(name, child)
    with torch.device("meta"):
        layout.add_module("enc_q", ContentEncoder(cfg.spec_channels, cfg.inter_channels,
                                                  cfg.hidden_channels, cfg.enc_kernel_size,
                                                  cfg.enc_layers, cfg.gin_channels))
    return layout


def _check_variant(sd: OrderedDict[str, torch.Tensor], cfg: FreeVCConfig,
                   path: str | os.PathLike[str]) -> None:
    """Name the right config when a FreeVC file is loaded with the wrong one.

    freevc-s files carry the ``enc_spk`` LSTM, the others do not. freevc and freevc-24 hold
    identical tensors (only the decoder strides differ), so they cannot be told apart.
    """
    if not any(k.startswith("enc_p.") for k in sd):
        return  # not a FreeVC file at all: check_state_dict describes it
    has_spk = any(k.startswith("enc_spk.") for k in sd)
    if cfg.use_spk and has_spk:
        raise ModelLoadError(f"{path} looks like a freevc-s checkpoint (it holds the enc_spk "
                             f"speaker-encoder weights), not {cfg.name}: load it with "
                             "config='freevc-s'")
    if not cfg.use_spk and not has_spk:
        raise ModelLoadError(f"{path} looks like a freevc or freevc-24 checkpoint (it has no "
                             "enc_spk speaker-encoder weights), not freevc-s: load it with "
                             "config='freevc' (or 'freevc-24' for the 24 kHz model)")


def load_freevc(path: str | os.PathLike[str], config: str = "freevc",
                device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> SynthesizerTrn:
    """Load an official FreeVC generator checkpoint as an eval-mode :class:`SynthesizerTrn`.

    ``path``: the ``utils.save_checkpoint`` layout ``{"model", "iteration", "optimizer",
    "learning_rate"}`` (a bare state_dict is accepted too); legacy ``weight_g``/``weight_v``
    or ``parametrizations.weight.original0/1`` names, with or without ``module.``. The key set
    must be the official one, ``enc_q`` included; weight norm is folded and ``enc_q`` and the
    optimizer state are dropped. ``config``: "freevc", "freevc-s" or "freevc-24".

    A freevc-s file given as freevc/freevc-24 (or the reverse) raises :class:`ModelLoadError`
    naming the right config. freevc and freevc-24 files have identical keys and shapes, so a
    freevc file loaded as freevc-24 (or the reverse) loads and produces wrong audio: the
    caller must pick the config that matches the file.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown FreeVC config {config!r}: expected one of "
                         f"{', '.join(repr(k) for k in CONFIGS)}")
    cfg = CONFIGS[config]
    what = f"FreeVC ({config})"
    obj = _checkpoint.read_checkpoint(path, what)
    if (isinstance(obj, dict) and obj and "model" not in obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())):
        sd = OrderedDict(obj)  # a bare state_dict
    else:
        sd = _checkpoint.pick_state_dict(obj, ("model",), path, what)
    del obj  # the optimizer entry, if any, is never looked at
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{path} is not a {what} checkpoint: 'model' holds non-tensor "
                             f"entries such as {bad[0]!r}")
    sd = _checkpoint.strip_prefix(sd, "module.")
    # names and shapes are checked on meta copies first, so a wrong file fails before any
    # weight is read or folded
    layout_sd = _checkpoint.fold_weight_norm(OrderedDict((k, v.to("meta")) for k, v in sd.items()))
    _check_variant(layout_sd, cfg, path)
    with torch.device("meta"):
        net = SynthesizerTrn(cfg)
    _checkpoint.check_state_dict(layout_sd, _file_layout(net), path, what)
    # enc_q (a fifth of the file) is training-only: dropped before folding
    sd = _checkpoint.fold_weight_norm(
        OrderedDict((k, v) for k, v in sd.items() if not k.startswith("enc_q.")))
    _checkpoint.load_into(net, sd, device, dtype)
    if not cfg.use_spk:
        # cuDNN wants the LSTM weights in one block (the official forward flattens on every
        # call); a no-op on the CPU
        net.enc_spk.lstm.flatten_parameters()
    return net
