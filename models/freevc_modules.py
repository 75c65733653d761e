"""Building blocks of the FreeVC synthesizer (OlaWod/FreeVC ``modules.py`` / ``models.py``).

Inference-only versions: weight norm is folded into plain ``Conv1d`` / ``ConvTranspose1d``
weights at load, dropout is gone (it is off in eval), and the length masks are dropped because
``SynthesizerTrn.infer`` always runs every item at full length (the official mask is all ones,
and multiplying by one is exact). Submodule and parameter names follow the official
``state_dict`` so a folded checkpoint loads with ``strict=True``.

Shapes: ``B`` batch, ``C`` channels, ``T`` content frames (50 per second), ``L`` samples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1  # HiFi-GAN's slope inside the decoder; the last activation uses torch's 0.01


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class WN(nn.Module):
    """WaveNet-style stack of gated convolutions (VITS ``modules.WN``; FreeVC uses dilation 1).

    ``cond_layer`` turns the speaker embedding into the conditioning of *every* layer in one
    1x1 convolution ([B, 2*H*n_layers, 1]); each layer adds its slice before the gate.
    """

    def __init__(self, hidden_channels: int, kernel_size: int, n_layers: int,
                 gin_channels: int = 0) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        h = hidden_channels
        if gin_channels:
            self.cond_layer = nn.Conv1d(gin_channels, 2 * h * n_layers, 1)
        self.in_layers = nn.ModuleList(
            nn.Conv1d(h, 2 * h, kernel_size, padding=_same_padding(kernel_size))
            for _ in range(n_layers))
        # the last layer only feeds the skip output, so it has half the channels
        self.res_skip_layers = nn.ModuleList(
            nn.Conv1d(h, 2 * h if i < n_layers - 1 else h, 1) for i in range(n_layers))

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, H, T], g [B, gin, 1] or None -> skip sum [B, H, T]."""
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        output: torch.Tensor | None = None
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            if cond is not None:
                # the official code adds zeros when there is no g: skipping that is exact
                x_in = x_in + cond[:, 2 * h * i: 2 * h * (i + 1)]
            acts = torch.tanh(x_in[:, :h]) * torch.sigmoid(x_in[:, h:])
            res_skip_acts = res_skip(acts)
            if i < self.n_layers - 1:
                x = x + res_skip_acts[:, :h]
                skip = res_skip_acts[:, h:]
            else:
                skip = res_skip_acts
            # the official output starts as zeros; 0 + skip is exact, so start from skip
            output = skip if output is None else output + skip
        assert output is not None
        return output


class ContentEncoder(nn.Module):
    """The prior encoder ``enc_p`` (official ``models.Encoder``): content -> (m, logs).

    ``pre`` 1x1 conv, a 16-layer WN with kernel 5, ``proj`` 1x1 conv to 2*out channels. The
    same class with ``gin_channels`` and ``in_channels`` 641 describes the training-only
    posterior encoder ``enc_q``, which the loader only uses to check the file's keys.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int,
                 kernel_size: int = 5, n_layers: int = 16, gin_channels: int = 0) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, in, T] -> (m [B, out, T], logs [B, out, T])."""
        stats = self.proj(self.enc(self.pre(x)))
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return m, logs


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half of the channels is shifted by a WN of the
    first half. Only the inverse (``reverse``) is needed at inference."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, n_layers: int,
                 gin_channels: int) -> None:
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def reverse(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """x [B, C, T], g [B, gin, 1] -> [B, C, T]."""
        x0, x1 = torch.split(x, [self.half_channels] * 2, dim=1)
        m = self.post(self.enc(self.pre(x0), g))
        # mean-only: logs = 0, so the official (x1 - m) * exp(-0) is exactly x1 - m
        return torch.cat([x0, x1 - m], dim=1)


class Flip(nn.Module):
    """Reverses the channel order between couplings (no weights; keeps official indices)."""

    def reverse(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, [1])


class ResidualCouplingBlock(nn.Module):
    """The flow: ``flows`` = [coupling, Flip] * n_flows, as in the official ModuleList."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int = 5,
                 n_layers: int = 4, n_flows: int = 4, gin_channels: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_flows):
            layers.append(ResidualCouplingLayer(channels, hidden_channels, kernel_size,
                                                n_layers, gin_channels))
            layers.append(Flip())
        self.flows = nn.ModuleList(layers)

    def reverse(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Prior sample z_p [B, C, T] -> latent z [B, C, T] (the flow run backwards)."""
        for flow in reversed(self.flows):
            z = flow.reverse(z, g)  # type: ignore[operator]
        return z


def _conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` applied to a [B, C, 1, L] channels-last activation, as a 1xK conv2d.

    oneDNN runs channels-last (NWC) convolutions 1.1-2.5x faster than NCW on the decoder's
    long, narrow activations (ConvTranspose up to 3x); the results agree to float rounding.
    """
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, (1, conv.stride[0]),
                    (0, conv.padding[0]), (1, conv.dilation[0]))


def _conv_transpose(x: torch.Tensor, up: nn.ConvTranspose1d) -> torch.Tensor:
    """``up`` applied to a [B, C, 1, L] channels-last activation (see :func:`_conv`)."""
    return F.conv_transpose2d(x, up.weight.unsqueeze(2), up.bias, (1, up.stride[0]),
                              (0, up.padding[0]))


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: three (dilated conv, conv) pairs with skip adds."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_same_padding(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size))
            for _ in dilations)

    def forward(self, x: torch.Tensor, x_act: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, 1, L] channels-last -> same. ``x_act`` = leaky_relu(x, 0.1) when the
        caller already has it (the decoder shares it between the blocks reading the same x)."""
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            xt = x_act if i == 0 and x_act is not None else F.leaky_relu(x, LRELU_SLOPE)
            xt = F.leaky_relu_(_conv(xt, c1), LRELU_SLOPE)  # in place: the conv output is ours
            # xt + x, written into the fresh conv output to save an allocation per pair;
            # IEEE addition is commutative, so the sum is bit-identical
            x = _conv(xt, c2).add_(x)
        return x


class Generator(nn.Module):
    """HiFi-GAN V1 decoder with a speaker-conditioning 1x1 conv (``dec``).

    z [B, 192, T] -> waveform [B, 1, T * prod(upsample_rates)] in (-1, 1).
    """

    def __init__(self, initial_channel: int, resblock_kernel_sizes: tuple[int, ...],
                 resblock_dilation_sizes: tuple[tuple[int, ...], ...],
                 upsample_rates: tuple[int, ...], upsample_initial_channel: int,
                 upsample_kernel_sizes: tuple[int, ...], gin_channels: int) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        ch = upsample_initial_channel
        self.conv_pre = nn.Conv1d(initial_channel, ch, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(ch // 2 ** i, ch // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList(
            ResBlock1(ch // 2 ** (i + 1), k, tuple(d))
            for i in range(len(upsample_rates))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes))
        self.conv_post = nn.Conv1d(ch // 2 ** len(upsample_rates), 1, 7, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, ch, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """x [B, 192, T], g [B, gin, 1] -> [B, 1, L]."""
        x = self.conv_pre(x) + self.cond(g)
        # from here on [B, C, 1, L] channels-last: see _conv
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        n = self.num_kernels
        for i, up in enumerate(self.ups):
            x = _conv_transpose(F.leaky_relu(x, LRELU_SLOPE), up)
            # every block of this stage starts with leaky_relu(x): compute it once
            x_act = F.leaky_relu(x, LRELU_SLOPE)
            blocks = self.resblocks[i * n:(i + 1) * n]
            xs = blocks[0](x, x_act)
            for block in blocks[1:]:
                xs.add_(block(x, x_act))
            x = xs.div_(n)
        x = _conv(F.leaky_relu_(x), self.conv_post)  # torch's default slope 0.01, as the original
        return torch.tanh_(x).squeeze(2)


class SpeakerEncoder(nn.Module):
    """freevc-s ``enc_spk``: 3-layer LSTM over 80-band log-mels, Linear, ReLU, L2 norm."""

    def __init__(self, mel_channels: int = 80, hidden: int = 256, embedding: int = 256,
                 num_layers: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(mel_channels, hidden, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """mels [N, frames, 80] -> unit-norm embeddings [N, 256]."""
        _, (hidden, _) = self.lstm(mels)
        e = torch.relu(self.linear(hidden[-1]))
        return e / torch.norm(e, dim=1, keepdim=True)

    def embed_utterance(self, mel: torch.Tensor, partial_frames: int = 128,
                        partial_hop: int = 64) -> torch.Tensor:
        """mel [B, frames, 80] -> g [B, 256], the official ``embed_utterance`` per item.

        Up to ``partial_frames`` frames: one window of everything. Longer: windows at
        ``range(0, F - partial_frames, partial_hop)`` plus the last ``partial_frames`` frames,
        and g is the plain mean of their unit-norm embeddings (the official code leaves the
        renormalisation commented out, so |g| < 1).
        """
        b, frames, _ = mel.shape
        if frames <= partial_frames:
            return self(mel)
        starts = list(range(0, frames - partial_frames, partial_hop)) + [frames - partial_frames]
        windows = torch.stack([mel[:, s:s + partial_frames] for s in starts], dim=1)
        embeds = self(windows.reshape(b * len(starts), partial_frames, mel.shape[2]))
        return embeds.view(b, len(starts), -1).mean(dim=1)
